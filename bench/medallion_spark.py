"""Baseline for the whole-pipeline benchmark: sources -> Bronze -> Silver ->
Gold with PySpark in local mode, the same rules as bench/bronze_polars.py and
bench/medallion_polars.py (DataFrame API only: no Python UDFs, no per-row
Python except the final SQLite insert).

  python bench/medallion_spark.py SOURCES_DIR WORK_DIR GOLD_DB

Bronze: every CSV column of SOURCES_DIR read as a string (RFC 4180: quoted
fields may hold commas, "" and newlines), the three lineage columns _source,
_ingested_at, _run_id added, one Snappy Parquet file per table in
WORK_DIR/bronze/<csv stem>/; each table of products_data.db read with sqlite3
and written the same way (SQLite's types kept).
Silver (WORK_DIR/silver/<table>/ and quarantine_<table>/, the rejected rows'
Bronze row index): cast (whitespace stripped, unparseable or impossible dates
-> null), reject nulls in keys, bounds (amount, quantity, price > 0; rating
1..5), first row per key in Bronze order, foreign keys against the kept
parents (a null foreign key is an orphan), order_date taken from the order,
line_amount, dim_date.
Gold: the five tables' SQL, then the KPI formulas of the plugins, written to a
fresh SQLite file GOLD_DB (dates as ISO text).

Spark: local[*] (or the cluster MEDALLION_SPARK_MASTER names), 8 GiB driver, 8 shuffle partitions, no UI, ANSI off and
try_cast / to_date (bad values -> null), the CORRECTED time parser (no
lenient roll-over of 2023-02-30). Independent tables (the Bronze files, the
Silver tables whose parents are kept) run as concurrent jobs from threads, as
a multi-line CSV is a single task.

Prints `<table>: <rows> rows` per Gold table, then, as the last line, the wall
seconds of each stage: {"stages": {"startup": s, "bronze": s, "silver": s,
"gold": s}} (startup: the Spark session; gold includes the SQLite write).
"""

import concurrent.futures
import os
import datetime
import json
import pathlib
import sqlite3
import sys
import time

from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

from rules import DATE, GOLD, TABLES, TEXT, write_gold

TYPES = {"int": "bigint", "double": "double", "date": "date", "string": "string"}

WHITESPACE = r"' \t\n\r\u000C\u000B'"  # a Spark SQL literal: stripped around numbers and dates


