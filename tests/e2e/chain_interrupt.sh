#!/usr/bin/env bash
# tests/e2e/chain_interrupt.sh: SIGTERM while the deploy transactions wait
# for receipts from a node that has just died: kmsctl stops waiting (exit
# 130) within a bounded time, the write-ahead intents are in the state, and
# the next run (a node back, the same state) converges without deploying
# anything twice.
set -euo pipefail
: "${KMSCTL:?}" "${KC_SRC_DIR:?}" "${KC_BUILD_DIR:?}"
. "$KC_SRC_DIR/tests/e2e/lib/anvil.sh"

kc_tmpdir work
{
  chain_manifest_head chainint
  cat <<YAML
  kms: {}
  os_images: ["0x$(printf '%064x' 1)"]
YAML
} > "$work/m.yaml"
state="$work/.kmsctl/chainint.state.json"

chain_node_start --no-mining
chain_apply_until_pending 2 "$work/int.log" "$work/m.yaml" --debug
# Both broadcasts answered: kmsctl now only waits for the receipts.
sent() { [ "$(grep -c ': sent, nonce' "$work/int.log")" -ge 2 ]; }
wait_until 30 sent || fail "kmsctl never saw both broadcasts answered: $(cat "$work/int.log")"
anvil_stop # the node dies with the transactions unmined
t0=$SECONDS
kill -TERM "$BG"
bg_wait 30 || fail "kmsctl still running 30 s after SIGTERM: $(cat "$work/int.log")"
t1=$SECONDS
[ "$rc" = 130 ] || fail "exit code $rc after SIGTERM, expected 130: $(cat "$work/int.log")"
grep -q "interrupted while waiting for the receipt" "$work/int.log" ||
  fail "no word of the abandoned receipts: $(cat "$work/int.log")"
[ -f "$state" ] || fail "no state written"
grep -q '"app_impl"' "$state" || fail "the write-ahead intent is not in the state"
ok "SIGTERM with a dead node: exit 130 after $((t1 - t0)) s, intents recorded"

# The node is back (empty: the unmined transactions died with it).
chain_node_start
"$KMSCTL" apply --auto-approve -f "$work/m.yaml" > "$work/again.log" 2>&1 ||
  fail "apply after the interrupted run: $(cat "$work/again.log")"
creations="$(anvil_creations "$ANVIL_ADDR0")"
[ "$creations" = 3 ] || fail "$creations contract creations, expected 3: $(cat "$work/again.log")"
"$KMSCTL" apply --auto-approve -f "$work/m.yaml" > "$work/noop.log" 2>&1 || fail "third apply"
grep -q "No changes" "$work/noop.log" || fail "not converged: $(cat "$work/noop.log")"
ok "the next run against the node back deployed each contract once and converged"
