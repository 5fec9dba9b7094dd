//! Joins from outside the process: TPC-H lineitem ⋈ orders under limits
//! whose budget cannot hold the orders side, so the join partitions both
//! sides to disk; the child's peak RSS from the OS stays under the limit,
//! and every output row is checked against orders read here with the
//! parquet crate directly.

mod common;

use std::collections::HashMap;
use std::path::Path;

use arrow::array::AsArray;
use arrow::datatypes::{Decimal128Type, Int64Type};

use common::{batches, lineitem_sf01, lineitem_sf1, orders_sf01, orders_sf1, scratch, sql_to_file};

/// The launcher `common::run` re-runs this binary as, to measure a child's
/// own peak RSS; run plainly, it checks that measurement.
#[test]
fn launcher() {
    common::launcher();
}

fn column<'a>(b: &'a arrow::array::RecordBatch, name: &str) -> &'a arrow::array::ArrayRef {
    b.column(b.schema().index_of(name).unwrap())
}

fn rows(path: &Path) -> usize {
    batches(path).map(|b| b.num_rows()).sum()
}

/// Run the benchmark join of the issue under `limit` and check each row's
/// order columns against the orders file.
fn check_join(lineitem: &Path, orders: &Path, limit: &str, must_spill: bool) {
    let dir = scratch(&format!(
        "join-{limit}-{}",
        lineitem
            .parent()
            .unwrap()
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
    ));
    let out = dir.join("joined.parquet");
    let sql = format!(
        "SELECT l.*, o.o_custkey, o.o_orderdate, o.o_totalprice FROM '{}' l \
         JOIN '{}' o ON l.l_orderkey = o.o_orderkey",
        lineitem.display(),
        orders.display()
    );
    let (r, report) = sql_to_file(&sql, &out, limit);
    if must_spill {
        assert!(report["spill_files"].as_u64().unwrap() > 0, "{}", r.stderr);
    }
    let mut want: HashMap<i64, (i64, i128)> = HashMap::new();
    for b in batches(orders) {
        let key = column(&b, "o_orderkey").as_primitive::<Int64Type>();
        let cust = column(&b, "o_custkey").as_primitive::<Int64Type>();
        let price = column(&b, "o_totalprice").as_primitive::<Decimal128Type>();
        for i in 0..b.num_rows() {
            want.insert(key.value(i), (cust.value(i), price.value(i)));
        }
    }
    let mut seen: HashMap<(i64, i64), u32> = HashMap::new();
    for b in batches(&out) {
        let key = column(&b, "l_orderkey").as_primitive::<Int64Type>();
        let line = arrow::compute::cast(
            column(&b, "l_linenumber"),
            &arrow::datatypes::DataType::Int64,
        )
        .unwrap();
        let line = line.as_primitive::<Int64Type>();
        let cust = column(&b, "o_custkey").as_primitive::<Int64Type>();
        let price = column(&b, "o_totalprice").as_primitive::<Decimal128Type>();
        for i in 0..b.num_rows() {
            let order = key.value(i);
            assert_eq!(
                want.get(&order),
                Some(&(cust.value(i), price.value(i))),
                "order {order}"
            );
            *seen.entry((order, line.value(i))).or_default() += 1;
        }
    }
    // Every lineitem has its order: each (order, line) comes out once.
    assert_eq!(seen.len(), rows(lineitem), "{}", r.stderr);
    assert!(seen.values().all(|&n| n == 1), "a pair came out twice");
}

#[test]
fn lineitem_join_orders_small_under_32mb() {
    check_join(lineitem_sf01(), orders_sf01(), "32MB", true);
}

#[test]
fn lineitem_join_orders_sf1_under_64mb() {
    check_join(lineitem_sf1(), orders_sf1(), "64MB", true);
}

#[test]
fn lineitem_join_orders_sf1_under_256mb() {
    check_join(lineitem_sf1(), orders_sf1(), "256MB", false);
}

#[test]
fn a_left_join_and_not_in_under_32mb_keep_sql_semantics() {
    // Orders without a lineitem of quantity 1 (about 1 in 50 lines): a
    // LEFT JOIN's NULLs and a NOT IN, both spilled, must agree.
    let (lineitem, orders) = (lineitem_sf01(), orders_sf01());
    let dir = scratch("join-left-not-in");
    let left = dir.join("left.csv");
    let sql = format!(
        "SELECT count(*) AS n FROM '{o}' o LEFT JOIN \
         (SELECT l_orderkey FROM '{l}' WHERE l_quantity = 1) q ON o.o_orderkey = q.l_orderkey \
         WHERE q.l_orderkey IS NULL",
        o = orders.display(),
        l = lineitem.display()
    );
    sql_to_file(&sql, &left, "32MB");
    let not_in = dir.join("not_in.csv");
    let sql = format!(
        "SELECT count(*) AS n FROM '{o}' WHERE o_orderkey NOT IN \
         (SELECT l_orderkey FROM '{l}' WHERE l_quantity = 1)",
        o = orders.display(),
        l = lineitem.display()
    );
    sql_to_file(&sql, &not_in, "32MB");
    let mut with_one = std::collections::HashSet::new();
    for b in batches(lineitem) {
        let key = column(&b, "l_orderkey").as_primitive::<Int64Type>();
        let q = column(&b, "l_quantity").as_primitive::<Decimal128Type>();
        for i in 0..b.num_rows() {
            // Decimal(15,2): 1.00 is 100.
            if q.value(i) == 100 {
                with_one.insert(key.value(i));
            }
        }
    }
    let expected = rows(orders) - with_one.len();
    let want = format!("n\n{expected}\n");
    assert_eq!(std::fs::read_to_string(&left).unwrap(), want);
    assert_eq!(std::fs::read_to_string(&not_in).unwrap(), want);
}
