#!/usr/bin/env bash
# tests/e2e/accept_aws.sh: issue 7 from the outside, against kmsctl-sim's EC2.
#  - curl's own SigV4 (--aws-sigv4) is accepted by the simulator, so the
#    simulator's verifier is not merely agreeing with kmsctl's signer;
#  - a key pair imported outside kmsctl with the same public key is adopted
#    (same fingerprint) and survives destroy (kmsctl did not make it);
#  - --debug traces the EC2 calls on stderr, and the secret access key is in
#    no output and not in the state;
#  - destroy order, read from the simulator's request log: TerminateInstances,
#    then (after the instance is terminated) DeleteSecurityGroup, retried
#    through DependencyViolation while the network interface goes away, and
#    DeleteKeyPair only for a key kmsctl imported;
#  - instance type / enclave validation fails before any EC2 request;
#  - with no keys in the environment and no files, credentials come from
#    the simulator's IMDSv2 (token PUT, then the role's credentials);
#  - destroy, then apply again after the instances vanished from Describe*
#    while EC2 still holds their ClientTokens: a new token, one instance.
# Needs $KMSCTL, $KC_SRC_DIR, $KC_BUILD_DIR, curl, ssh-keygen, python3.
set -euo pipefail

: "${KC_SRC_DIR:?}" "${KMSCTL:?}"
. "$KC_SRC_DIR/tests/e2e/lib/sim.sh"

sim_aws_setup 21
# Terminated instances vanish from Describe* after 3 s instead of 60 s
# (their ClientToken stays taken, as in EC2): long enough for destroy to see
# them terminated, short enough to apply again after they vanished. Their
# network interfaces linger 2.5 s (not 0.5-1.5 s): destroy's first
# DeleteSecurityGroup meets DependencyViolation even when a loaded box makes
# kmsctl slow to react (the order check below wants that retry).
sim_patch_object ec2 config faults \
    '{"attrs":{"terminated_keep_ms":3000,"eni_linger_ms":2500}}' >/dev/null
AKID=$SIM_AKID
SECRET=$SIM_SECRET

cd "$tmp"
ssh-keygen -q -t ed25519 -N '' -C accept -f host-key
ssh-keygen -q -t ed25519 -N '' -C other -f other-key

# --- curl's SigV4 against the simulator's verifier --------------------------
out=$(sim_ec2 DescribeVpcs) || fail "DescribeVpcs signed by curl: $out"
has "<isDefault>true</isDefault>" "$out"
out=$(curl -sS --aws-sigv4 "aws:amz:us-east-1:ec2" --user "$AKID:wrong$SECRET" \
    -H 'Content-Type: application/x-www-form-urlencoded; charset=utf-8' \
    --data 'Action=DescribeVpcs&Version=2016-11-15' "$SIM_URL/ec2/" || true)
has "<Code>SignatureDoesNotMatch</Code>" "$out"

# --- a key pair imported outside kmsctl, with the host's key -----------------
out=$(sim_ec2 ImportKeyPair KeyName=outside-key \
    "PublicKeyMaterial=$(base64 -w0 host-key.pub)")
has "<keyName>outside-key</keyName>" "$out"

manifest() { # TYPE CPUS MIB
    {
        sim_aws_manifest_head accept
        cat <<YAML
  host:
    instance_type: $1
    enclave: {cpu_count: $2, memory_mib: $3}
    ssh: {key_name: outside-key, public_key: ./host-key.pub, from: [203.0.113.9/32]}
  other:
    instance_type: c5.xlarge
    enclave: {cpu_count: 2, memory_mib: 512}
    ssh: {key_name: made-key, public_key: ./other-key.pub}
YAML
    } >m.yaml
}

# --- validation before any request ------------------------------------------
before=$(sim_count total)
for bad in "t3.xlarge 2 512|family 't3' does not support Nitro Enclaves" \
    "c5.large 2 512|a Nitro Enclaves parent needs at least 4" \
    "c5.xlarge 4 512|enclave.cpu_count: 4 leaves the host fewer than 2" \
    "c5.2xlarge 3 512|is odd" \
    "c5.xlarge 2 7200|enclave.memory_mib: 7200 leaves the host less than 1 GiB" \
    "c5.metal 2 512|size 'metal' is not one kmsctl knows"; do
    read -r t c mem <<<"${bad%%|*}"
    manifest "$t" "$c" "$mem"
    rc=0
    "$KMSCTL" plan -f m.yaml >out.txt 2>&1 || rc=$?
    [ "$rc" = 1 ] || fail "$t/$c/$mem: plan exit $rc: $(cat out.txt)"
    has "${bad#*|}" "$(cat out.txt)"
    grep -qE 'm\.yaml:1[0-9]:[0-9]+: nitro_hosts\.host\.' out.txt ||
        fail "$t/$c/$mem: no FILE:LINE:COL naming the field: $(cat out.txt)"
done
[ "$(sim_count total)" = "$before" ] || fail "validation errors made EC2 requests"

# --- apply with --debug: traced, and the secret is nowhere -------------------
manifest c5.xlarge 2 1024
"$KMSCTL" apply -f m.yaml --auto-approve --debug >apply.out 2>apply.err ||
    fail "apply: $(cat apply.err)"
grep -q 'RunInstances' apply.err ||
    fail "--debug did not trace the EC2 calls: $(head -c 2000 apply.err)"
for f in apply.out apply.err .kmsctl/accept.state.json; do
    [ -f "$f" ] || fail "$f missing"
    ! grep -qF "$SECRET" "$f" || fail "the secret access key is in $f"
