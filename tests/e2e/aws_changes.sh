#!/usr/bin/env bash
# tests/e2e/aws_changes.sh: a Nitro host whose key pair kmsctl creates
# (private key written 0600, never overwritten), without SSH rule; a change
# of enclave settings or instance type is planned as a replace and applied as
# one (exactly one live instance after); an existing key pair whose private
# key is not here stops the plan with what to do (the guide's known issue);
# destroy deletes only what kmsctl made.
set -euo pipefail

: "${KC_SRC_DIR:?}" "${KMSCTL:?}"
. "$KC_SRC_DIR/tests/e2e/lib/sim.sh"

sim_aws_setup 13

manifest() { # NAME MEMORY TYPE
    {
        sim_aws_manifest_head "$1"
        cat <<EOF
  host:
    instance_type: $3
    enclave: {cpu_count: 2, memory_mib: $2}
    ssh: {key_name: made-key, private_key_file: ./made.pem}
EOF
    } >m.yaml
}
py() {
    sim_inventory service=ec2 >inv.json
    python3 - inv.json "$1" <<'EOF'
import json, sys
inv = json.load(open(sys.argv[1]))
live = [o for o in inv if o["kind"] == "instance" and o["attrs"]["state"] != "terminated"]
exec(sys.argv[2])
EOF
}

# --- CreateKeyPair: the private key lands in a new 0600 file -------------------
manifest t1 512 c5.xlarge
"$KMSCTL" apply --auto-approve --debug -f m.yaml >apply1.txt 2>&1 || fail "apply: $(cat apply1.txt)"
grep -q 'DescribeKeyPairsResponse' apply1.txt || fail "--debug traced no answers"
[ -f made.pem ] || fail "no private key written"
[ "$(stat -c %a made.pem)" = 600 ] || fail "made.pem mode $(stat -c %a made.pem)"
grep -q -- '-----BEGIN RSA PRIVATE KEY-----' made.pem || fail "made.pem is not a PEM key"
grep -q 'BEGIN RSA PRIVATE KEY' apply1.txt && fail "key material printed"
grep -rq 'BEGIN RSA PRIVATE KEY' .kmsctl && fail "key material in the state"
py '
sg = [o for o in inv if o["kind"] == "security_group" and o["attrs"]["groupName"] != "default"][0]
assert sg["attrs"]["ingress"] == [], "an SSH rule without ssh.from"
assert len(live) == 1 and live[0]["attrs"]["keyName"] == "made-key"
print(live[0]["name"])
' >first.txt || fail "after apply"

# --- enclave settings changed: replace ------------------------------------------
manifest t1 1024 c5.xlarge
"$KMSCTL" plan -f m.yaml >plan2.txt 2>&1 || fail "plan: $(cat plan2.txt)"
grep -q 'aws.instance.host replace' plan2.txt || fail "no replace planned: $(cat plan2.txt)"
grep -q 'enclave_memory_mib' plan2.txt || fail "the cause is not shown: $(cat plan2.txt)"
grep -q 'its enclaves stop' plan2.txt || fail "no warning on the replace: $(cat plan2.txt)"
grep -q 'aws.key_pair.made-key' plan2.txt && fail "key pair touched: $(cat plan2.txt)"
"$KMSCTL" apply --auto-approve -f m.yaml >apply2.txt 2>&1 || fail "replace: $(cat apply2.txt)"
py "
assert len(live) == 1, [o['name'] for o in live]
assert live[0]['name'] != '$(cat first.txt)', 'not replaced'
assert 'memory_mib: 1024' in live[0]['attrs']['userDataDecoded']
" || fail "after the replace"
"$KMSCTL" drift -f m.yaml >drift.txt 2>&1 || fail "drift after replace: $(cat drift.txt)"

# --- instance type changed: planned as a replace too ---------------------------
manifest t1 1024 m5.xlarge
"$KMSCTL" plan -f m.yaml >plan3.txt 2>&1 || fail "plan: $(cat plan3.txt)"
grep -q 'aws.instance.host replace' plan3.txt || fail "no replace for a new type: $(cat plan3.txt)"

# --- a key pair that exists, whose private key is not here ----------------------
mv made.pem kept.pem
manifest t2 512 c5.xlarge
set +e
"$KMSCTL" plan -f m.yaml >plan4.txt 2>&1
rc=$?
set -e
[ "$rc" = 1 ] || fail "plan exit $rc: $(cat plan4.txt)"
grep -q "key pair 'made-key' exists in EC2 but its private key is not here" plan4.txt ||
    fail "no guidance: $(cat plan4.txt)"
mv kept.pem made.pem

# --- destroy: what kmsctl made goes, the private key file stays ----------------
manifest t1 1024 c5.xlarge
"$KMSCTL" destroy --auto-approve -f m.yaml >destroy.txt 2>&1 || fail "destroy: $(cat destroy.txt)"
[ -f made.pem ] || fail "destroy removed the private key file"
py '
assert live == [], live
assert [o for o in inv if o["kind"] == "key_pair"] == [], "key pair left"
assert [o["attrs"]["groupName"] for o in inv if o["kind"] == "security_group"] == ["default"]
' || fail "after destroy"
echo "aws_changes.sh: ok"
