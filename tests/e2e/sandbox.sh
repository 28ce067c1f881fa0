#!/usr/bin/env bash
# tests/e2e/sandbox.sh: the whole manifests/sandbox.yaml end to end, with
# every provider, against anvil (node_modules) and kmsctl-sim (gcp,ec2):
#
#   1. apply; the simulator's inventory holds each object once (checked
#      object by object through the admin API, not kmsctl's output); the
#      chain holds one KMS (3 contract creations: app and KMS
#      implementations, the proxy) and the app;
#   2. re-apply and plan: zero mutating requests (/_sim/requests) and the
#      signer's nonce unchanged;
#   3. drift injected through the admin API (GCP firewall, EC2 security
#      group) and on chain (a transaction of the owner behind kmsctl's back)
#      -> `kmsctl drift --json` exits 2 naming address and field of each;
#      apply repairs; drift exits 0;
#   4. destroy: nothing in the inventory carries the deployment's ownership
#      label (terminated EC2 instances, which EC2 shows for a while, aside);
#   5. kill -9 of `kmsctl apply` at seeded random points (KC_SANDBOX_KILLS
#      runs, default 3; seed KC_SANDBOX_SEED, default 1), then state unlock
#      and re-apply: converges (plan exit 0), no object twice in the
#      inventory, exactly one KMS deployed in the run; destroy again.
# KC_SANDBOX_KEEP=1 keeps the work folder (drift.json, kill*.out).
#
# kmsctl runs on a copy of manifests/ (the manifest byte for byte) whose
# ../build, ../tests and ../.sandbox point at the build folder and the
# sources, from the folder above it (relative paths in the manifest are the
# manifest's folder's, not the working folder's).
set -euo pipefail

: "${KC_SRC_DIR:?}" "${KC_BUILD_DIR:?}" "${KMSCTL:?}"
kills=${KC_SANDBOX_KILLS:-3}
seed=${KC_SANDBOX_SEED:-1}
. "$KC_SRC_DIR/tests/e2e/lib/sandbox.sh"
sandbox_up "$seed" "${KC_SANDBOX_KEEP:-}"
cd "$w"
M=manifests/sandbox.yaml
S=$w/state.json

step() { echo "--- $*"; }

# --- helpers on the chain and the simulator -------------------------------
# owner_tx TO SIGNATURE ARGWORD: a transaction of the owner (anvil's unlocked
# account 0, kmsctl's signer too) made behind kmsctl's back.
owner_tx() {
    local sel
    sel=$(sha3 "$2")
    anvil_rpc eth_sendTransaction "[{\"from\":\"$ANVIL_ADDR0\",\"to\":\"$1\",\"data\":\"${sel:0:10}$3\"}]" >/dev/null
}
mutating() { sim_count mutating; }
# inventory_check MODE: MODE=applied: every object of the deployment once
# (one per kmsctl-address, live EC2 instances only) with the expected
# counts; MODE=empty: none left.
cat >"$w/inventory.py" <<'EOF'
import collections, json, sys
mode, inv = sys.argv[1], json.load(sys.stdin)
def live(o):
    return not (o["service"] == "ec2" and o["kind"] == "instance"
                and o["attrs"].get("state") == "terminated")
owned = [o for o in inv if (o.get("labels") or {}).get("kmsctl-deployment") == "sandbox" and live(o)]
fws = [o for o in inv if o["service"] == "gcp" and o["kind"] == "firewall"]
errs = []
if mode == "empty":
    for o in owned:
        errs.append(f"left behind: {o['service']} {o['kind']} {o['name']}")
    for o in fws:
        errs.append(f"firewall left behind: {o['name']}")
else:
    by_addr = collections.Counter((o["service"], o["kind"], o["labels"].get("kmsctl-address")) for o in owned
                                  if not (o["service"] == "gcp" and o["kind"] == "disk" and "shared" in o["name"]))
    for k, n in by_addr.items():
        if n != 1:
            errs.append(f"{n} objects for {k}")
    kinds = collections.Counter((o["service"], o["kind"]) for o in owned)
    want = {("gcp", "image"): 3, ("gcp", "object"): 3, ("gcp", "disk"): 3,
            ("gcp", "instance"): 1, ("ec2", "key_pair"): 1,
            ("ec2", "security_group"): 1, ("ec2", "instance"): 1}
    for k, n in want.items():
        if kinds.get(k, 0) != n:
            errs.append(f"{kinds.get(k, 0)} x {k[0]} {k[1]} labelled, expected {n}")
    names = sorted(o["name"] for o in fws)
    if names != ["dstack-kms-allow-tcp-12001", "dstack-kms-allow-tcp-18000"]:
        errs.append(f"firewalls: {names}")
    inst = [o for o in owned if o["service"] == "gcp" and o["kind"] == "instance"]
    if inst and inst[0]["attrs"].get("status") != "RUNNING":
        errs.append(f"gcp instance status {inst[0]['attrs'].get('status')}")
if errs:
    print("\n".join(errs))
    sys.exit(1)
EOF
inventory_check() { sim_inventory | python3 "$w/inventory.py" "$1"; }

