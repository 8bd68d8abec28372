#!/usr/bin/env bash
# The Silver and Gold benchmarks (issues: Silver; Gold): scale-S sources
# landed in Bronze once, then, as whole processes under hyperfine,
#   host run pipeline.yaml --only silver   vs  bench/medallion_polars.py silver
#   host run pipeline.yaml --only gold     vs  bench/medallion_polars.py gold    (SQLite store)
# each one's peak memory, and the Gold load into a real PostgreSQL (a
# throwaway server on loopback) with its rows per second.
# Usage: bench/silver_gold.sh [SCALE]   (default 1)
set -euo pipefail
cd "$(dirname "$0")/.."
scale="${1:-1}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/medallion/target}"
work="${BENCH_DIR:-/tmp/medallion-bench}/scale-$scale"

command -v hyperfine >/dev/null || { apt-get update -qq && apt-get install -y -qq hyperfine >/dev/null; }
python3 -c "import polars" 2>/dev/null || pip install -q polars
cargo build --quiet --release -p medallion-host
cargo xtask build-plugins --out "$work/plugins" >/dev/null
host="$CARGO_TARGET_DIR/release/host"

[ -f "$work/sources/order_items.csv" ] || "$host" gen-data --scale "$scale" --out "$work/sources"
run() { "$host" run pipeline.yaml --set "lake=$work/lake" --set "sources.dir=$work/sources" \
    --set "plugins.dir=$work/plugins" --set "gold.store=sqlite:$work/gold.db" "$@"; }
run --only bronze --ingest-date 2026-11-24 >/dev/null
python3 bench/medallion_polars.py silver "$work/lake" "$work/polars-silver"   # warm the page cache, and the Gold baseline's input

echo "== Bronze -> Silver"
hyperfine --warmup 1 --runs 5 -N \
    "$host run pipeline.yaml --set lake=$work/lake --set sources.dir=$work/sources --set plugins.dir=$work/plugins --set gold.store=sqlite:$work/gold.db --only silver" \
    "python3 bench/medallion_polars.py silver $work/lake $work/polars-silver"

echo "== Silver -> Gold (SQLite)"
hyperfine --warmup 1 --runs 5 -N \
    "$host run pipeline.yaml --set lake=$work/lake --set sources.dir=$work/sources --set plugins.dir=$work/plugins --set gold.store=sqlite:$work/gold.db --only gold" \
    "python3 bench/medallion_polars.py gold $work/polars-silver $work/polars-gold.db"

echo "== peak memory"
for stage in silver gold; do
    /usr/bin/time -f "host --only $stage: %e s, peak %M KiB" "$host" run pipeline.yaml --set "lake=$work/lake" \
        --set "sources.dir=$work/sources" --set "plugins.dir=$work/plugins" --set "gold.store=sqlite:$work/gold.db" \
        --only "$stage" >/dev/null 2>/tmp/medallion-bench-time || true
    tail -1 /tmp/medallion-bench-time
done
/usr/bin/time -f "polars silver: %e s, peak %M KiB" python3 bench/medallion_polars.py silver "$work/lake" "$work/polars-silver" 2>&1 >/dev/null | tail -1
/usr/bin/time -f "polars gold:   %e s, peak %M KiB" python3 bench/medallion_polars.py gold "$work/polars-silver" "$work/polars-gold.db" 2>&1 >/dev/null | tail -1

echo "== Gold into PostgreSQL (binary COPY)"
. bench/postgres.sh
start_postgres
for i in 1 2 3; do
    RUST_LOG=info,medallion_engine::gold=debug "$host" run pipeline.yaml --set "lake=$work/lake" \
        --set "sources.dir=$work/sources" --set "plugins.dir=$work/plugins" \
        --set "gold.store=postgres://medallion@127.0.0.1:$port/postgres" --only gold 2>&1 >/dev/null | grep "loaded gold table" | sed 's/^.*INFO //; s/^.*DEBUG //'
done
