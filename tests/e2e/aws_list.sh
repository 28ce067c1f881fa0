#!/usr/bin/env bash
# tests/e2e/aws_list.sh: list(op) of the aws.* kinds against kmsctl-sim's EC2.
# After an apply of the nitro_hosts part of the sandbox manifest, a security
# group carrying the deployment's tags is made outside kmsctl (curl's SigV4);
# `kmsctl drift --json` exits 2 and names it, `kmsctl plan` shows it; the
# list calls filter by tag:kmsctl-deployment (instances: not terminated) and
# follow NextToken when the simulator's pages are 1 object long; a tagged
# instance made outside is listed until it is terminated. Prints the
# request count of a no-op plan before and after list existed (the three
# list calls are what it adds).
set -euo pipefail

: "${KC_SRC_DIR:?}" "${KMSCTL:?}"
. "$KC_SRC_DIR/tests/e2e/lib/sim.sh"

kc_tmpdir tmp
sim_start ec2 12

mkdir -p "$tmp/m"
cp "$KC_SRC_DIR/tests/sim/creds/aws-credentials" "$tmp/m/creds"
ssh-keygen -q -t ed25519 -N '' -C kmsctl-list -f "$tmp/key"
cp "$tmp/key.pub" "$tmp/m/ssh.pub"
cat >"$tmp/m/nitro.yaml" <<EOF
version: 1
name: sandbox
providers:
  aws:
    region: us-east-1
    credentials_file: ./creds
    profile: default
    endpoint: "$SIM_URL/ec2"
    imds_endpoint: "$SIM_URL/imds"
nitro_hosts:
  enclave-host:
    instance_type: c5.xlarge
    enclave: {cpu_count: 2, memory_mib: 512}
    ssh:
      key_name: kmsctl-list
      public_key: ./ssh.pub
      from: [198.51.100.7/32]
    root_volume: {size_gb: 8, type: gp3}
EOF
cd "$tmp/m"
k() { "$KMSCTL" "$@" -f nitro.yaml; }

# --- 1. apply; nothing unmanaged ----------------------------------------------
k apply --auto-approve >"$tmp/apply.txt" 2>&1 || fail "apply: $(cat "$tmp/apply.txt")"
k drift --json >"$tmp/drift0.json" 2>"$tmp/drift0.err" ||
    fail "drift after apply: $(cat "$tmp/drift0.json" "$tmp/drift0.err")"

# The no-op plan: its requests, and which of them are the list calls.
sim_requests >"$tmp/req0.json"
k plan >"$tmp/plan0.txt" 2>&1 || fail "plan: $(cat "$tmp/plan0.txt")"
sim_requests >"$tmp/req1.json"
python3 - "$tmp/req0.json" "$tmp/req1.json" >"$tmp/count.txt" <<'EOF' || fail "no-op plan requests"
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:3])
d = {r: n - a["by_route"].get(r, 0) for r, n in b["by_route"].items()}
d = {r: n for r, n in d.items() if n}
assert b["mutating"] == a["mutating"], "a plan mutated"
# observe (one Describe* each) + list (one more for each of the three kinds)
for r in ("DescribeInstances", "DescribeSecurityGroups", "DescribeKeyPairs"):
    assert d.get("POST /ec2/?Action=" + r) == 2, d
print(b["total"] - a["total"])
EOF
noop=$(cat "$tmp/count.txt")

# --- 2. a security group tagged with the deployment, made outside kmsctl -------
out=$(sim_ec2 CreateSecurityGroup GroupName=stray GroupDescription=stray \
    TagSpecification.1.ResourceType=security-group \
    TagSpecification.1.Tag.1.Key=kmsctl-deployment \
    TagSpecification.1.Tag.1.Value=sandbox \
    TagSpecification.1.Tag.2.Key=kmsctl-address \
    TagSpecification.1.Tag.2.Value=aws.security_group.stray) ||
    fail "CreateSecurityGroup: $out"
stray=$(printf '%s' "$out" | sed -n 's:.*<groupId>\(sg-[0-9a-f]*\)</groupId>.*:\1:p')
[ -n "$stray" ] || fail "no groupId in $out"
# Another deployment's group, and a tagged group of no kmsctl address: not ours.
sim_ec2 CreateSecurityGroup GroupName=other GroupDescription=other \
    TagSpecification.1.ResourceType=security-group \
    TagSpecification.1.Tag.1.Key=kmsctl-deployment \
    TagSpecification.1.Tag.1.Value=someone-else \
    TagSpecification.1.Tag.2.Key=kmsctl-address \
    TagSpecification.1.Tag.2.Value=aws.security_group.other >/dev/null

set +e
k drift --json >"$tmp/drift1.json" 2>"$tmp/drift1.err"
rc=$?
set -e
[ "$rc" = 2 ] || fail "drift exit $rc, not 2: $(cat "$tmp/drift1.json" "$tmp/drift1.err")"
python3 - "$tmp/drift1.json" <<'EOF' || fail "drift --json: $(cat "$tmp/drift1.json")"
import json, sys
doc = json.load(open(sys.argv[1]))
assert doc["external"] is True and doc["in_sync"] is False, doc
diffs = doc["differences"]
assert [(d["address"], d["expected"], d["actual"], d["cause"]) for d in diffs] == [
    ("aws.security_group.stray", "absent", "present", "external")], diffs
