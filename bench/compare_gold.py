"""Do several Gold SQLite files hold the same results? For each of the five
Gold tables: the row count and the sum of every numeric column must match
(floating sums to 1e-9 relative), and each KPI label column (rfm_score,
segment, impact_class, stock_status) must count its values alike, give or
take 0.05% of the rows, as must the sum of a rank: values that tie in one
engine's floating-point sums (added in another order) can fall either side
of each other in another's.

  python bench/compare_gold.py NAME=DB NAME=DB ...   exit 0 when they agree

With --exact (two builds of medallion on the same data, before and after a
change): every table must hold the same rows cell for cell, floats bit for
bit, whatever the order they were stored in.

With --cells: the same rows cell for cell, except that floats may differ by
1e-12 relative (money summed exactly in one build and by floating-point
addition in the other); how many floats differ, and by how much at most, is
printed. Every label, rank, count and date must be identical.

The first DB is the reference; a line is printed per table and check.
"""

import contextlib
import itertools
import math
import sqlite3
import sys

TABLES = ["dm_sales_daily", "dm_sales_by_product", "dm_customer_metrics", "dm_product_reviews_impact", "dm_stock_performance"]
LABELS = {"rfm_score", "segment", "impact_class", "stock_status"}
RANKS = {"revenue_rank_in_category"}


def summary(path: str) -> dict:
    out = {}
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        for table in TABLES:
            columns = [row[1] for row in db.execute(f'PRAGMA table_info("{table}")')]
            rows = db.execute(f'SELECT COUNT(*) FROM "{table}"').fetchone()[0]
            sums, labels = {}, {}
            for column in columns:
                kinds = {k for (k,) in db.execute(f'SELECT DISTINCT typeof("{column}") FROM "{table}"')} - {"null"}
                if column in LABELS:
                    labels[column] = dict(db.execute(f'SELECT "{column}", COUNT(*) FROM "{table}" GROUP BY 1'))
                elif kinds and kinds <= {"integer", "real"}:
                    sums[column] = db.execute(f'SELECT TOTAL("{column}") FROM "{table}"').fetchone()[0]
            out[table] = {"rows": rows, "sums": sums, "labels": labels}
    return out


def close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-6)


def columns_of(path: str, table: str) -> list[str]:
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        return [row[1] for row in db.execute(f'PRAGMA table_info("{table}")')]


def rows(path: str, table: str, columns: list[str]):
    """The table's rows sorted by every column (SQLite sorts, nulls first,
    on disk past its cache), so the stored order does not matter and a
    scale-10 table is compared in bounded memory."""
    order = ", ".join(f'"{c}"' for c in columns)
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
        yield from db.execute(f'SELECT * FROM "{table}" ORDER BY {order}')


def pairs(named: list[list[str]]):
    """Each table of the first DB beside the same table of each other DB:
    their columns and their rows side by side (None past the shorter)."""
    (reference, first) = named[0]
    for table in TABLES:
        columns = columns_of(first, table)
        for name, path in named[1:]:
            theirs = columns_of(path, table)
            both = itertools.zip_longest(rows(first, table, columns), rows(path, table, theirs))
            yield table, f"{name} vs {reference}", columns, theirs, both


def exact(named: list[list[str]]) -> int:
    ok = True
    for table, who, columns, theirs, both in pairs(named):
        count, differ, first = 0, 0, ""
        for expected, got in both if theirs == columns else []:
            count += 1
            if expected != got:
                differ += 1
                first = first or f", first {got} vs {expected}"
        verdict = f"columns {theirs} vs {columns}" if theirs != columns else f"{differ} rows differ{first}" if differ else ""
        ok &= not verdict
        print(f"{table:28} {who}: {count} rows x {len(columns)} columns: {verdict or 'identical'}")
    return 0 if ok else 1


def cells(named: list[list[str]]) -> int:
    ok = True
    for table, who, columns, theirs, both in pairs(named):
        problems, floats, worst, count = [], 0, 0.0, 0
        if theirs != columns:
            problems.append(f"columns {theirs} vs {columns}")
        for a, b in both if not problems else []:
            count += 1
            if a is None or b is None:
                problems.append(f"a row in one only: {a or b}")
                break
            for column, x, y in zip(columns, a, b):
                if x == y:
                    continue
                if isinstance(x, float) and isinstance(y, float):
                    floats += 1
                    worst = max(worst, abs(x - y) / max(abs(x), abs(y)))
                    if worst > 1e-12:
                        problems.append(f"{column} {y!r} vs {x!r} in {a}")
                else:
                    problems.append(f"{column} {y!r} vs {x!r} in {a}")
            if len(problems) > 3:
                break
        ok &= not problems
        verdict = "; ".join(problems[:3]) or f"identical but {floats} floats (at most {worst:.1e} relative)"
        print(f"{table:28} {who}: {count} rows x {len(columns)} columns: {verdict}")
    return 0 if ok else 1


def main(args: list[str]) -> int:
    if args and args[0] == "--exact":
        return exact([arg.split("=", 1) for arg in args[1:]])
    if args and args[0] == "--cells":
        return cells([arg.split("=", 1) for arg in args[1:]])
    named = [arg.split("=", 1) for arg in args]
    summaries = {name: summary(path) for name, path in named}
    reference, ok = named[0][0], True
    for table in TABLES:
        ref = summaries[reference][table]
        for name, _ in named[1:]:
            other = summaries[name][table]
            problems, notes = [], []
            if other["rows"] != ref["rows"]:
                problems.append(f"rows {other['rows']} vs {ref['rows']}")
            for column, value in ref["sums"].items():
                if column not in other["sums"]:
                    problems.append(f"no numeric column {column}")
                elif column in RANKS and abs(other["sums"][column] - value) <= max(1, ref["rows"] // 2000):
                    if other["sums"][column] != value:
                        notes.append(f"sum({column}) off by {other['sums'][column] - value:+g} by ties")
                elif not close(other["sums"][column], value):
                    problems.append(f"sum({column}) {other['sums'][column]!r} vs {value!r}")
            moved = 0
            for column, counts in ref["labels"].items():
                theirs = other["labels"].get(column, {})
                moved += sum(abs(theirs.get(k, 0) - counts.get(k, 0)) for k in set(counts) | set(theirs)) // 2
            if moved > max(1, ref["rows"] // 2000):
                problems.append(f"{moved} rows labelled differently")
            ok &= not problems
            if moved:
                notes.append(f"{moved} labels moved by ties")
            verdict = "; ".join(problems) if problems else "same rows and sums" + (f" ({'; '.join(notes)})" if notes else "")
            print(f"{table:28} {name} vs {reference}: {ref['rows']} rows, {len(ref['sums'])} sums: {verdict}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
