#!/usr/bin/env bash
# tests/bench/gcp_bench.sh: the GCP section of the sandbox manifest against
# kmsctl-sim:
#   1. requests made by a no-op plan (by route), and how many mutate (0);
#   2. wall time of a full apply with 50 ms injected on every request, at
#      --parallelism 1 and at the default, and their ratio.
# Usage: KC_SRC_DIR=. KC_BUILD_DIR=build tests/bench/gcp_bench.sh
# (KMSCTL and KMSCTL_SIM default to $KC_BUILD_DIR/kmsctl{,-sim}).
set -euo pipefail
KC_SRC_DIR=${KC_SRC_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
KC_BUILD_DIR=${KC_BUILD_DIR:-$KC_SRC_DIR/build}
KMSCTL=${KMSCTL:-$KC_BUILD_DIR/kmsctl}
export KMSCTL_SIM=${KMSCTL_SIM:-$KC_BUILD_DIR/kmsctl-sim}
. "$KC_SRC_DIR/tests/e2e/lib/sim.sh"

kc_tmpdir tmp
now() { python3 -c 'import time; print(time.monotonic())'; }

KMSCTL_SIM_GCP_OP_MS=20,60 sim_start gcp 5
export KMSCTL_SANDBOX_SIM=$SIM_URL KMSCTL_SANDBOX_RPC=http://127.0.0.1:9
python3 - "$KC_SRC_DIR" "$tmp/kms.yaml" <<'PY'
import sys, yaml
src, out = sys.argv[1], sys.argv[2]
d = yaml.safe_load(open(src + '/manifests/sandbox.yaml'))
m = {'version': d['version'], 'name': d['name'],
     'providers': {'gcp': d['providers']['gcp']}, 'kms_vms': d['kms_vms']}
m['providers']['gcp']['credentials'] = src + '/tests/sim/creds/gcp-service-account.json'
for vm in m['kms_vms'].values():
    vm['image_search_paths'] = [src + '/.sandbox/images']
    vm.setdefault('compose', {}).setdefault('env', {})['KMS_CONTRACT_ADDR'] = '0x' + '12' * 20
yaml.safe_dump(m, open(out, 'w'), sort_keys=False)
PY
cd "$tmp"

"$KMSCTL" apply -f kms.yaml --auto-approve >/dev/null 2>&1
sim_requests >before.json
"$KMSCTL" plan -f kms.yaml >/dev/null 2>&1
sim_requests >after.json
python3 - <<'PY'
import json
b, a = json.load(open('before.json')), json.load(open('after.json'))
print('no-op plan: %d requests, %d mutating' % (a['total'] - b['total'], a['mutating'] - b['mutating']))
for k in sorted(a['by_route']):
    n = a['by_route'][k] - b['by_route'].get(k, 0)
    if n:
        print('  %3d  %s' % (n, k))
PY
"$KMSCTL" destroy -f kms.yaml --auto-approve >/dev/null 2>&1

run() { # PARALLELISM-ARGS...
    sim_faults '[{"match":".","latency_ms":[50,50]}]'
    local t0 t1
    t0=$(now)
    "$KMSCTL" apply -f kms.yaml --auto-approve "$@" >/dev/null 2>&1
    t1=$(now)
    sim_clear_faults
    "$KMSCTL" destroy -f kms.yaml --auto-approve >/dev/null 2>&1
    python3 -c "print('%.2f' % ($t1 - $t0))"
}
serial=$(run --parallelism 1)
parallel=$(run)
echo "apply with 50 ms latency: --parallelism 1: ${serial} s, default: ${parallel} s, ratio $(python3 -c "print('%.2f' % ($serial / $parallel))")"
