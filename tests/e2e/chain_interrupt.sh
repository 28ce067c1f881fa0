#!/usr/bin/env bash
# tests/e2e/chain_interrupt.sh: SIGTERM while the deploy transactions wait
# for receipts from a node that has just died: kmsctl stops waiting (exit
# 130) within a bounded time, the write-ahead intents are in the state, and
# the next run (a node back, the same state) converges without deploying
# anything twice.
set -euo pipefail
: "${KMSCTL:?}" "${KC_SRC_DIR:?}" "${KC_BUILD_DIR:?}"
. "$KC_SRC_DIR/tests/e2e/lib/anvil.sh"

work="$(mktemp -d)"
kpid=
cleanup() { [ -n "$kpid" ] && kill -9 "$kpid" 2>/dev/null; anvil_stop; rm -rf "$work"; }
trap cleanup EXIT
fail() { echo "not ok - $*" >&2; exit 1; }
ok() { echo "ok - $*"; }

cat > "$work/m.yaml" <<YAML
version: 1
name: chainint
providers:
  chain:
    rpc_url: "\${env:E2E_RPC}"
    chain_id: 31337
    private_key: "\${env:E2E_KEY}"
contracts:
  artifacts: $KC_BUILD_DIR/artifacts
  kms: {}
  os_images: ["0x$(printf '%064x' 1)"]
YAML
state="$work/.kmsctl/chainint.state.json"

anvil_start --no-mining
export E2E_RPC="$ANVIL_URL" E2E_KEY="$ANVIL_KEY0"
"$KMSCTL" apply --auto-approve -f "$work/m.yaml" > "$work/int.log" 2>&1 &
kpid=$!
for i in $(seq 1 200); do
  p="$(anvil_rpc txpool_status | python3 -c 'import json,sys; print(int(json.load(sys.stdin)["pending"],16))')"
  [ "$p" -ge 2 ] && break
  sleep 0.05
done
[ "$p" -ge 2 ] || fail "the implementation deploys never reached the pool"
sleep 0.5 # let the receipt polling start
anvil_stop # the node dies with the transactions unmined
t0=$(date +%s)
kill -TERM "$kpid"
rc=0
for i in $(seq 1 600); do kill -0 "$kpid" 2>/dev/null || break; sleep 0.05; done
if kill -0 "$kpid" 2>/dev/null; then cat "$work/int.log"; fail "kmsctl still running 30 s after SIGTERM"; fi
wait "$kpid" || rc=$?
kpid=
t1=$(date +%s)
[ "$rc" = 130 ] || { cat "$work/int.log"; fail "exit code $rc after SIGTERM, expected 130"; }
grep -q "interrupted while waiting for the receipt" "$work/int.log" ||
  { cat "$work/int.log"; fail "no word of the abandoned receipts"; }
[ -f "$state" ] || fail "no state written"
grep -q '"app_impl"' "$state" || fail "the write-ahead intent is not in the state"
ok "SIGTERM with a dead node: exit 130 after $((t1 - t0)) s, intents recorded"

# The node is back (empty: the unmined transactions died with it).
anvil_start
export E2E_RPC="$ANVIL_URL"
"$KMSCTL" apply --auto-approve -f "$work/m.yaml" > "$work/again.log" 2>&1 ||
  { cat "$work/again.log"; fail "apply after the interrupted run"; }
creations="$(anvil_creations "$ANVIL_ADDR0")"
[ "$creations" = 3 ] || { cat "$work/again.log"; fail "$creations contract creations, expected 3"; }
"$KMSCTL" apply --auto-approve -f "$work/m.yaml" > "$work/noop.log" 2>&1 || fail "third apply"
grep -q "No changes" "$work/noop.log" || { cat "$work/noop.log"; fail "not converged"; }
ok "the next run against the node back deployed each contract once and converged"
