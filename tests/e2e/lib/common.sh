# tests/e2e/lib/common.sh: the prelude every shell test shares (sim.sh and
# anvil.sh source it too). Source it right after `set -euo pipefail`:
#
#   . "$KC_SRC_DIR/tests/e2e/lib/common.sh"
#
# Sourcing it makes the test hermetic: the caller's cloud credentials and
# sandbox variables (AWS_ACCESS_KEY_ID, AWS_PROFILE, GOOGLE_*, KMSCTL_SANDBOX_*,
# ...) are unset, so a CI box or a developer shell that has real ones does
# not change what kmsctl signs with or where it connects (kmsctl follows the
# AWS CLI: AWS_ACCESS_KEY_ID wins over a credentials_file). It also installs
# the one EXIT trap (and INT/TERM traps that exit through it, so a test that
# ctest's timeout kills still stops its servers):
#
#   kc_on_exit CMD          CMD (eval'd) runs at exit, the last registered
#                           first; $KC_EXIT_RC is the test's exit code, which
#                           is kept. Never `trap ... EXIT` in a test.
#   kc_tmpdir VAR [TAG]     VAR=$(mktemp -d), removed at exit
#   fail MSG...             "FAIL (test.sh): MSG" on stderr, then the tail of
#                           the simulator's log when one was started; exit 1
#   ok MSG...               "ok - MSG" on stdout
#   js EXPR <JSON           prints the Python expression EXPR on the JSON
#                           document d (jq-less JSON access)
#   has NEEDLE TEXT         fails unless TEXT contains NEEDLE (fixed string)
#   hasnt NEEDLE TEXT       fails if it does
#   run RC CMD...           runs CMD (stdin /dev/null), stdout in $out,
#                           stderr in $errout ($KC_RUN_TIMEOUT s at most:
#                           a hang fails); fails unless it exits RC
#   wait_until SECS CMD...  runs CMD every 0.05 s until it succeeds (0);
#                           returns 1 if it still fails after SECS s: write
#                           `wait_until 60 CMD || fail "what, with the log"`.
#                           Deadlines are generous (CI boxes are slow, and
#                           sanitizers slow kmsctl down): the loop ends as
#                           soon as CMD succeeds.
#   bg_start LOG CMD...     CMD in the background, see below
#   wait_exit PID SECS      waits for PID (a child) to end, its exit code in
#                           $rc; returns 1 if it still runs after SECS s
#
# grep -q in a pipeline may exit before the writer is done and fail the
# pipeline (pipefail, SIGPIPE): grep files or here-strings (has/hasnt), or
# pipe into plain grep >/dev/null.

[ -z "${KC_COMMON_SH:-}" ] || return 0
KC_COMMON_SH=1
KC_TEST=$(basename "$0")

unset AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_SESSION_TOKEN \
    AWS_SECURITY_TOKEN AWS_PROFILE AWS_DEFAULT_PROFILE AWS_REGION \
    AWS_DEFAULT_REGION AWS_CONFIG_FILE AWS_SHARED_CREDENTIALS_FILE \
    AWS_EC2_METADATA_DISABLED AWS_EC2_METADATA_SERVICE_ENDPOINT \
    AWS_CONTAINER_CREDENTIALS_RELATIVE_URI AWS_CONTAINER_CREDENTIALS_FULL_URI \
    AWS_WEB_IDENTITY_TOKEN_FILE AWS_ROLE_ARN \
    GOOGLE_APPLICATION_CREDENTIALS GOOGLE_OAUTH_ACCESS_TOKEN CLOUDSDK_CONFIG \
    GCE_METADATA_HOST KMSCTL_SANDBOX_RPC KMSCTL_SANDBOX_SIM KMSCTL_SANDBOX_KEY

KC__ON_EXIT=()
KC_EXIT_RC=0
KC_RUN_TIMEOUT=${KC_RUN_TIMEOUT:-300}

kc_on_exit() { KC__ON_EXIT+=("$1"); }

