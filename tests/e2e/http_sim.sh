#!/usr/bin/env bash
# tests/e2e/http_sim.sh: tests/e2e/lib/sim.sh against kmsctl-sim: start on a
# free port, admin calls, faults, cleanup by the EXIT trap.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib/sim.sh"

fail() { echo "FAIL: $*" >&2; exit 1; }

sim_start test 5
[[ $SIM_URL == http://127.0.0.1:* ]] || fail "SIM_URL=$SIM_URL"
kill -0 "$SIM_PID" || fail "simulator not running"

curl -sS -f -X POST -d '{"name":"a"}' "$SIM_URL/test/objects" >/dev/null
curl -sS -f "$SIM_URL/test/echo" >/dev/null
[ "$(sim_count total)" = 2 ] || fail "total $(sim_count total)"
[ "$(sim_count mutating)" = 1 ] || fail "mutating $(sim_count mutating)"
[ "$(sim_route_count 'POST /test/objects')" = 1 ] || fail "by_route"
[ "$(sim_route_count 'GET /nothing')" = 0 ] || fail "unknown route count"
sim_inventory | grep '"name":"a"' >/dev/null || fail "inventory"

sim_faults '[{"match":"^GET /test/echo$","status":503,"count":1}]'
code=$(curl -s -o /dev/null -w '%{http_code}' "$SIM_URL/test/echo")
[ "$code" = 503 ] || fail "fault not applied: $code"
code=$(curl -s -o /dev/null -w '%{http_code}' "$SIM_URL/test/echo")
[ "$code" = 200 ] || fail "fault count not honoured: $code"

sim_patch_object test thing a '{"labels":{"drift":"yes"}}' >/dev/null
sim_inventory | grep '"drift":"yes"' >/dev/null || fail "patch"
sim_reset
[ "$(sim_inventory)" = "[]" ] || fail "reset left objects"
[ "$(sim_count total)" = 0 ] || fail "reset left counters"

# The EXIT trap stops the simulator: check it from a subshell that exits.
pid=$(bash -c ". '$here/lib/sim.sh'; sim_start test 1 >/dev/null; echo \$SIM_PID")
for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
if kill -0 "$pid" 2>/dev/null; then fail "trap did not stop $pid"; fi
grep -q 'GET /test/echo -> 503' "$SIM_LOG" || fail "request log"
echo "ok"
