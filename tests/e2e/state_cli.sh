#!/usr/bin/env bash
# tests/e2e/state_cli.sh: kmsctl state list|show|rm|unlock on a state file
# written by hand, with live and stale locks. Needs $KMSCTL.
set -euo pipefail

: "${KMSCTL:?KMSCTL must name the kmsctl binary}"
. "${KC_SRC_DIR:-$(dirname "$0")/../..}/tests/e2e/lib/common.sh"
kc_tmpdir dir
holder=
kc_on_exit '[ -z "$holder" ] || kill "$holder" 2>/dev/null'

st="$dir/s.json"
cat >"$st" <<'JSON'
{"format_version": 1, "lineage": "0b5e7c9e-58a3-4a1f-9d2c-3f1e2d4c5b6a",
 "serial": 4, "deployment": "demo", "salt": "00112233445566778899aabbccddeeff",
 "resources": {
  "gcp.firewall.kms-12001": {"kind": "gcp.firewall", "provider_id": null,
    "attrs": {"ports": [12001]}, "inputs_digest": null, "outputs": {},
    "dependencies": [], "updated_at": "2026-01-01T00:00:00Z"},
  "chain.kms": {"kind": "chain.contract", "provider_id": "0xabc",
    "attrs": {"owner": "0xdef"}, "inputs_digest": "sha256:1",
    "outputs": {"address": "0xabc"}, "dependencies": ["gcp.firewall.kms-12001"],
    "updated_at": "2026-01-01T00:00:00Z"}},
 "intents": {"chain.kms": {"op": "deploy", "created_at": "2026-01-01T00:00:00Z",
   "data": {"nonce": 3}}},
 "generated": {}}
JSON

run 0 "$KMSCTL" state list --state "$st"
[ "$out" = $'chain.kms\ngcp.firewall.kms-12001' ] || fail "list: $out"
run 0 "$KMSCTL" state list --json --state "$st"
[ "$(echo "$out" | tr -d ' \n')" = '["chain.kms","gcp.firewall.kms-12001"]' ] ||
    fail "list --json: $out"
run 0 "$KMSCTL" state show chain.kms --state "$st"
grep -q -- '"provider_id": "0xabc"' <<<"$out" || fail "show: $out"
grep -q -- '"gcp.firewall.kms-12001"' <<<"$out" || fail "show deps: $out"
run 1 "$KMSCTL" state show nope --state "$st"
grep -q -- "no record for 'nope'" <<<"$errout" || fail "show nope: $errout"
run 1 "$KMSCTL" state rm chain.kms nope --state "$st"
grep -q -- "nothing removed" <<<"$errout" || fail "rm nope: $errout"
run 1 "$KMSCTL" state frobnicate --state "$st"

# rm takes the lock, removes the record and its intent, keeps a backup.
run 0 "$KMSCTL" state rm chain.kms --state "$st"
[ "$out" = "removed chain.kms" ] || fail "rm: $out"
run 0 "$KMSCTL" state list --state "$st"
[ "$out" = "gcp.firewall.kms-12001" ] || fail "list after rm: $out"
grep -q '"serial": 5' "$st" || fail "serial not incremented"
grep -q '"intents": {' "$st" && ! grep -q '"deploy"' "$st" || fail "intent kept"
grep -q '"serial": 4' "$st.backup" || fail "no backup of serial 4"
[ "$(stat -c %a "$st")" = 600 ] || fail "mode $(stat -c %a "$st")"
[ -s "$st.lock" ] && fail "lock record left after rm"

# A live holder: rm exits 3, unlock refuses (exit 3).
# The holder is the sleep itself (exec), so killing it frees the lock.
(
    exec 9>>"$st.lock"
    flock -n 9 || exit 1
    : >"$st.holding"
    exec sleep 120
) &
holder=$!
# Wait for the holder to say it holds the lock (a loaded CI machine may take
# a while to schedule it); give up after 60 s.
holding() {
    [ -e "$st.holding" ] && return 0
    kill -0 "$holder" 2>/dev/null || fail "lock holder could not take the lock"
    return 1
}
wait_until 60 holding || fail "lock holder did not start within 60 s"
rm -f "$st.holding"
run 3 "$KMSCTL" state rm gcp.firewall.kms-12001 --state "$st"
grep -q -- "is locked by" <<<"$errout" || fail "rm locked: $errout"
run 3 "$KMSCTL" state unlock --state "$st"
grep -q -- "live process" <<<"$errout" || fail "unlock live: $errout"
kill "$holder"
wait "$holder" 2>/dev/null || true
holder=

# A stale record of a dead process: rm exits 3 naming it, unlock clears it.
sh -c 'exit 0' &
dead=$!
wait "$dead"
printf '{"pid":%d,"host":"%s","started_at":"2026-01-01T00:00:00Z","command":"kmsctl apply"}' \
    "$dead" "$(hostname)" >"$st.lock"
run 3 "$KMSCTL" state rm gcp.firewall.kms-12001 --state "$st"
grep -q -- "stale lock left by pid $dead (dead)" <<<"$errout" ||
    fail "stale: $errout"
run 0 "$KMSCTL" state unlock --state "$st"
grep -q -- "cleared the stale lock of pid $dead" <<<"$out" || fail "unlock: $out"
run 0 "$KMSCTL" state unlock --state "$st"
grep -q -- "is not locked" <<<"$out" || fail "unlock again: $out"
run 0 "$KMSCTL" state rm gcp.firewall.kms-12001 --state "$st"

# A broken state is refused and left as it is.
printf '{"format_version": 1, "lin' >"$st"
run 1 "$KMSCTL" state list --state "$st"
grep -q -- "restore the previous version from '$st.backup'" <<<"$errout" ||
    fail "broken: $errout"
[ "$(cat "$st")" = '{"format_version": 1, "lin' ] || fail "broken state changed"
run 1 "$KMSCTL" state rm x --state "$st"
[ "$(cat "$st")" = '{"format_version": 1, "lin' ] || fail "broken state changed"
echo "ok"
