#!/usr/bin/env bash
# tests/e2e/render.sh: kmsctl render KMS_VM --out DIR, end to end: unknown
# values refused with the --set hint, the files and disk images written and
# read back with independent tools, reproducibility, what moves which hash,
# and that a .env beside the manifest is never picked up.
set -euo pipefail

: "${KMSCTL:?}" "${KC_SRC_DIR:?}"
. "$KC_SRC_DIR/tests/e2e/lib/common.sh"
kc_tmpdir work
cd "$work"

bash "$KC_SRC_DIR/scripts/mkimage.sh" "$work/images" >/dev/null
export KC_RENDER_RPC="http://127.0.0.1:8545/secret-key-123"
ADDR=0x00000000000000000000000000000000000000aa

manifest() { # $1: KMS_IMAGE value
    cat > kms.yaml <<EOF
version: 1
name: render-test
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
    key_provider: tpm
    domain: kms.example.test
    mode: direct
    compose:
      template: direct
      env:
        KMS_IMAGE: $1
    user_config:
      ETH_RPC_URL: "\${env:KC_RENDER_RPC}"
EOF
}

render() { # $1: out dir, rest: extra args
    local out=$1
    shift
    "$KMSCTL" render dstack-kms -f kms.yaml --out "$out" "$@"
}

field() { # $1: json text, $2: key
    jq -r ".$2" <<<"$1"
}

manifest cr.kvin.wang/dstack-kms:latest

# 1. The KMS address is not known before apply: refused, with the hint.
if render out0 2>err.txt; then fail "render without the KMS address succeeded"; fi
grep -q -- "--set contracts.kms.address=0x" err.txt || fail "no --set hint: $(cat err.txt)"
[ ! -e out0/app-compose.json ] || fail "files written despite the refusal"

# A reference inside the VM is refused naming it and the --set to use.
sed 's|KMS_IMAGE: .*|KMS_IMAGE: "${contracts.kms.address}"|' kms.yaml > ref.yaml
if "$KMSCTL" render dstack-kms -f ref.yaml --out outr 2>err.txt; then fail "unknown reference rendered"; fi
grep -q "compose.env.KMS_IMAGE is not known before apply (it comes from 'contracts.kms.address'): pass --set contracts.kms.address=" err.txt ||
    fail "unknown reference message: $(cat err.txt)"

# 2. Render with --set: every file, the printed hashes match sha256sum.
json=$(render out1 --set contracts.kms.address=$ADDR --json)
for f in app-compose.json .sys-config.json .instance_info prelaunch.sh .user-config shared.img data.img; do
    [ -f "out1/$f" ] || fail "missing out1/$f"
done
[ "$(stat -c %a out1/.user-config)" = 600 ] || fail ".user-config mode $(stat -c %a out1/.user-config)"
[ "$(field "$json" compose_hash)" = "$(sha256sum < out1/app-compose.json | cut -c1-64)" ] ||
    fail "compose hash is not sha256 of app-compose.json"
[ "$(field "$json" shared_image_digest)" = "$(sha256sum < out1/shared.img | cut -c1-64)" ] ||
    fail "shared image digest is not sha256 of shared.img"
[ "$(field "$json" os_image_hash)" = "$(cat images/dstack-sandbox-0.1.0/auth_hash.txt)" ] ||
    fail "os image hash is not auth_hash.txt"
jq -e '.manifest_version == 2 and .runner == "docker-compose" and .key_provider == "tpm"
       and .no_instance_id == true and (.pre_launch_script | test("KMS_CONTRACT_ADDR=0x0{38}aa"))' \
    out1/app-compose.json >/dev/null || fail "app-compose.json fields"
jq -e '.EXECUTION_RPC == null and .ETH_RPC_URL == env.KC_RENDER_RPC' out1/.user-config >/dev/null ||
    fail ".user-config content"
grep -q secret-key-123 out1/app-compose.json out1/prelaunch.sh out1/.sys-config.json &&
    fail "a user_config secret reached a measured file"
jq -e --arg h "$(cat images/dstack-sandbox-0.1.0/auth_hash.txt)" \
    '.vm_config | fromjson | .os_image_hash == $h' out1/.sys-config.json >/dev/null ||
    fail ".sys-config.json vm_config"
