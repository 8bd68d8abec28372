#!/usr/bin/env python3
"""Two lakes' committed Silver and Silver quarantine, compared row for row:
every table's rows in file order, column types and values (floats bit for
bit), and each quarantine file set (clean, checks, nulled: a Delta table's
folder, or in a lake from before Delta a file name's prefix) the same way.
Unsigned integer columns are compared as signed 64-bit (the Delta lake stores
them so). For "keep every result identical while the insides change".
Usage: compare_silver.py LAKE_A LAKE_B   (local lakes; polars and pyarrow from PyPI)"""
import json, pathlib, sys

import pyarrow as pa
import pyarrow.parquet as pq


def tables(lake: pathlib.Path) -> dict:
    commit = json.loads((lake / "silver/_commits/current.json").read_text())
    return commit["tables"] if "tables" in commit else commit


def read(lake: pathlib.Path, files: list) -> pa.Table:
    parts = [signed(pq.read_table(lake / f)) for f in files]
    return pa.concat_tables(parts) if parts else None


def signed(table: pa.Table) -> pa.Table:
    fields = [pa.field(f.name, pa.int64(), f.nullable) if pa.types.is_unsigned_integer(f.type) else f
              for f in table.schema]
    return table.cast(pa.schema(fields))


def kind(file: str) -> str:
    folder, name = file.rsplit("/", 2)[-2:]
    return folder if name.startswith("part-") else name.split("-", 1)[0]


def main(a: str, b: str) -> int:
    la, lb = pathlib.Path(a), pathlib.Path(b)
    ta, tb = tables(la), tables(lb)
    differ = 0
    if sorted(ta) != sorted(tb):
        print("tables differ:", sorted(ta), sorted(tb))
        return 1
    for name in sorted(ta):
        checks = [("silver", ta[name]["files"], tb[name]["files"])]
        for prefix in ["clean", "checks", "nulled"]:
            qa = [f for f in ta[name].get("quarantine_files", []) if kind(f) == prefix]
            qb = [f for f in tb[name].get("quarantine_files", []) if kind(f) == prefix]
            checks.append((f"quarantine {prefix}", qa, qb))
        for what, fa, fb in checks:
            xa, xb = read(la, fa), read(lb, fb)
            if xa is None and xb is None:
                continue
            if xa is None or xb is None:
                print(f"{name:20} {what:18} only in {'b' if xa is None else 'a'}")
                differ += 1
                continue
            same = xa.schema.equals(xb.schema, check_metadata=False) and xa.equals(xb)
            print(f"{name:20} {what:18} {xa.num_rows:>10} vs {xb.num_rows:>10} rows: {'identical' if same else 'DIFFER'}")
            if not same:
                differ += 1
                if not xa.schema.equals(xb.schema, check_metadata=False):
                    print("  a:", xa.schema, "\n  b:", xb.schema)
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
