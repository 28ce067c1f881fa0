#!/usr/bin/env bash
# tests/e2e/gcp_list.sh: list(op) of the GCP kinds. The GCP part of
# manifests/sandbox.yaml is applied (deployment "sandbox", VM dstack-kms);
# then a second copy with another VM name (other-kms) and a state of its own
# is applied too, so the project holds objects carrying the label
# kmsctl-deployment=sandbox that the first manifest and state do not know.
# `kmsctl drift --json` of the first exits 2 naming exactly those (firewall
# rules by their description mark, images/disks/instances by label; the
# boot and shared disks an instance makes belong to it and are not named);
# a no-op `kmsctl plan` costs one list call per kind (three pages each with
# KMSCTL_SIM_GCP_PAGE=2, the label filter sent); the simulator refuses a
# filter it does not know with a 400 as Compute does.
set -euo pipefail
. "$KC_SRC_DIR/tests/e2e/lib/sim.sh"

kc_tmpdir tmp

[ -f "$KC_SRC_DIR/.sandbox/images/dstack-sandbox-0.1.0/disk.raw" ] ||
    fail "the sandbox OS image is not built (cmake target sandbox_image)"
KMSCTL_SIM_GCP_PAGE=2 KMSCTL_SIM_GCP_OP_MS=2,10 sim_start gcp 23
export KMSCTL_SANDBOX_SIM=$SIM_URL KMSCTL_SANDBOX_RPC=http://127.0.0.1:9/
# mk DIR VMNAME: the GCP part of the sandbox manifest in DIR, its VM renamed.
mk() {
    mkdir -p "$1/creds"
    cp "$KC_SRC_DIR/tests/sim/creds/gcp-service-account.json" "$1/creds/"
    python3 - "$KC_SRC_DIR" "$1/kms.yaml" "$2" <<'PY'
import sys, yaml
src, out, vm = sys.argv[1], sys.argv[2], sys.argv[3]
d = yaml.safe_load(open(src + '/manifests/sandbox.yaml'))
vms = {vm: list(d['kms_vms'].values())[0]}
m = {'version': d['version'], 'name': d['name'],
     'providers': {'gcp': d['providers']['gcp']}, 'kms_vms': vms}
m['providers']['gcp']['credentials'] = 'creds/gcp-service-account.json'
for v in vms.values():
    v['image_search_paths'] = [src + '/.sandbox/images']
    v.setdefault('compose', {}).setdefault('env', {})['KMS_CONTRACT_ADDR'] = '0x' + '12' * 20
yaml.safe_dump(m, open(out, 'w'), sort_keys=False)
PY
}
mk "$tmp/a" dstack-kms
mk "$tmp/b" other-kms
KA() { (cd / && "$KMSCTL" "$@" -f "$tmp/a/kms.yaml"); }
KB() { (cd / && "$KMSCTL" "$@" -f "$tmp/b/kms.yaml"); }
LIST_ROUTES=("GET /gcp/compute/v1/projects/{project}/global/firewalls"
    "GET /gcp/compute/v1/projects/{project}/global/images"
    "GET /gcp/compute/v1/projects/{project}/zones/{zone}/disks"
    "GET /gcp/compute/v1/projects/{project}/zones/{zone}/instances")
lists() { for r in "${LIST_ROUTES[@]}"; do printf '%s ' "$(sim_route_count "$r")"; done; }

KA apply --auto-approve >"$tmp/apply-a.log" 2>&1 || { cat "$tmp/apply-a.log"; fail "apply a"; }
KA drift --json >"$tmp/drift0.json" || fail "drift right after apply: $(cat "$tmp/drift0.json")"

# --- a no-op plan: the requests it makes, list calls among them ---
t0=$(sim_count total); l0=$(lists)
KA plan >"$tmp/plan.out" 2>&1 || { cat "$tmp/plan.out"; fail "no-op plan"; }
t1=$(sim_count total); l1=$(lists)
grep -q 'No changes' "$tmp/plan.out" || grep -qi 'no changes\|in sync\|nothing to do' "$tmp/plan.out" ||
    fail "plan is not a no-op: $(cat "$tmp/plan.out")"
python3 - "$l0" "$l1" <<'PY' || fail "list calls of a no-op plan: before '$l0' after '$l1'"
import sys
a = [int(x) for x in sys.argv[1].split()]; b = [int(x) for x in sys.argv[2].split()]
d = [y - x for x, y in zip(a, b)]
# firewalls: 2 rules (1 page); images: 3 labelled (2 pages); disks: 3 (2
# pages); instances: 1 (1 page). Exactly that, each list once per kind.
assert d == [1, 2, 2, 1], d
PY
echo "no-op plan: $((t1 - t0)) requests, list calls per kind (fw img disk inst) delta: $l0-> $l1"

# --- a state rm'd resource also removed from the manifest is unmanaged ---
python3 - "$tmp/a/kms.yaml" <<'PY'
import sys, yaml
p = sys.argv[1]; m = yaml.safe_load(open(p))
vm = m['kms_vms']['dstack-kms']
vm['firewall'] = [f for f in vm['firewall'] if f['port'] != 12001]
yaml.safe_dump(m, open(p, 'w'), sort_keys=False)
PY
KA state rm gcp.firewall.dstack-kms-allow-tcp-12001 >/dev/null || fail "state rm"
set +e
KA drift --json >"$tmp/drift2.json"
rc=$?
set -e
[ $rc = 2 ] || fail "drift exit $rc after state rm"
# (The instance's own changes from the manifest edit are cause "manifest".)
[ "$(js '[(x["address"], x["field"]) for x in d["differences"] if x["cause"] == "external"]' <"$tmp/drift2.json")" = \
  "[('gcp.firewall.dstack-kms-allow-tcp-12001', None)]" ] ||
    fail "drift after state rm: $(cat "$tmp/drift2.json")"

