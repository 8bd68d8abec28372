"""Runs a medallion pipeline on a Spark cluster: the same pipeline.yaml, the
same .wasm plugins, the same results as `host run`.

    spark-submit --master spark://HOST:7077 medallion_spark.py pipeline.yaml \
        [--set KEY=VALUE]... [--from STAGE | --only STAGE] [--ingest-date DATE]

(`host spark-submit pipeline.yaml --master ...` writes this file and runs
that.) The `medallion` module (the wheel built from host/python) must be
installed where the driver and the executors run Python, with pyarrow and
pandas.

The host's own run does everything but the heavy lifting: it takes the
lake's lock, lands Bronze, keeps the run log, checks Silver's counts and
commits it, runs Gold's KPI plugins and publishes Gold in one transaction.
This driver computes, on the cluster:

- Silver, per table in the host's order: Bronze's files read with each row's
  position (`_row`: the file's first row plus `_metadata.row_index`), the
  cleaning plugin in `mapInArrow` (an instance per task, the host's sandbox
  and limits; its ports tagged in one schema, then split), `duplicate_key`
  from the cleaned rows' keys alone (tagged apart: the keys on several rows
  and the first `_row` of each, sent to every task), each parent as a left
  join on its keys (`take` columns come with it), `derive` as Spark
  expressions; kept rows, rejected rows and nulled values written by the
  executors into the lake with the host's Parquet writer, in `_row` order,
  in chunks of Bronze rows (a chunk is computed from `_row`, so no pass
  samples the rows first);
- a Silver `sql` table and each Gold query in Spark SQL (the pipeline's SQL
  is written to mean the same in both engines; `host validate` warns when it
  does not). Gold's rows come back to the driver, ordered as the query says.

A failure anywhere (a plugin that traps, loops or runs out of memory on an
executor; a lost worker whose tasks cannot be run again) fails the run:
nothing is published, the previous results stay readable.
"""

import argparse
import json
import os
import re
import sys
import time
from functools import reduce

import pyarrow as pa
import pyarrow.compute as pc
from pyspark import SparkFiles, StorageLevel, TaskContext
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.pandas.types import from_arrow_schema

import medallion

TAGGED = "_port string, _batch binary"
WRITTEN = "target int, chunk long, part int, file string, reasons string"
WRITTEN_ARROW = pa.schema(
    [("target", pa.int32()), ("chunk", pa.int64()), ("part", pa.int32()), ("file", pa.string()), ("reasons", pa.string())]
)
CHUNK_ROWS = 1_000_000  # Bronze rows whose Silver rows go to one set of files
BROADCAST_ROWS = 1_000_000  # duplicated keys sent to every task rather than shuffled


def spark_type(field):
    """The type Spark is given for an Arrow field: no unsigned integers, no
    string views, no dictionaries."""
    t = field.type
    if pa.types.is_dictionary(t):
        t = t.value_type
    if pa.types.is_unsigned_integer(t):
        t = pa.int64()
    elif pa.types.is_large_string(t) or (hasattr(pa.types, "is_string_view") and pa.types.is_string_view(t)):
        t = pa.string()
    elif pa.types.is_large_binary(t):
        t = pa.binary()
    return pa.field(field.name, t, True)


def for_spark(schema):
    return pa.schema([spark_type(f) for f in schema])


def as_spark(batch, schema):
    """`batch` cast to `schema` (from `for_spark`); a batch with other
    columns than the port's first is the plugin's fault."""
    if batch.schema.equals(schema):
        return batch
    if batch.schema.names != schema.names:
        raise medallion.PluginFailure(
            f"the plugin's batches on one port do not all have the same columns: {batch.schema.names} after {schema.names}"
        )
    columns = [batch.column(i).cast(schema.field(i).type) for i in range(batch.num_columns)]
    return pa.RecordBatch.from_arrays(columns, schema=schema)


def ipc(batch):
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, batch.schema) as writer:
        writer.write_batch(batch)
    return sink.getvalue()


def tagged(port, encoded):
    """One row of the tagged schema: a port and one of its batches (Arrow
    IPC, not copied)."""
    offsets = pa.array([0, encoded.size], pa.int32()).buffers()[1]
    batch = pa.Array.from_buffers(pa.binary(), 1, [None, offsets, encoded])
    return pa.RecordBatch.from_arrays([pa.array([port]), batch], names=["_port", "_batch"])


KEYS = "_keys"  # the tag of the cleaned rows' key and `_row`, for the duplicates


