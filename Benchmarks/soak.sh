#!/usr/bin/env bash
# make soak: the heavy versions of the reliability tests.
#  1. publishes and inclusion-proof reads together against one server for SOAK_SECONDS (default 300),
#     then an audit of the result: zero errors, zero lost entries, RSS at start and end, tail latencies;
#  2. the SIGKILL crash test with SOAK_CRASH_ROUNDS rounds (default 50), and the PostgreSQL one (three
#     servers on one database, one killed per round) with SOAK_PG_CRASH_ROUNDS rounds (default 40);
#  3. the power-cut test with SOAK_POWER_CUT_ROUNDS cut points (default 100);
#  4. the hostile-input test with SOAK_FUZZ_REQUESTS requests (default 20000).
# Errors and losses are counted from what wrk and the final tree say, and any of either fails it.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.build/release
SECS=${SOAK_SECONDS:-300}
WORK=${SOAK_DIR:-/tmp/keyglass-soak}
rm -rf "$WORK"; mkdir -p "$WORK"
"$BIN/keyglass-server" init --data "$WORK/data" --origin soak.keyglass/log > /dev/null
"$BIN/keyglass-server" serve --data "$WORK/data" --port 18090 --log-level warning > "$WORK/server.log" 2>&1 &
PID=$!
trap 'kill -TERM $PID 2>/dev/null || true' EXIT
for _ in $(seq 1 200); do curl -sf http://127.0.0.1:18090/healthz >/dev/null && break; sleep 0.05; done
RSS0=$(awk '/VmRSS/{printf "%d", $2/1024}' /proc/$PID/status)
echo "== soak: ${SECS}s of publishes (64 connections) and proof reads (32 connections) together; RSS at start ${RSS0} MB"
wrk -t1 -c64 -d"${SECS}s" --latency -s Benchmarks/wrk/publish.lua http://127.0.0.1:18090 -- "$(cat "$WORK/data/publish-token")" > "$WORK/publish.wrk" 2>&1 &
W1=$!
sleep 5
SIZE=$(curl -s http://127.0.0.1:18090/v1/log | python3 -c 'import json,sys; print(json.load(sys.stdin)["tree_size"])')
wrk -t1 -c32 -d"$((SECS - 5))s" --latency -s Benchmarks/wrk/inclusion.lua http://127.0.0.1:18090 -- "$SIZE" > "$WORK/proofs.wrk" 2>&1 &
W2=$!
wait $W1 $W2
RSS1=$(awk '/VmRSS/{printf "%d", $2/1024}' /proc/$PID/status)
for f in publish proofs; do
  echo "-- $f"; grep -E "requests in|Requests/sec|Non-2xx|Socket errors|50%|99%" "$WORK/$f.wrk" || true
done
# Errors: wrk's non-2xx answers and socket errors (each counted, not each line), in both runs.
count() {  # count FILE: non-2xx answers + connect/read/write/timeout socket errors
  awk '/Non-2xx or 3xx responses:/ {n += $NF}
       /Socket errors:/ {for (i = 1; i <= NF; i++) if ($i ~ /^[0-9]+,?$/) {gsub(",", "", $i); n += $i}}
       END {print n + 0}' "$1"
}
ERR=$(( $(count "$WORK/publish.wrk") + $(count "$WORK/proofs.wrk") ))
# Losses: every publish wrk saw succeed is an entry; the tree may hold a few more (requests in
# flight when wrk stopped), never fewer.
DONE=$(awk '/requests in/ {print $1}' "$WORK/publish.wrk")
NON2XX=$(awk '/Non-2xx or 3xx responses:/ {print $NF}' "$WORK/publish.wrk"); NON2XX=${NON2XX:-0}
OK=$((DONE - NON2XX))
"$BIN/keyglass" audit --log http://127.0.0.1:18090 --vkey "$WORK/data/verifier-key" --state "$WORK/audit" > "$WORK/audit.txt" || true
echo "-- audit: $(cat "$WORK/audit.txt")"
TREE=$(curl -s http://127.0.0.1:18090/v1/log | python3 -c 'import json,sys; print(json.load(sys.stdin)["tree_size"])')
LOST=0; [ "$TREE" -ge "$OK" ] || LOST=$((OK - TREE))
echo "== RSS start ${RSS0} MB, end ${RSS1} MB; error answers: $ERR; publishes acknowledged: $OK, tree size: $TREE, lost: $LOST"
grep -q '^ok:' "$WORK/audit.txt" || { echo "the audit of the soaked log did not pass"; exit 1; }
kill -TERM $PID; wait $PID || true
"$BIN/keyglass-server" check --data "$WORK/data"

echo "== crash rounds and hostile input (debug test build)"
swift build --build-tests
KEYGLASS_CRASH_ROUNDS=${SOAK_CRASH_ROUNDS:-50} KEYGLASS_PG_CRASH_ROUNDS=${SOAK_PG_CRASH_ROUNDS:-40} KEYGLASS_FUZZ_REQUESTS=${SOAK_FUZZ_REQUESTS:-20000} \
  KEYGLASS_POWER_CUT_ROUNDS=${SOAK_POWER_CUT_ROUNDS:-100} \
  swift test --skip-build --filter 'CrashSafetyTests|DirectoryCrashTests|HostileInputTests|PowerCutTests|PostgresLogTests/testSIGKILL' > "$WORK/tests.log" 2>&1 || true
grep -E "crash safety|directory crash|postgres crash|auditor:|hostile input|power cut|Executed|error:" "$WORK/tests.log" || true
grep -qE "Executed [0-9]+ tests, with 0 failures" "$WORK/tests.log" && ! grep -qE "with [1-9][0-9]* failures?" "$WORK/tests.log" \
  || { echo "soak tests failed"; exit 1; }
[ "$ERR" = 0 ] || { echo "soak saw $ERR error answers"; exit 1; }
[ "$LOST" = 0 ] || { echo "soak lost $LOST acknowledged publishes"; exit 1; }
