#!/usr/bin/env bash
# tests/e2e/gcp_sim.sh: the simulated Google Cloud (kmsctl-sim service gcp)
# against raw HTTP: the token endpoint checks the RS256 JWT made here with
# openssl from the test key, Compute operations progress, requestId dedup,
# Google error shapes, fingerprints, pagination, natIPs, serial output,
# Storage resumable uploads with 308/Range and crc32c, preconditions, and the
# admin API (inventory, labels patch).
set -euo pipefail
# Pipes into grep use plain grep (reads all its input), never grep -q, which
# may exit before the writer finished and fail the pipe (pipefail, SIGPIPE).
. "$KC_SRC_DIR/tests/e2e/lib/sim.sh"

kc_tmpdir tmp

KMSCTL_SIM_GCP_OP_MS=5,15 sim_start gcp 7
python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["private_key"],end="")' \
    "$KC_SRC_DIR/tests/sim/creds/gcp-service-account.json" >"$tmp/key.pem"
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$tmp/other.pem" 2>/dev/null

b64u() { openssl base64 -A | tr '+/' '-_' | tr -d '='; }
# jwt KEY ISS AUD IAT EXP
jwt() {
    local h c s
    h=$(printf '{"alg":"RS256","typ":"JWT"}' | b64u)
    c=$(printf '{"iss":"%s","scope":"https://www.googleapis.com/auth/cloud-platform","aud":"%s","iat":%d,"exp":%d}' \
        "$2" "$3" "$4" "$5" | b64u)
    s=$(printf '%s.%s' "$h" "$c" | openssl dgst -sha256 -sign "$1" -binary | b64u)
    printf '%s.%s.%s' "$h" "$c" "$s"
}
ISS=kmsctl-sandbox@kmsctl-sandbox.iam.gserviceaccount.com
now=$(date +%s)
grant() { # JWT -> body, status in $tmp/code
    curl -s -o "$tmp/tok" -w '%{http_code}' -X POST \
        --data-urlencode "grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer" \
        --data-urlencode "assertion=$1" "$SIM_URL/gcp/oauth2/token" >"$tmp/code"
    cat "$tmp/tok"
}

