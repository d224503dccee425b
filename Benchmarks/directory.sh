# make bench, section 4 (sourced by Benchmarks/run.sh, which defines row, wrk3, ratio, ge, le,
# rss_mb, start_sampler, stop_server, fail): the key directory under the traffic its users make,
# with issue 14's targets as ratios to references measured in the same run.
#   changes: operator adds of new identities (a new label, a VRF output, a device with a valid
#            Ed25519 key), sync FULL, with map heads every second / with none (epoch 1 h)
#   lag:     the newest head's age while those run, sampled every 100 ms
#   lookups: GET /v2/lookup of identities that exist, every proof; against the inclusion proofs/s
#            of a v1 log of the same size on this machine in this run

echo "== 4. the key directory: changes, map heads, lookups (issue 14)"
DD="$WORK/dir"
"$BIN/keyglass-server" init --directory --data "$DD" --origin bench.dir/log > /dev/null
"$BIN/keyglass-bench" device-keys 4096 > "$WORK/device-keys.txt"
[ -n "${VRF:-}" ] || VRF=$("$BIN/keyglass-bench" vrf 2000)
read -r VRFP _ VRFO <<< "$VRF"
# What the crypto of a new identity alone allows on two cores: its label (a VRF output) and the
# full check of its device's Ed25519 key, each measured on one core here.
# (run.sh measured the key checks already, as PTS, unless this section runs alone)
POINTS=${PTS:-$("$BIN/keyglass-bench" crypto 20000 | cut -d' ' -f1)}
CRYPTO_CEIL=$(python3 -c "print(int(2 / (1 / $VRFO + 1 / $POINTS)))")
DTOKEN=$(tr -d '[:space:]' < "$DD/publish-token")
LTOKEN=$(tr -d '[:space:]' < "$DD/lookup-token")  # lookups need a credential (step B); unlimited below

start_directory() {  # EPOCH_MS; sets PID and URL (checks /v2/log names this directory's key)
  rm -f "$DD/port"
  # With epoch 1 h no head at all during the runs (the reference): the most uncovered changes allowed.
  "$BIN/keyglass-server" serve --data "$DD" --port 0 --port-file "$DD/port" --log-level warning --sync FULL --epoch-ms "$1" --lookup-rate 0 \
    $([ "$1" -ge 3600000 ] && echo --max-uncovered-changes 131072) > "$DD/server.log" 2>&1 &
  PID=$!
  for _ in $(seq 1 1200); do [ -s "$DD/port" ] && curl -sf --max-time 5 "http://127.0.0.1:$(cat "$DD/port")/healthz" > /dev/null && break; kill -0 "$PID" 2>/dev/null || break; sleep 0.05; done
  { kill -0 "$PID" 2>/dev/null && [ -s "$DD/port" ]; } || { cat "$DD/server.log"; fail "directory server did not start"; }
  URL="http://127.0.0.1:$(cat "$DD/port")"
  local served want
  served=$(curl -sf "$URL/v2/log" | python3 -c 'import json,sys; print(json.load(sys.stdin)["verifier_key"])') || fail "GET $URL/v2/log"
  want=$(tr -d '[:space:]' < "$DD/verifier-key")
  [ "$served" = "$want" ] || fail "$URL serves verifier key $served, not the directory's ($want)"
}

# Every 100 ms: the newest map head's age and how long the lookup took, into FILE ("AGE_MS
# LOOKUP_MS" per line), until killed.
start_lag_sampler() {  # FILE
  python3 - "$URL" "$1" "$LTOKEN" <<'PY' &
import base64, json, sys, time, urllib.request
url, out, token = sys.argv[1], sys.argv[2], sys.argv[3]
with open(out, "w") as f:
    while True:
        try:
            t0 = time.time()
            req = urllib.request.Request(url + "/v2/lookup/lag-probe@bench.test", headers={"Authorization": "Bearer " + token})
            a = json.load(urllib.request.urlopen(req, timeout=5))
            t1 = time.time()
            head = base64.b64decode(a["head_entry"])
            assert head[0] == 2 and head[1] == 3, "the last leaf is not a map head"
            made = int.from_bytes(head[2:10], "big")
            f.write("%d %d\n" % (t1 * 1000 - made, (t1 - t0) * 1000)); f.flush()
        except Exception as e:
            f.write("error %s\n" % e); f.flush()
        time.sleep(0.1)
PY
  LAGPID=$!
  trap 'kill "$LAGPID" 2>/dev/null || true; stop_server' EXIT
}

start_directory 3600000
wrk -t2 -c64 -d3s -s Benchmarks/wrk/directory_add.lua "$URL" -- "$DTOKEN" "$WORK/device-keys.txt" > /dev/null 2>&1 || true
wrk3 "$WORK/dir-nohead.wrk" -t2 -c64 -d"${SECS}s" --latency -s Benchmarks/wrk/directory_add.lua "$URL" -- "$DTOKEN" "$WORK/device-keys.txt"
NOHEAD=$RATE; NOHEAD_RATES=$RATES; NOHEAD_ERR=$ERR
echo "   changes without map heads: $NOHEAD/s (runs $NOHEAD_RATES), $NOHEAD_ERR errors"
stop_server

