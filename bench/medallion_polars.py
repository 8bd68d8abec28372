"""Baseline for the Silver and Gold benchmarks: the same rules as
pipeline.yaml and the plugins, as a plain polars script (no plugins, no lake
commits).

  python bench/medallion_polars.py silver LAKE OUT   Bronze (LAKE's latest partition) -> Silver + quarantine Parquet in OUT
  python bench/medallion_polars.py gold SILVER_DIR DB Silver Parquet (OUT above) -> the five Gold tables in a SQLite file
  python bench/medallion_polars.py all SOURCES WORK DB
      end to end: sources -> Bronze Parquet (bench/bronze_polars.py) in WORK/bronze -> Silver in WORK/silver
      -> Gold in DB; the last line of stdout is {"stages": {"bronze": s, "silver": s, "gold": s}}

Silver: cast (unparseable -> null), reject nulls in keys, bounds (amount,
quantity, price > 0; rating 1..5), first row per key, foreign keys against the
kept parents, order_date taken from the order, line_amount, dim_date.
Gold: the five tables' SQL, then the KPI formulas of the plugins.
"""

import json
import pathlib
import sys
import time

import polars as pl

from rules import DATE, GOLD, TABLES, TEXT, write_gold

TYPES = {"int": pl.Int64, "double": pl.Float64, "date": pl.Date, "string": pl.Utf8}


def cast(name: str, kind: str) -> pl.Expr:
    column = pl.col(name)
    if kind == TEXT:
        return column.cast(pl.Utf8)
    text = column.cast(pl.Utf8).str.strip_chars()
    if kind == DATE:
        return text.str.to_date("%Y-%m-%d", strict=False).alias(name)
    return text.cast(TYPES[kind], strict=False).alias(name)


def silver(lake: pathlib.Path, out: pathlib.Path) -> None:
    commits = sorted((lake / "bronze" / "_commits").glob("*.json"))
    manifest = json.loads(commits[-1].read_text())
    silver_from({source: [str(lake / f) for f in table["files"]] for source, table in manifest["tables"].items()}, out)


