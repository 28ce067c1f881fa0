#!/usr/bin/env bash
# tests/e2e/aws_nitro.sh: the nitro_hosts part of manifests/sandbox.yaml
# applied to kmsctl-sim's EC2, checked through the admin API; a second apply
# makes no mutating request; drift injected through the admin API is reported
# by `kmsctl drift` and repaired by apply; a terminated host is re-created
# while the RunInstances answer is dropped, and exactly one instance results;
# destroy leaves nothing tagged with the deployment (terminated instances
# stay visible for a while, as in EC2).
set -euo pipefail

: "${KC_SRC_DIR:?}" "${KMSCTL:?}"
. "$KC_SRC_DIR/tests/e2e/lib/sim.sh"

kc_tmpdir tmp
sim_start ec2 11
export KMSCTL_SANDBOX_SIM=$SIM_URL


# The manifest: name, providers.aws and nitro_hosts of the sandbox manifest
# (the app reference is dropped: no contracts here). Paths in it are
# relative to manifests/, so the same tree is laid out under $tmp.
mkdir -p "$tmp/manifests" "$tmp/tests/sim/creds"
cp "$KC_SRC_DIR/tests/sim/creds/aws-credentials" "$tmp/tests/sim/creds/"
m=$tmp/manifests/nitro.yaml
if [ -f "$KC_SRC_DIR/manifests/sandbox.yaml" ]; then
    awk '
        /^name:/ { print "version: 1"; print; next }
        /^providers:/ { print; inprov = 1; next }
        inprov && /^  aws:/ { inaws = 1; print; next }
        inprov && /^  [a-z]/ { inaws = 0 }
        inaws && /^    / { print; next }
        /^nitro_hosts:/ { innitro = 1; inprov = 0; print; next }
        /^[a-z]/ { innitro = 0; if (!/^providers:/) inprov = 0 }
        innitro && !/^    app:/ { print }
    ' "$KC_SRC_DIR/manifests/sandbox.yaml" >"$m"
    if [ -f "$KC_SRC_DIR/manifests/sandbox-ssh.pub" ]; then
        cp "$KC_SRC_DIR/manifests/sandbox-ssh.pub" "$tmp/manifests/"
    fi
else
    cat >"$m" <<'EOF'
version: 1
name: sandbox
providers:
  aws:
    region: us-east-1
    credentials_file: ../tests/sim/creds/aws-credentials
    profile: default
    endpoint: "${env:KMSCTL_SANDBOX_SIM}/ec2"
    imds_endpoint: "${env:KMSCTL_SANDBOX_SIM}/imds"
nitro_hosts:
  enclave-host:
    instance_type: c5.xlarge
    enclave: {cpu_count: 2, memory_mib: 512}
    ssh:
      key_name: kmsctl-sandbox
      public_key: ./sandbox-ssh.pub
      from: [198.51.100.7/32]
    root_volume: {size_gb: 8, type: gp3}
EOF
fi
if [ ! -f "$tmp/manifests/sandbox-ssh.pub" ]; then
    ssh-keygen -q -t ed25519 -N '' -C kmsctl-sandbox -f "$tmp/key"
    cp "$tmp/key.pub" "$tmp/manifests/sandbox-ssh.pub"
fi
grep -q '^nitro_hosts:' "$m" || fail "no nitro_hosts in $m"
grep -q 'enclave-host' "$m" || fail "no enclave-host in $m"

# kmsctl runs in the manifest's folder: providers.aws.credentials_file is
# read relative to the working directory.
cd "$tmp/manifests"
k() { "$KMSCTL" "$@" -f nitro.yaml; }

inv() { sim_inventory service=ec2 >"$tmp/inv.json"; }
# py EXPR...: runs python over the inventory ($tmp/inv.json as `inv`).
py() {
    python3 - "$tmp/inv.json" "$@" <<'EOF'
import json, sys
inv = json.load(open(sys.argv[1]))
ours = [o for o in inv if o["labels"].get("kmsctl-deployment") == "sandbox"]
def kind(k, objs=inv):
    return [o for o in objs if o["kind"] == k]
live = [o for o in kind("instance", ours) if o["attrs"]["state"] != "terminated"]
exec(sys.argv[2])
EOF
}

# --- 1. apply ---------------------------------------------------------------
k plan >"$tmp/plan.txt" 2>&1 || fail "plan: $(cat "$tmp/plan.txt")"
grep -q 'aws.instance.enclave-host' "$tmp/plan.txt" || fail "plan lacks the instance"
# ImportKeyPair's answer is lost once: the retry meets InvalidKeyPair.Duplicate
# and adopts the key it made.
sim_patch_object ec2 config faults '{"attrs":{"drop_after":{"ImportKeyPair":1}}}' >/dev/null
k apply --auto-approve >"$tmp/apply1.txt" 2>&1 || fail "apply: $(cat "$tmp/apply1.txt")"
[ "$(sim_route_count 'POST /ec2/?Action=ImportKeyPair')" = 2 ] ||
    fail "ImportKeyPair not sent twice: $(cat "$tmp/apply1.txt")"
inv
py '
assert len(live) == 1, live
i = live[0]["attrs"]
assert i["enclave"] == 1, "EnclaveOptions not enabled"
assert i["httpTokens"] == "required", i["httpTokens"]
assert i["instanceType"] == "c5.xlarge"
amis = {o["name"]: o["attrs"]["name"] for o in kind("image")}
assert amis[i["imageId"]] == "al2023-ami-2023.7.20250512.0-kernel-6.1-x86_64", amis[i["imageId"]]
ud = i["userDataDecoded"]
assert ud.startswith("#cloud-config\n"), ud
for s in ("aws-nitro-enclaves-cli", "aws-nitro-enclaves-cli-devel", "docker",
          "/etc/nitro_enclaves/allocator.yaml", "memory_mib: 512",
          "cpu_count: 2", "nitro-enclaves-allocator.service",
          "usermod, -aG, \x27ne,docker\x27, \x27ec2-user\x27"):
    assert s in ud, s
