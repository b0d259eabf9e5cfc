#!/usr/bin/env bash
# A real single-node Apache Kafka broker (KRaft, broker + controller in one JVM) for
# development and tests, without Docker: the jars come from Maven Central.
#
#   scripts/kafka.sh start   make sure a broker answers at KAFKA_BROKERS (default localhost:9092)
#   scripts/kafka.sh stop    stop the broker this script started there
#   scripts/kafka.sh status  say whether a broker answers there
#   scripts/kafka.sh reset   stop that broker and delete its data (topics, offsets)
#   scripts/kafka.sh libs    fetch the jars if needed and print their folder
#   scripts/kafka.sh pid     print the pid of the broker this script started (tests freeze it)
#
# Environment: KAFKA_BROKERS (first address is used), KAFKA_CONTROLLER_PORT (default
# broker port + 1), KAFKA_RUN_DIR (data, log and pid; default <cache>/kafka-run-<port>),
# KAFKA_START_TIMEOUT (seconds to wait for the broker, default 180),
# USERSHARD_CACHE (default ~/.cache/usershard), JAVA_HOME.
set -euo pipefail

kafka_version=4.1.2
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/kafka"
cache="${USERSHARD_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/usershard}"
home="$cache/kafka-$kafka_version"
libs="$home/libs"

say() { echo "kafka: $*" >&2; }
fail() { echo "kafka: error: $*" >&2; exit 1; }

first="${KAFKA_BROKERS:-localhost:9092}"
first="${first%%,*}"
host="${first%:*}"
port="${first##*:}"
[ "$host" != "$first" ] && [[ "$port" =~ ^[0-9]+$ ]] || fail "KAFKA_BROKERS must be host:port, got '$first'"
controller_port="${KAFKA_CONTROLLER_PORT:-$((port + 1))}"
run="${KAFKA_RUN_DIR:-$cache/kafka-run-$port}"
start_timeout="${KAFKA_START_TIMEOUT:-180}"
[[ "$start_timeout" =~ ^[1-9][0-9]*$ ]] || fail "KAFKA_START_TIMEOUT must be a number of seconds, got '$start_timeout'"
# How long a broker this script did not start may take to answer one probe before it is
# called foreign: a loaded machine (a test suite, a build) can hold an answer up for seconds.
answer_ms=30000
# The broker binds one address; "localhost" could resolve to ::1 for some clients.
bind_host="$host"
[ "$host" = localhost ] && bind_host=127.0.0.1

java_bin() {
  local java="${JAVA_HOME:+$JAVA_HOME/bin/}java"
  command -v "$java" >/dev/null || fail "no Java found (install a JDK 17+, e.g. apt install openjdk-17-jdk-headless, or set JAVA_HOME)"
  local major
  major="$("$java" -XshowSettings:properties -version 2>&1 | sed -n 's/^ *java.specification.version = //p')"
  [ "${major:-0}" -ge 17 ] 2>/dev/null || fail "Kafka $kafka_version needs Java 17 or newer; $java is Java ${major:-unknown}"
  echo "$java"
}

fetch_libs() {
  [ -f "$libs/.complete" ] && return 0
  command -v mvn >/dev/null || fail "no mvn found: Maven fetches the Kafka jars (apt install maven)"
  say "fetching Apache Kafka $kafka_version from Maven Central into $libs"
  rm -rf "$libs"
  mkdir -p "$libs"
  if ! mvn -q -B -f "$here/pom.xml" dependency:copy-dependencies \
      -DincludeScope=runtime -DoutputDirectory="$libs" >"$home/mvn.log" 2>&1; then
    fail "mvn could not fetch the Kafka jars (see $home/mvn.log): $(grep -m1 -E 'ERROR' "$home/mvn.log" || tail -n1 "$home/mvn.log")"
  fi
  touch "$libs/.complete"
}

probe_class() {
  local java="$1" out="$home/probe"
  if [ ! -f "$out/KafkaProbe.class" ] || [ "$here/KafkaProbe.java" -nt "$out/KafkaProbe.class" ]; then
    mkdir -p "$out"
    "${java%java}javac" -d "$out" -cp "$libs/*" "$here/KafkaProbe.java" >&2 || fail "could not compile the broker probe (is a full JDK installed, with javac?)"
  fi
  echo "$out"
}

# Asks for cluster metadata: the only proof that a Kafka broker, not just something, listens.
probe() {
  local java="$1" timeout_ms="$2"
  "$java" -Dusershard.log.level=ERROR -Dlog4j2.configurationFile="$here/log4j2.yaml" \
    -cp "$(probe_class "$java"):$libs/*" KafkaProbe "$host:$port" "$timeout_ms"
}

port_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

# The pid file may outlive its process (a reboot, a copied cache folder), and the number may
# since belong to another program: only a JVM running this folder's configuration counts.
running_pid() {
  local pid
  pid="$(cat "$run/pid" 2>/dev/null)" || return 1
  { tr '\0' ' ' <"/proc/$pid/cmdline"; } 2>/dev/null | grep -qF "kafka.Kafka $run/server.properties" && echo "$pid"
}

# What the broker last logged, for a failure message that explains itself.
log_tail() {
  echo "kafka: last lines of $run/broker.log:" >&2
  tail -n 25 "$run/broker.log" 2>/dev/null | sed 's/^/kafka:   /' >&2
}