def silver_from(bronze: dict[str, list[str]], out: pathlib.Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    kept: dict[str, pl.DataFrame] = {}
    for name, (source, key, columns, bounds, parents) in TABLES.items():
        frame = pl.scan_parquet(bronze[source]).with_row_index("_row").with_columns(cast(c, k) for c, k in columns)
        bad = pl.col(key).is_null()
        for column, (low, high) in bounds.items():
            value = pl.col(column)
            broken = value.is_null() | (value <= low)
            if high is not None:
                broken = broken | (value >= high)
            bad = bad | broken
        frame = frame.with_columns(bad.alias("_bad")).collect()
        rejected = [frame.filter(pl.col("_bad"))]
        frame = frame.filter(~pl.col("_bad"))
        duplicate = ~pl.col(key).is_first_distinct()
        rejected.append(frame.filter(duplicate))
        frame = frame.filter(~duplicate)
        for column, parent, parent_key, take in parents:
            orphan = ~pl.col(column).is_in(kept[parent][parent_key].implode()).fill_null(False)
            rejected.append(frame.filter(orphan))
            frame = frame.filter(~orphan)
            if take:
                frame = frame.join(kept[parent].select([pl.col(parent_key).alias(column), *take]), on=column, how="inner")
        if name == "fact_order_items":
            frame = frame.with_columns((pl.col("quantity") * pl.col("unit_price")).alias("line_amount"))
            names = ["order_item_id", "order_id", "product_id", "quantity", "unit_price", "order_date", "line_amount"]
        else:
            names = [c for c, _ in columns]
        frame = frame.select(names)
        frame.write_parquet(out / f"{name}.parquet", compression="snappy")
        pl.concat([r.select("_row") for r in rejected]).write_parquet(out / f"quarantine_{name}.parquet")
        kept[name] = frame
    dates = kept["fact_orders"].select(pl.col("order_date").drop_nulls().unique().sort().alias("date_key"))
    dates.with_columns(
        pl.col("date_key").dt.year().alias("year"),
        pl.col("date_key").dt.month().alias("month"),
        pl.col("date_key").dt.day().alias("day"),
        pl.col("date_key").dt.week().alias("week"),
        pl.col("date_key").dt.quarter().alias("quarter"),
    ).write_parquet(out / "dim_date.parquet")


def score(values: pl.Expr, bins: int = 5) -> pl.Expr:
    # 1 + floor(bins * (values strictly lower) / n), ties share.
    below = values.rank("min") - 1
    return (1 + (bins * below / pl.len()).floor().cast(pl.Int64)).clip(1, bins)


def gold(silver_dir: pathlib.Path, db: pathlib.Path) -> None:
    t = {p.stem: pl.read_parquet(p) for p in silver_dir.glob("*.parquet") if not p.stem.startswith("quarantine")}
    orders, items, products, customers, reviews = t["fact_orders"], t["fact_order_items"], t["dim_products"], t["dim_customers"], t["fact_reviews"]

    daily = (
        orders.filter(pl.col("order_date").is_not_null())
        .group_by("order_date")
        .agg(pl.col("total_amount").sum().alias("total_revenue"), pl.len().cast(pl.Int64).alias("total_orders"))
        .with_columns((pl.col("total_revenue") / pl.col("total_orders")).alias("avg_order_value"))
        .rename({"order_date": "date"})
        .sort("date")
    )
    calendar = daily.select("date", "total_revenue").upsample("date", every="1d").fill_null(0.0)
    calendar = calendar.with_columns(
        (pl.col("total_revenue").rolling_sum(7, min_samples=1) / 7).alias("revenue_7d_avg"),
        pl.col("total_revenue").shift(7).alias("_before"),
    )
    daily = daily.join(calendar.select("date", "revenue_7d_avg", "_before"), on="date", how="left").with_columns(
        pl.when(pl.col("_before") != 0).then((pl.col("total_revenue") - pl.col("_before")) / pl.col("_before") * 100).alias("revenue_growth_pct")
    ).drop("_before")

    by_product = (
        items.join(products, on="product_id")
        .group_by("product_id", "product_name", "category", "brand")
        .agg(pl.col("quantity").sum().alias("total_quantity_sold"), pl.col("line_amount").sum().alias("total_revenue"))
        .with_columns(pl.col("total_revenue").rank("min", descending=True).over("category").cast(pl.Int64).alias("revenue_rank_in_category"))
    )

    metrics = (
        orders.join(customers, on="customer_id")
        .group_by("customer_id", "country")
        .agg(
            pl.len().cast(pl.Int64).alias("total_orders"),
            pl.col("total_amount").sum().alias("total_spent"),
            pl.col("total_amount").mean().alias("avg_order_value"),
            pl.col("order_date").min().alias("first_order_date"),
            pl.col("order_date").max().alias("last_order_date"),
        )
    )
    as_of = metrics["last_order_date"].max()
    metrics = metrics.with_columns((pl.lit(as_of) - pl.col("last_order_date")).dt.total_days().alias("recency_days"))
    metrics = metrics.with_columns(
        score((-pl.col("recency_days").cast(pl.Float64)).fill_null(float("-inf"))).alias("_r"),  # unknown = worst
        score(pl.col("total_orders").cast(pl.Float64)).alias("_f"),
        score(pl.col("total_spent")).alias("_m"),
    ).with_columns(
        pl.concat_str([pl.col("_r"), pl.col("_f"), pl.col("_m")]).alias("rfm_score"),
        pl.when((pl.col("_r") >= 4) & (pl.col("_f") >= 4)).then(pl.lit("champions"))
        .when(pl.col("_f") >= 4).then(pl.lit("loyal"))
        .when((pl.col("_r") >= 4) & (pl.col("_f") == 1)).then(pl.lit("new"))
        .when(pl.col("_r") >= 4).then(pl.lit("promising"))
        .when((pl.col("_r") <= 2) & (pl.col("_f") >= 3)).then(pl.lit("at_risk"))
        .when(pl.col("_r") == 1).then(pl.lit("lost"))
        .otherwise(pl.lit("needs_attention")).alias("segment"),
    ).drop("_r", "_f", "_m")

    r = reviews.group_by("product_id").agg(
        pl.col("rating").mean().alias("avg_rating"), pl.len().cast(pl.Int64).alias("nb_reviews"), (pl.col("rating") <= 2).sum().alias("_neg")
    )
    s = items.group_by("product_id").agg(pl.col("line_amount").sum().alias("total_revenue"), pl.col("quantity").sum().alias("_sold"))
    impact = products.select("product_id", "product_name", "stock_quantity", "category").join(r, on="product_id", how="left").join(s, on="product_id", how="left")
    impact = impact.with_columns(
        pl.col("avg_rating").fill_null(0.0), pl.col("nb_reviews").fill_null(0), pl.col("total_revenue").fill_null(0.0), pl.col("_neg").fill_null(0), pl.col("_sold").fill_null(0)
    )
    mean = (impact["avg_rating"] * impact["nb_reviews"]).sum() / max(impact["nb_reviews"].sum(), 1)
    v, m = pl.col("nb_reviews"), 10.0
    reviews_impact = impact.with_columns(
        ((v * pl.col("avg_rating") + m * mean) / (v + m)).alias("review_score"),
        pl.when(v > 0).then(pl.col("_neg") / v).otherwise(0.0).alias("negative_share"),
    ).with_columns(
        pl.when(v == 0).then(pl.lit("no_reviews"))
        .when((pl.col("negative_share") >= 0.3) & (v >= 5)).then(pl.lit("at_risk"))
        .when(pl.col("review_score") >= 4.0).then(pl.lit("driver"))
        .otherwise(pl.lit("neutral")).alias("impact_class")
    ).select("product_id", "product_name", "avg_rating", "nb_reviews", "total_revenue", "review_score", "negative_share", "impact_class")

    days = t["dim_date"].height
    stock = impact.select("product_id", "product_name", "category", "stock_quantity", pl.col("_sold").alias("total_quantity_sold")).with_columns(
        pl.when(pl.col("stock_quantity").fill_null(0) == 0).then(0.0).otherwise(pl.col("total_quantity_sold") / pl.col("stock_quantity")).alias("stock_turnover_ratio"),
        (pl.col("total_quantity_sold") / days).alias("avg_daily_sales"),
    ).with_columns(
        pl.when(pl.col("avg_daily_sales") > 0).then(pl.col("stock_quantity") / pl.col("avg_daily_sales")).alias("days_of_cover"),
    ).with_columns(
        pl.when(pl.col("stock_quantity").fill_null(0) <= 0).then(pl.lit("out_of_stock"))
        .when(pl.col("days_of_cover").is_null()).then(pl.lit("no_sales"))
        .when(pl.col("days_of_cover") < 7).then(pl.lit("critical"))
        .when(pl.col("days_of_cover") < 14).then(pl.lit("low"))
        .when(pl.col("days_of_cover") > 180).then(pl.lit("overstock"))
        .otherwise(pl.lit("ok")).alias("stock_status"),
        (pl.col("avg_daily_sales") * 14 - pl.col("stock_quantity").fill_null(0)).ceil().clip(0).cast(pl.Int64).alias("reorder_qty"),
    )

    frames = [frame.with_columns(pl.col(pl.Date).cast(pl.Utf8)) for frame in [daily, by_product, metrics, reviews_impact, stock]]
    write_gold(db, ((name, frame.columns, frame.iter_rows()) for name, frame in zip(GOLD, frames)))

def end_to_end(sources: pathlib.Path, work: pathlib.Path, db: pathlib.Path) -> None:
    import bronze_polars

    stages = {}
    started = time.perf_counter()
    bronze_polars.main(sources, work / "bronze")
    stages["bronze"] = time.perf_counter() - started
    started = time.perf_counter()
    silver_from({p.stem: [str(p)] for p in (work / "bronze").glob("*.parquet")}, work / "silver")
    stages["silver"] = time.perf_counter() - started
    started = time.perf_counter()
    gold(work / "silver", db)
    stages["gold"] = time.perf_counter() - started
    print(json.dumps({"stages": stages}))


if __name__ == "__main__":
    mode, paths = sys.argv[1], [pathlib.Path(a) for a in sys.argv[2:]]
    {"silver": silver, "gold": gold, "all": end_to_end}[mode](*paths)
