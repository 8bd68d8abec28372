#!/usr/bin/env bash
# The test suite beside CPU hogs (issue 16, item 15): starts HOGS busy
# processes (default 2, one per core here), runs the whole suite RUNS times
# (default 5) as CI does (`CI=true cargo test --workspace`), and prints each
# run's time and result. A test that depends on timing fails here first.
# Usage: bench/suite_beside_hogs.sh [RUNS] [HOGS]
set -uo pipefail
cd "$(dirname "$0")/.."
runs="${1:-5}"; hogs="${2:-2}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/medallion/target}"
cargo test --workspace --no-run --quiet || exit 1
pids=()
for _ in $(seq 1 "$hogs"); do sha256sum /dev/zero & pids+=($!); done
trap 'kill "${pids[@]}" 2>/dev/null' EXIT
failed=0
for run in $(seq 1 "$runs"); do
    started=$(date +%s)
    if CI=true cargo test --workspace --quiet > "/tmp/suite-beside-hogs-$run.log" 2>&1; then result=passed; else result=FAILED; failed=$((failed + 1)); fi
    passed=$(grep -h "test result" "/tmp/suite-beside-hogs-$run.log" | awk '{s+=$4} END {print s}')
    echo "run $run: $result ($passed tests passed) in $(( $(date +%s) - started )) s (log: /tmp/suite-beside-hogs-$run.log)"
done
echo "$failed of $runs runs failed, beside $hogs hogs"
exit $((failed > 0))
