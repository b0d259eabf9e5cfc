#!/usr/bin/env bash
# Fetches Kafka Streams and its client from Maven Central (once) and compiles the benchmark's JVM
# contenders; prints the classpath to run them with. Needs a JDK and mvn, as scripts/kafka.sh does.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
home="${XDG_CACHE_HOME:-$HOME/.cache}/usershard/bench-jvm"
libs="$home/libs"
classes="$home/classes"
fail() { echo "bench-jvm: $*" >&2; exit 1; }
command -v javac >/dev/null || fail "no javac found (install a JDK 17+)"
if [ ! -f "$libs/.complete" ] || [ "$here/pom.xml" -nt "$libs/.complete" ]; then
  command -v mvn >/dev/null || fail "no mvn found (apt install maven)"
  rm -rf "$libs" && mkdir -p "$libs"
  mvn -q -B -f "$here/pom.xml" dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$libs" \
    >"$home/mvn.log" 2>&1 || fail "mvn could not fetch Kafka Streams (see $home/mvn.log)"
  touch "$libs/.complete"
fi
if [ ! -f "$classes/.complete" ] || [ "$libs/.complete" -nt "$classes/.complete" ] ||
  [ -n "$(find "$here" -name '*.java' -newer "$classes/.complete")" ]; then
  rm -rf "$classes" && mkdir -p "$classes"
  javac -d "$classes" -cp "$libs/*" "$here"/*.java >&2 || fail "could not compile $here/*.java"
  touch "$classes/.complete"
fi
echo "$classes:$libs/*"
