#!/usr/bin/env bash
# tests/e2e/chain_recovery_interrupt.sh: a run killed (-9) while its deploys
# are in the mempool leaves write-ahead intents; the next run waits for the
# recorded deploys (they are pending, not lost). SIGTERM during that wait is
# a safe point: exit 130 at once, intents kept; once the node mines, the run
# after adopts what was mined and deploys nothing twice.
set -euo pipefail
: "${KMSCTL:?}" "${KC_SRC_DIR:?}" "${KC_BUILD_DIR:?}"
. "$KC_SRC_DIR/tests/e2e/lib/anvil.sh"

kc_tmpdir work
{
  chain_manifest_head chainrec
  echo "  kms: {}"
} > "$work/m.yaml"
state="$work/.kmsctl/chainrec.state.json"

chain_node_start --no-mining
chain_apply_until_pending 2 "$work/first.log" "$work/m.yaml"
bg_kill
grep -q '"app_impl"' "$state" || fail "the write-ahead intent is not in the state"
"$KMSCTL" state unlock -f "$work/m.yaml" > /dev/null

# The next run finds the recorded deploys pending (the node still holds
# them) and waits; SIGTERM there must not wait the recovery out (minutes).
bg_start "$work/wait.log" "$KMSCTL" apply --auto-approve -f "$work/m.yaml"
waiting() {
  grep -q "waiting for the recorded deploy" "$work/wait.log" && return 0
  kill -0 "$BG" 2>/dev/null || fail "the second run ended without waiting for the recorded deploy: $(cat "$work/wait.log")"
  return 1
}
wait_until 60 waiting ||
  fail "the second run did not wait for the recorded deploy: $(cat "$work/wait.log")"
t0=$SECONDS
kill -TERM "$BG"
bg_wait 10 || fail "still waiting 10 s after SIGTERM: $(cat "$work/wait.log")"
t1=$SECONDS
[ "$rc" = 130 ] || fail "exit code $rc after SIGTERM, expected 130: $(cat "$work/wait.log")"
grep -q "interrupted while the deploy recorded at" "$work/wait.log" ||
  fail "no word of the pending recorded deploy: $(cat "$work/wait.log")"
grep -q '"app_impl"' "$state" || fail "the intent was lost at the interruption"
ok "SIGTERM while waiting for a recorded pending deploy: exit 130 after $((t1 - t0)) s, intent kept"

# The node mines what it holds; the next run adopts it.
anvil_rpc evm_setAutomine '[true]' > /dev/null
anvil_rpc evm_mine > /dev/null
"$KMSCTL" apply --auto-approve -f "$work/m.yaml" > "$work/again.log" 2>&1 ||
  fail "apply after the interrupted run: $(cat "$work/again.log")"
creations="$(anvil_creations "$ANVIL_ADDR0")"
[ "$creations" = 3 ] || fail "$creations contract creations, expected 3: $(cat "$work/again.log")"
"$KMSCTL" apply --auto-approve -f "$work/m.yaml" > "$work/noop.log" 2>&1 || fail "third apply"
grep -q "No changes" "$work/noop.log" || fail "not converged: $(cat "$work/noop.log")"
ok "after mining, the recorded deploys were adopted: 3 contract creations in all, converged"
