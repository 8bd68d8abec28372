#!/usr/bin/env bash
# Silver alone over a lake whose Bronze is landed, by each build in turn,
# with `limits.memory` BUDGET, optionally inside a memory cgroup of LIMIT
# (cgroup v1, as root; page cache counted, as the kernel counts it): does it
# finish, how long, and how its memory splits between the heap (RssAnon:
# what the kernel cannot take back without swap) and mapped files (RssFile:
# pages it can write out and drop), sampled every 0.2 s.
#
#   MEDALLION_LAKE=/tmp/s10/lake bench/silver_memory.sh 512MiB 768M HOST_A HOST_B ...
#
# LIMIT `-` runs without a cgroup. Plugins: $MEDALLION_PLUGINS (dist/plugins).
set -euo pipefail
cd "$(dirname "$0")/.."
budget=$1 limit=$2
shift 2
: "${MEDALLION_LAKE:?the lake, with Bronze landed}"
export MEDALLION_PLUGINS="${MEDALLION_PLUGINS:-dist/plugins}"
export MEDALLION_GOLD="${MEDALLION_GOLD:-sqlite:$MEDALLION_LAKE/gold.db}"
for host in "$@"; do
    samples=$(mktemp)
    launch=()
    if [ "$limit" != - ]; then
        cgroup=/sys/fs/cgroup/memory/medallion-silver-$$
        mkdir -p "$cgroup"
        echo "$limit" >"$cgroup/memory.limit_in_bytes"
        launch=(sh -c 'echo $$ >"$0/cgroup.procs"; exec "$@"' "$cgroup")
    fi
    started=$(date +%s.%N)
    "${launch[@]}" "$host" run pipeline.yaml --only silver --set "limits.memory=$budget" >/dev/null 2>"$samples.err" &
    pid=$!
    while kill -0 "$pid" 2>/dev/null; do
        awk '/RssAnon|RssFile/{print $2}' /proc/$pid/status 2>/dev/null | paste -sd' ' >>"$samples" || true
        sleep 0.2
    done
    status=0
    wait "$pid" || status=$?
    wall=$(echo "$(date +%s.%N) - $started" | bc)
    anon=$(awk '{if ($1 > m) m = $1} END {print int(m / 1024)}' "$samples")
    file=$(awk '{if ($2 > m) m = $2} END {print int(m / 1024)}' "$samples")
    extra=""
    if [ "$limit" != - ]; then
        extra="; cgroup $limit: highest $(($(cat "$cgroup/memory.max_usage_in_bytes") / 1048576)) MiB, limit hit $(cat "$cgroup/memory.failcnt") times"
        rmdir "$cgroup"
    fi
    printf '%s: exit %s, %.1f s, highest heap (RssAnon) %s MiB, highest mapped files (RssFile) %s MiB%s\n' \
        "$host" "$status" "$wall" "$anon" "$file" "$extra"
    [ "$status" = 0 ] || tail -3 "$samples.err"
    rm -f "$samples" "$samples.err"
done
