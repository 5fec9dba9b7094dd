//! Runs the `.slt` files under `tests/slt/` through the library, in process.
//!
//! Each file gets a fresh session. Rows are rendered as text: NULL as
//! `NULL`, the empty string as `(empty)`, everything else as arrow's display
//! renders it. Column types are `I` for integers, `R` for floats and
//! decimals, `T` for the rest.
//!
//! To fill in expected results after adding queries, run
//! `HIGHWATER_SLT_COMPLETE=1 cargo test --release --test sqllogictest`
//! and review the diff: the files are rewritten with what highwater returned.

use std::path::{Path, PathBuf};

use arrow::array::{Array, RecordBatch};
use arrow::datatypes::DataType;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use highwater::session::Output;
use highwater::sql::Statement;
use highwater::{Error, RunConfig, Session};
use sqllogictest::{DBOutput, DefaultColumnType, Runner};

struct Highwater {
    session: Session,
}

impl Highwater {
    fn new(temp_dir: &Path) -> Result<Self, Error> {
        let mut config = RunConfig::detect();
        config.temp_dir = temp_dir.to_path_buf();
        config.threads = 2;
        Ok(Highwater {
            session: Session::new(config)?,
        })
    }
}

impl sqllogictest::DB for Highwater {
    type Error = Error;
    type ColumnType = DefaultColumnType;

    fn run(&mut self, sql: &str) -> Result<DBOutput<Self::ColumnType>, Self::Error> {
        let mut output = DBOutput::StatementComplete(0);
        for parsed in highwater::sql::parse(sql)? {
            output = match self.session.plan_statement(&parsed)? {
                Statement::Query(plan) => {
                    let (schema, batches) = self.session.collect(plan)?;
                    let types = schema
                        .fields()
                        .iter()
                        .map(|f| column_type(f.data_type()))
                        .collect();
                    DBOutput::Rows {
                        types,
                        rows: render(&batches)?,
                    }
                }
                Statement::Explain(plan) => {
                    let plan = highwater::plan::optimizer::optimize(plan)?;
                    DBOutput::Rows {
                        types: vec![DefaultColumnType::Text],
                        rows: plan
                            .to_string()
                            .lines()
                            .map(|l| vec![l.trim_end().to_string()])
                            .collect(),
                    }
                }
                Statement::ExplainAnalyze(plan) => DBOutput::Rows {
                    types: vec![DefaultColumnType::Text],
                    rows: self
                        .session
                        .explain_analyze(plan)?
                        .lines()
                        .map(|l| vec![l.trim_end().to_string()])
                        .collect(),
                },
                other => {
                    self.session.execute(other, &Output::Table)?;
                    DBOutput::StatementComplete(0)
                }
            };
        }
        Ok(output)
    }

    fn engine_name(&self) -> &str {
        "highwater"
    }
}

fn column_type(t: &DataType) -> DefaultColumnType {
    match t {
        t if t.is_integer() => DefaultColumnType::Integer,
        t if t.is_floating() => DefaultColumnType::FloatingPoint,
        DataType::Decimal128(..) | DataType::Decimal256(..) => DefaultColumnType::FloatingPoint,
        _ => DefaultColumnType::Text,
    }
}

fn render(batches: &[RecordBatch]) -> Result<Vec<Vec<String>>, Error> {
    let options = FormatOptions::default().with_null("NULL");
    let mut rows = Vec::new();
    for batch in batches {
        let formatters = batch
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &options))
            .collect::<Result<Vec<_>, _>>()?;
        for r in 0..batch.num_rows() {
            rows.push(
                formatters
                    .iter()
                    .zip(batch.columns())
                    .map(|(f, c)| {
                        let text = f.value(r).to_string();
                        if text.is_empty() && !c.is_null(r) {
                            "(empty)".to_string()
                        } else {
                            text
                        }
                    })
                    .collect(),
            );
        }
    }
    Ok(rows)
}

fn slt_files() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/slt");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("tests/slt exists")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "slt"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no .slt files in {}", dir.display());
    files
}

#[test]
fn slt() {
    let complete = std::env::var_os("HIGHWATER_SLT_COMPLETE").is_some();
    let temp = std::env::temp_dir().join(format!("hw-slt-{}", std::process::id()));
    std::fs::create_dir_all(&temp).unwrap();
    // Paths in the files are relative to the package root.
    std::env::set_current_dir(env!("CARGO_MANIFEST_DIR")).unwrap();
    let mut failures = Vec::new();
    for file in slt_files() {
        let temp = temp.clone();
        let mut runner = Runner::new(move || std::future::ready(Highwater::new(&temp)));
        if complete {
            futures::executor::block_on(runner.update_test_file(
                &file,
                " ",
                sqllogictest::default_validator,
                sqllogictest::default_normalizer,
                sqllogictest::default_column_validator,
            ))
            .unwrap_or_else(|e| panic!("completing {}: {e}", file.display()));
        } else if let Err(e) = runner.run_file(&file) {
            failures.push(format!("{}: {}", file.display(), e.display(false)));
        }
    }
    let _ = std::fs::remove_dir_all(&temp);
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
