#!/usr/bin/env bash
# tests/e2e/envkms.sh: key_provider kms through plan/apply/drift/destroy,
# against kmsctl-sim (service gcp over HTTP; service kms, the KMS emulator,
# over HTTPS with a test CA) and anvil (contracts.kms gives
# KMS_CONTRACT_ADDR):
#
#   1. a wrong kms_k256_pubkey pin fails the first apply before any mutating
#      request, naming kms_vms.<vm>.env_encryption and the KMS URL;
#   2. apply: the shared image uploaded to the simulated bucket holds
#      .encrypted-env (read out of the FAT image here), which decrypts, with
#      Python's cryptography (X25519 + AES-GCM, tag checked) and the
#      emulator's test secret for the VM's app id, to the manifest's env;
#      `kmsctl render` with the state writes the same .encrypted-env bytes;
#   3. plan says No changes, a second apply makes zero mutating requests,
#      drift exits 0;
#   3b. the KMS's answer signed with a timestamp an hour in the past or in
#      the future (emulator knob): plan, apply and render fail naming
#      kms_vms.<vm>.env_encryption, the URL and both times, zero mutating
#      requests, state untouched, nothing rendered; 2 minutes old passes;
#   4. one env value changed: the plan replaces the shared image and updates
#      the VM in place (shared disk swap), the value shown (sensitive); apply;
#      drift before that apply exits 4 (cause manifest); the new
#      .encrypted-env decrypts to the new value;
#   5. the KMS's env key rotated (emulator), nobody edited the manifest:
#      drift exits 2 (changed outside kmsctl) with an external difference
#      dstack.encrypted_env.<vm> public_key, last applied key -> the KMS's
#      current one; the plan changes the shared image again and apply
#      repairs it (decrypts with the new key; drift 0 after); an
#      unreachable KMS fails the plan naming the URL, state untouched;
#   6. the env secret values appear nowhere in the state, the plan JSON or
#      --debug output (as text, hex and base64);
#   7. destroy works (the KMS is not needed for it).
# KC_ENVKMS_KEEP=1 keeps the work folder.
set -euo pipefail

: "${KMSCTL:?}" "${KC_SRC_DIR:?}" "${KC_BUILD_DIR:?}"
export KMSCTL_SIM=${KMSCTL_SIM:-$KC_BUILD_DIR/kmsctl-sim}
ARTIFACTS=$KC_BUILD_DIR/artifacts IMAGES=$KC_SRC_DIR/.sandbox/images
[ -e "$ARTIFACTS/contracts/DstackKms.sol/DstackKms.json" ] && [ -e "$IMAGES/dstack-sandbox-0.1.0/disk.raw" ] ||
    { echo "FAIL: build the test_contracts and sandbox_image targets first" >&2; exit 1; }
. "$KC_SRC_DIR/tests/e2e/lib/sim.sh"
. "$KC_SRC_DIR/tests/e2e/lib/anvil.sh"

w=$(mktemp -d "${TMPDIR:-/tmp}/kc-envkms.XXXXXX")
KMS_PID=
kms_stop() {
    local keep=${SIM_PID:-}
    SIM_PID=$KMS_PID
    sim_stop
    KMS_PID=
    SIM_PID=$keep
}
# Run by lib/common.sh's one EXIT trap (kc_on_exit), also when a server
# fails to start; the exit code stays the test's.
cleanup() {
    anvil_stop
    sim_stop
    kms_stop
    if [ "$KC_EXIT_RC" = 0 ] && [ -z "${KC_ENVKMS_KEEP:-}" ]; then rm -rf "$w" "${SIM_LOG:-}" "${KMS_LOG:-}"; else echo "envkms.sh: files kept in $w" >&2; fi
}
kc_on_exit cleanup
fail() {
    echo "FAIL: $*" >&2
    exit 1
}
step() { echo "--- $*"; }
cd "$w"

# The KMS emulator, HTTPS with a certificate of its own (the manifest's
# ca_file).
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -keyout tls.key -out tls.crt -subj /CN=localhost \
    -addext subjectAltName=DNS:localhost,IP:127.0.0.1 -days 2 2>/dev/null
CURL_CA_BUNDLE=$w/tls.crt sim_start kms 1 --tls-cert tls.crt --tls-key tls.key
KMS_PID=$SIM_PID KMS_LOG=$SIM_LOG KMS_URL="https://localhost:$SIM_PORT"
SIM_PID=
kms() { curl -sS -f --cacert "$w/tls.crt" "$@"; }
PIN=0x$(kms -X POST "$KMS_URL/prpc/KMS.GetMeta?json" | python3 -c 'import json,sys; print(json.load(sys.stdin)["k256_pubkey"])')
OTHER=0x0279be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798

