#!/usr/bin/env bash
# tests/bench/engine_bench.sh: the engine's own costs, measured with
# kmsctl-enginetest and its fake provider (tests/unit/helpers/fake_provider.h:
# a JSON world file, configurable per-operation delay, counters of provider
# calls). Prints one table; asserts nothing but that every run succeeds.
#
#   KC_BUILD_DIR=build tests/bench/engine_bench.sh [N=200] [DELAY_MS=200]
#
# 1. no-op plan: N resources (chains of 10 with fan-in), applied once, then
#    `plan --detailed-exitcode` (exit 0 required): wall time, provider calls
#    (observe / mutating), peak RSS.
# 2. apply with injected latency: W=8 independent chains of depth D=5, each
#    create taking DELAY_MS. The critical-path bound is D * DELAY_MS; the
#    parallel apply (default --parallelism 10) is reported against it, and
#    against --parallelism 1 (bound W * D * DELAY_MS).
# 3. fan-out over the parallelism: 40 independent resources, --parallelism
#    10: bound ceil(40/10) * DELAY_MS.
# 4. peak RSS of apply and plan of N resources.
set -euo pipefail

: "${KC_BUILD_DIR:?KC_BUILD_DIR must name the build folder (build for -O2)}"
K="$KC_BUILD_DIR/kmsctl-enginetest"
[ -x "$K" ] || { echo "engine_bench: $K is not built (cmake --build $KC_BUILD_DIR --target kmsctl-enginetest)" >&2; exit 1; }
n=${1:-200}
delay=${2:-200}
. "${KC_SRC_DIR:-$(dirname "$0")/../..}/tests/e2e/lib/common.sh"
kc_tmpdir dir
cd "$dir"

# measure LABEL CMD...: runs CMD (must exit 0, or 0/2 for plans asked with
# --detailed-exitcode where 0 is wanted), sets $ms (wall) and $rss (peak
# RSS in MiB of the child).
measure() {
    kc_measure "$@"
    if [ "$rc" != 0 ]; then
        echo "engine_bench: '$*' exited $rc:" >&2
        tail -20 cmd.out >&2
        exit 1
    fi
}
counter() { jq -r ".counters.$1 // 0" world.json; }
reset_world() { echo '{"objects":{},"fail":{},"counters":{},"log":[]}' >world.json; }

# graph_manifest FILE N DELAY CHAIN_LEN: N fake.thing resources in chains of
# CHAIN_LEN (each after the previous one), every chain head after r0.
graph_manifest() {
    local f=$1 count=$2 d=$3 len=$4
    {
        printf 'version: 1\nname: bench\nproviders:\n  fake: {world: ./world.json, delay_ms: %s}\nfake:\n' "$d"
        for i in $(seq 0 $((count - 1))); do
            if [ "$i" -eq 0 ]; then
                printf '  r0: {kind: thing, value: "v0", size: 1}\n'
            elif [ $((i % len)) -eq 0 ]; then
                printf '  r%d: {kind: thing, value: "v%d", after: [fake.thing.r0]}\n' "$i" "$i"
            else
                printf '  r%d: {kind: thing, value: "v%d", after: [fake.thing.r%d]}\n' "$i" "$i" $((i - 1))
            fi
        done
    } >"$f"
}

# chains_manifest FILE WIDTH DEPTH DELAY: WIDTH independent chains.
chains_manifest() {
    local f=$1 w=$2 depth=$3 d=$4
    {
        printf 'version: 1\nname: bench\nproviders:\n  fake: {world: ./world.json, delay_ms: %s}\nfake:\n' "$d"
        for c in $(seq 1 "$w"); do
            for l in $(seq 1 "$depth"); do
                if [ "$l" -eq 1 ]; then
                    printf '  c%d_%d: {kind: thing, value: "x"}\n' "$c" "$l"
                else
                    printf '  c%d_%d: {kind: thing, value: "x", after: [fake.thing.c%d_%d]}\n' "$c" "$l" "$c" $((l - 1))
                fi
            done
        done
    } >"$f"
}

rows=()
row() { rows+=("$(printf '%-44s %s' "$1" "$2")"); }

# --- 1 + 4: N resources: apply, no-op plan ---------------------------------
reset_world
graph_manifest big.yaml "$n" 0 10
measure "$K" apply -f big.yaml --auto-approve
row "apply $n resources (delay 0)" "$ms ms, peak RSS $rss MiB"
best=
for _ in 1 2 3; do
    jq '.counters = {}' world.json >w.tmp && mv w.tmp world.json
    measure "$K" plan -f big.yaml --detailed-exitcode
    if [ -z "$best" ] || [ "$ms" -lt "$best" ]; then best=$ms; fi
done
row "no-op plan of $n resources (best of 3)" "$best ms, peak RSS $rss MiB"
row "  provider calls per no-op plan" "observe $(counter observe), mutating $(counter mutating)"

# --- 2: critical path -------------------------------------------------------
w=8 depth=5
rm -rf .kmsctl
reset_world
chains_manifest chains.yaml $w $depth "$delay"
measure "$K" apply -f chains.yaml --auto-approve
par_ms=$ms
par_max=$(counter max_running)
bound=$((depth * delay))
reset_world
rm -rf .kmsctl
measure "$K" apply -f chains.yaml --auto-approve --parallelism 1
ser_ms=$ms
ser_max=$(counter max_running)
row "apply ${w}x${depth} chains, ${delay} ms/create, par 10" "$par_ms ms (critical path $bound ms, ratio $(awk "BEGIN{printf \"%.2f\", $par_ms/$bound}")), max concurrent $par_max"
row "same, --parallelism 1" "$ser_ms ms (bound $((w * depth * delay)) ms), max concurrent $ser_max"
row "  speed-up parallel vs --parallelism 1" "$(awk "BEGIN{printf \"%.2fx\", $ser_ms/$par_ms}")"
rm -rf .kmsctl

# --- 3: fan-out over the parallelism ----------------------------------------
rm -rf .kmsctl
reset_world
chains_manifest fan.yaml 40 1 "$delay"
measure "$K" apply -f fan.yaml --auto-approve --parallelism 10
row "apply 40 independent, ${delay} ms, par 10" "$ms ms (bound $((4 * delay)) ms, ratio $(awk "BEGIN{printf \"%.2f\", $ms/(4*$delay)}")), max concurrent $(counter max_running)"

echo "engine bench ($K, $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores)"
printf '%s\n' "${rows[@]}"
