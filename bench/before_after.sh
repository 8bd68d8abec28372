#!/usr/bin/env bash
# Two builds of the host on the same data, taking turns (A B A B ...): each a
# whole `host run pipeline.yaml` (sources -> Bronze -> Silver -> SQLite Gold)
# into a lake of its own, timed as a process; then the two Gold files
# compared cell for cell (bench/compare_gold.py --exact). For "keep every
# result identical while the insides change": the ratio B/A per pair and the
# per-stage seconds are printed, the medians last.
# Usage: bench/before_after.sh SOURCES RUNS HOST_A PLUGINS_A HOST_B PLUGINS_B
#   e.g. bench/before_after.sh /tmp/scale-1/sources 3 /tmp/host-before /tmp/plugins-before \
#          "$CARGO_TARGET_DIR/release/host" dist/plugins
# PIPELINE_A / PIPELINE_B: each build's pipeline file, when the change
# touches it too (default: this repository's pipeline.yaml for both).
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -eq 6 ] || { sed -n '2,14p' "$0" >&2; exit 2; }
sources="$1" runs="$2"
work="${BENCH_DIR:-/tmp/medallion-bench}/before-after"
mkdir -p "$work"

run() { # NAME HOST PLUGINS ROUND PIPELINE
    local out="$work/$1"
    rm -rf "$out" && mkdir -p "$out"
    MEDALLION_SOURCES="$sources" MEDALLION_PLUGINS="$3" MEDALLION_LAKE="$out/lake" \
        MEDALLION_GOLD="sqlite:$out/gold.db" /usr/bin/time -f "%e %U %S %M" -o "$out/time" \
        "$2" run "$5" --ingest-date 2026-11-24 --report "$out/report.json" >"$out/log" 2>&1 \
        || { cat "$out/log" >&2; exit 1; }
    python3 - "$1" "$4" "$out" >>"$work/rounds" <<'PY'
import json, sys
name, round_, out = sys.argv[1:]
wall, user, system, rss = open(f"{out}/time").read().split()
stages = {s["stage"]: s["seconds"] for s in json.load(open(f"{out}/report.json"))["stages"]}
print(json.dumps({"name": name, "round": int(round_), "wall": float(wall), "cpu": float(user) + float(system),
                  "peak_mib": int(rss) // 1024, **stages}))
PY
}

"$3" plugins list --dir "$4" >/dev/null && "$5" plugins list --dir "$6" >/dev/null   # compile into the cache first
: >"$work/rounds"
for round in $(seq 1 "$runs"); do
    run a "$3" "$4" "$round" "${PIPELINE_A:-pipeline.yaml}"
    run b "$5" "$6" "$round" "${PIPELINE_B:-pipeline.yaml}"
done
python3 - "$work/rounds" <<'PY'
import json, statistics, sys
rows = [json.loads(line) for line in open(sys.argv[1])]
keys = ["wall", "cpu", "peak_mib", "bronze", "silver", "gold"]
for name in "ab":
    mine = [r for r in rows if r["name"] == name]
    print(name, "median", {k: round(statistics.median(r[k] for r in mine), 2) for k in keys})
pairs = [(a, b) for a in rows if a["name"] == "a" for b in rows if b["name"] == "b" and b["round"] == a["round"]]
for k in ["wall", "cpu", "gold"]:
    ratios = [b[k] / a[k] for a, b in pairs]
    print(f"b/a {k}: median {statistics.median(ratios):.3f} (min {min(ratios):.3f}, max {max(ratios):.3f})")
PY
python3 bench/compare_gold.py --exact "a=$work/a/gold.db" "b=$work/b/gold.db"
