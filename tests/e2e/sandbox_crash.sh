#!/usr/bin/env bash
# tests/e2e/sandbox_crash.sh: the two crash windows of the chain provider's
# write-ahead intents that sandbox.sh's random kill -9 hits only sometimes,
# made deterministic by writing the state a crashed run leaves:
#
#   A. kill -9 after chain.kms.main recorded (and persisted) the intent of a
#      deploy but before the transaction was broadcast: the nonce recorded
#      is never used. A re-apply must deploy (one KMS), not wait for a
#      transaction that no node has.
#   B. kill -9 after chain.app.nitro-keys's deployAndRegisterApp was mined
#      but before the app was recorded (only its intent, nonce + hash, is in
#      the state): a re-apply must find the app from the receipt, create
#      nothing twice, and converge (the app's dependents read its
#      deploy_block output).
#
# Each re-apply is bounded (120 s): a stuck one fails the test.
#
# History: A hung on main (kms.c waited 300 s for a nonce no node held, then
# failed "still pending" on every run) until 42949a5 (pending count <=
# recorded nonce: deploy again at once).
set -euo pipefail

: "${KC_SRC_DIR:?}" "${KC_BUILD_DIR:?}" "${KMSCTL:?}"
export KMSCTL_SIM=${KMSCTL_SIM:-$KC_BUILD_DIR/kmsctl-sim}
for f in "$KC_BUILD_DIR/artifacts/contracts/DstackKms.sol/DstackKms.json" \
    "$KC_SRC_DIR/.sandbox/images/dstack-sandbox-0.1.0/disk.raw"; do
    [ -e "$f" ] || { echo "FAIL: $f is not built" >&2; exit 1; }
done
. "$KC_SRC_DIR/tests/e2e/lib/sim.sh"
. "$KC_SRC_DIR/tests/e2e/lib/anvil.sh"
w=$(mktemp -d "${TMPDIR:-/tmp}/kc-sbx-crash.XXXXXX")
cleanup() {
    local rc=$?
    anvil_stop
    sim_stop
    if [ "$rc" = 0 ]; then rm -rf "$w" "${SIM_LOG:-}"; else echo "sandbox_crash.sh: files kept in $w" >&2; fi
    exit "$rc"
}
sim_start gcp,ec2 1
anvil_start
trap cleanup EXIT
mkdir -p "$w/manifests"
cp "$KC_SRC_DIR"/manifests/sandbox* "$w/manifests/"
ln -s "$KC_BUILD_DIR" "$w/build"
ln -s "$KC_SRC_DIR/tests" "$w/tests"
ln -s "$KC_SRC_DIR/.sandbox" "$w/.sandbox"
cd "$w/manifests"
export KMSCTL_SANDBOX_RPC=$ANVIL_URL KMSCTL_SANDBOX_SIM=$SIM_URL KMSCTL_SANDBOX_KEY=$ANVIL_KEY0
M=sandbox.yaml

