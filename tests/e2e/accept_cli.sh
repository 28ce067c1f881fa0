#!/usr/bin/env bash
# tests/e2e/accept_cli.sh: issue 2 §1 and §3 from the outside. The exit codes
# of `kmsctl --help`, README.md and cmd/cmd.h are the same table; every verb
# takes --help (after or before it), refuses unknown options, and accepts the
# global flags -f, --state, --json, --no-color, -v, --debug, also when they
# come before the verb; colour only on a TTY, never with --no-color or a
# non-empty NO_COLOR; `version --json` is JSON. Needs $KMSCTL, $KC_BUILD_DIR,
# $KC_SRC_DIR, jq; the colour part needs script(1) and kmsctl-enginetest.
set -euo pipefail

: "${KMSCTL:?KMSCTL must name the kmsctl binary}"
: "${KC_SRC_DIR:?KC_SRC_DIR must name the source folder}"
: "${KC_BUILD_DIR:?KC_BUILD_DIR must name the build folder}"
. "$KC_SRC_DIR/tests/e2e/lib/common.sh"
K=$KMSCTL
kc_tmpdir dir
cd "$dir"

# --- exit codes: kmsctl --help == README == cmd/cmd.h -----------------------
run 0 "$K" --help
help=$out
help_codes=$(sed -n '/^Exit codes:/,$p' <<<"$help" | sed -n 's/^  \([0-9][0-9]*\) .*/\1/p' | sort -n | tr '\n' ' ')
readme_codes=$(sed -n '/^### Exit codes/,/^##[^#]/p' "$KC_SRC_DIR/README.md" |
    sed -n 's/^| \([0-9][0-9]*\) *|.*/\1/p' | sort -n | tr '\n' ' ')
header_codes=$(sed -n 's/^ *KC_EXIT_[A-Z]* = \([0-9][0-9]*\),.*/\1/p' "$KC_SRC_DIR/cmd/cmd.h" |
    sort -n | tr '\n' ' ')
[ "$help_codes" = "0 1 2 3 4 130 " ] || fail "kmsctl --help exit codes: '$help_codes'"
[ "$readme_codes" = "$help_codes" ] || fail "README exit codes '$readme_codes' != --help '$help_codes'"
[ "$header_codes" = "$help_codes" ] || fail "cmd/cmd.h exit codes '$header_codes' != --help '$help_codes'"
# The meaning too: 3 is the lock, 4 is drift only, 2 is plan/drift.
for pat in '^  3 .*lock' '^  4 .*drift' '^  2 .*detailed-exitcode.*drift' '^  130 .*interrupted'; do
    grep -qE "$pat" <<<"$help" || fail "kmsctl --help: no line matching $pat"
done
for pat in '^\| 3 .*lock' '^\| 4 .*drift' '^\| 2 .*detailed-exitcode.*drift' '^\| 130 .*interrupted'; do
    grep -qE "$pat" "$KC_SRC_DIR/README.md" || fail "README: no exit-code row matching $pat"
done

# --- every verb: --help, unknown options, global flags ---------------------
verbs=$(sed -n '/^Verbs:/,/^$/p' <<<"$help" | sed -n 's/^  \([a-z][a-z]*\) .*/\1/p')
[ "$(wc -w <<<"$verbs")" -eq 11 ] || fail "expected the 11 verbs of issue 2 §3, got: $verbs"
for v in validate plan apply destroy drift output graph state logs render version; do
    grep -qx "$v" <<<"$verbs" || fail "verb $v missing from kmsctl --help"
    grep -qE "^    kmsctl $v( |\$)" "$KC_SRC_DIR/README.md" || fail "verb $v missing from README's Verbs"
done
for v in $verbs; do
    run 0 "$K" "$v" --help
    has "usage: kmsctl $v" "$out"
    has "Exit codes:" "$out"
    run 0 "$K" "$v" -h
    has "usage: kmsctl $v" "$out"
    # Before the verb, too.
    run 0 "$K" --help "$v"
    has "usage: kmsctl $v" "$out"
    run 0 "$K" help "$v"
    has "usage: kmsctl $v" "$out"
    run 0 "$K" -v --no-color "$v" --help
    has "usage: kmsctl $v" "$out"
    # Every global flag is known to every verb.
    run 0 "$K" "$v" -f x.yaml --state s.json --json --no-color -v -v --debug \
        --lock-timeout 1s --help
    has "usage: kmsctl $v" "$out"
    run 1 "$K" "$v" --no-such-option
    has "unknown option '--no-such-option'" "$errout"
    has "kmsctl $v --help" "$errout"
    run 1 "$K" "$v" --state
    has "option '--state' needs a value" "$errout"
done
run 1 "$K" frobnicate
has "unknown verb 'frobnicate'" "$errout"
run 1 "$K" -v frobnicate
run 1 "$K"
has "usage: kmsctl" "$errout"

# --- --version and version ---------------------------------------------------
run 0 "$K" --version
ver=$(sed -n 's/^kmsctl \([0-9][0-9.]*\) (.*/\1/p' <<<"$out")
[ -n "$ver" ] || fail "--version: $out"
has "libuv" "$out"
run 0 "$K" version
[ "$(sed -n 's/^kmsctl \([0-9][0-9.]*\) (.*/\1/p' <<<"$out")" = "$ver" ] || fail "version: $out"
run 0 "$K" version --json
[ "$(jq -r .version <<<"$out")" = "$ver" ] || fail "version --json: $out"
jq -e '.libraries.libuv and .libraries.libcurl and .libraries.openssl' <<<"$out" >/dev/null ||
    fail "version --json lacks libraries: $out"
