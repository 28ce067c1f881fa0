#!/usr/bin/env bash
# tests/bench/aws_bench.sh: cost of a no-op plan of one Nitro host against
# kmsctl-sim's EC2: requests per plan (total, by action, mutating) and wall
# time, over RUNS plans after one apply; optionally with injected latency.
#
#   KC_SRC_DIR=. KMSCTL=build/kmsctl KMSCTL_SIM=build/kmsctl-sim \
#       tests/bench/aws_bench.sh [RUNS=5] [LATENCY_MS=0]
set -euo pipefail

: "${KC_SRC_DIR:?}" "${KMSCTL:?}"
runs=${1:-5}
latency=${2:-0}
. "$KC_SRC_DIR/tests/e2e/lib/sim.sh"

kc_tmpdir tmp
sim_start ec2 5
export KMSCTL_SANDBOX_SIM=$SIM_URL
cp "$KC_SRC_DIR/tests/sim/creds/aws-credentials" "$tmp/"
ssh-keygen -q -t ed25519 -N '' -C bench -f "$tmp/key"
cat >"$tmp/bench.yaml" <<'EOF'
version: 1
name: bench
providers:
  aws:
    region: us-east-1
    credentials_file: ./aws-credentials
    endpoint: "${env:KMSCTL_SANDBOX_SIM}/ec2"
    imds_endpoint: "${env:KMSCTL_SANDBOX_SIM}/imds"
nitro_hosts:
  enclave-host:
    instance_type: c5.xlarge
    enclave: {cpu_count: 2, memory_mib: 512}
    ssh: {key_name: bench, public_key: ./key.pub, from: [198.51.100.7/32]}
EOF
cd "$tmp"
"$KMSCTL" apply --auto-approve -f bench.yaml >apply.txt 2>&1 || {
    cat apply.txt >&2
    exit 1
}
if [ "$latency" -gt 0 ]; then
    sim_faults "[{\"match\":\"^POST /ec2/\$\",\"latency_ms\":[$latency,$latency]}]"
fi
sim_requests >before.json
start=$(date +%s%N)
for _ in $(seq "$runs"); do
    "$KMSCTL" plan --detailed-exitcode -f bench.yaml >plan.txt 2>&1 || {
        echo "plan not a no-op (exit $?):" >&2
        cat plan.txt >&2
        exit 1
    }
done
end=$(date +%s%N)
sim_requests >after.json
python3 - before.json after.json "$runs" "$(((end - start) / 1000000))" "$latency" <<'EOF'
import json, sys
b, a = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
runs, ms, lat = int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
print(f"no-op plan of 1 Nitro host (ami lookup, key pair, security group, "
      f"instance), {runs} runs, injected latency {lat} ms per EC2 request")
print(f"  requests per plan: {(a['total'] - b['total']) / runs:.1f}   "
      f"mutating: {a['mutating'] - b['mutating']}")
for route, n in sorted(a["by_route"].items()):
    d = n - b["by_route"].get(route, 0)
    if d:
        print(f"    {route.split('Action=')[-1]:<28} {d / runs:.1f}")
print(f"  wall time per plan: {ms / runs:.0f} ms")
EOF