# --- objects of the same deployment that this state does not know ---
KB apply --auto-approve >"$tmp/apply-b.log" 2>&1 || { cat "$tmp/apply-b.log"; fail "apply b"; }
set +e
KA drift --json >"$tmp/drift.json"
rc=$?
set -e
[ $rc = 2 ] || fail "drift exit $rc, expected 2: $(cat "$tmp/drift.json")"
d() { js "$1" <"$tmp/drift.json"; }
UNM='sorted(x["address"] for x in d["differences"] if x["cause"] == "external" and x["field"] is None and x["actual"] == "present")'
[ "$(d "$UNM")" = \
  "['gcp.disk.other-kms-data', 'gcp.firewall.dstack-kms-allow-tcp-12001', 'gcp.firewall.other-kms-allow-tcp-12001', 'gcp.firewall.other-kms-allow-tcp-18000', 'gcp.image.other-kms-shared', 'gcp.instance.other-kms']" ] ||
    fail "drift JSON: $(cat "$tmp/drift.json")"
[ "$(d 'd["external"]')" = True ] || fail "not external"
# The plan names them too (not managed) and plans nothing for them.
KA plan --json >"$tmp/plan.json" || true
[ -s "$tmp/plan.json" ] || fail "plan with unmanaged objects"
[ "$(js 'sorted(u["address"] for u in d["unmanaged"])' <"$tmp/plan.json")" = \
  "['gcp.disk.other-kms-data', 'gcp.firewall.dstack-kms-allow-tcp-12001', 'gcp.firewall.other-kms-allow-tcp-12001', 'gcp.firewall.other-kms-allow-tcp-18000', 'gcp.image.other-kms-shared', 'gcp.instance.other-kms']" ] ||
    fail "plan unmanaged: $(cat "$tmp/plan.json")"
# The other state sees the first deployment's objects the same way.
set +e
KB drift --json >"$tmp/driftb.json"
rc=$?
set -e
[ $rc = 2 ] || fail "drift b exit $rc"
[ "$(js "$UNM" <"$tmp/driftb.json")" = \
  "['gcp.disk.dstack-kms-data', 'gcp.firewall.dstack-kms-allow-tcp-12001', 'gcp.firewall.dstack-kms-allow-tcp-18000', 'gcp.image.dstack-kms-shared', 'gcp.instance.dstack-kms']" ] ||
    fail "drift b JSON: $(cat "$tmp/driftb.json")"

# --- the simulator refuses filters it does not implement, like Compute ---
python3 - "$SIM_URL" "$KC_SRC_DIR/tests/sim/creds/gcp-service-account.json" <<'PY' || fail "filter checks"
import base64, json, sys, time, urllib.error, urllib.parse, urllib.request
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
url, keyf = sys.argv[1], sys.argv[2]
sa = json.load(open(keyf))
b64 = lambda b: base64.urlsafe_b64encode(b).rstrip(b'=')
now = int(time.time())
claims = {'iss': sa['client_email'], 'aud': url + '/gcp/oauth2/token',
          'scope': 'https://www.googleapis.com/auth/cloud-platform',
          'iat': now, 'exp': now + 600}
head = b64(json.dumps({'alg': 'RS256', 'typ': 'JWT'}).encode()) + b'.' + \
    b64(json.dumps(claims).encode())
key = serialization.load_pem_private_key(sa['private_key'].encode(), None)
jwt = head + b'.' + b64(key.sign(head, padding.PKCS1v15(), hashes.SHA256()))
form = urllib.parse.urlencode({'grant_type': 'urn:ietf:params:oauth:grant-type:jwt-bearer',
                               'assertion': jwt.decode()}).encode()
tok = json.load(urllib.request.urlopen(url + '/gcp/oauth2/token', form))['access_token']
def get(flt):
    q = urllib.parse.urlencode({'filter': flt, 'maxResults': '500'})
    r = urllib.request.Request(url + '/gcp/compute/v1/projects/kmsctl-sandbox/global/images?' + q,
                               headers={'Authorization': 'Bearer ' + tok})
    try:
        return 200, json.load(urllib.request.urlopen(r))
    except urllib.error.HTTPError as e:
        return e.code, json.load(e)
code, b = get('labels.kmsctl-deployment=sandbox')
assert code == 200, (code, b)
names = sorted(i['name'] for i in b.get('items', []))
assert names == ['dstack-data-disk', 'dstack-kms-shared', 'dstack-sandbox-0-1-0', 'other-kms-shared'], names
code, b = get('labels.kmsctl-deployment = "nobody"')
assert code == 200 and not b.get('items'), (code, b)
for bad in ['labels.kmsctl-deployment != sandbox', 'labels.kmsctl-deployment:*',
            'labels.kmsctl-deployment=sandbox AND name=x', '(labels.a=b)',
            'description eq .*kmsctl.*', 'labels.a >= b']:
    code, b = get(bad)
    assert code == 400 and b['error']['code'] == 400, (bad, code, b)
print('filter: 1 accepted form, %d refused with 400' % 6)
PY
echo PASS
