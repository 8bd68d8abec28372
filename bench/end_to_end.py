"""The end-to-end benchmark: the same sources through the same rules, as
  host     host run pipeline.yaml (sources -> Bronze -> Silver -> Gold, SQLite store)
  polars   bench/medallion_polars.py all (a plain polars script)
  spark    bench/medallion_spark.py (PySpark, local mode)
each run as a whole process from an empty work folder, the tools taking
turns (host, polars, spark, host, ...) so that the machine's noise falls on
all of them. For each run: wall time, the time of each stage as the tool
reports it, and the peak resident memory of the whole process tree (Spark's
JVM included), sampled every 50 ms. Then the Gold files are compared
(bench/compare_gold.py) and a table is printed: medians, ratios to polars.

  python bench/end_to_end.py --host BIN --plugins DIR --sources DIR --work DIR [--runs N] [--tools host,polars,spark]

bench/end_to_end.sh sets everything up and calls this.
"""

import argparse
import json
import pathlib
import shutil
import statistics
import subprocess
import sys
import time

import psutil

BENCH = pathlib.Path(__file__).resolve().parent
ROOT = BENCH.parent


def command(tool: str, args, work: pathlib.Path) -> list[str]:
    gold = str(work / "gold.db")
    if tool == "host":
        return [
            args.host, "run", str(ROOT / "pipeline.yaml"), "--progress", "log", "--ingest-date", "2026-11-24",
            "--set", f"lake={work / 'lake'}", "--set", f"sources.dir={args.sources}",
            "--set", f"plugins.dir={args.plugins}", "--set", f"gold.store=sqlite:{gold}",
            "--report", str(work / "report.json"),
        ]  # fmt: skip
    script = {"polars": "medallion_polars.py", "spark": "medallion_spark.py"}[tool]
    extra = ["all"] if tool == "polars" else []
    return [sys.executable, str(BENCH / script), *extra, str(args.sources), str(work), gold]


def rss(processes: list[psutil.Process]) -> int:
    total = 0
    for p in processes:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            pass
    return total


def measure(argv: list[str], log: pathlib.Path) -> tuple[float, int, int]:
    """Wall seconds, peak RSS of the process tree in bytes, exit code. The
    tree is listed every 0.5 s (a walk of /proc) and its members' RSS read
    every 50 ms, so the sampler costs the measured tools next to nothing."""
    with log.open("w") as out:
        started = time.perf_counter()
        child = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
        process, peak, tree, listed = psutil.Process(child.pid), 0, [], 0.0
        while child.poll() is None:
            if time.perf_counter() - listed >= 0.5:
                try:
                    tree, listed = [process, *process.children(recursive=True)], time.perf_counter()
                except psutil.Error:
                    pass
            peak = max(peak, rss(tree))
            time.sleep(0.05)
        return time.perf_counter() - started, peak, child.returncode


def stages(tool: str, work: pathlib.Path, log: pathlib.Path) -> dict[str, float]:
    if tool == "host":
        report = json.loads((work / "report.json").read_text())
        return {s["stage"]: s["seconds"] for s in report["stages"]}
    # The last line that is the JSON object (a late log line may follow it).
    for line in reversed(log.read_text().splitlines()):
        if line.startswith('{"stages"'):
            return json.loads(line)["stages"]
    raise SystemExit(f"{tool}: no stage times in {log}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", required=True)
    parser.add_argument("--plugins", required=True)
    parser.add_argument("--sources", required=True, type=pathlib.Path)
    parser.add_argument("--work", required=True, type=pathlib.Path)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--tools", default="host,polars,spark")
    args = parser.parse_args()
    tools = args.tools.split(",")
    results = {tool: [] for tool in tools}
    for run in range(1, args.runs + 1):
        for tool in tools:
            work = args.work / tool
            shutil.rmtree(work, ignore_errors=True)
            work.mkdir(parents=True)
            log = args.work / f"{tool}-{run}.log"
            seconds, peak, code = measure(command(tool, args, work), log)
            if code != 0:
                print(f"{tool} run {run} failed with exit code {code}; its output is in {log}:", file=sys.stderr)
                print("\n".join(log.read_text().splitlines()[-20:]), file=sys.stderr)
                return 1
            results[tool].append({"seconds": seconds, "peak": peak, "stages": stages(tool, work, log)})
            print(f"run {run} {tool:7} {seconds:8.2f} s  peak {peak / 2**30:5.2f} GiB", flush=True)

    print("\n== Gold: the same rows and sums?")
    compared = subprocess.run(
        [sys.executable, str(BENCH / "compare_gold.py"), *(f"{t}={args.work / t / 'gold.db'}" for t in tools)], cwd=ROOT
    )

    print(f"\n== medians of {args.runs} run(s); sources {args.sources} ({size(args.sources)})")
    names = ["startup", "bronze", "silver", "gold"]
    header = f"{'tool':8}" + "".join(f"{n:>10}" for n in names) + f"{'total':>10}{'peak GiB':>10}{'vs polars':>11}{'vs host':>9}"
    print(header)
    total = {t: statistics.median(r["seconds"] for r in results[t]) for t in tools}
    for tool in tools:
        cells = []
        for name in names:
            values = [r["stages"].get(name) for r in results[tool] if name in r["stages"]]
            cells.append(f"{statistics.median(values):10.2f}" if values else f"{'-':>10}")
        peak = max(r["peak"] for r in results[tool]) / 2**30
        vs_polars = f"{total[tool] / total['polars']:10.2f}x" if "polars" in total else ""
        vs_host = f"{total[tool] / total['host']:8.2f}x" if "host" in total else ""
        print(f"{tool:8}" + "".join(cells) + f"{total[tool]:10.2f}{peak:10.2f}{vs_polars}{vs_host}")
    print("(stage times as each tool reports them; total = the whole process's wall time)")
    return compared.returncode


def size(folder: pathlib.Path) -> str:
    return f"{sum(p.stat().st_size for p in folder.iterdir()) / 1e6:,.0f} MB"


if __name__ == "__main__":
    sys.exit(main())