start() {
  local java
  java="$(java_bin)"
  fetch_libs
  local pid limit info
  if port_open "$host" "$port"; then
    # A broker this script started is never foreign: one slow to answer (a loaded machine, a long
    # GC pause) gets a short first look, then the wait below, which fails only if it dies or
    # misses the deadline. Anything else gets time enough to answer before it is called foreign.
    if pid="$(running_pid)"; then limit=5000; else limit=$answer_ms; fi
    if info="$(probe "$java" "$limit" 2>/dev/null)"; then
      say "a broker already answers at $host:$port ($info)"
      echo "$host:$port"
      return 0
    fi
    [ -n "$pid" ] ||
      fail "port $port on $host is taken by something that is not a Kafka broker (no Kafka answer within $((answer_ms / 1000)) s)"
    say "broker (pid $pid) started by this script listens but does not answer yet; waiting for it"
  elif pid="$(running_pid)"; then
    say "broker (pid $pid) is starting; waiting for it"
  else
    port_open "$bind_host" "$controller_port" && fail "controller port $controller_port is taken (set KAFKA_CONTROLLER_PORT to a free port)"
    mkdir -p "$run/data"
    sed -e "s|@HOST@|$bind_host|g" -e "s|@PORT@|$port|g" -e "s|@CONTROLLER_PORT@|$controller_port|g" \
      -e "s|@DATA@|$run/data|g" "$here/server.properties" >"$run/server.properties"
    if [ ! -f "$run/data/meta.properties" ]; then
      "$java" -Dusershard.log.level=WARN -Dlog4j2.configurationFile="$here/log4j2.yaml" -cp "$libs/*" \
        kafka.tools.StorageTool format --cluster-id "$(cluster_id "$java")" --config "$run/server.properties" \
        >"$run/format.log" 2>&1 || fail "could not format KRaft storage in $run/data (see $run/format.log)"
    fi
    # Every topic ever created is loaded at start-up: thousands of partitions take minutes.
    local partitions
    partitions="$(find "$run/data" -mindepth 1 -maxdepth 1 -type d -name '*-[0-9]*' ! -name '*-delete' 2>/dev/null | wc -l)"
    [ "$partitions" -gt 1000 ] &&
      say "$run/data holds $partitions partitions, which slows start-up; 'scripts/kafka.sh reset' deletes them"
    say "starting Apache Kafka $kafka_version at $host:$port (controller $controller_port, log $run/broker.log)"
    # setsid: the broker outlives this script and the terminal it came from.
    setsid "$java" -Xms256m -Xmx1g -XX:+UseG1GC -Djava.awt.headless=true \
      -Dlog4j2.configurationFile="$here/log4j2.yaml" -cp "$libs/*" \
      kafka.Kafka "$run/server.properties" >"$run/broker.log" 2>&1 </dev/null &
    echo $! >"$run/pid"
  fi
  local deadline=$((SECONDS + start_timeout))
  # Short probes in a loop, so a broker that dies is reported at once rather than at the deadline.
  until info="$(probe "$java" 10000 2>&1)"; do
    if ! running_pid >/dev/null; then
      log_tail
      fail "the broker exited during start-up: $(grep -m1 -E 'ERROR|Exception' "$run/broker.log" || tail -n1 "$run/broker.log")"
    fi
    if ((SECONDS >= deadline)); then
      log_tail
      fail "the broker did not answer at $host:$port within $start_timeout s ($info; see $run/broker.log)"
    fi
  done
  say "broker ready at $host:$port ($info)"
  echo "$host:$port"
}

cluster_id() {
  "$1" -Dusershard.log.level=ERROR -Dlog4j2.configurationFile="$here/log4j2.yaml" -cp "$libs/*" kafka.tools.StorageTool random-uuid
}

stop() {
  local pid
  if ! pid="$(running_pid)"; then
    say "no broker started by this script runs at port $port"
    return 0
  fi
  say "stopping the broker at $host:$port (pid $pid)"
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 1 60); do
    kill -0 "$pid" 2>/dev/null || { rm -f "$run/pid"; say "stopped"; return 0; }
    sleep 0.5
  done
  say "the broker did not stop within 30 s; killing it"
  kill -9 "$pid" 2>/dev/null || true
  rm -f "$run/pid"
}

reset() {
  stop
  [ -d "$run" ] || { say "no broker data in $run"; return 0; }
  if [ ! -f "$run/server.properties" ] && [ -n "$(ls -A "$run")" ]; then
    fail "$run is not a broker folder of this script (no server.properties); not deleting it"
  fi
  port_open "$bind_host" "$port" && fail "a broker still answers at $host:$port; stop it before deleting $run"
  rm -rf "$run"
  say "deleted $run"
}

status() {
  local java info
  java="$(java_bin)"
  port_open "$host" "$port" || { say "nothing listens at $host:$port"; return 1; }
  fetch_libs
  info="$(probe "$java" "$answer_ms" 2>&1)" || { say "$host:$port does not answer as a Kafka broker: $info"; return 1; }
  say "a broker answers at $host:$port ($info)"
}

case "${1:-start}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  reset) reset ;;
  help | -h | --help) sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}" ;;
  libs) java_bin >/dev/null; fetch_libs; echo "$libs" ;;
  pid) running_pid || fail "no broker started by this script runs at port $port" ;;
  *) fail "unknown command '$1' (expected start, stop, reset, status, libs, pid or help)" ;;
esac
