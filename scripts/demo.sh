#!/usr/bin/env bash
# make demo: start the local sandbox (anvil + kmsctl-sim), then run kmsctl
# against manifests/sandbox.yaml as far as kmsctl is built today.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
kmsctl="$build/kmsctl"
sim="$build/kmsctl-sim"
work=.sandbox
mkdir -p "$work"
pids=()
cleanup() {
    for p in "${pids[@]+"${pids[@]}"}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM

# The sandbox OS image (disk.raw + auth_hash.txt) that manifests/sandbox.yaml
# finds through image_search_paths (the build makes it too).
if [ -f scripts/mkimage.sh ]; then
    bash scripts/mkimage.sh .sandbox/images >/dev/null
fi

# anvil on a free loopback port.
port=$(node -e 'const s=require("net").createServer();s.listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})')
node_modules/.bin/anvil --host 127.0.0.1 --port "$port" --silent >"$work/anvil.log" 2>&1 &
pids+=($!)
export KMSCTL_SANDBOX_RPC="http://127.0.0.1:$port"
# anvil's first well-known development key (public test mnemonic).
export KMSCTL_SANDBOX_KEY=0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80
for _ in $(seq 1 100); do
    if curl -sf -H 'content-type: application/json' \
        -d '{"jsonrpc":"2.0","id":1,"method":"eth_chainId","params":[]}' \
        "$KMSCTL_SANDBOX_RPC" >/dev/null 2>&1; then break; fi
    sleep 0.1
done
echo "sandbox: anvil at $KMSCTL_SANDBOX_RPC"

# kmsctl-sim with the services it has (the first of these lists it accepts).
KMSCTL_SANDBOX_SIM=
if [ -x "$sim" ]; then
    for services in gcp,ec2,kms gcp,ec2 gcp; do
        : >"$work/sim.out"
        "$sim" --listen 127.0.0.1:0 --services "$services" --seed 1 \
            >"$work/sim.out" 2>"$work/sim.log" &
        simpid=$!
        for _ in $(seq 1 100); do
            grep -q 'listening on' "$work/sim.out" 2>/dev/null && break
            kill -0 "$simpid" 2>/dev/null || break
            sleep 0.1
        done
        if grep -q 'listening on' "$work/sim.out"; then
            pids+=("$simpid")
            KMSCTL_SANDBOX_SIM=$(sed -n 's/^listening on //p' "$work/sim.out" | head -n1)
            echo "sandbox: kmsctl-sim ($services) at $KMSCTL_SANDBOX_SIM"
            break
        fi
        wait "$simpid" 2>/dev/null || true
    done
fi
if [ -z "$KMSCTL_SANDBOX_SIM" ]; then
    echo "sandbox: kmsctl-sim is not built yet (or has none of its services)" >&2
    KMSCTL_SANDBOX_SIM=http://127.0.0.1:9
fi
export KMSCTL_SANDBOX_SIM

manifest=manifests/sandbox.yaml
state="$work/sandbox.state.json"
rm -f "$state" "$state.backup"
run() {
    echo
    echo "\$ kmsctl $*"
    "$kmsctl" "$@"
}
run validate -f "$manifest"
set +e
run plan -f "$manifest" --state "$state"
rc=$?
if [ $rc -eq 0 ]; then
    run apply -f "$manifest" --state "$state" --auto-approve || exit 1
    run plan -f "$manifest" --state "$state" --detailed-exitcode
    echo "(exit $? — 0 means the second plan found nothing to do)"
    run drift -f "$manifest" --state "$state"
    echo "(drift exit $? — 0 in sync, 2 changed outside kmsctl, 4 manifest ahead)"
    run output -f "$manifest" --state "$state"
    run graph -f "$manifest" --state "$state"
    run destroy -f "$manifest" --state "$state" --auto-approve \
        --allow-identity-loss gcp.instance.dstack-kms
    echo "(destroy exit $?)"
else
    echo "demo: stopped at 'plan' (exit $rc): the message above says which part is not built yet"
fi