# --- token endpoint ---
grant "$(jwt "$tmp/other.pem" $ISS https://oauth2.googleapis.com/token $now $((now + 3600)))" >/dev/null
[ "$(cat "$tmp/code")" = 400 ] || fail "other key accepted"
grep -q 'Invalid JWT Signature' "$tmp/tok" || fail "bad signature message: $(cat "$tmp/tok")"
grant "$(jwt "$tmp/key.pem" evil@x $SIM_URL/gcp/oauth2/token $now $((now + 3600)))" >/dev/null
[ "$(cat "$tmp/code")" = 400 ] || fail "wrong iss accepted"
grant "$(jwt "$tmp/key.pem" $ISS $SIM_URL/gcp/oauth2/token $((now - 7200)) $((now - 3600)))" >/dev/null
[ "$(cat "$tmp/code")" = 400 ] && grep -q 'iat and exp' "$tmp/tok" || fail "expired JWT accepted"
grant "$(jwt "$tmp/key.pem" $ISS https://example.com/token $now $((now + 3600)))" >/dev/null
[ "$(cat "$tmp/code")" = 400 ] && grep -q 'audience' "$tmp/tok" || fail "wrong aud accepted"
TOKEN=$(grant "$(jwt "$tmp/key.pem" $ISS "$SIM_URL/gcp/oauth2/token" $now $((now + 3600)))" | js 'd["access_token"]')
[ "$(cat "$tmp/code")" = 200 ] || fail "good JWT refused"
A="Authorization: Bearer $TOKEN"
P=$SIM_URL/gcp/compute/v1/projects/proj
req() { # METHOD URL [JSON] -> body on stdout, status in $tmp/code
    if [ $# -ge 3 ]; then
        curl -s -o "$tmp/body" -w '%{http_code}' -X "$1" -H "$A" \
            -H 'Content-Type: application/json' --data-binary "$3" "$2" >"$tmp/code"
    else
        curl -s -o "$tmp/body" -w '%{http_code}' -X "$1" -H "$A" "$2" >"$tmp/code"
    fi
    cat "$tmp/body"
}
code() { cat "$tmp/code"; }
wait_op() { # OPERATION-URL
    local i st
    for i in $(seq 100); do
        st=$(req GET "$1" | js 'd["status"]')
        [ "$st" = DONE ] && return 0
        sleep 0.02
    done
    fail "operation $1 not DONE"
}

# --- auth failures ---
curl -s -o /dev/null -w '%{http_code}' "$P/global/images" | grep 401 >/dev/null || fail "no token accepted"
req GET "$SIM_URL/gcp/compute/v1/projects/denied-p/global/images" >/dev/null
[ "$(code)" = 403 ] && js 'd["error"]["errors"][0]["reason"]' <"$tmp/body" | grep forbidden >/dev/null ||
    fail "denied project: $(cat "$tmp/body")"
curl -s -H 'Metadata-Flavor: Google' \
    "$SIM_URL/gcp/metadata/computeMetadata/v1/instance/service-accounts/default/token" | grep access_token >/dev/null ||
    fail "metadata token"

# --- storage: resumable upload, 308 Range, crc32c, preconditions ---
head -c 700000 /dev/urandom >"$tmp/img.bin"
loc=$(curl -s -D - -o /dev/null -X POST -H "$A" -H 'Content-Type: application/json' \
    -d '{"name":"dir/boot.tar.gz","metadata":{"kmsctl-deployment":"t1"}}' \
    "$SIM_URL/gcp/storage/upload/storage/v1/b/bk/o?uploadType=resumable" | tr -d '\r' |
    sed -n 's/^[Ll]ocation: //p')
[ -n "$loc" ] || fail "no session URI"
head -c 300000 "$tmp/img.bin" >"$tmp/c1"
curl -s -D "$tmp/h" -o /dev/null -X PUT -H "$A" -H 'Content-Range: bytes 0-299999/*' \
    --data-binary @"$tmp/c1" "$loc"
grep -q '^HTTP/1.1 308' "$tmp/h" || fail "chunk not 308"
grep -qi '^Range: bytes=0-262143' "$tmp/h" || fail "Range not whole 256 KiB: $(cat "$tmp/h")"
curl -s -D "$tmp/h" -o /dev/null -X PUT -H "$A" -H 'Content-Range: bytes */700000' "$loc"
grep -qi '^Range: bytes=0-262143' "$tmp/h" || fail "status query Range"
# Starting past the committed offset is refused.
curl -s -o /dev/null -w '%{http_code}' -X PUT -H "$A" -H 'Content-Range: bytes 300000-300009/700000' \
    --data-binary 0123456789 "$loc" | grep 400 >/dev/null || fail "gap accepted"
tail -c +262145 "$tmp/img.bin" >"$tmp/c2"
obj=$(curl -s -X PUT -H "$A" -H 'Content-Range: bytes 262144-699999/700000' --data-binary @"$tmp/c2" "$loc")
want=$(python3 - "$tmp/img.bin" <<'EOF'
import base64, sys
t = []
for i in range(256):
    x = i
    for _ in range(8):
        x = (x >> 1) ^ 0x82F63B78 if x & 1 else x >> 1
    t.append(x)
c = 0xffffffff
for b in open(sys.argv[1], 'rb').read():
    c = (c >> 8) ^ t[(c ^ b) & 0xff]
print(base64.b64encode((c ^ 0xffffffff).to_bytes(4, 'big')).decode())
EOF
)
[ "$(echo "$obj" | js 'd["crc32c"]')" = "$want" ] || fail "crc32c $obj vs $want"
[ "$(echo "$obj" | js 'd["md5Hash"]')" = "$(openssl dgst -md5 -binary "$tmp/img.bin" | openssl base64 -A)" ] ||
    fail "md5Hash"
gen=$(echo "$obj" | js 'd["generation"]')
req GET "$SIM_URL/gcp/storage/storage/v1/b/bk/o/dir%2Fboot.tar.gz?alt=media" >"$tmp/back"
cmp -s "$tmp/back" "$tmp/img.bin" || fail "object data differs"
curl -s -o /dev/null -w '%{http_code}' -X POST -H "$A" --data-binary x \
    "$SIM_URL/gcp/storage/upload/storage/v1/b/bk/o?uploadType=media&name=dir/boot.tar.gz&ifGenerationMatch=0" |
    grep 412 >/dev/null || fail "ifGenerationMatch=0 on an existing object"
# A wrong announced crc32c is refused.
loc2=$(curl -s -D - -o /dev/null -X POST -H "$A" -H 'Content-Type: application/json' \
    -d '{"name":"x","crc32c":"AAAAAA=="}' "$SIM_URL/gcp/storage/upload/storage/v1/b/bk/o?uploadType=resumable" |
    tr -d '\r' | sed -n 's/^[Ll]ocation: //p')
curl -s -o "$tmp/body" -w '%{http_code}' -X PUT -H "$A" --data-binary hello "$loc2" | grep 400 >/dev/null ||
    fail "crc32c mismatch accepted"
grep -q "doesn't match calculated CRC32C" "$tmp/body" || fail "crc32c mismatch message"

# --- images: requestId dedup, operations, 409, guestOsFeatures ---
img='{"name":"boot-img","rawDisk":{"source":"https://storage.googleapis.com/bk/dir/boot.tar.gz"},
      "guestOsFeatures":[{"type":"UEFI_COMPATIBLE"},{"type":"TDX_CAPABLE"},{"type":"GVNIC"}],
      "labels":{"kmsctl-deployment":"t1"}}'
