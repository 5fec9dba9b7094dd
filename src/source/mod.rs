//! Sources: which files a table reads, in what format, with what schema.
//!
//! Resolving a source is the one place where planning touches the file
//! system: globs are expanded, Parquet footers are read (for the schema, row
//! counts and sizes the progress bar and the planner use), and CSV/NDJSON
//! schemas are inferred from a bounded sample of the first file.

use std::fs::File;
use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use arrow::array::{make_comparator, Array, AsArray};
use arrow::compute::{cast, SortOptions};
use arrow::datatypes::{DataType, Field, Int64Type, Schema, SchemaRef};
use parquet::arrow::arrow_reader::statistics::StatisticsConverter;
use parquet::arrow::arrow_reader::{ArrowReaderMetadata, ArrowReaderOptions};
use regex::Regex;

use crate::error::{Error, Result};
use crate::plan::expr::sql_type_name;

#[derive(Debug, Clone)]
pub enum FileFormat {
    Parquet,
    Csv(CsvOptions),
    Ndjson,
}

impl FileFormat {
    pub fn name(&self) -> &'static str {
        match self {
            FileFormat::Parquet => "parquet",
            FileFormat::Csv(_) => "csv",
            FileFormat::Ndjson => "ndjson",
        }
    }

    /// The format a path's extension names, if any.
    pub fn from_extension(path: &str) -> Option<FileFormat> {
        let lower = path.to_ascii_lowercase();
        let ext = lower.rsplit('.').next()?;
        match ext {
            "parquet" | "pq" => Some(FileFormat::Parquet),
            "csv" => Some(FileFormat::Csv(CsvOptions::default())),
            "tsv" => Some(FileFormat::Csv(CsvOptions {
                delimiter: b'\t',
                ..CsvOptions::default()
            })),
            "json" | "ndjson" | "jsonl" => Some(FileFormat::Ndjson),
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct CsvOptions {
    pub header: bool,
    pub delimiter: u8,
    pub quote: u8,
    /// The text that stands for NULL; by default an empty field is NULL.
    pub null_string: Option<String>,
    /// Column names and types given by the user; inferred when absent.
    pub columns: Option<SchemaRef>,
}

impl Default for CsvOptions {
    fn default() -> Self {
        CsvOptions {
            header: true,
            delimiter: b',',
            quote: b'"',
            null_string: None,
            columns: None,
        }
    }
}

impl CsvOptions {
    /// The arrow-csv format these options describe.
    pub fn arrow_format(&self) -> Result<arrow::csv::reader::Format> {
        let mut format = arrow::csv::reader::Format::default()
            .with_header(self.header)
            .with_delimiter(self.delimiter)
            .with_quote(self.quote);
        if let Some(null) = &self.null_string {
            format = format.with_null_regex(null_regex(null)?);
        }
        Ok(format)
    }
}

pub fn null_regex(null: &str) -> Result<regex::Regex> {
    regex::Regex::new(&format!("^{}$", regex::escape(null)))
        .map_err(|e| Error::plan(format!("bad nullstr '{null}': {e}")))
}

/// A resolved table: its files, format and schema.
#[derive(Debug)]
pub struct Source {
    pub format: FileFormat,
    /// What the user wrote, for messages and EXPLAIN.
    pub patterns: Vec<String>,
    pub files: Vec<PathBuf>,
    pub schema: SchemaRef,
    /// Total rows, where the format records it (Parquet).
    pub rows_total: Option<u64>,
    /// Total bytes of all files.
    pub bytes_total: u64,
    /// The columns the rows come ordered by, major first, where the format
    /// says so and the statistics agree ([`parquet_ordering`]); else empty.
    pub ordering: Vec<OrderColumn>,
    /// For each column, at most how many distinct values it holds, where
    /// Parquet statistics bound it ([`integer_ranges`]); else `None`. The
    /// planner uses it to guess join sizes.
    pub distinct_max: Vec<Option<u64>>,
}

/// A column rows are ordered by, and how.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OrderColumn {
    /// A position in the schema of whatever is ordered.
    pub column: usize,
    pub descending: bool,
    pub nulls_first: bool,
}

impl Source {
    /// Expand `patterns` and read the schema.
    pub fn open(
        format: FileFormat,
        patterns: Vec<String>,
        infer_rows_max: usize,
    ) -> Result<Source> {
        let files = expand(&patterns)?;
        let mut bytes_total = 0;
        for f in &files {
            bytes_total += std::fs::metadata(f)
                .map_err(|e| Error::io("open", f, e))?
                .len();
        }
        let (schema, rows_total, ordering, distinct_max) = match &format {
            FileFormat::Parquet => parquet_schema(&files)?,
            FileFormat::Csv(options) => {
                let schema = csv_schema(&files[0], options, infer_rows_max)?;
                let unknown = vec![None; schema.fields().len()];
                (schema, None, Vec::new(), unknown)
            }
            FileFormat::Ndjson => {
                let schema = ndjson_schema(&files[0], infer_rows_max)?;
                let unknown = vec![None; schema.fields().len()];
                (schema, None, Vec::new(), unknown)
            }
        };
        Ok(Source {
            format,
            patterns,
            files,
            schema,
            rows_total,
            bytes_total,
            ordering,
            distinct_max,
        })
    }

    pub fn display_name(&self) -> String {
        self.patterns.join(", ")
    }
}

/// Expand each pattern: a glob to its matches in sorted order, a plain path
/// to itself. A glob that matches nothing and a missing file are errors.
pub fn expand(patterns: &[String]) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for pattern in patterns {
        if pattern.contains(['*', '?', '[']) {
            let paths = glob::glob(pattern)
                .map_err(|e| Error::plan(format!("bad glob '{pattern}': {e}")))?;
            let mut matched: Vec<PathBuf> = Vec::new();
            for p in paths {
                let p = p.map_err(|e| {
                    let path = e.path().to_path_buf();
                    Error::io("list", path, e.into())
                })?;
                if p.is_file() {
                    matched.push(p);
                }
            }
            if matched.is_empty() {
                return Err(Error::plan(format!("no files match '{pattern}'")));
            }
            matched.sort();
            files.extend(matched);
        } else {
            let path = PathBuf::from(pattern);
            match std::fs::metadata(&path) {
                Ok(m) if m.is_file() => files.push(path),
                Ok(_) => {
                    return Err(Error::io(
                        "read",
                        &path,
                        std::io::Error::other("it is a directory, not a file"),
                    ))
                }
                Err(e) => return Err(Error::io("open", &path, e)),
            }
        }
    }
    Ok(files)
}

