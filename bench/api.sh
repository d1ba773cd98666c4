#!/usr/bin/env bash
# Throughput and latency of the member API's hot paths, measured with wrk against a release
# build on this machine. Usage: bench/api.sh [sqlite|postgres] (default: both).
# PostgreSQL uses $HUIYUAN_BENCH_DATABASE_URL (default: a scratch database on 127.0.0.1:5432).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v wrk >/dev/null || { echo "wrk is needed: apt-get install -y wrk" >&2; exit 2; }
cargo build --release -q -p huiyuan
BIN=target/release/huiyuan
DURATION=${DURATION:-15s}
CONNECTIONS=${CONNECTIONS:-16}
PORT=${PORT:-18090}
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT

cat > "$WORK/enrol.lua" <<'LUA'
-- A new member per request: unique phones 139xxxxxxxx spread over threads.
local counter = 0
local thread_id = 0
local threads = {}
function setup(thread) thread:set("id", #threads); table.insert(threads, thread) end
function init(args) thread_id = id end
request = function()
  counter = counter + 1
  local phone = string.format("139%04d%04d", thread_id * 1000 + math.floor(counter / 10000), counter % 10000)
  local body = string.format('{"phone":"%s","name":"壓測會員","tags":["bench"]}', phone)
  return wrk.format("POST", "/v1/members", nil, body)
end
LUA
cat > "$WORK/search.lua" <<'LUA'
local counter = 0
request = function()
  counter = counter + 1
  local body = string.format('{"filter":{"phone":"170 0000 %04d"}}', (counter % 1000) + 1)
  return wrk.format("POST", "/v1/members/search", nil, body)
end
LUA

run() {
  local label=$1 key=$2 member=$3
  local auth="Authorization: Bearer $key"
  echo "## $label"
  echo "### GET /v1/members/{id}"
  wrk -t2 -c"$CONNECTIONS" -d"$DURATION" --latency -H "$auth" "http://127.0.0.1:$PORT/v1/members/$member" | grep -E 'Requests/sec|^ +(50|99)%'
  echo "### POST /v1/members/search (by phone)"
  wrk -t2 -c"$CONNECTIONS" -d"$DURATION" --latency -H "$auth" -H 'content-type: application/json' -s "$WORK/search.lua" "http://127.0.0.1:$PORT" | grep -E 'Requests/sec|^ +(50|99)%|Non-2xx'
  echo "### POST /v1/members (enrol, new phone each time)"
  wrk -t2 -c"$CONNECTIONS" -d"$DURATION" --latency -H "$auth" -H 'content-type: application/json' -s "$WORK/enrol.lua" "http://127.0.0.1:$PORT" | grep -E 'Requests/sec|^ +(50|99)%|Non-2xx'
}

wait_up() {
  for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$PORT/readyz" >/dev/null && return; sleep 0.2; done
  echo "server did not start" >&2; exit 1
}

first_member() {
  curl -s -H "Authorization: Bearer $1" "http://127.0.0.1:$PORT/v1/members?limit=1" | sed -E 's/.*"id":"(mem_[0-9A-Z]+)".*/\1/'
}

backend=${1:-both}
export HUIYUAN_RATE_LIMIT_PER_MINUTE=100000000 HUIYUAN_LOG_FORMAT=json RUST_LOG=warn
if [ "$backend" = sqlite ] || [ "$backend" = both ]; then
  "$BIN" demo --data "$WORK/sqlite" --port "$PORT" --members 1000 > "$WORK/demo.out" &
  wait_up
  key=$(sed -n 's/^API key: //p' "$WORK/demo.out")
  run "SQLite (embedded)" "$key" "$(first_member "$key")"
  kill %1; wait %1 2>/dev/null || true
fi
if [ "$backend" = postgres ] || [ "$backend" = both ]; then
  url=${HUIYUAN_BENCH_DATABASE_URL:-}
  if [ -z "$url" ]; then
    db="huiyuan_bench_$$"
    psql -h 127.0.0.1 -U postgres -qc "CREATE DATABASE $db"
    url="postgres://postgres@127.0.0.1:5432/$db"
  fi
  export HUIYUAN_MASTER_KEY
  HUIYUAN_MASTER_KEY=$(head -c32 /dev/urandom | base64)
  key=$(HUIYUAN_ADMIN_PASSWORD=bench-password-1 "$BIN" brand create --database "$url" --slug bench --name Bench --admin-username bench-admin | sed -n 's/^API key: //p')
  "$BIN" serve --database "$url" --listen "127.0.0.1:$PORT" &
  wait_up
  for i in $(seq 1 1000); do
    curl -s -o /dev/null -H "Authorization: Bearer $key" -H 'content-type: application/json' \
      "http://127.0.0.1:$PORT/v1/members" -d "{\"phone\":\"170 0000 $(printf %04d "$i")\"}"
  done
  run "PostgreSQL 15 (one server process)" "$key" "$(first_member "$key")"
  kill %1 2>/dev/null || kill $(jobs -p); wait 2>/dev/null || true
  [ -n "${db:-}" ] && psql -h 127.0.0.1 -U postgres -qc "DROP DATABASE $db WITH (FORCE)"
fi
