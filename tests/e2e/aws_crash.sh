#!/usr/bin/env bash
# tests/e2e/aws_crash.sh: kmsctl killed (-9) right after EC2 ran its
# RunInstances but before the answer came back; the next apply converges
# without a second instance (the ClientToken intent written before the call,
# the ownership tags), and a further apply changes nothing. Then the state
# file is lost: everything is adopted again from its tags, without changes.
set -euo pipefail

: "${KC_SRC_DIR:?}" "${KMSCTL:?}"
. "$KC_SRC_DIR/tests/e2e/lib/sim.sh"

sim_aws_setup 17
ssh-keygen -q -t ed25519 -N '' -C crash -f key
{
    sim_aws_manifest_head crash
    cat <<'EOF'
  host:
    instance_type: c5.xlarge
    enclave: {cpu_count: 2, memory_mib: 512}
    ssh: {key_name: crash, public_key: ./key.pub}
EOF
} >m.yaml
live() {
    sim_inventory service=ec2 | python3 -c '
import json, sys
print(sum(1 for o in json.load(sys.stdin) if o["kind"] == "instance"
          and o["attrs"]["state"] != "terminated"))'
}

# Every EC2 answer is held back 1.5 s after the request was handled.
sim_faults '[{"match":"^POST /ec2/$","latency_ms":[1500,1500]}]'
bg_start apply1.txt "$KMSCTL" apply --auto-approve -f m.yaml
ran_instances() {
    [ "$(sim_route_count 'POST /ec2/?Action=RunInstances')" -ge 1 ] && return 0
    kill -0 "$BG" 2>/dev/null || fail "apply ended early: $(cat apply1.txt)"
    return 1
}
wait_until 120 ran_instances || fail "no RunInstances: $(cat apply1.txt)"
bg_kill
[ "$(live)" = 1 ] || fail "expected the one instance EC2 made"
sim_clear_faults
# The dead run's lock stays (kmsctl refuses to guess); the operator unlocks.
"$KMSCTL" state unlock --state .kmsctl/crash.state.json >unlock.txt 2>&1 || fail "unlock: $(cat unlock.txt)"

"$KMSCTL" apply --auto-approve -f m.yaml >apply2.txt 2>&1 || fail "re-apply: $(cat apply2.txt)"
[ "$(live)" = 1 ] || fail "a second instance was made: $(cat apply2.txt)"
[ "$(sim_route_count 'POST /ec2/?Action=RunInstances')" = 1 ] ||
    fail "RunInstances sent again: $(cat apply2.txt)"
before=$(sim_count mutating)
"$KMSCTL" apply --auto-approve -f m.yaml >apply3.txt 2>&1 || fail "apply 3: $(cat apply3.txt)"
[ "$(sim_count mutating)" = "$before" ] || fail "third apply mutated: $(cat apply3.txt)"

# A lost state file: everything is found again by its ownership tags and
# adopted as it is (no create, no replace).
rm -f .kmsctl/crash.state.json .kmsctl/crash.state.json.backup
"$KMSCTL" plan -f m.yaml >plan4.txt 2>&1 || fail "plan without state: $(cat plan4.txt)"
grep -Eq 'create|replace' plan4.txt && fail "lost state not adopted: $(cat plan4.txt)"
"$KMSCTL" apply --auto-approve -f m.yaml >apply4.txt 2>&1 || fail "apply 4: $(cat apply4.txt)"
[ "$(sim_count mutating)" = "$before" ] || fail "adoption mutated: $(cat apply4.txt)"
"$KMSCTL" drift -f m.yaml >drift.txt 2>&1 || fail "drift after adoption: $(cat drift.txt)"

"$KMSCTL" destroy --auto-approve -f m.yaml >destroy.txt 2>&1 || fail "destroy: $(cat destroy.txt)"
[ "$(live)" = 0 ] || fail "destroy left an instance"
echo "aws_crash.sh: ok"