/// Read one Parquet file's metadata, naming the file in any error.
pub fn parquet_metadata(path: &Path) -> Result<(File, ArrowReaderMetadata)> {
    let file = File::open(path).map_err(|e| Error::io("open", path, e))?;
    let metadata = ArrowReaderMetadata::load(&file, ArrowReaderOptions::new())
        .map_err(|e| Error::input(path, format!("not a readable Parquet file: {e}")))?;
    Ok((file, metadata))
}

type ParquetFacts = (SchemaRef, Option<u64>, Vec<OrderColumn>, Vec<Option<u64>>);

fn parquet_schema(files: &[PathBuf]) -> Result<ParquetFacts> {
    let mut schema: Option<SchemaRef> = None;
    let mut rows = 0u64;
    let mut ordering = Vec::new();
    let mut ranges: Vec<Option<(i64, i64)>> = Vec::new();
    for path in files {
        let (_, metadata) = parquet_metadata(path)?;
        rows += metadata.metadata().file_metadata().num_rows().max(0) as u64;
        if files.len() == 1 {
            ordering = parquet_ordering(&metadata);
        }
        let this_ranges = integer_ranges(&metadata);
        let this = strip_metadata(metadata.schema());
        match &schema {
            None => {
                schema = Some(this);
                ranges = this_ranges;
            }
            Some(first) => {
                check_same_schema(first, &this, &files[0], path)?;
                for (range, other) in ranges.iter_mut().zip(this_ranges) {
                    *range = range
                        .zip(other)
                        .map(|((lo, hi), (o_lo, o_hi))| (lo.min(o_lo), hi.max(o_hi)));
                }
            }
        }
    }
    let schema = schema.ok_or_else(|| Error::Internal("a source with no files".into()))?;
    let distinct_max = ranges
        .into_iter()
        .map(|r| r.map(|(lo, hi)| (hi as i128 - lo as i128 + 1).min(u64::MAX as i128) as u64))
        .collect();
    Ok((schema, Some(rows), ordering, distinct_max))
}

