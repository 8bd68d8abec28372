"""Compares two runs of the same pipeline on the same Bronze (the host's and
Spark's): Silver row for row, quarantine row for row with reasons, Gold cell
for cell, the run log's counts and plugins. Prints one JSON line:
{"same": bool, "differences": [...], "tables": {...}}.

    python same_results.py LAKE_A GOLD_DB_A LAKE_B GOLD_DB_B

A lake given as `-` (one on HDFS, which pyarrow reads only with libhdfs)
is not compared: Gold and the run log (Silver's counts per reason) still are.
"""

import json
import os
import sqlite3
import sys

import pyarrow as pa
import pyarrow.parquet as pq


def normal(table):
    """Values as Python sees them: the stored types (int32 or int64, string
    or view) do not matter, the values do."""
    return {name: table.column(name).to_pylist() for name in table.column_names}


def read(lake, files):
    tables = [pq.read_table(os.path.join(lake, f)) for f in files]
    if not tables:
        return None
    return pa.concat_tables([t.cast(tables[0].schema) for t in tables])


def by_folder(files):
    groups = {}
    for f in files:
        groups.setdefault(f.rsplit("/", 1)[0], []).append(f)
    return groups


def silver(lake):
    with open(os.path.join(lake, "silver/_commits/current.json")) as f:
        manifest = json.load(f)
    out = {}
    for name, t in manifest["tables"].items():
        out[f"silver/{name}"] = read(lake, t["files"])
        for folder, files in by_folder(t["quarantine_files"]).items():
            out[folder] = read(lake, files)
    return out


def gold(db):
    con = sqlite3.connect(db)
    names = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table' AND name LIKE 'dm_%' ORDER BY name")]
    out = {}
    for name in names:
        cursor = con.execute(f'SELECT * FROM "{name}"')
        out[name] = ([d[0] for d in cursor.description], cursor.fetchall())
    # The run that published this Gold.
    run = con.execute(
        "SELECT run_id FROM runs WHERE status = 'succeeded' AND run_id IN (SELECT run_id FROM run_tables WHERE stage = 'gold') "
        "ORDER BY started_at DESC, run_id DESC LIMIT 1"
    ).fetchone()[0]
    cursor = con.execute("SELECT * FROM run_tables WHERE run_id = ?", (run,))
    columns = [d[0] for d in cursor.description]
    logged = {}
    for row in cursor.fetchall():
        row = dict(zip(columns, row))
        if row["stage"] not in ("silver", "gold"):
            continue  # Bronze's lineage differs between two landings
        keep = {k: v for k, v in row.items() if k in ("rows", "quarantined", "reasons", "plugin", "plugin_version", "plugin_sha256", "plugin_config")}
        logged[f"{row['stage']}/{row['table_name']}"] = keep
    return out, logged


def main(lake_a, db_a, lake_b, db_b):
    differences = []
    counts = {}
    a, b = (silver(lake_a), silver(lake_b)) if "-" not in (lake_a, lake_b) else ({}, {})
    if sorted(a) != sorted(b):
        differences.append(f"Silver tables: {sorted(a)} and {sorted(b)}")
    for name in sorted(set(a) & set(b)):
        ta, tb = a[name], b[name]
        counts[name] = None if ta is None else ta.num_rows
        if (ta is None) != (tb is None):
            differences.append(f"{name}: one side has no rows")
            continue
        if ta is None:
            continue
        if ta.column_names != tb.column_names:
            differences.append(f"{name}: columns {ta.column_names} and {tb.column_names}")
            continue
        na, nb = normal(ta), normal(tb)
        for column in ta.column_names:
            if na[column] != nb[column]:
                at = next(i for i, (x, y) in enumerate(zip(na[column], nb[column])) if x != y) if len(na[column]) == len(nb[column]) else None
                differences.append(
                    f"{name}.{column}: {len(na[column])} and {len(nb[column])} rows"
                    + ("" if at is None else f", first difference at row {at}: {na[column][at]!r} and {nb[column][at]!r}")
                )
    (ga, la), (gb, lb) = gold(db_a), gold(db_b)
    if sorted(ga) != sorted(gb):
        differences.append(f"Gold tables: {sorted(ga)} and {sorted(gb)}")
    for name in sorted(set(ga) & set(gb)):
        counts[name] = len(ga[name][1])
        if ga[name] != gb[name]:
            (ca, ra), (cb, rb) = ga[name], gb[name]
            first = next((i for i, (x, y) in enumerate(zip(ra, rb)) if x != y), None)
            differences.append(
                f"{name}: columns {ca == cb}, {len(ra)} and {len(rb)} rows"
                + ("" if first is None else f", first difference at row {first}: {ra[first]} and {rb[first]}")
            )
    if la != lb:
        for key in sorted(set(la) | set(lb)):
            if la.get(key) != lb.get(key):
                differences.append(f"run log {key}: {la.get(key)} and {lb.get(key)}")
    print(json.dumps({"same": not differences, "differences": differences, "tables": counts, "run_log": sorted(la)}))


if __name__ == "__main__":
    main(*sys.argv[1:5])
