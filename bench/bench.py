#!/usr/bin/env python3
"""Run the same workloads on highwater and DuckDB and print wall time, peak
RSS and output rows side by side.

Called by bench/run, which builds highwater, installs the DuckDB CLI into
bench/.venv and generates the data. Standard library only, so that this
driver stays small: a child's ru_maxrss on Linux starts from the peak RSS of
the process that spawned it, so a large driver would inflate every figure.
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from tpch import QUERIES as TPCH, TABLES  # noqa: E402

ROOT = HERE.parent
HIGHWATER = ROOT / "target" / "release" / "highwater"
DUCKDB = HERE / ".venv" / "bin" / "duckdb"

# name -> (SELECT over {lineitem}, what it shows)
WORKLOADS = {
    "copy": (
        "SELECT * FROM '{lineitem}'",
        "lineitem Parquet -> ZSTD Parquet",
    ),
    "filter_project": (
        "SELECT l_orderkey, l_extendedprice * (1 - l_discount) AS net "
        "FROM '{lineitem}' WHERE l_shipdate >= DATE '1995-01-01'",
        "WHERE on l_shipdate, two columns out",
    ),
    "sort": (
        "SELECT * FROM '{lineitem}' ORDER BY l_shipdate, l_orderkey, l_linenumber",
        "ORDER BY (l_shipdate, l_orderkey, l_linenumber), all columns",
    ),
    "group_by": (
        "SELECT l_partkey, l_suppkey, count(*), sum(l_extendedprice), avg(l_quantity) "
        "FROM '{lineitem}' GROUP BY 1, 2",
        "GROUP BY (l_partkey, l_suppkey): about 800k groups at SF1",
    ),
    "distinct": (
        "SELECT DISTINCT l_orderkey, l_suppkey, l_returnflag FROM '{lineitem}'",
        "SELECT DISTINCT of three columns: nearly one row a group",
    ),
    "join": (
        "SELECT l.*, o.o_custkey, o.o_orderdate, o.o_totalprice FROM '{lineitem}' l "
        "JOIN '{orders}' o ON l.l_orderkey = o.o_orderkey",
        "lineitem JOIN orders on the order key, all lineitem columns out",
    ),
}
# TPC-H queries, tables filled in as quoted paths; `tpch` names them all.
for _name, _sql in TPCH.items():
    WORKLOADS[f"tpch_{_name}"] = (_sql, f"TPC-H {_name.upper()}")


def measure(argv, stdin_text=None):
    """Run argv; return (exit code, wall seconds, peak RSS bytes, stderr)."""
    started = time.monotonic()
    proc = subprocess.Popen(
        argv,
        stdin=subprocess.PIPE if stdin_text is not None else subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    if stdin_text is not None:
        proc.stdin.write(stdin_text)
        proc.stdin.close()
    # Read stderr before waiting so a chatty child cannot block on a full pipe.
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.monotonic() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, wall, usage.ru_maxrss * 1024, err


def count_rows(path):
    # DuckDB counts both engines' outputs, so neither engine grades itself.
    out = subprocess.run(
        [str(DUCKDB), "-csv", "-noheader", "-c", f"SELECT count(*) FROM '{path}'"],
        capture_output=True,
        text=True,
    )
    return out.stdout.strip() if out.returncode == 0 else "?"


def run_highwater(sql, out, args):
    argv = [
        str(HIGHWATER),
        "sql",
        sql,
        "-o",
        str(out),
        "--memory-limit",
        args.memory_limit,
        "--threads",
        str(args.threads),
        "--temp-dir",
        str(args.work / "spill"),
        "--report",
        "none",
    ]
    return measure(argv)


def duckdb_runner(preserve_order):
    """DuckDB keeps the input's row order by default, as highwater does;
    without it, DuckDB may write rows in any order, which is cheaper. Both
    are measured."""

    def run(sql, out, args):
        script = (
            f"SET memory_limit='{args.memory_limit}';\n"
            f"SET threads={args.threads};\n"
            f"SET temp_directory='{args.work / 'spill'}';\n"
            f"SET preserve_insertion_order={str(preserve_order).lower()};\n"
            f"COPY ({sql}) TO '{out}' (FORMAT parquet, COMPRESSION zstd);\n"
        )
        return measure([str(DUCKDB)], stdin_text=script)

    return run


def mb(n):
    return f"{n / 1e6:.0f} MB"


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, required=True,
                        help="dir with lineitem.parquet and orders.parquet")
    parser.add_argument("--work", type=Path, required=True, help="scratch dir for outputs")
    parser.add_argument("--memory-limit", default="256MB")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--workloads", default=",".join(WORKLOADS))
    parser.add_argument("--repeat", type=int, default=1,
                        help="runs per engine, interleaved; the median wall is shown")
    args = parser.parse_args()

    lineitem = args.data / "lineitem.parquet"
    tables = {t: args.data / f"{t}.parquet" for t in TABLES}
    names = []
    for name in args.workloads.split(","):
        names += [w for w in WORKLOADS if w.startswith("tpch_")] if name == "tpch" else [name]
    limit_bytes = int(args.memory_limit.removesuffix("MB")) * 1000 * 1000
    (args.work / "spill").mkdir(parents=True, exist_ok=True)
    print(f"data {lineitem} ({mb(lineitem.stat().st_size)}), memory limit "
          f"{args.memory_limit}, threads {args.threads}")
    header = f"{'workload':<16}{'engine':<11}{'wall':>9}{'peak RSS':>11}  {'rows':>10}  note"
    print(header)
    print("-" * len(header))
    walls = {}
    for name in names:
        sql_template, what = WORKLOADS[name]
        if name.startswith("tpch_"):
            sql = sql_template.format(**{t: f"'{p}'" for t, p in tables.items()})
        else:
            sql = sql_template.format(**tables)
        engines = (
            ("highwater", run_highwater),
            ("duckdb", duckdb_runner(True)),
            ("duckdb*", duckdb_runner(False)),
        )
        # Rounds of one run per engine, so that a slow spell of the machine
        # (this one's runs vary by 10 to 30%) falls on every engine alike.
        results = {engine: [] for engine, _ in engines}
        for _ in range(max(args.repeat, 1)):
            for engine, runner in engines:
                if results[engine] and results[engine][-1][0] != 0:
                    continue  # failed once: not run again
                out = args.work / f"{name}-{engine}.parquet"
                if out.exists():
                    out.unlink()
                code, wall, rss, err = runner(sql, out, args)
                rows = count_rows(out) if code == 0 else "-"
                results[engine].append((code, wall, rss, err, rows))
                if out.exists():
                    out.unlink()
        for engine, _ in engines:
            runs = results[engine]
            failed = [r for r in runs if r[0] != 0]
            walls_sorted = sorted(r[1] for r in runs)
            wall = statistics.median(walls_sorted)
            rss = max(r[2] for r in runs)
            rows = runs[-1][4]
            walls[(name, engine)] = None if failed else wall
            if not failed:
                note = "OVER LIMIT" if rss > limit_bytes else ""
                if len(runs) > 1:
                    note = f"{note} (median of {len(runs)}: " \
                           f"{walls_sorted[0]:.2f}-{walls_sorted[-1]:.2f}s)".lstrip()
            else:
                code, err = failed[0][0], failed[0][3]
                lines = err.strip().splitlines()
                errors = [l for l in lines if "rror" in l]
                last = (errors or lines or [""])[0]
                note = f"FAILED (exit {code}): {last[:100]}"
            print(f"{name:<16}{engine:<11}{wall:>8.2f}s{mb(rss):>11}  {rows:>10}  {note}",
                  flush=True)
        print(f"{'':<16}({what})")
    copy, sort = walls.get(("copy", "highwater")), walls.get(("sort", "highwater"))
    if copy and sort:
        print(f"highwater sort / copy floor: {sort / copy:.2f}x")
    for name in names:
        ours, duck = walls.get((name, "highwater")), walls.get((name, "duckdb"))
        if ours and duck:
            print(f"highwater {name} / duckdb {name}: {ours / duck:.2f}x")
    print("duckdb* = DuckDB with preserve_insertion_order=false (rows in any order)")
    shutil.rmtree(args.work / "spill", ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
