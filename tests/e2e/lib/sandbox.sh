# tests/e2e/lib/sandbox.sh: the whole sandbox (manifests/sandbox.yaml on anvil
# and kmsctl-sim gcp,ec2) for a shell test or a bench. Source it, then:
#
#   sandbox_up SEED [KEEP]  checks the contracts and the OS image are built,
#                           starts kmsctl-sim (gcp,ec2; SEED) and anvil,
#                           exports KMSCTL_SANDBOX_{RPC,SIM,KEY}, and makes
#                           the work folder $w: a copy of manifests/ (the
#                           manifest byte for byte) whose ../build, ../tests
#                           and ../.sandbox point at the build folder and the
#                           sources. $w is removed at exit unless the test
#                           failed or KEEP is non-empty (then it is named).
#   kms RC ARGS...          run RC "$KMSCTL" ARGS... (lib/common.sh)
#   block                   the latest block number (decimal)
#   nonce                   the nonce of anvil's account 0 (hex)
#   sha3 TEXT               keccak256 of TEXT (0x hex), by the node
#   creations FROM          contract creations in blocks FROM..latest
#   app_logs_since FROM     AppDeployedViaFactory logs since block FROM (JSON)
#   app_deploys FROM        how many of them
#
# Needs $KC_SRC_DIR, $KC_BUILD_DIR; kmsctl-sim is $KMSCTL_SIM (else in the
# build folder).

# shellcheck source=sim.sh
. "$(dirname "${BASH_SOURCE[0]}")/sim.sh"
# shellcheck source=anvil.sh
. "$(dirname "${BASH_SOURCE[0]}")/anvil.sh"

sandbox_up() { # SEED [KEEP]
    local f src build
    export KMSCTL_SIM=${KMSCTL_SIM:-$KC_BUILD_DIR/kmsctl-sim}
    for f in "$KMSCTL_SIM" "$KC_BUILD_DIR/artifacts/contracts/DstackKms.sol/DstackKms.json" \
        "$KC_SRC_DIR/.sandbox/images/dstack-sandbox-0.1.0/disk.raw"; do
        [ -e "$f" ] || fail "$f is not built (cmake --build $KC_BUILD_DIR: kmsctl-sim, test_contracts, sandbox_image)"
    done
    SANDBOX__KEEP=${2:-}
    w=$(mktemp -d "${TMPDIR:-/tmp}/kc-${KC_TEST%.sh}.XXXXXX")
    kc_on_exit sandbox__exit
    sim_start gcp,ec2 "$1"
    anvil_start
    export KMSCTL_SANDBOX_RPC=$ANVIL_URL KMSCTL_SANDBOX_SIM=$SIM_URL KMSCTL_SANDBOX_KEY=$ANVIL_KEY0
    src=$(cd "$KC_SRC_DIR" && pwd) build=$(cd "$KC_BUILD_DIR" && pwd)
    mkdir -p "$w/manifests"
    cp "$src"/manifests/sandbox* "$w/manifests/"
    ln -s "$build" "$w/build"
    ln -s "$src/tests" "$w/tests"
    ln -s "$src/.sandbox" "$w/.sandbox"
}
sandbox__exit() {
    if [ "$KC_EXIT_RC" = 0 ] && [ -z "$SANDBOX__KEEP" ]; then
        rm -rf "$w"
    else
        echo "$KC_TEST: files kept in $w" >&2
    fi
}

kms() {
    local want=$1
    shift
    run "$want" "$KMSCTL" "$@"
}
block() { python3 -c "print(int('$(anvil_rpc eth_blockNumber)', 16))"; }
nonce() { anvil_rpc eth_getTransactionCount "[\"$ANVIL_ADDR0\",\"latest\"]"; }
sha3() { anvil_rpc web3_sha3 "[\"0x$(printf '%s' "$1" | od -An -tx1 | tr -d ' \n')\"]"; }
creations() { # FROM
    local first last n c
    read -r first last n c < <(anvil_txs_since "$1")
    echo "$c"
}
app_logs_since() { # FROM
    anvil_rpc eth_getLogs "[{\"fromBlock\":\"$(printf '0x%x' "$1")\",\"toBlock\":\"latest\",\"topics\":[\"$(sha3 'AppDeployedViaFactory(address,address)')\"]}]"
}
app_deploys() { app_logs_since "$1" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))'; }