/// Each column's smallest and largest value over the whole file, where it
/// is an integer or a date and every row group's statistics give both
/// (NULLs aside); else `None`. `max - min + 1` bounds how many distinct
/// values the column holds, which is what the planner wants: `c_nationkey`
/// has at most 25 whatever the rows. It is a bound, not a count: TPC-H's
/// order keys span four times as many values as there are orders.
fn integer_ranges(metadata: &ArrowReaderMetadata) -> Vec<Option<(i64, i64)>> {
    let parquet = metadata.metadata();
    let schema = metadata.schema();
    let groups = parquet.row_groups();
    let range = |field: &Field| -> Option<(i64, i64)> {
        let integer = matches!(
            field.data_type(),
            DataType::Int8
                | DataType::Int16
                | DataType::Int32
                | DataType::Int64
                | DataType::UInt8
                | DataType::UInt16
                | DataType::UInt32
                | DataType::Date32
        );
        if !integer || groups.is_empty() {
            return None;
        }
        let stats = StatisticsConverter::try_new(
            field.name(),
            schema,
            parquet.file_metadata().schema_descr(),
        )
        .ok()?;
        let mins = cast(&stats.row_group_mins(groups).ok()?, &DataType::Int64).ok()?;
        let maxes = cast(&stats.row_group_maxes(groups).ok()?, &DataType::Int64).ok()?;
        let (mins, maxes) = (
            mins.as_primitive::<Int64Type>(),
            maxes.as_primitive::<Int64Type>(),
        );
        if mins.null_count() > 0 || maxes.null_count() > 0 {
            return None;
        }
        Some((
            mins.values().iter().copied().min()?,
            maxes.values().iter().copied().max()?,
        ))
    };
    schema.fields().iter().map(|f| range(f)).collect()
}

/// The order a Parquet file's rows come in, as far as it can be trusted:
/// empty unless every row group declares the same `sorting_columns` (which
/// say only that each row group is sorted) and the leading column's
/// statistics show the row groups in that order too, each one's last value
/// at most the next one's first. Where a row group ends on the value the
/// next begins with, rows equal on the leading column may be split apart
/// on the next ones, so only the leading column is kept. A float column
/// and those after it are not trusted. Nested schemas,
/// whose leaf columns are not the fields, give nothing; so do NULLs in the
/// leading column of a file of several row groups.
pub fn parquet_ordering(metadata: &ArrowReaderMetadata) -> Vec<OrderColumn> {
    let parquet = metadata.metadata();
    let schema = metadata.schema();
    let groups = parquet.row_groups();
    if groups.is_empty() || schema.fields().iter().any(|f| f.data_type().is_nested()) {
        return Vec::new();
    }
    let Some(declared) = groups[0].sorting_columns() else {
        return Vec::new();
    };
    if declared.is_empty() || groups.iter().any(|g| g.sorting_columns() != Some(declared)) {
        return Vec::new();
    }
    let mut ordering: Vec<OrderColumn> = declared
        .iter()
        .map_while(|c| {
            let column = usize::try_from(c.column_idx).ok()?;
            (column < schema.fields().len()).then_some(OrderColumn {
                column,
                descending: c.descending,
                nulls_first: c.nulls_first,
            })
        })
        .collect();
    if ordering.len() < declared.len() {
        // A column it does not have.
        return Vec::new();
    }
    // Writers disagree on where NaN goes, and on whether -0.0 comes before
    // 0.0; a sort skipped on their word could leave them where ours would
    // not put them. The columns before the first float still hold.
    if let Some(float) = ordering
        .iter()
        .position(|o| schema.field(o.column).data_type().is_floating())
    {
        ordering.truncate(float);
    }
    if ordering.is_empty() {
        return Vec::new();
    }
    if groups.len() == 1 {
        return ordering;
    }
    let lead = ordering[0];
    let name = schema.field(lead.column).name();
    let Ok(stats) =
        StatisticsConverter::try_new(name, schema, parquet.file_metadata().schema_descr())
    else {
        return Vec::new();
    };
    let (Ok(mins), Ok(maxes), Ok(nulls)) = (
        stats.row_group_mins(groups),
        stats.row_group_maxes(groups),
        stats.row_group_null_counts(groups),
    ) else {
        return Vec::new();
    };
    if mins.null_count() > 0 || maxes.null_count() > 0 || nulls.null_count() > 0 {
        // Statistics missing somewhere.
        return Vec::new();
    }
    if nulls.values().iter().any(|&n| n > 0) {
        return Vec::new();
    }
    // In the declared direction, each row group's last value against the
    // next one's first: max then min ascending, min then max descending.
    let (ends, starts) = if lead.descending {
        (&mins, &maxes)
    } else {
        (&maxes, &mins)
    };
    let options = SortOptions {
        descending: lead.descending,
        nulls_first: lead.nulls_first,
    };
    let Ok(compare) = make_comparator(ends.as_ref(), starts.as_ref(), options) else {
        return Vec::new();
    };
    for i in 0..groups.len() - 1 {
        match compare(i, i + 1) {
            std::cmp::Ordering::Less => {}
            std::cmp::Ordering::Equal => ordering.truncate(1),
            std::cmp::Ordering::Greater => return Vec::new(),
        }
    }
    ordering
}

