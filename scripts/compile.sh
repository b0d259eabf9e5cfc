#!/usr/bin/env bash
# Builds a single usershard binary with `deno compile`. Deno downloads the
# runtime it embeds (denort) from dl.deno.land; where that site cannot be
# reached, fetch denort for this Deno version elsewhere and point DENORT_BIN at it.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
version="$(bin/deno --version | sed -n 's/^deno \([0-9.]*\).*/\1/p')"
if [ -z "${DENORT_BIN:-}" ]; then
  if ! curl -sfI --max-time 5 "https://dl.deno.land/release/v$version/denort-x86_64-unknown-linux-gnu.zip" >/dev/null 2>&1; then
    echo "compile: dl.deno.land cannot be reached to fetch denort $version; download" \
      "denort-<target>.zip for Deno $version elsewhere, unzip it, and run again with DENORT_BIN=/path/to/denort" >&2
    exit 1
  fi
elif [ ! -x "$DENORT_BIN" ]; then
  echo "compile: DENORT_BIN=$DENORT_BIN is not an executable file" >&2
  exit 1
fi
mkdir -p dist
# Left to itself deno compile embeds every npm package the lockfile names, test tools too (puppeteer-core and its
# browser protocols). From the npm cache (--node-modules-dir=none) with --exclude-unused-npm it embeds only the
# packages that main.ts's module graph reaches: what the program needs to run.
bin/deno compile -A --node-modules-dir=none --exclude-unused-npm --output dist/usershard main.ts
echo "compile: built dist/usershard" >&2
