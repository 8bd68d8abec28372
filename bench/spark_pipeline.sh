#!/usr/bin/env bash
# The pipeline on a Spark cluster against the project's hand-written PySpark
# job on the same cluster (issue "Past one machine"), and beside `host run`
# on one machine, the same sources:
#
#   bench/spark_pipeline.sh SCALE ROUNDS [HOST]
#
# Starts a standalone cluster from the venv's pyspark on loopback (a master
# and two workers, one core and WORKER_MEMORY, default 2g, each), generates
# sources at SCALE, lands Bronze once with the host; then ROUNDS rounds,
# taking turns:
#   spark: `host spark-submit --from silver` (Silver and Gold on the cluster);
#          its Silver and Gold stage seconds from the run's report
#   pyspark: bench/medallion_spark.py on the cluster (Bronze from the
#          sources, then Silver and Gold); its Silver and Gold stage seconds
#   host:  `host run --from silver` on this machine (HOST_RUN: another
#          build of the host for this one, default HOST)
# Both Spark jobs run with the same --executor-memory (the worker's) and
# --driver-memory (DRIVER_MEMORY, default 4g). Samples the executors'
# memory (their JVMs and Python workers) every half second. Needs the `medallion` module in the venv (scripts/test
# installs a debug build; `maturin develop --release -m
# host/python/Cargo.toml` for figures). Prints one line per run and the
# medians.
set -euo pipefail
SCALE=${1:?scale}; ROUNDS=${2:-3}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
HOST=${3:-${CARGO_TARGET_DIR:-$ROOT/target}/release/host}
VENV=${MEDALLION_VENV:-$HOME/.cache/medallion/venv}
PY=$VENV/bin/python
WORK=$(mktemp -d /tmp/medallion-spark-bench.XXXX)
trap 'kill $(jobs -p) 2>/dev/null; pkill -f "spark.deploy.*$WORK" 2>/dev/null; rm -rf "$WORK"' EXIT
export PYSPARK_PYTHON=$PY PYSPARK_DRIVER_PYTHON=$PY SPARK_LOG_DIR=$WORK/logs SPARK_WORKER_DIR=$WORK/work
CLASS=$VENV/bin/spark-class

"$CLASS" org.apache.spark.deploy.master.Master --host 127.0.0.1 --port 7177 --webui-port 0 >"$WORK/master.log" 2>&1 &
until grep -q "ALIVE" "$WORK/master.log"; do sleep 1; done
for n in 1 2; do
  "$CLASS" org.apache.spark.deploy.worker.Worker spark://127.0.0.1:7177 --host 127.0.0.1 --webui-port 0 \
    --cores 1 --memory "${WORKER_MEMORY:-2g}" --work-dir "$WORK/worker-$n" >"$WORK/worker-$n.log" 2>&1 &
done
for n in 1 2; do until grep -q "Successfully registered" "$WORK/worker-$n.log"; do sleep 1; done; done
MASTER=spark://127.0.0.1:7177
# Both jobs get the same: executors as large as a worker, a driver that can
# hold a Gold table (the hand-written job collects each one whole; 1 GiB,
# spark-submit's default, stalls it at scale 1).
SUBMIT=(--executor-memory "${WORKER_MEMORY:-2g}" --driver-memory "${DRIVER_MEMORY:-4g}")

"$HOST" gen-data --scale "$SCALE" --seed 42 --out "$WORK/sources" >/dev/null
export MEDALLION_SOURCES=$WORK/sources MEDALLION_LAKE=$WORK/lake MEDALLION_PLUGINS=$ROOT/dist/plugins
"$HOST" run "$ROOT/pipeline.yaml" --only bronze --set "gold.store=sqlite:$WORK/bronze.db" --progress log >/dev/null 2>&1

# The executors' resident memory, most at once, while a run goes on.
sample() {
  local most=0
  while :; do
    local now
    now=$(ps -eo rss=,args= | awk '/CoarseGrainedExecutorBackend|pyspark.daemon|pyspark.worker/ && !/awk/ {s+=$1} END {print s+0}')
    (( now > most )) && most=$now && echo "$most" >"$WORK/peak"
    sleep 0.5
  done
}

stage_seconds() { # the silver and gold seconds of a JSON report on stdin
  "$PY" -c '
import json, sys
lines = [l for l in sys.stdin if l.startswith("[{") or l.startswith("{\"stages\"")]
data = json.loads(lines[-1])
if isinstance(data, dict):
    s = data["stages"]; print("%.1f %.1f" % (s["silver"], s["gold"]))
else:
    s = {d["stage"]: d["seconds"] for d in data}; print("%.1f %.1f" % (s["silver"], s["gold"]))'
}

for round in $(seq "$ROUNDS"); do
  for what in spark pyspark host; do
    echo 0 >"$WORK/peak"; sample & SAMPLER=$!
    start=$(date +%s.%N)
    case $what in
      spark) out=$("$HOST" spark-submit "$ROOT/pipeline.yaml" --master $MASTER --from silver \
               --spark-submit "$VENV/bin/spark-submit" --set "gold.store=sqlite:$WORK/spark.db" -- "${SUBMIT[@]}" 2>/dev/null | stage_seconds) ;;
      pyspark) out=$(MEDALLION_SPARK_MASTER=$MASTER "$VENV/bin/spark-submit" --master $MASTER "${SUBMIT[@]}" \
               --py-files "$ROOT/bench/rules.py" "$ROOT/bench/medallion_spark.py" "$WORK/sources" "$WORK/pyspark" "$WORK/pyspark.db" 2>/dev/null | stage_seconds) ;;
      host) "${HOST_RUN:-$HOST}" run "$ROOT/pipeline.yaml" --from silver --set "gold.store=sqlite:$WORK/host.db" --progress log \
               --report "$WORK/report.json" >/dev/null 2>&1
            out=$("$PY" -c '
import json; r = json.load(open("'"$WORK"'/report.json"))
s = {st["stage"]: st["seconds"] for st in r["stages"]}; print("%.1f %.1f" % (s["silver"], s["gold"]))') ;;
    esac
    wall=$(echo "$(date +%s.%N) - $start" | bc)
    kill $SAMPLER 2>/dev/null; wait $SAMPLER 2>/dev/null || true
    peak=$(( $(cat "$WORK/peak") / 1024 ))
    read -r silver gold <<<"$out"
    echo "$what round $round: silver $silver s, gold $gold s, silver+gold $(echo "$silver + $gold" | bc) s, wall $(printf %.1f "$wall") s, executors' peak $peak MiB"
    rm -rf "$WORK/pyspark"
  done
done | tee "$WORK/rounds.txt"
"$PY" - "$WORK/rounds.txt" <<'PY'
import re, statistics, sys
runs = {}
for line in open(sys.argv[1]):
    m = re.match(r"(\w+) round \d+: .*silver\+gold ([\d.]+) s", line)
    if m:
        runs.setdefault(m.group(1), []).append(float(m.group(2)))
med = {k: statistics.median(v) for k, v in runs.items()}
print("medians, silver+gold:", ", ".join(f"{k} {v:.1f} s" for k, v in med.items()))
if "spark" in med and "pyspark" in med:
    print(f"spark / pyspark: {med['spark'] / med['pyspark']:.2f}")
PY