/// Field metadata (arrow's own, written into Parquet footers) plays no part
/// in a query and would make otherwise equal schemas differ.
fn strip_metadata(schema: &SchemaRef) -> SchemaRef {
    Arc::new(Schema::new(
        schema
            .fields()
            .iter()
            .map(|f| Field::new(f.name(), f.data_type().clone(), f.is_nullable()))
            .collect::<Vec<_>>(),
    ))
}

fn check_same_schema(first: &Schema, other: &Schema, first_path: &Path, path: &Path) -> Result<()> {
    let describe = |s: &Schema| {
        s.fields()
            .iter()
            .map(|f| format!("{} {}", f.name(), sql_type_name(f.data_type())))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let same = first.fields().len() == other.fields().len()
        && first
            .fields()
            .iter()
            .zip(other.fields())
            .all(|(a, b)| a.name() == b.name() && a.data_type() == b.data_type());
    if same {
        Ok(())
    } else {
        Err(Error::input(
            path,
            format!(
                "its columns ({}) differ from those of {} ({})",
                describe(other),
                first_path.display(),
                describe(first)
            ),
        ))
    }
}

fn csv_schema(path: &Path, options: &CsvOptions, infer_rows_max: usize) -> Result<SchemaRef> {
    if let Some(columns) = &options.columns {
        return Ok(columns.clone());
    }
    let mut file = File::open(path).map_err(|e| Error::io("open", path, e))?;
    let (schema, _) = options
        .arrow_format()?
        .infer_schema(BufReader::new(&mut file), Some(infer_rows_max))
        .map_err(|e| {
            let format = FileFormat::Csv(options.clone());
            explain_text_error(
                &format,
                &Schema::empty(),
                path,
                Error::from(e).reading(path),
            )
        })?;
    file.seek(SeekFrom::Start(0))
        .map_err(|e| Error::io("read", path, e))?;
    Ok(Arc::new(schema))
}

fn ndjson_schema(path: &Path, infer_rows_max: usize) -> Result<SchemaRef> {
    let file = File::open(path).map_err(|e| Error::io("open", path, e))?;
    let (schema, _) =
        arrow::json::reader::infer_json_schema(BufReader::new(file), Some(infer_rows_max))
            .map_err(|e| {
                let e = Error::from(e).reading(path);
                explain_text_error(&FileFormat::Ndjson, &Schema::empty(), path, e)
            })?;
    if schema.fields().is_empty() {
        return Err(Error::input(
            path,
            "no JSON objects found to infer columns from",
        ));
    }
    Ok(Arc::new(schema))
}

/// Make a CSV or NDJSON reader's error say the file's line and the column's
/// name: at inference (plan time) and while scanning alike.
pub fn explain_text_error(format: &FileFormat, schema: &Schema, path: &Path, e: Error) -> Error {
    let Error::Input { line, message, .. } = e else {
        return e;
    };
    let (line, message) = match format {
        FileFormat::Csv(_) => csv_error(schema, line, message),
        _ => match first_bad_json_line(path) {
            Some((bad_line, why)) => (Some(bad_line), format!("not valid JSON: {why}")),
            None => (None, message),
        },
    };
    Error::Input {
        path: path.to_path_buf(),
        line,
        message,
    }
}

/// Rewrite arrow-csv's messages. Its parse errors count records from 0 with
/// the header as record 0, so the file line is one more; its field-count
/// errors already count file lines from 1.
fn csv_error(schema: &Schema, line: Option<u64>, message: String) -> (Option<u64>, String) {
    static PARSE: OnceLock<Regex> = OnceLock::new();
    static FIELDS: OnceLock<Regex> = OnceLock::new();
    let parse = PARSE.get_or_init(|| {
        Regex::new(r"(?s)^Error while parsing value '(.*)' as type '(.*)' for column (\d+) at line (\d+)\. Row data: '(.*)'$")
            .expect("valid regex")
    });
    let fields = FIELDS.get_or_init(|| {
        Regex::new(r"Expected (\d+) records, found (\d+) records at line (\d+)")
            .expect("valid regex")
    });
    if let Some(c) = parse.captures(&message) {
        let column: usize = c[3].parse().unwrap_or(0);
        let name = schema
            .fields()
            .get(column)
            .map(|f| f.name().as_str())
            .unwrap_or("?");
        let sql_type = schema
            .fields()
            .get(column)
            .map(|f| sql_type_name(f.data_type()))
            .unwrap_or_else(|| c[2].to_string());
        let line = c[4].parse::<u64>().ok().map(|l| l + 1);
        return (
            line,
            format!(
                "column '{name}': '{}' is not a valid {sql_type} (row: {})",
                &c[1], &c[5]
            ),
        );
    }
    if let Some(c) = fields.captures(&message) {
        return (
            c[3].parse().ok(),
            format!("expected {} fields, found {}", &c[1], &c[2]),
        );
    }
    (line, message)
}

/// The first line of an NDJSON file that is not a JSON object, and why. Only
/// called after the decoder failed, whose own positions are relative to the
/// chunk it was decoding.
fn first_bad_json_line(path: &Path) -> Option<(u64, String)> {
    let file = File::open(path).ok()?;
    for (i, line) in BufReader::new(file).lines().enumerate() {
        let line = line.ok()?;
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<serde_json::Value>(&line) {
            Ok(serde_json::Value::Object(_)) => {}
            Ok(_) => return Some((i as u64 + 1, "expected a JSON object".into())),
            Err(e) => return Some((i as u64 + 1, e.to_string())),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};
    use parquet::arrow::ArrowWriter;
    use parquet::file::metadata::SortingColumn;
    use parquet::file::properties::WriterProperties;

    use super::*;

    /// A file of rows (a, b), two rows a row group, declaring it is sorted
    /// on `declared` (column, descending).
    fn file(name: &str, rows: &[(Option<i64>, &str)], declared: &[(i32, bool)]) -> PathBuf {
        let schema = Arc::new(Schema::new(vec![
            Field::new("a", DataType::Int64, true),
            Field::new("b", DataType::Utf8, false),
        ]));
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from(
                    rows.iter().map(|r| r.0).collect::<Vec<_>>(),
                )),
                Arc::new(StringArray::from(
                    rows.iter().map(|r| r.1).collect::<Vec<_>>(),
                )),
            ],
        )
        .unwrap();
        file_of(name, &batch, declared)
    }

    /// A file of `batch`, two rows a row group, declaring it is sorted on
    /// `declared` (column, descending).
    fn file_of(name: &str, batch: &RecordBatch, declared: &[(i32, bool)]) -> PathBuf {
        let dir = std::env::temp_dir().join("highwater-tests");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{name}-{}.parquet", std::process::id()));
        let sorting = declared
            .iter()
            .map(|&(column_idx, descending)| SortingColumn {
                column_idx,
                descending,
                nulls_first: false,
            })
            .collect();
        let properties = WriterProperties::builder()
            .set_max_row_group_row_count(Some(2))
            .set_sorting_columns(Some(sorting))
            .build();
        let out = File::create(&path).unwrap();
        let mut writer = ArrowWriter::try_new(out, batch.schema(), Some(properties)).unwrap();
        writer.write(batch).unwrap();
        writer.close().unwrap();
        path
    }

    fn ordering_of(path: &Path) -> Vec<(usize, bool)> {
        let (_, metadata) = parquet_metadata(path).unwrap();
        let ordering = parquet_ordering(&metadata);
        std::fs::remove_file(path).unwrap();
        ordering.iter().map(|o| (o.column, o.descending)).collect()
    }

    #[test]
    fn a_file_is_ordered_only_where_its_row_groups_are_in_order() {
        let sorted = [
            (Some(1), "x"),
            (Some(2), "a"),
            (Some(3), "b"),
            (Some(5), "a"),
        ];
        let declared = [(0, false), (1, false)];
        assert_eq!(
            ordering_of(&file("sorted", &sorted, &declared)),
            vec![(0, false), (1, false)]
        );
        // Row groups each sorted, but not in order: (3, 4) then (1, 2).
        let apart = [
            (Some(3), "a"),
            (Some(4), "a"),
            (Some(1), "a"),
            (Some(2), "a"),
        ];
        assert_eq!(ordering_of(&file("apart", &apart, &declared)), vec![]);
        // A value on both sides of a row-group boundary: only `a` is known
        // to keep equal rows together.
        let shared = [
            (Some(1), "a"),
            (Some(2), "b"),
            (Some(2), "a"),
            (Some(3), "a"),
        ];
        assert_eq!(
            ordering_of(&file("shared", &shared, &declared)),
            vec![(0, false)]
        );
        let descending = [
            (Some(9), "a"),
            (Some(7), "a"),
            (Some(5), "a"),
            (Some(1), "a"),
        ];
        assert_eq!(
            ordering_of(&file("descending", &descending, &[(0, true)])),
            vec![(0, true)]
        );
        assert_eq!(
            ordering_of(&file("declared-wrong", &descending, &[(0, false)])),
            vec![]
        );
        // NULLs in the leading column of several row groups, and no
        // declaration at all.
        let nulls = [(None, "a"), (Some(1), "a"), (Some(2), "a"), (Some(3), "a")];
        assert_eq!(ordering_of(&file("nulls", &nulls, &declared)), vec![]);
        assert_eq!(ordering_of(&file("undeclared", &sorted, &[])), vec![]);
    }

    /// A declared order is trusted up to its first float column.
    #[test]
    fn a_declared_order_stops_before_a_float_column() {
        let batch = RecordBatch::try_from_iter([
            (
                "a",
                Arc::new(Int64Array::from(vec![1, 2, 3, 4])) as ArrayRef,
            ),
            (
                "f",
                Arc::new(Float64Array::from(vec![f64::NAN, 0.0, -0.0, 1.0])) as ArrayRef,
            ),
        ])
        .unwrap();
        assert_eq!(
            ordering_of(&file_of("float-second", &batch, &[(0, false), (1, false)])),
            vec![(0, false)]
        );
        assert_eq!(
            ordering_of(&file_of("float-first", &batch, &[(1, false), (0, false)])),
            vec![]
        );
    }

    #[test]
    fn integer_ranges_span_every_row_group_and_need_all_their_statistics() {
        let spread = [
            (Some(7), "a"),
            (Some(5), "b"),
            (Some(20), "c"),
            (Some(9), "d"),
        ];
        let path = file("ranges", &spread, &[]);
        let (_, metadata) = parquet_metadata(&path).unwrap();
        // 5 to 20 over two row groups; strings have no range.
        assert_eq!(integer_ranges(&metadata), vec![Some((5, 20)), None]);
        std::fs::remove_file(&path).unwrap();
        // A row group of NULLs alone has no minimum: no bound at all.
        let nulls = [(Some(1), "a"), (Some(2), "b"), (None, "c"), (None, "d")];
        let path = file("range-nulls", &nulls, &[]);
        let (_, metadata) = parquet_metadata(&path).unwrap();
        assert_eq!(integer_ranges(&metadata), vec![None, None]);
        std::fs::remove_file(&path).unwrap();
    }
}
