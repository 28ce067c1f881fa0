#!/usr/bin/env bash
# tests/e2e/secrets.sh: secrets never leak (DESIGN.md sections 5 and 6).
#
# Distinctive secrets go in through every door the manifest has -- the chain
# private key (${env:...}), a keystore v3 file and its password, user_config
# values (${file:...}), the GCP service-account key and the AWS secret key of
# tests/sim/creds, a SENSITIVE field of the engine's fake provider -- and
# every verb runs against the sandbox pieces: anvil (chain), kmsctl-sim (gcp,
# ec2), the fake provider of kmsctl-enginetest. Then every byte kmsctl wrote
# (stdout, stderr with -v and --debug, state and its backup, plan files, the
# Prometheus file, rendered files, its temp folder) is searched for each
# secret as text, hex and base64/base64url at every alignment
# (the Python below). Only the files meant to carry secrets are
# exempt: render's .user-config and the shared disk image holding it.
#
# A provider that is not built in this tree is said so on stdout and its part
# is not run (validate and render still see its secrets); the fake provider
# part always runs. Each run is also checked to have really used the secrets
# (contracts deployed, VM and host created, .user-config holding the value).
set -euo pipefail
: "${KMSCTL:?}" "${KC_SRC_DIR:?}" "${KC_BUILD_DIR:?}"
. "$KC_SRC_DIR/tests/e2e/lib/sim.sh"
. "$KC_SRC_DIR/tests/e2e/lib/anvil.sh"

work=$(mktemp -d)
kc_on_exit 'if [ -n "${SECRETS_KEEP:-}" ]; then echo "kept: $work" >&2; else rm -rf "$work"; fi'

# Everything kmsctl writes lands under $work/out (its TMPDIR too); inputs
# live in $work/in and are not scanned.
mkdir -p "$work/in" "$work/out/tmp"
export TMPDIR="$work/out/tmp"
n=0
# run EXPECTED_RC NAME CMD...: stdout and stderr kept as out/NAME.{out,err}.
run() {
    local want=$1 name=$2 rc=0
    shift 2
    n=$((n + 1))
    "$@" >"$work/out/$n-$name.out" 2>"$work/out/$n-$name.err" </dev/null || rc=$?
    if [ "$rc" != "$want" ]; then
        tail -n 40 "$work/out/$n-$name.err" >&2
        tail -n 20 "$work/out/$n-$name.out" >&2
        fail "'$name' ($*) exited $rc, expected $want"
    fi
    last_out="$work/out/$n-$name.out"
    last_err="$work/out/$n-$name.err"
}

