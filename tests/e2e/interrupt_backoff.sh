#!/usr/bin/env bash
# tests/e2e/interrupt_backoff.sh: Ctrl-C while every EC2 call is answered
# 503 with Retry-After: 30 (kmsctl-sim fault injection). The apply's reads
# are waiting out that backoff when SIGINT comes: kmsctl exits 130 at once
# (well before the 30 s the retry policy would wait), leaves no lock record
# and no half-written state, and the next apply converges with one
# instance. Needs $KMSCTL and kmsctl-sim.
set -euo pipefail

: "${KC_SRC_DIR:?}" "${KMSCTL:?}"
. "$KC_SRC_DIR/tests/e2e/lib/sim.sh"

# On failure: what kmsctl said, and the simulator's last requests.
fail() {
    echo "interrupt_backoff.sh: FAIL: $*" >&2
    [ -f "$tmp/apply1.err" ] && tail -n 15 "$tmp/apply1.err" >&2
    tail -n 10 "$SIM_LOG" >&2
    exit 1
}
# The apply under test, killed if the script stops early.
apid=
tmp=$(mktemp -d "${TMPDIR:-/tmp}/kc-intr.XXXXXX")
SIM_ON_EXIT='if [ -n "$apid" ]; then kill -9 "$apid" 2>/dev/null; fi; rm -rf "$tmp"'
sim_start ec2 31
export KMSCTL_SANDBOX_SIM=$SIM_URL

cd "$tmp"
cp "$KC_SRC_DIR/tests/sim/creds/aws-credentials" creds
ssh-keygen -q -t ed25519 -N '' -C intr -f intr_key
cat >intr.yaml <<'EOF'
version: 1
name: intr
providers:
  aws: {region: ap-south-1, credentials_file: ./creds, endpoint: "${env:KMSCTL_SANDBOX_SIM}/ec2"}
nitro_hosts:
  backoff-host:
    instance_type: m5.2xlarge
    enclave: {cpu_count: 4, memory_mib: 2048}
    ssh: {key_name: intr, public_key: ./intr_key.pub}
EOF
faulted() { sim_count faulted; }

sim_faults '[{"match":"^POST /ec2/$","status":503,"retry_after":30}]'
"$KMSCTL" apply --auto-approve -f intr.yaml >apply1.out 2>apply1.err &
apid=$!
# Wait for the first 503s (the reads are then in their 30 s backoff).
polls=0
until [ "$(faulted)" -ge 1 ]; do
    kill -0 "$apid" 2>/dev/null || fail "apply ended before any 503"
    polls=$((polls + 1))
    [ "$polls" -le 1200 ] || fail "no EC2 call was answered within 60 s"
    sleep 0.05
done
sleep 0.3 # let the other first attempts come back too
before=$(faulted)
t0=$(date +%s%N)
kill -INT "$apid"
rc=0
wait "$apid" || rc=$?
t1=$(date +%s%N)
apid=
ms=$(((t1 - t0) / 1000000))
echo "interrupt_backoff.sh: SIGINT to exit: ${ms} ms (exit $rc)"
[ "$rc" = 130 ] || fail "exit $rc, expected 130: $(cat apply1.err)"
# Generous for a loaded machine, yet far below the Retry-After of 30 s.
[ "$ms" -lt 15000 ] || fail "took ${ms} ms: the backoff was waited out"
# No retry was sent after the interrupt.
[ "$(faulted)" = "$before" ] || fail "retries after SIGINT: $before -> $(faulted)"
grep -q "interrupted instead of retrying after HTTP 503" apply1.err ||
    fail "no reason given: $(cat apply1.err)"

# Consistent: no lock record left, the state (if written) parses and holds
# nothing the world does not have.
st=.kmsctl/intr.state.json
[ ! -s "$st.lock" ] || fail "lock record left: $(cat "$st.lock")"
if [ -e "$st" ]; then
    python3 -c 'import json,sys; s=json.load(open(sys.argv[1])); assert not s["resources"], s["resources"]' "$st" ||
        fail "state after the interrupt: $(cat "$st")"
fi
sim_clear_faults
"$KMSCTL" apply --auto-approve -f intr.yaml >apply2.out 2>&1 || fail "apply after: $(cat apply2.out)"
n=$(sim_inventory service=ec2 | python3 -c '
import json, sys
print(sum(1 for o in json.load(sys.stdin)
          if o["kind"] == "instance" and o["attrs"]["state"] != "terminated"))')
[ "$n" = 1 ] || fail "$n instances after the second apply"
"$KMSCTL" destroy --auto-approve -f intr.yaml >destroy.out 2>&1 || fail "destroy: $(cat destroy.out)"
echo "interrupt_backoff.sh: ok"
