#!/usr/bin/env bash
# tests/bench/engine_sandbox_bench.sh: the engine with the real providers on
# the sandbox (manifests/sandbox.yaml on anvil + kmsctl-sim gcp,ec2): apply,
# no-op plan (wall time, simulator requests, JSON-RPC HTTP requests to the
# chain, peak RSS), and both again with LATENCY_MS added to every simulator
# request, apply also with --parallelism 1. Prints one table; asserts only
# that every command succeeds and that the no-op plan is one (exit 0).
#
#   KC_SRC_DIR=. KC_BUILD_DIR=build tests/bench/engine_sandbox_bench.sh [LATENCY_MS=100]
#
# The chain's requests are counted from --debug (lines "http: > POST" to the
# RPC URL, which --debug prints redacted); anvil mines at once, so the chain
# part adds no latency of its own.
set -euo pipefail

: "${KC_SRC_DIR:?}" "${KC_BUILD_DIR:?KC_BUILD_DIR must name the build folder (build for -O2)}"
K=${KMSCTL:-$KC_BUILD_DIR/kmsctl}
export KMSCTL_SIM=${KMSCTL_SIM:-$KC_BUILD_DIR/kmsctl-sim}
lat=${1:-100}
[ -e "$K" ] || { echo "engine_sandbox_bench: $K is not built (cmake --build $KC_BUILD_DIR)" >&2; exit 1; }
. "$KC_SRC_DIR/tests/e2e/lib/sandbox.sh"
sandbox_up 1
cd "$w/manifests"
S=$w/state.json

# measure ARGS...: kmsctl ARGS --debug (exit 0 required); sets ms, rss (MiB),
# sim (simulator requests), mut (mutating ones), rpc (chain HTTP requests).
measure() {
    local s0 m0
    s0=$(sim_count total) m0=$(sim_count mutating)
    kc_measure "$K" "$@" --debug
    if [ "$rc" != 0 ]; then
        echo "engine_sandbox_bench: 'kmsctl $*' exited $rc:" >&2
        grep -v '^debug' cmd.out | tail -20 >&2
        exit 1
    fi
    sim=$(($(sim_count total) - s0)) mut=$(($(sim_count mutating) - m0))
    rpc=$(grep -c '^debug: http: > POST \[redacted\] (attempt' cmd.out || true)
}
rows=()
row() { rows+=("$(printf '%-40s %7s ms %5s sim req %4s mutating %4s rpc req %6s MiB' "$1" "$ms" "$sim" "$mut" "$rpc" "$rss")"); }

measure apply -f sandbox.yaml --state "$S" --auto-approve
row "apply (18 resources)"
measure plan -f sandbox.yaml --state "$S" --detailed-exitcode
row "no-op plan"
measure apply -f sandbox.yaml --state "$S" --auto-approve
row "no-op apply"
measure destroy -f sandbox.yaml --state "$S" --auto-approve
row "destroy"

sim_faults "[{\"match\":\"^(GET|POST|PUT|PATCH|DELETE) /(gcp|ec2)/\",\"latency_ms\":[$lat,$lat]}]"
measure apply -f sandbox.yaml --state "$S" --auto-approve
row "apply, +$lat ms per sim request"
measure plan -f sandbox.yaml --state "$S" --detailed-exitcode
row "no-op plan, +$lat ms"
measure destroy -f sandbox.yaml --state "$S" --auto-approve
row "destroy, +$lat ms"
measure apply -f sandbox.yaml --state "$S" --auto-approve --parallelism 1
row "apply --parallelism 1, +$lat ms"
sim_clear_faults

echo "sandbox bench ($K, $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores)"
printf '%s\n' "${rows[@]}"