# --- the secrets ------------------------------------------------------------
S_KEY=$ANVIL_KEY1 # anvil's published development account 1
S_KSPW=ks-pw-Quokka-7319-xyzzy-plover
S_UC=uc-Wombat-5521-frobnicate-Zanzibar
S_UC2=uc2-Narwhal-0042-quux-Tegucigalpa
S_FAKE=fake-Axolotl-8803-grault-Ouagadougou
S_EP=apikey-Capybara-6120-corge-Reykjavik # in the path of an endpoint URL
S_AWS=$(sed -n 's/^aws_secret_access_key *= *//p' "$KC_SRC_DIR/tests/sim/creds/aws-credentials")
[ -n "$S_AWS" ] || fail "no aws_secret_access_key in tests/sim/creds/aws-credentials"
# Three lines from the second half of the PEM body (the private exponent and
# primes, not the public modulus) and the DER bytes under them.
mapfile -t PEM < <(python3 -c '
import json, sys, base64
k = json.load(open(sys.argv[1]))["private_key"].split("\n")[1:-2]
for l in k[12:15]: print(l)
print(base64.b64decode("".join(k[12:15])).hex())' "$KC_SRC_DIR/tests/sim/creds/gcp-service-account.json")
[ "${#PEM[@]}" = 4 ] || fail "cannot read the GCP key"
{
    echo "chain_private_key $S_KEY"
    echo "keystore_password $S_KSPW"
    echo "user_config_file $S_UC"
    echo "user_config_env $S_UC2"
    echo "fake_sensitive $S_FAKE"
    echo "endpoint_api_key $S_EP"
    echo "aws_secret_key $S_AWS"
    echo "gcp_key_pem1 ${PEM[0]}"
    echo "gcp_key_pem2 ${PEM[1]}"
    echo "gcp_key_pem3 ${PEM[2]}"
    echo "gcp_key_der ${PEM[3]}"
} >"$work/in/secrets.txt"
cat >"$work/in/leakscan.py" <<'PY'
#!/usr/bin/env python3
"""Look for secrets in files, in every encoding a
careless program might use: the bytes themselves, hex (either case, with or
without 0x), base64 and base64url at each of the three byte alignments (so a
secret inside a larger encoded blob is found too). For a secret that is hex
text (a private key), the bytes it encodes are searched as well.

  leakscan.py SECRETS_FILE FILE...
SECRETS_FILE has one "NAME VALUE" per line. Prints one line per hit
(file, secret name, form, offset; never the secret) and exits 1 if any."""
import base64
import re
import sys


def b64_forms(data):
    """The base64 text that encodes DATA wherever it starts in a stream,
    keeping only the characters that depend on DATA alone."""
    out = []
    for k in range(3):
        enc = base64.b64encode(b"\0" * k + data).rstrip(b"=")
        lead = 4 if k else 0
        tail = (k + len(data)) % 3
        end = len(enc) - ((tail + 1) if tail else 0)
        frag = enc[lead:end]
        if len(frag) >= 8:
            out.append(("base64+%d" % k, frag))
            out.append(("base64url+%d" % k,
                        frag.replace(b"+", b"-").replace(b"/", b"_")))
    return out


def forms(value):
    raw = value.encode()
    res = [("literal", raw, False), ("hex", raw.hex().encode(), True)]
    res += [(n, f, False) for n, f in b64_forms(raw)]
    h = value[2:] if value.lower().startswith("0x") else value
    if len(h) >= 16 and len(h) % 2 == 0 and re.fullmatch(r"[0-9a-fA-F]+", h):
        b = bytes.fromhex(h)
        res.append(("hex-without-0x", h.lower().encode(), True))
        res += [("bytes-" + n, f, False) for n, f in b64_forms(b)]
    return res


def main():
    secrets = []
    with open(sys.argv[1]) as f:
        for line in f:
            line = line.rstrip("\n")
            if line:
                name, value = line.split(" ", 1)
                secrets.append((name, forms(value)))
    hits = 0
    for path in sys.argv[2:]:
        with open(path, "rb") as f:
            data = f.read()
        low = data.lower()
        for name, fs in secrets:
            for form, needle, anycase in fs:
                hay = low if anycase else data
                i = hay.find(needle.lower() if anycase else needle)
                if i >= 0:
                    print("LEAK: %s: secret %s as %s at byte %d"
                          % (path, name, form, i))
                    hits += 1
    sys.exit(1 if hits else 0)


if __name__ == "__main__":
    main()
PY
scan() { python3 "$work/in/leakscan.py" "$work/in/secrets.txt" "$@"; }

# The scanner finds what it should: a secret as base64url at an odd offset,
# a key as upper-case hex without 0x, a PEM line's DER bytes as hex.
python3 - "$work/in" "$S_UC" "$S_KEY" "${PEM[3]}" <<'EOF'
import base64, sys
d, uc, key, der = sys.argv[1:]
open(d + "/probe1", "wb").write(b"x" + base64.urlsafe_b64encode(b"{\"k\":\"" + uc.encode() + b"\"}"))
open(d + "/probe2", "w").write("sig " + key[2:].upper())
open(d + "/probe3", "w").write("der=" + der.upper())
EOF
for p in probe1 probe2 probe3; do
    if scan "$work/in/$p" >/dev/null; then fail "the scanner misses the secret in $p"; fi
done
ok "the scanner finds planted secrets in base64url, upper-case hex, DER hex"

# --- 1. the engine with the fake provider: every verb ---------------------
E="$KC_BUILD_DIR/kmsctl-enginetest"
[ -x "$E" ] || fail "$E is not built"
mkdir -p "$work/out/fake"
printf '%s\n' "$S_FAKE" >"$work/in/fake-secret.txt"
fake_manifest() { # VALUE
    cat >"$work/out/fake/m.yaml" <<EOF
version: 1
name: fakesec
providers:
  fake: {world: $work/in/world.json, delay_ms: 1}
fake:
  a: {kind: thing, value: "$1", secret: "\${env:SECRETS_FAKE}"}
  b: {kind: thing, value: "B", ref_from: fake.thing.a.ip, secret: "\${file:$work/in/fake-secret.txt}"}
EOF
}
echo '{"objects":{},"fail":{},"counters":{},"log":[]}' >"$work/in/world.json"
fake_manifest A
export SECRETS_FAKE=$S_FAKE
F=(-f "$work/out/fake/m.yaml")
FS=(--state "$work/out/fake/.kmsctl/fakesec.state.json")
# (validate knows only the real schema: the fake section is not in it.)
run 0 fake-plan-json "$E" plan --json -v --debug "${F[@]}"
run 0 fake-plan-out "$E" plan --out "$work/out/fake/plan.bin" "${F[@]}"
[ -s "$work/out/fake/plan.bin" ] || fail "plan --out wrote nothing"
run 0 fake-apply "$E" apply --auto-approve -v -v --debug "${F[@]}"
# The secret did flow: the state holds sha256(salt || secret) for both.
python3 - "$work/out/fake/.kmsctl/fakesec.state.json" "$S_FAKE" <<'EOF2' || fail "no digest of the fake secret in the state"
import hashlib, json, sys
st = json.load(open(sys.argv[1]))
want = "(sensitive:sha256:%s)" % hashlib.sha256((st["salt"] + sys.argv[2]).encode()).hexdigest()
got = [st["resources"][a]["attrs"]["secret"] for a in ("fake.thing.a", "fake.thing.b")]
sys.exit(0 if got == [want, want] else 1)
EOF2
run 0 fake-apply-noop "$E" apply --auto-approve --debug "${F[@]}"
fake_manifest A2 # a change, so that the state is rewritten and a backup kept
run 4 fake-drift "$E" drift --json --prom "$work/out/fake/drift.prom" -v --debug "${F[@]}"
[ -s "$work/out/fake/drift.prom" ] || fail "drift --prom wrote nothing"
run 0 fake-plan-out2 "$E" plan --out "$work/out/fake/plan2.bin" "${F[@]}"
run 0 fake-apply-plan "$E" apply --auto-approve -v "${F[@]}" "$work/out/fake/plan2.bin"
[ -f "$work/out/fake/.kmsctl/fakesec.state.json.backup" ] || fail "no state backup"
run 0 fake-output "$E" output --json "${F[@]}"
run 0 fake-state-list "$E" state list "${FS[@]}"
# Without --state: the default path from the manifest's name, the same list.
cp "$last_out" "$work/in/list-explicit"
run 0 fake-state-list-default "$E" state list "${F[@]}"
cmp -s "$last_out" "$work/in/list-explicit" || fail "state list -f differs from state list --state"
grep -qx fake.thing.a "$last_out" || fail "state list: $(cat "$last_out")"
for a in fake.thing.a fake.thing.b; do
    run 0 "fake-state-show-$a" "$E" state show "$a" "${FS[@]}"
    run 0 "fake-state-show-json-$a" "$E" state show --json "$a" "${FS[@]}"
done
run 0 fake-graph "$E" graph "${F[@]}"
run 0 fake-destroy "$E" destroy --auto-approve -v --debug "${F[@]}"
ok "fake provider: validate, plan --json/--out, apply (also of a saved plan), drift --json --prom, output, state, graph, destroy"

# --- 2. the real providers against the sandbox ----------------------------
# Every service this kmsctl-sim has ("services: test gcp kms (not built)").
svcs=$("${KMSCTL_SIM:-$KC_BUILD_DIR/kmsctl-sim}" --help 2>&1 | sed -n 's/^services://p' |
    sed 's/ [a-z0-9]* (not built)//g' | xargs | tr ' ' ,)
sim_start "$svcs" 7
export KMSCTL_SANDBOX_RPC=http://127.0.0.1:9 KMSCTL_SANDBOX_SIM=$SIM_URL
export SECRETS_KEY=$S_KEY SECRETS_UC2=$S_UC2
printf '%s' "$S_UC" >"$work/in/uc.txt"
cp "$KC_SRC_DIR/manifests/sandbox-eif-measurements.json" \
    "$KC_SRC_DIR/manifests/sandbox-ssh.pub" "$work/in/"
mkdir -p "$work/out/real"
M="$work/out/real/kms.yaml"

# built NAME: the provider is linked into kmsctl (resources/providers.c
# refers to each one weakly; kmsctl has no verb listing them, and a manifest
# naming a missing one fails only once a section needs it).
syms=$(nm "$KMSCTL")
built() { grep -Eq "^[0-9a-f]+ [RDT] kc_provider_$1\$" <<<"$syms"; }
HAVE=()
for p in chain gcp aws; do
    if built "$p"; then HAVE+=("$p"); else echo "# provider '$p' is not built here: its part is not run"; fi
done
has() { case " ${HAVE[*]-} " in *" $1 "*) return 0 ;; esac; return 1; }
if has chain; then
    # anvil's log (its banner lists the development keys) is not kmsctl's.
    TMPDIR=$work/in anvil_start
    export KMSCTL_SANDBOX_RPC=$ANVIL_URL
