#!/usr/bin/env bash
# tests/e2e/lock_stale.sh: cron after a crash. kmsctl apply is killed (-9)
# holding the state lock right after EC2 ran its RunInstances; a plain apply
# then stops on the stale lock (exit 3), and `apply --unlock-stale` takes it
# (a warning names the dead holder), goes through the write-ahead intent and
# converges with no second instance. `state unlock --if-stale` clears only a
# lock whose holder is a dead process on this host: a live flock holder, a
# running process's record and another host's record are refused (exit 3)
# and left in place, so `state unlock --if-stale && apply` is cron-safe.
set -euo pipefail

: "${KC_SRC_DIR:?}" "${KMSCTL:?}"
. "$KC_SRC_DIR/tests/e2e/lib/sim.sh"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/kc-lock-stale.XXXXXX")
kpid=
holder=
SIM_ON_EXIT='[ -n "$kpid" ] && kill -9 "$kpid" 2>/dev/null; [ -n "$holder" ] && kill "$holder" 2>/dev/null; rm -rf "$tmp"'
sim_start ec2 23
export KMSCTL_SANDBOX_SIM=$SIM_URL

fail() {
    echo "lock_stale.sh: FAIL: $*" >&2
    tail -n 20 "$SIM_LOG" >&2
    exit 1
}

# run EXPECTED_RC CMD...: stdout in $out, stderr in $errout; CMD's stdin is
# not a terminal (apply/destroy then need --auto-approve, as in cron).
run() {
    local want=$1 got=0
    shift
    "$@" </dev/null >"$tmp/out" 2>"$tmp/err" || got=$?
    out=$(<"$tmp/out") errout=$(<"$tmp/err")
    if [ "$got" != "$want" ]; then
        fail "'$*' exited $got (want $want); stdout: $out; stderr: $errout"
    fi
}

cd "$tmp"
cp "$KC_SRC_DIR/tests/sim/creds/aws-credentials" .
ssh-keygen -q -t ed25519 -N '' -C stale -f id_stale
# A host whose SSH is open to one range, with a larger enclave: a setup of
# its own (aws_crash.sh covers the default one).
{
    printf '%s\n' 'version: 1' 'name: stale' 'providers:' '  aws:'
    printf '    %s\n' 'region: eu-west-1' 'credentials_file: ./aws-credentials' \
        'endpoint: "${env:KMSCTL_SANDBOX_SIM}/ec2"'
    printf '%s\n' 'nitro_hosts:' '  cron-host:'
    printf '    %s\n' 'instance_type: m5.xlarge' \
        'enclave: {cpu_count: 2, memory_mib: 1024}' \
        'ssh: {key_name: stale, public_key: ./id_stale.pub, from: [198.51.100.0/24]}'
} >m.yaml
st=.kmsctl/stale.state.json
host=$(hostname)
# The ids of the instances EC2 has that are not terminated, one a line.
instances() {
    sim_inventory service=ec2 | python3 -c '
import json, sys
for o in json.load(sys.stdin):
    if o["kind"] == "instance" and o["attrs"]["state"] != "terminated":
        print(o["id"])'
}
live() { instances | wc -l | tr -d ' '; }
lock_record() { cat "$st.lock" 2>/dev/null || true; }
# wait_until PID WHAT CMD...: waits (60 s at most, for a loaded machine) until
# CMD succeeds, failing as soon as PID has ended.
wait_until() {
    local pid=$1 what=$2 i
    shift 2
    for i in $(seq 1200); do
        "$@" && return 0
        kill -0 "$pid" 2>/dev/null || fail "process $pid ended before $what"
        sleep 0.05
    done
    fail "no $what within 60 s"
}
seen() { [ "$(sim_route_count "$1")" -ge 1 ]; }

# --- 1. kill -9 while RunInstances is in flight, holding the lock ---------
# EC2 answers 1.5 s late, so the apply is killed before it learns the id.
sim_faults '[{"match":"^POST /ec2/$","latency_ms":[1500,1500]}]'
"$KMSCTL" apply --auto-approve -f m.yaml >apply1.txt 2>&1 &
kpid=$!
wait_until "$kpid" RunInstances seen 'POST /ec2/?Action=RunInstances' ||
    fail "$(cat apply1.txt)"
kill -KILL "$kpid"
wait "$kpid" 2>/dev/null || true
dead=$kpid
kpid=
sim_clear_faults
[ "$(live)" = 1 ] || fail "expected the one instance EC2 made"
lock_record | grep -q "\"pid\":$dead" || fail "no record of the killed apply: $(lock_record)"

# Without the explicit act the stale lock stops the run (issue 2).
run 3 "$KMSCTL" apply --auto-approve -f m.yaml
echo "$errout" | grep -q "stale lock left by pid $dead (dead)" || fail "plain apply: $errout"

# --unlock-stale: warns naming the dead holder, then recovers through the
# RunInstances intent (same ClientToken: no second instance, no second call
# that makes one).
run 0 "$KMSCTL" apply --auto-approve --unlock-stale -f m.yaml
echo "$errout" | grep -Eq "^warning: --unlock-stale: took the stale lock of state '[^']*stale\.state\.json' from pid $dead on host $host since [0-9T:-]+Z \(kmsctl apply\), dead$" ||
    fail "no warning naming the dead holder: $errout"
