#!/usr/bin/env bash
# make bench: measures Keyglass under the traffic its users make against this machine's limits and
# Go's tlog, all in one run, and prints one table. Needs a release build (make bench does it), wrk,
# Go and golang.org/x/mod. Benchmarks/README.md describes each row.
#
#   BENCH_SIZES="10000 1000000 10000000"  tree sizes of the bulk-loaded scale rows
#   BENCH_SECONDS=10                       length of each wrk run
#   BENCH_DIR=/tmp/keyglass-bench          scratch space (a 10M log takes a few GB; the publish
#                                          request files ~1 GB)
#   BENCH_AUDIT_SIZE=1000000               size of the prepared audit logs and of the proof target
#   BENCH_PUB_RATE=40000                   publishes/s the request files are sized for (× seconds × 1.5
#                                          per run); a faster run runs out, and its repeats are errors
#   BENCH_HISTORY=10000                    identities with 5-entry histories (the lookups)
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.build/release
WORK=${BENCH_DIR:-/tmp/keyglass-bench}
SIZES=${BENCH_SIZES:-"10000 1000000 10000000"}
SECS=${BENCH_SECONDS:-10}
AUDIT_SIZE=${BENCH_AUDIT_SIZE:-1000000}
PUB_RATE=${BENCH_PUB_RATE:-40000}
HISTORY=${BENCH_HISTORY:-10000}
DEPTH=5
LINES=$((PUB_RATE * SECS * 3 / 2))
rm -rf "$WORK"; mkdir -p "$WORK"
ROWS=()
row() { ROWS+=("$1|$2|$3|$4|$5|$6"); }   # measure|keyglass|reference|ratio|target|met
CEILS=()                                 # every ceiling measured, for the summary row

