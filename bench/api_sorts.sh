#!/usr/bin/env bash
# Small pages beside clients that sort (issue 16, item 4): `host serve` over
# the scale-S Gold that bench/silver_gold.sh leaves (SQLite); first small
# pages alone (the baseline), then the same pages while 4 connections rotate
# through 40 orders of their own (every request a full sort of
# dm_customer_metrics or dm_stock_performance, past the 16 orders a table
# keeps). Prints each run's latency percentiles and how the sorting clients
# were answered (200, or 503 with Retry-After when they queue too long).
# Usage: bench/api_sorts.sh [SCALE]   (default 0.1; run bench/silver_gold.sh SCALE first)
set -euo pipefail
cd "$(dirname "$0")/.."
scale="${1:-0.1}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/medallion/target}"
work="${BENCH_DIR:-/tmp/medallion-bench}/scale-$scale"
seconds="${SECONDS_PER_RUN:-20}"
port=18081

source bench/serve_gold.sh "$work/serve-sorts.log"
lua="$(mktemp /tmp/medallion-sorts.XXXXXX.lua)"
trap 'kill $server 2>/dev/null || true; rm -f "$lua"' EXIT

# 40 orders: every column of two tables, both ways.
python3 - "$lua" <<'PY'
import sys
tables = {
    "dm_customer_metrics": ["customer_id", "country", "total_orders", "total_spent", "avg_order_value",
                            "first_order_date", "last_order_date", "recency_days", "rfm_score", "segment"],
    "dm_stock_performance": ["product_id", "product_name", "category", "stock_quantity", "total_quantity_sold",
                             "stock_turnover_ratio", "avg_daily_sales", "days_of_cover", "stock_status", "reorder_qty"],
}
paths = [f"/odata/{t}?$top=10&$orderby={c}%20{d}" for t, cs in tables.items() for c in cs for d in ("asc", "desc")]
assert len(paths) == 40
with open(sys.argv[1], "w") as f:
    f.write("local paths = {" + ",".join(f'"{p}"' for p in paths) + "}\n")
    f.write("local i = 0\nrequest = function()\n  i = i + 1\n  return wrk.format('GET', paths[(i % #paths) + 1])\nend\n")
    f.write("done = function(summary, latency, requests)\n  io.write(string.format('sorting clients: %d requests, %d non-2xx (503 with Retry-After), p50 %.1f ms\\n', summary.requests, summary.errors.status, latency:percentile(50) / 1000))\nend\n")
PY

pages() {
    wrk -t1 -c4 -d"${seconds}s" --latency -H "Authorization: Bearer $token" "$base/gold/sales/daily?page=1&page_size=20" \
        | grep -E "Requests/sec|  50%|  90%|  99%|Non-2xx"
}
echo "== baseline: small pages alone (dm_sales_daily, 20 rows), 4 connections, ${seconds} s"
pages
echo "== the same pages while 4 connections rotate through 40 orders"
wrk -t1 -c4 -d"$((seconds + 2))s" -H "Authorization: Bearer $token" -s "$lua" "$base" > "$work/sorts.out" &
sorts=$!
sleep 1
pages
wait $sorts
grep "sorting clients" "$work/sorts.out"
echo "server RSS $(ps -o rss= -p $server) KiB"