fi

# The sandbox manifest's sections, keeping only the built providers (render
# and validate always see the whole VM, user_config included).
python3 - "$KC_SRC_DIR" "$work" "${HAVE[*]-}" <<'EOF'
import sys, yaml
src, work, have = sys.argv[1], sys.argv[2], sys.argv[3].split()
d = yaml.safe_load(open(src + "/manifests/sandbox.yaml"))
p = d["providers"]
p["gcp"]["credentials"] = src + "/tests/sim/creds/gcp-service-account.json"
p["aws"]["credentials_file"] = src + "/tests/sim/creds/aws-credentials"
p["chain"]["private_key"] = "${env:SECRETS_KEY}"
c = d["contracts"]
c["image_search_paths"] = [src + "/.sandbox/images"]
for vm in d["kms_vms"].values():
    vm["image_search_paths"] = [src + "/.sandbox/images"]
    vm["user_config"] = {"ETH_RPC_URL": "${env:KMSCTL_SANDBOX_RPC}",
                         "API_TOKEN": "${file:%s/in/uc.txt}" % work,
                         "OTHER_TOKEN": "${env:SECRETS_UC2}"}
for h in d["nitro_hosts"].values():
    h["ssh"]["public_key"] = work + "/in/sandbox-ssh.pub"
meas = work + "/in/sandbox-eif-measurements.json"
c["os_images"] = [{"image": "dstack-sandbox-0.1.0"}, {"nitro_measurements": meas}]
c["apps"]["nitro-keys"]["compose_hashes"] = [{"nitro_measurements": meas}]
m = {"version": 1, "name": "secrets", "providers": {}}
if "chain" in have:
    m["providers"]["chain"] = p["chain"]
    m["contracts"] = c
