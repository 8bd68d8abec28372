#!/usr/bin/env bash
# The plugin-boundary benchmark (issue: plugin runtime). Builds the plugins
# and the bench binary in release mode, then:
#  1. times the cast-and-validate step, native against the wasm plugin:
#     taking turns in one process (the ratio quoted), each in a process of
#     its own (with the pass-through boundary and native IPC alone beside
#     them), and as whole processes with hyperfine (data generation included);
#  2. prints the micro figures: one call on an empty batch, one instantiation
#     from InstancePre, compile against disk-cache load, pass-through GB/s.
# Usage: bench/plugin-boundary.sh [ROWS]   (default 1,000,000 rows, 64k-row batches)
set -euo pipefail
cd "$(dirname "$0")/.."
rows="${1:-1000000}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/medallion/target}"

if ! command -v hyperfine >/dev/null; then
    (apt-get update -qq && apt-get install -y -qq hyperfine) >/dev/null 2>&1 || { echo "hyperfine is needed: apt-get install hyperfine" >&2; exit 1; }
fi

cargo xtask build-plugins --out dist/plugins >/dev/null
cargo build --quiet --release -p medallion-bench
bench="$CARGO_TARGET_DIR/release/plugin-boundary"

echo "== the cast step, native and wasm taking turns in one process (15 rounds)"
"$bench" ab dist/plugins 15 "$rows"

echo "== each step in a process of its own, 30 rounds each (median)"
for engine in native wasm boundary ipc; do
    "$bench" repeat "$engine" dist/plugins 30 "$rows"
done

echo "== whole processes, native vs wasm"
hyperfine --warmup 1 --runs 10 -N \
    "$bench cast native dist/plugins $rows" \
    "$bench cast wasm dist/plugins $rows"

echo "== micro figures"
"$bench" micro dist/plugins
"$bench" passthrough dist/plugins
