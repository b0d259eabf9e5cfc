#!/usr/bin/env bash
# scripts/kafka.sh for the secured broker the tests in this folder run against (KAFKA_SECURED=1):
# plaintext on KAFKA_SECURED_BROKERS (default localhost:19492), SASL_SSL on its port + 2 and
# SASL_PLAINTEXT on its port + 3; its folder is KAFKA_SECURED_RUN_DIR (default <cache>/kafka-secured).
# `start` prints the plaintext address, `dir` the folder (client.properties, tls/ca.pem).
set -euo pipefail
cache="${USERSHARD_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/usershard}"
export KAFKA_SECURED=1
export KAFKA_BROKERS="${KAFKA_SECURED_BROKERS:-localhost:19492}"
export KAFKA_RUN_DIR="${KAFKA_SECURED_RUN_DIR:-$cache/kafka-secured}"
unset KAFKA_CONTROLLER_PORT
if [ "${1:-}" = dir ]; then echo "$KAFKA_RUN_DIR"; exit 0; fi
exec bash "$(dirname "${BASH_SOURCE[0]}")/../../scripts/kafka.sh" "$@"
