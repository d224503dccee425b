#!/usr/bin/env bash
# make test: schemathesis (PyPI) fuzzes a live server from Spec/openapi.yaml, a bounded number of
# examples per operation and a fixed seed (the same cases every run: no flakes): no 5xx, every answer
# matches the schema (status, content type, headers, body), undeclared methods get 405, and bad input
# is refused. One check is left out: positive_data_acceptance expects every schema-valid request to
# be accepted, but the server also refuses what a schema cannot express (start < end, a tree_size
# beyond the log, an empty identity, tile paths in their canonical spelling), with a 400 and a reason.
set -euo pipefail
BIN=${1:-.build/debug}
EXAMPLES=${FUZZ_EXAMPLES:-25}
dir=$(mktemp -d)
pid=""
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$dir"' EXIT
"$BIN/keyglass-server" init --data "$dir/data" --origin localhost/fuzz > /dev/null
"$BIN/keyglass-server" serve --data "$dir/data" --port 0 --port-file "$dir/port" --log-level error > "$dir/server.log" 2>&1 &
pid=$!
for _ in $(seq 1 200); do [ -s "$dir/port" ] && break; sleep 0.05; done
[ -s "$dir/port" ] || { cat "$dir/server.log"; echo "fuzz: the server did not start" >&2; exit 1; }
url="http://127.0.0.1:$(cat "$dir/port")"
token=$(cat "$dir/data/publish-token")
# A few entries, so reads find data as well as refusals.
for i in 1 2 3 4 5; do
  key=$(head -c 32 /dev/urandom | base64)
  curl -sf -X POST "$url/v1/keys" -H "Authorization: Bearer $token" -H "Content-Type: application/json" \
    -d "{\"identity\":\"fuzz$i@example.com\",\"key_type\":\"x25519\",\"public_key\":\"$key\"}" > /dev/null
done
schemathesis run Spec/openapi.yaml --url "$url" -n "$EXAMPLES" --seed 1 --checks all \
  --exclude-checks positive_data_acceptance -H "Authorization: Bearer $token" --no-color 2>&1 | tail -25
status=${PIPESTATUS[0]}
kill -0 "$pid" 2>/dev/null || { echo "fuzz: the server died" >&2; cat "$dir/server.log"; exit 1; }
exit "$status"