start_directory 1000
# The first head after the restart covers every change of the runs above at once: a warm-up run
# first, then the samplers (steady state is what the targets are about).
wrk -t2 -c64 -d3s -s Benchmarks/wrk/directory_add.lua "$URL" -- "$DTOKEN" "$WORK/device-keys.txt" > /dev/null 2>&1 || true
start_sampler "$WORK/dir-rss"
start_lag_sampler "$WORK/dir-lag"
wrk3 "$WORK/dir-head.wrk" -t2 -c64 -d"${SECS}s" --latency -s Benchmarks/wrk/directory_add.lua "$URL" -- "$DTOKEN" "$WORK/device-keys.txt"
WITH=$RATE; WITH_RATES=$RATES; WITH_ERR=$ERR; WITH50=$P50; WITH99=$P99
kill "$LAGPID" 2>/dev/null || true; wait "$LAGPID" 2>/dev/null || true
stop_sampler
DPEAK=$(sort -n "$WORK/dir-rss" | tail -1)
LAG_ERR=$(grep -c error "$WORK/dir-lag" || true)
LAGN=$(grep -vc error "$WORK/dir-lag" || true)
p99() { sort -n | awk -v n="$LAGN" 'BEGIN{ k = int(n * 0.99); if (k < 1) k = 1 } NR == k { print }'; }
LAG99=$(grep -v error "$WORK/dir-lag" | awk '{print $1}' | p99)
LOOKUP_UNDER99=$(grep -v error "$WORK/dir-lag" | awk '{print $2}' | p99)
LOOKUP_UNDER50=$(grep -v error "$WORK/dir-lag" | awk '{print $2}' | sort -n | awk -v n="$LAGN" 'NR == int(n / 2) + 1 { print }')
LAG_EPOCHS=$(awk -v l="$LAG99" 'BEGIN{ if (l!="") printf "%.2f", l/1000; else print "-" }')
echo "   changes with map heads every second: $WITH/s (runs $WITH_RATES), p99 $WITH99 ms, $WITH_ERR errors; head age p99 $LAG99 ms ($LAG_ERR sampler errors); RSS peak $DPEAK MB"
SIZE=$(curl -sf "$URL/v2/log" | python3 -c 'import json,sys; print(json.load(sys.stdin)["tree_size"])')
row "key-directory changes/s: new identities (operator adds: a label by ECVRF, a device with its Ed25519 key checked), sync FULL, map heads every 1 s (wrk -t2 -c64; runs $WITH_RATES; $WITH_ERR errors)" "$WITH" "$NOHEAD with no map head during the runs (epoch 1 h; runs $NOHEAD_RATES)" "$(ratio "$WITH" "$NOHEAD")" ">= 0.8 x without heads" "$(ge "$(ratio "$WITH" "$NOHEAD")" 0.8 $((WITH_ERR + NOHEAD_ERR)))"
row "change latency p50 / worst p99 with map heads (ms)" "$WITH50 / $WITH99" "-" "-" "p99 <= 250" "$(le "$WITH99" 250 "$WITH_ERR")"
row "map lag under that load: p99 of the newest head's age (sampled every 100 ms), in 1-s epochs" "$LAG_EPOCHS" "-" "-" "<= 2 epochs" "$(le "$LAG_EPOCHS" 2 "$LAG_ERR")"
row "lookup latency while those changes run: p50 / p99 of the sampler's lookups ($LAGN; each a new connection) (ms)" "$LOOKUP_UNDER50 / $LOOKUP_UNDER99" "-" "-" "-" "-"
row "new identities/s against the ECVRF ceiling: 2 cores / prove time ($VRFP proofs/s on one core)" "$WITH" "$((2 * VRFP)) = 2 x $VRFP" "$(ratio "$WITH" $((2 * VRFP)))" ">= 0.8 x ceiling" "$(ge "$(ratio "$WITH" $((2 * VRFP)))" 0.8 "$WITH_ERR")"
row "new identities/s against their crypto alone: 2 cores / (VRF output + device key check) ($VRFO outputs/s, $POINTS key checks/s on one core; for reading the row above)" "$WITH" "$CRYPTO_CEIL" "$(ratio "$WITH" "$CRYPTO_CEIL")" "-" "-"
row "directory server RSS while changes ran (peak, MB; $SIZE entries after)" "$DPEAK" "-" "-" "<= 100" "$(le "$DPEAK" 100)"

# Lookups of people who exist: 2,000 identities added first.
python3 - "$URL" "$DTOKEN" "$WORK/device-keys.txt" <<'PY' || fail "adding the lookup identities"
import base64, http.client, json, os, sys, urllib.parse
url, token, keysfile = sys.argv[1], sys.argv[2], sys.argv[3]
keys = [l.strip() for l in open(keysfile)]
u = urllib.parse.urlparse(url)
c = http.client.HTTPConnection(u.hostname, u.port)
for i in range(2000):
    body = json.dumps({"identity": "user%d@bench.test" % i, "kind": "add",
                       "device": {"id": base64.b64encode(os.urandom(16)).decode(), "signing_key": keys[i % len(keys)]}})
    c.request("POST", "/v2/changes", body, {"Content-Type": "application/json", "Authorization": "Bearer " + token})
    r = c.getresponse(); r.read()
    if r.status != 200: sys.exit("add %d: HTTP %d" % (i, r.status))