op1=$(req POST "$P/global/images?requestId=11111111-1111-4111-8111-111111111111" "$img")
[ "$(echo "$op1" | js 'd["status"]')" = PENDING ] || fail "op not PENDING: $op1"
op2=$(req POST "$P/global/images?requestId=11111111-1111-4111-8111-111111111111" "$img")
[ "$(echo "$op1" | js 'd["name"]')" = "$(echo "$op2" | js 'd["name"]')" ] || fail "requestId not deduplicated"
req POST "$P/global/images?requestId=22222222-2222-4222-8222-222222222222" "$img" >/dev/null
[ "$(code)" = 409 ] && js 'd["error"]["errors"][0]["reason"]' <"$tmp/body" | grep alreadyExists >/dev/null ||
    fail "409: $(cat "$tmp/body")"
seen=$(for i in $(seq 60); do req GET "$(echo "$op1" | js 'd["selfLink"]')" | js 'd["status"]'; sleep 0.005; done | sort -u | tr '\n' ' ')
case $seen in *DONE*) ;; *) fail "op never DONE ($seen)" ;; esac
[ "$(req GET "$P/global/images/boot-img" | js 'd["status"]')" = READY ] || fail "image not READY"
req GET "$P/global/images/nope" >/dev/null
[ "$(code)" = 404 ] && grep -q "The resource 'projects/proj/global/images/nope' was not found" "$tmp/body" ||
    fail "404 shape: $(cat "$tmp/body")"
# An image from a missing object fails in its operation.
opx=$(req POST "$P/global/images" '{"name":"bad-img","rawDisk":{"source":"https://storage.googleapis.com/bk/none"}}')
wait_op "$(echo "$opx" | js 'd["selfLink"]')"
req GET "$(echo "$opx" | js 'd["selfLink"]')" | js 'd["error"]["errors"][0]["code"]' | grep RESOURCE_NOT_FOUND >/dev/null ||
    fail "op error"
req POST "$P/global/images" '{"name":"Bad_Name","rawDisk":{"source":"x"}}' >/dev/null
[ "$(code)" = 400 ] && grep -q '"reason":"invalid"' "$tmp/body" || fail "bad name accepted"

