"""Baseline for the Bronze benchmark: the same conversion with polars' own
CSV reader and Parquet writer. Every CSV column read as a string, the three
lineage columns added, one Snappy Parquet file per table; the products table
read from SQLite. Usage: python bench/bronze_polars.py SOURCES_DIR OUT_DIR"""

import datetime
import pathlib
import sqlite3
import sys

import polars as pl


def lineage(frame: pl.DataFrame | pl.LazyFrame, source: str, now: datetime.datetime, run_id: str):
    return frame.with_columns(
        pl.lit(source).alias("_source"),
        pl.lit(now).dt.replace_time_zone("UTC").alias("_ingested_at"),
        pl.lit(run_id).alias("_run_id"),
    )


def main(sources: pathlib.Path, out: pathlib.Path) -> None:
    now = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)
    run_id = now.strftime("%Y%m%dT%H%M%SZ")
    out.mkdir(parents=True, exist_ok=True)
    for csv in sorted(sources.glob("*.csv")):
        frame = pl.scan_csv(csv, infer_schema=False)
        lineage(frame, csv.name, now, run_id).sink_parquet(out / f"{csv.stem}.parquet", compression="snappy")
    for db in sorted(sources.glob("*.db")):
        with sqlite3.connect(db) as connection:
            tables = [r[0] for r in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
            for table in tables:
                cursor = connection.execute(f'SELECT * FROM "{table}"')
                names = [d[0] for d in cursor.description]
                frame = pl.DataFrame(cursor.fetchall(), schema=names, orient="row")
                lineage(frame, db.name, now, run_id).write_parquet(out / f"{table}.parquet", compression="snappy")


if __name__ == "__main__":
    main(pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2]))
