# make bench, section 5 (sourced by Benchmarks/run.sh, which defines row, wrk3, ratio, ge, le,
# start_server, stop_server, tree_size, fail): a log on PostgreSQL (issue 15), in the same run as
# SQLite:
#   publishes: x25519 publishes of new identities (publish.lua), the same wrk run against a SQLite
#              log (sync FULL) and a PostgreSQL log (fsync on, synchronous_commit on), one after
#              the other on this machine's 2 cores, which PostgreSQL shares
#   failover:  two servers on one database, the sequencer SIGKILLed; the time until the other
#              acknowledges a publish (default 3 s lease), three rounds
#   standby:   inclusion proofs/s from a server on a hot standby (streaming replica) beside the same
#              from the server on the primary
# The cluster is a throwaway one in $WORK, run as the postgres user when this runs as root.

echo "== 5. PostgreSQL: publishes beside SQLite, failover, proofs from a standby (issue 15)"
PGBIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
[ -x "$PGBIN/postgres" ] || fail "PostgreSQL is not installed (make bench installs Debian's postgresql)"
PGW="$WORK/pg"
mkdir -p "$PGW"
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
if [ "$(id -u)" = 0 ]; then chown postgres "$PGW"; chmod o+x "$WORK"; fi
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
PG_CLUSTERS=()
stop_clusters() { for c in "${PG_CLUSTERS[@]}"; do as_pg "$PGBIN/pg_ctl" -D "$c" -m fast -w stop > /dev/null 2>&1 || true; done; PG_CLUSTERS=(); }
trap 'stop_server; stop_clusters' EXIT
start_cluster() {  # DIR PORT
  as_pg "$PGBIN/pg_ctl" -D "$1" -l "$1.log" -w -t 60 \
    -o "-p $2 -c unix_socket_directories= -c listen_addresses=127.0.0.1 -c max_connections=200" start > /dev/null \
    || { cat "$1.log"; fail "PostgreSQL in $1 did not start"; }
  PG_CLUSTERS+=("$1")
}
PGPORT=$(free_port)
as_pg "$PGBIN/initdb" -D "$PGW/primary" -U keyglass --auth=trust -E UTF8 --locale=C > "$PGW/initdb.log" 2>&1 || { cat "$PGW/initdb.log"; fail initdb; }
start_cluster "$PGW/primary" "$PGPORT"
psql -q -h 127.0.0.1 -p "$PGPORT" -U keyglass -d postgres -c "CREATE DATABASE bench" || fail "CREATE DATABASE"
PGURL="postgres://keyglass@127.0.0.1:$PGPORT/bench"
DP="$WORK/pgdata"; DS="$WORK/pgsqlite"
"$BIN/keyglass-server" init --data "$DP" --origin bench.keyglass/pg --storage "$PGURL" > /dev/null
init_log "$DS"

# Publishes: SQLite, then PostgreSQL, the same workload.
start_server "$DS" --sync FULL
wrk -t2 -c128 -d3s -s Benchmarks/wrk/publish.lua "$URL" -- "$(cat "$DS/publish-token")" > /dev/null 2>&1 || true
wrk3 "$WORK/pg-sqlite.wrk" -t2 -c128 -d"${SECS}s" --latency -s Benchmarks/wrk/publish.lua "$URL" -- "$(cat "$DS/publish-token")"
SQ=$RATE; SQ_RATES=$RATES; SQ_ERR=$ERR
stop_server
start_server "$DP" --storage "$PGURL"
PTOKEN=$(cat "$DP/publish-token")
wrk -t2 -c128 -d3s -s Benchmarks/wrk/publish.lua "$URL" -- "$PTOKEN" > /dev/null 2>&1 || true
wrk3 "$WORK/pg-pub.wrk" -t2 -c128 -d"${SECS}s" --latency -s Benchmarks/wrk/publish.lua "$URL" -- "$PTOKEN"
PG=$RATE; PG_RATES=$RATES; PG50=$P50; PG99=$P99; PG_ERR=$ERR
echo "   publishes/s: PostgreSQL $PG (runs $PG_RATES, $PG_ERR errors) beside SQLite $SQ (runs $SQ_RATES, $SQ_ERR errors)"
row "durable publishes/s on PostgreSQL (x25519, new identities, wrk -t2 -c128; fsync and synchronous_commit on; runs $PG_RATES; $PG_ERR errors)" "$PG" "$SQ SQLite sync FULL, same workload, this run (runs $SQ_RATES; $SQ_ERR errors)" "$(ratio "$PG" "$SQ")" "-" "$([ $((PG_ERR + SQ_ERR)) = 0 ] && echo - || echo "NO ($((PG_ERR + SQ_ERR)) errors)")"
row "publish latency on PostgreSQL p50 (median run) / p99 (worst run) (ms)" "$PG50 / $PG99" "-" "-" "p99 <= 250" "$(le "$PG99" 250 "$PG_ERR")"

# Proofs from the primary's server, then from a server on a hot standby.
PGSIZE=$(tree_size)
wrk3 "$WORK/pg-proof.wrk" -t2 -c64 -d"${SECS}s" --latency -s Benchmarks/wrk/inclusion.lua "$URL" -- "$PGSIZE"
PRIM=$RATE; PRIM_RATES=$RATES; PRIM_ERR=$ERR
SBPORT=$(free_port)
as_pg "$PGBIN/pg_basebackup" -h 127.0.0.1 -p "$PGPORT" -U keyglass -D "$PGW/standby" -R -X stream --checkpoint=fast > "$PGW/basebackup.log" 2>&1 \
  || { cat "$PGW/basebackup.log"; fail pg_basebackup; }
