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
. "$KC_SRC_DIR/tests/e2e/lib/sandbox.sh"
sandbox_up 1
cd "$w/manifests"
M=sandbox.yaml
KC_RUN_TIMEOUT=120 # each kmsctl run is bounded
now() { date -u +%Y-%m-%dT%H:%M:%SZ; }

# Each part runs in a subshell from a clean slate (destroy), so one failing
# does not hide the other; the test fails if either did.
part_a() {
# A state of this deployment without the KMS: apply, destroy (the KMS is
# retained on chain and forgotten by the state).
kms 0 apply -f $M --state "$S" --auto-approve
kms 0 destroy -f $M --state "$S" --auto-approve
n=$(($(nonce))) b0=$(($(block) + 1))
# What the crashed run wrote before broadcasting: the app implementation's
# deploy with the next nonce (the address is where it would have gone; no
# code there either way).
jq --arg t "$(now)" --argjson n "$n" \
    '.intents["chain.kms.main"] = {op: "deploy", created_at: $t,
      data: {app_impl: {nonce: $n, address: "0x00000000000000000000000000000000000000aa"}}}' \
    "$S" >"$S.new" && mv "$S.new" "$S"
kms 0 apply -f $M --state "$S" --auto-approve
kms 0 plan -f $M --state "$S" --detailed-exitcode
c=$(creations "$b0")
[ "$c" = 3 ] || fail "A: $c contract creations after the re-apply, expected 3 (one KMS)"
}

part_b() {
b0=$(($(block) + 1))
kms 0 apply -f $M --state "$S" --auto-approve
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
kms 0 apply -f $M --state "$S" --auto-approve
kms 0 plan -f $M --state "$S" --detailed-exitcode
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
