#!/usr/bin/env bash
# tests/e2e/chain_crash_blocks.sh: kmsctl killed (-9) after its deploy
# transactions were sent but before their receipts were recorded deploys
# nothing twice on the next run (write-ahead intents, code found at the
# recorded CREATE addresses, a still-pending nonce waited for); and with
# one-second blocks the whole contracts section from nothing fits in 5
# blocks and 50 more compose hashes in 3, at the default --parallelism.
set -euo pipefail
: "${KMSCTL:?}" "${KC_SRC_DIR:?}" "${KC_BUILD_DIR:?}"
. "$KC_SRC_DIR/tests/e2e/lib/anvil.sh"

kc_tmpdir work

manifest() { # manifest FILE N_COMPOSE_HASHES OFFSET
  chain_manifest_keys chainblocks 60s "$2" "$3" > "$1"
}

# Blocks holding transactions of FROM since block START: "first last count
# creations".
# --- 1. kill -9 while the deploys are in the mempool --------------------
chain_node_start --no-mining
manifest "$work/m.yaml" 2 0
chain_apply_until_pending 2 "$work/crash.log" "$work/m.yaml"
bg_kill
grep -q '"app_impl"' "$work/.kmsctl/chainblocks.state.json" ||
  fail "no write-ahead intent in the state before the broadcast"
# The operator clears the dead run's lock, as kmsctl asks.
"$KMSCTL" state unlock --state "$work/.kmsctl/chainblocks.state.json" > /dev/null 2>&1 || fail "state unlock"
# The deploys are still pending when kmsctl runs again: mining resumes
# one block a second meanwhile.
anvil_rpc evm_setIntervalMining "[1]" >/dev/null
"$KMSCTL" apply --auto-approve -f "$work/m.yaml" > "$work/recover.log" 2>&1 ||
  { cat "$work/recover.log"; fail "apply after kill -9"; }
read -r first last nblocks creations < <(anvil_txs_since 0 "$ANVIL_ADDR0")
[ "$creations" = 3 ] || { cat "$work/recover.log"; fail "$creations contract creations, expected 3 (app impl, kms impl, proxy)"; }
"$KMSCTL" apply --auto-approve -f "$work/m.yaml" > "$work/again.log" 2>&1 || fail "apply after recovery"
grep -q "No changes" "$work/again.log" || { cat "$work/again.log"; fail "not converged after recovery"; }
ok "kill -9 after the deploys were sent: the next run reused them (3 creations in all)"
anvil_stop

# --- 1b. kill -9 while deployAndRegisterApp is in the mempool; the
#     transaction is then replaced by another with the same nonce and higher
#     fees (as a fee-bumped re-broadcast would be), so the hash kmsctl
#     recorded never gets a receipt: the next run finds the app by nonce
chain_node_start
rm -rf "$work/.kmsctl"
manifest "$work/m.yaml" 0 0
sed -i '/^  apps:/,$d' "$work/m.yaml"
"$KMSCTL" apply --auto-approve -f "$work/m.yaml" > "$work/kmsonly.log" 2>&1 || { cat "$work/kmsonly.log"; fail "apply of the KMS"; }
KMS="$("$KMSCTL" output -f "$work/m.yaml" | awk '$1 == "chain.kms.main.address" {print $3}')"
manifest "$work/m.yaml" 2 0
anvil_rpc evm_setAutomine "[false]" >/dev/null
chain_apply_until_pending 1 "$work/crash2.log" "$work/m.yaml"
bg_kill
read -r oldhash txjson < <(anvil_rpc txpool_content | python3 -c '
import json, sys
c = json.load(sys.stdin)["pending"]
for frm, by_nonce in c.items():
    for n, t in by_nonce.items():
        print(t["hash"], json.dumps({"from": t["from"], "to": t["to"], "data": t["input"], "nonce": t["nonce"],
              "gas": t["gas"], "maxFeePerGas": hex(2 * int(t["maxFeePerGas"], 16)),
              "maxPriorityFeePerGas": hex(2 * int(t["maxPriorityFeePerGas"], 16))}))
')
grep -q "$oldhash" "$work/.kmsctl/chainblocks.state.json" || fail "the intent does not record the transaction hash"
anvil_rpc anvil_dropTransaction "[\"$oldhash\"]" >/dev/null
newhash="$(anvil_rpc eth_sendTransaction "[$txjson]")"
[ "$newhash" != "$oldhash" ] || fail "the replacement has the same hash"
anvil_rpc evm_mine >/dev/null
anvil_rpc evm_setAutomine "[true]" >/dev/null
"$KMSCTL" state unlock --state "$work/.kmsctl/chainblocks.state.json" > /dev/null 2>&1 || fail "state unlock"
"$KMSCTL" apply --auto-approve -f "$work/m.yaml" > "$work/recover2.log" 2>&1 || { cat "$work/recover2.log"; fail "apply after the replaced app creation"; }
apps="$(anvil_rpc eth_getLogs "[{\"address\":\"$KMS\",\"fromBlock\":\"0x0\",\"topics\":[\"0xfd86d7f6962eba3b7a3bf9129c06c0b2f885e1c61ef2c9f0dbb856be0deefdee\"]}]" |
  python3 -c 'import json,sys; l=json.load(sys.stdin); print(len(l), "0x" + l[0]["topics"][1][-40:] if l else "")')"
read -r napps appid <<< "$apps"
[ "$napps" = 1 ] || { cat "$work/recover2.log"; fail "$napps apps created, expected 1"; }
got="$("$KMSCTL" output -f "$work/m.yaml" | awk '$1 == "chain.app.keys.address" {print $3}')"
[ "$got" = "$appid" ] || fail "adopted app $got, the chain made $appid"
"$KMSCTL" apply --auto-approve -f "$work/m.yaml" > "$work/again2.log" 2>&1 || fail "apply after recovery"
grep -q "No changes" "$work/again2.log" || { cat "$work/again2.log"; fail "not converged"; }
ok "kill -9 during the app creation, transaction replaced: the next run found the app by nonce (1 app in all)"
anvil_stop

# --- 2. one-second blocks: the whole section, then 50 compose hashes ----
chain_node_start --block-time 1
rm -rf "$work/.kmsctl"
manifest "$work/m.yaml" 2 0
start="$(anvil_rpc eth_blockNumber)"
"$KMSCTL" apply --auto-approve -f "$work/m.yaml" > "$work/full.log" 2>&1 ||
  { cat "$work/full.log"; fail "apply with one-second blocks"; }
read -r first last nblocks creations < <(anvil_txs_since $((start)) "$ANVIL_ADDR0")
span=$((last - first + 1))
[ "$span" -le 5 ] || { cat "$work/full.log"; fail "the contracts section took $span blocks ($first..$last), expected at most 5"; }
ok "whole contracts section from nothing in $span blocks ($nblocks with our transactions, $creations creations)"
manifest "$work/m.yaml" 52 0
start="$(anvil_rpc eth_blockNumber)"
"$KMSCTL" apply --auto-approve -f "$work/m.yaml" > "$work/fifty.log" 2>&1 ||
  { cat "$work/fifty.log"; fail "apply of 50 compose hashes"; }
read -r first last nblocks creations < <(anvil_txs_since $((start + 1)) "$ANVIL_ADDR0")
span=$((last - first + 1))
[ "$span" -le 3 ] || fail "50 compose hashes took $span blocks ($first..$last), expected at most 3"
ok "50 compose hashes registered in $span blocks"