EOF
k plan >"$tmp/plan1.txt" 2>&1 || fail "plan with a stray group: $(cat "$tmp/plan1.txt")"
grep -q 'aws.security_group.stray' "$tmp/plan1.txt" ||
    fail "plan does not show the stray group: $(cat "$tmp/plan1.txt")"

# --- 3. pages of one object: NextToken is followed ------------------------------
# A second stray instance-less group, so the groups span several pages.
sim_ec2 CreateSecurityGroup GroupName=stray2 GroupDescription=stray2 \
    TagSpecification.1.ResourceType=security-group \
    TagSpecification.1.Tag.1.Key=kmsctl-deployment \
    TagSpecification.1.Tag.1.Value=sandbox \
    TagSpecification.1.Tag.2.Key=kmsctl-address \
    TagSpecification.1.Tag.2.Value=aws.security_group.stray2 >/dev/null
sim_patch_object ec2 config faults '{"attrs":{"page_size":1}}' >/dev/null
before=$(sim_route_count 'POST /ec2/?Action=DescribeSecurityGroups')
set +e
k drift --json >"$tmp/drift2.json" 2>"$tmp/drift2.err"
rc=$?
set -e
[ "$rc" = 2 ] || fail "paged drift exit $rc: $(cat "$tmp/drift2.json" "$tmp/drift2.err")"
grep -q 'aws.security_group.stray2' "$tmp/drift2.json" || fail "second page not read"
grep -q 'aws.security_group.stray"' "$tmp/drift2.json" || fail "first page lost"
after=$(sim_route_count 'POST /ec2/?Action=DescribeSecurityGroups')
# observe of the host's group (1) + list over 3 groups in pages of 1 (>= 3)
[ $((after - before)) -ge 4 ] || fail "only $((after - before)) DescribeSecurityGroups: NextToken not followed"
sim_patch_object ec2 config faults '{"attrs":{"page_size":0}}' >/dev/null

# --- 4. the strays deleted: no drift -------------------------------------------
for g in "$stray" $(python3 -c 'import json,sys
inv = json.load(sys.stdin)
print(" ".join(o["name"] for o in inv if o["kind"] == "security_group" and o["attrs"]["groupName"] == "stray2"))' <<<"$(sim_inventory service=ec2)"); do
    sim_ec2 DeleteSecurityGroup "GroupId=$g" >/dev/null
done
k drift --json >"$tmp/drift3.json" 2>&1 || fail "drift after cleanup: $(cat "$tmp/drift3.json")"

# --- 5. a tagged instance made outside: listed while live, not once terminated
sim_inventory service=ec2 >"$tmp/inv.json"
read -r ami iid <<<"$(python3 -c 'import json,sys
inv = json.load(open(sys.argv[1]))
live = [o for o in inv if o["kind"] == "instance" and o["attrs"]["state"] != "terminated"]
print(live[0]["attrs"]["imageId"], live[0]["name"])' "$tmp/inv.json")"
out=$(sim_ec2 RunInstances "ImageId=$ami" InstanceType=t3.micro MinCount=1 MaxCount=1     TagSpecification.1.ResourceType=instance     TagSpecification.1.Tag.1.Key=kmsctl-deployment     TagSpecification.1.Tag.1.Value=sandbox     TagSpecification.1.Tag.2.Key=kmsctl-address     TagSpecification.1.Tag.2.Value=aws.instance.ghost) || fail "RunInstances: $out"
ghost=$(printf '%s' "$out" | sed -n 's:.*<instanceId>\(i-[0-9a-f]*\)</instanceId>.*:\1:p' | head -n 1)
[ -n "$ghost" ] || fail "no instanceId in $out"
set +e
k drift --json >"$tmp/drift4.json" 2>"$tmp/drift4.err"
rc=$?
set -e
[ "$rc" = 2 ] || fail "drift exit $rc with a stray instance: $(cat "$tmp/drift4.json" "$tmp/drift4.err")"
grep -q '"aws.instance.ghost"' "$tmp/drift4.json" || fail "stray instance not listed"
sim_ec2 TerminateInstances "InstanceId.1=$ghost" >/dev/null
sim_patch_object ec2 instance "$ghost" '{"attrs":{"state":"terminated"}}' >/dev/null
sim_inventory service=ec2 | grep -F -- "$ghost" >/dev/null || fail "terminated instance not visible (the filter is not tested)"
k drift --json >"$tmp/drift5.json" 2>&1 || fail "a terminated instance listed: $(cat "$tmp/drift5.json")"

echo "aws_list.sh: no-op plan: $noop requests ($((noop - 3)) without the 3 list calls)"
echo "aws_list.sh: ok"
