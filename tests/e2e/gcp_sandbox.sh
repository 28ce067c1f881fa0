#!/usr/bin/env bash
# tests/e2e/gcp_sandbox.sh: the GCP part of manifests/sandbox.yaml (providers
# .gcp and kms_vms) applied with kmsctl to kmsctl-sim, everything checked
# through the simulator's admin API: each object exactly once with the
# fields dstack-cloud gives it; a second apply makes zero mutating requests
# and uploads nothing; drift (firewall deleted, label changed, instance
# stopped) reported by `kmsctl drift` (exit 2, JSON with address and field)
# and repaired by apply; an upload whose connection drops resumes; a storm
# of 429/503 is survived; a 403 fails at once with Google's message;
# destroy leaves nothing carrying the deployment's label.
set -euo pipefail
. "$KC_SRC_DIR/tests/e2e/lib/sim.sh"

kc_tmpdir tmp

[ -f "$KC_SRC_DIR/.sandbox/images/dstack-sandbox-0.1.0/disk.raw" ] ||
    fail "the sandbox OS image is not built (cmake target sandbox_image)"
KMSCTL_SIM_GCP_OP_MS=2,10 sim_start gcp 21
# user_config is secret: this marker must reach the VM's .user-config only,
# never the state, the plan, the output or a --debug trace.
export KMSCTL_SANDBOX_SIM=$SIM_URL KMSCTL_SANDBOX_RPC=http://127.0.0.1:9/sekr1t-marker
# The GCP part of the sandbox manifest. Its relative paths become absolute
# (the manifest moves to $tmp), and KMS_CONTRACT_ADDR is given because the
# contracts section, which would supply it, is not part of this test.
python3 - "$KC_SRC_DIR" "$tmp/kms.yaml" <<'EOF'
import sys, yaml
src, out = sys.argv[1], sys.argv[2]
d = yaml.safe_load(open(src + '/manifests/sandbox.yaml'))
m = {'version': d['version'], 'name': d['name'],
     'providers': {'gcp': d['providers']['gcp']}, 'kms_vms': d['kms_vms']}
# Relative to the manifest's folder, as in sandbox.yaml (kmsctl runs from
# another folder below).
m['providers']['gcp']['credentials'] = 'creds/gcp-service-account.json'
for vm in m['kms_vms'].values():
    vm['image_search_paths'] = [src + '/.sandbox/images']
    vm.setdefault('compose', {}).setdefault('env', {})['KMS_CONTRACT_ADDR'] = '0x' + '12' * 20
yaml.safe_dump(m, open(out, 'w'), sort_keys=False)
EOF
mkdir "$tmp/creds"
cp "$KC_SRC_DIR/tests/sim/creds/gcp-service-account.json" "$tmp/creds/"
cd "$tmp"
K() { (cd / && "$KMSCTL" "$@" -f "$tmp/kms.yaml"); }
inv() { sim_inventory 'service=gcp'; }
UPLOAD='POST /gcp/storage/upload/storage/v1/b/{bucket}/o'

# --- apply ---
K apply --auto-approve --debug >"$tmp/apply1.log" 2>&1 || { cat "$tmp/apply1.log"; fail "first apply"; }
grep -l 'sekr1t-marker' "$tmp/apply1.log" .kmsctl/sandbox.state.json && fail "user_config secret leaked"
grep -l 'ya29\.\|BEGIN PRIVATE KEY' "$tmp/apply1.log" .kmsctl/sandbox.state.json && fail "a token or key leaked"
grep -q 'user_config: (sensitive)' "$tmp/apply1.log" || fail "plan does not mark user_config sensitive"
grep -q 'POST .*/gcp/oauth2/token' "$tmp/apply1.log" || fail "no --debug trace to check"
inv >"$tmp/inv.json"
q() { js "$1" <"$tmp/inv.json"; }
[ "$(q '" ".join(sorted(o["kind"]+":"+o["name"] for o in d))')" = \
  "disk:dstack-kms disk:dstack-kms-data disk:$(q '[o["name"] for o in d if o["name"].startswith("dstack-kms-shared-")][0]') firewall:dstack-kms-allow-tcp-12001 firewall:dstack-kms-allow-tcp-18000 image:dstack-data-disk image:dstack-kms-shared image:dstack-sandbox-0-1-0 instance:dstack-kms object:kmsctl-sandbox-images/dstack-data-disk.tar.gz object:kmsctl-sandbox-images/dstack-kms-shared.tar.gz object:kmsctl-sandbox-images/dstack-sandbox-0-1-0.tar.gz" ] ||
    fail "inventory: $(q '" ".join(sorted(o["kind"]+":"+o["name"] for o in d))')"
