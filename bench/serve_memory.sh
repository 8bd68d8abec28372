#!/usr/bin/env bash
# The server's memory on a Gold store (issue 17, part 4): each host binary
# in turn starts `host serve` on the same SQLite Gold, waits until the
# tables are loaded and it listens, and reports its resident memory then
# (VmRSS, split into the process's own memory, RssAnon, and pages of mapped
# files, RssFile, which the kernel can drop) and at its highest (VmHWM, the
# load included); then, with wrk (1 thread, 16 connections,
# $SECONDS_PER_RUN s each), the first and the next-to-last 1,000-row page of
# dm_customer_metrics, in requests a second, and the memory after them.
# Give the binaries twice (A B A B) to see the noise. With MEMORY_LIMIT
# (e.g. 1G; root, cgroup v1 memory controller) each server runs in a memory
# cgroup of that limit, page cache included, and its highest use is shown.
# Usage: bench/serve_memory.sh GOLD_DB HOST [HOST...]   (e.g. the Gold of bench/scale.sh 1)
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 2 ] || { sed -n '2,8p' "$0" >&2; exit 2; }
gold="$1"
shift
port=$((20000 + RANDOM % 20000))
for host in "$@"; do
    log="$(mktemp)"
    lake="$(mktemp -d)"
    launch=()
    if [ -n "${MEMORY_LIMIT:-}" ]; then
        cgroup=/sys/fs/cgroup/memory/medallion-serve-$$
        mkdir -p "$cgroup"
        echo "$MEMORY_LIMIT" >"$cgroup/memory.limit_in_bytes"
        launch=(sh -c 'echo $$ >"$0/cgroup.procs"; exec "$@"' "$cgroup")
    fi
    MEDALLION_JWT_SECRET="$(head -c 48 /dev/urandom | base64 | tr -d '\n')" MEDALLION_ANALYST_HASH="$(echo bench-password | "$host" hash-password 2>/dev/null)" "${launch[@]}" "$host" serve pipeline.yaml --set "gold.store=sqlite:$gold" --set "lake=$lake" \
        --listen "127.0.0.1:$port" >"$log" 2>&1 &
    server=$!
    for _ in $(seq 1 6000); do grep -q listening "$log" 2>/dev/null && break; sleep 0.1; done
    sleep 1
    memory() { awk '/^(VmRSS|RssAnon|RssFile|VmHWM)/ {m[$1]=int($2/1024)} END {printf "%d MiB (own %d, mapped files %d), highest %d MiB", m["VmRSS:"], m["RssAnon:"], m["RssFile:"], m["VmHWM:"]}' /proc/$server/status; }
    loaded="$(memory)"
    base="http://127.0.0.1:$port"
    token="$(curl -s -d "username=analyst&password=bench-password" "$base/auth/login" | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')"
    rows="$(curl -s -H "Authorization: Bearer $token" "$base/odata/dm_customer_metrics/\$count")"
    last=$(((rows + 999) / 1000))
    speed() { wrk -t1 -c16 -d"${SECONDS_PER_RUN:-5}s" --latency -H "Authorization: Bearer $token" "$base$1" | awk '/^ +50%/ {p50=$2} /^ +99%/ {p99=$2} /Requests\/sec/ {r=int($2)} END {printf "%d/s (p50 %s, p99 %s)", r, p50, p99}'; }
    first=$(speed "/gold/customers/metrics?page=1&page_size=1000")
    deep=$(speed "/gold/customers/metrics?page=$((last - 1))&page_size=1000")
    cgroup_use=""
    [ -n "${MEMORY_LIMIT:-}" ] && cgroup_use="; the cgroup's highest (page cache included): $(($(cat "$cgroup/memory.max_usage_in_bytes") / 1048576)) MiB of $MEMORY_LIMIT"
    echo "$host: loaded: resident $loaded; 1000-row pages: first $first, page $((last - 1)) of $last: $deep; after them: $(memory)$cgroup_use"
    kill $server; wait $server 2>/dev/null || true
    rm -rf "$log" "$lake"
    [ -n "${MEMORY_LIMIT:-}" ] && rmdir "$cgroup"
done
