#!/usr/bin/env bash
# Load: the realistic mix of `huiyuan bench load` (70% purchases, 15% quotes, 10% member reads,
# 5% coupon redemptions) at fixed rates, per-route p50/p99/p99.9, and the rate where p99 passes
# 50 ms. SQLite: `huiyuan demo` (its demo brand and history). PostgreSQL: two `serve` processes
# behind one scratch database, the load spread over both.
# Usage: bench/load.sh [sqlite|postgres] (default both). RATES, STEP_SECONDS, DEMO_MEMBERS to change.
set -euo pipefail
cd "$(dirname "$0")/.."
RATES=${RATES:-200,400,800,1200,1600,2400}
STEP_SECONDS=${STEP_SECONDS:-15}
DEMO_MEMBERS=${DEMO_MEMBERS:-20000}
cargo build --release -q -p huiyuan
BIN=target/release/huiyuan
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT
export HUIYUAN_RATE_LIMIT_PER_MINUTE=100000000

wait_up() {
  for _ in $(seq 1 3000); do curl -sf "http://127.0.0.1:$1/readyz" >/dev/null && return; sleep 0.2; done
  echo "server on $1 did not start" >&2; exit 1
}

backend=${1:-both}
if [ "$backend" = sqlite ] || [ "$backend" = both ]; then
  echo "# SQLite: huiyuan demo ($DEMO_MEMBERS members)"
  # DEMO_DATA keeps the demo between runs (generating 20,000 members takes minutes).
  "$BIN" demo --data "${DEMO_DATA:-$WORK/demo}" --port 18101 --members "$DEMO_MEMBERS" > "$WORK/demo.out" 2> "$WORK/demo.log" &
  wait_up 18101
  key=$(sed -n 's/^API key: //p' "$WORK/demo.out" | head -n 1)
  "$BIN" bench load --url http://127.0.0.1:18101 --key "$key" --rates "$RATES" --seconds "$STEP_SECONDS"
  kill %1; wait %1 2>/dev/null || true
fi
if [ "$backend" = postgres ] || [ "$backend" = both ]; then
  admin=${HUIYUAN_BENCH_ADMIN_URL:-postgres://postgres@127.0.0.1:5432/postgres}
  db="huiyuan_load_$$"
  psql "$admin" -q -c "CREATE DATABASE $db"
  url="${admin%/*}/$db"
  echo "# PostgreSQL: two serve processes on one database"
  key=$(HUIYUAN_ADMIN_PASSWORD=load-test-password "$BIN" brand create --data "$WORK/pg" --database "$url" \
        --slug load --name "Load" --admin-username load-admin | sed -n 's/^API key: //p')
  "$BIN" serve --data "$WORK/pg" --database "$url" --listen 127.0.0.1:18102 2> "$WORK/a.log" &
  "$BIN" serve --data "$WORK/pg" --database "$url" --listen 127.0.0.1:18103 2> "$WORK/b.log" &
  wait_up 18102; wait_up 18103
  "$BIN" bench load --url http://127.0.0.1:18102 --url http://127.0.0.1:18103 --key "$key" \
    --rates "$RATES" --seconds "$STEP_SECONDS"
  kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true
  psql "$admin" -q -c "DROP DATABASE IF EXISTS $db WITH (FORCE)"
fi
