#!/usr/bin/env bash
# tests/e2e/engine_cli.sh: plan/apply/destroy/drift/output/graph end to end
# through the CLI, with kmsctl-enginetest (kmsctl's verbs plus the fake
# provider of tests/unit/helpers, whose world is a JSON file this script
# inspects and changes behind kmsctl's back). Needs $KC_BUILD_DIR and jq.
set -euo pipefail

: "${KC_SRC_DIR:?}" "${KC_BUILD_DIR:?KC_BUILD_DIR must name the build folder}"
. "$KC_SRC_DIR/tests/e2e/lib/common.sh"
K="$KC_BUILD_DIR/kmsctl-enginetest"
[ -x "$K" ] || fail "$K is not built"
kc_tmpdir dir
cd "$dir"

counter() { jq -r ".counters.$1 // 0" world.json; }
serial() { jq -r .serial .kmsctl/demo.state.json; }

manifest() { # manifest DELAY_MS EXTRA_YAML
    cat >m.yaml <<EOF
version: 1
name: demo
providers:
  fake: {world: ./world.json, delay_ms: $1}
fake:
  a: {kind: thing, value: "A", size: 1, alias: kms_vms.x}
  b: {kind: thing, value: "B", ref_from: fake.thing.a.ip}
  c: {kind: thing, value: "C", after: [fake.thing.b], secret: "\${env:SEC}"}
  d: {kind: identity, value: "D"}
$2
EOF
}
reset_world() {
    echo '{"objects":{},"fail":{},"counters":{},"log":[]}' >world.json
}
export SEC=s3cret-value-1
reset_world
manifest 20 ""