run 1 "$K" version extra
has "version takes no arguments" "$errout"

# --- global flags before the verb reach it ----------------------------------
cp "$KC_SRC_DIR/manifests/gcp-nitro-direct.yaml" m.yaml
run 0 "$K" validate -f m.yaml
has "m.yaml: valid" "$out"
run 0 "$K" -f m.yaml -v --debug --no-color validate
has "m.yaml: valid" "$out"
run 0 "$K" --file m.yaml --json validate
[ "$(jq -r .valid <<<"$out")" = true ] || fail "--json before validate: $out"
run 1 "$K" -f nope.yaml validate
has "nope.yaml" "$errout"
# A file named like a verb is a value, not the verb.
cp m.yaml plan
run 0 "$K" -f plan validate
has "plan: valid" "$out"

# --- colour: only on a TTY, never with --no-color or NO_COLOR -------------
E=$KC_BUILD_DIR/kmsctl-enginetest
[ -x "$E" ] || fail "$E is not built"
command -v script >/dev/null || fail "script(1) (bsdutils) is missing"
{
    cat >f.yaml <<'YAML'
version: 1
name: demo
providers:
  fake: {world: ./world.json, delay_ms: 0}
fake:
  a: {kind: thing, value: "A", size: 1}
YAML
    echo '{"objects":{},"fail":{},"counters":{},"log":[]}' >world.json
    esc=$'\033['
    tty() { script -qec "exec $*" /dev/null </dev/null; }
    o=$(env -u NO_COLOR bash -c "$(declare -f tty); tty '$E plan -f f.yaml'")
    has "${esc}32m" "$o"
    has "fake.thing.a create" "$o"
    o=$(env -u NO_COLOR bash -c "$(declare -f tty); tty '$E plan -f f.yaml --no-color'")
    hasnt "${esc}32m" "$o"
    hasnt "${esc}0m" "$o"
    has "fake.thing.a create" "$o"
    o=$(env -u NO_COLOR bash -c "$(declare -f tty); tty '$E --no-color plan -f f.yaml'")
    hasnt "${esc}32m" "$o"
    o=$(NO_COLOR=1 bash -c "$(declare -f tty); tty '$E plan -f f.yaml'")
    hasnt "${esc}32m" "$o"
    has "fake.thing.a create" "$o"
    # no-color.org: an empty NO_COLOR is as if unset.
    o=$(NO_COLOR= bash -c "$(declare -f tty); tty '$E plan -f f.yaml'")
    has "${esc}32m" "$o"
    # Not a TTY: never.
    o=$(env -u NO_COLOR "$E" plan -f f.yaml 2>&1 </dev/null)
    hasnt "$esc" "$o"
    has "fake.thing.a create" "$o"
    # -v: the refresh is narrated (observe lines), also before the verb;
    # without it a plan is quiet about it. (--debug traces HTTP: see
    # accept_aws.sh, which has HTTP to trace.)
    "$E" apply -f f.yaml --auto-approve </dev/null >/dev/null 2>&1 || fail "apply f.yaml"
    run 0 "$E" plan -f f.yaml
    hasnt "fake.thing.a: observe started" "$out"
    has "No changes." "$out"
    run 0 "$E" plan -f f.yaml -v
    has "fake.thing.a: observe started" "$out"
    run 0 "$E" -v plan -f f.yaml
    has "fake.thing.a: observe started" "$out"
}

# --- state: the default path beside the manifest, from its name --------------
# (the apply above wrote .kmsctl/demo.state.json next to f.yaml)
[ -f .kmsctl/demo.state.json ] || fail "apply did not write .kmsctl/demo.state.json"
run 0 "$K" state list -f f.yaml
[ "$out" = "fake.thing.a" ] || fail "state list: $out"
mkdir -p elsewhere
(cd elsewhere && "$K" state list -f ../f.yaml >../list.txt 2>&1) || fail "state list from another folder: $(cat list.txt)"
[ "$(cat list.txt)" = "fake.thing.a" ] || fail "state list from another folder: $(cat list.txt)"
run 0 "$K" -f f.yaml state show fake.thing.a
[ "$(jq -r .kind <<<"$out")" = thing ] || [ "$(jq -r .kind <<<"$out")" = fake.thing ] ||
    fail "state show: $out"
run 0 "$K" state unlock -f f.yaml
has "is not locked" "$out"
run 1 "$K" state list -f nope.yaml
has "or give --state PATH" "$errout"
printf 'version: 1\nproviders: {}\n' >noname.yaml
run 1 "$K" state list -f noname.yaml
has "noname.yaml: no 'name'" "$errout"
# Another deployment's state is refused, named. (The engine's first apply
# leaves "deployment": null in a new state file, so the record is set here
# as any later run of kmsctl sets it.)
jq '.deployment = "demo"' .kmsctl/demo.state.json >.kmsctl/other.state.json
sed 's/^name: demo$/name: other/' f.yaml >other.yaml
run 1 "$K" state list -f other.yaml
has "belongs to deployment 'demo', not 'other'" "$errout"
run 0 "$K" state rm fake.thing.a -f f.yaml
has "removed fake.thing.a" "$out"
run 0 "$K" state list -f f.yaml
[ -z "$out" ] || fail "state list after rm: $out"
echo "accept_cli.sh: ok"