PID=""; SAMPLER=""
stop_sampler() { if [ -n "$SAMPLER" ]; then kill "$SAMPLER" 2>/dev/null || true; wait "$SAMPLER" 2>/dev/null || true; SAMPLER=""; fi; }
stop_server() { stop_sampler; if [ -n "$PID" ]; then kill -TERM "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; PID=""; fi; }
trap stop_server EXIT
fail() { echo "FAILED: $*" >&2; exit 1; }

# Starts a server on a port the kernel picks (--port 0 --port-file), so a server left over from
# another run can never answer in its place, and checks before anything is measured that the one
# answering serves this data directory's log: /v1/log's verifier_key = DIR/verifier-key.
start_server() {  # DIR [serve options…]; sets PID and URL
  local d=$1; shift
  rm -f "$d/port"
  "$BIN/keyglass-server" serve --data "$d" --port 0 --port-file "$d/port" --log-level warning "$@" > "$d/server.log" 2>&1 &
  PID=$!
  for _ in $(seq 1 600); do [ -s "$d/port" ] && break; kill -0 "$PID" 2>/dev/null || break; sleep 0.05; done
  if ! [ -s "$d/port" ] || ! kill -0 "$PID" 2>/dev/null; then cat "$d/server.log"; fail "server for $d did not start"; fi
  URL="http://127.0.0.1:$(cat "$d/port")"
  local served want
  served=$(curl -sf "$URL/v1/log" | python3 -c 'import json,sys; print(json.load(sys.stdin)["verifier_key"])') || fail "GET $URL/v1/log"
  want=$(tr -d '[:space:]' < "$d/verifier-key")
  [ "$served" = "$want" ] || fail "$URL serves verifier key $served, not $d's ($want)"
  echo "   server for $(basename "$d") on $URL (pid $PID), verifier key checked"
}
rss_mb() { awk '/VmRSS/{printf "%d", $2/1024}' "/proc/$1/status" 2>/dev/null || echo 0; }
# Peak RSS of the server while something runs: sampled every 0.2 s into FILE.
start_sampler() {  # FILE
  echo 0 > "$1"
  ( peak=0; while kill -0 "$PID" 2>/dev/null; do r=$(rss_mb "$PID"); r=${r:-0}; if [ "$r" -gt "$peak" ]; then peak=$r; echo "$peak" > "$1"; fi; sleep 0.2; done ) &
  SAMPLER=$!
}
tree_size() { curl -sf "$URL/v1/log" | python3 -c 'import json,sys; print(json.load(sys.stdin)["tree_size"])'; }
root_b64() { curl -sf "$URL/v1/log" | python3 -c 'import json,sys; print(json.load(sys.stdin)["root_hash"])'; }

# wrk output → numbers.
# latency line ("99%  12.34ms") → milliseconds
lat_ms() { awk -v p="$1%" '$1==p { v=$2; u=v; gsub(/[0-9.]/,"",u); gsub(/[a-z]/,"",v); if(u=="us") v/=1000; else if(u=="s") v*=1000; else if(u=="m") v*=60000; printf "%.2f", v }' "$2"; }
rps() { awk '/Requests\/sec/{printf "%d", $2; f=1} END{ if(!f) printf "0" }' "$1"; }
# Every error of one run: the numbers of "Socket errors: connect A, read B, write C, timeout D",
# the non-2xx answers, a wrk that failed, and a run that printed no rate at all.
errors() {
  awk '/Socket errors:/ { for (i = 3; i <= NF; i++) { v = $i; gsub(/,/, "", v); if (v ~ /^[0-9]+$/) s += v } }
       /Non-2xx or 3xx responses:/ { s += $NF }
       /^wrk exited/ { s += 1 }
       /Requests\/sec/ { seen = 1 }
       END { if (!seen) s += 1; printf "%d", s + 0 }' "$1"
}
# Runs wrk three times (OUT.1..3; "%K" in an argument becomes the run's number, for per-run request
# files). On this shared machine rates drift ±10–25% from minute to minute, so the rate reported is
# the median run's, and all three are printed; the latency reported is the WORST run's p99 (the
# run that held an index merge must show), with the median run's p50; errors are summed over all
# three runs. Sets RATE RATES P50 P99 ERR.
wrk3() {  # OUT wrk-args...
  local out=$1; shift
  local k a med
  local -a args
  for k in 1 2 3; do
    args=(); for a in "$@"; do args+=("${a//%K/$k}"); done
    wrk "${args[@]}" > "$out.$k" 2>&1 || echo "wrk exited $? (run $k)" >> "$out.$k"
  done
  med=$(for k in 1 2 3; do echo "$(rps "$out.$k") $k"; done | sort -n | sed -n 2p | awk '{print $2}')
  cp "$out.$med" "$out"
  RATE=$(rps "$out")
  RATES="$(rps "$out.1") / $(rps "$out.2") / $(rps "$out.3")"
  P50=$(lat_ms 50 "$out")
  P99=$(for k in 1 2 3; do lat_ms 99 "$out.$k"; echo; done | sort -g | tail -1)
  ERR=$(( $(errors "$out.1") + $(errors "$out.2") + $(errors "$out.3") ))
  grep -h "mix.lua:" "$out".[123] || true
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN{ if (b>0) printf "%.2f", a/b; else print "-" }'; }
# yes/NO for A >= B (or <=), NO whenever there were errors (third argument).
# A value that is not a number ("-", empty: nothing was measured) is NO, never a string comparison.
ge() { [ "${3:-0}" = 0 ] || { echo "NO ($3 errors)"; return; }; awk -v a="$1" -v b="$2" 'BEGIN{ exit !(a ~ /^[0-9]+(\.[0-9]+)?$/ && a+0 >= b+0) }' && echo yes || echo NO; }
le() { [ "${3:-0}" = 0 ] || { echo "NO ($3 errors)"; return; }; awk -v a="$1" -v b="$2" 'BEGIN{ exit !(a ~ /^[0-9]+(\.[0-9]+)?$/ && a+0 <= b+0) }' && echo yes || echo NO; }
median3() { printf "%s\n" "$@" | sort -n | sed -n 2p; }
init_log() { "$BIN/keyglass-server" init --data "$1" --origin bench.keyglass/log > /dev/null; }
# The trivial-GET ceiling of the server running now (event loop: GET /healthz). Sets CEIL, CEILS_TXT.
ceiling() {  # LABEL
  wrk3 "$WORK/ceil-$1.wrk" -t2 -c128 -d"${SECS}s" --latency "$URL/healthz"
  CEIL=$RATE; CEIL_ERR=$ERR
  CEILS+=("$1: $CEIL (runs $RATES$([ "$ERR" = 0 ] || echo ", $ERR errors"))")
  echo "   ceiling ($1): GET /healthz $RATE req/s (runs $RATES), $ERR errors"
}

echo "== machine: $(nproc) cores, $(awk '/model name/{$1=$2=$3="";print;exit}' /proc/cpuinfo | sed 's/^ *//'), $(free -g | awk '/Mem/{print $2}') GiB"
export GO111MODULE=off GOPATH=/usr/share/gocode
go build -o "$WORK/tlogaudit" Benchmarks/go/tlogaudit.go
go build -o "$WORK/tlogbench" Benchmarks/go/tlogbench.go

# BENCH_ONLY=directory runs the key directory's section alone (section 4), BENCH_ONLY=postgres
# PostgreSQL's (section 5).
if [ -z "${BENCH_ONLY:-}" ]; then
echo "== 0. references without a server (one core each)"
REF=$("$BIN/keyglass-bench" sqlite-reference 300000 FULL)
REF_INLINE=$("$BIN/keyglass-bench" sqlite-reference 300000 FULL inline)
CR=(); for k in 1 2 3; do CR+=("$("$BIN/keyglass-bench" crypto 40000)"); done
PTS=$(median3 "${CR[0]% *}" "${CR[1]% *}" "${CR[2]% *}"); VER=$(median3 "${CR[0]#* }" "${CR[1]#* }" "${CR[2]#* }")
SHA=$("$BIN/keyglass-bench" sha256 5000000)
VRF=$("$BIN/keyglass-bench" vrf 2000)
MAP=$("$BIN/keyglass-bench" map 100000)
MAPSQL=$("$BIN/keyglass-bench" map-sqlite 100000 "$WORK/map")
echo "   raw SQLite $REF rows/s (inline indexes $REF_INLINE); is_valid_point ${CR[*]%% *}…: median $PTS/s; verify median $VER/s; SHA-256 $SHA/s; ECVRF prove/verify $VRF/s; map updates/proofs $MAP/s"

echo "== 1. publishes users make: prepared log, ${LINES} requests per wrk run (sized for $PUB_RATE/s × ${SECS}s × 1.5)"
D="$WORK/pub"
init_log "$D"
T0=$(date +%s.%N)
"$BIN/keyglass-bench" prepare --data "$D" --entries 0 --mix mix --history "$HISTORY" --depth "$DEPTH" \
  --requests "$WORK/req" --runs 3 --lines "$LINES" --threads 2 2> "$WORK/pub.prepare" > /dev/null || { cat "$WORK/pub.prepare"; fail "prepare"; }
grep -E "log ready|filler keys" "$WORK/pub.prepare" | sed 's/^/   /'
echo "   prepared in $(awk -v a="$T0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.0f", b-a}') s"
sync
# Owner-signed rotations come from many owners' clients; here from one address, so the per-client
# limit on signed publishes (5/s by default) is lifted for the benchmark.
start_server "$D" --sync FULL --signed-publish-rate 0
TOKEN=$(cat "$D/publish-token")
ceiling publish
PUB_CEIL=$CEIL
wrk3 "$WORK/router.wrk" -t2 -c128 -d"${SECS}s" --latency "$URL/v1/entries?start=0&end=1"
ROUTER=$RATE; ROUTER_RATES=$RATES; ROUTER_ERR=$ERR
echo "   router: GET /v1/entries?start=0&end=1 $ROUTER req/s (runs $ROUTER_RATES), $ERR errors"
SIZE0=$(tree_size)
start_sampler "$WORK/pub.peak"
wrk3 "$WORK/mix.wrk" -t2 -c128 -d"${SECS}s" --latency -s Benchmarks/wrk/mix.lua "$URL" -- "$WORK/req-mix-%K.txt" "$TOKEN"
MIX=$RATE; MIX_RATES=$RATES; MIX50=$P50; MIX99=$P99; MIX_ERR=$ERR
echo "   mix: $MIX publishes/s (runs $MIX_RATES), p50 $MIX50 ms, worst p99 $MIX99 ms, $ERR errors"
wrk3 "$WORK/rot.wrk" -t2 -c128 -d"${SECS}s" --latency -s Benchmarks/wrk/mix.lua "$URL" -- "$WORK/req-rot-%K.txt" "$TOKEN"
ROT=$RATE; ROT_RATES=$RATES; ROT50=$P50; ROT99=$P99; ROT_ERR=$ERR
echo "   rotations: $ROT publishes/s (runs $ROT_RATES), p50 $ROT50 ms, worst p99 $ROT99 ms, $ERR errors"
stop_sampler
PUB_PEAK=$(cat "$WORK/pub.peak"); PUB_RSS=$(rss_mb "$PID"); SIZE1=$(tree_size)
echo "   tree $SIZE0 -> $SIZE1, RSS peak $PUB_PEAK MB while publishing, $PUB_RSS MB after"
stop_server
rm -rf "$D" "$WORK"/req-*

row "durable publishes/s of the mix (HTTP, sync FULL, wrk -t2 -c128; 70% Ed25519, 20% owner-signed rotations; runs $MIX_RATES; $MIX_ERR errors; tree $SIZE0 -> $SIZE1)" "$MIX" "$PUB_CEIL trivial-GET ceiling (event loop, this server)" "$(ratio "$MIX" "$PUB_CEIL")" ">= 0.5 x ceiling" "$(ge "$(ratio "$MIX" "$PUB_CEIL")" 0.5 "$MIX_ERR")"
row "publish latency of the mix, p50 (median run) / p99 (worst run) (ms)" "$MIX50 / $MIX99" "-" "-" "p99 <= 250" "$(le "$MIX99" 250 "$MIX_ERR")"
row "owner-signed rotations/s alone (no token: through the router; runs $ROT_RATES; $ROT_ERR errors)" "$ROT" "$PUB_CEIL trivial-GET ceiling (event loop, this server)" "$(ratio "$ROT" "$PUB_CEIL")" ">= 0.35 x ceiling" "$(ge "$(ratio "$ROT" "$PUB_CEIL")" 0.35 "$ROT_ERR")"
row "rotation latency, p50 (median run) / p99 (worst run) (ms)" "$ROT50 / $ROT99" "-" "-" "p99 <= 250" "$(le "$ROT99" 250 "$ROT_ERR")"
row "server RSS while those publishes ran (peak) / after (MB)" "$PUB_PEAK / $PUB_RSS" "-" "-" "<= 100" "$(le "$PUB_PEAK" 100)"
row "trivial-GET ceiling: GET /healthz req/s (event loop; wrk -t2 -c128 on the same 2 cores; runs of each ceiling below)" "$PUB_CEIL" "-" "-" "-" "-"
row "the same through Hummingbird's router: GET /v1/entries?start=0&end=1 (runs $ROUTER_RATES; $ROUTER_ERR errors)" "$ROUTER" "-" "-" "-" "-"
row "raw SQLite rows/s (the rows a publish writes, index merged, sync FULL; no HTTP, hashing or signing)" "-" "$REF" "-" "-" "-"
row "raw SQLite rows/s with the lookup indexes written in every batch (schema 1, for comparison)" "-" "$REF_INLINE" "-" "-" "-"
row "Ed25519 point checks/s (crypto_core_ed25519_is_valid_point via Ed25519.isValidPublicKey, one core)" "-" "$PTS" "-" "-" "-"
row "Ed25519 signature checks/s (crypto_sign_verify_detached via Ed25519.verify, one core)" "-" "$VER" "-" "-" "-"
row "SHA-256 node hashes/s (OpenSSL, one core)" "-" "$SHA" "-" "-" "-"
read -r VRF_P VRF_V VRF_O <<< "$VRF"
row "ECVRF proofs / verifications / outputs without a proof per second (RFC 9381 suite 0x03 from libsodium's group operations, one core; issue 14's labels)" "-" "$VRF_P / $VRF_V / $VRF_O" "-" "-" "-"
row "directory map, 100k labels in memory: updates / checked proofs per second (MapTree.Incremental, one core)" "-" "${MAP% *} / ${MAP#* }" "-" "-" "-"
row "directory map, 100k labels in SQLite as auditors keep it (MapTree.Bucketed: a row per label and per bucket; sync FULL, batches of 10k updates, one transaction each): updates / checked proofs per second" "-" "${MAPSQL% *} / ${MAPSQL#* }" "-" "-" "-"

echo "== 2. scale: bulk-loaded logs, proof reads, RSS, publishes into big logs"
FIRST_N=""; FIRST_P50=""; LAST_N=""; LAST_P50=""
for N in $SIZES; do
  D="$WORK/log-$N"
  init_log "$D"
  T0=$(date +%s.%N)
  "$BIN/keyglass-server" bulk-load --data "$D" --count "$N" --batch 20000 > /dev/null 2> "$D.bulk"
  echo "   bulk-loaded $N entries in $(awk -v a="$T0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}') s"
  start_server "$D" --sync FULL
  RSS0=$(rss_mb "$PID")
  REFC=$PUB_CEIL; REFC_TXT="$PUB_CEIL trivial-GET ceiling (publish server)"
  if [ "$N" = "$AUDIT_SIZE" ]; then ceiling "proofs-$N"; REFC=$CEIL; REFC_TXT="$CEIL trivial-GET ceiling (event loop, this server)"; fi
  # A short unmeasured run first: the first reads after a start fill SQLite's and the OS's caches.
  wrk -t2 -c64 -d3s -s Benchmarks/wrk/inclusion.lua "$URL" -- "$N" > /dev/null 2>&1 || true
  wrk3 "$D.wrk" -t2 -c64 -d"${SECS}s" --latency -s Benchmarks/wrk/inclusion.lua "$URL" -- "$N"
  R=$RATE; L50=$P50; L99=$P99; RERR=$ERR; RSS=$(rss_mb "$PID")
  echo "   $N: $R proofs/s (runs $RATES), p50 $L50 ms, worst p99 $L99 ms, $ERR errors, RSS $RSS0 -> $RSS MB"
  if [ "$N" = "$AUDIT_SIZE" ]; then
    row "inclusion proofs/s at $N entries (wrk -t2 -c64; runs $RATES; $RERR errors)" "$R" "$REFC_TXT" "$(ratio "$R" "$REFC")" ">= 0.6 x ceiling" "$(ge "$(ratio "$R" "$REFC")" 0.6 "$RERR")"
  else
    row "inclusion proofs/s at $N entries (runs $RATES; $RERR errors)" "$R" "$REFC_TXT" "$(ratio "$R" "$REFC")" "-" "$([ "$RERR" = 0 ] && echo - || echo "NO ($RERR errors)")"
  fi
  row "proof latency p50 / worst p99 at $N (ms)" "$L50 / $L99" "-" "-" "-" "-"
  [ -z "$FIRST_N" ] && { FIRST_N=$N; FIRST_P50=$L50; }
  LAST_N=$N; LAST_P50=$L50
  if [ "$N" -ge 1000000 ]; then
    wrk3 "$D.cwrk" -t2 -c64 -d"${SECS}s" --latency -s Benchmarks/wrk/consistency.lua "$URL" -- "$N" 20000
    echo "   $N: $RATE consistency proofs/s (runs $RATES), p50 $P50 ms, worst p99 $P99 ms, $ERR errors"
    row "consistency proofs/s at $N entries (runs $RATES; $ERR errors)" "$RATE" "$REFC_TXT" "$(ratio "$RATE" "$REFC")" "-" "$([ "$ERR" = 0 ] && echo - || echo "NO ($ERR errors)")"
    row "consistency proof latency p50 / worst p99 at $N (ms)" "$P50 / $P99" "-" "-" "-" "-"
  fi
  row "server RSS at $N entries, after the proof runs (MB)" "$RSS" "-" "-" "<= 100" "$(le "$RSS" 100)"
  if [ "$N" -ge 1000000 ]; then
    # Publishing into a big log: lookup-index merges rewrite much of a large index, and pending
    # index rows wait in memory; RSS is sampled while the publishes run.
    start_sampler "$D.peak"
    wrk3 "$D.pwrk" -t2 -c128 -d"${SECS}s" --latency -s Benchmarks/wrk/publish.lua "$URL" -- "$(cat "$D/publish-token")"
    stop_sampler
    PEAK=$(cat "$D.peak"); PRSS=$(rss_mb "$PID")
    echo "   $N: $RATE publishes/s (runs $RATES), p50 $P50 ms, worst p99 $P99 ms, $ERR errors, RSS peak $PEAK MB, after $PRSS MB"
    row "durable publishes/s into the $N-entry log (x25519, new identities; runs $RATES; $ERR errors)" "$RATE" "$PUB_CEIL trivial-GET ceiling (publish server)" "$(ratio "$RATE" "$PUB_CEIL")" "-" "$([ "$ERR" = 0 ] && echo - || echo "NO ($ERR errors)")"
    row "publish latency p50 / worst p99 at $N (ms)" "$P50 / $P99" "-" "-" "p99 <= 250" "$(le "$P99" 250 "$ERR")"
    row "server RSS while publishing into the $N-entry log (peak) / after (MB)" "$PEAK / $PRSS" "-" "-" "<= 100" "$(le "$PEAK" 100)"
  fi
  stop_server
  rm -rf "$D"
done
if [ -n "$FIRST_N" ] && [ "$FIRST_N" != "$LAST_N" ]; then
  G=$(ratio "$LAST_P50" "$FIRST_P50")
  row "proof latency growth: p50 at $LAST_N / p50 at $FIRST_N (O(log n) claim)" "$LAST_P50 / $FIRST_P50 ms" "-" "$G" "<= 2.0" "$(le "$G" 2.0)"
fi

echo "== 3. prepared ${AUDIT_SIZE}-entry logs: lookups, audits against Go"
for MIXK in mix ed25519; do
  D="$WORK/audit-$MIXK"
  init_log "$D"
  # The all-Ed25519 log is operator entries only (no histories, so no signed rotations either).
  if [ "$MIXK" = mix ]; then H=$HISTORY; else H=0; fi
  T0=$(date +%s.%N)
  "$BIN/keyglass-bench" prepare --data "$D" --entries "$AUDIT_SIZE" --mix "$MIXK" --history "$H" --depth "$DEPTH" \
    --requests "$WORK/audit-$MIXK" --runs 0 2> "$D.prepare" > /dev/null || { cat "$D.prepare"; fail "prepare $MIXK"; }
  grep -E "log ready|filler keys" "$D.prepare" | sed 's/^/   /'
  echo "   prepared in $(awk -v a="$T0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.0f", b-a}') s"
  sync
  start_server "$D" --sync FULL
  SIZE=$(tree_size); ROOT=$(root_b64)
  if [ "$MIXK" = mix ]; then
    ceiling "lookups"
    wrk -t2 -c64 -d3s -s Benchmarks/wrk/lookup.lua "$URL" -- "$WORK/audit-mix-lookups.txt" > /dev/null 2>&1 || true
    wrk3 "$D.lwrk" -t2 -c64 -d"${SECS}s" --latency -s Benchmarks/wrk/lookup.lua "$URL" -- "$WORK/audit-mix-lookups.txt"
    echo "   lookups: $RATE/s (runs $RATES), p50 $P50 ms, worst p99 $P99 ms, $ERR errors"
    row "lookups/s of existing identities (GET /v1/keys/<id>: $DEPTH-entry histories, every entry's inclusion proof; $SIZE entries; wrk -t2 -c64; runs $RATES; $ERR errors)" "$RATE" "$CEIL trivial-GET ceiling (event loop, this server)" "$(ratio "$RATE" "$CEIL")" ">= 0.5 x ceiling" "$(ge "$(ratio "$RATE" "$CEIL")" 0.5 "$ERR")"
    row "lookup latency p50 / worst p99 (ms)" "$P50 / $P99" "-" "-" "-" "-"
  fi
  # Three audits from an empty state, three runs of Go's HTTP auditor on the same server, and three
  # of Go's in-memory tlog on the exported entries: the medians. Each reference must agree with
  # the served checkpoint (size and root) or its row fails.
  RATES_KG=(); AUD_OK=yes
  for k in 1 2 3; do
    rm -rf "$WORK/audit-state"
    A0=$(date +%s.%N)
    "$BIN/keyglass" audit --log "$URL" --vkey "$D/verifier-key" --state "$WORK/audit-state" --json > "$WORK/audit.json" 2>&1 || true
    A1=$(date +%s.%N)
    if grep -q '"status" : "ok"' "$WORK/audit.json"; then
      RATES_KG+=("$(awk -v n="$SIZE" -v a="$A0" -v b="$A1" 'BEGIN{printf "%d", n/(b-a)}')")
    else
      echo "   keyglass audit $k FAILED:"; head -c 2000 "$WORK/audit.json"; echo; AUD_OK=NO; RATES_KG+=(0)
    fi
  done
  AUD=$(median3 "${RATES_KG[@]}")
  RATES_GA=(); GA_OK=yes
  for k in 1 2 3; do
    if OUT=$("$WORK/tlogaudit" -log "$URL" -vkey "$D/verifier-key" 2> "$WORK/tlogaudit.err"); then
      read -r GR GS GROOT <<< "$OUT"
      if [ "$GS" != "$SIZE" ] || [ "$GROOT" != "$ROOT" ]; then echo "   Go HTTP auditor: size $GS root $GROOT, served $SIZE $ROOT: MISMATCH"; GA_OK=NO; fi
      RATES_GA+=("$GR")
    else
      echo "   Go HTTP auditor run $k FAILED (exit $?):"; cat "$WORK/tlogaudit.err"; GA_OK=NO; RATES_GA+=(0)
    fi
  done
  GA=$(median3 "${RATES_GA[@]}")
  "$BIN/keyglass-bench" export "$D/log.sqlite" "$WORK/entries.bin"
  ROOT8=$(python3 -c 'import base64,sys; print(base64.b64decode(sys.argv[1])[:8].hex())' "$ROOT")
  RATES_GO=(); GO_OK=yes
  for k in 1 2 3; do
    if OUT=$("$WORK/tlogbench" "$WORK/entries.bin" 2> "$WORK/tlogbench.err"); then
      RATES_GO+=("$OUT")
      grep -q "^go tlog: $SIZE entries, root $ROOT8\$" "$WORK/tlogbench.err" || { echo "   Go tlog: $(cat "$WORK/tlogbench.err"), served $SIZE entries, root $ROOT8: MISMATCH"; GO_OK=NO; }
    else
      echo "   Go tlog run $k FAILED:"; cat "$WORK/tlogbench.err"; GO_OK=NO; RATES_GO+=(0)
    fi
  done
  GOM=$(median3 "${RATES_GO[@]}")
  rm -f "$WORK/entries.bin"
  echo "   $MIXK: keyglass audit ${RATES_KG[*]}; Go HTTP auditor ${RATES_GA[*]} ($GA_OK); Go in-memory tlog ${RATES_GO[*]} ($GO_OK) entries/s"
  if [ "$MIXK" = mix ]; then TGT=1.5; WHAT="the mix (20% owner-signed rotations, 70% Ed25519)"; else TGT=1.0; WHAT="all operator Ed25519"; fi
  MET=$(ge "$(ratio "$AUD" "$GA")" "$TGT")
  [ "$AUD_OK" = yes ] || MET="NO (keyglass audit failed)"
  [ "$GA_OK" = yes ] || MET="NO (Go HTTP auditor failed or disagreed)"
  row "audit from empty state, entries/s: $SIZE entries of $WHAT (keyglass audit over HTTP; runs ${RATES_KG[*]})" "$AUD" "$GA Go HTTP auditor (go/tlogaudit.go; runs ${RATES_GA[*]})" "$(ratio "$AUD" "$GA")" ">= $TGT x Go HTTP auditor" "$MET"
  row "the same against Go's in-memory tlog on the exported entries (go/tlogbench.go; root and count checked)" "$AUD" "$GOM Go tlog entries/s (runs ${RATES_GO[*]})" "$(ratio "$AUD" "$GOM")" "-" "$([ "$GO_OK" = yes ] && echo - || echo "NO (Go tlog failed or disagreed)")"
  RSS=$(rss_mb "$PID")
  row "server RSS after lookups and audits of the $MIXK log (MB)" "$RSS" "-" "-" "<= 100" "$(le "$RSS" 100)"
  stop_server
  rm -rf "$D" "$WORK/audit-state"
done
row "every trivial-GET ceiling of this run (req/s; runs)" "-" "$(IFS=';'; echo "${CEILS[*]}" | sed 's/;/; /g')" "-" "-" "-"
fi

if [ -z "${BENCH_ONLY:-}" ] || [ "$BENCH_ONLY" = directory ]; then . Benchmarks/directory.sh; fi
if [ -z "${BENCH_ONLY:-}" ] || [ "$BENCH_ONLY" = postgres ]; then . Benchmarks/postgres.sh; fi

echo
echo "| measure | Keyglass | reference | ratio | target | met |"
echo "|---|---|---|---|---|---|"
for r in "${ROWS[@]}"; do echo "| ${r//|/ | } |"; done
