#!/usr/bin/env bash
# Kill tests at random moments (issue 16, item 16): `kill -9` of `host run`
# at KILLS random moments per lake (default 20), on a local lake with SQLite
# and on HDFS (MiniDFSCluster) with PostgreSQL; after each, the published
# Silver and Gold are read back whole and unchanged and the next run must
# succeed. Prints where each kill landed. The suite runs the same tests with
# 3 kills each.
# Usage: bench/kill_runs.sh [KILLS]   (MEDALLION_KILL_SEED=N replays a sequence)
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/medallion/target}"
export MEDALLION_KILLS="${1:-20}"
CI=true cargo test --quiet -p medallion-host --test all kills:: -- --nocapture --test-threads=1 2>&1 \
    | grep -E "^kills:|test result|panicked|FAILED"
