#!/usr/bin/env bash
# Installs dbmate (the baseline of benchmarks/bench_dbmate.py) from the npm
# registry into benchmarks/.tools (ignored by git). Needs node and npm.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$here/.tools"
cd "$here/.tools"
[ -f package.json ] || echo '{"private": true}' > package.json
npm install --no-audit --no-fund --silent dbmate@2
"$here/.tools/node_modules/.bin/dbmate" --version