I='[o for o in d if o["kind"]=="instance"][0]["attrs"]'
[ "$(q "$I[\"confidentialInstanceConfig\"][\"confidentialInstanceType\"]")" = TDX ] || fail "not TDX"
[ "$(q "$I[\"scheduling\"][\"onHostMaintenance\"]")" = TERMINATE ] || fail "not TERMINATE"
[ "$(q "$I[\"machineType\"].rsplit(\"/\",1)[1]")" = c3-standard-4 ] || fail "machine type"
[ "$(q "\",\".join(x[\"deviceName\"]+\"=\"+str(x[\"autoDelete\"]) for x in $I[\"disks\"])")" = \
  "boot=True,data=False,shared=True" ] || fail "disks: $(q "$I[\"disks\"]")"
[ "$(q "\",\".join($I[\"tags\"][\"items\"])")" = fw-dstack-kms ] || fail "tags"
[ "$(q "$I[\"labels\"][\"kmsctl-deployment\"]")" = sandbox ] || fail "ownership label"
[ "$(q '[o for o in d if o["name"]=="dstack-sandbox-0-1-0" and o["kind"]=="image"][0]["attrs"]["guestOsFeatures"]')" = \
  "[{'type': 'UEFI_COMPATIBLE'}, {'type': 'TDX_CAPABLE'}, {'type': 'GVNIC'}]" ] || fail "boot image features"
[ "$(q '[o for o in d if o["name"]=="dstack-kms-shared"][0]["attrs"]["guestOsFeatures"]')" = \
  "[{'type': 'GVNIC'}]" ] || fail "shared image features"
[ "$(q '[o for o in d if o["name"]=="dstack-kms-data"][0]["attrs"]["sizeGb"]')" = 1 ] || fail "data_size"
[ "$(q '[o for o in d if o["name"]=="dstack-kms-allow-tcp-12001"][0]["attrs"]["sourceRanges"]')" = "['0.0.0.0/0']" ] ||
    fail "12001 ranges"
[ "$(q '[o for o in d if o["name"]=="dstack-kms-allow-tcp-18000"][0]["attrs"]["sourceRanges"]')" = "['127.0.0.0/8']" ] ||
    fail "18000 ranges"
[ "$(q '[o for o in d if o["name"]=="dstack-kms-allow-tcp-18000"][0]["attrs"]["targetTags"]')" = "['fw-dstack-kms']" ] ||
    fail "firewall tag"

# --- kmsctl logs: the serial port output, and --follow ---
K logs dstack-kms >"$tmp/logs.out" || fail "logs"
grep -q 'app-compose.sh: starting containers' "$tmp/logs.out" || fail "logs: $(cat "$tmp/logs.out")"
set +e
K logs no-such-vm 2>"$tmp/logs.err"
rc=$?
set -e
[ $rc = 1 ] && grep -q "no kms_vms entry 'no-such-vm'" "$tmp/logs.err" || fail "logs of a missing VM"

# --- a second apply: nothing mutating, nothing uploaded ---
m1=$(sim_count mutating)
u1=$(sim_route_count "$UPLOAD")
K apply --auto-approve >"$tmp/apply2.log" 2>&1 || { cat "$tmp/apply2.log"; fail "second apply"; }
[ "$(sim_count mutating)" = "$m1" ] || fail "second apply mutated: $m1 -> $(sim_count mutating)"
[ "$(sim_route_count "$UPLOAD")" = "$u1" ] || fail "second apply uploaded"
K drift >/dev/null || fail "drift after apply"

# --- drift injected through the admin API ---
sim_delete_object gcp firewall dstack-kms-allow-tcp-12001 >/dev/null
sim_patch_object gcp instance dstack-kms '{"labels":{"kmsctl-deployment":"mallory"},"attrs":{"status":"TERMINATED"}}' >/dev/null
set +e
K drift --json >"$tmp/drift.json"
rc=$?
set -e
[ $rc = 2 ] || fail "drift exit $rc, expected 2"
d() { js "$1" <"$tmp/drift.json"; }
[ "$(d 'sorted(x["address"]+"/"+str(x["field"]) for x in d["differences"])')" = \
  "['gcp.firewall.dstack-kms-allow-tcp-12001/None', 'gcp.instance.dstack-kms/labels', 'gcp.instance.dstack-kms/running']" ] ||
    fail "drift JSON: $(cat "$tmp/drift.json")"
# A follower sees the boot lines of the restart that repairs the drift.
bg_start "$tmp/follow.out" "$KMSCTL" logs dstack-kms --follow -f kms.yaml
K apply --auto-approve >"$tmp/apply3.log" 2>&1 || { cat "$tmp/apply3.log"; fail "repair"; }
boots() { [ "$(grep -c 'app-compose.sh: starting containers' "$tmp/follow.out")" -ge 2 ]; }
wait_until 60 boots || fail "the follower did not see the restart: $(cat "$tmp/follow.out")"
bg_kill INT
[ $rc = 130 ] || fail "logs --follow exit $rc after Ctrl-C"
[ "$(grep -c 'app-compose.sh: starting containers' "$tmp/follow.out")" = 2 ] ||
    fail "follow output: $(cat "$tmp/follow.out")"
inv >"$tmp/inv.json"
[ "$(q "$I[\"status\"]")" = RUNNING ] || fail "not started again"
[ "$(q "$I[\"labels\"][\"kmsctl-deployment\"]")" = sandbox ] || fail "label not set back"
[ "$(q 'len([o for o in d if o["name"]=="dstack-kms-allow-tcp-12001"])')" = 1 ] || fail "firewall not recreated"
K drift >/dev/null || fail "drift after repair"

# --- an upload cut by a dropped connection resumes, crc32c checked ---
sim_delete_object gcp image dstack-kms-shared >/dev/null
sim_delete_object gcp object kmsctl-sandbox-images/dstack-kms-shared.tar.gz >/dev/null
sim_faults '[{"match":"^PUT /gcp/storage/upload/","drop_after":true,"count":1}]'
p1=$(sim_route_count 'PUT /gcp/storage/upload/storage/v1/b/{bucket}/o')
K apply --auto-approve >"$tmp/apply4.log" 2>&1 || { cat "$tmp/apply4.log"; fail "apply with a dropped upload"; }
sim_clear_faults
[ "$(sim_route_count 'PUT /gcp/storage/upload/storage/v1/b/{bucket}/o')" -ge $((p1 + 2)) ] ||
    fail "no status query after the drop"
inv >"$tmp/inv.json"
[ "$(q '[o for o in d if o["name"]=="dstack-kms-shared"][0]["attrs"]["status"]')" = READY ] || fail "image not READY"
# The crc32c was checked twice: the simulator refuses to finish an upload
# whose bytes do not match the crc32c kmsctl announced from the local file,
# and kmsctl compares the stored object's crc32c with its own.
[ "$(q '[o for o in d if o["name"]=="kmsctl-sandbox-images/dstack-kms-shared.tar.gz"][0]["attrs"]["size"]')" -gt 0 ] ||
    fail "object missing"

# --- a storm of 429 and 503, with and without Retry-After ---
sim_faults '[{"match":"^GET /gcp/compute/","status":429,"retry_after":0,"count":3},
             {"match":"^GET /gcp/compute/","status":503,"count":3}]'
K plan >"$tmp/plan.log" 2>&1 || { cat "$tmp/plan.log"; fail "plan in a 429/503 storm"; }
sim_clear_faults
grep -q 'No changes' "$tmp/plan.log" || fail "storm plan: $(cat "$tmp/plan.log")"

# --- a 403 fails at once with Google's message ---
sed 's/project: kmsctl-sandbox/project: denied-sandbox/' kms.yaml >denied.yaml
t0=$(sim_count total)
set +e
"$KMSCTL" plan -f denied.yaml >"$tmp/denied.log" 2>&1
rc=$?
set -e
[ $rc = 1 ] || fail "403 plan exit $rc"
grep -q "Required 'compute\.[a-z]*\.get' permission for 'projects/denied-sandbox'" "$tmp/denied.log" ||
    fail "403 message: $(cat "$tmp/denied.log")"
# One token request plus at most one GET per resource and one list call per
# kind (firewalls, images, disks, instances): no retries.
[ $(($(sim_count total) - t0)) -le 12 ] || fail "403 was retried: $(($(sim_count total) - t0)) requests"

# --- kill -9 during apply, then apply again: converges, nothing twice ---
K destroy --auto-approve >"$tmp/destroy0.log" 2>&1 || { cat "$tmp/destroy0.log"; fail "destroy before kill test"; }
sim_faults '[{"match":".","latency_ms":[20,40]}]'
for delay in 0.3 0.6 0.9 1.2; do
    "$KMSCTL" apply -f kms.yaml --auto-approve >"$tmp/killed.log" 2>&1 &
    victim=$!
    sleep $delay
    kill -9 $victim 2>/dev/null || true
    wait $victim 2>/dev/null || true
    # A killed apply leaves its lock; kmsctl refuses to guess that it is
    # stale, the operator unlocks.
    if [ -e .kmsctl/sandbox.state.json.lock ]; then
        "$KMSCTL" state unlock --state .kmsctl/sandbox.state.json >/dev/null 2>&1 ||
            fail "unlock after kill -9"
    fi
done
sim_clear_faults
K apply --auto-approve >"$tmp/apply5.log" 2>&1 || { cat "$tmp/apply5.log"; fail "apply after kill -9"; }
inv >"$tmp/inv.json"
[ "$(q 'len([o for o in d if o["kind"]=="instance"])')" = 1 ] || fail "instances after kill -9"
[ "$(q 'len([o for o in d if o["kind"]=="image"])')" = 3 ] || fail "images after kill -9"
[ "$(q 'len([o for o in d if o["kind"]=="firewall"])')" = 2 ] || fail "firewalls after kill -9"
[ "$(q 'len([o for o in d if o["kind"]=="disk"])')" = 3 ] || fail "disks after kill -9: $(q '[o["name"] for o in d if o["kind"]=="disk"]')"
K drift >/dev/null || fail "drift after kill -9 and apply"
# An intent left by a killed run names an object that exists now (it was
# made): observe finds it, so nothing is sent twice.
python3 - .kmsctl/sandbox.state.json "$tmp/inv.json" <<'EOF2' || fail "an intent names a missing object"
import json, sys
st, inv = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
names = {o["name"] for o in inv}
for addr in st.get("intents", {}):
    assert addr.split(".", 2)[2] in names, addr
EOF2

# --- destroy: nothing labelled is left ---
K destroy --auto-approve >"$tmp/destroy.log" 2>&1 || { cat "$tmp/destroy.log"; fail "destroy"; }
[ "$(inv | js 'len([o for o in d if o["labels"].get("kmsctl-deployment")=="sandbox"])')" = 0 ] ||
    fail "labelled objects left: $(inv)"
[ "$(inv | js 'len(d)')" = 0 ] || fail "objects left: $(inv)"
python3 -c 'import json,sys; s=json.load(open(sys.argv[1])); assert not s.get("intents"), s["intents"]' \
    .kmsctl/sandbox.state.json || fail "intents left in the state after destroy"
sim_stop
if grep -E 'Sanitizer|runtime error' "$SIM_LOG" >&2; then fail "sanitizer report in the simulator"; fi
echo "gcp_sandbox: ok"