start_cluster "$PGW/standby" "$SBPORT"
PRIMARY_PID=$PID; PRIMARY_URL=$URL
DR="$WORK/pgreader"; cp -r "$DP" "$DR"; rm -f "$DR/port"
"$BIN/keyglass-server" serve --data "$DR" --storage "postgres://keyglass@127.0.0.1:$SBPORT/bench" --port 0 --port-file "$DR/port" --log-level warning > "$DR/server.log" 2>&1 &
READER=$!
for _ in $(seq 1 200); do [ -s "$DR/port" ] && break; sleep 0.05; done
[ -s "$DR/port" ] || { cat "$DR/server.log"; fail "the standby's server did not start"; }
RURL="http://127.0.0.1:$(cat "$DR/port")"
for _ in $(seq 1 200); do [ "$(URL=$RURL tree_size)" = "$PGSIZE" ] && break; sleep 0.1; done
[ "$(URL=$RURL tree_size)" = "$PGSIZE" ] || fail "the standby's server did not reach size $PGSIZE"
wrk3 "$WORK/pg-standby.wrk" -t2 -c64 -d"${SECS}s" --latency -s Benchmarks/wrk/inclusion.lua "$RURL" -- "$PGSIZE"
SB=$RATE; SB_RATES=$RATES; SB_ERR=$ERR
kill -TERM "$READER"; wait "$READER" 2>/dev/null || true
echo "   inclusion proofs/s at $PGSIZE: standby's server $SB (runs $SB_RATES), primary's $PRIM (runs $PRIM_RATES)"
row "inclusion proofs/s from a server on a hot standby at $PGSIZE entries (wrk -t2 -c64; runs $SB_RATES; $SB_ERR errors)" "$SB" "$PRIM from the primary's server, same run (runs $PRIM_RATES; $PRIM_ERR errors)" "$(ratio "$SB" "$PRIM")" "-" "$([ $((SB_ERR + PRIM_ERR)) = 0 ] && echo - || echo "NO ($((SB_ERR + PRIM_ERR)) errors)")"

# Failover: a second server on the primary; the sequencer (the lease's holder) SIGKILLed, and the
# time until the other acknowledges a publish. Three rounds, the killed one restarted in between.
DF="$WORK/pgfollower"; cp -r "$DP" "$DF"; rm -f "$DF/port"
start_follower() {
  rm -f "$DF/port"
  "$BIN/keyglass-server" serve --data "$DF" --storage "$PGURL" --port 0 --port-file "$DF/port" --log-level warning > "$DF/server.log" 2>&1 &
  FOLLOWER=$!
  for _ in $(seq 1 200); do [ -s "$DF/port" ] && break; sleep 0.05; done
  [ -s "$DF/port" ] || { cat "$DF/server.log"; fail "the second server did not start"; }
  FURL="http://127.0.0.1:$(cat "$DF/port")"
}
publish_once() {  # URL; exit 0 when acknowledged
  curl -sf -o /dev/null --max-time 2 -H "Authorization: Bearer $PTOKEN" -H "Content-Type: application/json" \
    -d "{\"identity\":\"failover-$RANDOM-$RANDOM@example.test\",\"key_type\":\"x25519\",\"public_key\":\"$(head -c32 /dev/urandom | base64)\"}" "$1/v1/keys"
}
start_follower
FAILOVERS=()
A_PID=$PRIMARY_PID; A_URL=$PRIMARY_URL; B_PID=$FOLLOWER; B_URL=$FURL
for k in 1 2 3; do
  publish_once "$A_URL" || fail "the sequencer did not acknowledge a publish before failover round $k"
  kill -KILL "$A_PID"; wait "$A_PID" 2>/dev/null || true
  T0=$(date +%s.%N)
  ok=no
  for _ in $(seq 1 400); do if publish_once "$B_URL"; then ok=yes; break; fi; sleep 0.02; done
  T1=$(date +%s.%N)
  [ "$ok" = yes ] || fail "no server took over in failover round $k"
  FAILOVERS+=("$(awk -v a="$T0" -v b="$T1" 'BEGIN{printf "%.2f", b-a}')")
  # The killed one comes back as the follower.
  if [ "$A_PID" = "$PRIMARY_PID" ]; then
    rm -f "$DP/port"
    "$BIN/keyglass-server" serve --data "$DP" --storage "$PGURL" --port 0 --port-file "$DP/port" --log-level warning > "$DP/server.log" 2>&1 &
    NEW=$!; for _ in $(seq 1 200); do [ -s "$DP/port" ] && break; sleep 0.05; done
    NEW_URL="http://127.0.0.1:$(cat "$DP/port")"
  else
    start_follower; NEW=$FOLLOWER; NEW_URL=$FURL
  fi
  A_PID=$B_PID; A_URL=$B_URL; B_PID=$NEW; B_URL=$NEW_URL
done
PID=""; kill -TERM "$A_PID" "$B_PID" 2>/dev/null || true; wait "$A_PID" "$B_PID" 2>/dev/null || true
FO=$(median3 "${FAILOVERS[@]}")
FO_MAX=$(printf "%s\n" "${FAILOVERS[@]}" | sort -g | tail -1)
echo "   failover (s): ${FAILOVERS[*]}"
row "failover: sequencer SIGKILLed to the first publish another server acknowledges (s; lease 3 s; median of rounds ${FAILOVERS[*]})" "$FO" "-" "-" "every round <= 5" "$(le "$FO_MAX" 5)"
stop_clusters
