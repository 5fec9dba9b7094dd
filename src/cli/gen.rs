//! `highwater gen tpch`: write TPC-H tables as ZSTD Parquet.

use std::path::Path;

use crate::error::{Error, Result};
use crate::exec::scan_tpch::{TpchScan, TABLES};
use crate::exec::{pipeline, Progress};
use crate::io::parquet_sink::ParquetSink;
use crate::memory::monitor::Monitor;
use crate::session::Session;

/// Write `tables` (all of them when empty) at `scale` into `dir`, one
/// `<table>.parquet` each.
pub fn tpch(session: &mut Session, scale: f64, dir: &Path, tables: &[String]) -> Result<()> {
    // Written so that NaN is refused too.
    if scale.is_nan() || scale <= 0.0 {
        return Err(Error::plan(format!("--scale must be above 0, got {scale}")));
    }
    std::fs::create_dir_all(dir).map_err(|e| Error::io("create", dir, e))?;
    let chosen: Vec<String> = if tables.is_empty() {
        TABLES.iter().map(|t| t.to_string()).collect()
    } else {
        tables.to_vec()
    };
    let ctx = session.context().clone();
    if !crate::exec::scan_tpch::text_pool(ctx.config.memory_bytes_max).1 {
        eprintln!(
            "gen: under this memory limit, comment columns come from a small text pool \
             and differ from dbgen's; all other columns are dbgen's"
        );
    }
    for table in &chosen {
        // As between a script's statements: the table before may have left
        // RSS above the pressure line (freed pages not yet returned), and
        // under pressure the next writer's buffer would be refused.
        Monitor::settle(&ctx.budget);
        let scan = TpchScan::new(ctx.clone(), table, scale)?;
        let path = dir.join(format!("{table}.parquet"));
        let sink = ParquetSink::create(
            &path,
            scan_schema(&scan),
            ctx.config.zstd_level,
            &ctx.budget,
            &ctx.spill,
            ctx.config.threads,
            &[],
        )?;
        pipeline::run(Box::new(scan), Box::new(sink), &ctx)?;
        Progress::add(&ctx.progress.files_written, 1);
        session.record_file(path);
    }
    Ok(())
}

fn scan_schema(scan: &TpchScan) -> arrow::datatypes::SchemaRef {
    use crate::exec::Operator;
    scan.schema()
}
