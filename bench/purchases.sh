#!/usr/bin/env bash
# Purchase ingestion on this machine, SQLite and PostgreSQL side by side, with pgbench's naive
# purchase (bench/naive-purchase.sql) on the same PostgreSQL server as the baseline, all in one
# run (this machine is shared and noisy: compare figures of one run only).
# Each figure is the median of RUNS runs (default 3).
# Usage: bench/purchases.sh            (PostgreSQL at 127.0.0.1:5432, user postgres)
#        SECONDS_PER_RUN=15 PURCHASES=100000 MEMBERS=2000 RUNS=5 bench/purchases.sh
set -euo pipefail
cd "$(dirname "$0")/.."
command -v pgbench >/dev/null || { echo "pgbench is needed: apt-get install -y postgresql-contrib" >&2; exit 2; }
cargo build --release -q -p huiyuan
BIN=target/release/huiyuan
MEMBERS=${MEMBERS:-2000}
PURCHASES=${PURCHASES:-50000}
SECS=${SECONDS_PER_RUN:-10}
PGHOST=${PGHOST:-127.0.0.1}
DB=huiyuan_bench_$$
export RUST_LOG=warn
psql -h "$PGHOST" -U postgres -qc "CREATE DATABASE $DB"
trap 'psql -h "$PGHOST" -U postgres -qc "DROP DATABASE IF EXISTS $DB WITH (FORCE)"; rm -f "$LOG"' EXIT
URL="postgres://postgres@$PGHOST:5432/$DB"

LOG=$(mktemp)
RUNS=${RUNS:-3}
# Runs a command $RUNS times, shows its output, and prints the median of the first number
# matching $1 in each run (the machine is shared: single runs swing by a factor of several).
measure() {
  local pattern=$1; shift
  local values=()
  for _ in $(seq 1 "$RUNS"); do
    "$@" > "$LOG" 2>&1 || { cat "$LOG" >&2; exit 1; }
    grep -vE '^(backend|set up)' "$LOG" >&2
    values+=("$(grep -oE "$pattern" "$LOG" | head -1 | grep -oE '[0-9]+(\.[0-9]+)?' | tail -1)")
  done
  printf '%s\n' "${values[@]}" | sort -g | sed -n "$(( (RUNS + 1) / 2 ))p"
}

echo "== SQLite (scratch folder)"
sqlite_batch=$(measure '[0-9]+ purchases/s' "$BIN" bench purchases --members "$MEMBERS" --purchases "$PURCHASES")
sqlite_http=$(measure '= [0-9]+/s' "$BIN" bench purchases --members "$MEMBERS" --http --concurrency 64 --seconds "$SECS")
sqlite_p99=$(measure 'p99 [0-9.]+' "$BIN" bench purchases --members "$MEMBERS" --http --rate 1000 --concurrency 256 --seconds "$SECS")

echo "== PostgreSQL ($URL)"
pg_batch=$(measure '[0-9]+ purchases/s' "$BIN" bench purchases --database "$URL" --members "$MEMBERS" --purchases "$PURCHASES")
pg_http=$(measure '= [0-9]+/s' "$BIN" bench purchases --database "$URL" --members "$MEMBERS" --http --concurrency 64 --seconds "$SECS")
pg_p99=$(measure 'p99 [0-9.]+' "$BIN" bench purchases --database "$URL" --members "$MEMBERS" --http --rate 1000 --concurrency 256 --seconds "$SECS")

echo "== pgbench: the naive purchase, 16 clients"
psql -h "$PGHOST" -U postgres -d "$DB" -qf bench/naive-setup.sql 2>/dev/null
naive=$(measure 'tps = [0-9.]+' pgbench -h "$PGHOST" -U postgres -n -c 16 -j 2 -T "$SECS" -f bench/naive-purchase.sql "$DB")

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
echo
echo "| figure | purchases/s | ratio |"
echo "|---|---|---|"
echo "| SQLite, batch use case | $sqlite_batch | $(ratio "$sqlite_batch" 20000) of the 20,000 goal |"
echo "| SQLite, HTTP single, 64 connections | $sqlite_http | $(ratio "$sqlite_http" 3000) of the 3,000 goal |"
echo "| SQLite, HTTP single at 1,000/s: p99 | $sqlite_p99 ms | goal < 20 ms |"
echo "| PostgreSQL, batch use case | $pg_batch | $(ratio "$pg_batch" "$naive") × pgbench |"
echo "| PostgreSQL, HTTP single, 64 connections | $pg_http | $(ratio "$pg_http" "$naive") × pgbench |"
echo "| PostgreSQL, HTTP single at 1,000/s: p99 | $pg_p99 ms | goal < 20 ms |"
echo "| pgbench naive purchase, 16 clients | $naive | 1.00 |"