# --- plan --------------------------------------------------------------
run 2 "$K" plan -f m.yaml --detailed-exitcode
has "+ fake.thing.a create" "$out"
has "ref: (known after apply)" "$out"
has "secret: (sensitive)" "$out"
has "Plan: 4 to create, 0 to update, 0 to replace, 0 to delete." "$out"
run 0 "$K" plan -f m.yaml --json
[ "$(jq -r '.summary.create' <<<"$out")" = 4 ] || fail "plan --json: $out"
[ "$(jq -r '.resources[] | select(.address=="fake.thing.b") |
      .changes[] | select(.field=="ref") | .unknown' <<<"$out")" = true ] ||
    fail "plan --json: ref of b is not unknown: $out"
grep -q s3cret <<<"$out" && fail "the plan shows the secret"
[ "$(counter mutating)" = 0 ] || fail "plan mutated the world"
[ ! -e .kmsctl/demo.state.json ] || fail "plan wrote a state"

# --- apply: refused without a TTY, then with --auto-approve ---------------
run 1 "$K" apply -f m.yaml
has "stdin is not a terminal" "$errout"
[ "$(counter create)" = 0 ] || fail "apply without consent created things"
run 0 "$K" apply -f m.yaml --auto-approve
has "Apply complete: 4 succeeded, 0 failed, 0 skipped." "$out"
[ "$(jq -r '.objects["fake.thing.b"].attrs.ref' world.json)" = \
  "$(jq -r '.objects["fake.thing.a"].attrs.ip' world.json)" ] ||
    fail "b.ref was not bound to a.ip"
grep -q s3cret world.json .kmsctl/demo.state.json && fail "secret stored"
[ "$(jq -r '.resources | keys | length' .kmsctl/demo.state.json)" = 4 ] ||
    fail "state does not hold 4 resources"
[ "$(jq -r .deployment .kmsctl/demo.state.json)" = demo ] ||
    fail "the first write did not record the deployment's name"
# Another deployment's manifest is refused this state from the first run on.
sed 's/^name: demo$/name: other/' m.yaml >other.yaml
run 1 "$K" plan -f other.yaml --state .kmsctl/demo.state.json
has "belongs to deployment 'demo', not 'other'" "$errout"

# --- a second apply makes no mutating call -------------------------------
before=$(counter mutating)
run 0 "$K" apply -f m.yaml --auto-approve
has "No changes." "$out"
[ "$(counter mutating)" = "$before" ] || fail "second apply mutated"
run 0 "$K" plan -f m.yaml --detailed-exitcode

# --- output ---------------------------------------------------------------
run 0 "$K" output -f m.yaml fake.thing.a.ip
[ "$out" = "$(jq -r '.objects["fake.thing.a"].attrs.ip' world.json)" ] ||
    fail "output a.ip: $out"
run 0 "$K" output -f m.yaml --json
[ "$(jq -r '.["fake.thing.b"].value' <<<"$out")" = B ] || fail "output: $out"
run 0 "$K" output -f m.yaml kms_vms.x.external_ip
[ "$out" = "$(jq -r '.objects["fake.thing.a"].attrs.ip' world.json)" ] ||
    fail "output by reference: $out"
run 1 "$K" output -f m.yaml fake.thing.zz.ip
has "no output 'fake.thing.zz.ip'" "$errout"

# --- graph ----------------------------------------------------------------
run 0 "$K" graph -f m.yaml
has '"fake.thing.a" -> "fake.thing.b";' "$out"
has '"fake.thing.b" -> "fake.thing.c";' "$out"

sed -i 's/value: "D"}/value: "D1"}/' m.yaml
run 0 "$K" plan -f m.yaml --out colour.plan
run 0 "$K" graph -f m.yaml colour.plan
has '"fake.identity.d" [fillcolor=khaki];' "$out"
sed -i 's/value: "D1"}/value: "D"}/' m.yaml

# --- drift: in sync, manifest ahead, external -----------------------------
st_sum=$(sha256sum .kmsctl/demo.state.json)
muts=$(counter mutating)
run 0 "$K" drift -f m.yaml --prom drift.prom
has 'kmsctl_drift_check_success{deployment="demo"} 1' "$(cat drift.prom)"
has 'kmsctl_drift_resources{deployment="demo",cause="external"} 0' \
    "$(cat drift.prom)"
has 'kmsctl_last_check_timestamp_seconds{deployment="demo"}' \
    "$(cat drift.prom)"
sed -i 's/value: "D"}/value: "D2"}/' m.yaml
run 4 "$K" drift -f m.yaml --json
[ "$(jq -r '.differences[0].cause' <<<"$out")" = manifest ] ||
    fail "drift: $out"
jq '.objects["fake.thing.a"].attrs.value = "hacked"' world.json >w2 &&
    mv w2 world.json
run 2 "$K" drift -f m.yaml --json --prom drift.prom
[ "$(jq -r '[.differences[] | select(.cause=="external")][0] |
      [.address, .field, .expected, .actual] | join(" ")' <<<"$out")" = \
  "fake.thing.a value A hacked" ] || fail "drift external: $out"
has 'kmsctl_drift_resources{deployment="demo",cause="external"} 1' \
    "$(cat drift.prom)"
has 'kmsctl_drift_resources{deployment="demo",cause="manifest"} 1' \
    "$(cat drift.prom)"
[ "$(sha256sum .kmsctl/demo.state.json)" = "$st_sum" ] ||
    fail "drift changed the state"
[ "$(counter mutating)" = "$muts" ] || fail "drift mutated the world"
# An error: exit 1 and check_success 0.
run 1 "$K" drift -f nonexistent.yaml --prom drift.prom
has 'kmsctl_drift_check_success{deployment=""} 0' "$(cat drift.prom)"

# --- a saved plan is refused once the state changed ------------------------
run 0 "$K" plan -f m.yaml --out saved.plan
run 0 "$K" apply -f m.yaml --auto-approve
run 1 "$K" apply -f m.yaml saved.plan
has "the state changed since the plan 'saved.plan' was saved" "$errout"
# ... and a fresh one applies.
sed -i 's/value: "D2"}/value: "D3"}/' m.yaml
run 0 "$K" plan -f m.yaml --out saved.plan
has "~ fake.identity.d update" "$out"
run 0 "$K" apply -f m.yaml saved.plan
[ "$(jq -r '.objects["fake.identity.d"].attrs.value' world.json)" = D3 ] ||
    fail "saved plan not applied"

# ... and one limited by --target applies to its targets only.
sed -i 's/value: "D3"}/value: "D4"}/; s/value: "C"/value: "C2"/' m.yaml
run 0 "$K" plan -f m.yaml --target fake.thing.c --out t.plan
has "~ fake.thing.c update" "$out"
grep -q "fake.identity.d" <<<"$out" && fail "--target shows d: $out"
[ "$(jq -r '.targets | join(",")' t.plan)" = fake.thing.c ] ||
    fail "targets not saved"
run 1 "$K" apply -f m.yaml t.plan --target fake.identity.d
has "--target differs from the saved plan's" "$errout"
run 0 "$K" apply -f m.yaml t.plan
[ "$(jq -r '.objects["fake.thing.c"].attrs.value' world.json)" = C2 ] ||
    fail "targeted plan not applied"
[ "$(jq -r '.objects["fake.identity.d"].attrs.value' world.json)" = D3 ] ||
    fail "a resource outside --target was changed"

# ... and one whose per-field changes differ from a fresh plan's (the same
# action, update, but the world's value changed since) is refused.
run 0 "$K" plan -f m.yaml --out f.plan
has "~ fake.identity.d update" "$out"
jq '.objects["fake.identity.d"].attrs.value = "Dx"' world.json >w2 &&
    mv w2 world.json
run 1 "$K" apply -f m.yaml f.plan
has "the world changed since the plan 'f.plan' was saved: 'fake.identity.d' field 'value' was to change \"D3\" -> \"D4\", now \"Dx\" -> \"D4\"" "$errout"
[ "$(jq -r '.objects["fake.identity.d"].attrs.value' world.json)" = Dx ] ||
    fail "a refused saved plan changed the world"

# --- failure isolation through the CLI -------------------------------------
reset_world
rm -rf .kmsctl
jq '.fail["fake.thing.b"] = "create"' world.json >w2 && mv w2 world.json
run 1 "$K" apply -f m.yaml --auto-approve
has "Apply incomplete: 2 succeeded, 1 failed, 1 skipped." "$out"
has "failed:  fake.thing.b: create: fake: injected failure of create" "$out"
has "skipped: fake.thing.c: a dependency failed" "$out"
[ "$(jq -r '.resources | keys | join(",")' .kmsctl/demo.state.json)" = \
  "fake.identity.d,fake.thing.a" ] || fail "state after a failure"

# --- --json events --------------------------------------------------------
jq '.fail = {}' world.json >w2 && mv w2 world.json
run 0 "$K" apply -f m.yaml --auto-approve --json
jq -e -s 'map(select(.event=="finished")) | map(.address) | sort ==
          ["fake.thing.b","fake.thing.c"]' <<<"$out" >/dev/null ||
    fail "--json events: $out"
jq -e -s '.[0].event == "plan" and .[0].plan.summary.create == 2 and
          .[-1].event == "summary" and .[-1].succeeded == 2' <<<"$out" \
    >/dev/null || fail "--json plan and summary events: $out"

# --- the lock: a second apply while one runs -------------------------------
# e takes 4 s: the second apply, started once e has (the lock is held), has
# all that time to find the lock, even on a slow box.
manifest 4000 "  e: {kind: thing, value: E}"
bg_start apply.log "$K" apply -f m.yaml --auto-approve
started() { grep -q "fake.thing.$1: create started" "$2"; }
wait_until 60 started e apply.log || fail "e never started: $(cat apply.log)"
run 3 "$K" apply -f m.yaml --auto-approve
has "is locked by pid $BG" "$errout"
bg_wait 60 || fail "the first apply did not end: $(cat apply.log)"
[ "$rc" = 0 ] || fail "the first apply: exit $rc: $(cat apply.log)"

# --- SIGINT: in-flight work finishes, nothing new starts, exit 130 ---------
# f takes 2.5 s: SIGINT reaches kmsctl while f is in flight (were f done
# before the signal, g would start and this would test nothing).
manifest 2500 "  f: {kind: thing, value: F, after: [fake.thing.e]}
  g: {kind: thing, value: G, after: [fake.thing.f]}"
bg_start int.log "$K" apply -f m.yaml --auto-approve
wait_until 60 started f int.log || fail "f never started: $(cat int.log)"
bg_kill INT
[ "$rc" = 130 ] || fail "SIGINT: exit $rc: $(cat int.log)"
has "fake.thing.f: created" "$(cat int.log)"
has "fake.thing.g: skipped: interrupted before it started" "$(cat int.log)"
jq -e '.resources["fake.thing.f"]' .kmsctl/demo.state.json >/dev/null ||
    fail "f finished but is not in the state"
jq -e '.resources["fake.thing.g"] == null' .kmsctl/demo.state.json \
    >/dev/null || fail "g is in the state"
[ "$(jq -r '.objects["fake.thing.g"] // "none"' world.json)" = none ] ||
    fail "g was created after SIGINT"

# --- SIGTERM twice: the second aborts at once, the lock is left stale ------
# t's create takes 30 s; the first SIGTERM would wait for it, the second
# abandons it: kmsctl ends long before, and t never reaches the world.
manifest 30000 "  t: {kind: thing, value: T}"
bg_start term.log "$K" apply -f m.yaml --auto-approve
wait_until 60 started t term.log || fail "t never started: $(cat term.log)"
start=$SECONDS
kill -TERM "$BG"
# The second signal only once the first was handled (two signals before the
# loop runs would be one wake-up).
wait_until 20 grep -qF "terminated: starting nothing new" term.log ||
    fail "the first SIGTERM was not handled: $(cat term.log)"
kill -TERM "$BG"
bg_wait 20 || fail "the second signal did not abort: still running 20 s later"
[ "$rc" = 130 ] || fail "SIGTERM twice: exit $rc: $(cat term.log)"
[ "$(jq -r '.objects["fake.thing.t"] // "none"' world.json)" = none ] ||
    fail "t was created: the run waited for its create ($((SECONDS - start)) s)"
has "aborted by a second signal" "$(cat term.log)"
manifest 0 "  t: {kind: thing, value: T}"
# plan only reads: a stale lock does not stop it
run 2 "$K" plan -f m.yaml --detailed-exitcode
run 3 "$K" apply -f m.yaml --auto-approve
has "stale lock" "$errout"
run 0 "$KC_BUILD_DIR/kmsctl" state unlock --state .kmsctl/demo.state.json
run 0 "$K" apply -f m.yaml --auto-approve
has "fake.thing.t: created" "$out"

# --- on a terminal: y/N, then live lines with elapsed time -----------------
if command -v script >/dev/null; then
    manifest 1300 "  h: {kind: thing, value: H}"
    rc=0
    tty_out=$(printf 'n\n' | script -qec "exec $K apply -f m.yaml --no-color" \
        /dev/null) || rc=$?
    [ "$rc" = 1 ] || fail "answering n: exit $rc: $tty_out"
    has "Apply these changes? [y/N]" "$tty_out"
    has "apply cancelled: nothing changed" "$tty_out"
    [ "$(jq -r '.objects["fake.thing.h"] // "none"' world.json)" = none ] ||
        fail "h was created after answering n"
    # Ctrl-C at the prompt: no, and no stale lock left behind.
    rc=0
    # ^C only once the prompt is on the terminal (a ^C during the plan is
    # an interrupt, not an answer); script -f flushes the typescript.
    rm -f prompt.ts
    tty_out=$( (for _ in $(seq 300); do
                    grep -qF '[y/N]' prompt.ts 2>/dev/null && break
                    sleep 0.1
                done
                printf '\003') |
        script -qefc "exec $K apply -f m.yaml --no-color" prompt.ts) || rc=$?
    [ "$rc" = 1 ] || fail "Ctrl-C at the prompt: exit $rc: $tty_out"
    has "apply cancelled: nothing changed" "$tty_out"
    [ ! -s .kmsctl/demo.state.json.lock ] || fail "Ctrl-C left the lock"
    tty_out=$(printf 'y\n' | script -qec "exec $K apply -f m.yaml --no-color" \
        /dev/null) || fail "answering y: $tty_out"
    # A live line with the elapsed time ((1s), or more on a stalled box).
    grep -Eq 'fake\.thing\.h: creating\.\.\. \([0-9]+s\)' <<<"$tty_out" ||
        fail "no live line with the elapsed time: $tty_out"
    has "fake.thing.h: created" "$tty_out"
fi

# --- destroy: consent for the identity, reverse order ---------------------
manifest 0 ""
run 1 "$K" destroy -f m.yaml --auto-approve
has "'fake.identity.d' delete refused" "$errout"
has "--allow-identity-loss fake.identity.d" "$errout"
run 0 "$K" destroy -f m.yaml --auto-approve \
    --allow-identity-loss fake.identity.d
has "Destroy complete: " "$out"
idx() { jq -r --arg l "$1" '.log | index($l)' world.json; }
[ "$(idx 'delete fake.thing.c')" -lt "$(idx 'delete fake.thing.b')" ] ||
    fail "c must be deleted before b"
[ "$(idx 'delete fake.thing.b')" -lt "$(idx 'delete fake.thing.a')" ] ||
    fail "b must be deleted before a"
[ "$(jq -r '.objects | length' world.json)" = 0 ] || fail "world not empty"
[ "$(jq -r '.resources | length' .kmsctl/demo.state.json)" = 0 ] ||
    fail "state not empty"
echo "ok"
