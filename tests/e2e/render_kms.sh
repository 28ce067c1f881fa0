#!/usr/bin/env bash
# tests/e2e/render_kms.sh: kmsctl render with key_provider kms against the KMS
# emulator of kmsctl-sim (HTTPS): the env encryption key is fetched
# (GetAppEnvEncryptPubKey), checked against the pinned KMS key, and
# .encrypted-env (also on shared.img) decrypts, with the OpenSSL command line
# (X25519 derive, AES-256-CTR for the GCM keystream), to the env JSON; a wrong
# pinned key, a KMS the CA does not vouch for and a KMS error are refused;
# the secret values appear in no output, state or plaintext file.
set -euo pipefail

: "${KMSCTL:?}" "${KC_SRC_DIR:?}"
# shellcheck source=lib/sim.sh
source "$KC_SRC_DIR/tests/e2e/lib/sim.sh"
kc_tmpdir work
cd "$work"

bash "$KC_SRC_DIR/scripts/mkimage.sh" "$work/images" >/dev/null
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -keyout tls.key -out tls.crt -subj /CN=localhost \
    -addext subjectAltName=DNS:localhost,IP:127.0.0.1 -days 2 2>/dev/null
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -keyout other.key -out other.crt -subj /CN=localhost \
    -addext subjectAltName=DNS:localhost -days 2 2>/dev/null
# The admin calls of lib/sim.sh (curl) go to the same TLS listener.
export CURL_CA_BUNDLE="$work/tls.crt"
sim_start kms 1 --tls-cert tls.crt --tls-key tls.key
case $SIM_URL in https://*) ;; *) fail "the sim is not on TLS: $SIM_URL" ;; esac
KMS_URL="https://localhost:$SIM_PORT"

# The emulator's root key, as GetMeta reports it (the pin).
PIN=0x$(curl -sf --cacert tls.crt -X POST "$KMS_URL/prpc/KMS.GetMeta?json" | jq -r .k256_pubkey)
[[ $PIN =~ ^0x0[23][0-9a-f]{64}$ ]] || fail "GetMeta k256_pubkey '$PIN'"
# Any other valid compressed key (the generator point).
OTHER=0x0279be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798

export KC_ENV_SECRET="s3cr3t-env-value-4242"
export KC_ENV_TOKEN='tok"en\value'
export KC_RENDER_RPC="http://127.0.0.1:8545/rpc-secret-9876"

manifest() { # $1 pinned key, $2 ca_file, $3 kms_url
    cat > kms.yaml <<EOF
version: 1
name: render-kms-test
providers:
  gcp: {project: render-test, zone: us-central1-a, bucket: render-bucket}
  chain: {rpc_url: "http://127.0.0.1:8545", chain_id: 31337, private_key: "\${env:KC_RENDER_KEY}"}
contracts:
  artifacts: ./artifacts
  kms: {}
kms_vms:
  dstack-kms:
    os_image: dstack-sandbox-0.1.0
    image_search_paths: [./images]
    key_provider: kms
    domain: kms.example.test
    mode: direct
    compose: {template: direct, env: {KMS_IMAGE: "kms:1"}}
    user_config:
      ETH_RPC_URL: "\${env:KC_RENDER_RPC}"
    app_compose: {allowed_envs: [API_SECRET, TOKEN]}
    env_encryption:
      kms_url: "$3"
      kms_k256_pubkey: "$1"
      ca_file: $2
      env:
        API_SECRET: "\${env:KC_ENV_SECRET}"
        TOKEN: "\${env:KC_ENV_TOKEN}"
EOF
}

render() { # $1: out dir
    "$KMSCTL" render dstack-kms -f kms.yaml --state st.json --out "$1" \
        --set contracts.kms.address=0x00000000000000000000000000000000000000aa --json -v
}

# 1. Render: .encrypted-env written, on the shared disk, sys-config points at the KMS.
manifest "$PIN" ./tls.crt "$KMS_URL/"
render out1 >out.txt 2>err.txt || fail "render: $(cat err.txt)"
[ -s out1/.encrypted-env ] || fail "no .encrypted-env"
app_id=$(jq -r .app_id out.txt)
[[ $app_id =~ ^[0-9a-f]{40}$ ]] || fail "app_id '$app_id'"
jq -e --arg u "$KMS_URL/" '.kms_urls == [$u]' out1/.sys-config.json >/dev/null ||
    fail "kms_urls: $(cat out1/.sys-config.json)"
jq -e '.key_provider == "kms" and .allowed_envs == ["API_SECRET","TOKEN"]' out1/app-compose.json >/dev/null ||
    fail "app-compose: $(cat out1/app-compose.json)"
# On the shared disk: listed by fsck.fat, its bytes in the image (one cluster;
# mtools reads FAT32 only from 32 MiB up, see test_dstack_fat.c).
fsck.fat -n -l out1/shared.img 2>&1 | grep '/.encrypted-env' >/dev/null ||
    fail ".encrypted-env not on shared.img: $(fsck.fat -n -l out1/shared.img 2>&1)"
python3 -c 'import sys; sys.exit(open(sys.argv[1], "rb").read().find(open(sys.argv[2], "rb").read()) < 0)' \
    out1/shared.img out1/.encrypted-env || fail ".encrypted-env bytes not in shared.img"
[ "$(sim_route_count 'POST /prpc/KMS.GetAppEnvEncryptPubKey')" = 1 ] || fail "GetAppEnvEncryptPubKey calls"