fsck.fat -n out1/shared.img >/dev/null 2>&1 || fail "fsck.fat on shared.img"
blkid -p -o export out1/shared.img | grep -x LABEL=DSTACKSHR >/dev/null || fail "shared.img label"
sgdisk -v out1/data.img | grep "No problems found" >/dev/null || fail "sgdisk -v on data.img"
sfdisk --dump out1/data.img | grep 'name="dstack-data"' >/dev/null || fail "data.img partition name"
# The ids are kept in the state, generated once.
grep -q '"kms_vms.dstack-kms.app_id"' .kmsctl/render-test.state.json || fail "app_id not in the state"
grep -q secret-key-123 .kmsctl/render-test.state.json && fail "a secret reached the state"

# The files are byte for byte what Python's json.dump(indent=2) writes for
# the same data (dstack-cloud's serialisation), checked with python3 itself.
for f in app-compose.json .sys-config.json .instance_info; do
    python3 -c 'import json, sys
d = json.load(open(sys.argv[1]), object_pairs_hook=dict)
sys.stdout.write(json.dumps(d, indent=2))' "out1/$f" > "py-$f"
    cmp -s "out1/$f" "py-$f" || fail "$f is not in Python json.dump(indent=2) form"
done

# 3. A second render: identical bytes and hashes.
json2=$(render out2 --set contracts.kms.address=$ADDR --json)
for f in app-compose.json .sys-config.json .instance_info prelaunch.sh .user-config shared.img data.img; do
    cmp -s "out1/$f" "out2/$f" || fail "$f differs between two renders"
done
[ "$(field "$json" compose_hash)" = "$(field "$json2" compose_hash)" ] || fail "compose hash moved"

# 4. A .env beside the manifest is never picked up.
echo 'KMS_IMAGE=evil/kms:1' > .env
render out3 --set contracts.kms.address=$ADDR >/dev/null
cmp -s out1/shared.img out3/shared.img || fail ".env beside the manifest changed the output"
rm .env

# 5. One byte of the compose (.env setting) moves the compose hash and the
#    shared image digest.
manifest cr.kvin.wang/dstack-kms:latesu
json4=$(render out4 --set contracts.kms.address=$ADDR --json)
[ "$(field "$json4" compose_hash)" != "$(field "$json" compose_hash)" ] || fail "compose change kept the compose hash"
[ "$(field "$json4" shared_image_digest)" != "$(field "$json" shared_image_digest)" ] ||
    fail "compose change kept the shared digest"

