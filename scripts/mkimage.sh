#!/usr/bin/env bash
# scripts/mkimage.sh: the sandbox OS image, a stand-in for a dstack -uki
# release folder: <dir>/<name>/disk.raw and <dir>/<name>/auth_hash.txt.
#
#   scripts/mkimage.sh IMAGES_DIR [NAME]     (NAME: dstack-sandbox-0.1.0)
#
# disk.raw is 4 MiB: a 512-byte label naming the image, 1 MiB of
# deterministic pseudo-random bytes (AES-128-CTR keystream of a fixed key, so
# the boot archive has something to compress), the rest a hole. It does not
# boot anything: the simulators only need a disk to upload and a hash.
# auth_hash.txt stands for the UKI's Authenticode hash: SHA-256 of disk.raw.
# Same inputs, same bytes (no dates, no randomness); the files are replaced
# atomically, and left alone when already right.
set -euo pipefail

dir=${1:?usage: mkimage.sh IMAGES_DIR [NAME]}
name=${2:-dstack-sandbox-0.1.0}
case "$name" in
*/* | . | .. | "") echo "mkimage.sh: bad image name '$name'" >&2; exit 1 ;;
esac
out="$dir/$name"
mkdir -p "$out"
tmp=$(mktemp -d "$out/.tmp.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

{
    printf 'DSTACK-SANDBOX-OS-IMAGE %s\n' "$name"
    printf 'kmsctl sandbox disk: not bootable, for the simulators only\n'
} > "$tmp/label"
head -c 512 /dev/zero >> "$tmp/label"
head -c 512 "$tmp/label" > "$tmp/disk.raw"
openssl enc -aes-128-ctr -nosalt -K 6b6d7363746c2d73616e64626f782d31 \
    -iv 00000000000000000000000000000000 < /dev/zero 2>/dev/null |
    head -c $((1024 * 1024)) >> "$tmp/disk.raw" || true
size=$(stat -c %s "$tmp/disk.raw")
if [ "$size" -ne $((512 + 1024 * 1024)) ]; then
    echo "mkimage.sh: could not write the image body ($size bytes)" >&2
    exit 1
fi
truncate -s 4M "$tmp/disk.raw"
sha256sum "$tmp/disk.raw" | cut -d ' ' -f 1 > "$tmp/auth_hash.txt"

if cmp -s "$tmp/disk.raw" "$out/disk.raw" 2>/dev/null &&
    cmp -s "$tmp/auth_hash.txt" "$out/auth_hash.txt" 2>/dev/null; then
    # Unchanged: only mark it up to date for the build system.
    touch "$out/disk.raw" "$out/auth_hash.txt"
    exit 0
fi
mv -f "$tmp/disk.raw" "$out/disk.raw"
mv -f "$tmp/auth_hash.txt" "$out/auth_hash.txt"
