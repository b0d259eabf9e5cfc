#!/usr/bin/env bash
# The walkthrough in one command: Kafka, two processor nodes (the seeds) and a
# producer at one event a second. Ctrl-C stops the producer and lets both nodes
# leave the cluster gracefully.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
deno="bin/deno"
bash scripts/kafka.sh start >/dev/null
logs="${TMPDIR:-/tmp}/usershard-demo"
mkdir -p "$logs"

pids=()
node() {
  local n="$1"
  "$deno" run -A main.ts process --remoting "255$n" --mgmt "855$n" --grpc "808$n" "${@:2}" \
    2> >(trap '' INT TERM; sed -u "s/^/[node $n] /" | tee "$logs/node$n.log" >&2) &
  pids+=($!)
}
stop() {
  trap - INT TERM
  echo "demo: stopping; the nodes leave the cluster gracefully" >&2
  kill -TERM "${pids[@]}" 2>/dev/null || true
  wait "${pids[@]}" 2>/dev/null || true
  exit 0
}
trap stop INT TERM

node 1
node 2
cat >&2 <<EOT
demo: two nodes start (logs also in $logs). In another terminal try:
  bin/deno task usershard query 7                 # a user's totals, from any node (--grpc localhost:8082)
  bin/deno task usershard shards --all            # which node hosts which shard
  bin/deno task usershard process --remoting 2553 --mgmt 8553 --grpc 8083   # a third node
EOT
"$deno" run -A main.ts produce "$@" 2> >(trap '' INT TERM; sed -u "s/^/[producer] /" >&2) &
pids+=($!)
wait "${pids[-1]}" || true
stop
