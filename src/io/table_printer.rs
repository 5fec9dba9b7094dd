//! The terminal table: the first and last rows of a result, aligned, with the
//! row count, as the duckdb CLI shows them.
//!
//! # Memory
//!
//! Bounded: it keeps at most [`SHOWN_ROWS_MAX`]/2 rows from the start and as
//! many from the end (as slices of the batches they came in, compacted when
//! kept), whatever the result's size. Reserves nothing: the bound is a few
//! dozen rows.

use std::collections::VecDeque;
use std::io::Write;

use arrow::array::RecordBatch;
use arrow::compute::concat_batches;
use arrow::datatypes::SchemaRef;
use arrow::util::display::{ArrayFormatter, FormatOptions};

use crate::error::{Error, Result};
use crate::io::Sink;
use crate::plan::expr::sql_type_name;

/// At most this many rows are shown: half from the start, half from the end.
pub const SHOWN_ROWS_MAX: usize = 40;
/// Longer values are cut, so one wide value cannot blow up the table.
const CELL_CHARS_MAX: usize = 40;

pub struct TablePrinter {
    schema: SchemaRef,
    head: Vec<RecordBatch>,
    head_rows: usize,
    tail: VecDeque<RecordBatch>,
    tail_rows: usize,
    rows_total: u64,
    out: Box<dyn Write + Send>,
}

impl TablePrinter {
    pub fn new(schema: SchemaRef, out: Box<dyn Write + Send>) -> Self {
        TablePrinter {
            schema,
            head: Vec::new(),
            head_rows: 0,
            tail: VecDeque::new(),
            tail_rows: 0,
            rows_total: 0,
            out,
        }
    }

    fn render(&self) -> Result<String> {
        let half = SHOWN_ROWS_MAX / 2;
        let head = concat_batches(&self.schema, &self.head)?;
        let tail = concat_batches(&self.schema, self.tail.iter())?;
        let tail = tail.slice(
            tail.num_rows().saturating_sub(half),
            tail.num_rows().min(half),
        );
        let columns = self.schema.fields().len();
        let mut cells: Vec<Vec<String>> = vec![Vec::new(); columns];
        let options = FormatOptions::default().with_null("NULL");
        for batch in [&head, &tail] {
            for (c, column) in batch.columns().iter().enumerate() {
                let formatter = ArrayFormatter::try_new(column.as_ref(), &options)?;
                for r in 0..batch.num_rows() {
                    cells[c].push(cut(&formatter.value(r).to_string()));
                }
            }
        }
        let names: Vec<String> = self.schema.fields().iter().map(|f| cut(f.name())).collect();
        let types: Vec<String> = self
            .schema
            .fields()
            .iter()
            .map(|f| sql_type_name(f.data_type()).to_lowercase())
            .collect();
        let widths: Vec<usize> = (0..columns)
            .map(|c| {
                cells[c]
                    .iter()
                    .map(|v| v.chars().count())
                    .chain([names[c].chars().count(), types[c].chars().count(), 1])
                    .max()
                    .unwrap_or(1)
            })
            .collect();
        let rule = |left: &str, mid: &str, right: &str| {
            let parts: Vec<String> = widths.iter().map(|w| "─".repeat(w + 2)).collect();
            format!("{left}{}{right}\n", parts.join(mid))
        };
        let row = |values: &[String]| {
            let parts: Vec<String> = values
                .iter()
                .zip(&widths)
                .map(|(v, w)| format!(" {v}{} ", " ".repeat(w - v.chars().count())))
                .collect();
            format!("│{}│\n", parts.join("│"))
        };
        let mut text = rule("┌", "┬", "┐");
        text.push_str(&row(&names));
        text.push_str(&row(&types));
        text.push_str(&rule("├", "┼", "┤"));
        let shown_head = head.num_rows();
        let at = |r: usize| {
            (0..columns)
                .map(|c| cells[c][r].clone())
                .collect::<Vec<_>>()
        };
        for r in 0..shown_head {
            text.push_str(&row(&at(r)));
        }
        let shown = shown_head + tail.num_rows();
        if (shown as u64) < self.rows_total {
            let dots: Vec<String> = (0..columns).map(|_| "·".to_string()).collect();
            text.push_str(&row(&dots));
        }
        for r in shown_head..shown {
            text.push_str(&row(&at(r)));
        }
        text.push_str(&rule("└", "┴", "┘"));
        let plural = |n: u64, word: &str| format!("{n} {word}{}", if n == 1 { "" } else { "s" });
        if (shown as u64) < self.rows_total {
            text.push_str(&format!(
                "{} ({shown} shown), {}\n",
                plural(self.rows_total, "row"),
                plural(columns as u64, "column")
            ));
        } else {
            text.push_str(&format!(
                "{}, {}\n",
                plural(self.rows_total, "row"),
                plural(columns as u64, "column")
            ));
        }
        Ok(text)
    }
}