KMSCTL_SIM_GCP_OP_MS=2,10 sim_start gcp 5
anvil_start

mkdir creds
cp "$KC_SRC_DIR/tests/sim/creds/gcp-service-account.json" creds/
export KC_ENV_SECRET="envkms-S3cr3t-value-7781"
export KC_ENV_TOKEN='tok"en-envkms\q'
export KC_CHAIN_KEY=$ANVIL_KEY0
manifest() { # $1 pinned key, $2 kms_url
    cat >kms.yaml <<EOF
version: 1
name: envkms
providers:
  gcp:
    project: envkms-proj
    zone: us-central1-a
    bucket: envkms-bucket
    credentials: creds/gcp-service-account.json
    endpoints:
      oauth: "$SIM_URL/gcp/oauth2/token"
      compute: "$SIM_URL/gcp/compute/v1"
      storage: "$SIM_URL/gcp/storage"
      metadata: "$SIM_URL/gcp/metadata"
  chain:
    rpc_url: "$ANVIL_URL"
    chain_id: 31337
    private_key: "\${env:KC_CHAIN_KEY}"
    tx_timeout: 10s
contracts:
  artifacts: $ARTIFACTS
  kms: {}
kms_vms:
  dstack-kms:
    os_image: dstack-sandbox-0.1.0
    image_search_paths: [$IMAGES]
    key_provider: kms
    domain: kms.envkms.test
    mode: direct
    compose: {template: direct, env: {KMS_IMAGE: "kms:1", ETH_RPC_URL: "$ANVIL_URL"}}
    app_compose: {allowed_envs: [API_SECRET, TOKEN]}
    env_encryption:
      kms_url: "$2"
      kms_k256_pubkey: "$1"
      ca_file: ./tls.crt
      env:
        API_SECRET: "\${env:KC_ENV_SECRET}"
        TOKEN: "\${env:KC_ENV_TOKEN}"
    firewall: [{port: 12001}]
    data_size: 1
    allow_identity_loss: true
EOF
}
K() { "$KMSCTL" "$@" -f kms.yaml --state "$w/state.json"; }

# The .encrypted-env of the shared image in the simulated bucket, decrypted
# with the emulator's test secret for the VM's app id; prints the env JSON.
decrypt_shared() {
    local tok app
    tok=$(curl -sS -f -H 'Metadata-Flavor: Google' \
        "$SIM_URL/gcp/metadata/computeMetadata/v1/instance/service-accounts/default/token" |
        python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')
    curl -sS -f -H "Authorization: Bearer $tok" -o shared.tar.gz \
        "$SIM_URL/gcp/storage/storage/v1/b/envkms-bucket/o/dstack-kms-shared.tar.gz?alt=media"
    rm -rf shared && mkdir shared && tar -xzf shared.tar.gz -C shared
    app=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["generated"]["kms_vms.dstack-kms.app_id"])' state.json)
    kms "$KMS_URL/kms-sim/env-secret/$app" >secret.json
    # Debian's python3 (scripts/deps.sh installs python3-cryptography for it),
    # not whichever python3 comes first on PATH.
    /usr/bin/python3 - shared/disk.raw secret.json <<'PY'
import json, struct, sys
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
img = open(sys.argv[1], 'rb').read()
bps, spc, res, nfats = struct.unpack_from('<HBHB', img, 11)
fatsz, root = struct.unpack_from('<I', img, 36)[0], struct.unpack_from('<I', img, 44)[0]
data = (res + nfats * fatsz) * bps
def chain(c):
    while c < 0x0FFFFFF8:
        yield c
        c = struct.unpack_from('<I', img, res * bps + 4 * c)[0] & 0x0FFFFFFF
def read(c, size=None):
    b = b''.join(img[data + (x - 2) * spc * bps: data + (x - 1) * spc * bps] for x in chain(c))
    return b if size is None else b[:size]
files, lfn = {}, {}
d = read(root)
for off in range(0, len(d), 32):
    e = d[off:off + 32]
    if e[0] == 0:
        break
    if e[0] == 0xE5:
        continue
    if e[11] == 0x0F:
        lfn[e[0] & 0x1F] = (e[1:11] + e[14:26] + e[28:32]).decode('utf-16le').split('\0')[0]
        continue
    name = ''.join(lfn[k] for k in sorted(lfn)) if lfn else e[0:11].decode().strip()
    lfn = {}
    c = struct.unpack_from('<H', e, 20)[0] << 16 | struct.unpack_from('<H', e, 26)[0]
    files[name] = read(c, struct.unpack_from('<I', e, 28)[0])
enc = files['.encrypted-env']
sk = X25519PrivateKey.from_private_bytes(bytes.fromhex(json.load(open(sys.argv[2]))['private_key']))
key = sk.exchange(X25519PublicKey.from_public_bytes(enc[:32]))
print(AESGCM(key).decrypt(enc[32:44], enc[44:], None).decode())
PY
}
want_env() { # $1 API_SECRET, $2 TOKEN
    python3 -c 'import json,sys; print(json.dumps({"env": [{"key": "API_SECRET", "value": sys.argv[1]}, {"key": "TOKEN", "value": sys.argv[2]}]}, separators=(", ", ": ")))' "$1" "$2"
}
# Secrets as text, hex and base64 nowhere in these files.
no_secret() {
    local s f
    for s in "$KC_ENV_SECRET" "$KC_ENV_TOKEN" "$NEW_SECRET"; do
        for f in "$@"; do
            grep -aqF -- "$s" "$f" && fail "secret '$s' in $f"
            grep -aqiF -- "$(printf '%s' "$s" | xxd -p | tr -d '\n')" "$f" && fail "secret (hex) in $f"
            grep -aqF -- "$(printf '%s' "$s" | base64 -w0 | tr -d '=')" "$f" && fail "secret (base64) in $f"
        done
    done
    return 0
}
NEW_SECRET="envkms-R0tated-value-9902"