assert i["rootVolumeSize"] == "8" and i["rootVolumeType"] == "gp3"
labels = live[0]["labels"]
assert labels["Name"] == "enclave-host", labels
assert labels["kmsctl-address"] == "aws.instance.enclave-host", labels
sgs = [o for o in kind("security_group") if o["attrs"]["groupName"] != "default"]
assert len(sgs) == 1, sgs
sg = sgs[0]
assert i["securityGroups"] == [sg["name"]], (i["securityGroups"], sg["name"])
rules = [(r["protocol"], r["from"], r["to"], r["cidr"]) for r in sg["attrs"]["ingress"]]
assert rules == [("tcp", 22, 22, "198.51.100.7/32")], rules
assert sg["labels"]["kmsctl-deployment"] == "sandbox"
default = [o for o in kind("security_group") if o["attrs"]["groupName"] == "default"][0]
assert default["attrs"]["ingress"] == [], "the default group was touched"
keys = kind("key_pair")
assert [o["name"] for o in keys] == ["kmsctl-sandbox"], keys
assert i["keyName"] == "kmsctl-sandbox"
print(keys[0]["attrs"]["fingerprint"])
' >"$tmp/fp.txt" || fail "inventory after apply"
want_fp=$(ssh-keygen -l -E sha256 -f sandbox-ssh.pub | awk '{print $2}')
[ "SHA256:$(cat "$tmp/fp.txt")" = "$want_fp" ] ||
    fail "key fingerprint $(cat "$tmp/fp.txt") is not $want_fp"

# --- 2. a second apply changes nothing ---------------------------------------
before=$(sim_count mutating)
k apply --auto-approve >"$tmp/apply2.txt" 2>&1 || fail "apply 2: $(cat "$tmp/apply2.txt")"
after=$(sim_count mutating)
[ "$before" = "$after" ] || fail "second apply made $((after - before)) mutating requests"
k drift >"$tmp/drift0.txt" 2>&1 || fail "drift after apply: $(cat "$tmp/drift0.txt")"

# --- 3. drift: stopped, tag removed, rule revoked ------------------------------
inv
iid=$(py 'print(live[0]["name"])')
sgid=$(py 'print([o["name"] for o in kind("security_group", ours)][0])')
sim_patch_object ec2 instance "$iid" '{"attrs":{"state":"stopped"},"labels":{"Name":null}}' >/dev/null
sim_patch_object ec2 security_group "$sgid" '{"attrs":{"ingress":[]}}' >/dev/null
set +e
k drift >"$tmp/drift1.txt" 2>&1
rc=$?
set -e
[ "$rc" = 2 ] || fail "drift exit $rc, not 2: $(cat "$tmp/drift1.txt")"
grep -q 'aws.instance.enclave-host state' "$tmp/drift1.txt" || fail "stop not reported: $(cat "$tmp/drift1.txt")"
grep -q 'aws.instance.enclave-host tags' "$tmp/drift1.txt" || fail "tag not reported"
grep -q 'aws.security_group.enclave-host ssh_from' "$tmp/drift1.txt" || fail "rule not reported"
k apply --auto-approve >"$tmp/apply3.txt" 2>&1 || fail "repair: $(cat "$tmp/apply3.txt")"
k drift >"$tmp/drift2.txt" 2>&1 || fail "still drifting: $(cat "$tmp/drift2.txt")"
inv
py '
assert len(live) == 1 and live[0]["attrs"]["state"] == "running", live
assert live[0]["labels"]["Name"] == "enclave-host"
sg = kind("security_group", ours)[0]
assert [r["cidr"] for r in sg["attrs"]["ingress"]] == ["198.51.100.7/32"], sg
' || fail "not repaired"

# --- 4. terminated outside: re-created once, though RunInstances' answer is lost
old_token=$(py 'print(live[0]["attrs"]["clientToken"])')
runs_before=$(sim_route_count 'POST /ec2/?Action=RunInstances')
sim_patch_object ec2 instance "$iid" '{"attrs":{"state":"terminated"}}' >/dev/null
sim_patch_object ec2 config faults '{"attrs":{"drop_after":{"RunInstances":1}}}' >/dev/null
k apply --auto-approve >"$tmp/apply4.txt" 2>&1 || fail "re-create: $(cat "$tmp/apply4.txt")"
runs_after=$(sim_route_count 'POST /ec2/?Action=RunInstances')
[ $((runs_after - runs_before)) -ge 2 ] || fail "RunInstances was not sent again after the lost answer"
inv
py "
assert len(live) == 1, [o['name'] for o in live]
assert live[0]['name'] != '$iid'
assert live[0]['attrs']['clientToken'] != '$old_token', 'token reused'
" || fail "not exactly one new instance"
k drift >"$tmp/drift3.txt" 2>&1 || fail "drift after re-create: $(cat "$tmp/drift3.txt")"

# --- 5. destroy ---------------------------------------------------------------
k destroy --auto-approve >"$tmp/destroy.txt" 2>&1 || fail "destroy: $(cat "$tmp/destroy.txt")"
inv
py '
left = [(o["kind"], o["name"]) for o in ours
        if not (o["kind"] == "instance" and o["attrs"]["state"] == "terminated")]
assert left == [], left
assert kind("key_pair") == [], "key pair left"
' || fail "destroy left objects"
echo "aws_nitro.sh: ok"
