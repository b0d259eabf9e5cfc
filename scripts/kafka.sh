#!/usr/bin/env bash
# Real Apache Kafka brokers (KRaft, each broker also a controller) for development and tests,
# without Docker: the jars come from Maven Central. One address in KAFKA_BROKERS is one broker;
# several are a cluster of that many, each a voter of the controller quorum, with the replication
# a production cluster has (replication factor 3 by default, min.insync.replicas 2).
#
#   scripts/kafka.sh start       make sure every broker of KAFKA_BROKERS answers (default localhost:9092)
#   scripts/kafka.sh stop        stop the brokers this script started there
#   scripts/kafka.sh status      say whether they answer
#   scripts/kafka.sh reset       stop them and delete their data (topics, offsets)
#   scripts/kafka.sh libs        fetch the jars if needed and print their folder
#   scripts/kafka.sh pid [N]     print the pid of broker N (default 1) this script started (tests freeze it)
#   scripts/kafka.sh stop-broker N   stop broker N alone (a rolling restart; `start` brings it back)
#   scripts/kafka.sh acls ARGS   Kafka's kafka-acls.sh with ARGS, on the first broker's plaintext listener
#   scripts/kafka.sh configs ARGS    Kafka's kafka-configs.sh the same way (SCRAM users, say)
#
# Example, a local cluster of three:
#   KAFKA_BROKERS=localhost:29092,localhost:29094,localhost:29096 scripts/kafka.sh start
#
# Environment: KAFKA_BROKERS (host:port,...; each broker's controller listens on its port + 1),
# KAFKA_SECURED=1 (one broker only: SASL_SSL on its port + 2, SASL_PLAINTEXT on its port + 3, see
# secure() below), KAFKA_CONTROLLER_PORT (one broker only: its controller port), KAFKA_RUN_DIR (data, logs and pids;
# default <cache>/kafka-run-<first port>, one folder per broker in a cluster), KAFKA_START_TIMEOUT
# (seconds to wait for the brokers, default 180), USERSHARD_CACHE (default ~/.cache/usershard), JAVA_HOME.
set -euo pipefail

kafka_version=4.1.2
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/kafka"
cache="${USERSHARD_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/usershard}"
home="$cache/kafka-$kafka_version"
libs="$home/libs"

say() { echo "kafka: $*" >&2; }
fail() { echo "kafka: error: $*" >&2; exit 1; }

