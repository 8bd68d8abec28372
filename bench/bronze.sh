#!/usr/bin/env bash
# The Bronze benchmark (issue: sources, Bronze and the lake): scale-S sources
# landed in a local lake by `host ingest`, against the same conversion with
# polars' own CSV reader and Parquet writer (bench/bronze_polars.py), as
# whole processes under hyperfine, plus each one's peak memory.
# Usage: bench/bronze.sh [SCALE]   (default 1: about 1.2 GB of CSV)
set -euo pipefail
cd "$(dirname "$0")/.."
scale="${1:-1}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/medallion/target}"
work="${BENCH_DIR:-/tmp/medallion-bench}/scale-$scale"

command -v hyperfine >/dev/null || { apt-get update -qq && apt-get install -y -qq hyperfine >/dev/null; }
python3 -c "import polars" 2>/dev/null || pip install -q polars
cargo build --quiet --release -p medallion-host
host="$CARGO_TARGET_DIR/release/host"

[ -f "$work/sources/order_items.csv" ] || "$host" gen-data --scale "$scale" --out "$work/sources"
du -sh --apparent-size "$work"/sources/*.csv | sed 's/^/  /'

hyperfine --warmup 1 --runs 5 -N \
    "$host ingest --sources $work/sources --lake $work/lake --ingest-date 2026-11-24" \
    "python3 bench/bronze_polars.py $work/sources $work/polars"

echo "== peak memory"
/usr/bin/time -f "host ingest: %e s, peak %M KiB" "$host" ingest --sources "$work/sources" --lake "$work/lake" --ingest-date 2026-11-24 >/dev/null 2>/tmp/medallion-bench-time || true
tail -1 /tmp/medallion-bench-time
/usr/bin/time -f "polars:      %e s, peak %M KiB" python3 bench/bronze_polars.py "$work/sources" "$work/polars" 2>&1 | tail -1
