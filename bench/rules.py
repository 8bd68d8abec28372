"""What both baselines share: the Silver tables they build (bench/medallion_polars.py and
bench/medallion_spark.py), as pipeline.yaml's `silver:` section declares
them: name -> (Bronze table, key, typed columns, bounds (low, high)
exclusive, parents (column, parent table, parent key, columns taken)).
Types are pipeline.yaml's: each script maps them to its engine's. And the
Gold tables' names and how they are written to SQLite."""

import pathlib
import sqlite3
from collections.abc import Iterable, Sequence

INT, DOUBLE, DATE, TEXT = "int", "double", "date", "string"

TABLES = {
    "dim_customers": ("customers", "customer_id", [("customer_id", INT), ("gender", TEXT), ("country", TEXT), ("signup_date", DATE)], {}, []),
    "dim_products": (
        "products",
        "product_id",
        [("product_id", INT), ("product_name", TEXT), ("category", TEXT), ("brand", TEXT), ("price", DOUBLE), ("stock_quantity", INT)],
        {},
        [],
    ),
    "fact_orders": (
        "orders",
        "order_id",
        [("order_id", INT), ("customer_id", INT), ("order_date", DATE), ("total_amount", DOUBLE), ("payment_method", TEXT), ("shipping_country", TEXT)],
        {"total_amount": (0, None)},
        [("customer_id", "dim_customers", "customer_id", [])],
    ),
    "fact_order_items": (
        "order_items",
        "order_item_id",
        [("order_item_id", INT), ("order_id", INT), ("product_id", INT), ("quantity", INT), ("unit_price", DOUBLE)],
        {"quantity": (0, None), "unit_price": (0, None)},
        [("order_id", "fact_orders", "order_id", ["order_date"]), ("product_id", "dim_products", "product_id", [])],
    ),
    "fact_reviews": (
        "product_reviews",
        "review_id",
        [("review_id", INT), ("product_id", INT), ("customer_id", INT), ("rating", INT), ("review_date", DATE)],
        {"rating": (0.5, 5.5)},
        [("product_id", "dim_products", "product_id", []), ("customer_id", "dim_customers", "customer_id", [])],
    ),
}


GOLD = ["dm_sales_daily", "dm_sales_by_product", "dm_customer_metrics", "dm_product_reviews_impact", "dm_stock_performance"]


def write_gold(db: pathlib.Path, tables: Iterable[tuple[str, Sequence[str], Iterable[tuple]]]) -> None:
    """A fresh SQLite file holding each (name, columns, rows), dates as ISO text."""
    db.parent.mkdir(parents=True, exist_ok=True)
    db.unlink(missing_ok=True)
    with sqlite3.connect(db) as connection:
        for name, columns, rows in tables:
            quoted = ", ".join(f'"{c}"' for c in columns)
            connection.execute(f"CREATE TABLE {name} ({quoted})")
            cursor = connection.executemany(f"INSERT INTO {name} VALUES ({', '.join('?' * len(columns))})", rows)
            print(f"{name}: {cursor.rowcount} rows", flush=True)
