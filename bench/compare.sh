#!/usr/bin/env bash
# Analytics against what an analyst would script, on the same files in one run: RFM (ours,
# pandas, DuckDB SQL) on a seeded synthetic table of ~10,000,000 transactions for 1,000,000
# members, and the BG/NBD fit (ours, lifetimes) on the CDNOW summary and on the 1M-member summary.
# Prints times, peak memory and ratios; the figures go to docs/benchmarks.md.
# Usage: bench/compare.sh                  (MEMBERS=1000000 SEED=1 WORK=/tmp/huiyuan-compare)
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=${WORK:-/tmp/huiyuan-compare}
MEMBERS=${MEMBERS:-1000000}
SEED=${SEED:-1}
VENV=${VENV:-bench/.venv}
mkdir -p "$WORK"
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q -r bench/requirements.txt
fi
cargo build --release -q -p huiyuan
BIN=target/release/huiyuan
TX="$WORK/tx-$MEMBERS-$SEED.csv"
[ -f "$TX" ] || "$BIN" analytics synthesize --members "$MEMBERS" --seed "$SEED" --output "$TX"
exec "$VENV/bin/python" bench/compare.py --bin "$BIN" --transactions "$TX" \
  --cdnow crates/huiyuan-analytics/tests/fixtures/cdnow_summary.csv --work "$WORK"
