"""The Silver tables both baselines build (bench/medallion_polars.py and
bench/medallion_spark.py), as pipeline.yaml's `silver:` section declares
them: name -> (Bronze table, key, typed columns, bounds (low, high)
exclusive, parents (column, parent table, parent key, columns taken)).
Types are pipeline.yaml's: each script maps them to its engine's."""

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
