#!/usr/bin/env bash
# Installs what kmsctl needs to build and test on Debian 12, and nothing else.
# Silent when everything is already there (a second run installs nothing).
set -euo pipefail
cd "$(dirname "$0")/.."

pkgs=(
    build-essential cmake pkg-config git ca-certificates curl
    libuv1-dev libcurl4-openssl-dev libjson-c-dev libyaml-dev libssl-dev
    libcriterion-dev libsecp256k1-dev libxml2-dev libarchive-dev zlib1g-dev
    libmicrohttpd-dev
    nodejs npm
    # test-only tools: read back the disk images kmsctl writes
    dosfstools mtools gdisk fdisk
    jq # test-only: runs the generated prelaunch.sh as the guest would
    python3 # test-only: checks JSON against Python's json.dump output
    openssh-client # test-only: ssh-keygen makes the Nitro hosts' key pairs
    openssl # test-only: the openssl command decrypts .encrypted-env, digests
    python3-cryptography # test-only: envkms.sh decrypts .encrypted-env (X25519, AES-GCM)
)

missing=()
for p in "${pkgs[@]}"; do
    case "$p" in \#*) continue ;; esac
    st=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
    [ "$st" = "install ok installed" ] || missing+=("$p")
done
# nodejs/npm may come from elsewhere than Debian; a working command is enough.
if [ ${#missing[@]} -gt 0 ]; then
    filtered=()
    for p in "${missing[@]}"; do
        if { [ "$p" = nodejs ] && command -v node >/dev/null; } ||
           { [ "$p" = npm ] && command -v npm >/dev/null; }; then
            continue
        fi
        filtered+=("$p")
    done
    missing=("${filtered[@]+"${filtered[@]}"}")
fi
if [ ${#missing[@]} -gt 0 ]; then
    echo "deps: installing ${missing[*]}" >&2
    sudo=""
    [ "$(id -u)" = 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
fi

# npm test tooling (anvil, solc) from the committed lockfile.
if [ -f package-lock.json ]; then
    stamp=node_modules/.kmsctl-lock.sha256
    want=$(sha256sum package-lock.json | cut -d' ' -f1)
    if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
        echo "deps: npm ci" >&2
        npm ci --no-audit --no-fund --loglevel=error >&2
        echo "$want" >"$stamp"
    fi
fi
