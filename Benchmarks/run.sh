#!/usr/bin/env bash
# make bench: measures Keyglass against this machine's limits and Go's tlog, all in one run, and
# prints one table. Needs a release build (make bench does it), wrk, Go and golang.org/x/mod.
#
#   BENCH_SIZES="10000 1000000 10000000"  tree sizes for the scale rows (the 1M row is also the
#                                         proof-read and audit size)
#   BENCH_SECONDS=10                       length of each wrk run
#   BENCH_DIR=/tmp/keyglass-bench          scratch space (a 10M log takes a few GB)
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.build/release
WORK=${BENCH_DIR:-/tmp/keyglass-bench}
SIZES=${BENCH_SIZES:-"10000 1000000 10000000"}
SECS=${BENCH_SECONDS:-10}
AUDIT_SIZE=1000000
rm -rf "$WORK"; mkdir -p "$WORK"
ROWS=()
row() { ROWS+=("$1|$2|$3|$4|$5|$6"); }   # measure|keyglass|reference|ratio|target|met

PID=""
stop_server() { if [ -n "$PID" ]; then kill -TERM "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; PID=""; fi; }
trap stop_server EXIT
start_server() {  # DIR PORT [SYNC]
  "$BIN/keyglass-server" serve --data "$1" --port "$2" --sync "${3:-FULL}" --log-level warning > "$1/server.log" 2>&1 &
  PID=$!
  for _ in $(seq 1 200); do curl -sf "http://127.0.0.1:$2/healthz" >/dev/null && return 0; sleep 0.05; done
  echo "server did not start"; cat "$1/server.log"; exit 1
}
rss_mb() { awk '/VmRSS/{printf "%d", $2/1024}' "/proc/$1/status"; }
# wrk latency line ("99%  12.34ms") → milliseconds
lat_ms() { awk -v p="$1%" '$1==p { v=$2; u=v; gsub(/[0-9.]/,"",u); gsub(/[a-z]/,"",v); if(u=="us") v/=1000; else if(u=="s") v*=1000; printf "%.2f", v }' "$2"; }
rps() { awk '/Requests\/sec/{printf "%d", $2}' "$1"; }
# Runs wrk three times (output files OUT.1..3) and copies the run with the median rate to OUT: the
# machine's speed drifts by ±10% from minute to minute, and one run can land on either side.
# The wrk scripts' init() is quick on purpose: wrk starts its first thread before it runs the
# second one's init(), and requests sent meanwhile would count in a rate measured from later.
wrk3() {  # OUT wrk-args...
  local out=$1; shift
  for k in 1 2 3; do wrk "$@" > "$out.$k" 2>&1 || true; done
  local best
  best=$(for k in 1 2 3; do echo "$(rps "$out.$k") $k"; done | sort -n | sed -n 2p | awk '{print $2}')
  cp "$out.$best" "$out"
}
errors() { awk '/Non-2xx/{s+=$NF} /Socket errors/{s+=1} END{printf "%d", s+0}' "$1"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN{ if (b>0) printf "%.2f", a/b; else print "-" }'; }
ge() { awk -v a="$1" -v b="$2" 'BEGIN{ exit !(a>=b) }' && echo yes || echo NO; }
le() { awk -v a="$1" -v b="$2" 'BEGIN{ exit !(a<=b) }' && echo yes || echo NO; }
init_log() { "$BIN/keyglass-server" init --data "$1" --origin bench.keyglass/log | tail -1; }

echo "== machine: $(nproc) cores, $(awk '/model name/{$1=$2=$3="";print;exit}' /proc/cpuinfo | sed 's/^ *//'), $(free -g | awk '/Mem/{print $2}') GiB"

echo "== 1. publish throughput (HTTP, sync FULL, wrk -t2 -c128, ${SECS}s, median of 3)"
init_log "$WORK/pub" > "$WORK/pub.vkey"
start_server "$WORK/pub" 18080 FULL
wrk3 "$WORK/pub.wrk" -t2 -c128 -d"${SECS}s" --latency -s Benchmarks/wrk/publish.lua http://127.0.0.1:18080 -- "$(cat "$WORK/pub/publish-token")"
cat "$WORK/pub.wrk"
PUB=$(rps "$WORK/pub.wrk"); P50=$(lat_ms 50 "$WORK/pub.wrk"); P99=$(lat_ms 99 "$WORK/pub.wrk"); PERR=$(errors "$WORK/pub.wrk")
SIZE=$(curl -s http://127.0.0.1:18080/v1/log | python3 -c 'import json,sys; print(json.load(sys.stdin)["tree_size"])')
PUB_RSS=$(rss_mb "$PID")
# The HTTP stack's own ceiling on this machine: a trivial GET, same wrk, same cores; answered on
# the event loop like the proofs, and (for comparison) through Hummingbird's router.
wrk3 "$WORK/health.wrk" -t2 -c128 -d"${SECS}s" http://127.0.0.1:18080/healthz
CEIL=$(rps "$WORK/health.wrk")
wrk3 "$WORK/router.wrk" -t2 -c128 -d"${SECS}s" http://127.0.0.1:18080/v1/keys/nobody@example.test
ROUTER=$(rps "$WORK/router.wrk")
stop_server
REF=$("$BIN/keyglass-bench" sqlite-reference 300000 FULL)
REF_INLINE=$("$BIN/keyglass-bench" sqlite-reference 300000 FULL inline)
row "durable publishes/s (HTTP, $PERR errors, tree $SIZE)" "$PUB" "$REF raw SQLite rows/s (same rows, index merged); $CEIL HTTP ceiling" "$(ratio "$PUB" "$REF")" ">= 20000" "$(ge "$PUB" 20000)"
row "raw SQLite rows/s with the lookup indexes written in every batch (schema 1, for comparison)" "-" "$REF_INLINE" "-" "-" "-"
row "publish integration latency p50 / p99 (ms)" "$P50 / $P99" "-" "-" "p99 <= 250" "$(le "$P99" 250)"
row "server RSS after publish run (MB)" "$PUB_RSS" "-" "-" "-" "-"
row "HTTP ceiling: trivial GET /healthz req/s (event-loop path, wrk -t2 on the same 2 cores)" "$CEIL" "-" "-" "-" "-"
row "the same through Hummingbird's router (GET /v1/keys of an unknown identity: one index lookup, 404)" "$ROUTER" "-" "-" "-" "-"

echo "== 2-4. scale: bulk-load, proof reads, RSS, audit"
PORT=18081
for N in $SIZES; do
  D="$WORK/log-$N"
  init_log "$D" > "$D.vkey"
  T0=$(date +%s.%N)
  "$BIN/keyglass-server" bulk-load --data "$D" --count "$N" --batch 20000 > /dev/null 2> "$D.bulk"
  T1=$(date +%s.%N)
  echo "   bulk-loaded $N entries in $(awk -v a="$T0" -v b="$T1" 'BEGIN{printf "%.1f", b-a}') s"
  start_server "$D" "$PORT" FULL
  RSS0=$(rss_mb "$PID")
  # A short unmeasured run first: the first reads after a start fill SQLite's and the OS's caches.
  wrk -t2 -c64 -d3s -s Benchmarks/wrk/inclusion.lua "http://127.0.0.1:$PORT" -- "$N" > /dev/null 2>&1 || true
  wrk3 "$D.wrk" -t2 -c64 -d"${SECS}s" --latency -s Benchmarks/wrk/inclusion.lua "http://127.0.0.1:$PORT" -- "$N"
  R=$(rps "$D.wrk"); L50=$(lat_ms 50 "$D.wrk"); L99=$(lat_ms 99 "$D.wrk"); RSS=$(rss_mb "$PID")
  echo "   $N: $R proofs/s, p50 $L50 ms, p99 $L99 ms, RSS $RSS0 -> $RSS MB"
  row "inclusion proofs/s at $N entries ($(errors "$D.wrk") errors)" "$R" "$CEIL HTTP ceiling" "$(ratio "$R" "$CEIL")" "$([ "$N" = 1000000 ] && echo '>= 30000' || echo -)" "$([ "$N" = 1000000 ] && ge "$R" 30000 || echo -)"
  row "proof latency p50 / p99 at $N (ms)" "$L50 / $L99" "-" "-" "O(log n)" "-"
  if [ "$N" -ge 1000000 ]; then
    wrk3 "$D.cwrk" -t2 -c64 -d"${SECS}s" --latency -s Benchmarks/wrk/consistency.lua "http://127.0.0.1:$PORT" -- "$N" 20000
    C=$(rps "$D.cwrk"); C50=$(lat_ms 50 "$D.cwrk"); C99=$(lat_ms 99 "$D.cwrk")
    echo "   $N: $C consistency proofs/s, p50 $C50 ms, p99 $C99 ms, $(errors "$D.cwrk") errors"
    row "consistency proofs/s at $N entries ($(errors "$D.cwrk") errors)" "$C" "$CEIL HTTP ceiling" "$(ratio "$C" "$CEIL")" "-" "-"
    row "consistency proof latency p50 / p99 at $N (ms)" "$C50 / $C99" "-" "-" "-" "-"
  fi
  row "server RSS at $N entries (MB)" "$RSS" "-" "-" "<= 100" "$(le "$RSS" 100)"
  if [ "$N" = "$AUDIT_SIZE" ]; then
    # Three audits from an empty state, and three Go runs: the medians.
    RATES=()
    for k in 1 2 3; do
      rm -rf "$WORK/audit-state"
      A0=$(date +%s.%N)
      "$BIN/keyglass" audit --log "http://127.0.0.1:$PORT" --vkey "$D/verifier-key" --state "$WORK/audit-state" --json > "$WORK/audit.json"
      A1=$(date +%s.%N)
      grep -q '"status" : "ok"' "$WORK/audit.json" || { echo "audit failed:"; cat "$WORK/audit.json"; exit 1; }
      RATES+=("$(awk -v n="$N" -v a="$A0" -v b="$A1" 'BEGIN{printf "%d", n/(b-a)}')")
    done
    AUD=$(printf "%s\n" "${RATES[@]}" | sort -n | sed -n 2p)
    echo "   audit: ${RATES[*]} entries/s"
    SHA=$("$BIN/keyglass-bench" sha256 5000000)
    "$BIN/keyglass-bench" export "$D/log.sqlite" "$WORK/entries.bin"
    GOS=()
    for k in 1 2 3; do GOS+=("$(GO111MODULE=off GOPATH=/usr/share/gocode go run Benchmarks/go/tlogbench.go "$WORK/entries.bin")"); done
    GO=$(printf "%s\n" "${GOS[@]}" | sort -n | sed -n 2p)
    echo "   Go tlog: ${GOS[*]} entries/s"
    row "audit from empty state, entries/s ($N entries, HTTP tiles)" "$AUD" "$GO Go tlog entries/s" "$(ratio "$AUD" "$GO")" ">= 1000000, >= 0.5 x Go" "$(ge "$AUD" 1000000)/$(ge "$(ratio "$AUD" "$GO")" 0.5)"
    row "SHA-256 node hashes/s (OpenSSL, one core)" "$SHA" "limit ~$((SHA / 2)) entries/s" "-" "-" "-"
  fi
  if [ "$N" -ge 1000000 ]; then
    # Publishing into a big log: each lookup-index merge now rewrites much of a large index (in
    # slices between batches), and up to two merges' worth of index rows wait in memory.
    wrk3 "$D.pwrk" -t2 -c128 -d"${SECS}s" --latency -s Benchmarks/wrk/publish.lua "http://127.0.0.1:$PORT" -- "$(cat "$D/publish-token")"
    PR=$(rps "$D.pwrk"); PP50=$(lat_ms 50 "$D.pwrk"); PP99=$(lat_ms 99 "$D.pwrk"); PRSS=$(rss_mb "$PID")
    echo "   $N: $PR publishes/s, p50 $PP50 ms, p99 $PP99 ms, RSS $PRSS MB, $(errors "$D.pwrk") errors"
    row "durable publishes/s into the $N-entry log ($(errors "$D.pwrk") errors)" "$PR" "-" "-" ">= 20000" "$(ge "$PR" 20000)"
    row "publish latency p50 / p99 at $N (ms)" "$PP50 / $PP99" "-" "-" "p99 <= 250" "$(le "$PP99" 250)"
    row "server RSS after those publishes (MB; pending index rows in memory)" "$PRSS" "-" "-" "-" "-"
  fi
  stop_server
  rm -rf "$D"
done

echo
echo "| measure | Keyglass | reference | ratio | target | met |"
echo "|---|---|---|---|---|---|"
for r in "${ROWS[@]}"; do echo "| ${r//|/ | } |"; done
