"""The `medallion` Python module (host/python) as the Rust suite checks it
(tests/all/python.rs): the plugin runtime in this process, then on Spark's
executors through mapInArrow.

    python plugins_in_python.py REQUEST.json

The request names the plugins, a cleaning step's config, an input batch
(Arrow IPC file) and an output folder. This writes each port's batches of
the cleaning plugin to `<out>/<port>.arrow`, and prints one JSON line last:
what Spark did.
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


def on_spark(request):
    """Passthrough on Spark's executors, a plugin instance per partition;
    then a plugin that traps on one of them."""
    from pyspark.sql import SparkSession

    spark = (
        SparkSession.builder.master("local[2]")
        .appName("medallion-plugins")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "2")
        .getOrCreate()
    )
    plugins = {"passthrough": request["passthrough"], "evil": request["evil"]}

    def through(name, config):
        def run(batches):
            import medallion as m

            instance = m.Plugin.load(plugins[name]).instantiate(config)
            for batch in batches:
                for port, out in instance.push("in", batch):
                    if port == "out":
                        yield from out
            for port, out in instance.finish():
                if port == "out":
                    yield from out

        return run

    rows = 100_000
    frame = spark.range(0, rows, numPartitions=8).selectExpr("id", "id * 2 AS twice", "CAST(id AS STRING) AS text")
    passed = frame.mapInArrow(through("passthrough", "{}"), frame.schema)
    same = passed.exceptAll(frame).count() == 0 and frame.exceptAll(passed).count() == 0
    result = {"rows": passed.count(), "same": same, "partitions": passed.rdd.getNumPartitions()}
    try:
        frame.select("id").mapInArrow(through("evil", '{"mode":"trap"}'), "id long").count()
        result["trap"] = None
    except Exception as e:  # Spark wraps the executor's error
        result["trap"] = str(e)
    spark.stop()
    return result


def main():
    request = json.load(open(sys.argv[1]))
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