step "1. a wrong pin fails before any mutating request"
manifest "$OTHER" "$KMS_URL"
m0=$(sim_count mutating)
if K apply --auto-approve >wrong.out 2>&1; then fail "apply with a wrong pin succeeded"; fi
grep -q "kms_vms.dstack-kms.env_encryption: KMS $KMS_URL: env encryption key of the app is not signed by the pinned KMS key" wrong.out ||
    fail "wrong pin message: $(cat wrong.out)"
[ "$(sim_count mutating)" = "$m0" ] || fail "mutating requests despite a wrong pin"
[ "$(anvil_rpc eth_getTransactionCount "[\"$ANVIL_ADDR0\",\"latest\"]")" = 0x0 ] || fail "a transaction was sent despite a wrong pin"

step "2. apply: .encrypted-env on the shared image decrypts to the env"
manifest "$PIN" "$KMS_URL"
K apply --auto-approve --debug >apply1.log 2>&1 || { cat apply1.log; fail "first apply"; }
grep -q 'dstack.encrypted_env.dstack-kms' apply1.log || fail "no dstack.encrypted_env in the plan"
[ "$(decrypt_shared)" = "$(want_env "$KC_ENV_SECRET" "$KC_ENV_TOKEN")" ] || fail "decrypted env: $(decrypt_shared)"
python3 -c 'import json,sys; g=json.load(open(sys.argv[1]))["generated"]; s=g["kms_vms.dstack-kms.env_salt"]; assert len(s)==64 and int(s,16)>=0' state.json ||
    fail "no env_salt in the state's generated values"
sys_kms=$(python3 - shared/disk.raw <<'PY'
import sys
img = open(sys.argv[1], 'rb').read()
i = img.find(b'"kms_urls"')
print(img[i:img.find(b']', i) + 1].decode())
PY
)
case $sys_kms in *"$KMS_URL"*) ;; *) fail ".sys-config.json kms_urls: $sys_kms" ;; esac
# render with the state: the salt apply kept, so the very bytes apply wrote.
addr=$(K output contracts.kms.address)
K render dstack-kms --out rendered --set "contracts.kms.address=$addr" --json >render.json 2>render.err ||
    fail "render after apply: $(cat render.err)"
python3 -c 'import json,sys; assert json.load(open(sys.argv[1]))["encrypted_env_salt"] == "state"' render.json ||
    fail "render does not say it used the state's salt: $(cat render.json)"
python3 - shared/disk.raw rendered/.encrypted-env <<'PY' || fail "render's .encrypted-env is not the one on the applied shared image"
import sys
sys.exit(open(sys.argv[1], 'rb').read().find(open(sys.argv[2], 'rb').read()) < 0)
PY

step "3. plan: No changes; a second apply: zero mutating requests; drift 0"
K plan --json >plan2.json 2>plan2.err || { cat plan2.err; fail "plan"; }
K plan >plan2.txt 2>&1 || fail "plan text"
grep -q 'No changes' plan2.txt || fail "second plan: $(cat plan2.txt)"
m1=$(sim_count mutating)
K apply --auto-approve --debug >apply2.log 2>&1 || { cat apply2.log; fail "second apply"; }
[ "$(sim_count mutating)" = "$m1" ] || fail "second apply mutated: $m1 -> $(sim_count mutating)"
K drift >drift.out 2>&1 || fail "drift after apply: $(cat drift.out)"

