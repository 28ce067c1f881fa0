# tests/e2e/lib/sim.sh: start kmsctl-sim for a shell test and talk to its admin
# API. Source it, then:
#
#   sim_start test,gcp 42          # sets SIM_URL, SIM_PORT, SIM_PID, SIM_LOG
#   sim_requests | jq .total       # GET /_sim/requests
#   sim_inventory                  # GET /_sim/inventory
#   sim_faults '[{"match":"^GET /test/","status":503,"count":2}]'
#   sim_clear_faults; sim_reset
#   sim_route_count 'GET /test/echo'
#   sim_stop                       # also run by the EXIT trap
#
# The binary is $KMSCTL_SIM (else $KC_BUILD_DIR/kmsctl-sim). sim_start
# registers sim_stop with kc_on_exit (lib/common.sh, sourced here), so a failing
# test leaves no server behind; the simulator's log ($SIM_LOG) is removed at
# exit when the test passed, kept for the post-mortem when it failed. Needs
# curl; JSON helpers use python3 (no jq dependency).

# shellcheck source=common.sh
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"

sim_start() {
    local services=${1:-test} seed=${2:-1}
    shift 2 2>/dev/null || true
    local bin=${KMSCTL_SIM:-${KC_BUILD_DIR:-build}/kmsctl-sim}
    SIM_LOG=$(mktemp "${TMPDIR:-/tmp}/kmsctl-sim.XXXXXX.log")
    local fifo
    fifo=$(mktemp -u "${TMPDIR:-/tmp}/kmsctl-sim.XXXXXX.fifo")
    mkfifo "$fifo" || return 1
    "$bin" --listen 127.0.0.1:0 --services "$services" --seed "$seed" "$@" \
        >"$fifo" 2>"$SIM_LOG" &
    SIM_PID=$!
    if [ -z "${SIM__REGISTERED:-}" ]; then
        SIM__REGISTERED=1
        kc_on_exit sim__exit
    fi
    local line=""
    if ! read -r -t 60 line <"$fifo"; then
        rm -f "$fifo"
        echo "sim.sh: kmsctl-sim did not start; its log:" >&2
        cat "$SIM_LOG" >&2
        return 1
    fi
    rm -f "$fifo"
    case $line in
    "listening on "*) SIM_URL=${line#listening on } ;;
    *)
        echo "sim.sh: unexpected first line from kmsctl-sim: $line" >&2
        return 1
        ;;
    esac
    SIM_PORT=${SIM_URL##*:}
    export SIM_URL SIM_PORT SIM_PID SIM_LOG
}

sim__exit() {
    sim_stop
    # The request log is kept when the test failed, for its post-mortem.
    if [ "$KC_EXIT_RC" = 0 ] && [ -n "${SIM_LOG:-}" ]; then
        rm -f "$SIM_LOG"
    elif [ -n "${SIM_LOG:-}" ]; then
        echo "$KC_TEST: the simulator's log is kept in $SIM_LOG" >&2
    fi
}

sim_stop() {
    if [ -n "${SIM_PID:-}" ] && kill -0 "$SIM_PID" 2>/dev/null; then
        kill -TERM "$SIM_PID" 2>/dev/null
        local i
        for i in $(seq 50); do
            kill -0 "$SIM_PID" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$SIM_PID" 2>/dev/null || true
        wait "$SIM_PID" 2>/dev/null || true
    fi
    SIM_PID=
}

sim__admin() { # METHOD PATH [BODY]
    if [ $# -ge 3 ]; then
        curl -sS -f -X "$1" -H 'Content-Type: application/json' \
            --data-binary "$3" "$SIM_URL$2"
    else
        curl -sS -f -X "$1" "$SIM_URL$2"
    fi
}

sim_inventory() { sim__admin GET "/_sim/inventory${1:+?$1}"; }
sim_requests() { sim__admin GET /_sim/requests; }
sim_reset() { sim__admin POST /_sim/reset '{}' >/dev/null; }
sim_faults() { sim__admin POST /_sim/faults "$1" >/dev/null; }
sim_clear_faults() { sim__admin DELETE /_sim/faults >/dev/null; }
sim_patch_object() { sim__admin PATCH "/_sim/objects/$1/$2/$3" "$4"; }
sim_delete_object() { sim__admin DELETE "/_sim/objects/$1/$2/$3"; }

# sim_route_count 'METHOD /pattern' -> the count (0 when never seen)
sim_route_count() {
    sim_requests | python3 -c 'import json,sys; print(json.load(sys.stdin)["by_route"].get(sys.argv[1], 0))' "$1"
}
# sim_count FIELD -> total | mutating | faulted
sim_count() {
    sim_requests | python3 -c 'import json,sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"
}

# sim_aws_setup SEED: for an EC2 test: $tmp (removed at exit) holds the
# simulator's aws-credentials and is the working folder; kmsctl-sim runs
# ec2 with SEED, its URL in KMSCTL_SANDBOX_SIM.
sim_aws_setup() {
    kc_tmpdir tmp
    sim_start ec2 "$1"
    export KMSCTL_SANDBOX_SIM=$SIM_URL
    cp "${KC_SRC_DIR:?}/tests/sim/creds/aws-credentials" "$tmp/"
    cd "$tmp"
}
# sim_aws_manifest_head NAME: a manifest's first lines up to "nitro_hosts:":
# providers.aws on the simulator (./aws-credentials, EC2 and IMDS).
sim_aws_manifest_head() {
    cat <<EOF
version: 1
name: $1
providers:
  aws:
    region: us-east-1
    credentials_file: ./aws-credentials
    endpoint: "\${env:KMSCTL_SANDBOX_SIM}/ec2"
    imds_endpoint: "\${env:KMSCTL_SANDBOX_SIM}/imds"
nitro_hosts:
EOF
}

# sim_ec2 ACTION [NAME=VALUE...]: one EC2 Query call to the simulator signed
# by curl's own SigV4 (--aws-sigv4), not kmsctl's, with the test key pair
# ($SIM_AKID, $SIM_SECRET: tests/sim/creds/aws-credentials).
SIM_AKID=AKIDKMSCTLSANDBOX01
SIM_SECRET=kmsctlSandboxSecretKey0000000000000000000
sim_ec2() {
    local args=(--data-urlencode "Action=$1" --data-urlencode "Version=2016-11-15") kv
    shift
    for kv in "$@"; do args+=(--data-urlencode "$kv"); done
    curl -sS --aws-sigv4 "aws:amz:us-east-1:ec2" --user "$SIM_AKID:$SIM_SECRET" \
        -H 'Content-Type: application/x-www-form-urlencoded; charset=utf-8' \
        "${args[@]}" "$SIM_URL/ec2/"
}