PY
sleep 2.5   # two epochs: a head covers them all
wrk -t2 -c64 -d3s -s Benchmarks/wrk/directory_lookup.lua "$URL" -- 2000 "$LTOKEN" > /dev/null 2>&1 || true
wrk3 "$WORK/dir-lookup.wrk" -t2 -c64 -d"${SECS}s" --latency -s Benchmarks/wrk/directory_lookup.lua "$URL" -- 2000 "$LTOKEN"
DLOOK=$RATE; DLOOK_RATES=$RATES; DLOOK_ERR=$ERR; DLOOK50=$P50; DLOOK99=$P99
DRSS=$(rss_mb "$PID")
SIZE=$(curl -sf "$URL/v2/log" | python3 -c 'import json,sys; print(json.load(sys.stdin)["tree_size"])')
echo "   lookups: $DLOOK/s (runs $DLOOK_RATES), p50 $DLOOK50 ms, worst p99 $DLOOK99 ms, $DLOOK_ERR errors; RSS $DRSS MB"
# The auditor: the whole directory re-derived from empty state (its map and the labels' states in
# its state database), then a second run that goes on from where the first stopped. Peak RSS of
# each from wait4's ru_maxrss.
audit_run() {  # prints "SECONDS PEAK_MB EXIT"
  python3 - "$BIN/keyglass" "$URL" "$(tr -d '[:space:]' < "$DD/verifier-key")" "$WORK/dir-audit-state" <<'PY'
import os, sys, time
binary, url, vkey, state = sys.argv[1:5]
t0 = time.time()
pid = os.spawnv(os.P_NOWAIT, binary, [binary, "directory", "audit", "--log", url, "--vkey", vkey, "--state", state])
_, status, usage = os.wait4(pid, 0)
print("%.2f %d %d" % (time.time() - t0, usage.ru_maxrss // 1024, os.waitstatus_to_exitcode(status)))
PY
}
read -r AUD_S AUD_MB AUD_RC < <(audit_run 2> /dev/null | tail -1)
read -r AUD2_S AUD2_MB AUD2_RC < <(audit_run 2> /dev/null | tail -1)
echo "   directory audit of $SIZE entries: ${AUD_S} s, peak RSS ${AUD_MB} MB (exit $AUD_RC); again: ${AUD2_S} s, ${AUD2_MB} MB (exit $AUD2_RC)"
AUD_RATE=$(awk -v n="$SIZE" -v s="$AUD_S" 'BEGIN{ if (s > 0) printf "%d", n / s; else print 0 }')
row "directory audit from empty state: entries/s ($SIZE entries; map and label states in the auditor's SQLite state; exit $AUD_RC)" "$AUD_RATE" "-" "-" "exit 0" "$([ "$AUD_RC" = 0 ] && echo yes || echo NO)"
row "directory auditor peak RSS, first run / the next run, which resumes (MB)" "$AUD_MB / $AUD2_MB" "-" "-" "<= 100" "$(le "$AUD_MB" 100 "$AUD2_RC")"
stop_server

# The reference: inclusion proofs of a v1 log of the same size, this run, this machine.
D1="$WORK/dir-ref"
"$BIN/keyglass-server" init --data "$D1" --origin bench.keyglass/log > /dev/null
"$BIN/keyglass-server" bulk-load --data "$D1" --count "$SIZE" --batch 20000 > /dev/null 2> "$D1.bulk"
start_server "$D1" --sync FULL
wrk -t2 -c64 -d3s -s Benchmarks/wrk/inclusion.lua "$URL" -- "$SIZE" > /dev/null 2>&1 || true
wrk3 "$WORK/dir-ref.wrk" -t2 -c64 -d"${SECS}s" --latency -s Benchmarks/wrk/inclusion.lua "$URL" -- "$SIZE"
INC=$RATE; INC_RATES=$RATES
stop_server
echo "   reference: inclusion proofs at $SIZE entries (v1): $INC/s (runs $INC_RATES)"
row "directory lookups/s of identities that exist (GET /v2/lookup: VRF proof, map proof, leaf 0 and the head with their inclusion proofs; 2,000 identities, $SIZE entries; runs $DLOOK_RATES; $DLOOK_ERR errors)" "$DLOOK" "$INC inclusion proofs/s, v1 log of $SIZE entries (runs $INC_RATES)" "$(ratio "$DLOOK" "$INC")" ">= 0.5 x inclusion proofs" "$(ge "$(ratio "$DLOOK" "$INC")" 0.5 "$DLOOK_ERR")"
row "directory lookup latency p50 / worst p99 (ms)" "$DLOOK50 / $DLOOK99" "-" "-" "-" "-"
row "directory server RSS after the lookups (MB)" "$DRSS" "-" "-" "<= 100" "$(le "$DRSS" 100)"
rm -rf "$DD" "$D1"
