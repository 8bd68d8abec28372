#!/usr/bin/env bash
# Fuzzing (issue 16, item 17): bench/src/fuzz.rs, release build, for
# SECONDS per target (default 600): the CSV reader, the pipeline.yaml loader
# with interpolation, the API's query handling ($filter, $orderby,
# $skiptoken, paging, REST filters) over a real Gold, and the decoding of
# the Arrow IPC that plugins hand back. Findings (panics, calls over 5 s)
# are written to $OUT (default /tmp/medallion-fuzz) and fail the script;
# each one found becomes a regression test in the suite.
# Usage: bench/fuzz.sh [SECONDS] [TARGET...]   (FUZZ_SEED=N replays)
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-600}"; shift || true
targets=("$@"); [ ${#targets[@]} -gt 0 ] || targets=(csv pipeline query ipc)
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/medallion/target}"
out="${OUT:-/tmp/medallion-fuzz}"
mkdir -p "$out"
cargo build --quiet --release -p medallion-bench --bin fuzz -p medallion-host
fuzz="$CARGO_TARGET_DIR/release/fuzz"
host="$CARGO_TARGET_DIR/release/host"

gold="$out/gold"
if [[ " ${targets[*]} " == *" query "* ]] && [ ! -f "$gold/gold.db" ]; then
    mkdir -p "$gold"
    "$host" gen-data --scale 0.002 --out "$gold/sources" --products-db seed/products_data.db >/dev/null
    cargo xtask build-plugins --out "$gold/plugins" >/dev/null
    MEDALLION_SOURCES="$gold/sources" MEDALLION_LAKE="$gold/lake" MEDALLION_PLUGINS="$gold/plugins" \
        MEDALLION_GOLD="sqlite:$gold/gold.db" "$host" run pipeline.yaml --ingest-date 2026-11-24 >/dev/null
fi

failed=0
for target in "${targets[@]}"; do
    MEDALLION_LAKE="$gold/lake" MEDALLION_PLUGINS="$gold/plugins" MEDALLION_GOLD="sqlite:$gold/gold.db" \
        "$fuzz" "$target" "$seconds" "$out" "sqlite:$gold/gold.db" pipeline.yaml || failed=1
done
exit $failed