step "3b. a stale or future signed timestamp fails plan, apply and render; a fresh one passes"
kms_offset() { kms -X POST -H 'Content-Type: application/json' -d "{\"offset\": $1}" "$KMS_URL/kms-sim/timestamp" >/dev/null; }
cp state.json state.fresh
m3=$(sim_count mutating)
for off in -3600 3600; do
    kms_offset "$off"
    if K plan >stale.out 2>&1; then fail "plan with a timestamp $off s off succeeded"; fi
    # 3599 to 3601 s: the emulator's and kmsctl's clocks read a second apart.
    grep -qE "kms_vms.dstack-kms.env_encryption: KMS $KMS_URL: GetAppEnvEncryptPubKey: the answer was signed at 20[0-9-]+T[0-9:]+Z, 3(599|600|601) s $( [ "$off" -lt 0 ] && echo before || echo after) local time 20[0-9-]+T[0-9:]+Z, more than the 600 s allowed" stale.out ||
        fail "stale answer message ($off s): $(cat stale.out)"
    if K apply --auto-approve >stale-apply.out 2>&1; then fail "apply with a timestamp $off s off succeeded"; fi
    grep -q "GetAppEnvEncryptPubKey: the answer was signed at" stale-apply.out || fail "stale answer, apply: $(cat stale-apply.out)"
    if K render dstack-kms --out stale-rendered --set "contracts.kms.address=$addr" >stale-render.out 2>&1; then
        fail "render with a timestamp $off s off succeeded"
    fi
    grep -q "kms_vms.dstack-kms.env_encryption: KMS $KMS_URL: GetAppEnvEncryptPubKey: the answer was signed at" stale-render.out ||
        fail "stale answer, render: $(cat stale-render.out)"
    [ ! -e stale-rendered/.encrypted-env ] || fail "render wrote .encrypted-env from a stale answer"
done
[ "$(sim_count mutating)" = "$m3" ] || fail "mutating requests despite a stale answer: $m3 -> $(sim_count mutating)"
cmp -s state.json state.fresh || fail "a stale answer changed the state"
kms_offset -120 # within the skew: a clock a little off is fine
K plan >fresh.txt 2>&1 || fail "plan with a timestamp 120 s old: $(cat fresh.txt)"
grep -q 'No changes' fresh.txt || fail "plan with a timestamp 120 s old: $(cat fresh.txt)"
kms_offset 0

step "4. one env value changed: shared image remade, VM updated in place"
export KC_ENV_SECRET_OLD=$KC_ENV_SECRET
KC_ENV_SECRET=$NEW_SECRET K plan --json >plan3.json 2>plan3.err || { cat plan3.err; fail "plan 3"; }
KC_ENV_SECRET=$NEW_SECRET K plan >plan3.txt 2>&1 || fail "plan 3 text"
python3 - plan3.json <<'PY' || fail "plan after an env change: $(cat plan3.txt)"
import json, sys
p = json.load(open(sys.argv[1]))
acts = {r['address']: r['action'] for r in p['resources']}
assert acts['gcp.image.dstack-kms-shared'] == 'replace', acts
assert acts['gcp.instance.dstack-kms'] == 'update', acts
assert acts['dstack.encrypted_env.dstack-kms'] == 'update', acts
PY
grep -q '(sensitive)' plan3.txt || fail "plan does not show (sensitive): $(cat plan3.txt)"
# drift: a commit not applied yet (exit 4, cause manifest), nothing external.
rc=0
KC_ENV_SECRET=$NEW_SECRET K drift --json >drift3.json 2>drift3.err || rc=$?
[ "$rc" = 4 ] || fail "drift after an env change: exit $rc: $(cat drift3.json drift3.err)"
python3 -c 'import json,sys; d=json.load(open(sys.argv[1]))["differences"]; assert all(x["cause"]=="manifest" for x in d) and any(x["address"]=="dstack.encrypted_env.dstack-kms" and x.get("field")=="env_encryption" for x in d), d' drift3.json ||
    fail "drift after an env change: $(cat drift3.json)"
