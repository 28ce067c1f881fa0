# tests/e2e/lib/anvil.sh: sourced by chain e2e tests and benches.
#   anvil_start [ANVIL ARGS...]  starts anvil (npm @foundry-rs/anvil) on a
#                                free loopback port; sets ANVIL_URL, ANVIL_PID
#   anvil_stop                   kills it (also done by the EXIT trap)
#   anvil_rpc METHOD [PARAMS]    prints the JSON "result" (jq-free: node)
# Accounts are anvil's published development accounts.
ANVIL_KEY0=0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80
ANVIL_ADDR0=0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266
ANVIL_KEY1=0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d
ANVIL_ADDR1=0x70997970C51812dc3A010C7d01b50e0d17dc79C8

_anvil_bin() {
  local root="${KC_SRC_DIR:?}"
  local b
  for b in "$root/node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil" \
           "$root/node_modules/@foundry-rs/anvil-linux-arm64/bin/anvil"; do
    [ -x "$b" ] && { echo "$b"; return 0; }
  done
  echo "anvil: not installed under $root/node_modules" >&2
  return 1
}

_free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

anvil_rpc() {
  local method="$1" params="${2:-[]}"
  curl -sS --max-time 30 -H 'Content-Type: application/json' \
    -d "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"$method\",\"params\":$params}" \
    "$ANVIL_URL" |
    python3 -c 'import json,sys
r=json.load(sys.stdin)
if "error" in r: print("rpc error: "+json.dumps(r["error"]), file=sys.stderr); sys.exit(1)
v=r["result"]; print(v if isinstance(v,str) else json.dumps(v))'
}

anvil_stop() {
  if [ -n "${ANVIL_PID:-}" ]; then
    kill "$ANVIL_PID" 2>/dev/null || true
    wait "$ANVIL_PID" 2>/dev/null || true
    ANVIL_PID=
  fi
}

anvil_start() {
  local bin port i
  bin="$(_anvil_bin)" || return 1
  port="$(_free_port)"
  "$bin" --host 127.0.0.1 --port "$port" --silent "$@" >/dev/null 2>&1 &
  ANVIL_PID=$!
  ANVIL_URL="http://127.0.0.1:$port"
  trap anvil_stop EXIT
  for i in $(seq 1 300); do
    if anvil_rpc eth_chainId >/dev/null 2>&1; then
      return 0
    fi
    kill -0 "$ANVIL_PID" 2>/dev/null || { echo "anvil exited early" >&2; return 1; }
    sleep 0.05
  done
  echo "anvil did not answer on $ANVIL_URL" >&2
  return 1
}

# anvil_creations ADDR: how many contract-creation transactions ADDR has
# sent, over every block of the running node.
anvil_creations() {
  python3 - "$ANVIL_URL" "$1" <<'PY'
import json, sys, urllib.request
url, frm = sys.argv[1], sys.argv[2].lower()
def rpc(m, p):
    r = urllib.request.Request(url, json.dumps({"jsonrpc": "2.0", "id": 1, "method": m, "params": p}).encode(),
                               {"Content-Type": "application/json"})
    return json.load(urllib.request.urlopen(r))["result"]
n = 0
for b in range(0, int(rpc("eth_blockNumber", []), 16) + 1):
    n += sum(1 for t in rpc("eth_getBlockByNumber", [hex(b), True])["transactions"]
             if t["from"].lower() == frm and t.get("to") is None)
print(n)
PY
}