# --- instances: TDX rules, disks, natIP, fingerprints, stop/start ---
vm() { # NAME [ONHOSTMAINTENANCE]
    printf '{"name":"%s","machineType":"zones/us-central1-a/machineTypes/c3-standard-4",
      "confidentialInstanceConfig":{"confidentialInstanceType":"TDX"},
      "scheduling":{"onHostMaintenance":"%s"},
      "disks":[{"boot":true,"autoDelete":true,"initializeParams":{"sourceImage":"global/images/boot-img","diskSizeGb":"10"}},
               {"autoDelete":false,"deviceName":"data","initializeParams":{"diskName":"%s-data","diskSizeGb":"20","sourceImage":"global/images/boot-img"}}],
      "networkInterfaces":[{"network":"global/networks/default","accessConfigs":[{"type":"ONE_TO_ONE_NAT"}]}],
      "tags":{"items":["fw-%s"]},"labels":{"kmsctl-deployment":"t1"}}' "$1" "${2:-TERMINATE}" "$1" "$1"
}
Z=$P/zones/us-central1-a
req POST "$Z/instances" "$(vm vm-a MIGRATE)" >/dev/null
[ "$(code)" = 400 ] && grep -q onHostMaintenance "$tmp/body" || fail "TDX with MIGRATE accepted"
[ "$(sim_inventory 'service=gcp&kind=disk' | js 'len(d)')" = 0 ] || fail "refused insert left disks"
wait_op "$(req POST "$Z/instances" "$(vm vm-a)" | js 'd["selfLink"]')"
wait_op "$(req POST "$Z/instances" "$(vm vm-b)" | js 'd["selfLink"]')"
a=$(req GET "$Z/instances/vm-a")
[ "$(echo "$a" | js 'd["status"]')" = RUNNING ] || fail "vm-a not RUNNING"
ipa=$(echo "$a" | js 'd["networkInterfaces"][0]["accessConfigs"][0]["natIP"]')
ipb=$(req GET "$Z/instances/vm-b" | js 'd["networkInterfaces"][0]["accessConfigs"][0]["natIP"]')
case $ipa in 127.*) ;; *) fail "natIP $ipa not loopback" ;; esac
[ "$ipa" != "$ipb" ] || fail "natIPs not distinct"
# Pagination: two instances, one per page.
p1=$(req GET "$Z/instances?maxResults=1")
[ "$(echo "$p1" | js 'len(d["items"])')" = 1 ] || fail "page size"
tok=$(echo "$p1" | js 'd["nextPageToken"]')
p2=$(req GET "$Z/instances?maxResults=1&pageToken=$tok")
[ "$(echo "$p2" | js 'd["items"][0]["name"]')" = vm-b ] || fail "page 2"
[ "$(echo "$p2" | js '"nextPageToken" in d')" = False ] || fail "page 2 has a next page"
[ "$(req GET "$Z/instances?filter=labels.kmsctl-deployment%3Dt1" | js 'len(d["items"])')" = 2 ] || fail "filter"
# Fingerprints: a stale one is 412, the current one works.
fp=$(echo "$a" | js 'd["labelFingerprint"]')
req POST "$Z/instances/vm-a/setLabels" '{"labels":{"x":"y"},"labelFingerprint":"stale"}' >/dev/null
[ "$(code)" = 412 ] && grep -q conditionNotMet "$tmp/body" || fail "stale fingerprint accepted"
wait_op "$(req POST "$Z/instances/vm-a/setLabels" "{\"labels\":{\"kmsctl-deployment\":\"t1\",\"x\":\"y\"},\"labelFingerprint\":\"$fp\"}" | js 'd["selfLink"]')"
[ "$(req GET "$Z/instances/vm-a" | js 'd["labels"]["x"]')" = y ] || fail "setLabels"
[ "$(req GET "$Z/instances/vm-a" | js 'd["labelFingerprint"]')" != "$fp" ] || fail "fingerprint unchanged"
tfp=$(req GET "$Z/instances/vm-a" | js 'd["tags"]["fingerprint"]')
wait_op "$(req POST "$Z/instances/vm-a/setTags" "{\"items\":[\"fw-vm-a\",\"web\"],\"fingerprint\":\"$tfp\"}" | js 'd["selfLink"]')"
[ "$(req GET "$Z/instances/vm-a" | js '",".join(d["tags"]["items"])')" = fw-vm-a,web ] || fail "setTags"
# Stop, detach the data disk, attach it again, start.
wait_op "$(req POST "$Z/instances/vm-a/stop" | js 'd["selfLink"]')"
[ "$(req GET "$Z/instances/vm-a" | js 'd["status"]')" = TERMINATED ] || fail "not TERMINATED"
wait_op "$(req POST "$Z/instances/vm-a/detachDisk?deviceName=data" | js 'd["selfLink"]')"
[ "$(req GET "$Z/disks/vm-a-data" | js 'len(d["users"])')" = 0 ] || fail "detached disk still used"
req POST "$Z/instances/vm-b/attachDisk" "{\"source\":\"zones/us-central1-a/disks/vm-b-data\"}" >/dev/null
[ "$(code)" = 400 ] && grep -q resourceInUseByAnotherResource "$tmp/body" || fail "disk in use attached"
wait_op "$(req POST "$Z/instances/vm-a/attachDisk" '{"source":"projects/proj/zones/us-central1-a/disks/vm-a-data","deviceName":"data"}' | js 'd["selfLink"]')"
wait_op "$(req POST "$Z/instances/vm-a/start" | js 'd["selfLink"]')"
[ "$(req GET "$Z/instances/vm-a" | js 'd["status"]')" = RUNNING ] || fail "not RUNNING again"
# Serial output: start/next offsets.
s1=$(req GET "$Z/instances/vm-a/serialPort?port=1")
next=$(echo "$s1" | js 'd["next"]')
echo "$s1" | js 'd["contents"]' | grep 'Power down' >/dev/null || fail "serial contents: $s1"
s2=$(req GET "$Z/instances/vm-a/serialPort?port=1&start=$next")
[ "$(echo "$s2" | js 'd["contents"]')" = "" ] && [ "$(echo "$s2" | js 'd["start"]')" = "$next" ] ||
    fail "serial from next: $s2"
