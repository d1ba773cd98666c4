#!/usr/bin/env bash
# Crash safety: `huiyuan bench crash` kills a server with SIGKILL at random moments of a mixed
# load (purchases, coupon redemptions raced by two orders, wallet top-ups, enrolments with an
# Idempotency-Key), restarts it, retries every unanswered request and checks the invariants
# after each kill. SQLite (one process), then PostgreSQL (two processes, one killed each time).
# Exits non-zero when any invariant breaks. Usage: bench/crash.sh [sqlite|postgres] (default both)
# PostgreSQL: a scratch database is made on $HUIYUAN_BENCH_ADMIN_URL's server
# (default postgres://postgres@127.0.0.1:5432/postgres) and dropped afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."
KILLS=${KILLS:-20}
cargo build --release -q -p huiyuan
BIN=target/release/huiyuan
backend=${1:-both}
status=0

if [ "$backend" = sqlite ] || [ "$backend" = both ]; then
  echo "## SQLite, one process, $KILLS kills"
  "$BIN" bench crash --kills "$KILLS" --seed "${SEED:-1}" || status=1
fi
if [ "$backend" = postgres ] || [ "$backend" = both ]; then
  admin=${HUIYUAN_BENCH_ADMIN_URL:-postgres://postgres@127.0.0.1:5432/postgres}
  db="huiyuan_crash_$$"
  psql "$admin" -q -c "CREATE DATABASE $db"
  trap 'psql "$admin" -q -c "DROP DATABASE IF EXISTS $db WITH (FORCE)"' EXIT
  echo "## PostgreSQL, two processes, $KILLS kills"
  "$BIN" bench crash --kills "$KILLS" --nodes 2 --database "${admin%/*}/$db" --seed "${SEED:-1}" || status=1
fi
exit $status
