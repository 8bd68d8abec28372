#!/usr/bin/env bash
# Scale on one machine (issue 17): the host against the two polars yardsticks
# on the same scale-S sources, taking turns (host, yardstick, streaming, host,
# ...), each a whole process from an empty work folder:
#   host run pipeline.yaml           sources -> Bronze -> Silver -> Gold (SQLite store)
#   polars_yardstick.py SRC WORK     the time to beat
#   polars_streaming.py SRC WORK     the memory to beat
# For each run: wall seconds, stage seconds as each tool reports them, and
# peak RSS (GNU time's maximum resident set; every tool here is one process).
# A tool that fails (out of memory, say) is reported with its exit code and
# peak, and the others go on. Medians and host/yardstick ratios are printed.
# Usage: bench/scale.sh SCALE [RUNS] [TOOLS]    (default 3 runs; TOOLS e.g. host,yardstick,streaming)
#   HOST=/path/to/host PLUGINS=dir to use a given build; BENCH_DIR (default /tmp/medallion-bench).
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 1 ] || { sed -n '2,14p' "$0" >&2; exit 2; }
scale="$1" runs="${2:-3}" tools="${3:-host,yardstick,streaming}"
base="${BENCH_DIR:-/tmp/medallion-bench}/scale-$scale"
shared="$(cd .. && pwd)/shared/bench"
python3 -c "import polars" 2>/dev/null || pip install -q polars
if [ -z "${HOST:-}" ]; then
    export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/medallion/target}"
    cargo build --quiet --release -p medallion-host
    HOST="$CARGO_TARGET_DIR/release/host"
fi
if [ -z "${PLUGINS:-}" ]; then
    PLUGINS="$base/plugins"
    cargo xtask build-plugins --out "$PLUGINS" >/dev/null
fi
[ -f "$base/sources/order_items.csv" ] || "$HOST" gen-data --scale "$scale" --seed 42 --out "$base/sources"
"$HOST" plugins list --dir "$PLUGINS" >/dev/null   # compile into the cache first
work="$base/scale-runs"
mkdir -p "$work"
: >"$work/rounds"

run() { # TOOL ROUND
    local out="$work/$1" code=0
    rm -rf "$out" && mkdir -p "$out"
    sync
    case "$1" in
    host)
        MEDALLION_SOURCES="$base/sources" MEDALLION_PLUGINS="$PLUGINS" MEDALLION_LAKE="$out/lake" \
            MEDALLION_GOLD="sqlite:$out/gold.db" /usr/bin/time -f "%e %M" -o "$out/time" \
            "$HOST" run pipeline.yaml --ingest-date 2026-11-24 --report "$out/report.json" >"$out/log" 2>&1 || code=$? ;;
    yardstick | streaming)
        /usr/bin/time -f "%e %M" -o "$out/time" python3 "$shared/polars_$1.py" "$base/sources" "$out/work" \
            >"$out/log" 2>&1 || code=$? ;;
    esac
    python3 - "$1" "$2" "$out" "$code" >>"$work/rounds" <<'PY'
import ast, json, sys
tool, round_, out, code = sys.argv[1:]
lines = open(f"{out}/time").read().split("\n")
wall, rss = next(l for l in reversed(lines) if l.strip() and l[0].isdigit()).split()
row = {"tool": tool, "round": int(round_), "code": int(code), "wall": float(wall), "peak_mib": int(rss) // 1024}
if int(code) == 0 and tool == "host":
    row.update({s["stage"]: s["seconds"] for s in json.load(open(f"{out}/report.json"))["stages"]})
elif int(code) == 0:
    first = next(l for l in open(f"{out}/log") if l.startswith("{"))
    row.update({k: v for k, v in ast.literal_eval(first).items() if k != "total"})
print(json.dumps(row))
PY
    tail -1 "$work/rounds"
    rm -rf "$out/work" "$out/lake"   # the disk for the next tool
}

for round in $(seq 1 "$runs"); do
    for tool in ${tools//,/ }; do run "$tool" "$round"; done
done
python3 - "$work/rounds" "$scale" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
print(f"scale {sys.argv[2]}: medians of {max(r['round'] for r in rows)} runs each")
med = {}
for tool in dict.fromkeys(r["tool"] for r in rows):
    mine = [r for r in rows if r["tool"] == tool]
    ok = [r for r in mine if r["code"] == 0]
    if not ok:
        print(f"  {tool:10} failed: exit {[r['code'] for r in mine]}, peak {[r['peak_mib'] for r in mine]} MiB")
        continue
    keys = [k for k in ["wall", "bronze", "silver", "gold", "peak_mib"] if k in ok[0]]
    med[tool] = {k: statistics.median(r[k] for r in ok) for k in keys}
    print(f"  {tool:10}", "  ".join(f"{k} {v:.1f}" for k, v in med[tool].items()),
          f"(failed {len(mine) - len(ok)})" if len(ok) < len(mine) else "")
if "host" in med and "yardstick" in med:
    for k in ["wall", "silver", "gold", "peak_mib"]:
        if k in med["yardstick"] and k in med["host"]:
            print(f"  host/yardstick {k}: {med['host'][k] / med['yardstick'][k]:.2f}")
PY