# Deleting: auto-delete disks go, others stay.
wait_op "$(req DELETE "$Z/instances/vm-b" | js 'd["selfLink"]')"
req GET "$Z/disks/vm-b" >/dev/null
[ "$(code)" = 404 ] || fail "boot disk kept"
[ "$(req GET "$Z/disks/vm-b-data" | js 'len(d["users"])')" = 0 ] || fail "data disk lost or still used"

# --- firewalls: defaults, patch, delete ---
fw='{"name":"vm-a-allow-tcp-12001","allowed":[{"IPProtocol":"tcp","ports":["12001"]}],
     "sourceRanges":["0.0.0.0/0"],"targetTags":["fw-vm-a"],"description":"Allow TCP port 12001 for vm-a"}'
wait_op "$(req POST "$P/global/firewalls" "$fw" | js 'd["selfLink"]')"
[ "$(req GET "$P/global/firewalls/vm-a-allow-tcp-12001" | js 'd["priority"]')" = 1000 ] || fail "priority"
req POST "$P/global/firewalls" '{"name":"bad-fw","allowed":[{"IPProtocol":"tcp"}],"sourceRanges":["300.1.1.1/8"]}' >/dev/null
[ "$(code)" = 400 ] || fail "bad CIDR accepted"
wait_op "$(req PATCH "$P/global/firewalls/vm-a-allow-tcp-12001" '{"sourceRanges":["203.0.113.7/32"]}' | js 'd["selfLink"]')"
[ "$(req GET "$P/global/firewalls/vm-a-allow-tcp-12001" | js 'd["sourceRanges"][0]')" = 203.0.113.7/32 ] || fail "patch"

# --- admin API: labels patch keeps the fingerprint in step; inventory ---
fp=$(req GET "$P/global/images/boot-img" | js 'd["labelFingerprint"]')
sim_patch_object gcp image boot-img '{"labels":{"kmsctl-deployment":"other"}}' >/dev/null
[ "$(req GET "$P/global/images/boot-img" | js 'd["labels"]["kmsctl-deployment"]')" = other ] || fail "admin label patch"
[ "$(req GET "$P/global/images/boot-img" | js 'd["labelFingerprint"]')" != "$fp" ] || fail "admin patch kept fingerprint"
sim_patch_object gcp instance vm-a '{"attrs":{"status":"TERMINATED"}}' >/dev/null
[ "$(req GET "$Z/instances/vm-a" | js 'd["status"]')" = TERMINATED ] || fail "admin attrs patch"
sim_delete_object gcp firewall vm-a-allow-tcp-12001 >/dev/null
req GET "$P/global/firewalls/vm-a-allow-tcp-12001" >/dev/null
[ "$(code)" = 404 ] || fail "admin delete"
inv=$(sim_inventory 'service=gcp')
[ "$(echo "$inv" | js '" ".join(sorted(o["kind"]+":"+o["name"] for o in d))')" = \
  "disk:vm-a disk:vm-a-data disk:vm-b-data image:boot-img instance:vm-a object:bk/dir/boot.tar.gz" ] ||
    fail "inventory: $inv"
[ "$(echo "$inv" | js '[o["labels"] for o in d if o["kind"]=="object"][0]["kmsctl-deployment"]')" = t1 ] ||
    fail "object labels from metadata"
sim_stop
if grep -E 'Sanitizer|runtime error' "$SIM_LOG" >&2; then fail "sanitizer report in $SIM_LOG"; fi
echo "gcp_sim: ok"