fail() {
    echo "FAIL: $*" >&2
    exit 1
}
run() {
    local want=$1 rc=0
    shift
    out=$(timeout -k 5 120 "$KMSCTL" "$@" 2>"$w/stderr" </dev/null) || rc=$?
    errout=$(cat "$w/stderr")
    [ "$rc" -ne 124 ] && [ "$rc" -ne 137 ] || fail "'kmsctl $*' did not finish in 120 s: $(tail -n 3 <<<"$out")"
    [ "$rc" -eq "$want" ] ||
        fail "'kmsctl $*' exited $rc, expected $want: $errout // $(tail -n 12 <<<"$out")"
}
block() { python3 -c "print(int('$(anvil_rpc eth_blockNumber)', 16))"; }
nonce() { python3 -c "print(int('$(anvil_rpc eth_getTransactionCount "[\"$ANVIL_ADDR0\",\"latest\"]")', 16))"; }
sha3() { anvil_rpc web3_sha3 "[\"0x$(printf '%s' "$1" | od -An -tx1 | tr -d ' \n')\"]"; }
creations_since() { # contract-creation transactions in blocks FROM..latest
    python3 - "$ANVIL_URL" "$1" "$(block)" <<'EOF'
import json, sys, urllib.request
url, a, b = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
n = 0
for i in range(a, b + 1):
    req = urllib.request.Request(url, json.dumps({"jsonrpc": "2.0", "id": 1,
        "method": "eth_getBlockByNumber", "params": [hex(i), True]}).encode(),
        {"Content-Type": "application/json"})
    n += sum(1 for t in json.load(urllib.request.urlopen(req))["result"]["transactions"]
             if t.get("to") is None)
print(n)
EOF
}
app_logs_since() { # AppDeployedViaFactory logs since block FROM (JSON array)
    anvil_rpc eth_getLogs "[{\"fromBlock\":\"$(printf '0x%x' "$1")\",\"toBlock\":\"latest\",\"topics\":[\"$(sha3 'AppDeployedViaFactory(address,address)')\"]}]"
}
now() { date -u +%Y-%m-%dT%H:%M:%SZ; }

# Each part runs in a subshell from a clean slate (destroy), so one failing
# does not hide the other; the test fails if either did.
part_a() {
# A state of this deployment without the KMS: apply, destroy (the KMS is
# retained on chain and forgotten by the state).
run 0 apply -f $M --state "$S" --auto-approve
run 0 destroy -f $M --state "$S" --auto-approve
n=$(nonce) b0=$(($(block) + 1))
# What the crashed run wrote before broadcasting: the app implementation's
# deploy with the next nonce (the address is where it would have gone; no
# code there either way).
jq --arg t "$(now)" --argjson n "$n" \
    '.intents["chain.kms.main"] = {op: "deploy", created_at: $t,
      data: {app_impl: {nonce: $n, address: "0x00000000000000000000000000000000000000aa"}}}' \
    "$S" >"$S.new" && mv "$S.new" "$S"
run 0 apply -f $M --state "$S" --auto-approve
run 0 plan -f $M --state "$S" --detailed-exitcode
c=$(creations_since "$b0")
[ "$c" = 3 ] || fail "A: $c contract creations after the re-apply, expected 3 (one KMS)"
}

part_b() {
b0=$(($(block) + 1))
run 0 apply -f $M --state "$S" --auto-approve
logs=$(app_logs_since "$b0")
[ "$(jq length <<<"$logs")" = 1 ] || fail "B: expected one app deployed: $logs"
tx=$(jq -r '.[0].transactionHash' <<<"$logs")
txn=$(python3 -c "print(int('$(anvil_rpc eth_getTransactionByHash "[\"$tx\"]" | jq -r .nonce)', 16))")
# The state a run killed right after the app's receipt would have left: the
# app's intent, and none of the app or what comes after it.
jq --arg t "$(now)" --arg h "$tx" --argjson n "$txn" '
    .intents["chain.app.nitro-keys"] = {op: "create", created_at: $t, data: {nonce: $n, hash: $h}}
    | .resources |= with_entries(select(.key | startswith("chain.app") | not))' \
    "$S" >"$S.new" && mv "$S.new" "$S"
run 0 apply -f $M --state "$S" --auto-approve
run 0 plan -f $M --state "$S" --detailed-exitcode
[ "$(jq length <<<"$(app_logs_since "$b0")")" = 1 ] || fail "B: the re-apply deployed the app again"
[ "$(jq -r '.resources["chain.app.nitro-keys"].outputs.address' "$S")" = \
  "$(jq -r '.[0].topics[1]' <<<"$logs" | sed 's/^0x000000000000000000000000/0x/')" ] ||
    fail "B: the state does not hold the app that was deployed"
}

failed=
echo "--- B: deployAndRegisterApp mined, the state holds only its intent"
S=$w/state-b.json
(part_b) || failed="$failed B"
echo "--- A: intent of a KMS deploy that was never broadcast"
sim_reset
S=$w/state-a.json
(part_a) || failed="$failed A"
[ -z "$failed" ] || fail "parts failed:$failed"
echo "sandbox_crash.sh: ok"