bootstrap="${KAFKA_BROKERS:-localhost:9092}"
IFS=, read -r -a addresses <<<"$bootstrap"
count=${#addresses[@]}
for address in "${addresses[@]}"; do
  [[ "$address" =~ ^[^:]+:[0-9]+$ ]] || fail "KAFKA_BROKERS must be host:port,..., got '$address'"
done
first_port="${addresses[0]##*:}"
run="${KAFKA_RUN_DIR:-$cache/kafka-run-$first_port}"
start_timeout="${KAFKA_START_TIMEOUT:-180}"
[[ "$start_timeout" =~ ^[1-9][0-9]*$ ]] || fail "KAFKA_START_TIMEOUT must be a number of seconds, got '$start_timeout'"
# How long a broker this script did not start may take to answer one probe before it is
# called foreign: a loaded machine (a test suite, a build) can hold an answer up for seconds.
answer_ms=30000
# A cluster keeps three copies where it can, and takes a write once two have it: one broker may fail.
if [ "$count" -ge 3 ]; then replicas=3; min_isr=2; else replicas=$count; min_isr=1; fi

# Broker N (1-based): its address, the address it binds ("localhost" could resolve to ::1 for some
# clients), its controller port and its folder.
host_of() { local a="${addresses[$(($1 - 1))]}"; echo "${a%:*}"; }
port_of() { local a="${addresses[$(($1 - 1))]}"; echo "${a##*:}"; }
bind_of() { local h; h="$(host_of "$1")"; [ "$h" = localhost ] && echo 127.0.0.1 || echo "$h"; }
controller_of() {
  if [ "$count" -eq 1 ] && [ -n "${KAFKA_CONTROLLER_PORT:-}" ]; then echo "$KAFKA_CONTROLLER_PORT"; else echo $(($(port_of "$1") + 1)); fi
}
dir_of() { if [ "$count" -eq 1 ]; then echo "$run"; else echo "$run/broker-$1"; fi; }

java_bin() {
  local java="${JAVA_HOME:+$JAVA_HOME/bin/}java"
  command -v "$java" >/dev/null || fail "no Java found (install a JDK 17+, e.g. apt install openjdk-17-jdk-headless, or set JAVA_HOME)"
  local major
  major="$("$java" -XshowSettings:properties -version 2>&1 | sed -n 's/^ *java.specification.version = //p')"
  [ "${major:-0}" -ge 17 ] 2>/dev/null || fail "Kafka $kafka_version needs Java 17 or newer; $java is Java ${major:-unknown}"
  echo "$java"
}

fetch_libs() {
  # The marker holds the pom's checksum: a pom that asks for more jars fetches them again.
  local wanted
  wanted="$(cksum <"$here/pom.xml")"
  [ "$(cat "$libs/.complete" 2>/dev/null)" = "$wanted" ] && return 0
  command -v mvn >/dev/null || fail "no mvn found: Maven fetches the Kafka jars (apt install maven)"
  say "fetching Apache Kafka $kafka_version from Maven Central into $libs"
  # Added to, not emptied: a broker already running reads its jars from here.
  mkdir -p "$libs"
  if ! mvn -q -B -f "$here/pom.xml" dependency:copy-dependencies \
      -DincludeScope=runtime -DoutputDirectory="$libs" >"$home/mvn.log" 2>&1; then
    fail "mvn could not fetch the Kafka jars (see $home/mvn.log): $(grep -m1 -E 'ERROR' "$home/mvn.log" || tail -n1 "$home/mvn.log")"
  fi
  echo "$wanted" >"$libs/.complete"
}

probe_class() {
  local java="$1" out="$home/probe"
  if [ ! -f "$out/KafkaProbe.class" ] || [ "$here/KafkaProbe.java" -nt "$out/KafkaProbe.class" ]; then
    mkdir -p "$out"
    "${java%java}javac" -d "$out" -cp "$libs/*" "$here/KafkaProbe.java" >&2 || fail "could not compile the broker probe (is a full JDK installed, with javac?)"
  fi
  echo "$out"
}

# Asks for cluster metadata: the only proof that Kafka, not just something, listens. Prints
# "cluster <id>, <n> broker(s)".
probe() {
  local java="$1" timeout_ms="$2" servers="${3:-$bootstrap}"
  "$java" -Dusershard.log.level=ERROR -Dlog4j2.configurationFile="$here/log4j2.yaml" \
    -cp "$(probe_class "$java"):$libs/*" KafkaProbe "$servers" "$timeout_ms"
}

port_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

# Whether every broker takes connections: a broker counts in the metadata as soon as it has
# registered, seconds before its own listener opens while it loads its partitions.
all_listening() {
  local i
  for ((i = 1; i <= count; i++)); do port_open "$(host_of "$i")" "$(port_of "$i")" || return 1; done
}

# The pid file may outlive its process (a reboot, a copied cache folder), and the number may
# since belong to another program: only a JVM running this broker's configuration counts.
running_pid() {
  local dir pid
  dir="$(dir_of "$1")"
  pid="$(cat "$dir/pid" 2>/dev/null)" || return 1
  { tr '\0' ' ' <"/proc/$pid/cmdline"; } 2>/dev/null | grep -qF "kafka.Kafka $dir/server.properties" && echo "$pid"
}

# What broker N last logged, for a failure message that explains itself.
log_tail() {
  local dir
  dir="$(dir_of "$1")"
  echo "kafka: last lines of $dir/broker.log:" >&2
  tail -n 25 "$dir/broker.log" 2>/dev/null | sed 's/^/kafka:   /' >&2
}

voters() {
  local i list=()
  for ((i = 1; i <= count; i++)); do list+=("$i@$(bind_of "$i"):$(controller_of "$i")"); done
  (IFS=,; echo "${list[*]}")
}

sasl_user=usershard

# KAFKA_SECURED=1 (one broker): two more listeners, SASL_SSL on the port + 2 and SASL_PLAINTEXT on
# the port + 3, taking PLAIN and SCRAM-SHA-256/512 for the user "usershard", and OAUTHBEARER with
# Kafka's unsecured (unsigned) tokens, for development only, whose `sub` claim is the principal. ACLs are enforced
# (StandardAuthorizer): `start` allows the user everything on every topic, group and transactional
# id, and IdempotentWrite on the cluster (not Create: a topic's own ACLs then decide), and `acls`
# changes that; the plaintext and controller listeners
# (User:ANONYMOUS) are super users. A CA and a certificate
# for the broker's host name (and no other name) are made with openssl, and a random password,
# once, in <run dir>/tls; <run dir>/client.properties holds what a client needs, in Java's form.
secure() {
  local dir="$1" host="$2" bind="$3" port="$4" tls="$1/tls" password
  [ "$count" -eq 1 ] || fail "KAFKA_SECURED starts one broker; KAFKA_BROKERS names $count"
  command -v openssl >/dev/null || fail "KAFKA_SECURED needs openssl (apt install openssl)"
  mkdir -p "$tls"
  chmod 700 "$tls"
  if [ ! -f "$tls/broker.pem" ]; then
    openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=usershard test CA" \
      -keyout "$tls/ca.key" -out "$tls/ca.pem" 2>/dev/null || fail "openssl could not make the test CA"
    openssl req -newkey rsa:2048 -nodes -subj "/CN=$host" -keyout "$tls/broker.key" -out "$tls/broker.csr" \
      2>/dev/null || fail "openssl could not make the broker's key"
    printf 'subjectAltName=DNS:%s\n' "$host" >"$tls/san.ext"
    openssl x509 -req -in "$tls/broker.csr" -CA "$tls/ca.pem" -CAkey "$tls/ca.key" -CAcreateserial -days 3650 \
      -extfile "$tls/san.ext" -out "$tls/broker.crt" 2>/dev/null || fail "openssl could not sign the broker's certificate"
    openssl pkcs8 -topk8 -nocrypt -in "$tls/broker.key" -out "$tls/broker.pk8"
    cat "$tls/broker.pk8" "$tls/broker.crt" >"$tls/broker.pem"
    (umask 077 && openssl rand -hex 16 >"$tls/password")
  fi
  password="$(cat "$tls/password")"
  local plain="org.apache.kafka.common.security.plain.PlainLoginModule required user_$sasl_user=\"$password\";"
  local scram="org.apache.kafka.common.security.scram.ScramLoginModule required;"
  local oauth="org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required;"
  cat >>"$dir/server.properties" <<EOF_SECURED
listeners=PLAINTEXT://$bind:$port,CONTROLLER://$bind:$(controller_of 1),SASL_SSL://$bind:$((port + 2)),SASL_PLAINTEXT://$bind:$((port + 3))
advertised.listeners=PLAINTEXT://$host:$port,SASL_SSL://$host:$((port + 2)),SASL_PLAINTEXT://$host:$((port + 3))
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,SASL_SSL:SASL_SSL,SASL_PLAINTEXT:SASL_PLAINTEXT
sasl.enabled.mechanisms=PLAIN,SCRAM-SHA-256,SCRAM-SHA-512,OAUTHBEARER
ssl.keystore.type=PEM
ssl.keystore.location=$tls/broker.pem
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
super.users=User:ANONYMOUS
EOF_SECURED
  local listener mechanism
  for listener in sasl_ssl sasl_plaintext; do
    echo "listener.name.$listener.plain.sasl.jaas.config=$plain" >>"$dir/server.properties"
    echo "listener.name.$listener.oauthbearer.sasl.jaas.config=$oauth" >>"$dir/server.properties"
    for mechanism in scram-sha-256 scram-sha-512; do
      echo "listener.name.$listener.$mechanism.sasl.jaas.config=$scram" >>"$dir/server.properties"
    done
  done
  cat >"$dir/client.properties" <<EOF_CLIENT
# usershard ... --brokers $host:$((port + 2)) --kafka-config $dir/client.properties
security.protocol=SASL_SSL
sasl.mechanism=SCRAM-SHA-512
sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="$sasl_user" password="$password";
ssl.truststore.type=PEM
ssl.truststore.location=$tls/ca.pem
EOF_CLIENT
  chmod 600 "$dir/client.properties"
}

# Starts broker N unless it runs; formats its storage first if it has none.
launch() {
  local java="$1" i="$2" dir bind port cport
  dir="$(dir_of "$i")"; bind="$(bind_of "$i")"; port="$(port_of "$i")"; cport="$(controller_of "$i")"
  if pid="$(running_pid "$i")"; then return 0; fi
  port_open "$bind" "$port" && fail "port $port on $bind is taken by something that is not broker $i of this script"
  port_open "$bind" "$cport" && fail "controller port $cport is taken (set KAFKA_CONTROLLER_PORT, or other ports in KAFKA_BROKERS)"
  mkdir -p "$dir/data"
  sed -e "s|@HOST@|$bind|g" -e "s|@PORT@|$port|g" -e "s|@CONTROLLER_PORT@|$cport|g" -e "s|@DATA@|$dir/data|g" \
    -e "s|@NODE_ID@|$i|g" -e "s|@VOTERS@|$(voters)|g" -e "s|@REPLICAS@|$replicas|g" -e "s|@MIN_ISR@|$min_isr|g" \
    "$here/server.properties" >"$dir/server.properties"
  local scram=()
  if [ -n "${KAFKA_SECURED:-}" ]; then
    secure "$dir" "$(host_of "$i")" "$bind" "$port"
    scram=(--add-scram "SCRAM-SHA-256=[name=$sasl_user,password=$(cat "$dir/tls/password")]"
      --add-scram "SCRAM-SHA-512=[name=$sasl_user,password=$(cat "$dir/tls/password")]")
  fi
  if [ ! -f "$dir/data/meta.properties" ]; then
    "$java" -Dusershard.log.level=WARN -Dlog4j2.configurationFile="$here/log4j2.yaml" -cp "$libs/*" \
      kafka.tools.StorageTool format --cluster-id "$cluster_id" --config "$dir/server.properties" "${scram[@]}" \
      >"$dir/format.log" 2>&1 || fail "could not format KRaft storage in $dir/data (see $dir/format.log)"
  fi
  # Every topic ever created is loaded at start-up: thousands of partitions take minutes.
  local partitions
  partitions="$(find "$dir/data" -mindepth 1 -maxdepth 1 -type d -name '*-[0-9]*' ! -name '*-delete' 2>/dev/null | wc -l)"
  [ "$partitions" -gt 1000 ] &&
    say "$dir/data holds $partitions partitions, which slows start-up; 'scripts/kafka.sh reset' deletes them"
  say "starting Apache Kafka $kafka_version broker $i at $(host_of "$i"):$port (controller $cport, log $dir/broker.log)"
  # setsid: the broker outlives this script and the terminal it came from.
  setsid "$java" -Xms256m -Xmx1g -XX:+UseG1GC -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$here/log4j2.yaml" -cp "$libs/*" \
    kafka.Kafka "$dir/server.properties" >"$dir/broker.log" 2>&1 </dev/null &
  echo $! >"$dir/pid"
}

# The cluster id the brokers were formatted with, or a new one.
known_cluster_id() {
  local i id
  for ((i = 1; i <= count; i++)); do
    id="$(sed -n 's/^cluster.id=//p' "$(dir_of "$i")/data/meta.properties" 2>/dev/null)"
    [ -n "$id" ] && { echo "$id"; return 0; }
  done
  "$1" -Dusershard.log.level=ERROR -Dlog4j2.configurationFile="$here/log4j2.yaml" -cp "$libs/*" kafka.tools.StorageTool random-uuid
}

start() {
  local java info i limit mine=0
  java="$(java_bin)"
  fetch_libs
  for ((i = 1; i <= count; i++)); do running_pid "$i" >/dev/null && mine=$((mine + 1)); done
  if port_open "$(host_of 1)" "$(port_of 1)"; then
    # Brokers this script started are never foreign: one slow to answer (a loaded machine, a long
    # GC pause) gets a short first look, then the wait below. Anything else gets time enough to
    # answer before it is called foreign.
    if [ "$mine" -gt 0 ]; then limit=5000; else limit=$answer_ms; fi
    if info="$(probe "$java" "$limit" 2>/dev/null)" && [[ "$info" == *", $count broker(s)" ]] && all_listening; then
      say "a broker already answers at $bootstrap ($info)"
      grant_secured_user
      echo "$bootstrap"
      return 0
    fi
    [ "$mine" -gt 0 ] || [ "$count" -gt 1 ] ||
      fail "port $(port_of 1) on $(host_of 1) is taken by something that is not a Kafka broker (no Kafka answer within $((answer_ms / 1000)) s)"
  fi
  cluster_id="$(known_cluster_id "$java")"
  for ((i = 1; i <= count; i++)); do launch "$java" "$i"; done
  local deadline=$((SECONDS + start_timeout))
  # Short probes in a loop, so a broker that dies is reported at once rather than at the deadline.
  while true; do
    if info="$(probe "$java" 10000 2>&1)" && [[ "$info" == *", $count broker(s)" ]] && all_listening; then break; fi
    for ((i = 1; i <= count; i++)); do
      if ! running_pid "$i" >/dev/null; then
        log_tail "$i"
        fail "broker $i exited during start-up: $(grep -m1 -E 'ERROR|Exception' "$(dir_of "$i")/broker.log" || tail -n1 "$(dir_of "$i")/broker.log")"
      fi
    done
    if ((SECONDS >= deadline)); then
      log_tail 1
      fail "$count broker(s) did not answer at $bootstrap within $start_timeout s ($info; see $(dir_of 1)/broker.log)"
    fi
  done
  say "broker ready at $bootstrap ($info)"
  grant_secured_user
  echo "$bootstrap"
}

# Stops broker N the way an operator does (SIGTERM, a controlled shutdown), killing it after 30 s.
stop_one() {
  local i="$1" pid
  pid="$(running_pid "$i")" || return 0
  say "stopping broker $i at $(host_of "$i"):$(port_of "$i") (pid $pid)"
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 1 60); do
    kill -0 "$pid" 2>/dev/null || { rm -f "$(dir_of "$i")/pid"; return 0; }
    sleep 0.5
  done
  say "broker $i did not stop within 30 s; killing it"
  kill -9 "$pid" 2>/dev/null || true
  rm -f "$(dir_of "$i")/pid"
}

stop() {
  local i any=0
  for ((i = count; i >= 1; i--)); do
    running_pid "$i" >/dev/null && any=1
    stop_one "$i"
  done
  if [ "$any" -eq 1 ]; then say "stopped"; else say "no broker started by this script runs at $bootstrap"; fi
}

broker_index() {
  local i="${1:-1}"
  [[ "$i" =~ ^[0-9]+$ ]] && [ "$i" -ge 1 ] && [ "$i" -le "$count" ] || fail "broker number must be 1..$count, got '$i'"
  echo "$i"
}

reset() {
  stop
  [ -d "$run" ] || { say "no broker data in $run"; return 0; }
  if [ ! -f "$(dir_of 1)/server.properties" ] && [ -n "$(ls -A "$run")" ]; then
    fail "$run is not a broker folder of this script (no server.properties); not deleting it"
  fi
  local i tries
  for ((i = 1; i <= count; i++)); do
    # A broker that has just exited may hold its port for a moment longer.
    for ((tries = 0; tries < 20; tries++)); do port_open "$(bind_of "$i")" "$(port_of "$i")" || break; sleep 0.5; done
    port_open "$(bind_of "$i")" "$(port_of "$i")" && fail "a broker still answers at $(host_of "$i"):$(port_of "$i"); stop it before deleting $run"
  done
  rm -rf "$run"
  say "deleted $run"
}

status() {
  local java info
  java="$(java_bin)"
  port_open "$(host_of 1)" "$(port_of 1)" || { say "nothing listens at $(host_of 1):$(port_of 1)"; return 1; }
  fetch_libs
  info="$(probe "$java" "$answer_ms" 2>&1)" || { say "$bootstrap does not answer as Kafka: $info"; return 1; }
  say "a broker answers at $bootstrap ($info)"
}

# One of Kafka's own command-line tools (kafka-acls.sh is AclCommand, kafka-configs.sh ConfigCommand)
# against the first broker's plaintext listener.
tool() {
  local java class="$1"
  shift
  java="$(java_bin)"
  fetch_libs
  "$java" -Dusershard.log.level=WARN -Dlog4j2.configurationFile="$here/log4j2.yaml" -cp "$libs/*" \
    "$class" --bootstrap-server "$(host_of 1):$(port_of 1)" "$@"
}
acls() { tool org.apache.kafka.tools.AclCommand "$@"; }

# A secured broker's user may do what usershard does, as a real deployment's ACLs would allow.
grant_secured_user() {
  [ -n "${KAFKA_SECURED:-}" ] || return 0
  { acls --add --allow-principal "User:$sasl_user" --operation All --topic '*' --group '*' --transactional-id '*' &&
    acls --add --allow-principal "User:$sasl_user" --operation IdempotentWrite --cluster; } >/dev/null ||
    fail "could not give User:$sasl_user its ACLs (kafka-acls)"
}

case "${1:-start}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  reset) reset ;;
  help | -h | --help) sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}" ;;
  libs) java_bin >/dev/null; fetch_libs; echo "$libs" ;;
  pid) i="$(broker_index "${2:-1}")"; running_pid "$i" || fail "no broker $i started by this script runs at $(host_of "$i"):$(port_of "$i")" ;;
  stop-broker) stop_one "$(broker_index "${2:-}")" ;;
  acls) shift; acls "$@" ;;
  configs) shift; tool kafka.admin.ConfigCommand "$@" ;;
  *) fail "unknown command '$1' (expected start, stop, reset, status, libs, pid, stop-broker, acls, configs or help)" ;;
esac
