#!/usr/bin/env bash
# tests/e2e/unmanaged_json.sh: allowlist entries added on chain outside
# kmsctl (an OS image hash on the KMS, a compose hash on an app), as
# `drift --json` and `plan --json` report them: each with the address of the
# resource that watches it, its kind and its hash, so an operator can revoke
# it; drift counts each watching resource once (--prom), not each entry.
# Against anvil; the entries are added with eth_sendTransaction, not kmsctl.
set -euo pipefail
: "${KMSCTL:?}" "${KC_SRC_DIR:?}" "${KC_BUILD_DIR:?}"
. "$KC_SRC_DIR/tests/e2e/lib/anvil.sh"

kc_tmpdir work

OS=0xa1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1
COMPOSE=0xb2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2
ODD_OS=0xc3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3
ODD_COMPOSE=0xd4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4

anvil_start
export UJ_RPC=$ANVIL_URL UJ_KEY=$ANVIL_KEY0
cat >"$work/m.yaml" <<YAML
version: 1
name: unmanagedjson
providers:
  chain: {rpc_url: "\${env:UJ_RPC}", chain_id: 31337, private_key: "\${env:UJ_KEY}"}
contracts:
  artifacts: $KC_BUILD_DIR/artifacts
  kms: {}
  os_images: [$OS]
  apps:
    web: {allow_any_device: true, compose_hashes: [$COMPOSE]}
YAML
k() { "$KMSCTL" "$@" -f "$work/m.yaml"; }
k apply --auto-approve >"$work/apply.log" 2>&1 || { cat "$work/apply.log"; fail "apply"; }
addr_of() { k output | awk -v a="$1" '$1 == a {print $3}'; }
kms=$(addr_of chain.kms.main.address)
app=$(addr_of chain.app.web.address)
[ -n "$kms" ] && [ -n "$app" ] || fail "no contract addresses in the outputs"

# Selectors computed here (node + js-sha3), not taken from kmsctl.
sel() {
    node -e 'const {keccak256} = require(process.argv[1] + "/node_modules/js-sha3");
             console.log(keccak256(process.argv[2]).slice(0, 8))' "$KC_SRC_DIR" "$1"
}
owner_tx() { # owner_tx CONTRACT SIGNATURE BYTES32
    anvil_rpc eth_sendTransaction \
        "[{\"from\":\"$ANVIL_ADDR0\",\"to\":\"$1\",\"data\":\"0x$(sel "$2")${3#0x}\"}]" >/dev/null
}
owner_tx "$kms" "addOsImageHash(bytes32)" "$ODD_OS"
owner_tx "$app" "addComposeHash(bytes32)" "$ODD_COMPOSE"

# check FILE: both entries listed with address, kind, id; one difference per
# watching resource.
check() {
    python3 - "$1" "$ODD_OS" "$ODD_COMPOSE" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
odd_os, odd_compose = sys.argv[2], sys.argv[3]
got = {(u["address"], u["kind"], u["id"], u["entry"]) for u in d["unmanaged"]}
want = {("chain.kms_unmanaged.main", "os_image", odd_os, True),
        ("chain.app_unmanaged.web", "compose_hash", odd_compose, True)}
assert got == want, (got, want)
if "differences" in d:
    addrs = sorted(x["address"] for x in d["differences"])
    assert addrs == ["chain.app_unmanaged.web", "chain.kms_unmanaged.main"], addrs
PY
}
rc=0
k drift --json --prom "$work/drift.prom" >"$work/drift.json" 2>"$work/drift.err" || rc=$?
[ "$rc" = 2 ] || fail "drift exit $rc, expected 2: $(cat "$work/drift.err")"
check "$work/drift.json" || fail "drift --json: $(cat "$work/drift.json")"
grep -q '^kmsctl_drift_resources{deployment="unmanagedjson",cause="external"} 2$' "$work/drift.prom" ||
    fail "each watching resource counted once: $(cat "$work/drift.prom")"
k plan --json >"$work/plan.json" 2>"$work/plan.err" || fail "plan --json: $(cat "$work/plan.err")"
check "$work/plan.json" || fail "plan --json: $(cat "$work/plan.json")"
echo "unmanaged_json.sh: ok"
