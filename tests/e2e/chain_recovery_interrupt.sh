#!/usr/bin/env bash
# tests/e2e/chain_recovery_interrupt.sh: a run killed (-9) while its deploys
# are in the mempool leaves write-ahead intents; the next run waits for the
# recorded deploys (they are pending, not lost). SIGTERM during that wait is
# a safe point: exit 130 at once, intents kept; once the node mines, the run
# after adopts what was mined and deploys nothing twice.
set -euo pipefail
: "${KMSCTL:?}" "${KC_SRC_DIR:?}" "${KC_BUILD_DIR:?}"
. "$KC_SRC_DIR/tests/e2e/lib/anvil.sh"

work="$(mktemp -d)"
kpid=
cleanup() { [ -n "$kpid" ] && kill -9 "$kpid" 2>/dev/null; anvil_stop; rm -rf "$work"; }
trap cleanup EXIT
fail() { echo "not ok - $*" >&2; exit 1; }
ok() { echo "ok - $*"; }
pending() {
  anvil_rpc txpool_status | python3 -c 'import json,sys; print(int(json.load(sys.stdin)["pending"],16))'
}

cat > "$work/m.yaml" <<YAML
version: 1
name: chainrec
providers:
  chain:
    rpc_url: "\${env:E2E_RPC}"
    chain_id: 31337
    private_key: "\${env:E2E_KEY}"
contracts:
  artifacts: $KC_BUILD_DIR/artifacts
  kms: {}
YAML
state="$work/.kmsctl/chainrec.state.json"

anvil_start --no-mining
export E2E_RPC="$ANVIL_URL" E2E_KEY="$ANVIL_KEY0"
"$KMSCTL" apply --auto-approve -f "$work/m.yaml" > "$work/first.log" 2>&1 &
kpid=$!
p=0
for _ in $(seq 1 400); do
  p="$(pending)"
  [ "$p" -ge 2 ] && break
  sleep 0.05
done
[ "$p" -ge 2 ] || { cat "$work/first.log"; fail "the implementation deploys never reached the pool"; }
kill -9 "$kpid"
wait "$kpid" 2>/dev/null || true
kpid=
grep -q '"app_impl"' "$state" || fail "the write-ahead intent is not in the state"
"$KMSCTL" state unlock -f "$work/m.yaml" > /dev/null

# The next run finds the recorded deploys pending (the node still holds
# them) and waits; SIGTERM there must not wait the recovery out (minutes).
"$KMSCTL" apply --auto-approve -f "$work/m.yaml" > "$work/wait.log" 2>&1 &
kpid=$!
for _ in $(seq 1 200); do
  grep -q "waiting for the recorded deploy" "$work/wait.log" && break
  kill -0 "$kpid" 2>/dev/null || break
  sleep 0.05
done
grep -q "waiting for the recorded deploy" "$work/wait.log" ||
  { cat "$work/wait.log"; fail "the second run did not wait for the recorded deploy"; }
t0=$(date +%s)
kill -TERM "$kpid"
for _ in $(seq 1 200); do kill -0 "$kpid" 2>/dev/null || break; sleep 0.05; done
if kill -0 "$kpid" 2>/dev/null; then cat "$work/wait.log"; fail "still waiting 10 s after SIGTERM"; fi
rc=0
wait "$kpid" || rc=$?
kpid=
t1=$(date +%s)
[ "$rc" = 130 ] || { cat "$work/wait.log"; fail "exit code $rc after SIGTERM, expected 130"; }
grep -q "interrupted while the deploy recorded at" "$work/wait.log" ||
  { cat "$work/wait.log"; fail "no word of the pending recorded deploy"; }
grep -q '"app_impl"' "$state" || fail "the intent was lost at the interruption"
ok "SIGTERM while waiting for a recorded pending deploy: exit 130 after $((t1 - t0)) s, intent kept"

# The node mines what it holds; the next run adopts it.
anvil_rpc evm_setAutomine '[true]' > /dev/null
anvil_rpc evm_mine > /dev/null
"$KMSCTL" apply --auto-approve -f "$work/m.yaml" > "$work/again.log" 2>&1 ||
  { cat "$work/again.log"; fail "apply after the interrupted run"; }
creations="$(anvil_creations "$ANVIL_ADDR0")"
[ "$creations" = 3 ] || { cat "$work/again.log"; fail "$creations contract creations, expected 3"; }
"$KMSCTL" apply --auto-approve -f "$work/m.yaml" > "$work/noop.log" 2>&1 || fail "third apply"
grep -q "No changes" "$work/noop.log" || { cat "$work/noop.log"; fail "not converged"; }
ok "after mining, the recorded deploys were adopted: 3 contract creations in all, converged"
