//! ORDER BY from outside the process: TPC-H lineitem sorted by
//! (l_shipdate, l_orderkey, l_linenumber) under 32MB, 64MB and 256MB, with
//! the child's peak RSS from the OS under the limit and the output checked
//! against the input with the parquet crate directly.

mod common;

use std::path::Path;

use arrow::array::AsArray;
use arrow::datatypes::{Date32Type, Int32Type, Int64Type};

use common::{
    batches, entries, interrupt_when, lineitem_sf01, lineitem_sf1, run, scratch, sql_to_file,
};

/// The launcher `common::run` re-runs this binary as, to measure a child's
/// own peak RSS; run plainly, it checks that measurement.
#[test]
fn launcher() {
    common::launcher();
}

const SORT: &str = "ORDER BY l_shipdate, l_orderkey, l_linenumber";

/// Row count and order-free checksums over (orderkey, linenumber), which is
/// unique per row, and over l_partkey tied to it, so that a row whose
/// columns were mixed with another's changes the sum.
fn digest(path: &Path, check_order: bool) -> (u64, i128, i128) {
    let (mut rows, mut keys, mut tied) = (0u64, 0i128, 0i128);
    let mut last: Option<(i32, i64, i32)> = None;
    for b in batches(path) {
        let s = b.schema();
        let col = |name: &str| b.column(s.index_of(name).unwrap()).clone();
        let (order, line, part, ship) = (
            col("l_orderkey"),
            col("l_linenumber"),
            col("l_partkey"),
            col("l_shipdate"),
        );
        let order = order.as_primitive::<Int64Type>();
        let line = line.as_primitive::<Int32Type>();
        let part = part.as_primitive::<Int64Type>();
        let ship = ship.as_primitive::<Date32Type>();
        for i in 0..b.num_rows() {
            let key = (ship.value(i), order.value(i), line.value(i));
            if check_order {
                if let Some(prev) = last {
                    assert!(prev < key, "row {rows}: {prev:?} then {key:?}");
                }
                last = Some(key);
            }
            let id = order.value(i) as i128 * 8 + line.value(i) as i128;
            rows += 1;
            keys += id * id;
            tied += id * part.value(i) as i128;
        }
    }
    (rows, keys, tied)
}

fn check_sort(input: &Path, limit: &str, must_spill: bool) {
    let dir =
        scratch(&format!("sort-{limit}-{}", input.parent().unwrap().display()).replace('/', "_"));
    let out = dir.join("sorted.parquet");
    let sql = format!("SELECT * FROM '{}' {SORT}", input.display());
    let (r, report) = sql_to_file(&sql, &out, limit);
    if must_spill {
        assert!(report["spill_files"].as_u64().unwrap() > 0, "{}", r.stderr);
    }
    assert_eq!(digest(&out, true), digest(input, false));
}

#[test]
fn sort_small_lineitem_under_32mb() {
    check_sort(lineitem_sf01(), "32MB", true);
}

#[test]
fn sort_small_lineitem_under_64mb() {
    check_sort(lineitem_sf01(), "64MB", true);
}

#[test]
fn sort_small_lineitem_under_256mb() {
    check_sort(lineitem_sf01(), "256MB", false);
}

#[test]
fn sort_lineitem_sf1_under_32mb() {
    check_sort(lineitem_sf1(), "32MB", true);
}

#[test]
fn sort_lineitem_sf1_under_64mb() {
    check_sort(lineitem_sf1(), "64MB", true);
}

#[test]
fn sort_lineitem_sf1_under_256mb() {
    check_sort(lineitem_sf1(), "256MB", true);
}

#[test]
fn top_k_reads_everything_but_holds_little() {
    let sql = format!(
        "SELECT l_orderkey, l_linenumber, l_shipdate FROM '{}' \
         ORDER BY l_shipdate DESC, l_orderkey, l_linenumber LIMIT 3 OFFSET 2",
        lineitem_sf1().display()
    );
    let r = run(&[
        "sql",
        &sql,
        "--format",
        "csv",
        "--memory-limit",
        "64MB",
        "--report",
        "json",
    ]);
    r.ok().assert_rss_under("64MB");
    let report: serde_json::Value = serde_json::from_str(r.stderr.trim()).unwrap();
    assert_eq!(report["spill_files"].as_u64(), Some(0), "{}", r.stderr);
    // The expected rows, from the input directly.
    let mut rows: Vec<(i32, i64, i32)> = Vec::new();
    for b in batches(lineitem_sf1()) {
        let s = b.schema();
        let ship = b
            .column(s.index_of("l_shipdate").unwrap())
            .as_primitive::<Date32Type>()
            .clone();
        let order = b
            .column(s.index_of("l_orderkey").unwrap())
            .as_primitive::<Int64Type>()
            .clone();
        let line = b
            .column(s.index_of("l_linenumber").unwrap())
            .as_primitive::<Int32Type>()
            .clone();
        for i in 0..b.num_rows() {
            rows.push((-ship.value(i), order.value(i), line.value(i)));
        }
    }
    rows.sort_unstable();
    let lines: Vec<&str> = r.stdout.lines().skip(1).collect();
    let expected: Vec<String> = rows[2..5]
        .iter()
        .map(|&(neg_ship, order, line)| {
            let date = arrow::temporal_conversions::date32_to_datetime(-neg_ship)
                .unwrap()
                .format("%Y-%m-%d");
            format!("{order},{line},{date}")
        })
        .collect();
    assert_eq!(lines, expected);
}

#[test]
fn ctrl_c_during_a_sort_leaves_no_spill_files() {
    let dir = scratch("sort-sigint");
    let temp = scratch("sort-sigint-temp");
    let sql = format!("SELECT * FROM '{}' {SORT}", lineitem_sf1().display());
    // Interrupt once sorted runs are on disk.
    interrupt_when(&sql, &dir.join("sorted.parquet"), &temp, || {
        entries(&temp).iter().any(|d| {
            let run_dir = temp.join(d);
            run_dir.is_dir() && entries(&run_dir).iter().any(|f| f.ends_with(".arrows"))
        })
    });
}
