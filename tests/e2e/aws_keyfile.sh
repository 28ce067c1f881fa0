#!/usr/bin/env bash
# tests/e2e/aws_keyfile.sh: the private key of a key pair kmsctl creates is
# written off the loop thread; a file that cannot be created (its folder is
# missing) fails the apply with an error naming the path and saying what to
# do, and a successful write still leaves a 0600 PEM file; the key pair left
# behind by the failed apply is listed by drift as external.
set -euo pipefail

: "${KC_SRC_DIR:?}" "${KMSCTL:?}"
. "$KC_SRC_DIR/tests/e2e/lib/sim.sh"

sim_aws_setup 13

manifest() { # KEY_NAME PRIVATE_KEY_FILE
    {
        sim_aws_manifest_head t1
        cat <<EOF2
  host:
    instance_type: c5.xlarge
    enclave: {cpu_count: 2, memory_mib: 512}
    ssh: {key_name: $1, private_key_file: $2}
EOF2
    } >m.yaml
}

# --- the folder of the private key file is missing ------------------------------
manifest lost-key ./missing/lost.pem
set +e
"$KMSCTL" apply --auto-approve -f m.yaml >apply1.txt 2>&1
rc=$?
set -e
[ "$rc" != 0 ] || fail "apply succeeded without a place for the key"
grep -q "key pair 'lost-key' was created but its private key could not be saved" apply1.txt ||
    fail "no guidance: $(cat apply1.txt)"
grep -q "create '[^']*missing/lost.pem'" apply1.txt || fail "path not named: $(cat apply1.txt)"
grep -q 'BEGIN RSA PRIVATE KEY' apply1.txt && fail "key material printed"
[ ! -e missing ] || fail "folder made"

# --- a writable place: a new 0600 PEM file -------------------------------------
manifest good-key ./good.pem
"$KMSCTL" apply --auto-approve -f m.yaml >apply2.txt 2>&1 || fail "apply: $(cat apply2.txt)"
[ "$(stat -c %a good.pem)" = 600 ] || fail "good.pem mode $(stat -c %a good.pem)"
grep -q -- '-----BEGIN RSA PRIVATE KEY-----' good.pem || fail "good.pem is not a PEM key"
grep -q -- '-----END RSA PRIVATE KEY-----' good.pem || fail "good.pem is cut short"
grep -rq 'BEGIN RSA PRIVATE KEY' .kmsctl && fail "key material in the state"
# The key pair whose private key was lost still carries the deployment's tags
# and is in neither the manifest nor the state: drift lists it (external);
# once deleted, as the error said, nothing drifts.
set +e
"$KMSCTL" drift -f m.yaml >drift.txt 2>&1
rc=$?
set -e
[ "$rc" = 2 ] || fail "drift exit $rc with the lost key pair left: $(cat drift.txt)"
grep -q 'external aws.key_pair.lost-key' drift.txt || fail "lost key pair not listed: $(cat drift.txt)"
[ "$(grep -c 'external' drift.txt)" = 1 ] || fail "more than the lost key pair: $(cat drift.txt)"
sim_delete_object ec2 key_pair lost-key >/dev/null || fail "delete lost-key"
"$KMSCTL" drift -f m.yaml >drift.txt 2>&1 || fail "drift after create: $(cat drift.txt)"
echo "aws_keyfile.sh: ok"
