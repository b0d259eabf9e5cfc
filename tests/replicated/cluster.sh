#!/usr/bin/env bash
# scripts/kafka.sh for the three-broker cluster the tests in this folder run against:
# KAFKA_CLUSTER_BROKERS (default localhost:29092,localhost:29094,localhost:29096) and
# KAFKA_CLUSTER_RUN_DIR (default: kafka.sh's own, by the first port). `start` prints the brokers.
set -euo pipefail
export KAFKA_BROKERS="${KAFKA_CLUSTER_BROKERS:-localhost:29092,localhost:29094,localhost:29096}"
if [ -n "${KAFKA_CLUSTER_RUN_DIR:-}" ]; then export KAFKA_RUN_DIR="$KAFKA_CLUSTER_RUN_DIR"; else unset KAFKA_RUN_DIR; fi
exec bash "$(dirname "${BASH_SOURCE[0]}")/../../scripts/kafka.sh" "$@"