def cleaner(table, clean, limits, key):
    """The function `mapInArrow` runs per task: the table's cleaning plugin,
    one instance, every row pushed with its position as the host pushes it,
    every output batch tagged with its port; with `key`, the key and `_row`
    of the `out` rows again, tagged `_keys` (a small batch to find the
    duplicates from). Every row pushed must come back on `out` or
    `rejected`, and none at `finish`."""
    file, config = os.path.basename(clean["plugin"]), clean["config"]

    def run(batches):
        plugin = medallion.Plugin.load(SparkFiles.get(file))
        instance = plugin.instantiate(config, memory_mb=limits["memory_mb"], call_budget_ms=limits["call_budget_ms"])
        for batch in batches:
            at = batch.schema.get_field_index("_row")
            batch = batch.set_column(at, "_row", batch.column(at).cast(pa.uint64()))
            returned = 0
            for port, outputs in instance.push("in", batch):
                for output in outputs:
                    if port != "nulled":
                        returned += output.num_rows
                    if output.num_rows and "_row" not in output.schema.names:
                        raise medallion.PluginFailure(
                            f"plugin `{plugin.name}`, call `push`: port `{port}`: its rows have no `_row` column; "
                            f"a cleaning plugin must keep each row's position (silver table `{table}`)"
                        )
                    if output.num_rows:
                        yield tagged(port, ipc(output))
                        if key and port == "out" and key in output.schema.names:
                            yield tagged(KEYS, ipc(output.select([key, "_row"])))
            if returned != batch.num_rows:
                raise medallion.PluginFailure(
                    f"silver table `{table}`: the cleaning plugin was pushed {batch.num_rows} rows and returned "
                    f"{returned} on `out` and `rejected`; every row must come back on one of them"
                )
        for port, outputs in instance.finish():
            if any(o.num_rows for o in outputs):
                raise medallion.PluginFailure(
                    f"plugin `{plugin.name}`, call `finish`: port `{port}`: a cleaning plugin must emit each "
                    "row when it is pushed, not at `finish`"
                )

    return run


def decoder(schema, columns=None):
    """Tagged batches back to their port's rows, with `_i`, their place
    among the rows one push gave (to keep a row's nulled values in order);
    or only `columns` of them."""

    def run(batches):
        for batch in batches:
            for cell in batch.column("_batch"):
                for rows in pa.ipc.open_stream(cell.as_buffer()):
                    rows = as_spark(rows, schema)
                    if columns:
                        yield rows.select(columns)
                        continue
                    index = pa.array(range(rows.num_rows), pa.int64())
                    yield pa.RecordBatch.from_arrays(
                        list(rows.columns) + [index], names=list(rows.schema.names) + ["_i"]
                    )

    return run


class Target:
    """Where a sorted frame's rows go: `folder`, given `schema` when there is
    one, `columns` of them, only the rows `keep` says (`"kept"`: no
    `_reason`; `"rejected"`: one; None: all), the reasons counted or not."""

    def __init__(self, folder, columns, schema=None, keep=None, reasons=False):
        self.folder, self.columns, self.schema, self.keep, self.reasons = folder, columns, schema, keep, reasons


def writer(lake, suffix, row_group_rows, targets, chunked):
    """The function `mapInArrow` runs per task of a frame sorted by its
    chunk (`_chunk`, when `chunked`; else the task's partition is the
    chunk) and then by row: its rows written into the lake by the host's
    writer, to each target, one set of files per chunk."""

    def run(batches):
        partition = TaskContext.get().partitionId()
        parts, counted, at = None, None, None

        def finished():
            for t, (out, counts) in enumerate(zip(parts, counted)):
                files, _ = out.finish()
                for i, file in enumerate(files):
                    row = {"target": t, "chunk": at, "part": i, "file": file, "reasons": json.dumps(counts if i == 0 else {})}
                    yield pa.RecordBatch.from_pylist([row], schema=WRITTEN_ARROW)

        def pieces(batch):
            """`batch` cut where its chunk changes."""
            if not chunked:
                yield partition, batch
                return
            chunks = batch.column("_chunk")
            low, high = pc.min(chunks).as_py(), pc.max(chunks).as_py()
            if low == high:
                yield low, batch
                return
            for chunk in range(low, high + 1):
                rows = batch.filter(pc.equal(chunks, chunk))
                if rows.num_rows:
                    yield chunk, rows

        for batch in batches:
            for chunk, batch in pieces(batch):
                if chunk != at:
                    if parts is not None:
                        yield from finished()
                    at = chunk
                    name = f"{suffix}-c{chunk:05d}"
                    parts = [medallion.Parts(lake, t.folder, name, t.schema, row_group_rows) for t in targets]
                    counted = [{} for _ in targets]
                for target, out, counts in zip(targets, parts, counted):
                    rows = batch
                    if target.keep is not None:
                        mask = pc.is_null(batch.column("_reason"))
                        rows = batch.filter(mask if target.keep == "kept" else pc.invert(mask))
                    if rows.num_rows == 0:
                        continue
                    if target.reasons:
                        for row in pc.value_counts(rows.column("_reason")).to_pylist():
                            counts[row["values"]] = counts.get(row["values"], 0) + row["counts"]
                    out.write(rows.select(target.columns))
        if parts is not None:
            yield from finished()

    return run


