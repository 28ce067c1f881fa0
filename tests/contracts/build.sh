#!/usr/bin/env bash
# tests/contracts/build.sh OUT: compiles tests/contracts/*.sol with npm solc
# (0.8.22, optimizer 200 runs, EVM paris, as reference/dstack.md section 3)
# into Hardhat-format artifacts: OUT/contracts/<File>.sol/<Name>.json with
# abi, bytecode, deployedBytecode and link references. Touches OUT/.stamp.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
out="${1:?usage: build.sh OUT_DIR}"
solc_dir="$root/node_modules/solc"
if [ ! -f "$solc_dir/package.json" ]; then
  echo "build.sh: npm solc is not installed ($solc_dir); run npm ci" >&2
  exit 1
fi
mkdir -p "$out"
node "$here/compile.js" "$solc_dir" "$here" "$out"
touch "$out/.stamp"
