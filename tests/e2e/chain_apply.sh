#!/usr/bin/env bash
# tests/e2e/chain_apply.sh: the contracts section against a real EVM node
# (anvil): full apply from nothing, a second apply sends zero transactions,
# drift of an entry removed outside (exit 2, named in the JSON) and its
# repair, an entry added outside reported as unmanaged and pruned on
# request, a non-owner write failing with the decoded custom error and the
# resource's address, destroy revoking every entry. Chain state is checked
# with our own eth_call/eth_getTransactionCount, not through kmsctl.
set -euo pipefail
: "${KMSCTL:?}" "${KC_SRC_DIR:?}" "${KC_BUILD_DIR:?}"
. "$KC_SRC_DIR/tests/e2e/lib/anvil.sh"

kc_tmpdir work

H1=0x1111111111111111111111111111111111111111111111111111111111111111
H2=0x2222222222222222222222222222222222222222222222222222222222222222
MR=0x3333333333333333333333333333333333333333333333333333333333333333
DEV=0x4444444444444444444444444444444444444444444444444444444444444444
C1=0x5555555555555555555555555555555555555555555555555555555555555555
C2=0x6666666666666666666666666666666666666666666666666666666666666666
EXTRA=0x7777777777777777777777777777777777777777777777777777777777777777

manifest() { # manifest FILE PRUNE [EXTRA_OS_IMAGE]
  {
    chain_manifest_head chaine2e 10s
    cat <<YAML
  kms: {}
  os_images: [$H1, $H2${3:+, $3}]
  kms_allowlist:
    aggregated_mrs: [$MR]
    device_ids: [$DEV]
  gateway_app_id: "0x00000000000000000000000000000000000000aa"
  prune: $2
  apps:
    keys:
      allow_any_device: true
      compose_hashes: [$C1, $C2]
YAML
  } > "$1"
}