[ "$(live)" = 1 ] || fail "a second instance was made: $out"
[ -z "$(lock_record)" ] || fail "lock record left after apply: $(lock_record)"
# The state records the one instance EC2 made (its id, from the sim).
python3 - "$st" "$(instances)" <<'PY' || fail "state inconsistent after recovery"
import json, sys
s = json.load(open(sys.argv[1]))
rec = s["resources"]["aws.instance.cron-host"]
assert rec["provider_id"] == sys.argv[2], (rec, sys.argv[2])
# The killed run's RunInstances intent is resolved (the instance it
# guarded was adopted by its tags).
assert not s["intents"], s["intents"]
PY
before=$(sim_count mutating)
run 0 "$KMSCTL" apply --auto-approve --unlock-stale -f m.yaml
[ "$(sim_count mutating)" = "$before" ] || fail "apply after recovery mutated: $out"
echo "$errout" | grep -q "unlock-stale" && fail "warned with no stale lock: $errout"
echo "lock_stale.sh: ok: kill -9, then --unlock-stale recovered (1 instance)"

# --- 2. a live holder (flock held) is never taken ------------------------
(
    exec 9>>"$st.lock"
    flock -n 9 || exit 1
    printf '{"pid":%d,"host":"%s","started_at":"2026-01-01T00:00:00Z","command":"kmsctl apply"}' \
        "$BASHPID" "$host" >"$st.lock"
    : >"$tmp/holding"
    exec sleep 120
) &
holder=$!
wait_until "$holder" "the lock holder's flock" test -e "$tmp/holding"
run 3 "$KMSCTL" state unlock --if-stale --state "$st"
echo "$errout" | grep -q "live process" || fail "unlock --if-stale live: $errout"
run 3 "$KMSCTL" apply --auto-approve --unlock-stale -f m.yaml
echo "$errout" | grep -q "is locked by pid $holder" || fail "apply --unlock-stale live: $errout"
run 3 "$KMSCTL" destroy --auto-approve --unlock-stale -f m.yaml
lock_record | grep -q "\"pid\":$holder" || fail "live record touched: $(lock_record)"
kill "$holder"
wait "$holder" 2>/dev/null || true
holder=
: >"$st.lock"

# --- 3. a running process's record (no flock) is never taken -------------
printf '{"pid":%d,"host":"%s","started_at":"%s","command":"kmsctl apply"}' \
    "$$" "$host" "$(date -u +%Y-%m-%dT%H:%M:%SZ)" >"$st.lock"
run 3 "$KMSCTL" state unlock --if-stale --state "$st"
echo "$errout" | grep -q "process $$ is still running" || fail "running pid: $errout"
run 3 "$KMSCTL" apply --auto-approve --unlock-stale -f m.yaml
echo "$errout" | grep -q "process $$ is still running" || fail "apply, running pid: $errout"
lock_record | grep -q "\"pid\":$$" || fail "running record touched"
: >"$st.lock"

# --- 4. another host's record is never taken -----------------------------
printf '{"pid":%d,"host":"kmsctl-other.invalid","started_at":"2026-01-01T00:00:00Z","command":"kmsctl apply"}' \
    "$dead" >"$st.lock"
run 3 "$KMSCTL" state unlock --if-stale --state "$st"
echo "$errout" | grep -q "pid $dead on host kmsctl-other.invalid .*another host" ||
    fail "other host: $errout"
run 3 "$KMSCTL" apply --auto-approve --unlock-stale -f m.yaml
echo "$errout" | grep -q "another host" || fail "apply, other host: $errout"
# drift takes no lock: it warns and still checks (exit 0: in sync).
run 0 "$KMSCTL" drift --unlock-stale -f m.yaml
echo "$errout" | grep -q "^warning: --unlock-stale: .*another host" || fail "drift, other host: $errout"
lock_record | grep -q "kmsctl-other.invalid" || fail "other host's record touched"
# --if-stale only goes with unlock.
run 1 "$KMSCTL" state list --if-stale --state "$st"
run 0 "$KMSCTL" state unlock --state "$st"
echo "$out" | grep -q "cleared the stale lock of pid $dead on host kmsctl-other.invalid" ||
    fail "operator unlock: $out"

# --- 5. the cron line ----------------------------------------------------
sh -c 'exit 0' &
gone=$!
wait "$gone"
rec() {
    printf '{"pid":%d,"host":"%s","started_at":"2026-01-01T00:00:00Z","command":"kmsctl apply"}' \
        "$gone" "$host" >"$st.lock"
}
rec
"$KMSCTL" state unlock --if-stale --state "$st" >cron.txt 2>&1 &&
    "$KMSCTL" apply --auto-approve -f m.yaml >>cron.txt 2>&1 || fail "cron line: $(cat cron.txt)"
grep -q "cleared the stale lock of state '$st': pid $gone on host $host since 2026-01-01T00:00:00Z (kmsctl apply), dead$" cron.txt ||
    fail "cron line output: $(cat cron.txt)"
run 0 "$KMSCTL" state unlock --if-stale --state "$st"
echo "$out" | grep -q "is not locked" || fail "unlock --if-stale, no lock: $out"
# drift --unlock-stale clears a provably stale lock too.
rec
run 0 "$KMSCTL" drift --unlock-stale -f m.yaml
echo "$errout" | grep -q "^warning: --unlock-stale: cleared the stale lock of state '[^']*': pid $gone on host $host" ||
    fail "drift --unlock-stale: $errout"
[ -z "$(lock_record)" ] || fail "drift left the stale record"

run 0 "$KMSCTL" destroy --auto-approve -f m.yaml
[ "$(live)" = 0 ] || fail "destroy left an instance"
echo "lock_stale.sh: ok"
