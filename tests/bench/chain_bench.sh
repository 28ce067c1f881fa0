#!/usr/bin/env bash
# tests/bench/chain_bench.sh [BUILD_DIR]: for N = 1, 10, 50, 100 compose hashes
# on one app (plus the KMS, its two implementations, the app and four KMS
# allowlist entries), against anvil with one-second blocks: transactions
# sent, JSON-RPC HTTP requests made and blocks used by an apply from
# nothing, and HTTP requests of a no-op plan afterwards. Requests are
# counted from kmsctl's own --debug trace ("POST <url> -> <code>" lines),
# transactions from the signer's nonce, blocks from the chain.
# Runs with the default --parallelism (10) and with --parallelism 128.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
export KC_SRC_DIR="${KC_SRC_DIR:-$(cd "$here/../.." && pwd)}"
build="$(cd "${1:-${KC_BUILD_DIR:-$KC_SRC_DIR/build}}" && pwd)"
KMSCTL="${KMSCTL:-$build/kmsctl}"
. "$KC_SRC_DIR/tests/e2e/lib/anvil.sh"
kc_tmpdir work

manifest() { # N_COMPOSE_HASHES
  KC_BUILD_DIR=$build chain_manifest_keys chainbench "" "$1" > "$work/m.yaml"
}
requests() { grep -c 'POST .* -> ' "$1" || true; }
block() { printf '%d' "$(anvil_rpc eth_blockNumber)"; }

printf '%-5s %-11s %6s %13s %8s %16s\n' N parallelism txs http_requests blocks noop_plan_reqs
for par in 10 128; do
  for n in 1 10 50 100; do
    chain_node_start --block-time 1
    rm -rf "$work/.kmsctl"
    manifest "$n"
    b0="$(block)"
    "$KMSCTL" apply --auto-approve --debug --parallelism "$par" -f "$work/m.yaml" \
      > /dev/null 2> "$work/apply.log"
    b1="$(block)"
    txs=$(( $(anvil_rpc eth_getTransactionCount "[\"$ANVIL_ADDR0\",\"latest\"]") ))
    reqs="$(requests "$work/apply.log")"
    # blocks holding our transactions
    used="$(python3 - "$ANVIL_URL" "$ANVIL_ADDR0" "$b0" "$b1" <<'PY'
import json, sys, urllib.request
url, frm, a, b = sys.argv[1], sys.argv[2].lower(), int(sys.argv[3]), int(sys.argv[4])
def rpc(m, p):
    r = urllib.request.Request(url, json.dumps({"jsonrpc": "2.0", "id": 1, "method": m, "params": p}).encode(),
                               {"Content-Type": "application/json"})
    return json.load(urllib.request.urlopen(r))["result"]
used = [n for n in range(a, b + 1)
        if any(t["from"].lower() == frm for t in rpc("eth_getBlockByNumber", [hex(n), True])["transactions"])]
print(used[-1] - used[0] + 1 if used else 0)
PY
)"
    "$KMSCTL" plan --debug -f "$work/m.yaml" > /dev/null 2> "$work/plan.log"
    printf '%-5s %-11s %6s %13s %8s %16s\n' "$n" "$par" "$txs" "$reqs" "$used" "$(requests "$work/plan.log")"
    anvil_stop
  done
done
