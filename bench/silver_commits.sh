#!/usr/bin/env bash
# What publishing Silver as Delta tables costs: two builds of the host, each
# with a lake of its own holding the same Bronze (landed once), build Silver
# taking turns (A B A B ...) with `--only silver` on that same lake, as a
# nightly run does: B's lake grows its history (history.keep_runs) and trims
# it at each commit. Prints each build's Silver seconds per round, the
# medians, and the B/A ratio per pair; then both Silvers compared row for
# row (bench/compare_silver.py).
# Usage: bench/silver_commits.sh SOURCES RUNS HOST_A PLUGINS_A HOST_B PLUGINS_B
#   e.g. bench/silver_commits.sh /tmp/scale-1/sources 5 /tmp/host-before /tmp/plugins-before \
#          "$CARGO_TARGET_DIR/release/host" dist/plugins
# PIPELINE_A / PIPELINE_B: each build's pipeline file, when the change
# touches it too (default: this repository's pipeline.yaml for both).
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -eq 6 ] || { sed -n '2,14p' "$0" >&2; exit 2; }
sources="$1" runs="$2"
work="${BENCH_DIR:-/tmp/medallion-bench}/silver-commits"
rm -rf "$work" && mkdir -p "$work"

run() { # NAME HOST PLUGINS STAGE ROUND
    local out="$work/$1" pipeline
    pipeline="$(if [ "$1" = a ]; then echo "${PIPELINE_A:-pipeline.yaml}"; else echo "${PIPELINE_B:-pipeline.yaml}"; fi)"
    mkdir -p "$out"
    MEDALLION_SOURCES="$sources" MEDALLION_PLUGINS="$3" MEDALLION_LAKE="$out/lake" \
        MEDALLION_GOLD="sqlite:$out/gold.db" \
        "$2" run "$pipeline" --only "$4" --ingest-date 2026-11-24 --report "$out/report.json" >"$out/log" 2>&1 \
        || { cat "$out/log" >&2; exit 1; }
    [ "$4" = silver ] || return 0
    python3 - "$1" "$5" "$out/report.json" >>"$work/rounds" <<'PY'
import json, sys
name, round_, report = sys.argv[1:]
stages = {s["stage"]: s["seconds"] for s in json.load(open(report))["stages"]}
print(json.dumps({"name": name, "round": int(round_), "silver": stages["silver"]}))
PY
}

"$3" plugins list --dir "$4" >/dev/null && "$5" plugins list --dir "$6" >/dev/null   # compile into the cache first
run a "$3" "$4" bronze 0
run b "$5" "$6" bronze 0
: >"$work/rounds"
for round in $(seq 1 "$runs"); do
    run a "$3" "$4" silver "$round"
    run b "$5" "$6" silver "$round"
done
python3 - "$work/rounds" <<'PY'
import json, statistics, sys
rows = [json.loads(line) for line in open(sys.argv[1])]
for name in "ab":
    mine = [r["silver"] for r in rows if r["name"] == name]
    print(name, "silver seconds", [round(s, 2) for s in mine], "median", round(statistics.median(mine), 2))
ratios = [b["silver"] / a["silver"] for a in rows if a["name"] == "a" for b in rows
          if b["name"] == "b" and b["round"] == a["round"]]
print(f"b/a silver: median {statistics.median(ratios):.3f} (min {min(ratios):.3f}, max {max(ratios):.3f})")
PY
du -sh "$work/a/lake/silver" "$work/b/lake/silver" "$work/a/lake/quarantine" "$work/b/lake/quarantine"
python3 bench/compare_silver.py "$work/a/lake" "$work/b/lake"
