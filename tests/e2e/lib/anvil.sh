# tests/e2e/lib/anvil.sh: sourced by chain e2e tests and benches.
#   anvil_start [ANVIL ARGS...]  starts anvil (npm @foundry-rs/anvil) on a
#                                loopback port it picks itself (--port 0: no
#                                race for a port chosen before it is bound);
#                                sets ANVIL_URL, ANVIL_PID
#   anvil_stop                   kills it (also done at exit: kc_on_exit)
#   anvil_rpc METHOD [PARAMS]    prints the JSON "result" (jq-free: node)
# Accounts are anvil's published development accounts.
ANVIL_KEY0=0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80
ANVIL_ADDR0=0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266
ANVIL_KEY1=0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d
ANVIL_ADDR1=0x70997970C51812dc3A010C7d01b50e0d17dc79C8

# shellcheck source=common.sh
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"

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
  if [ -n "${ANVIL_LOG:-}" ]; then rm -f "$ANVIL_LOG"; ANVIL_LOG=; fi
}

# The port is anvil's own choice, read from its "Listening on HOST:PORT".
anvil_start() {
  local bin port=
  bin="$(_anvil_bin)" || return 1
  if [ -z "${ANVIL__REGISTERED:-}" ]; then
    ANVIL__REGISTERED=1
    kc_on_exit anvil_stop
  fi
  ANVIL_LOG=$(mktemp "${TMPDIR:-/tmp}/kc-anvil.XXXXXX.log")
  "$bin" --host 127.0.0.1 --port 0 "$@" >"$ANVIL_LOG" 2>&1 &
  ANVIL_PID=$!
  local end=$((SECONDS + 60))
  while [ "$SECONDS" -lt "$end" ]; do
    port=$(sed -n 's/^Listening on 127\.0\.0\.1:\([0-9][0-9]*\)$/\1/p' "$ANVIL_LOG")
    [ -n "$port" ] && break
    kill -0 "$ANVIL_PID" 2>/dev/null || break
    sleep 0.05
  done
  if [ -z "$port" ]; then
    echo "anvil did not start listening; its output:" >&2
    cat "$ANVIL_LOG" >&2
    return 1
  fi
  ANVIL_URL="http://127.0.0.1:$port"
  while [ "$SECONDS" -lt "$end" ]; do
    anvil_rpc eth_chainId >/dev/null 2>&1 && return 0
    kill -0 "$ANVIL_PID" 2>/dev/null || { echo "anvil exited early" >&2; return 1; }
    sleep 0.05
  done
  echo "anvil did not answer on $ANVIL_URL" >&2
  return 1
}

# anvil_txs_since BLOCK [ADDR]: the transactions (of ADDR; of anyone when no
# ADDR) in blocks BLOCK..latest, as "FIRST LAST NBLOCKS CREATIONS": the first
# and last block holding one (-1 when none), how many blocks hold one, and
# how many of them create a contract.
anvil_txs_since() {
  python3 - "$ANVIL_URL" "$1" "${2:-}" <<'PY'
import json, sys, urllib.request
url, start, frm = sys.argv[1], int(sys.argv[2]), sys.argv[3].lower()
def rpc(m, p):
    r = urllib.request.Request(url, json.dumps({"jsonrpc": "2.0", "id": 1, "method": m, "params": p}).encode(),
                               {"Content-Type": "application/json"})
    return json.load(urllib.request.urlopen(r))["result"]
used, creations = [], 0
for b in range(start, int(rpc("eth_blockNumber", []), 16) + 1):
    mine = [t for t in rpc("eth_getBlockByNumber", [hex(b), True])["transactions"]
            if not frm or t["from"].lower() == frm]
    if mine:
        used.append(b)
    creations += sum(1 for t in mine if t.get("to") is None)
print(used[0] if used else -1, used[-1] if used else -1, len(used), creations)
PY
}

# anvil_creations ADDR: how many contract-creation transactions ADDR has
# sent, over every block of the running node.
anvil_creations() {
  local first last n c
  read -r first last n c < <(anvil_txs_since 0 "$1")
  echo "$c"
}

