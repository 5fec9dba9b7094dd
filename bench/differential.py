#!/usr/bin/env python3
"""Run the same queries on highwater and DuckDB over generated TPC-H data
and compare the results: the same rows (as multisets, unless the query
orders them), values compared by value (numbers within a relative 1e-9,
so DOUBLE and DECIMAL results agree; NULL and an empty CSV field alike).

Called by bench/differential, which builds highwater, installs the DuckDB
CLI and generates the data. Standard library only.
"""

import argparse
import csv
import io
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from tpch import QUERIES as TPCH, TABLES  # noqa: E402

HIGHWATER = HERE.parent / "target" / "release" / "highwater"
DUCKDB = HERE / ".venv" / "bin" / "duckdb"

# (name, SQL over {lineitem}, {orders}, ..., whether row order matters)
QUERIES = [
    ("arith", "SELECT l_orderkey, l_extendedprice * (1 - l_discount) * (1 + l_tax) AS v "
              "FROM {lineitem} WHERE l_orderkey < 200", False),
    ("predicates", "SELECT count(*) FROM {lineitem} WHERE l_shipmode IN ('AIR', 'MAIL') "
                   "AND l_quantity BETWEEN 10 AND 20 AND l_comment LIKE '%fur%'", False),
    ("case_cast", "SELECT CASE WHEN l_quantity > 25 THEN 'big' ELSE 'small' END AS s, "
                  "CAST(l_quantity AS INTEGER) AS q, count(*) FROM {lineitem} GROUP BY 1, 2", False),
    ("strings", "SELECT upper(l_shipmode), length(l_comment), substring(l_comment, 2, 5), "
                "replace(l_shipinstruct, ' ', '_') FROM {lineitem} WHERE l_orderkey < 100", False),
    ("dates", "SELECT extract(year FROM l_shipdate) AS y, date_trunc('month', l_shipdate) AS m, "
              "count(*) FROM {lineitem} GROUP BY 1, 2", False),
    ("date_arith", "SELECT l_orderkey, l_shipdate + INTERVAL 10 DAY, l_receiptdate - l_shipdate "
                   "FROM {lineitem} WHERE l_orderkey < 50", False),
    ("group_by", "SELECT l_returnflag, l_linestatus, sum(l_quantity), sum(l_extendedprice), "
                 "avg(l_discount), count(*), min(l_shipdate), max(l_comment) "
                 "FROM {lineitem} GROUP BY 1, 2", False),
    ("having", "SELECT l_suppkey, count(*) AS n FROM {lineitem} GROUP BY 1 HAVING count(*) > 640",
     False),
    ("distinct", "SELECT DISTINCT l_returnflag, l_shipmode FROM {lineitem}", False),
    ("count_distinct", "SELECT l_shipmode, count(DISTINCT l_suppkey) FROM {lineitem} GROUP BY 1",
     False),
    ("stats", "SELECT l_returnflag, stddev_samp(l_quantity), var_pop(l_discount), "
              "bool_or(l_quantity > 49), median(l_quantity) FROM {lineitem} GROUP BY 1", False),
    ("order_limit", "SELECT l_orderkey, l_linenumber, l_extendedprice FROM {lineitem} "
                    "ORDER BY l_extendedprice DESC, l_orderkey, l_linenumber LIMIT 20", True),
    ("order_nulls", "SELECT o_orderkey, CASE WHEN o_orderkey % 3 = 0 THEN NULL ELSE o_totalprice END "
                    "AS p FROM {orders} WHERE o_orderkey < 100 ORDER BY p NULLS FIRST, o_orderkey",
     True),
    ("inner_join", "SELECT o_orderpriority, count(*), sum(l_quantity) FROM {lineitem} "
                   "JOIN {orders} ON l_orderkey = o_orderkey GROUP BY 1", False),
    ("left_join", "SELECT c_custkey, count(o_orderkey) FROM {customer} LEFT JOIN {orders} "
                  "ON c_custkey = o_custkey AND o_totalprice > 300000 GROUP BY 1", False),
    ("full_join", "SELECT count(*), count(a.n_nationkey), count(b.r_regionkey) FROM {nation} a "
                  "FULL JOIN {region} b ON a.n_nationkey = b.r_regionkey * 7", False),
    ("semi_anti", "SELECT count(*) FROM {orders} WHERE o_orderkey IN "
                  "(SELECT l_orderkey FROM {lineitem} WHERE l_quantity > 49) AND o_custkey NOT IN "
                  "(SELECT c_custkey FROM {customer} WHERE c_acctbal < 0)", False),
    ("exists", "SELECT count(*) FROM {customer} c WHERE EXISTS "
               "(SELECT 1 FROM {orders} o WHERE o.o_custkey = c.c_custkey AND o_totalprice > 400000)",
     False),
    ("multi_join", "SELECT n_name, sum(l_extendedprice * (1 - l_discount)) AS revenue "
                   "FROM {customer}, {orders}, {lineitem}, {supplier}, {nation}, {region} "
                   "WHERE c_custkey = o_custkey AND l_orderkey = o_orderkey "
                   "AND l_suppkey = s_suppkey AND c_nationkey = s_nationkey "
                   "AND s_nationkey = n_nationkey AND n_regionkey = r_regionkey "
                   "AND r_name = 'ASIA' AND o_orderdate >= DATE '1994-01-01' "
                   "AND o_orderdate < DATE '1995-01-01' GROUP BY n_name", False),
    ("union", "SELECT n_regionkey FROM {nation} UNION SELECT r_regionkey + 2 FROM {region}", False),
    ("intersect_except", "SELECT n_regionkey FROM {nation} INTERSECT SELECT r_regionkey FROM "
                         "{region} WHERE r_regionkey < 3 EXCEPT SELECT 1", False),
    ("cte_subquery", "WITH big AS (SELECT o_custkey, sum(o_totalprice) AS t FROM {orders} "
                     "GROUP BY 1) SELECT count(*), max(t) FROM big WHERE t > 1000000", False),
    ("windows", "SELECT l_orderkey, l_linenumber, "
                "row_number() OVER (PARTITION BY l_orderkey ORDER BY l_linenumber DESC), "
                "rank() OVER (PARTITION BY l_orderkey ORDER BY l_quantity), "
                "sum(l_quantity) OVER (PARTITION BY l_orderkey ORDER BY l_linenumber), "
                "lag(l_shipmode) OVER (PARTITION BY l_orderkey ORDER BY l_linenumber) "
                "FROM {lineitem} WHERE l_orderkey < 1000", False),
    ("window_frames", "SELECT l_orderkey, l_linenumber, "
                      "sum(l_quantity) OVER (PARTITION BY l_suppkey ORDER BY l_orderkey, "
                      "l_linenumber ROWS BETWEEN 3 PRECEDING AND 2 FOLLOWING), "
                      "avg(l_extendedprice::DOUBLE) OVER (PARTITION BY l_suppkey ORDER BY "
                      "l_orderkey, l_linenumber ROWS BETWEEN 10 PRECEDING AND CURRENT ROW), "
                      "max(l_shipdate) OVER (PARTITION BY l_suppkey ORDER BY l_orderkey, "
                      "l_linenumber ROWS BETWEEN 5 PRECEDING AND 5 FOLLOWING), "
                      "ntile(4) OVER (PARTITION BY l_suppkey ORDER BY l_orderkey, l_linenumber), "
                      "cume_dist() OVER (PARTITION BY l_suppkey ORDER BY l_quantity), "
                      "percent_rank() OVER (PARTITION BY l_suppkey ORDER BY l_quantity) "
                      "FROM {lineitem} WHERE l_suppkey < 50", False),
    ("window_range", "SELECT l_orderkey, l_linenumber, "
                     "sum(l_quantity) OVER (PARTITION BY l_suppkey ORDER BY l_shipdate "
                     "RANGE BETWEEN INTERVAL 30 DAY PRECEDING AND INTERVAL 5 DAY FOLLOWING), "
                     "count(*) OVER (PARTITION BY l_suppkey ORDER BY l_quantity DESC "
                     "RANGE BETWEEN 3 PRECEDING AND CURRENT ROW), "
                     "avg(l_discount::DOUBLE) OVER (PARTITION BY l_suppkey ORDER BY l_partkey "
                     "GROUPS BETWEEN 2 PRECEDING AND 1 FOLLOWING), "
                     "min(l_extendedprice) OVER (PARTITION BY l_suppkey ORDER BY l_shipdate "
                     "RANGE BETWEEN INTERVAL 10 DAY PRECEDING AND CURRENT ROW) "
                     "FROM {lineitem} WHERE l_suppkey < 50", False),
    ("grouped_windows", "SELECT c_nationkey, c_custkey, sum(o_totalprice) AS spent, "
                        "rank() OVER (PARTITION BY c_nationkey ORDER BY sum(o_totalprice) DESC, "
                        "c_custkey) AS r, sum(count(*)) OVER w AS orders_so_far, "
                        "lag(max(o_orderdate)) OVER w AS previous_last "
                        "FROM {customer} JOIN {orders} ON c_custkey = o_custkey "
                        "GROUP BY 1, 2 HAVING count(*) > 10 "
                        "WINDOW w AS (PARTITION BY c_nationkey ORDER BY c_custkey)", False),
    # Written facts first: the planner joins nation and customer first.
    ("joins_reordered", "SELECT n_name, o_orderpriority, count(*), sum(l_extendedprice) "
                        "FROM {lineitem}, {orders}, {customer}, {nation} "
                        "WHERE l_orderkey = o_orderkey AND o_custkey = c_custkey "
                        "AND c_nationkey = n_nationkey AND n_name IN ('GERMANY', 'FRANCE') "
                        "GROUP BY 1, 2", False),
    ("quantiles", "SELECT l_shipmode, quantile_cont(l_extendedprice::DOUBLE, 0.9), "
                  "quantile_disc(l_quantity::DOUBLE, 0.25) FROM {lineitem} GROUP BY 1", False),
    ("scalar_subquery", "SELECT l_returnflag, sum(l_quantity) / (SELECT sum(l_quantity) "
                        "FROM {lineitem})::DOUBLE FROM {lineitem} WHERE l_extendedprice > "
                        "(SELECT avg(l_extendedprice) FROM {lineitem}) GROUP BY 1", False),
    ("set_all", "SELECT l_returnflag, l_linestatus FROM {lineitem} WHERE l_orderkey < 2000 "
                "INTERSECT ALL SELECT l_returnflag, l_linestatus FROM {lineitem} "
                "WHERE l_quantity > 45 EXCEPT ALL SELECT 'R', 'F'", False),
    ("order_hidden", "SELECT o_orderkey, o_totalprice FROM {orders} WHERE o_custkey < 50 "
                     "ORDER BY o_orderdate DESC, o_orderkey LIMIT 30", True),
    ("correlated_select", "SELECT c_custkey, (SELECT count(*) FROM {orders} WHERE o_custkey = "
                          "c_custkey) AS n, (SELECT max(o_totalprice) FROM {orders} "
                          "WHERE o_custkey = c_custkey AND o_orderstatus = 'F') AS top "
                          "FROM {customer} WHERE c_custkey < 300", False),
    ("correlated_grouped", "SELECT o_custkey, count(*) AS n, (SELECT max(c_acctbal) FROM "
                           "{customer} WHERE c_custkey = o_custkey) AS bal FROM {orders} "
                           "WHERE o_custkey < 500 GROUP BY o_custkey HAVING (SELECT count(*) "
                           "FROM {lineitem} WHERE l_orderkey = o_custkey) > 0", False),
    ("grouped_distincts", "SELECT l_returnflag, count(DISTINCT l_orderkey), "
                          "count(DISTINCT l_partkey), sum(DISTINCT l_quantity), avg(l_quantity) "
                          "FROM {lineitem} GROUP BY 1", False),
    ("exists_value", "SELECT c_custkey, EXISTS (SELECT 1 FROM {orders} WHERE o_custkey = "
                     "c_custkey AND o_totalprice > 300000) AS rich, CASE WHEN NOT EXISTS "
                     "(SELECT 1 FROM {orders} WHERE o_custkey = c_custkey) THEN 'none' "
                     "ELSE 'some' END FROM {customer} WHERE c_custkey < 500", False),
    ("on_subqueries", "SELECT c_custkey, count(o_orderkey), sum(o_totalprice) FROM {customer} "
                      "LEFT JOIN {orders} ON c_custkey = o_custkey AND o_orderkey IN (SELECT "
                      "l_orderkey FROM {lineitem} WHERE l_quantity > 49) AND o_totalprice > "
                      "(SELECT avg(o_totalprice) FROM {orders}) WHERE c_custkey < 3000 "
                      "GROUP BY 1", False),
] + [(f"tpch_{name}", sql, True) for name, sql in TPCH.items()]


