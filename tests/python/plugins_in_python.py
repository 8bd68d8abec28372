"""The `medallion` Python module (host/python) as the Rust suite checks it
(tests/all/python.rs): the plugin runtime in this process, then on Spark's
executors through mapInArrow.

    python plugins_in_python.py REQUEST.json

The request names the plugins, a cleaning step's config, an input batch
(Arrow IPC file), an output folder and the Spark master (`spark://...`, a
standalone cluster, or `local[2]`). This writes each port's batches of the
cleaning plugin to `<out>/<port>.arrow`, and prints one JSON line last:
what Spark did.

With `"scenario": "lose-a-worker"` it only runs a slow passthrough job on
the cluster, printing `running` when the job has started, so that the
caller can kill a worker mid-job; the answer says whether every row came
through once.
"""
import json
import os
import sys

import pyarrow as pa

import medallion


def write(path, batches, schema):
    with pa.OSFile(path, "wb") as sink, pa.ipc.new_file(sink, schema) as writer:
        for batch in batches:
            writer.write_batch(batch)


def clean_in_process(request, batch):
    """The cleaning plugin here, as the host runs it: its outputs by port."""
    plugin = medallion.Plugin.load(request["clean"])
    instance = plugin.instantiate(json.dumps(request["config"]), memory_mb=256)
    by_port = {}
    for port, batches in instance.push("in", batch) + instance.finish():
        by_port.setdefault(port, []).extend(batches)
    for port, batches in by_port.items():
        write(os.path.join(request["out"], f"{port}.arrow"), batches, batches[0].schema)
    return sorted(by_port)


def failures(request, batch):
    """A plugin that traps: the error names the plugin and the call; the
    instance is not called again."""
    evil = medallion.Plugin.load(request["evil"])
    instance = evil.instantiate('{"mode":"trap"}')
    try:
        instance.push("in", batch)
        raise AssertionError("a trap did not fail the call")
    except medallion.PluginFailure as e:
        trapped = str(e)
    try:
        instance.push("in", batch)
        raise AssertionError("a failed instance was called again")
    except RuntimeError as e:
        again = str(e)
    return {"trapped": trapped, "again": again}


def session(request):
    from pyspark.sql import SparkSession

    return (
        SparkSession.builder.master(request["master"])
        .appName("medallion-plugins")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.executor.memory", "512m")
        .config("spark.pyspark.python", sys.executable)
        .config("spark.task.maxFailures", "4")
        .getOrCreate()
    )


def through(plugins, name, config, pause=0.0):
    """A mapInArrow function: each partition through a plugin instance of
    its own, its `out` port kept."""

    def run(batches):
        import time

        import medallion as m

        instance = m.Plugin.load(plugins[name]).instantiate(config)
        for batch in batches:
            time.sleep(pause)
            for port, out in instance.push("in", batch):
                if port == "out":
                    yield from out
        for port, out in instance.finish():
            if port == "out":
                yield from out

    return run


def on_spark(request):
    """Passthrough on Spark's executors, a plugin instance per partition;
    then a plugin that traps on one of them."""
    spark = session(request)
    plugins = {"passthrough": request["passthrough"], "evil": request["evil"]}
    rows = 100_000
    frame = spark.range(0, rows, numPartitions=8).selectExpr("id", "id * 2 AS twice", "CAST(id AS STRING) AS text")
    passed = frame.mapInArrow(through(plugins, "passthrough", "{}"), frame.schema)
    same = passed.exceptAll(frame).count() == 0 and frame.exceptAll(passed).count() == 0
    result = {"rows": passed.count(), "same": same, "partitions": passed.rdd.getNumPartitions()}
    try:
        frame.select("id").mapInArrow(through(plugins, "evil", '{"mode":"trap"}'), "id long").count()
        result["trap"] = None
    except Exception as e:  # Spark wraps the executor's error
        result["trap"] = str(e)
    spark.stop()
    return result


def lose_a_worker(request):
    """A slow passthrough job (16 partitions, a second each); the caller
    kills a worker once it runs: Spark runs the lost tasks again elsewhere."""
    import threading
    import time

    spark = session(request)
    # Both workers' executors up before the job, so that each runs tasks
    # when one is killed.
    status = spark.sparkContext._jsc.sc()
    deadline = time.time() + 120
    while status.getExecutorMemoryStatus().size() < 3 and time.time() < deadline:
        time.sleep(0.2)
    plugins = {"passthrough": request["passthrough"]}
    frame = spark.range(0, 160_000, numPartitions=16).selectExpr("id", "id % 7 AS seven")
    passed = frame.mapInArrow(through(plugins, "passthrough", "{}", pause=1.0), frame.schema)
    threading.Timer(3.0, lambda: print("running", flush=True)).start()
    rows = passed.collect()
    ids = sorted(row.id for row in rows)
    answer = {"rows": len(rows), "once": ids == list(range(160_000))}
    spark.stop()
    return answer


def main():
    request = json.load(open(sys.argv[1]))
    if request.get("scenario") == "lose-a-worker":
        print(json.dumps({"spark": lose_a_worker(request)}), flush=True)
        os._exit(0)
    with pa.memory_map(request["input"]) as source:
        table = pa.ipc.open_file(source).read_all()
    batch = table.combine_chunks().to_batches()[0]
    answer = {
        "contract": medallion.CONTRACT_VERSION,
        "ports": clean_in_process(request, batch),
        "failures": failures(request, batch),
        "spark": on_spark(request),
    }
    sys.stdout.flush()
    print(json.dumps(answer), flush=True)
    # The JVM's threads can keep a plain exit waiting.
    os._exit(0)


if __name__ == "__main__":
    main()
