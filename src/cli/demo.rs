//! `highwater demo`: the README's first command. It needs no input.
//!
//! It generates TPC-H `lineitem` (deterministic, several times larger than
//! the memory limit it then uses) and runs a representative ETL job on it
//! under that limit: filter by date, compute a derived column, write ZSTD
//! Parquet; then sort the whole table, which spills. The run report then
//! shows peak RSS against the limit.

use std::path::Path;

use crate::config::format_bytes;
use crate::error::Result;
use crate::io::OutputFormat;
use crate::report::thousands;
use crate::session::{Output, Session};
use crate::source::{FileFormat, Source};

/// The memory limit the demo runs under unless told otherwise.
pub const DEMO_MEMORY_LIMIT: &str = "64MB";
/// TPC-H scale of the demo's data: 3 million lineitem rows.
pub const DEMO_SCALE: f64 = 0.5;

pub fn demo(session: &mut Session, dir: &Path) -> Result<()> {
    let data = dir.join("lineitem.parquet");
    let limit = session.context().budget.limit_bytes();
    let expected_rows = (6_001_215.0 * DEMO_SCALE) as u64;
    let reuse = Source::open(FileFormat::Parquet, vec![data.display().to_string()], 1)
        .ok()
        .and_then(|s| s.rows_total)
        .is_some_and(|rows| rows.abs_diff(expected_rows) < expected_rows / 100);
    if reuse {
        eprintln!("demo: reusing {}", data.display());
    } else {
        eprintln!(
            "demo: generating TPC-H lineitem at scale {DEMO_SCALE} into {} ...",
            dir.display()
        );
        crate::cli::gen::tpch(session, DEMO_SCALE, dir, &["lineitem".to_string()])?;
    }
    let source = Source::open(FileFormat::Parquet, vec![data.display().to_string()], 1)?;
    let rows = source.rows_total.unwrap_or(0);
    // lineitem averages about 140 bytes a row as Arrow arrays in memory.
    let in_memory = rows * 140;
    eprintln!(
        "demo: {} rows, {} as Parquet, about {} in memory as Arrow: {:.0}x the {} memory limit",
        thousands(rows),
        format_bytes(source.bytes_total),
        format_bytes(in_memory),
        in_memory as f64 / limit as f64,
        format_bytes(limit)
    );
    let out = dir.join("net_revenue.parquet");
    let sql = format!(
        "SELECT l_orderkey, l_linenumber, l_shipdate, \
                l_extendedprice * (1 - l_discount) AS net_price, l_returnflag \
         FROM read_parquet('{}') \
         WHERE l_shipdate >= DATE '1995-01-01' AND l_shipmode <> 'AIR'",
        data.display()
    );
    eprintln!("demo: {sql}\n      -> {}", out.display());
    session.run_sql(&sql, &Output::File(out, OutputFormat::Parquet))?;

    // The whole table sorted: several times the limit, so it spills runs
    // and merges them.
    let sorted = dir.join("lineitem_by_shipdate.parquet");
    let sql = format!(
        "SELECT * FROM read_parquet('{}') ORDER BY l_shipdate, l_orderkey, l_linenumber",
        data.display()
    );
    eprintln!("demo: {sql}\n      -> {}", sorted.display());
    session.run_sql(&sql, &Output::File(sorted, OutputFormat::Parquet))
}