done
sim_inventory service=ec2 >inv.json
python3 - inv.json <<'PY' || fail "inventory after apply"
import json, sys
inv = json.load(open(sys.argv[1]))
keys = {o["name"]: o for o in inv if o["kind"] == "key_pair"}
assert set(keys) == {"outside-key", "made-key"}, keys
assert "kmsctl-deployment" not in keys["outside-key"]["labels"], keys["outside-key"]
assert keys["made-key"]["labels"].get("kmsctl-deployment") == "accept", keys["made-key"]
live = [o for o in inv if o["kind"] == "instance" and o["attrs"]["state"] != "terminated"]
assert len(live) == 2, live
PY

# --- destroy: order from the simulator's log --------------------------------
start=$(wc -l <"$SIM_LOG")
"$KMSCTL" destroy -f m.yaml --auto-approve >destroy.out 2>&1 ||
    fail "destroy: $(cat destroy.out)"
tail -n +"$((start + 1))" "$SIM_LOG" >destroy.log
python3 - destroy.log <<'PY' || fail "destroy order: $(cat destroy.log)"
import re, sys
calls = []
for line in open(sys.argv[1]):
    m = re.search(r'-> (?:[a-z/]*)(\d+) route="POST /ec2/\?Action=(\w+)"', line)
    if m:
        calls.append((m.group(2), int(m.group(1))))
def idx(action, status=None):
    return [i for i, (a, s) in enumerate(calls) if a == action and (status is None or s == status)]
term = idx("TerminateInstances", 200)
sg_ok = idx("DeleteSecurityGroup", 200)
sg_dep = idx("DeleteSecurityGroup", 400)
kp = idx("DeleteKeyPair", 200)
assert len(term) >= 2, ("both instances terminated", calls)
assert len(sg_ok) == 2, ("one group per host, each deleted once", calls)
assert min(idx("DeleteSecurityGroup")) > max(term), ("group before terminate", calls)
# Terminate, then wait: DescribeInstances between them.
between = [a for a, _ in calls[max(term):min(idx("DeleteSecurityGroup"))]]
assert "DescribeInstances" in between, ("no wait for terminated", calls)
# The interface goes away after "terminated": DependencyViolation, retried.
assert sg_dep and min(sg_dep) < sg_ok[0], ("DependencyViolation not met/retried", calls)
assert len(kp) == 1, ("exactly one key pair deleted (made-key)", calls)
assert kp[0] > max(term), ("key pair before terminate", calls)
PY
sim_inventory service=ec2 >inv.json
python3 - inv.json <<'PY' || fail "inventory after destroy"
import json, sys
inv = json.load(open(sys.argv[1]))
keys = [o["name"] for o in inv if o["kind"] == "key_pair"]
assert keys == ["outside-key"], ("the outside key must stay, made-key go", keys)
ours = [o for o in inv if o["labels"].get("kmsctl-deployment") == "accept"
        and not (o["kind"] == "instance" and o["attrs"]["state"] == "terminated")]
assert ours == [], ours
PY
# --- the credential chain down to IMDSv2 (no env keys, no files) ------------
# The simulator's IMDS hands out temporary role credentials after a token
# PUT; EC2 accepts them (with their session token) like real keys.
mkdir -p emptyhome
sed -e '/credentials_file:/d' m.yaml >imds.yaml
tok_before=$(sim_route_count 'PUT /imds/latest/api/token')
rc=0
env -u AWS_ACCESS_KEY_ID -u AWS_SECRET_ACCESS_KEY -u AWS_SESSION_TOKEN \
    -u AWS_PROFILE -u AWS_SHARED_CREDENTIALS_FILE -u AWS_CONFIG_FILE \
    -u AWS_EC2_METADATA_DISABLED HOME="$PWD/emptyhome" \
    "$KMSCTL" plan -f imds.yaml --state imds.state.json >imds.out 2>&1 || rc=$?
[ "$rc" = 0 ] || fail "plan with IMDS credentials: exit $rc: $(cat imds.out)"
has "aws.instance.host create" "$(cat imds.out)"
[ "$(sim_route_count 'PUT /imds/latest/api/token')" -gt "$tok_before" ] ||
    fail "no IMDSv2 token was requested"
[ "$(sim_route_count 'GET /imds/latest/meta-data/iam/security-credentials/{role}')" -gt 0 ] ||
    fail "no role credentials were fetched from IMDS"
# --- destroyed, then applied again once the old instances vanished ----------
# EC2 still knows the old ClientTokens (24 h after termination; Describe*
# forgets the instances long before): RunInstances answers
# IdempotentParameterMismatch (new security group) or the terminated
# reservation. kmsctl takes the next token, and the apply succeeds.
sleep 3.5
sim_inventory service=ec2 >inv.json
python3 - inv.json <<'PY' || fail "terminated instances not expunged"
import json, sys
inv = json.load(open(sys.argv[1]))
old = [o for o in inv if o["kind"] == "instance"]
assert old and all(o["attrs"].get("expunged") for o in old), old
PY
"$KMSCTL" apply -f m.yaml --auto-approve >reapply.out 2>&1 ||
    fail "apply after destroy: $(cat reapply.out)"
sim_inventory service=ec2 >inv.json
python3 - inv.json <<'PY' || fail "instances after the second apply"
import json, sys
inv = json.load(open(sys.argv[1]))
live = [o for o in inv if o["kind"] == "instance" and o["attrs"]["state"] != "terminated"]
assert sorted(o["labels"]["kmsctl-address"] for o in live) == \
    ["aws.instance.host", "aws.instance.other"], live
PY
"$KMSCTL" plan -f m.yaml --detailed-exitcode >replan.out 2>&1 ||
    fail "plan after the second apply is not empty: $(cat replan.out)"
"$KMSCTL" destroy -f m.yaml --auto-approve >destroy2.out 2>&1 ||
    fail "second destroy: $(cat destroy2.out)"
echo "accept_aws.sh: ok"
