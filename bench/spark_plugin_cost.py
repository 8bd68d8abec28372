"""What a plugin costs on Spark: the same job three ways on one cluster,
taking turns, medians printed. `mapInArrow` with a Python function that
hands each batch back (Spark's own cost of an Arrow UDF); the same with the
passthrough plugin through the `medallion` module (a wasm instance per
partition, each batch into the sandbox and back); and the clean plugin on a
Bronze-shaped text table (casts, checks, reasons).

    python bench/spark_plugin_cost.py MASTER PLUGINS_DIR [ROWS] [ROUNDS]

MASTER: `spark://HOST:7077` or `local[2]`. Needs pyspark, pandas and the
`medallion` module (scripts/test installs them in its venv)."""
import json
import os
import statistics
import sys
import time

from pyspark.sql import SparkSession

CLEAN = {"columns": [
    {"name": "customer_id", "type": "int", "required": True},
    {"name": "gender", "type": "string"},
    {"name": "country", "type": "string"},
    {"name": "signup_date", "type": "date"},
]}


def main():
    master, plugins = sys.argv[1], os.path.abspath(sys.argv[2])
    rows = int(sys.argv[3]) if len(sys.argv) > 3 else 20_000_000
    rounds = int(sys.argv[4]) if len(sys.argv) > 4 else 3
    spark = (SparkSession.builder.master(master).appName("plugin-cost")
             .config("spark.ui.enabled", "false").config("spark.pyspark.python", sys.executable)
             .config("spark.sql.execution.arrow.maxRecordsPerBatch", "65536").getOrCreate())
    frame = spark.range(0, rows, numPartitions=8).selectExpr(
        "CAST(id AS STRING) AS customer_id", "concat('Customer ', id) AS name", "'x@example.com' AS email",
        "IF(id % 2 = 0, 'Female', 'Male') AS gender",
        "date_format(date_add(DATE'2021-01-01', CAST(id % 1000 AS INT)), 'yyyy-MM-dd') AS signup_date",
        "'UK' AS country", "id AS _row").cache()
    frame.count()

    def identity(batches):
        yield from batches

    def plugin(path, config, port):
        """Spark has no unsigned integers: `_row` goes in as the plugin
        contract's UInt64 and comes back as Spark's long."""
        def run(batches):
            import medallion
            import pyarrow as pa
            import pyarrow.compute as pc

            def spark_types(batch):
                columns = [pc.cast(c, pa.int64()) if pa.types.is_unsigned_integer(c.type) else c for c in batch.columns]
                return pa.RecordBatch.from_arrays(columns, names=batch.schema.names)

            instance = medallion.Plugin.load(path).instantiate(config, memory_mb=1024)
            for batch in batches:
                if "_row" in batch.schema.names:
                    at = batch.schema.get_field_index("_row")
                    batch = batch.set_column(at, "_row", pc.cast(batch.column(at), pa.uint64()))
                for name, out in instance.push("in", batch):
                    if name == port:
                        yield from (spark_types(b) for b in out)
            for name, out in instance.finish():
                if name == port:
                    yield from (spark_types(b) for b in out)
        return run

    clean_schema = "customer_id long, gender string, country string, signup_date date, _row long"
    ways = {
        "python identity": lambda: frame.mapInArrow(identity, frame.schema),
        "passthrough plugin": lambda: frame.mapInArrow(plugin(f"{plugins}/passthrough.wasm", "{}", "out"), frame.schema),
        "clean plugin": lambda: frame.mapInArrow(plugin(f"{plugins}/clean.wasm", json.dumps(CLEAN), "out"), clean_schema),
    }
    times = {name: [] for name in ways}
    for _ in range(rounds):
        for name, job in ways.items():
            started = time.perf_counter()
            job().write.format("noop").mode("overwrite").save()
            times[name].append(time.perf_counter() - started)
    base = statistics.median(times["python identity"])
    print(f"{rows} rows, 8 partitions, master {master}, medians of {rounds}:")
    for name, seconds in times.items():
        median = statistics.median(seconds)
        print(f"  {name:20} {median:6.2f} s  ({median / base:.2f}x the identity; rounds {', '.join(f'{s:.2f}' for s in seconds)})")
    spark.stop()


if __name__ == "__main__":
    main()