# --- 1. apply ---------------------------------------------------------------
step "apply the sandbox"
kms 0 validate -f $M
b0=$(block)
kms 0 apply -f $M --state "$S" --auto-approve
case $out in *"Apply complete: "*", 0 failed, 0 skipped."*) ;; *) fail "apply: $out" ;; esac
inventory_check applied || fail "inventory after apply"
kms=$(jq -r '.resources["chain.kms.main"].outputs.address' "$S")
app=$(jq -r '.resources["chain.app.nitro-keys"].outputs.address' "$S")
[ "$(anvil_rpc eth_getCode "[\"$kms\",\"latest\"]")" != 0x ] || fail "no code at the KMS $kms"
[ "$(anvil_rpc eth_getCode "[\"$app\",\"latest\"]")" != 0x ] || fail "no code at the app $app"
[ "$(creations $((b0 + 1)))" = 3 ] || fail "expected 3 contract creations (app impl, kms impl, proxy)"
[ "$(app_deploys $((b0 + 1)))" = 1 ] || fail "expected one app deployed through the factory"

# --- 2. re-apply: nothing to do ---------------------------------------------
step "re-apply and plan: zero mutating calls, nonce unchanged"
m0=$(mutating) n0=$(nonce)
kms 0 apply -f $M --state "$S" --auto-approve
kms 0 plan -f $M --state "$S" --detailed-exitcode
[ "$(mutating)" = "$m0" ] || fail "re-apply made $(($(mutating) - m0)) mutating requests"
[ "$(nonce)" = "$n0" ] || fail "re-apply sent transactions (nonce $n0 -> $(nonce))"
kms 0 drift -f $M --state "$S"

# --- 3. drift: simulator and chain, then repair -----------------------------
step "drift through the admin API and on chain"
sim_patch_object gcp firewall dstack-kms-allow-tcp-18000 '{"attrs":{"sourceRanges":["0.0.0.0/0"]}}' >/dev/null
sg=$(jq -r '.resources["aws.security_group.enclave-host"].provider_id' "$S")
sim_patch_object ec2 security_group "$sg" '{"attrs":{"ingress":[]}}' >/dev/null
owner_tx "$app" 'setAllowAnyDevice(bool)' "$(printf '%064x' 0)"
osh=$(jq -r '.resources | keys[] | select(startswith("chain.kms_os_image."))' "$S" | head -n1)
owner_tx "$kms" 'removeOsImageHash(bytes32)' "${osh#chain.kms_os_image.0x}"
m0=$(mutating) n0=$(nonce)
kms 2 drift -f $M --state "$S" --json
echo "$out" >"$w/drift.json"
for want in "gcp.firewall.dstack-kms-allow-tcp-18000 source_ranges" \
    "aws.security_group.enclave-host " \
    "chain.app_allow_any_device.nitro-keys " \
    "$osh "; do
    jq -r '.differences[] | select(.cause == "external") | "\(.address) \(.field)"' <<<"$out" |
        grep -q "^$want" || fail "drift --json does not name '$want': $out"
done
[ "$(mutating)" = "$m0" ] || fail "drift made mutating requests"
[ "$(nonce)" = "$n0" ] || fail "drift sent transactions"
kms 0 apply -f $M --state "$S" --auto-approve
kms 0 drift -f $M --state "$S" --json
inventory_check applied || fail "inventory after the repair"
[ "$(anvil_rpc eth_call "[{\"to\":\"$app\",\"data\":\"$(sha3 'allowAnyDevice()' | cut -c1-10)\"},\"latest\"]")" = \
    0x0000000000000000000000000000000000000000000000000000000000000001 ] ||
    fail "allowAnyDevice not set back on chain"

# --- 4. destroy --------------------------------------------------------------
step "destroy"
kms 0 destroy -f $M --state "$S" --auto-approve
inventory_check empty || fail "inventory after destroy"

# --- 5. kill -9 at random points, then converge -------------------------------
RANDOM=$seed
for i in $(seq 1 "$kills"); do
    # Each request 20-120 ms slower: a wider window between the steps.
    sim_faults '[{"match":"^(GET|POST|PUT|PATCH|DELETE) /(gcp|ec2)/","latency_ms":[20,120]}]'
    b0=$(block)
    # The kill point: after the K-th progress line (seeded; an apply of the
    # sandbox prints about 45 after its plan), plus 0-99 ms.
    k=$((1 + RANDOM % 45)) extra=$((RANDOM % 100))
    step "kill run $i: kill -9 after progress line $k + $extra ms"
    : >"$w/kill$i.out"
    bg_start "$w/kill$i.out" "$KMSCTL" apply -f $M --state "$S" --auto-approve
    while kill -0 "$BG" 2>/dev/null && [ "$(grep -c '^[0-9]\{4\}-' "$w/kill$i.out")" -lt "$k" ]; do
        sleep 0.01
    done
    sleep "$(awk "BEGIN{print $extra/1000}")"
    bg_kill
    echo "    killed after: $(grep -c ': created' "$w/kill$i.out" || true) resources created; last line: $(tail -n1 "$w/kill$i.out")"
    sim_clear_faults
    "$KMSCTL" state unlock --state "$S" >/dev/null 2>&1 </dev/null || true
    kms 0 apply -f $M --state "$S" --auto-approve
    kms 0 plan -f $M --state "$S" --detailed-exitcode
    inventory_check applied || fail "run $i: inventory after re-apply"
    c=$(creations $((b0 + 1)))
    [ "$c" = 3 ] || fail "run $i: $c contract creations, expected 3 (one KMS)"
    c=$(app_deploys $((b0 + 1)))
    [ "$c" = 1 ] || fail "run $i: $c apps deployed, expected 1"
    [ "$(jq '[.resources | keys[] | select(startswith("chain.kms."))] | length' "$S")" = 1 ] ||
        fail "run $i: more than one chain.kms in the state"
    kms 0 destroy -f $M --state "$S" --auto-approve
    inventory_check empty || fail "run $i: inventory after destroy"
done
echo "sandbox.sh: ok"