fn cut(value: &str) -> String {
    let one_line = value.replace(['\n', '\r'], " ");
    if one_line.chars().count() <= CELL_CHARS_MAX {
        one_line
    } else {
        let mut s: String = one_line.chars().take(CELL_CHARS_MAX - 1).collect();
        s.push('…');
        s
    }
}

impl Sink for TablePrinter {
    fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        let half = SHOWN_ROWS_MAX / 2;
        self.rows_total += batch.num_rows() as u64;
        let mut batch = batch.clone();
        if self.head_rows < half {
            let take = (half - self.head_rows).min(batch.num_rows());
            // Copy the few kept rows out, so that the whole input batch is
            // not held alive by a slice of it.
            self.head
                .push(concat_batches(&self.schema, [&batch.slice(0, take)])?);
            self.head_rows += take;
            batch = batch.slice(take, batch.num_rows() - take);
        }
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let keep = batch.num_rows().min(half);
        let kept = batch.slice(batch.num_rows() - keep, keep);
        self.tail.push_back(concat_batches(&self.schema, [&kept])?);
        self.tail_rows += keep;
        while self.tail_rows - self.tail.front().map_or(0, |b| b.num_rows()) >= half {
            let dropped = self.tail.pop_front().expect("tail is not empty");
            self.tail_rows -= dropped.num_rows();
        }
        Ok(())
    }

    fn finish(mut self: Box<Self>) -> Result<()> {
        let text = self.render()?;
        self.out
            .write_all(text.as_bytes())
            .and_then(|_| self.out.flush())
            .map_err(|e| Error::io("write", "stdout", e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::Int64Array;
    use arrow::datatypes::{DataType, Field, Schema};
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn print(rows: i64, batch_rows: i64) -> String {
        let schema = Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, false)]));
        let out = Shared::default();
        let mut printer = Box::new(TablePrinter::new(schema.clone(), Box::new(out.clone())));
        let mut start = 0;
        while start < rows {
            let end = (start + batch_rows).min(rows);
            let batch = RecordBatch::try_new(
                schema.clone(),
                vec![Arc::new(Int64Array::from_iter_values(start..end))],
            )
            .unwrap();
            printer.write(&batch).unwrap();
            start = end;
        }
        printer.finish().unwrap();
        let bytes = out.0.lock().unwrap().clone();
        String::from_utf8(bytes).unwrap()
    }

    #[test]
    fn a_long_result_shows_its_first_and_last_rows_and_the_count() {
        let text = print(1000, 7);
        assert!(text.contains("1000 rows (40 shown), 1 column"), "{text}");
        assert!(
            text.contains("│ 19 ") && text.contains("│ 980 ") && text.contains("│ 999 "),
            "{text}"
        );
        assert!(
            !text.contains("│ 20 ") && !text.contains("│ 979 "),
            "{text}"
        );
        assert!(text.contains('·'));
    }

    #[test]
    fn a_short_result_shows_every_row_once() {
        let text = print(3, 2);
        assert!(text.contains("3 rows, 1 column"), "{text}");
        assert_eq!(text.matches("│ 1 ").count(), 1, "{text}");
        assert!(!text.contains('·'));
    }

    #[test]
    fn an_empty_result_says_zero_rows() {
        assert!(print(0, 1).contains("0 rows, 1 column"));
    }
}