# 2. Decrypt independently: eph_pub(32) || iv(12) || ct || tag(16).
sk=$(curl -sf --cacert tls.crt "$KMS_URL/kms-sim/env-secret/$app_id" | jq -r .private_key)
xxd -p -c 1000 out1/.encrypted-env | tr -d '\n' > enc.hex
hex=$(cat enc.hex)
eph=${hex:0:64}
iv=${hex:64:24}
ct=${hex:88:$((${#hex} - 88 - 32))}
printf '302e020100300506032b656e04220420%s' "$sk" | xxd -r -p > priv.der
printf '302a300506032b656e032100%s' "$eph" | xxd -r -p > peer.der
openssl pkey -inform DER -in priv.der -out priv.pem
openssl pkey -pubin -inform DER -in peer.der -out peer.pem
openssl pkeyutl -derive -inkey priv.pem -peerkey peer.pem -out shared.bin
key=$(xxd -p -c 64 shared.bin)
printf '%s' "$ct" | xxd -r -p > ct.bin
openssl enc -d -aes-256-ctr -K "$key" -iv "${iv}00000002" -in ct.bin -out plain.json
want=$(jq -cn --arg s "$KC_ENV_SECRET" --arg t "$KC_ENV_TOKEN" \
    '{env: [{key: "API_SECRET", value: $s}, {key: "TOKEN", value: $t}]}')
[ "$(jq -c . plain.json)" = "$want" ] || fail "decrypted env: $(cat plain.json)"
rm -f plain.json

# 3. Secrets never in stdout/stderr, the state, or a plaintext file of out1.
for f in out.txt err.txt st.json out1/app-compose.json out1/.sys-config.json out1/prelaunch.sh out1/.instance_info out1/.encrypted-env out1/shared.img; do
    if grep -aqF "$KC_ENV_SECRET" "$f"; then fail "secret in $f"; fi
    if grep -aqF 'tok"en' "$f"; then fail "token in $f"; fi
done

# 4. A second render encrypts afresh (new ephemeral key) to the same KMS key.
render out2 >/dev/null 2>err.txt || fail "render 2: $(cat err.txt)"
cmp -s out1/.encrypted-env out2/.encrypted-env && fail "two renders gave identical ciphertexts"
[ "$(xxd -p -c 1000 out2/.encrypted-env | cut -c1-64)" != "$eph" ] || fail "ephemeral key reused"

# 5. A wrong pinned key is refused; nothing written.
manifest "$OTHER" ./tls.crt "$KMS_URL"
if render out3 >out.txt 2>err.txt; then fail "a wrong pinned key was accepted"; fi
grep -q "kms_vms.dstack-kms.env_encryption: KMS https://localhost:$SIM_PORT: env encryption key of the app is not signed by the pinned KMS key" err.txt ||
    fail "wrong pin message: $(cat err.txt)"
[ ! -e out3/.encrypted-env ] && [ ! -e out3/shared.img ] || fail "files written despite a wrong pin"

# 6. A certificate the CA file does not vouch for: a TLS error, not retried.
manifest "$PIN" ./other.crt "$KMS_URL"
n0=$(sim_route_count 'POST /prpc/KMS.GetAppEnvEncryptPubKey')
if render out4 >out.txt 2>err.txt; then fail "an unverified KMS was accepted"; fi
grep -q "KMS https://localhost:$SIM_PORT: GetAppEnvEncryptPubKey:" err.txt || fail "TLS message: $(cat err.txt)"
grep -q "certificate" err.txt || fail "TLS reason: $(cat err.txt)"
[ "$(sim_route_count 'POST /prpc/KMS.GetAppEnvEncryptPubKey')" = "$n0" ] || fail "a request reached the KMS"

# Credentials in the URL: refused before any request, and not repeated.
manifest "$PIN" ./tls.crt "https://user:pw@localhost:$SIM_PORT"
if render out4 >out.txt 2>err.txt; then fail "a URL with credentials was accepted"; fi
grep -q "KMS https://localhost:$SIM_PORT: the URL carries credentials" err.txt || fail "userinfo message: $(cat err.txt)"
if grep -q "user:pw" err.txt; then fail "URL credentials in the message"; fi
[ "$(sim_route_count 'POST /prpc/KMS.GetAppEnvEncryptPubKey')" = "$n0" ] || fail "a request reached the KMS"

# 7. The KMS says no (pRPC 400): its message, named.
manifest "$PIN" ./tls.crt "$KMS_URL"
sim_faults '[{"match":"^POST /prpc/KMS.GetAppEnvEncryptPubKey","status":400}]'
if render out5 >out.txt 2>err.txt; then fail "a KMS error was accepted"; fi
grep -q "GetAppEnvEncryptPubKey: HTTP 400" err.txt || fail "KMS error message: $(cat err.txt)"
sim_clear_faults

# 8. key_provider kms without env_encryption: validation names what is missing.
sed '/env_encryption:/,$d' kms.yaml > noenc.yaml
if "$KMSCTL" render dstack-kms -f noenc.yaml --state st.json --out out6 >out.txt 2>err.txt; then
    fail "kms without env_encryption rendered"
fi
grep -q "key_provider: kms needs env_encryption (kms_url, kms_k256_pubkey and env)" err.txt ||
    fail "missing env_encryption message: $(cat err.txt)"
echo "ok - render_kms"
