#!/usr/bin/env bash
# The pages benchmark (issue: see the pipeline): two runs of pipeline.yaml on
# scale-S sources (release host, SQLite Gold), then `host serve` on them and
#   each page under /ui and /metrics under wrk (one connection, Basic
#   credentials: what a browser sends), beside /health on the same server as
#   the baseline (the cheapest authenticated-free answer it gives);
#   each page opened in headless Chromium (tests/ui/check.mjs): the time to
#   its load event, style sheet included.
# Target: every page under 300 ms at scale 1.
# Usage: bench/ui_pages.sh [SCALE]   (default 1)
set -euo pipefail
cd "$(dirname "$0")/.."
scale="${1:-1}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/medallion/target}"
work="${BENCH_DIR:-/tmp/medallion-bench}/scale-$scale"
seconds="${SECONDS_PER_RUN:-5}"
port=18090

cargo build --quiet --release -p medallion-host
cargo xtask build-plugins --out "$work/plugins" >/dev/null
host="$CARGO_TARGET_DIR/release/host"
[ -f "$work/sources/order_items.csv" ] || "$host" gen-data --scale "$scale" --out "$work/sources"
[ -d tests/ui/node_modules ] || npm ci --prefix tests/ui --no-audit --no-fund --loglevel=error >/dev/null

ui="$work/ui"
if [ ! -f "$ui/gold.db" ]; then
    for day in 2026-11-23 2026-11-24; do
        /usr/bin/time -f "run $day: %e s, peak %M KiB" "$host" run pipeline.yaml --set "lake=$ui/lake" \
            --set "sources.dir=$work/sources" --set "plugins.dir=$work/plugins" --set "gold.store=sqlite:$ui/gold.db" \
            --ingest-date "$day" >/dev/null
    done
fi

serve_dir="$ui"
source bench/serve_gold.sh "$ui/serve.log"
basic="Basic $(printf 'analyst:%s' "$password" | base64 | tr -d '\n')"
sleep 2   # the watcher reads the quarantine sample once, right after the start
echo "server RSS $(ps -o rss= -p $server) KiB; pages' sizes:"
for page in /ui /ui/runs /ui/quarantine /ui/gold /metrics; do
    printf '  %-16s %s bytes\n' "$page" "$(curl -s -H "Authorization: $basic" "$base$page" | wc -c)"
done

bench() {
    printf '== %-16s ' "$1"
    wrk -t1 -c1 -d"${seconds}s" --latency -H "Authorization: $basic" "$base$1" \
        | awk '/Requests\/sec/ {r=$2} /  50%/ {p50=$2} /  99%/ {p99=$2} /Non-2xx/ {bad=$0} END {printf "%s req/s, p50 %s, p99 %s %s\n", r, p50, p99, bad}'
}
bench /health
for page in /ui /ui/runs /ui/quarantine /ui/gold /metrics; do bench "$page"; done

echo "== headless Chromium, time to the load event (ms)"
mkdir -p "$ui/shots"
node tests/ui/check.mjs "$base" analyst "$password" "$ui/shots" /ui /ui/runs /ui/quarantine /ui/gold \
    | python3 -c 'import json,sys; [print("  %-16s %4d ms  (%d console errors, %d requests elsewhere)" % (p["path"], p["load_ms"], len(p["console_errors"]), len(p["outside_requests"]))) for p in json.load(sys.stdin)]'