def normalize(value):
    if value in ("", "NULL"):
        return None
    # highwater keeps DATE ± INTERVAL and date_trunc of a DATE a DATE, where
    # DuckDB gives a TIMESTAMP at midnight (README): the same value.
    if len(value) == 19 and value.endswith(" 00:00:00") and value[4] == "-":
        return value[:10]
    try:
        return float(value)
    except ValueError:
        return value


def same(a, b):
    if isinstance(a, float) and isinstance(b, float):
        return a == b or abs(a - b) <= 1e-9 * max(abs(a), abs(b))
    return a == b


def rows_of(text):
    rows = list(csv.reader(io.StringIO(text)))[1:]
    return [tuple(normalize(v) for v in r) for r in rows]


def key(row):
    return tuple((v is None, "" if v is None else str(v) if isinstance(v, str) else f"{v:.6g}")
                 for v in row)


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--memory-limit", default="64MB")
    args = parser.parse_args()
    tables = {t: f"'{args.data / (t + '.parquet')}'" for t in TABLES}
    failed = 0
    for name, template, ordered in QUERIES:
        sql = template.format(**tables)
        ours = subprocess.run(
            [str(HIGHWATER), "sql", "--memory-limit", args.memory_limit, "--report", "none",
             "--format", "csv", sql], capture_output=True, text=True)
        theirs = subprocess.run([str(DUCKDB), "-csv", "-c", sql], capture_output=True, text=True)
        if ours.returncode != 0 or theirs.returncode != 0:
            failed += 1
            print(f"FAIL {name}: highwater exit {ours.returncode} {ours.stderr.strip()[:200]} | "
                  f"duckdb exit {theirs.returncode} {theirs.stderr.strip()[:200]}")
            continue
        a, b = rows_of(ours.stdout), rows_of(theirs.stdout)
        if not ordered:
            a, b = sorted(a, key=key), sorted(b, key=key)
        diff = len(a) != len(b) or any(
            len(x) != len(y) or not all(same(u, v) for u, v in zip(x, y)) for x, y in zip(a, b))
        if diff:
            failed += 1
            first = next((i for i, (x, y) in enumerate(zip(a, b))
                          if len(x) != len(y) or not all(same(u, v) for u, v in zip(x, y))), None)
            print(f"DIFF {name}: {len(a)} rows against {len(b)}; first difference at row {first}: "
                  f"{a[first] if first is not None else ''} | {b[first] if first is not None else ''}")
        else:
            print(f"ok   {name}: {len(a)} rows")
    print(f"{len(QUERIES) - failed} of {len(QUERIES)} queries agree")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