# anvil_pending: how many transactions the node's pool holds, not mined.
anvil_pending() {
  anvil_rpc txpool_status | python3 -c 'import json,sys; print(int(json.load(sys.stdin)["pending"],16))'
}
# anvil_pending_ge N: true once the pool holds N transactions or more.
anvil_pending_ge() { [ "$(anvil_pending)" -ge "$1" ]; }

# chain_manifest_head NAME [TX_TIMEOUT]: the first lines of a manifest whose
# chain provider signs with ${env:E2E_KEY} against ${env:E2E_RPC} (anvil's
# chain id), up to "contracts:" and its artifacts line.
chain_manifest_head() {
  cat <<YAML
version: 1
name: $1
providers:
  chain:
    rpc_url: "\${env:E2E_RPC}"
    chain_id: 31337
    private_key: "\${env:E2E_KEY}"
YAML
  [ -z "${2:-}" ] || echo "    tx_timeout: $2"
  cat <<YAML
contracts:
  artifacts: ${KC_BUILD_DIR:?}/artifacts
YAML
}

# keystore_v3 KEY PASSWORD: a keystore v3 JSON of the private key KEY (0x hex)
# on stdout, encrypted with PASSWORD (pbkdf2, aes-128-ctr), made with node's
# crypto and js-sha3: not with kmsctl's code.
keystore_v3() {
  node - "${KC_SRC_DIR:?}" "${1#0x}" "$2" <<'JS'
const [root, keyhex, pw] = process.argv.slice(2);
const crypto = require('crypto');
const { keccak256 } = require(root + '/node_modules/js-sha3');
const salt = crypto.randomBytes(32), iv = crypto.randomBytes(16);
const dk = crypto.pbkdf2Sync(pw, salt, 4096, 32, 'sha256');
const c = crypto.createCipheriv('aes-128-ctr', dk.subarray(0, 16), iv);
const ct = Buffer.concat([c.update(Buffer.from(keyhex, 'hex')), c.final()]);
const mac = keccak256(Buffer.concat([dk.subarray(16, 32), ct]));
process.stdout.write(JSON.stringify({ version: 3, id: crypto.randomUUID(), crypto: {
  cipher: 'aes-128-ctr', cipherparams: { iv: iv.toString('hex') }, ciphertext: ct.toString('hex'),
  kdf: 'pbkdf2', kdfparams: { c: 4096, dklen: 32, prf: 'hmac-sha256', salt: salt.toString('hex') }, mac } }));
JS
}

# chain_manifest_keys NAME TX_TIMEOUT N [OFFSET]: a whole manifest on anvil:
# the KMS, os images 1 and 2, aggregated MR 3 and device 4 allowed, and app
# "keys" (any device) with N compose hashes, 1000+OFFSET+1.. (32-byte
# numbers). TX_TIMEOUT may be "" (the default).
chain_manifest_keys() {
  local i
  chain_manifest_head "$1" "$2"
  cat <<YAML
  kms: {}
  os_images: [$(printf '0x%064x' 1), $(printf '0x%064x' 2)]
  kms_allowlist:
    aggregated_mrs: [$(printf '0x%064x' 3)]
    device_ids: [$(printf '0x%064x' 4)]
  apps:
    keys:
      allow_any_device: true
      compose_hashes:
YAML
  for i in $(seq 1 "$3"); do printf '        - 0x%064x\n' $((1000 + ${4:-0} + i)); done
}

# chain_node_start [ANVIL ARGS...]: anvil_start, and E2E_RPC/E2E_KEY (what
# chain_manifest_head's manifests read) exported for it.
chain_node_start() {
  anvil_start "$@" || return 1
  export E2E_RPC="$ANVIL_URL" E2E_KEY="$ANVIL_KEY0"
}

# chain_apply_until_pending N LOG MANIFEST: `kmsctl apply` of MANIFEST in the
# background (bg_start, output in LOG) until the node's pool holds N
# transactions (60 s at most, else the test fails); the run goes on ($BG).
chain_apply_until_pending() { # N LOG MANIFEST [EXTRA ARGS...]
  bg_start "$2" "${KMSCTL:?}" apply --auto-approve -f "$3" "${@:4}"
  wait_until 60 anvil_pending_ge "$1" ||
    fail "fewer than $1 transactions ever reached the pool: $(cat "$2")"
}