m2=$(sim_count mutating)
KC_ENV_SECRET=$NEW_SECRET K apply --auto-approve --debug >apply3.log 2>&1 || { cat apply3.log; fail "apply 3"; }
[ "$(sim_count mutating)" != "$m2" ] || fail "the env change applied nothing"
[ "$(decrypt_shared)" = "$(want_env "$NEW_SECRET" "$KC_ENV_TOKEN")" ] || fail "decrypted env after the change"
sim_inventory 'service=gcp' | python3 -c 'import json,sys; d=json.load(sys.stdin); assert sum(1 for o in d if o["kind"]=="instance")==1' ||
    fail "the VM was replaced"
export KC_ENV_SECRET=$NEW_SECRET

step "5. the KMS's env key rotated: drift 2 (external), apply repairs; unreachable KMS"
# The KMS's env public key of the VM's app now (from the emulator's secret).
kms_pubkey() {
    local app
    app=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["generated"]["kms_vms.dstack-kms.app_id"])' state.json)
    kms "$KMS_URL/kms-sim/env-secret/$app" |
        /usr/bin/python3 -c 'import json,sys; from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey as K; from cryptography.hazmat.primitives import serialization as s; print(K.from_private_bytes(bytes.fromhex(json.load(sys.stdin)["private_key"])).public_key().public_bytes(s.Encoding.Raw, s.PublicFormat.Raw).hex())'
}
old_pk=$(kms_pubkey)
kms -X POST "$KMS_URL/kms-sim/rotate" >/dev/null
new_pk=$(kms_pubkey)
[ "$old_pk" != "$new_pk" ] || fail "the emulator did not rotate the key"
K plan --json >plan4.json 2>plan4.err || { cat plan4.err; fail "plan 4"; }
python3 -c 'import json,sys; a={r["address"]: r["action"] for r in json.load(open(sys.argv[1]))["resources"]}; assert a["gcp.image.dstack-kms-shared"]=="replace" and a["gcp.instance.dstack-kms"]=="update", a' plan4.json ||
    fail "plan after a key rotation: $(cat plan4.json)"
# drift: the world changed outside kmsctl (exit 2), not an undeployed commit.
rc=0
K drift --json >drift4.json 2>drift4.err || rc=$?
[ "$rc" = 2 ] || fail "drift after a key rotation: exit $rc: $(cat drift4.json drift4.err)"
python3 - drift4.json "$old_pk" "$new_pk" <<'PY' || fail "drift after a key rotation: $(cat drift4.json)"
import json, sys
d = json.load(open(sys.argv[1]))["differences"]
k = [x for x in d if x["address"] == "dstack.encrypted_env.dstack-kms" and x.get("field") == "public_key"]
assert len(k) == 1, d
assert k[0]["cause"] == "external", k
assert k[0]["expected"] == sys.argv[2] and k[0]["actual"] == sys.argv[3], (k, sys.argv[2:])
assert not any(x["address"] == "dstack.encrypted_env.dstack-kms" and x.get("field") == "env_encryption" for x in d), d
assert any(x["address"] == "gcp.image.dstack-kms-shared" and x.get("field") == "encrypted_env" for x in d), d
PY
K apply --auto-approve >apply4.log 2>&1 || { cat apply4.log; fail "apply after a key rotation"; }
[ "$(decrypt_shared)" = "$(want_env "$KC_ENV_SECRET" "$KC_ENV_TOKEN")" ] || fail "decrypted env after the key rotation"
K drift >drift5.out 2>&1 || fail "drift after the repair: $(cat drift5.out)"
cp state.json state.before
kms_stop
if K plan >plan5.out 2>&1; then fail "plan with the KMS down succeeded"; fi
grep -q "kms_vms.dstack-kms.env_encryption: KMS $KMS_URL: GetAppEnvEncryptPubKey:" plan5.out || fail "unreachable KMS message: $(cat plan5.out)"
cmp -s state.json state.before || fail "a failed plan changed the state"

step "6. no secret in the state, the plans or the --debug output"
no_secret state.json render.json render.err stale.out stale-apply.out stale-render.out drift3.json drift4.json apply4.log drift5.out plan2.json plan3.json plan4.json plan3.txt apply1.log apply2.log apply3.log plan5.out wrong.out

step "7. destroy, with the KMS down"
K destroy --auto-approve >destroy.log 2>&1 || { cat destroy.log; fail "destroy"; }
left=$(sim_inventory 'service=gcp' | python3 -c 'import json,sys; print(" ".join(o["kind"]+":"+o["name"] for o in json.load(sys.stdin) if o.get("labels",{}).get("kmsctl-deployment")=="envkms"))')
[ -z "$left" ] || fail "left after destroy: $left"
no_secret destroy.log
echo "ok - envkms"
