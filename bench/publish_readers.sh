#!/usr/bin/env bash
# No lock-out: how long a reader of a live Gold table in PostgreSQL waits
# while `host run --from gold` publishes, for each build in turn. A server
# of its own (Debian's PostgreSQL, loopback, a free port), Gold published
# once by the first build; then each build publishes ROUNDS times while a
# reader asks `SELECT * FROM datamart.$TABLE LIMIT 1` again and again (a new
# session each time, as a report's refresh opens one; TABLE defaults to
# dm_customer_metrics, the largest, published first). Prints each publish's
# time and the reader's slowest answer during it.
#
#   MEDALLION_LAKE=<lake with Silver> MEDALLION_SOURCES=<its sources> bench/publish_readers.sh ROUNDS HOST_A HOST_B ...
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=$1
shift
: "${MEDALLION_LAKE:?a lake with Silver committed}" "${MEDALLION_SOURCES:?its sources (checked by every run)}"
export MEDALLION_PLUGINS="${MEDALLION_PLUGINS:-dist/plugins}"
table="${TABLE:-dm_customer_metrics}"
. bench/postgres.sh
start_postgres
export MEDALLION_GOLD="postgres://medallion@127.0.0.1:$port/postgres"
"$1" run pipeline.yaml --from gold >/dev/null

reader() { # writes the slowest answer, in ms, to $1 until $2 exists
    local slowest=0
    while [ ! -e "$2" ]; do
        local started=$(date +%s%N)
        "$pg_bin/psql" -X -q -t -h 127.0.0.1 -p "$port" -U medallion -d postgres \
            -c "SELECT * FROM datamart.$table LIMIT 1" >/dev/null
        local took=$((($(date +%s%N) - started) / 1000000))
        [ "$took" -gt "$slowest" ] && slowest=$took
        echo "$slowest" >"$1"
        sleep 0.02
    done
}

for round in $(seq "$rounds"); do
    for host in "$@"; do
        done_flag=$(mktemp -u) slowest=$(mktemp)
        reader "$slowest" "$done_flag" &
        started=$(date +%s%N)
        "$host" run pipeline.yaml --from gold >/dev/null 2>&1
        took=$((($(date +%s%N) - started) / 1000000))
        touch "$done_flag"
        wait
        echo "round $round $host: publish run $took ms; the reader's slowest answer $(cat "$slowest") ms"
        rm -f "$done_flag" "$slowest"
    done
done
