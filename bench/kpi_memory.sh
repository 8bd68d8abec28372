#!/usr/bin/env bash
# An aggregating KPI plugin's memory under contract 0.2.0 (issue: scale on one
# machine): `rfm` scores N customers (default 20 million) batch by batch, the
# host computing the ranks and totals the plugin asks for (`needs`). Prints,
# per run, the host's seconds for the needs, the seconds pushing, the
# plugin's peak linear memory against its cap, and the process's peak RSS.
# Usage: bench/kpi_memory.sh [CUSTOMERS] [CAP_MIB]   (default 20000000 and 64)
set -euo pipefail
cd "$(dirname "$0")/.."
customers="${1:-20000000}"
cap="${2:-64}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/medallion/target}"

cargo xtask build-plugins --out dist/plugins >/dev/null
cargo build --quiet --release -p medallion-bench --bin kpi-memory
# The plugin's memory follows the batch, not the table: 64k-row batches (the
# pipeline's default) under the cap, then 1M-row batches under the default 1 GiB.
"$CARGO_TARGET_DIR/release/kpi-memory" dist/plugins "$customers" "$cap" 65536
"$CARGO_TARGET_DIR/release/kpi-memory" dist/plugins "$customers" 1024 1048576
