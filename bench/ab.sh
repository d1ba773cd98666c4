#!/usr/bin/env bash
# Before and after in one run: the purchase and till benchmarks of two release builds of
# `huiyuan`, alternated round by round (this machine is shared and noisy: only figures of one run
# compare). Prints each figure's median per build and the ratio after/before.
# Usage: bench/ab.sh BEFORE_BIN AFTER_BIN     (ROUNDS=3; PostgreSQL at 127.0.0.1:5432, user postgres)
# e.g.   git worktree add /tmp/before <rev> && CARGO_TARGET_DIR=/tmp/before-target \
#          cargo build --release -p huiyuan --manifest-path /tmp/before/Cargo.toml
#        cargo build --release -p huiyuan && bench/ab.sh /tmp/before-target/release/huiyuan target/release/huiyuan
set -euo pipefail
BEFORE=$1
AFTER=$2
ROUNDS=${ROUNDS:-3}
PGHOST=${PGHOST:-127.0.0.1}
export RUST_LOG=warn
DBS=(huiyuan_ab_before_$$ huiyuan_ab_after_$$)
for db in "${DBS[@]}"; do psql -h "$PGHOST" -U postgres -qc "CREATE DATABASE $db"; done
OUT=$(mktemp -d)
trap 'for db in "${DBS[@]}"; do psql -h "$PGHOST" -U postgres -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)"; done; rm -rf "$OUT"' EXIT

# name | pattern of the figure in the output | arguments after `bench`
BENCHES=(
  "sqlite_batch|[0-9]+ purchases/s|purchases --members 2000 --purchases 50000"
  "sqlite_http|= [0-9]+/s|purchases --members 2000 --http --concurrency 64 --seconds 10"
  "sqlite_till|[0-9]+ commits/s|checkout --members 300 --sales 2000"
  "pg_batch|[0-9]+ purchases/s|purchases --members 2000 --purchases 50000 --database URL"
  "pg_till|[0-9]+ commits/s|checkout --members 300 --sales 2000 --database URL"
)

for round in $(seq 1 "$ROUNDS"); do
  for side in before after; do
    if [ "$side" = before ]; then bin=$BEFORE; db=${DBS[0]}; else bin=$AFTER; db=${DBS[1]}; fi
    for b in "${BENCHES[@]}"; do
      IFS='|' read -r name pattern args <<<"$b"
      args=${args//URL/postgres://postgres@$PGHOST:5432/$db}
      # shellcheck disable=SC2086
      figure=$("$bin" bench $args 2>&1 | grep -oE "$pattern" | head -1 | grep -oE '[0-9]+' | head -1)
      echo "$figure" >> "$OUT/$name.$side"
      echo "round $round $side $name: $figure/s" >&2
    done
  done
done

median() { sort -g "$1" | sed -n "$(( (ROUNDS + 1) / 2 ))p"; }
echo "| figure | before | after | after/before | runs (before; after) |"
echo "|---|---|---|---|---|"
for b in "${BENCHES[@]}"; do
  name=${b%%|*}
  before=$(median "$OUT/$name.before")
  after=$(median "$OUT/$name.after")
  ratio=$(awk -v a="$after" -v b="$before" 'BEGIN { printf "%.2f", a / b }')
  echo "| $name | $before | $after | $ratio | $(paste -sd, "$OUT/$name.before"); $(paste -sd, "$OUT/$name.after") |"
done