# 6. A .user-config change moves only the shared image digest.
manifest cr.kvin.wang/dstack-kms:latest
json5=$(KC_RENDER_RPC=http://127.0.0.1:8545/other-key render out5 --set contracts.kms.address=$ADDR --json)
[ "$(field "$json5" compose_hash)" = "$(field "$json" compose_hash)" ] || fail "user_config change moved the compose hash"
[ "$(field "$json5" shared_image_digest)" != "$(field "$json" shared_image_digest)" ] ||
    fail "user_config change kept the shared digest"

# 7. A missing OS image names the searched folder and the -uki layout.
sed 's|os_image: dstack-sandbox-0.1.0|os_image: dstack-cloud-0.6.0|' kms.yaml > noimg.yaml
if "$KMSCTL" render dstack-kms -f noimg.yaml --out out6 --set contracts.kms.address=$ADDR 2>err.txt; then
    fail "missing image rendered"
fi
grep -q "$(realpath "$work")/images/dstack-cloud-0.6.0 (no such folder)" err.txt || fail "searched path not named: $(cat err.txt)"
grep -q "dstack-cloud-0.6.0-uki.tar.gz" err.txt || fail "no -uki hint: $(cat err.txt)"

# 8. An unknown VM name lists the ones there are.
if "$KMSCTL" render nope -f kms.yaml --out out7 2>err.txt; then fail "unknown VM rendered"; fi
grep -q "no kms_vms entry 'nope' (there is 'dstack-kms')" err.txt || fail "unknown VM message: $(cat err.txt)"

# 9. compose.file: the user's compose text is embedded as it is (non-ASCII
#    and tabs escaped the way Python does), and mode must agree.
printf 'services:\n  app:\n    image: "caf\xc3\xa9:\xf0\x9f\x98\x80"\n\tcommand: x\n' > my-compose.yaml
sed 's|      template: direct|      file: ./my-compose.yaml|' kms.yaml > file.yaml
"$KMSCTL" render dstack-kms -f file.yaml --out out8 --set contracts.kms.address=$ADDR >/dev/null
jq -j .docker_compose_file out8/app-compose.json | cmp -s - my-compose.yaml || fail "compose.file not embedded as is"
grep -q 'caf\\u00e9:\\ud83d\\ude00' out8/app-compose.json || fail "non-ASCII not escaped as Python does"
python3 -c 'import json, sys
sys.stdout.write(json.dumps(json.load(open(sys.argv[1])), indent=2))' out8/app-compose.json | cmp -s - out8/app-compose.json ||
    fail "compose.file app-compose.json is not in json.dump form"
sed 's|      template: direct|      template: light|' kms.yaml > bad.yaml
if "$KMSCTL" render dstack-kms -f bad.yaml --out out9 --set contracts.kms.address=$ADDR 2>err.txt; then
    fail "template/mode mismatch rendered"
fi
grep -q "compose.template: template 'light' does not match mode 'direct'" err.txt || fail "mismatch message: $(cat err.txt)"

# 10. Light mode: helios in the compose, EXECUTION_RPC required and imported
#     from .user-config (never written into the measured files).
sed -e 's|    mode: direct|    mode: light|' -e 's|      template: direct|      template: light|' kms.yaml > light.yaml
if "$KMSCTL" render dstack-kms -f light.yaml --out out10 --set contracts.kms.address=$ADDR 2>err.txt; then
    fail "light mode without EXECUTION_RPC rendered"
fi
grep -q "light mode needs user_config.EXECUTION_RPC" err.txt || fail "light mode message: $(cat err.txt)"
sed -i 's|      ETH_RPC_URL: "${env:KC_RENDER_RPC}"|      EXECUTION_RPC: "${env:KC_RENDER_RPC}"|' light.yaml
"$KMSCTL" render dstack-kms -f light.yaml --out out10 --set contracts.kms.address=$ADDR >/dev/null
jq -e '(.docker_compose_file | test("\\n  helios:\\n")) and (.pre_launch_script | test("HELIOS_RPC_PORT=18545"))
       and (.pre_launch_script | test("for key in EXECUTION_RPC;"))' out10/app-compose.json >/dev/null ||
    fail "light mode app-compose.json"
grep -q secret-key-123 out10/app-compose.json && fail "EXECUTION_RPC reached app-compose.json"

# 11. A --set that nothing uses (a typo, or a value the manifest already
#     gives) is named in a warning; the render goes on without it.
render out11 --set contracts.kms.address=$ADDR --set kms_vms.dstack-kms.extrenal_ip=1.2.3.4 >/dev/null 2>err.txt ||
    fail "render with an unused --set: $(cat err.txt)"
grep -qF -- "warning: --set kms_vms.dstack-kms.extrenal_ip: not used by kms_vms.dstack-kms" err.txt ||
    fail "unused --set warning: $(cat err.txt)"
grep -qF -- "--set contracts.kms.address" err.txt && fail "a used --set was warned about: $(cat err.txt)"
sed 's|  kms: {}|  kms: {address: "0x00000000000000000000000000000000000000bb"}|' kms.yaml > given.yaml
"$KMSCTL" render dstack-kms -f given.yaml --out out12 --set contracts.kms.address=$ADDR >/dev/null 2>err.txt ||
    fail "render with the address given twice: $(cat err.txt)"
grep -qF -- "warning: --set contracts.kms.address: not used by kms_vms.dstack-kms" err.txt ||
    fail "overridden --set warning: $(cat err.txt)"
grep -q 'KMS_CONTRACT_ADDR=0x0\{38\}bb' out12/prelaunch.sh || fail "the manifest's address is not in prelaunch.sh"

echo "render: ok"