if "gcp" in have:
    m["providers"]["gcp"] = p["gcp"]
    m["kms_vms"] = d["kms_vms"]
    # With the chain part, KMS_CONTRACT_ADDR comes from contracts.kms.
    if "chain" not in have:
        for vm in m["kms_vms"].values():
            vm["compose"]["env"]["KMS_CONTRACT_ADDR"] = "0x" + "12" * 20
if "aws" in have:
    m["providers"]["aws"] = p["aws"]
    m["nitro_hosts"] = d["nitro_hosts"]
    if "chain" not in have:
        for h in m["nitro_hosts"].values():
            h.pop("app", None)
yaml.safe_dump(m, open(work + "/out/real/kms.yaml", "w"), sort_keys=False)
# The whole VM, for validate and render.
full = {"version": 1, "name": "secrets", "providers": {"gcp": p["gcp"], "chain": p["chain"]},
        "contracts": c, "kms_vms": d["kms_vms"]}
yaml.safe_dump(full, open(work + "/out/real/vm.yaml", "w"), sort_keys=False)
EOF
sed -i "s|artifacts: .*|artifacts: $KC_BUILD_DIR/artifacts|" "$M" "$work/out/real/vm.yaml"
V=(-f "$work/out/real/vm.yaml" --state "$work/out/real/vm.state.json")
run 0 validate-vm "$KMSCTL" validate "${V[@]}" -v --debug
run 0 render "$KMSCTL" render dstack-kms "${V[@]}" --out "$work/out/real/render" \
    --set contracts.kms.address=0x00000000000000000000000000000000000000aa --json -v --debug
