"""Reads the lake's Delta tables with another engine, for tests/all/delta.rs.

    read_delta.py ENGINE < request.json > answer.json

ENGINE is spark (PySpark with delta-spark), deltalake (delta-rs) or polars.
The request: {"lake": URL, "reads": [{"table": "silver/x", "version": null}],
"ddl": "statements" (spark only), "queries": ["silver.x", ...]}. The answer:
{"reads": [{"table", "version", "rows", "sums": {column: number}}],
"queries": {"silver.x": rows}}, on the last line of standard output; a read
that fails answers {"error": text}.
"""

import json
import os
import sys

NUMERIC_SPARK = ("ByteType", "ShortType", "IntegerType", "LongType", "FloatType", "DoubleType", "DecimalType")


def spark_reader(request):
    from pyspark.sql import SparkSession, functions as F

    spark = (
        SparkSession.builder.master("local[2]")
        .appName("medallion-delta-test")
        .config("spark.jars.packages", "io.delta:delta-spark_2.12:3.3.2")
        .config("spark.sql.extensions", "io.delta.sql.DeltaSparkSessionExtension")
        .config("spark.sql.catalog.spark_catalog", "org.apache.spark.sql.delta.catalog.DeltaCatalog")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.databricks.delta.snapshotPartitions", "2")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.warehouse.dir", request["warehouse"])
        .config("spark.driver.extraJavaOptions", f"-Dderby.system.home={request['warehouse']}")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")

    def read(table, version):
        reader = spark.read.format("delta")
        if version is not None:
            reader = reader.option("versionAsOf", version)
        frame = reader.load(f"{request['lake']}/{table}")
        numeric = [f.name for f in frame.schema.fields if type(f.dataType).__name__ in NUMERIC_SPARK]
        row = frame.agg(F.count(F.lit(1)).alias("__rows"), *[F.sum(c).alias(c) for c in numeric]).first()
        return row["__rows"], {c: (float(row[c]) if row[c] is not None else None) for c in numeric}

    queries = {}
    if request.get("ddl"):
        for statement in request["ddl"].split(";"):
            lines = [l for l in statement.strip().splitlines() if not l.startswith("--")]
            if "\n".join(lines).strip():
                spark.sql("\n".join(lines))
        for name in request.get("queries", []):
            queries[name] = spark.sql(f"SELECT COUNT(*) AS n FROM {name}").first()["n"]
    return read, queries


def deltalake_reader(request):
    import deltalake
    import pyarrow.compute as pc
    import pyarrow.types as pt

    def read(table, version):
        data = deltalake.DeltaTable(f"{request['lake']}/{table}", version=version).to_pyarrow_table()
        sums = {}
        for field in data.schema:
            if pt.is_integer(field.type) or pt.is_floating(field.type) or pt.is_decimal(field.type):
                total = pc.sum(data[field.name]).as_py()
                sums[field.name] = float(total) if total is not None else None
        return data.num_rows, sums

    return read, {}


def polars_reader(request):
    import polars as pl

    def read(table, version):
        frame = pl.read_delta(f"{request['lake']}/{table}", version=version)
        sums = {}
        for name, dtype in frame.schema.items():
            if dtype.is_numeric():
                total = frame[name].sum()
                sums[name] = float(total) if frame[name].null_count() < frame.height else None
        return frame.height, sums

    return read, {}


def main():
    engine = sys.argv[1]
    request = json.load(sys.stdin)
    read, queries = {"spark": spark_reader, "deltalake": deltalake_reader, "polars": polars_reader}[engine](request)
    answers = []
    for wanted in request["reads"]:
        answer = {"table": wanted["table"], "version": wanted.get("version")}
        try:
            answer["rows"], answer["sums"] = read(wanted["table"], wanted.get("version"))
        except Exception as error:  # the test shows which read failed, and why
            answer["error"] = f"{type(error).__name__}: {str(error)[:2000]}"
        answers.append(answer)
    sys.stdout.write("\n" + json.dumps({"reads": answers, "queries": queries}) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
    # deltalake's HDFS client aborts the interpreter's ordinary exit
    # ("terminate called without an active exception"): leave at once.
    os._exit(0)