call() { anvil_rpc eth_call "[{\"to\":\"$1\",\"data\":\"$2\"},\"latest\"]"; }
allowed() { # allowed CONTRACT SELECTOR HASH -> exit 0 if true
  local r; r="$(call "$1" "0x$2${3#0x}")"; [ "${r: -1}" = 1 ]
}
nonce() { anvil_rpc eth_getTransactionCount "[\"$1\",\"latest\"]"; }
send_as() { anvil_rpc eth_sendTransaction "[{\"from\":\"$1\",\"to\":\"$2\",\"data\":\"$3\"}]" >/dev/null; }
out() { "$KMSCTL" output -f "$work/m.yaml" | awk -v k="$1" '$1 == k {print $3}'; }

chain_node_start
manifest "$work/m.yaml" false

# 1. full apply from nothing (traced: the key must not show)
"$KMSCTL" apply --auto-approve --debug -f "$work/m.yaml" > "$work/apply1.log" 2>&1 ||
  { cat "$work/apply1.log"; fail "first apply"; }
grep -q 'eth_sendRawTransaction' "$work/apply1.log" || fail "no HTTP trace with --debug"
KMS="$(out chain.kms.main.address)"; APP="$(out chain.app.keys.address)"
[ -n "$KMS" ] && [ -n "$APP" ] || fail "no kms/app address in the outputs"
for h in $H1 $H2; do allowed "$KMS" 9a4e1d18 "$h" || fail "os image $h not allowed on chain"; done
allowed "$KMS" f6fe4f40 "$MR" || fail "aggregated MR not allowed"
allowed "$KMS" 13eb9770 "$DEV" || fail "KMS device not allowed"
for h in $C1 $C2; do allowed "$APP" 2f6622e5 "$h" || fail "compose hash $h not allowed"; done
r="$(call "$APP" 0x3440a16a)"; [ "${r: -1}" = 1 ] || fail "allowAnyDevice not set"
r="$(call "$KMS" "0xa6c4cce9000000000000000000000000${APP#0x}")"; [ "${r: -1}" = 1 ] || fail "app not registered"
r="$(call "$KMS" 0x8da5cb5b)"; [ "${r: -40}" = "$(echo "${ANVIL_ADDR0#0x}" | tr A-F a-f)" ] || fail "owner is not the signer"
ok "apply from nothing: KMS proxy, app, every allowlist entry on chain"

# 2. a second apply sends nothing
n1="$(nonce "$ANVIL_ADDR0")"
"$KMSCTL" apply --auto-approve -f "$work/m.yaml" > "$work/apply2.log" 2>&1 || fail "second apply"
grep -q "No changes" "$work/apply2.log" || { cat "$work/apply2.log"; fail "second apply planned changes"; }
[ "$(nonce "$ANVIL_ADDR0")" = "$n1" ] || fail "second apply sent transactions ($n1 -> $(nonce "$ANVIL_ADDR0"))"
"$KMSCTL" drift -f "$work/m.yaml" >/dev/null || fail "drift right after apply"
ok "second apply: zero transactions (nonce $n1 unchanged), drift in sync"

# 2b. the signer from a keystore v3 file (made here with node's crypto and
#     js-sha3, not with kmsctl's code); an entry added that way, then
#     dropped from the manifest (revoked as an orphan)
KS_PW=e2e-keystore-password-42
keystore_v3 "$ANVIL_KEY0" "$KS_PW" > "$work/ks.json"
manifest "$work/m.yaml" false "$EXTRA"
python3 - "$work/m.yaml" "$work/ks.json" <<'PY'
import sys
p, ks = sys.argv[1], sys.argv[2]
s = open(p).read().replace('    private_key: "${env:E2E_KEY}"\n',
    '    keystore: {file: "%s", password: "${env:E2E_KS_PW}"}\n' % ks)
open(p, "w").write(s)
PY
grep -q keystore "$work/m.yaml" || fail "keystore manifest not written"
E2E_KS_PW="$KS_PW" "$KMSCTL" apply --auto-approve --debug -f "$work/m.yaml" > "$work/apply_ks.log" 2>&1 ||
  { cat "$work/apply_ks.log"; fail "apply with a keystore signer"; }
allowed "$KMS" 9a4e1d18 "$EXTRA" || fail "entry added with the keystore signer not on chain"
E2E_KS_PW="$KS_PW" "$KMSCTL" plan --json -f "$work/m.yaml" > "$work/plan_ks.json" 2>&1 || fail "plan --json"
for f in "$work/apply1.log" "$work/apply_ks.log" "$work/plan_ks.json" "$work/.kmsctl/chaine2e.state.json"; do
  k="${ANVIL_KEY0#0x}"
  grep -qi "$k" "$f" && fail "the private key appears in $f"
  grep -q "$KS_PW" "$f" && fail "the keystore password appears in $f"
done
manifest "$work/m.yaml" false
"$KMSCTL" apply --auto-approve -f "$work/m.yaml" > "$work/apply_orphan.log" 2>&1 || fail "apply dropping an entry"
allowed "$KMS" 9a4e1d18 "$EXTRA" && fail "the entry dropped from the manifest was not revoked"
ok "keystore v3 signer (pbkdf2) works; key and password in no log, plan or state; dropped entry revoked"

# 3. an entry removed outside kmsctl: drift exit 2 names it, apply restores
send_as "$ANVIL_ADDR0" "$KMS" "0x9425bac6${H2#0x}"
allowed "$KMS" 9a4e1d18 "$H2" && fail "removal outside did not happen"
set +e; "$KMSCTL" drift --json -f "$work/m.yaml" > "$work/drift.json"; rc=$?; set -e
[ "$rc" = 2 ] || fail "drift exit $rc, expected 2"
grep -q "\"chain.kms_os_image.$H2\"" "$work/drift.json" || { cat "$work/drift.json"; fail "drift JSON does not name the entry"; }
"$KMSCTL" apply --auto-approve -f "$work/m.yaml" > "$work/apply3.log" 2>&1 || fail "repair apply"
allowed "$KMS" 9a4e1d18 "$H2" || fail "apply did not restore $H2"
"$KMSCTL" drift -f "$work/m.yaml" >/dev/null || fail "drift after repair"
ok "entry removed outside: drift exit 2 naming it, apply restored it"

# 4. an entry added outside: unmanaged (drift exit 2), kept without prune,
#    revoked with prune: true
send_as "$ANVIL_ADDR0" "$KMS" "0x06a3ae96${EXTRA#0x}"
set +e; "$KMSCTL" drift --json -f "$work/m.yaml" > "$work/drift2.json"; rc=$?; set -e
[ "$rc" = 2 ] || fail "drift exit $rc with an unmanaged entry, expected 2"
grep -q "os_image:$EXTRA" "$work/drift2.json" || { cat "$work/drift2.json"; fail "unmanaged entry not listed"; }
"$KMSCTL" apply --auto-approve -f "$work/m.yaml" > "$work/apply4.log" 2>&1 || fail "apply without prune"
allowed "$KMS" 9a4e1d18 "$EXTRA" || fail "revoked without prune"
grep -q "prune: true" "$work/apply4.log" || fail "no warning about the unmanaged entry"
manifest "$work/m.yaml" true
"$KMSCTL" apply --auto-approve -f "$work/m.yaml" > "$work/apply5.log" 2>&1 || { cat "$work/apply5.log"; fail "apply with prune"; }
allowed "$KMS" 9a4e1d18 "$EXTRA" && fail "prune did not revoke $EXTRA"
"$KMSCTL" drift -f "$work/m.yaml" >/dev/null || fail "drift after prune"
ok "entry added outside: reported as unmanaged, left without prune, revoked with prune: true"

# 5. a signer that is not the owner: the write fails with the decoded custom
#    error and the resource's address, and sends nothing
manifest "$work/m.yaml" true "$EXTRA"
n1="$(nonce "$ANVIL_ADDR1")"
set +e; E2E_KEY="$ANVIL_KEY1" "$KMSCTL" apply --auto-approve -f "$work/m.yaml" > "$work/apply6.log" 2>&1; rc=$?; set -e
[ "$rc" = 1 ] || { cat "$work/apply6.log"; fail "non-owner apply exit $rc, expected 1"; }
grep -q "OwnableUnauthorizedAccount($ANVIL_ADDR1)" "$work/apply6.log" || { cat "$work/apply6.log"; fail "custom error not decoded"; }
grep -q "chain.kms_os_image.$EXTRA" "$work/apply6.log" || fail "error does not name the resource"
[ "$(nonce "$ANVIL_ADDR1")" = "$n1" ] || fail "the non-owner sent a transaction"
allowed "$KMS" 9a4e1d18 "$EXTRA" && fail "non-owner write landed"
ok "non-owner write: OwnableUnauthorizedAccount($ANVIL_ADDR1) on chain.kms_os_image.$EXTRA, nothing sent"

# 5b. adoption from another state: the KMS and the app by address (owner
#     checked, app implementation compared), nothing to change; a signer
#     that does not own them is refused at plan time, before any write
manifest "$work/adopt.yaml" true;
IMPL="$(out chain.kms.main.app_implementation)"
python3 - "$work/adopt.yaml" "$KMS" "$IMPL" "$APP" <<'PY'
import sys
p, kms, impl, app = sys.argv[1:]
s = open(p).read().replace("  kms: {}\n", '  kms: {address: "%s", app_implementation: "%s"}\n' % (kms, impl))
s = s.replace("    keys:\n", '    keys:\n      address: "%s"\n' % app)
open(p, "w").write(s)
PY
set +e
"$KMSCTL" plan --detailed-exitcode --state "$work/adopt.state.json" -f "$work/adopt.yaml" > "$work/adopt.log" 2>&1; rc=$?
set -e
[ "$rc" = 0 ] || { cat "$work/adopt.log"; fail "adopting the deployed contracts plans changes (exit $rc)"; }
set +e
E2E_KEY="$ANVIL_KEY1" "$KMSCTL" plan --state "$work/adopt1.state.json" -f "$work/adopt.yaml" > "$work/adopt1.log" 2>&1; rc=$?
set -e
[ "$rc" = 1 ] || fail "adoption by a non-owner: exit $rc, expected 1"
grep -q "owner is $ANVIL_ADDR0, the signer is $ANVIL_ADDR1" "$work/adopt1.log" ||
  { cat "$work/adopt1.log"; fail "no owner mismatch message"; }
ok "adoption by address: nothing to change; a non-owner signer refused before any write"

# 5c. contracts made outside kmsctl, then adopted: an app that the KMS
#     never registered (apply registers it: registerApp), and a new app
#     implementation for the KMS (apply sets it: setAppImplementation)
deploy_outside() { # deploy_outside HEXDATA -> contract address
  local h
  h="$(anvil_rpc eth_sendTransaction "[{\"from\":\"$ANVIL_ADDR0\",\"data\":\"$1\",\"gas\":\"0x989680\"}]")"
  anvil_rpc eth_getTransactionReceipt "[\"$h\"]" | python3 -c 'import json,sys; print(json.load(sys.stdin)["contractAddress"])'
}
code_of() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["bytecode"])' \
  "$(find "$KC_BUILD_DIR/artifacts" -name "$1.json" | head -1)"; }
IMPL2="$(deploy_outside "$(code_of DstackApp)")"
proxy_data="$(python3 - "$(code_of ERC1967Proxy)" "$IMPL2" "$ANVIL_ADDR0" <<'PY'
import sys
code, impl, owner = sys.argv[1], sys.argv[2], sys.argv[3]
w = lambda x: "%064x" % x
init = "187515ca" + "0" * 24 + owner[2:].lower() + w(0) + w(0) + w(0) + w(0)
data = bytes.fromhex(init)
args = "0" * 24 + impl[2:].lower() + w(64) + w(len(data)) + data.hex() + "0" * ((32 - len(data) % 32) % 32 * 2)
print(code + args)
PY
)"
EXT="$(deploy_outside "$proxy_data")"
r="$(call "$KMS" "0xa6c4cce9000000000000000000000000${EXT#0x}")"; [ "${r: -1}" = 0 ] || fail "the outside app is already registered"
manifest "$work/m.yaml" true
python3 - "$work/m.yaml" "$EXT" "$IMPL2" "$KMS" <<'PY'
import sys
p, ext, impl, kms = sys.argv[1:]
s = open(p).read().replace("  kms: {}\n", '  kms: {address: "%s", app_implementation: "%s"}\n' % (kms.lower(), impl.lower()))
s += '    outside:\n      address: "%s"\n' % ext.lower()
open(p, "w").write(s)
PY
"$KMSCTL" apply --auto-approve -f "$work/m.yaml" > "$work/apply7.log" 2>&1 || { cat "$work/apply7.log"; fail "adopting the outside app"; }
r="$(call "$KMS" "0xa6c4cce9000000000000000000000000${EXT#0x}")"; [ "${r: -1}" = 1 ] || { cat "$work/apply7.log"; fail "the adopted app was not registered"; }
r="$(call "$KMS" 0x25a992da)"; [ "${r: -40}" = "$(echo "${IMPL2#0x}" | tr A-F a-f)" ] || fail "appImplementation not set to $IMPL2"
"$KMSCTL" apply --auto-approve -f "$work/m.yaml" > "$work/apply8.log" 2>&1 || fail "re-apply after adoption"
grep -q "No changes" "$work/apply8.log" || { cat "$work/apply8.log"; fail "not converged after the updates"; }
ok "an outside app adopted and registered (registerApp); the KMS app implementation changed (setAppImplementation)"

# 6. destroy revokes every entry, leaves the contracts
manifest "$work/m.yaml" true
"$KMSCTL" destroy --auto-approve -f "$work/m.yaml" > "$work/destroy.log" 2>&1 || { cat "$work/destroy.log"; fail "destroy"; }
for h in $H1 $H2; do allowed "$KMS" 9a4e1d18 "$h" && fail "os image $h still allowed"; done
allowed "$KMS" f6fe4f40 "$MR" && fail "aggregated MR still allowed"
allowed "$KMS" 13eb9770 "$DEV" && fail "KMS device still allowed"
for h in $C1 $C2; do allowed "$APP" 2f6622e5 "$h" && fail "compose hash $h still allowed"; done
r="$(call "$APP" 0x3440a16a)"; [ "${r: -1}" = 0 ] || fail "allowAnyDevice still set"
r="$(anvil_rpc eth_getCode "[\"$KMS\",\"latest\"]")"; [ ${#r} -gt 4 ] || fail "the KMS contract is gone?"
ok "destroy revoked every entry and left the contracts"