grep -qF "$S_UC" "$work/out/real/render/.user-config" || fail "render: .user-config lacks the user_config secret"
grep -qF "$S_UC2" "$work/out/real/render/.user-config" || fail "render: .user-config lacks the env secret"
ok "validate and render of a KMS VM with user_config secrets"

if [ "${#HAVE[@]}" -gt 0 ]; then
    R=(-f "$M")
    RS=(--state "$work/out/real/.kmsctl/secrets.state.json")
    run 0 validate "$KMSCTL" validate "${R[@]}"
    run 0 plan-json "$KMSCTL" plan --json -v --debug "${R[@]}"
    run 0 plan-out "$KMSCTL" plan --out "$work/out/real/plan.bin" "${R[@]}"
    run 0 apply "$KMSCTL" apply --auto-approve -v -v --debug "${R[@]}"
    grep -q '^debug: http: > ' "$last_err" || fail "apply --debug traced no HTTP request"
    if has gcp || has aws; then
        grep -q '^  Authorization: \[redacted\]$' "$last_err" || fail "no redacted Authorization header in the trace"
    fi
    if has chain; then
        grep -q "chain.kms.main" "$last_out" || fail "apply did not deploy the KMS contract"
        [ "$(anvil_rpc eth_getTransactionCount "[\"$ANVIL_ADDR1\",\"latest\"]")" != 0x0 ] ||
            fail "no transaction was sent with the secret key"
    fi
    if has gcp; then
        sim_inventory service=gcp | grep '"dstack-kms"' >/dev/null || fail "no KMS VM in the simulator"
    fi
    if has aws; then
        sim_inventory service=ec2 | grep 'enclave-host' >/dev/null || fail "no Nitro host in the simulator"
    fi
    run 0 plan-noop "$KMSCTL" plan --detailed-exitcode --debug "${R[@]}"
    run 0 drift "$KMSCTL" drift --json --prom "$work/out/real/drift.prom" -v --debug "${R[@]}"
    [ -s "$work/out/real/drift.prom" ] || fail "drift --prom wrote nothing"
    if has gcp; then
        # Answers of the wrong shape (a string for an array, an object for a
        # list): drift reports them, kmsctl does not abort (json-c asserts on
        # an array accessor given anything else).
        FW=dstack-kms-allow-tcp-12001
        sim_inventory service=gcp >"$work/in/inv.json"
        orig() { python3 -c 'import json,sys; d=json.load(open(sys.argv[1]))
o=[o for o in d if o["kind"]==sys.argv[2] and o["name"]==sys.argv[3]][0]["attrs"]
print(json.dumps({"attrs":{k:o[k] for k in sys.argv[4:] if k in o}}))' "$work/in/inv.json" "$@"; }
        fw_orig=$(orig firewall "$FW" sourceRanges targetTags)
        in_orig=$(orig instance dstack-kms tags serviceAccounts disks)
        sim_patch_object gcp firewall "$FW" '{"attrs":{"sourceRanges":"0.0.0.0/0","targetTags":{"a":1}}}' >/dev/null
        sim_patch_object gcp instance dstack-kms '{"attrs":{"tags":{"items":"fw-dstack-kms"},"serviceAccounts":"x","disks":{"boot":true}}}' >/dev/null
        run 2 drift-odd-answers "$KMSCTL" drift --json -v --debug "${R[@]}"
        grep -q "gcp.firewall.$FW" "$last_out" || fail "drift does not name the odd firewall: $(cat "$last_out")"
        sim_patch_object gcp firewall "$FW" "$fw_orig" >/dev/null
        sim_patch_object gcp instance dstack-kms "$in_orig" >/dev/null
        run 0 drift-restored "$KMSCTL" drift "${R[@]}"
    fi
    run 0 output "$KMSCTL" output --json "${R[@]}"
    run 0 output-text "$KMSCTL" output "${R[@]}"
    run 0 state-list "$KMSCTL" state list "${RS[@]}"
    for a in $(cat "$last_out" | awk '{print $1}' | grep '\.'); do
        run 0 "state-show-$a" "$KMSCTL" state show "$a" "${RS[@]}"
    done
    run 0 graph "$KMSCTL" graph "${R[@]}"
    if has gcp; then
        run 0 logs "$KMSCTL" logs dstack-kms -v --debug "${R[@]}"
    fi
    if has chain; then
        # The same signer from a keystore v3 file (made with node's crypto and
        # js-sha3), its password from the environment.
        keystore_v3 "$S_KEY" "$S_KSPW" >"$work/in/ks.json"
        sed -i "s|private_key: .*|keystore: {file: \"$work/in/ks.json\", password: \"\${env:SECRETS_KSPW}\"}|" "$M"
        grep -q keystore "$M" || fail "keystore manifest not written"
        export SECRETS_KSPW=$S_KSPW
        run 0 ks-plan "$KMSCTL" plan --json --detailed-exitcode -v --debug "${R[@]}"
        run 0 ks-apply "$KMSCTL" apply --auto-approve -v --debug "${R[@]}"
        # A wrong password: refused, and neither password appears.
        SECRETS_KSPW="$S_KSPW-wrong" run 1 ks-wrong "$KMSCTL" plan "${R[@]}"
    fi
    D=(destroy --auto-approve -v --debug)
    has gcp && D+=(--allow-identity-loss gcp.instance.dstack-kms)
    run 0 destroy "$KMSCTL" "${D[@]}" "${R[@]}"
    ok "${HAVE[*]}: validate, plan --json/--out, apply, plan, drift --json --prom, output, state, graph, destroy"
fi
if has gcp; then
    # kill -9 while the disk images upload (held up 4 s by the simulator):
    # nothing kmsctl made in TMPDIR survives it (the shared disk holds
    # user_config's secrets in plain text; its archive holds them gzipped).
    rm -rf "$work/out/real/.kmsctl"
    sim_faults '[{"match":"^(POST|PUT) /gcp/storage/upload","latency_ms":[4000,4000]}]'
    uploads() { sim_requests | python3 -c 'import json,sys
print(sum(n for r, n in json.load(sys.stdin)["by_route"].items() if "/gcp/storage/upload" in r))'; }
    u0=$(uploads)
    "$KMSCTL" apply --auto-approve "${R[@]}" >"$work/out/crash.out" 2>"$work/out/crash.err" </dev/null &
    kpid=$!
    for _ in $(seq 100); do
        [ "$(uploads)" -gt "$u0" ] && break
        sleep 0.1
    done
    [ "$(uploads)" -gt "$u0" ] || fail "no upload started: $(cat "$work/out/crash.err")"
    kill -9 "$kpid"
    wait "$kpid" 2>/dev/null || true
    sim_clear_faults
    left=$(find "$TMPDIR" -type f -path '*kmsctl-img-*')
    [ -z "$left" ] || fail "kill -9 during an upload left in TMPDIR: $left"
    ok "kill -9 during the image uploads leaves no disk or archive in TMPDIR"
fi

# --- 3. a request that fails is named by its URL, which may hold a key ---
# (an RPC URL such as https://host/v3/<API key>, from ${env:}): the error
# printed for it says "[redacted]" instead. Port 9 on loopback is closed.
mkdir -p "$work/out/ep"
export SECRETS_EP="http://127.0.0.1:9/v3/$S_EP"
if has aws; then
    cat >"$work/out/ep/aws.yaml" <<EOF
version: 1
name: epaws
providers:
  aws: {region: us-east-1, credentials_file: $KC_SRC_DIR/tests/sim/creds/aws-credentials, profile: default, endpoint: "\${env:SECRETS_EP}"}
nitro_hosts:
  h:
    instance_type: c5.xlarge
    enclave: {cpu_count: 2, memory_mib: 512}
    ssh: {key_name: k, public_key: $work/in/sandbox-ssh.pub, from: [198.51.100.7/32]}
EOF
    run 1 ep-aws-plan "$KMSCTL" plan -v --debug -f "$work/out/ep/aws.yaml"
    grep -q 'gave up after .*: POST \[redacted\]/' "$last_err" || fail "the failed EC2 request is not named: $(tail -n 3 "$last_err")"
fi
if has gcp; then
    # kmsctl logs reports its own errors (not through the engine).
    python3 - "$work/out/real/kms.yaml" "$work/out/ep/gcp.yaml" <<'EOF'
import sys, yaml
d = yaml.safe_load(open(sys.argv[1]))
g = d["providers"]["gcp"]
g["endpoints"] = {k: "${env:SECRETS_EP}/" + k for k in ("oauth", "compute", "storage", "metadata")}
for vm in d["kms_vms"].values():
    vm["compose"]["env"]["KMS_CONTRACT_ADDR"] = "0x" + "12" * 20
yaml.safe_dump({"version": 1, "name": "epgcp", "providers": {"gcp": g},
                "kms_vms": d["kms_vms"]}, open(sys.argv[2], "w"), sort_keys=False)
EOF
    run 1 ep-gcp-logs "$KMSCTL" logs dstack-kms -v --debug -f "$work/out/ep/gcp.yaml"
    grep -q 'gave up after .*: POST \[redacted\]/oauth' "$last_err" || fail "the failed token request is not named: $(tail -n 3 "$last_err")"
fi
if has chain; then
    cat >"$work/out/ep/chain.yaml" <<EOF
version: 1
name: epchain
providers:
  chain: {rpc_url: "\${env:SECRETS_EP}", chain_id: 31337, private_key: "\${env:SECRETS_KEY}"}
contracts:
  artifacts: $KC_BUILD_DIR/artifacts
  kms: {}
EOF
    run 1 ep-chain-apply "$KMSCTL" apply --auto-approve -v --debug -f "$work/out/ep/chain.yaml"
    grep -q 'POST \[redacted\]' "$last_out" || fail "the failed RPC request is not named: $(tail -n 3 "$last_out")"
fi

# --- 4. every byte kmsctl wrote -------------------------------------------
mapfile -t files < <(find "$work/out" -type f ! -name '*.yaml' \
    ! -path "$work/out/real/render/.user-config" ! -path "$work/out/real/render/shared.img" | sort)
[ "${#files[@]}" -gt 40 ] || fail "only ${#files[@]} files to scan"
[ -f "$work/out/fake/.kmsctl/fakesec.state.json" ] || fail "no fake state to scan"
if ! scan "${files[@]}" >"$work/leaks.txt"; then
    cat "$work/leaks.txt" >&2
    fail "secrets leaked (above)"
fi
ok "no secret in ${#files[@]} files kmsctl wrote (stdout, stderr, state, backups, plans, prom, render, temp)"