class Cluster:
    """The engine the host's run hands Silver and Gold's queries to."""

    def __init__(self, spark):
        self.spark = spark
        self.shipped = set()
        self.held = []  # frames persisted for the table being built
        self.parallelism = spark.sparkContext.defaultParallelism

    def files(self, frame, plan, targets, by=("_row",), rows=0):
        """Writes `frame` into `targets` in the order of `by` (the first
        is the Bronze row, of `rows` in all), in chunks of about a million
        Bronze rows: the chunk is computed from the row, not sampled, so the
        frame is computed once; no `by`: in the frame's own order (a
        query's). Per target, the files in order and the reasons counted."""
        if by:
            chunks = max(1, min(self.parallelism * 4, -(-rows // CHUNK_ROWS)))
            if rows > CHUNK_ROWS:
                chunks = max(chunks, self.parallelism)
            # No count of rows given: one chunk.
            size = -(-rows // chunks) if rows > 0 else None
            chunk = (F.col(by[0]) / F.lit(size)).cast("long") if size else F.lit(0).cast("long")
            frame = frame.withColumn("_chunk", chunk)
            # Hashed: a task may get several chunks, or none; each chunk is
            # one task's, in order.
            frame = frame.repartition(chunks, "_chunk").sortWithinPartitions("_chunk", *by)
        run = writer(plan["lake"], plan["run_id"], plan["row_group_rows"], targets, chunked=bool(by))
        written = frame.mapInArrow(run, WRITTEN).collect()
        written.sort(key=lambda r: (r["chunk"], r["part"]))
        result = []
        for t in range(len(targets)):
            reasons = {}
            for r in written:
                if r["target"] == t:
                    for reason, n in json.loads(r["reasons"]).items():
                        reasons[reason] = reasons.get(reason, 0) + n
            files = [r["file"] for r in written if r["target"] == t]
            if not files and targets[t].schema is not None and targets[t].keep != "rejected":
                # An empty table is still a table: one file of its columns.
                empty = medallion.Parts(plan["lake"], targets[t].folder, f"{plan['run_id']}-empty", targets[t].schema)
                empty.write(pa.RecordBatch.from_pylist([], schema=targets[t].schema))
                files = empty.finish()[0]
            result.append((files, reasons))
        return result

    def read(self, lake, files):
        return self.spark.read.parquet(*[lake.rstrip("/") + "/" + f for f in files])

    def silver(self, request, schemas):
        plan = json.loads(request)
        built = {}
        written = []
        for table in plan["tables"]:
            started = time.time()
            if table.get("clean"):
                done = self.clean_table(plan, table, schemas, built)
            else:
                done = self.sql_table(plan, table, schemas, built)
            done["seconds"] = time.time() - started
            built[table["name"]] = done["files"]
            written.append(done)
            print(f"silver table {table['name']} on the cluster in {done['seconds']:.1f} s", file=sys.stderr)
        return json.dumps(written)

    def clean_table(self, plan, table, schemas, built):
        spark, lake, name = self.spark, plan["lake"], table["name"]
        clean = table["clean"]
        if clean["plugin"] not in self.shipped:
            spark.sparkContext.addFile(clean["plugin"])
            self.shipped.add(clean["plugin"])
        parts = []
        for f in table["bronze"]:
            frame = spark.read.parquet(f["location"])
            data = [c for c in frame.columns if c not in plan["lineage"]]
            parts.append(frame.select(*data, (F.lit(f["offset"]) + F.col("_metadata.row_index")).alias("_row")))
        if not parts:
            raise RuntimeError(f"silver table `{name}`: its Bronze table has no files")
        bronze = reduce(DataFrame.unionByName, parts)
        if not clean["stateless"]:
            # One instance sees every row, in Bronze order.
            bronze = bronze.repartitionByRange(1, "_row").sortWithinPartitions("_row")
        tagged = bronze.mapInArrow(cleaner(name, clean, plan["limits"], table["key"]), TAGGED)
        tagged = tagged.persist(StorageLevel.MEMORY_AND_DISK)
        try:
            ports = {}
            for port in ("out", "rejected", "nulled"):
                first = tagged.where(F.col("_port") == port).select("_batch").limit(1).collect()
                if first:
                    original = pa.ipc.open_stream(pa.py_buffer(bytes(first[0]["_batch"]))).schema
                    schema = for_spark(original)
                    rows = tagged.where(F.col("_port") == port).select("_batch")
                    decoded = rows.mapInArrow(decoder(schema), from_arrow_schema(schema).add("_i", "long"))
                    ports[port] = (decoded, schema, original)
            quarantine_files, reasons, nulled = [], {}, {}
            for port, kind, counts in (("rejected", "clean", reasons), ("nulled", "nulled", nulled)):
                if port in ports:
                    # Stored with the types the plugin gave, as the host stores them.
                    frame, schema, original = ports[port]
                    target = Target(f"{table['quarantine']}/{kind}", schema.names, original, reasons=True)
                    [(files, counted)] = self.files(frame, plan, [target], by=("_row", "_i"))
                    quarantine_files += files
                    for reason, n in counted.items():
                        counts[reason] = counts.get(reason, 0) + n
            files = []
            if "out" in ports:
                out, out_schema, _ = ports["out"]
                keys = None
                if table["key"]:
                    if table["key"] not in out_schema.names:
                        raise RuntimeError(
                            f"silver table `{name}`: key: no column `{table['key']}` after cleaning; "
                            f"the columns are {', '.join(out_schema.names)}"
                        )
                    narrow = pa.schema([out_schema.field(table["key"]), out_schema.field("_row")])
                    found = tagged.where(F.col("_port") == KEYS).select("_batch")
                    keys = found.mapInArrow(decoder(narrow, narrow.names), from_arrow_schema(narrow))
                checked = self.rules(plan, table, out.drop("_i"), keys, built)
                cleaned = list(out_schema.names)
                targets = [
                    Target(table["folder"], self.output_columns(table, cleaned), schemas.get(name), keep="kept"),
                    Target(f"{table['quarantine']}/checks", cleaned + ["_reason"], keep="rejected", reasons=True),
                ]
                (files, _), (check_files, counted) = self.files(checked, plan, targets, rows=table["bronze_rows"])
                quarantine_files += check_files
                for reason, n in counted.items():
                    reasons[reason] = reasons.get(reason, 0) + n
            return {"table": name, "files": files, "quarantine_files": quarantine_files, "reasons": reasons, "nulled": nulled}
        finally:
            for frame in [tagged, *self.held]:
                frame.unpersist()
            self.held.clear()

    def rules(self, plan, table, out, keys, built):
        """The first reason that applies to each cleaned row, in `_reason`
        (null: kept): `duplicate_key`, then each parent's; with the parents'
        `take` columns and the derived ones. `keys`: the cleaned rows' key
        and `_row` only, to find the duplicates without moving whole rows."""
        reason = None
        frame = out
        if table["key"]:
            key = table["key"]
            # The keys on several rows and the first of those rows: few, so
            # sent to every task rather than shuffling the table by key.
            twice = (
                keys.groupBy(key)
                .agg(F.count(F.lit(1)).alias("__n"), F.min("_row").alias("__first"))
                .where(F.col("__n") > 1)
                .select(F.col(key).alias("__dup"), "__first")
            ).persist(StorageLevel.MEMORY_AND_DISK)
            self.held.append(twice)
            if twice.count() <= BROADCAST_ROWS:
                twice = F.broadcast(twice)
            frame = frame.join(twice, frame[key].eqNullSafe(twice["__dup"]), "left")
            duplicate = F.col("__first").isNotNull() & (F.col("_row") != F.col("__first"))
            reason = F.when(duplicate, F.lit("duplicate_key"))
        keyed = {t["name"]: t["key"] for t in plan["tables"]}
        for i, parent in enumerate(table["parents"]):
            found = self.read(plan["lake"], built[parent["table"]])
            hit = f"__hit{i}"
            chosen = [F.col(parent["key"]).alias(f"__key{i}"), F.lit(True).alias(hit)]
            chosen += [F.col(c).alias(f"__take{i}_{c}") for c in parent["take"]]
            # A parent's own key is on one row each; another column may not be.
            unique = keyed.get(parent["table"]) == parent["key"]
            if parent["take"] and not unique:
                twice = found.groupBy(parent["key"]).count().where(F.col("count") > 1).limit(1).collect()
                if twice:
                    raise RuntimeError(
                        f"silver table `{table['name']}`: parent `{parent['table']}` has key "
                        f"{twice[0][parent['key']]!r} on more than one row, so the columns taken from it "
                        f"({', '.join(parent['take'])}) are ambiguous (which row's?)\n  hint: give "
                        f"`{parent['table']}` `key: {parent['key']}`, or take nothing from it"
                    )
            found = found.select(*chosen)
            if not unique:
                found = found.dropDuplicates([f"__key{i}"])
            frame = frame.join(found, frame[parent["column"]] == found[f"__key{i}"], "left")
            missing = F.col(hit).isNull()
            reason = F.when(missing, F.lit(parent["reason"])) if reason is None else reason.when(missing, F.lit(parent["reason"]))
        frame = frame.withColumn("_reason", reason if reason is not None else F.lit(None).cast("string"))
        for i, parent in enumerate(table["parents"]):
            for c in parent["take"]:
                frame = frame.withColumnRenamed(f"__take{i}_{c}", c)
        # Every derived column from the row as it was before them (polars'
        # `with_columns`): one replaced in place, the others after.
        derived = {column: F.expr(expression).alias(column) for column, expression in table["derive"]}
        # The joins' helper columns go: less to move to the writers.
        helpers = {"__dup", "__first"} | {f"__{h}{i}" for i in range(len(table["parents"])) for h in ("key", "hit")}
        kept = [derived.pop(c) if c in derived else F.col(c) for c in frame.columns if c not in helpers]
        return frame.select(*kept, *derived.values())

    @staticmethod
    def output_columns(table, cleaned):
        if table["columns"]:
            return table["columns"]
        taken = [c for p in table["parents"] for c in p["take"]]
        derived = [c for c, _ in table["derive"] if c not in cleaned + taken]
        return [c for c in cleaned + taken + derived if not c.startswith("_")]

    def views(self, files):
        for read, located in files.items():
            self.spark.read.parquet(*located).createOrReplaceTempView(read)

    def sql_table(self, plan, table, schemas, built):
        lake = plan["lake"]
        self.views({read: [lake.rstrip("/") + "/" + f for f in built[read]] for read in table["reads"]})
        frame = self.spark.sql(table["sql"])
        # Written as the query gives its rows: its partitions in order.
        target = Target(table["folder"], frame.columns, schemas.get(table["name"]))
        [(files, _)] = self.files(frame, plan, [target], by=())
        return {"table": table["name"], "files": files}

    def gold_query(self, table, sql, files):
        self.views(json.loads(files))
        return self.spark.sql(sql)._collect_as_arrow()


def plugin_failure(error):
    """The plugin's own words from a failed Spark job, when a plugin failed."""
    text = str(error)
    found = re.search(r"(medallion\.PluginFailure: .*)", text)
    return found.group(1) if found else None


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("pipeline")
    parser.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE")
    stage = parser.add_mutually_exclusive_group()
    stage.add_argument("--from", dest="first", choices=["bronze", "silver", "gold"])
    stage.add_argument("--only", choices=["bronze", "silver", "gold"])
    parser.add_argument("--ingest-date")
    args = parser.parse_args(argv)
    all_stages = ["bronze", "silver", "gold"]
    stages = [args.only] if args.only else all_stages[all_stages.index(args.first):] if args.first else all_stages

    spark = SparkSession.builder.appName(f"medallion {os.path.basename(args.pipeline)}").getOrCreate()
    spark.sparkContext.setLogLevel(os.environ.get("MEDALLION_SPARK_LOG", "WARN"))
    spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", str(64 * 1024))
    spark.conf.set("spark.sql.session.timeZone", "UTC")
    if not spark.sparkContext.getConf().contains("spark.sql.shuffle.partitions"):
        # Spark's 200 is for much larger clusters; adaptive execution merges
        # small ones, not ones a window or a join split the keys into.
        spark.conf.set("spark.sql.shuffle.partitions", str(max(2, spark.sparkContext.defaultParallelism * 2)))

    class Driver(Cluster):
        def silver(self, request, schemas):
            try:
                return super().silver(request, schemas)
            except Exception as e:
                words = plugin_failure(e)
                if words:
                    raise medallion.PluginFailure(words) from None
                raise

    try:
        report = medallion.run(
            os.path.abspath(args.pipeline), Driver(spark), sets=args.sets, stages=stages, ingest_date=args.ingest_date
        )
    except medallion.RunFailure as e:
        print(f"error: {e}", file=sys.stderr)
        spark.stop()
        return e.exit_code
    print(report)
    spark.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
