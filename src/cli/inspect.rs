//! `highwater inspect FILE`: what a file holds, without reading its data.
//!
//! For Parquet: schema, rows, row groups, sizes, compression, and per-column
//! min/max/null statistics from the footer. For CSV and NDJSON: the schema
//! inferred from a sample, as a query would see it.

use std::fmt::Write as _;
use std::path::Path;

use arrow::array::{Array, ArrayRef};
use arrow::compute::{sort, SortOptions};
use arrow::util::display::{ArrayFormatter, FormatOptions};
use parquet::arrow::arrow_reader::statistics::StatisticsConverter;

use crate::config::{format_bytes, RunConfig};
use crate::error::Result;
use crate::plan::expr::sql_type_name;
use crate::report::thousands;
use crate::source::{parquet_metadata, FileFormat, Source};

pub fn inspect(path: &Path, config: &RunConfig) -> Result<String> {
    let shown = path.display().to_string();
    let format = FileFormat::from_extension(&shown).unwrap_or(FileFormat::Parquet);
    if !matches!(format, FileFormat::Parquet) {
        let source = Source::open(format, vec![shown.clone()], config.infer_rows_max)?;
        let mut out = format!(
            "{shown}: {} ({})\n",
            source.format.name(),
            format_bytes(source.bytes_total)
        );
        out.push_str("columns (inferred):\n");
        for f in source.schema.fields() {
            let _ = writeln!(out, "  {} {}", f.name(), sql_type_name(f.data_type()));
        }
        return Ok(out);
    }
    let (file, metadata) = parquet_metadata(path)?;
    let bytes = file.metadata().map(|m| m.len()).unwrap_or(0);
    let parquet = metadata.metadata();
    let file_meta = parquet.file_metadata();
    let groups = parquet.row_groups();
    let mut out = String::new();
    let _ = writeln!(out, "{shown}: parquet, {}", format_bytes(bytes));
    let _ = writeln!(
        out,
        "rows {} in {} row group{}; created by {}",
        thousands(file_meta.num_rows().max(0) as u64),
        groups.len(),
        if groups.len() == 1 { "" } else { "s" },
        file_meta.created_by().unwrap_or("unknown")
    );
    let schema = metadata.schema();
    let descr = file_meta.schema_descr();
    let _ = writeln!(out, "columns:");
    let options = FormatOptions::default().with_null("NULL");
    for (i, field) in schema.fields().iter().enumerate() {
        let (mut compressed, mut uncompressed, mut codec) = (0i64, 0i64, String::from("-"));
        for rg in groups {
            // Top-level columns map to leaves one to one for flat schemas;
            // nested columns are summed over their leaves.
            for c in rg.columns() {
                if c.column_path().parts().first().map(String::as_str)
                    == Some(field.name().as_str())
                {
                    compressed += c.compressed_size();
                    uncompressed += c.uncompressed_size();
                    codec = format!("{:?}", c.compression());
                }
            }
        }
        let mut stats = String::new();
        if let Ok(converter) = StatisticsConverter::try_new(field.name(), schema, descr) {
            let min = converter
                .row_group_mins(groups)
                .ok()
                .and_then(|a| extreme(&a, false));
            let max = converter
                .row_group_maxes(groups)
                .ok()
                .and_then(|a| extreme(&a, true));
            let nulls: Option<u64> = converter
                .row_group_null_counts(groups)
                .ok()
                .map(|n| n.iter().flatten().sum());
            let show = |v: Option<ArrayRef>| {
                v.and_then(|a| {
                    ArrayFormatter::try_new(a.as_ref(), &options)
                        .ok()
                        .map(|f| f.value(0).to_string())
                })
                .unwrap_or_else(|| "-".into())
            };
            stats = format!(
                " min={} max={} nulls={}",
                show(min),
                show(max),
                nulls.map(thousands).unwrap_or_else(|| "-".into())
            );
        }
        let _ = writeln!(
            out,
            "  {:<3} {} {} [{}, {} → {}]{}",
            i,
            field.name(),
            sql_type_name(field.data_type()),
            codec,
            format_bytes(uncompressed.max(0) as u64),
            format_bytes(compressed.max(0) as u64),
            stats
        );
    }
    Ok(out)
}

/// The smallest (or largest) non-null value of `values`, as a one-row array.
fn extreme(values: &ArrayRef, largest: bool) -> Option<ArrayRef> {
    let sorted = sort(
        values.as_ref(),
        Some(SortOptions {
            descending: largest,
            nulls_first: false,
        }),
    )
    .ok()?;
    (!sorted.is_empty() && sorted.is_valid(0)).then(|| sorted.slice(0, 1))
}
