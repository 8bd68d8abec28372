#!/usr/bin/env bash
# The API benchmark (issue: serving Gold): `host serve` over the scale-S Gold
# that bench/silver_gold.sh leaves (SQLite), loaded with wrk on loopback, the
# server and wrk sharing the machine:
#   a 100-row page of dm_sales_daily; the first and a page near the end of the
#   1.9M-row dm_customer_metrics (1000 rows each); reading all of
#   dm_customer_metrics through OData nextLink pages (bench/odata_read_all.py).
# The reference point in the same run: the same deep page as a PostgreSQL
# query (ORDER BY ... LIMIT/OFFSET, what an OFFSET-paging API such as the
# reference or PostgREST runs for it), timed with pgbench on a throwaway
# server holding the same Gold.
# Usage: bench/api.sh [SCALE]   (default 1; run bench/silver_gold.sh SCALE first)
set -euo pipefail
cd "$(dirname "$0")/.."
scale="${1:-1}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/medallion/target}"
work="${BENCH_DIR:-/tmp/medallion-bench}/scale-$scale"
seconds="${SECONDS_PER_RUN:-10}"
port=18080

source bench/serve_gold.sh "$work/serve.log"
rows="$(curl -s -H "Authorization: Bearer $token" "$base/odata/dm_customer_metrics/\$count")"
last_page=$(( (rows + 999) / 1000 ))
echo "dm_customer_metrics: $rows rows, $last_page pages of 1000; server RSS $(ps -o rss= -p $server) KiB"

bench() {
    echo "== $1"
    wrk -t1 -c"${CONNECTIONS:-16}" -d"${seconds}s" --latency -H "Authorization: Bearer $token" "$base$2" \
        | grep -E "Requests/sec|Transfer/sec|  50%|  99%|Non-2xx"
}
bench "dm_sales_daily, 100 rows" "/gold/sales/daily?page=1&page_size=100"
bench "dm_customer_metrics, first page of 1000" "/gold/customers/metrics?page=1&page_size=1000"
bench "dm_customer_metrics, page $((last_page - 1)) of 1000" "/gold/customers/metrics?page=$((last_page - 1))&page_size=1000"
bench "dm_customer_metrics, OData \$top=1000 ordered by total_spent" "/odata/dm_customer_metrics?\$top=1000&\$orderby=total_spent%20desc"

echo "== all of dm_customer_metrics through OData nextLink"
python3 bench/odata_read_all.py "$base/odata/dm_customer_metrics" "$token"

if [ -n "${PG_REFERENCE:-1}" ] && ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
    echo "== reference point: the deep page as a PostgreSQL OFFSET query (pgbench, same Gold)"
    bin="$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)"
    pgdir="$(mktemp -d /tmp/medallion-pg-bench.XXXXXX)"; chmod 755 "$pgdir"
    as_pg() { if [ "$(id -u)" = 0 ]; then chown -R postgres "$pgdir"; runuser -u postgres -- "$@"; else "$@"; fi; }
    as_pg "$bin/initdb" -D "$pgdir/data" -U medallion --auth=trust >/dev/null
    as_pg "$bin/pg_ctl" -D "$pgdir/data" -o "-p 15433 -k $pgdir -c listen_addresses=127.0.0.1" -w start >/dev/null
    trap 'kill $server 2>/dev/null || true; as_pg "$bin/pg_ctl" -D "$pgdir/data" -m immediate stop >/dev/null 2>&1 || true; rm -rf "$pgdir"' EXIT
    pg="postgres://medallion@127.0.0.1:15433/postgres"
    "$host" run pipeline.yaml --set "lake=$work/lake" --set "plugins.dir=$work/plugins" --set "gold.store=$pg" --only gold >/dev/null
    offset=$(( (last_page - 2) * 1000 ))
    echo "SELECT * FROM datamart.dm_customer_metrics ORDER BY total_spent DESC, customer_id LIMIT 1000 OFFSET $offset;" > "$pgdir/deep.sql"
    echo "SELECT * FROM datamart.dm_customer_metrics ORDER BY total_spent DESC, customer_id LIMIT 1000 OFFSET 0;" > "$pgdir/first.sql"
    for q in first deep; do
        printf '%s page: ' "$q"
        "$bin/pgbench" -n -h 127.0.0.1 -p 15433 -U medallion -c 2 -T "$seconds" -f "$pgdir/$q.sql" postgres 2>/dev/null \
            | grep -E "^tps|latency average" | tr '\n' ' '; echo
    done
fi
