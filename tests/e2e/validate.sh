#!/usr/bin/env bash
# tests/e2e/validate.sh: kmsctl validate from the command line: the shipped
# manifests are valid; every broken manifest of tests/data/manifests/invalid
# exits 1 and prints exactly its expected FILE:LINE:COL errors; --json.
set -euo pipefail

: "${KMSCTL:?KMSCTL must name the kmsctl binary}"
: "${KC_SRC_DIR:?KC_SRC_DIR must name the source folder}"
. "$KC_SRC_DIR/tests/e2e/lib/common.sh"
kc_tmpdir dir

cd "$KC_SRC_DIR"

# The three shipped manifests (the sandbox one with its variables set).
export KMSCTL_SANDBOX_RPC=http://127.0.0.1:8545
export KMSCTL_SANDBOX_SIM=http://127.0.0.1:9000
export KMSCTL_SANDBOX_KEY=0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d
for m in manifests/gcp-nitro-direct.yaml manifests/gcp-nitro-light.yaml manifests/sandbox.yaml; do
    out=$("$KMSCTL" validate -f "$m" 2>&1) || fail "$m: exit $?: $out"
    [ "$out" = "$m: valid" ] || fail "$m: printed '$out'"
done

# Every broken manifest: exit 1, stdout empty, stderr = expected lines with
# the file name in front, then a count.
n=0
for m in tests/data/manifests/invalid/*.yaml; do
    exp=${m%.yaml}.expect
    rc=0
    "$KMSCTL" validate -f "$m" >"$dir/out" 2>"$dir/err" || rc=$?
    [ "$rc" -eq 1 ] || fail "$m: exit $rc, expected 1"
    [ ! -s "$dir/out" ] || fail "$m: printed on stdout: $(cat "$dir/out")"
    sed "s|^|$m:|" "$exp" >"$dir/want"
    grep -v "^$m: [0-9]* errors\?$" "$dir/err" >"$dir/got" || true
    diff -u "$dir/want" "$dir/got" || fail "$m: errors differ"
    # After checker errors comes a count (loader errors stop at the first).
    count=$(wc -l <"$exp")
    if grep -q "^$m: [0-9]* error" "$dir/err"; then
        grep -qE "^$m: $count errors?\$" "$dir/err" || fail "$m: wrong count: $(tail -n1 "$dir/err")"
    fi
    n=$((n + 1))
done
[ "$n" -ge 30 ] || fail "only $n invalid manifests"

# A precise example, spelled out: the position points at the offending node.
"$KMSCTL" validate -f tests/data/manifests/invalid/type-list-for-string.yaml 2>"$dir/err" && fail "accepted"
grep -qx 'tests/data/manifests/invalid/type-list-for-string.yaml:17:19: kms_vms.kms.machine_type: expected a GCP machine type such as c3-standard-4, got a list' "$dir/err" ||
    fail "unexpected: $(cat "$dir/err")"

# --allow-literal-secrets lets a literal key through.
out=$("$KMSCTL" validate --allow-literal-secrets -f tests/data/manifests/invalid/literal-private-key.yaml 2>&1) ||
    fail "--allow-literal-secrets: $out"

# --json: a JSON object on stdout, exit 1, one entry per error.
rc=0
"$KMSCTL" validate --json -f tests/data/manifests/invalid/many-errors.yaml >"$dir/json" 2>"$dir/err" || rc=$?
[ "$rc" -eq 1 ] || fail "--json: exit $rc"
jq -e '.valid == false and (.errors | length) == 4 and .errors[0].line == 3 and .errors[0].column == 7
       and .errors[0].path == "name" and (.errors[1].message | test("out of range"))' "$dir/json" >/dev/null ||
    fail "--json output: $(cat "$dir/json")"
"$KMSCTL" validate --json -f manifests/gcp-nitro-direct.yaml | jq -e '.valid == true and .errors == []' >/dev/null ||
    fail "--json on a valid manifest"

# A missing file is an error naming it.
rc=0
"$KMSCTL" validate -f "$dir/nope.yaml" 2>"$dir/err" || rc=$?
[ "$rc" -eq 1 ] || fail "missing file: exit $rc"
grep -q "nope.yaml" "$dir/err" || fail "missing file: $(cat "$dir/err")"

echo "ok: 3 manifests valid, $n broken ones rejected with their FILE:LINE:COL errors"
