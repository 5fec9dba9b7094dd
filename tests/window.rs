//! Window functions from outside the process: a dedup-style row_number
//! and a running sum over TPC-H lineitem under a limit that makes the sort
//! below the window spill, with the child's peak RSS under the limit and
//! the results checked against the parquet crate's reading of the input.

mod common;

use std::collections::HashMap;

use arrow::array::AsArray;
use arrow::datatypes::{DataType, Int64Type};

use common::{batches, lineitem_sf01, scratch, sql_to_file};

/// The launcher `common::run` re-runs this binary as, to measure a child's
/// own peak RSS; run plainly, it checks that measurement.
#[test]
fn launcher() {
    common::launcher();
}

fn ints(b: &arrow::array::RecordBatch, name: &str) -> Vec<i64> {
    let a = b.column(b.schema().index_of(name).unwrap());
    let a = arrow::compute::cast(a, &DataType::Int64).unwrap();
    a.as_primitive::<Int64Type>().values().to_vec()
}

#[test]
fn row_number_and_running_sums_per_order_under_32mb() {
    let input = lineitem_sf01();
    let out = scratch("window-32MB").join("numbered.parquet");
    let sql = format!(
        "SELECT l_orderkey, l_linenumber, \
         row_number() OVER (PARTITION BY l_orderkey ORDER BY l_linenumber DESC) AS rn, \
         sum(l_linenumber) OVER (PARTITION BY l_orderkey ORDER BY l_linenumber) AS running \
         FROM '{}'",
        input.display()
    );
    let (r, report) = sql_to_file(&sql, &out, "32MB");
    assert!(report["spill_files"].as_u64().unwrap() > 0, "{}", r.stderr);
    // Lines of each order, from the input.
    let mut lines: HashMap<i64, Vec<i64>> = HashMap::new();
    for b in batches(input) {
        for (o, l) in ints(&b, "l_orderkey")
            .into_iter()
            .zip(ints(&b, "l_linenumber"))
        {
            lines.entry(o).or_default().push(l);
        }
    }
    let mut rows = 0;
    for b in batches(&out) {
        let (orders, nums) = (ints(&b, "l_orderkey"), ints(&b, "l_linenumber"));
        let (rn, running) = (ints(&b, "rn"), ints(&b, "running"));
        for i in 0..b.num_rows() {
            let all = &lines[&orders[i]];
            // Numbered from the highest line down; the sum up to this line.
            let higher = all.iter().filter(|&&l| l > nums[i]).count() as i64;
            assert_eq!(rn[i], higher + 1, "order {} line {}", orders[i], nums[i]);
            let upto: i64 = all.iter().filter(|&&l| l <= nums[i]).sum();
            assert_eq!(running[i], upto, "order {} line {}", orders[i], nums[i]);
            rows += 1;
        }
    }
    assert_eq!(rows, lines.values().map(Vec::len).sum::<usize>());
}
