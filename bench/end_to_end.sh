#!/usr/bin/env bash
# The end-to-end benchmark (issue: a newcomer's first hour): sources ->
# Bronze -> Silver -> Gold at scale S, three ways, in the same session:
#   host run pipeline.yaml            (this project, release build)
#   bench/medallion_polars.py all     (a plain polars script, same rules)
#   bench/medallion_spark.py          (PySpark in local mode, same rules)
# checks that the three Gold files hold the same rows and sums, and prints
# per-stage times, totals, peak memory and ratios (bench/end_to_end.py).
# Usage: bench/end_to_end.sh [SCALE] [RUNS]   (default 0.1 and 3; scale 1 by hand, e.g. bench/end_to_end.sh 1 1)
set -euo pipefail
cd "$(dirname "$0")/.."
scale="${1:-0.1}"
runs="${2:-3}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/medallion/target}"
work="${BENCH_DIR:-/tmp/medallion-bench}/end-to-end-$scale"

command -v java >/dev/null || { echo "PySpark needs Java 17: apt-get install openjdk-17-jdk-headless" >&2; exit 1; }
python3 -c "import polars, pyspark, psutil" 2>/dev/null || pip install -q polars pyspark psutil
rustup target add wasm32-wasip2 >/dev/null
cargo build --quiet --release -p medallion-host
cargo xtask build-plugins --out "$work/plugins" >/dev/null
host="$CARGO_TARGET_DIR/release/host"

[ -f "$work/sources/order_items.csv" ] || "$host" gen-data --scale "$scale" --seed 42 --out "$work/sources"
"$host" plugins list --dir "$work/plugins" >/dev/null   # compile the plugins into the cache once, outside the timings
python3 bench/end_to_end.py --host "$host" --plugins "$work/plugins" --sources "$work/sources" \
    --work "$work/runs" --runs "$runs"