def session() -> SparkSession:
    spark = (
        SparkSession.builder.master(os.environ.get("MEDALLION_SPARK_MASTER", "local[*]"))
        .appName("medallion-spark")
        .config("spark.driver.memory", "8g")  # local mode: the driver is the executor; read before the JVM starts
        .config("spark.sql.shuffle.partitions", "8")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.ansi.enabled", "false")  # no errors on arithmetic; casts use try_* anyway
        .config("spark.sql.legacy.timeParserPolicy", "CORRECTED")  # strict yyyy-MM-dd: 2023-02-30 -> null
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.parquet.compression.codec", "snappy")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    return spark


# ---------------------------------------------------------------- Bronze


def lineage(frame: DataFrame, source: str, now: datetime.datetime, run_id: str) -> DataFrame:
    return frame.select("*", F.lit(source).alias("_source"), F.lit(now).alias("_ingested_at"), F.lit(run_id).alias("_run_id"))


def sqlite_frame(spark: SparkSession, rows: list, names: list[str]) -> DataFrame:
    # SQLite's types kept: a column of integers is a bigint, of numbers a double, anything else text.
    fields, columns = [], list(zip(*rows)) if rows else [() for _ in names]
    for name, values in zip(names, columns):
        present = [v for v in values if v is not None]
        if all(isinstance(v, int) for v in present):
            kind = T.LongType()
        elif all(isinstance(v, (int, float)) for v in present):
            kind = T.DoubleType()
        else:
            kind = T.StringType()
        fields.append(T.StructField(name, kind))
    convert = [
        (lambda v: None if v is None else float(v)) if isinstance(f.dataType, T.DoubleType)
        else (lambda v: None if v is None else str(v)) if isinstance(f.dataType, T.StringType)
        else (lambda v: v)
        for f in fields
    ]
    data = [tuple(c(v) for c, v in zip(convert, row)) for row in rows]
    return spark.createDataFrame(data, T.StructType(fields))


def bronze(spark: SparkSession, sources: pathlib.Path, out: pathlib.Path) -> None:
    now = datetime.datetime.now(datetime.timezone.utc)  # aware: Spark stores the instant, not local time
    run_id = now.strftime("%Y%m%dT%H%M%SZ")

    def write(frame: DataFrame, table: str) -> None:
        # One file per table, rows in source order (Silver's "first row per key" relies on it).
        frame.coalesce(1).write.mode("overwrite").parquet(str(out / table))

    def csv(path: pathlib.Path) -> None:
        frame = (
            spark.read.option("header", True)
            .option("inferSchema", False)
            .option("multiLine", True)
            .option("quote", '"')
            .option("escape", '"')
            .option("encoding", "UTF-8")
            .csv(str(path))
        )
        write(lineage(frame, path.name, now, run_id), path.stem)

    def sqlite(path: pathlib.Path) -> None:
        with sqlite3.connect(path) as connection:
            tables = [r[0] for r in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
            for table in tables:
                cursor = connection.execute(f'SELECT * FROM "{table}"')
                names = [d[0] for d in cursor.description]
                write(lineage(sqlite_frame(spark, cursor.fetchall(), names), path.name, now, run_id), table)

    # A multi-line CSV is one task: run the tables' jobs side by side, largest first, to use every core.
    jobs = [(csv, p) for p in sources.glob("*.csv")] + [(sqlite, p) for p in sources.glob("*.db")]
    jobs.sort(key=lambda job: job[1].stat().st_size, reverse=True)
    with concurrent.futures.ThreadPoolExecutor(max_workers=len(jobs) or 1) as pool:
        for future in [pool.submit(f, p) for f, p in jobs]:
            future.result()


# ---------------------------------------------------------------- Silver


def cast(field: T.StructField, kind: str):
    # SQL expressions: PySpark 3.5 has no Column.try_cast, no trim(column, chars), no try_to_date.
    column = f"`{field.name}`"
    if kind == TEXT:
        return F.col(field.name).cast("string").alias(field.name)
    if not isinstance(field.dataType, T.StringType):
        return F.expr(f"try_cast({column} AS {TYPES[kind]})").alias(field.name)
    text = f"trim(BOTH {WHITESPACE} FROM {column})"
    if kind == DATE:
        # ANSI off and the CORRECTED parser: a bad or impossible date is null, not an error.
        return F.expr(f"to_date({text}, 'yyyy-MM-dd')").alias(field.name)
    return F.expr(f"try_cast({text} AS {TYPES[kind]})").alias(field.name)


def clean(spark: SparkSession, bronze_dir: pathlib.Path, out: pathlib.Path, name: str, kept: dict[str, DataFrame]) -> DataFrame:
    """One Silver table from its Bronze table and its (already kept) parents."""
    source, key, columns, bounds, parents = TABLES[name]
    raw = spark.read.parquet(str(bronze_dir / source))
    fields = {f.name: f for f in raw.schema.fields}
    # Bronze order: file, then the row's index in its Parquet file.
    frame = raw.select(
        *(cast(fields[c], k) for c, k in columns),
        F.col("_metadata.file_name").alias("_file"),
        F.col("_metadata.row_index").alias("_row"),
    )
    bad = F.col(key).isNull()
    for column, (low, high) in bounds.items():
        value = F.col(column)
        broken = value.isNull() | (value <= low)
        if high is not None:
            broken = broken | (value >= high)
        bad = bad | broken
    # First row per key among the rows that passed: later ones are duplicates.
    first = Window.partitionBy(key, "_bad").orderBy("_file", "_row")
    frame = frame.withColumn("_bad", bad).withColumn("_first", F.row_number().over(first) == 1)
    ok = ~F.col("_bad") & F.col("_first")
    for column, parent, parent_key, take in parents:
        found = f"_in_{parent}"
        # A left join keeps every row; no match (or a null key) -> orphan.
        frame = frame.join(kept[parent].select(F.col(parent_key).alias(column), *take, F.lit(True).alias(found)), on=column, how="left")
        ok = ok & F.col(found).isNotNull()
    frame = frame.withColumn("_ok", ok)
    if name == "fact_order_items":
        frame = frame.withColumn("line_amount", F.col("quantity") * F.col("unit_price"))
        names = ["order_item_id", "order_id", "product_id", "quantity", "unit_price", "order_date", "line_amount"]
    else:
        names = [c for c, _ in columns]
    frame = frame.persist()
    frame.where("_ok").select(names).write.mode("overwrite").parquet(str(out / name))
    frame.where("NOT _ok").select("_row").write.mode("overwrite").parquet(str(out / f"quarantine_{name}"))
    frame.unpersist()
    return spark.read.parquet(str(out / name))


def dim_date(orders: DataFrame, out: pathlib.Path) -> DataFrame:
    date = F.col("date_key")
    (
        orders.where(F.col("order_date").isNotNull())
        .select(F.col("order_date").alias("date_key"))
        .distinct()
        .select(
            "date_key",
            F.year(date).alias("year"),
            F.month(date).alias("month"),
            F.dayofmonth(date).alias("day"),
            F.weekofyear(date).alias("week"),  # ISO week
            F.quarter(date).alias("quarter"),
        )
        .orderBy("date_key")
        .coalesce(1)
        .write.mode("overwrite")
        .parquet(str(out / "dim_date"))
    )
    return orders.sparkSession.read.parquet(str(out / "dim_date"))


def silver(spark: SparkSession, bronze_dir: pathlib.Path, out: pathlib.Path) -> None:
    # The tables of a wave only need the kept tables of the waves before; they
    # run side by side (Spark schedules the jobs of several threads on the same cores).
    waves = [["dim_customers", "dim_products"], ["fact_orders"], ["fact_order_items", "fact_reviews", "dim_date"]]
    kept: dict[str, DataFrame] = {}
    with concurrent.futures.ThreadPoolExecutor(max_workers=3) as pool:
        for wave in waves:
            futures = {
                name: pool.submit(dim_date, kept["fact_orders"], out) if name == "dim_date" else pool.submit(clean, spark, bronze_dir, out, name, kept)
                for name in wave
            }
            for name, future in futures.items():
                kept[name] = future.result()


# ---------------------------------------------------------------- Gold


def score(values, bins: int = 5):
    # 1 + floor(bins * (values strictly lower) / n), ties share; null stays null (not ranked, but counted in n).
    below = F.rank().over(Window.orderBy(values.asc_nulls_last())) - 1
    n = F.count(F.lit(1)).over(Window.partitionBy())
    scored = F.floor(F.lit(bins) * below / n) + 1
    return F.when(values.isNotNull(), F.least(F.greatest(scored, F.lit(1)), F.lit(bins)))


def gold(spark: SparkSession, silver_dir: pathlib.Path, db: pathlib.Path) -> None:
    t = {name: spark.read.parquet(str(silver_dir / name)) for name in [*TABLES, "dim_date"]}
    orders, items, products, customers, reviews = t["fact_orders"], t["fact_order_items"], t["dim_products"], t["dim_customers"], t["fact_reviews"]

    daily = (
        orders.where(F.col("order_date").isNotNull())
        .groupBy(F.col("order_date").alias("date"))
        .agg(F.sum("total_amount").alias("total_revenue"), F.count(F.lit(1)).alias("total_orders"))
        .withColumn("avg_order_value", F.col("total_revenue") / F.col("total_orders"))
        .cache()
    )
    days = daily.agg(F.min("date").alias("lo"), F.max("date").alias("hi"))
    calendar = (
        days.select(F.explode(F.sequence("lo", "hi", F.expr("INTERVAL 1 DAY"))).alias("date"))
        .join(daily.select("date", "total_revenue"), on="date", how="left")
        .select("date", F.coalesce("total_revenue", F.lit(0.0)).alias("revenue"))
    )
    by_day = Window.orderBy("date")
    calendar = calendar.select(
        "date",
        (F.sum("revenue").over(by_day.rowsBetween(-6, Window.currentRow)) / 7).alias("revenue_7d_avg"),
        F.lag("revenue", 7).over(by_day).alias("_before"),
    )
    before = F.col("_before")
    daily = (
        daily.join(calendar, on="date", how="left")
        .withColumn("revenue_growth_pct", F.when(before != 0, (F.col("total_revenue") - before) / before * 100))
        .drop("_before")
        .orderBy("date")
    )

    # Items aggregated by product once: by_product, reviews impact and stock share it.
    sold = items.groupBy("product_id").agg(F.sum("quantity").alias("_sold"), F.sum("line_amount").alias("total_revenue")).cache()

    by_product = sold.join(products, on="product_id").select(
        "product_id",
        "product_name",
        "category",
        "brand",
        F.col("_sold").alias("total_quantity_sold"),
        "total_revenue",
        F.rank().over(Window.partitionBy("category").orderBy(F.desc("total_revenue"))).cast("bigint").alias("revenue_rank_in_category"),
    )

    metrics = (
        orders.groupBy("customer_id")
        .agg(
            F.count(F.lit(1)).alias("total_orders"),
            F.sum("total_amount").alias("total_spent"),
            F.avg("total_amount").alias("avg_order_value"),
            F.min("order_date").alias("first_order_date"),
            F.max("order_date").alias("last_order_date"),
        )
        .join(customers.select("customer_id", "country"), on="customer_id")
        .select("customer_id", "country", "total_orders", "total_spent", "avg_order_value", "first_order_date", "last_order_date")
    )
    as_of = F.max("last_order_date").over(Window.partitionBy())
    metrics = metrics.withColumn("recency_days", F.datediff(as_of, F.col("last_order_date")).cast("bigint"))
    metrics = metrics.withColumns(
        {
            "_r": score(F.coalesce(-F.col("recency_days").cast("double"), F.lit(float("-inf")))),  # unknown = worst
            "_f": score(F.col("total_orders").cast("double")),
            "_m": score(F.col("total_spent")),
        }
    )
    r, f = F.col("_r"), F.col("_f")
    metrics = metrics.withColumns(
        {
            "rfm_score": F.concat(*(F.col(c).cast("string") for c in ["_r", "_f", "_m"])),
            "segment": F.when((r >= 4) & (f >= 4), "champions")
            .when(f >= 4, "loyal")
            .when((r >= 4) & (f == 1), "new")
            .when(r >= 4, "promising")
            .when((r <= 2) & (f >= 3), "at_risk")
            .when(r == 1, "lost")
            .otherwise("needs_attention"),
        }
    ).drop("_r", "_f", "_m")

    rated = reviews.groupBy("product_id").agg(
        F.avg("rating").alias("avg_rating"),
        F.count(F.lit(1)).alias("nb_reviews"),
        F.sum(F.when(F.col("rating") <= 2, 1).otherwise(0)).cast("bigint").alias("_neg"),
    )
    impact = (
        products.select("product_id", "product_name", "stock_quantity", "category")
        .join(rated, on="product_id", how="left")
        .join(sold, on="product_id", how="left")
        .select(
            "product_id",
            "product_name",
            "stock_quantity",
            "category",
            F.coalesce("avg_rating", F.lit(0.0)).alias("avg_rating"),
            F.coalesce("nb_reviews", F.lit(0)).cast("bigint").alias("nb_reviews"),
            F.coalesce("_neg", F.lit(0)).cast("bigint").alias("_neg"),
            F.coalesce("total_revenue", F.lit(0.0)).alias("total_revenue"),
            F.coalesce("_sold", F.lit(0)).cast("bigint").alias("_sold"),
        )
        .cache()
    )
    v, m = F.col("nb_reviews"), 10.0
    mean = impact.agg((F.sum(F.col("avg_rating") * v) / F.greatest(F.sum(v), F.lit(1))).alias("_mean"))
    reviews_impact = (
        impact.crossJoin(mean)
        .withColumns(
            {
                "review_score": (v * F.col("avg_rating") + F.lit(m) * F.col("_mean")) / (v + F.lit(m)),
                "negative_share": F.when(v > 0, F.col("_neg") / v).otherwise(0.0),
            }
        )
        .withColumn(
            "impact_class",
            F.when(v == 0, "no_reviews")
            .when((F.col("negative_share") >= 0.3) & (v >= 5), "at_risk")
            .when(F.col("review_score") >= 4.0, "driver")
            .otherwise("neutral"),
        )
        .select("product_id", "product_name", "avg_rating", "nb_reviews", "total_revenue", "review_score", "negative_share", "impact_class")
    )

    stock_quantity, total = F.col("stock_quantity"), F.col("total_quantity_sold")
    stock = (
        impact.crossJoin(t["dim_date"].agg(F.count(F.lit(1)).alias("_days")))
        .select("product_id", "product_name", "category", "stock_quantity", F.col("_sold").alias("total_quantity_sold"), "_days")
        .withColumns(
            {
                "stock_turnover_ratio": F.when(F.coalesce(stock_quantity, F.lit(0)) == 0, 0.0).otherwise(total / stock_quantity),
                "avg_daily_sales": total / F.col("_days"),
            }
        )
        .withColumn("days_of_cover", F.when(F.col("avg_daily_sales") > 0, stock_quantity / F.col("avg_daily_sales")))
    )
    cover = F.col("days_of_cover")
    stock = stock.withColumns(
        {
            "stock_status": F.when(F.coalesce(stock_quantity, F.lit(0)) <= 0, "out_of_stock")
            .when(cover.isNull(), "no_sales")
            .when(cover < 7, "critical")
            .when(cover < 14, "low")
            .when(cover > 180, "overstock")
            .otherwise("ok"),
            "reorder_qty": F.greatest(F.ceil(F.col("avg_daily_sales") * 14 - F.coalesce(stock_quantity, F.lit(0))), F.lit(0)).cast("bigint"),
        }
    ).drop("_days")

    def iso_dates(frame: DataFrame) -> DataFrame:
        return frame.select(
            *(F.date_format(f.name, "yyyy-MM-dd").alias(f.name) if isinstance(f.dataType, T.DateType) else F.col(f.name) for f in frame.schema.fields)
        )

    frames = [iso_dates(frame) for frame in [daily, by_product, metrics, reviews_impact, stock]]
    write_gold(db, ((name, frame.columns, (tuple(row) for row in frame.toLocalIterator(prefetchPartitions=True))) for name, frame in zip(GOLD, frames)))
    daily.unpersist()
    sold.unpersist()
    impact.unpersist()


def main(sources: pathlib.Path, work: pathlib.Path, db: pathlib.Path) -> None:
    stages = {}
    clock = time.perf_counter()
    spark = session()
    stages["startup"] = time.perf_counter() - clock
    try:
        for stage, run in [
            ("bronze", lambda: bronze(spark, sources, work / "bronze")),
            ("silver", lambda: silver(spark, work / "bronze", work / "silver")),
            ("gold", lambda: gold(spark, work / "silver", db)),
        ]:
            clock = time.perf_counter()
            run()
            stages[stage] = time.perf_counter() - clock
    finally:
        spark.stop()
    print(json.dumps({"stages": {k: round(v, 3) for k, v in stages.items()}}), flush=True)


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    main(*(pathlib.Path(a).resolve() for a in sys.argv[1:4]))
