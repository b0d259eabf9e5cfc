#!/usr/bin/env bash
# Installs the Node.js gRPC client the tests drive (@grpc/grpc-js, a real client of another stack, run by Node,
# not imported by Deno) into the cache, once, and prints its folder. CI runs it before the tests; the tests run
# it too, so that a single test file works on its own.
set -euo pipefail
grpc_js=1.14.7
proto_loader=0.8.1
cache="${USERSHARD_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/usershard}"
dir="$cache/node-grpc-js-$grpc_js"
if [ ! -f "$dir/node_modules/@grpc/grpc-js/package.json" ] || [ ! -f "$dir/node_modules/@grpc/proto-loader/package.json" ]; then
  command -v npm >/dev/null || { echo "tests/clients/install.sh: npm is needed to install @grpc/grpc-js" >&2; exit 1; }
  mkdir -p "$dir"
  echo '{"private": true, "type": "module"}' >"$dir/package.json"
  npm install --prefix "$dir" --no-audit --no-fund --ignore-scripts --loglevel=error \
    "@grpc/grpc-js@$grpc_js" "@grpc/proto-loader@$proto_loader" >&2
fi
echo "$dir"
