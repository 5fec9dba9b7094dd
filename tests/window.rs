//! Window functions from outside the process: a dedup-style row_number
//! and a running sum over TPC-H lineitem under a limit that makes the sort
//! below the window spill, and ranks over partitions larger than the
//! budget, with the child's peak RSS under the limit and the results
//! checked against the parquet crate's reading of the input.

mod common;

use std::collections::HashMap;

use arrow::array::{AsArray, RecordBatch};
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

/// `sql` written at 32MB, where its sort spills, and at 4000MB: the rows,
/// which must be the same in both.
fn under_32mb_as_in_memory(sql: &str, name: &str) -> RecordBatch {
    let dir = scratch(name);
    let small = dir.join("small.parquet");
    let (r, report) = sql_to_file(sql, &small, "32MB");
    assert!(report["spill_files"].as_u64().unwrap() > 0, "{}", r.stderr);
    let large = dir.join("large.parquet");
    sql_to_file(sql, &large, "4000MB");
    let read = |path| {
        let all: Vec<_> = batches(path).collect();
        arrow::compute::concat_batches(&all[0].schema(), &all).unwrap()
    };
    let (small, large) = (read(&small), read(&large));
    assert_eq!(small, large, "32MB and 4GB runs differ");
    small
}

#[test]
fn ranks_over_partitions_larger_than_the_budget_stream_and_agree_with_memory() {
    // Two partitions of about 300k rows each: at 32MB one does not fit in
    // the operator pool (7.5 MB), which stopped the query before ranks
    // went out a piece at a time.
    let input = lineitem_sf01();
    let sql = format!(
        "SELECT l_orderkey, l_linenumber, l_linestatus, l_quantity, \
         row_number() OVER (PARTITION BY l_linestatus ORDER BY l_quantity DESC) AS rn, \
         rank() OVER (PARTITION BY l_linestatus ORDER BY l_quantity DESC) AS r, \
         dense_rank() OVER (PARTITION BY l_linestatus ORDER BY l_quantity DESC) AS d \
         FROM '{}'",
        input.display()
    );
    let small = under_32mb_as_in_memory(&sql, "window-ranks");

    // Each quantity's count per status, from the input, in hundredths.
    let mut counts: HashMap<(String, i64), i64> = HashMap::new();
    for b in batches(input) {
        let status = b.column(b.schema().index_of("l_linestatus").unwrap());
        let status = arrow::compute::cast(status, &DataType::Utf8).unwrap();
        let q = b.column(b.schema().index_of("l_quantity").unwrap());
        let q = q.as_primitive::<arrow::datatypes::Decimal128Type>();
        for (s, q) in status.as_string::<i32>().iter().zip(q.values()) {
            *counts
                .entry((s.unwrap().to_string(), *q as i64))
                .or_default() += 1;
        }
    }
    let status = arrow::compute::cast(small.column(2), &DataType::Utf8).unwrap();
    let status = status.as_string::<i32>();
    let q = small
        .column(3)
        .as_primitive::<arrow::datatypes::Decimal128Type>();
    let (rn, r, d) = (ints(&small, "rn"), ints(&small, "r"), ints(&small, "d"));
    let mut numbers: HashMap<String, Vec<i64>> = HashMap::new();
    for i in 0..small.num_rows() {
        let s = status.value(i).to_string();
        let q = q.value(i) as i64;
        let higher: Vec<(i64, i64)> = counts
            .iter()
            .filter(|((cs, cq), _)| *cs == s && *cq > q)
            .map(|((_, cq), n)| (*cq, *n))
            .collect();
        let rank = 1 + higher.iter().map(|(_, n)| n).sum::<i64>();
        assert_eq!(r[i], rank, "rank, row {i}");
        assert_eq!(d[i], 1 + higher.len() as i64, "dense_rank, row {i}");
        // Ties may take their row numbers in any order among themselves.
        let ties = counts[&(s.clone(), q)];
        assert!((rank..rank + ties).contains(&rn[i]), "row_number, row {i}");
        numbers.entry(s).or_default().push(rn[i]);
    }
    for (s, mut n) in numbers {
        n.sort_unstable();
        assert!(
            n.iter().zip(1..).all(|(&a, b)| a == b),
            "row numbers of {s} are not 1..n"
        );
    }
}

#[test]
fn running_aggregates_over_partitions_larger_than_the_budget_stream_and_agree_with_memory() {
    // Partitions of about 300k rows at 32MB, as above: a running sum by
    // rows, and a count and a max whose frames end at the row's last peer
    // (shipping dates repeat about 120 times a status), which a piece
    // must not cut.
    let input = lineitem_sf01();
    let sql = format!(
        "SELECT l_orderkey, l_linenumber, l_linestatus, l_shipdate, \
         sum(l_linenumber) OVER (PARTITION BY l_linestatus \
           ORDER BY l_orderkey, l_linenumber ROWS UNBOUNDED PRECEDING) AS running, \
         count(*) OVER (PARTITION BY l_linestatus ORDER BY l_shipdate) AS upto, \
         max(l_orderkey) OVER (PARTITION BY l_linestatus ORDER BY l_shipdate) AS top \
         FROM '{}'",
        input.display()
    );
    let small = under_32mb_as_in_memory(&sql, "window-running");

    // Per status, from the input: rows by (order, line), and by date.
    let mut rows: HashMap<String, Vec<(i64, i64, i64)>> = HashMap::new();
    for b in batches(input) {
        let status = b.column(b.schema().index_of("l_linestatus").unwrap());
        let status = arrow::compute::cast(status, &DataType::Utf8).unwrap();
        let (orders, lines) = (ints(&b, "l_orderkey"), ints(&b, "l_linenumber"));
        let dates = ints(&b, "l_shipdate");
        for (i, s) in status.as_string::<i32>().iter().enumerate() {
            let entry = rows.entry(s.unwrap().to_string()).or_default();
            entry.push((orders[i], lines[i], dates[i]));
        }
    }
    // (status, order, line) -> running sum of lines; (status, date) -> rows
    // up to that date and the greatest order among them.
    let mut running: HashMap<(String, i64, i64), i64> = HashMap::new();
    let mut upto: HashMap<(String, i64), (i64, i64)> = HashMap::new();
    for (s, mut all) in rows {
        all.sort_unstable();
        let mut sum = 0;
        for &(o, l, _) in &all {
            sum += l;
            running.insert((s.clone(), o, l), sum);
        }
        all.sort_unstable_by_key(|&(o, _, d)| (d, o));
        let (mut count, mut top) = (0, 0);
        for (i, &(o, _, d)) in all.iter().enumerate() {
            count += 1;
            top = top.max(o);
            if all.get(i + 1).is_none_or(|next| next.2 != d) {
                upto.insert((s.clone(), d), (count, top));
            }
        }
    }
    let status = arrow::compute::cast(small.column(2), &DataType::Utf8).unwrap();
    let status = status.as_string::<i32>();
    let (orders, lines) = (ints(&small, "l_orderkey"), ints(&small, "l_linenumber"));
    let dates = ints(&small, "l_shipdate");
    let (got_running, got_upto) = (ints(&small, "running"), ints(&small, "upto"));
    let got_top = ints(&small, "top");
    for i in 0..small.num_rows() {
        let s = status.value(i).to_string();
        let want = running[&(s.clone(), orders[i], lines[i])];
        assert_eq!(got_running[i], want, "running sum, row {i}");
        let (count, top) = upto[&(s, dates[i])];
        assert_eq!(
            (got_upto[i], got_top[i]),
            (count, top),
            "count and max, row {i}"
        );
    }
    assert_eq!(small.num_rows(), running.len());
}