kc__exit() {
    KC_EXIT_RC=$?
    local i
    set +e
    trap - EXIT INT TERM
    for ((i = ${#KC__ON_EXIT[@]} - 1; i >= 0; i--)); do
        eval "${KC__ON_EXIT[i]}"
    done
    exit "$KC_EXIT_RC"
}
trap kc__exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

kc_tmpdir() { # VAR [TAG]
    local d
    d=$(mktemp -d "${TMPDIR:-/tmp}/kc-${2:-${KC_TEST%.sh}}.XXXXXX")
    printf -v "$1" '%s' "$d"
    kc_on_exit "rm -rf '$d'"
}

fail() {
    echo "FAIL ($KC_TEST): $*" >&2
    if [ -n "${SIM_LOG:-}" ] && [ -s "$SIM_LOG" ]; then
        echo "--- simulator log (tail)" >&2
        tail -n 30 "$SIM_LOG" >&2
    fi
    exit 1
}
ok() { echo "ok - $*"; }
js() { python3 -c 'import json,sys; d=json.load(sys.stdin); print(eval(sys.argv[1]))' "$1"; }
has() { grep -qF -- "$1" <<<"$2" || fail "expected '$1' in: $2"; }
hasnt() { ! grep -qF -- "$1" <<<"$2" || fail "did not expect '$1' in: $2"; }

run() { # RC CMD...
    local want=$1 rc=0 errf
    shift
    errf=$(mktemp "${TMPDIR:-/tmp}/kc-run.XXXXXX")
    out=$(timeout -k 5 "$KC_RUN_TIMEOUT" "$@" 2>"$errf" </dev/null) || rc=$?
    errout=$(cat "$errf")
    rm -f "$errf"
    [ "$rc" -ne 124 ] && [ "$rc" -ne 137 ] ||
        fail "'$*' did not finish in $KC_RUN_TIMEOUT s: $(tail -n 3 <<<"$out")"
    [ "$rc" -eq "$want" ] ||
        fail "'$*' exited $rc, expected $want: $errout // $out"
}

wait_until() { # SECS CMD...
    local end=$((SECONDS + $1))
    shift
    until "$@"; do
        [ "$SECONDS" -lt "$end" ] || return 1
        sleep 0.05
    done
}

wait_exit() { # PID SECS
    wait_until "$2" kc__gone "$1" || return 1
    rc=0
    wait "$1" || rc=$?
}
kc__gone() { ! kill -0 "$1" 2>/dev/null; }

# bg_start LOG CMD...: CMD in the background (stdin /dev/null, stdout and
# stderr in LOG); its pid in $BG. One background command at a time; it is
# killed (-9) at exit if it still runs.
bg_start() {
    local log=$1
    shift
    : >"$log" # there before the caller greps it
    "$@" >"$log" 2>&1 </dev/null &
    BG=$!
    if [ -z "${KC__BG_REGISTERED:-}" ]; then
        KC__BG_REGISTERED=1
        kc_on_exit bg_kill
    fi
}
# bg_kill [SIGNAL]: sends SIGNAL (default KILL) to $BG and reaps it; its exit
# code in $rc.
bg_kill() {
    rc=0
    [ -n "${BG:-}" ] || return 0
    kill -"${1:-KILL}" "$BG" 2>/dev/null || true
    wait "$BG" 2>/dev/null || rc=$?
    BG=
}
# bg_wait SECS: waits for $BG to end, its exit code in $rc; returns 1 if it
# still runs after SECS s.
bg_wait() {
    wait_exit "$BG" "$1" || return 1
    BG=
}

# kc_measure CMD...: runs CMD (stdin /dev/null, stdout and stderr in
# ./cmd.out); sets $rc, $ms (wall time) and $rss (peak RSS of the child, in
# MiB). For the benches.
kc_measure() {
    local r
    r=$(python3 - "$@" <<'EOF'
import resource, subprocess, sys, time
t = time.monotonic()
p = subprocess.run(sys.argv[1:], stdin=subprocess.DEVNULL,
                   stdout=open("cmd.out", "w"), stderr=subprocess.STDOUT)
ms = (time.monotonic() - t) * 1000
rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
print(p.returncode, int(ms), f"{rss:.1f}")
EOF
    )
    read -r rc ms rss <<<"$r"
}
