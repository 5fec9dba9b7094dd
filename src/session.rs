//! A session: one run of highwater, from settings to report.
//!
//! It measures the process's baseline, sets up the memory budget, the
//! monitor and the spill directory, runs statements, and produces the run
//! report. The CLI, the demo and the tests all go through it.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;

use crate::analyze::Analysis;
use crate::config::{format_bytes, RunConfig};
use crate::error::{Error, Result};
use crate::exec::{pipeline, BoxedOperator, Progress, RunContext};
use crate::io::collect_sink::{CollectSink, Collected};
use crate::io::parquet_sink::ParquetSink;
use crate::io::table_printer::TablePrinter;
use crate::io::text_sink::{Destination, TextSink};
use crate::io::{OutputFormat, Sink};
use crate::memory::monitor::Monitor;
use crate::memory::{
    alloc, release_code_pages, resident_code_bytes, rss_bytes, rss_bytes_peak, MemoryBudget,
};
use crate::plan::expr::{Expr, Subquery};
use crate::plan::{optimizer, physical, LogicalPlan};
use crate::report::{ProgressBar, RunReport};
use crate::sql::catalog::{Catalog, Change};
use crate::sql::{self, Parsed, Statement};

/// Where a query's rows go.
#[derive(Debug, Clone)]
pub enum Output {
    /// The aligned table on stdout.
    Table,
    /// Every row on stdout, as CSV or NDJSON.
    Stdout(OutputFormat),
    File(PathBuf, OutputFormat),
}

pub struct Session {
    ctx: Arc<RunContext>,
    monitor: Monitor,
    started: Instant,
    files_written: Vec<PathBuf>,
    show_progress: bool,
    /// Tables and views the session's statements have created.
    catalog: Catalog,
}

impl Session {
    /// Start a session under `config.memory_bytes_max`.
    pub fn new(config: RunConfig) -> Result<Session> {
        // Argument parsing and start-up code is cold from here on; the
        // monitor would drop it under pressure anyway. Counted in the
        // baseline, its 2 to 3 MB sat beside the budget's allowance for code
        // paged in, which covers code as it comes back: 16MB did not start.
        // Now it does, with that allowance 1.5 MB larger, and runs
        // `count(DISTINCT)` over SF1 at 13.2 MB peak.
        release_code_pages();
        // Code is the allowance's to cover, not the baseline's: what faults
        // back in before RSS is read here depends on how the page cache
        // holds the binary. A binary just built or copied kept 0.8 MB of
        // code resident where one some minutes old kept 0.1 MB, its
        // baseline read 2.9 to 3.1 MB instead of 2.6, and 16MB refused to
        // start.
        let baseline = rss_bytes()
            .unwrap_or(0)
            .saturating_sub(resident_code_bytes());
        let budget = MemoryBudget::new(config.memory_bytes_max, baseline)?;
        Self::with_budget(config, budget)
    }

    /// A session with a given budget (tests use tiny ones).
    pub fn with_budget(config: RunConfig, budget: MemoryBudget) -> Result<Session> {
        let monitor = Monitor::start(budget.clone());
        let ctx = RunContext::new(config, budget)?;
        let catalog = Catalog::new(ctx.spill.dir());
        Ok(Session {
            catalog,
            ctx,
            monitor,
            started: Instant::now(),
            files_written: Vec::new(),
            show_progress: false,
        })
    }

    /// Show a progress bar on stderr when it is a terminal.
    pub fn with_progress(mut self, on: bool) -> Self {
        self.show_progress = on && std::io::stderr().is_terminal();
        self
    }

    pub fn context(&self) -> &Arc<RunContext> {
        &self.ctx
    }

    /// Plan one parsed statement against the session's tables and views.
    /// The catalog change it carries is made when it runs ([`Self::execute`]).
    pub fn plan_statement(&self, parsed: &Parsed) -> Result<Statement> {
        let mut catalog = self.catalog.clone();
        sql::plan(parsed, &self.ctx.config, &mut catalog)
    }

    /// Run one planned statement: a query's rows go to `output`, EXPLAIN
    /// prints, a write writes its file and a catalog change is made.
    pub fn execute(&mut self, statement: Statement, output: &Output) -> Result<()> {
        match statement {
            Statement::Query(plan) => self.run_plan(plan, output),
            Statement::Explain(plan) => {
                let plan = optimizer::optimize(plan)?;
                print!("{plan}");
                Ok(())
            }
            Statement::ExplainAnalyze(plan) => {
                print!("{}", self.explain_analyze(plan)?);
                Ok(())
            }
            Statement::Write {
                plan,
                path,
                format,
                zstd_level,
                then,
            } => {
                let level = zstd_level.unwrap_or(self.ctx.config.zstd_level);
                // A write with a catalog change fills a session table: an
                // internal file, not an output of the run.
                let table_file = !matches!(then, Change::None);
                if table_file {
                    if let Some(dir) = path.parent() {
                        std::fs::create_dir_all(dir).map_err(|e| Error::io("create", dir, e))?;
                    }
                }
                let output = Output::File(path, format);
                let written = if table_file {
                    self.run_to(plan, &output, level, true)
                } else {
                    self.run_to_file(plan, &output, level)
                };
                let written = match (&then, written) {
                    // A value that does not convert to its column's type
                    // fails inside the cast: say which table it was going to.
                    (Change::AddFile { table, .. }, Err(Error::Arrow(e))) => Err(Error::Execution(
                        format!("inserting into table '{table}': {e}"),
                    )),
                    (Change::CreateTable(t), Err(Error::Arrow(e))) => Err(Error::Execution(
                        format!("creating table '{}': {e}", t.name),
                    )),
                    (_, written) => written,
                };
                written?;
                self.commit(&then)
            }
            Statement::Catalog(change) => self.commit(&change),
        }
    }

    /// Make a statement's catalog change, deleting the files of tables it
    /// dropped or replaced: no statement planned after it can read them.
    fn commit(&mut self, change: &Change) -> Result<()> {
        for file in self.catalog.apply(change)? {
            std::fs::remove_file(&file).map_err(|e| Error::io("remove", &file, e))?;
        }
        Ok(())
    }

    /// Optimise and run one query into `output`.
    pub fn run_plan(&mut self, plan: LogicalPlan, output: &Output) -> Result<()> {
        self.run_to_file(plan, output, self.ctx.config.zstd_level)
    }

    /// Run into `output` and, if it is a file, count it as one of the run's.
    fn run_to_file(&mut self, plan: LogicalPlan, output: &Output, zstd_level: i32) -> Result<()> {
        self.run_to(plan, output, zstd_level, false)?;
        if let Output::File(path, _) = output {
            Progress::add(&self.ctx.progress.files_written, 1);
            self.record_file(path.clone());
        }
        Ok(())
    }

    /// Run into `output`; `session_table` if it is a session table's file,
    /// whose reads expect the column types the table was planned with.
    fn run_to(
        &mut self,
        plan: LogicalPlan,
        output: &Output,
        zstd_level: i32,
        session_table: bool,
    ) -> Result<()> {
        let plan = self.prepare(plan)?;
        let sorted_by = physical::ordering(&plan);
        let root = if session_table {
            physical::build(plan, &self.ctx)?
        } else {
            physical::build_for_writer(plan, &self.ctx)?
        };
        let schema = root.schema();
        let sink: Box<dyn Sink> = match output {
            Output::Table => Box::new(TablePrinter::new(schema, Box::new(std::io::stdout()))),
            Output::Stdout(format) => Box::new(TextSink::new(*format, Destination::stdout())?),
            Output::File(path, OutputFormat::Parquet) => Box::new(ParquetSink::create(
                path,
                schema,
                zstd_level,
                &self.ctx.budget,
                &self.ctx.spill,
                self.ctx.config.threads,
                &sorted_by,
            )?),
            Output::File(path, format) => {
                Box::new(TextSink::new(*format, Destination::file(path)?)?)
            }
        };
        self.drive(root, sink)
    }

    /// Run one query and return its rows. The rows are reserved while the
    /// query runs (a result larger than the budget fails cleanly) and belong
    /// to the caller afterwards.
    pub fn collect(&mut self, plan: LogicalPlan) -> Result<(SchemaRef, Vec<RecordBatch>)> {
        let root = physical::build(self.prepare(plan)?, &self.ctx)?;
        let schema = root.schema();
        let batches: Collected = Default::default();
        let reservation = self.ctx.budget.reservation("query result");
        let sink = Box::new(CollectSink::new(batches.clone(), reservation));
        self.drive(root, sink)?;
        let batches = std::mem::take(&mut *batches.lock().unwrap_or_else(|p| p.into_inner()));
        Ok((schema, batches))
    }

    /// Optimise `plan` and make it ready to build: its subqueries run, its
    /// input counted for the progress bar, memory settled.
    fn prepare(&mut self, plan: LogicalPlan) -> Result<LogicalPlan> {
        let plan = optimizer::optimize(plan)?;
        let plan = self.run_subqueries(plan)?;
        let total = scan_bytes(&plan);
        Progress::add(&self.ctx.progress.bytes_total, total);
        Monitor::settle(&self.ctx.budget);
        Ok(plan)
    }

    /// Run each scalar subquery of `plan` and put its value in its place,
    /// so that the plan's operators, and the Parquet row-group pruning,
    /// see a constant.
    fn run_subqueries(&mut self, plan: LogicalPlan) -> Result<LogicalPlan> {
        plan.map_exprs(&mut |e| e.map_subqueries(&mut |sub| self.subquery_value(sub)))
    }

    fn subquery_value(&mut self, sub: &Subquery) -> Result<Expr> {
        // Two rows are enough to know it is one too many.
        let plan = LogicalPlan::Limit {
            input: Box::new(sub.plan.clone()),
            skip: 0,
            fetch: Some(2),
        };
        let (_, batches) = self.collect(plan)?;
        let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
        if rows > 1 {
            return Err(Error::Execution(format!(
                "the scalar subquery {} returned more than one row",
                sub.text
            )));
        }
        let value = match batches.iter().find(|b| b.num_rows() == 1) {
            // A copy: a slice would keep the whole batch alive.
            Some(b) => arrow::compute::concat(&[b.column(0).as_ref()])?,
            None => arrow::array::new_null_array(&sub.data_type, 1),
        };
        Ok(Expr::Literal(value))
    }

    fn drive(&mut self, root: BoxedOperator, sink: Box<dyn Sink>) -> Result<()> {
        let bar = self
            .show_progress
            .then(|| ProgressBar::start(self.ctx.clone()));
        let result = pipeline::run(root, sink, &self.ctx);
        drop(bar);
        result
    }

    /// Run a SQL script: each query's rows go to `output`, EXPLAIN prints its
    /// plan. With a file output the script must hold exactly one query.
    pub fn run_sql(&mut self, sql_text: &str, output: &Output) -> Result<()> {
        // The whole script parses before anything runs. Each statement is
        // then planned just before it runs, because it may read what an
        // earlier one wrote: a session table, or a file from COPY.
        let statements = sql::parse(sql_text)?;
        if statements.is_empty() {
            return Err(Error::plan("no SQL statement given"));
        }
        let queries = statements.iter().filter(|s| s.is_query()).count();
        if matches!(output, Output::File(..)) && queries != 1 {
            return Err(Error::plan(format!(
                "-o writes one query's result, and the script has {queries} queries"
            )));
        }
        for parsed in &statements {
            let statement = self.plan_statement(parsed)?;
            self.execute(statement, output)?;
        }
        Ok(())
    }

    /// Run `plan`, discarding its rows, and return its plan with, on each
    /// operator's line, the rows it returned, the time spent in it (its
    /// inputs' included), the most it had reserved and what it spilled.
    pub fn explain_analyze(&mut self, plan: LogicalPlan) -> Result<String> {
        let plan = optimizer::optimize(plan)?;
        let plan = self.run_subqueries(plan)?;
        let text = plan.to_string();
        let total = scan_bytes(&plan);
        Progress::add(&self.ctx.progress.bytes_total, total);
        let analysis = Analysis::new();
        Monitor::settle(&self.ctx.budget);
        let root = physical::build_analyzed(plan, &self.ctx, &analysis)?;
        let started = Instant::now();
        self.drive(root, Box::new(Discard))?;
        let wall = started.elapsed().as_secs_f64();
        let nodes = analysis.stats_all();
        let mut out = String::new();
        for (line, stats) in text.lines().zip(&nodes) {
            let mut note = format!("rows={} time={:.3}s", stats.rows, stats.nanos as f64 / 1e9);
            if stats.reserved_bytes_peak > 0 {
                note.push_str(&format!(
                    " reserved<={}",
                    format_bytes(stats.reserved_bytes_peak as u64)
                ));
            }
            if stats.spill_files > 0 {
                note.push_str(&format!(
                    " spilled={} in {} files",
                    format_bytes(stats.spill_bytes),
                    stats.spill_files
                ));
            }
            for choice in &stats.notes {
                note.push(' ');
                note.push_str(choice);
            }
            out.push_str(&format!("{line}  [{note}]\n"));
        }
        out.push_str(&format!("total time {wall:.3}s\n"));
        Ok(out)
    }

    /// Note a file this session wrote, for the report.
    pub fn record_file(&mut self, path: PathBuf) {
        self.files_written.push(path);
    }

    /// The report of what this session did.
    pub fn report(&self) -> RunReport {
        let progress = &self.ctx.progress;
        RunReport {
            rows_read: Progress::get(&progress.rows_read),
            rows_written: Progress::get(&progress.rows_written),
            wall_seconds: self.started.elapsed().as_secs_f64(),
            rss_bytes_peak: rss_bytes_peak().max(self.monitor.rss_bytes_peak()),
            heap_bytes_peak: alloc::heap_bytes_peak().map(|b| b as u64),
            reserved_bytes_peak: self.ctx.budget.reserved_bytes_peak() as u64,
            memory_bytes_max: self.ctx.budget.limit_bytes(),
            spill_bytes: self.ctx.spill.spill_bytes(),
            spill_files: self.ctx.spill.spill_files(),
            files_written: self.files_written.clone(),
        }
    }
}

/// Input bytes the plan's scans will read, for the progress bar.
fn scan_bytes(plan: &LogicalPlan) -> u64 {
    match plan {
        LogicalPlan::Scan { source, .. } => source.bytes_total,
        LogicalPlan::Filter { input, .. }
        | LogicalPlan::Project { input, .. }
        | LogicalPlan::Limit { input, .. }
        | LogicalPlan::Sort { input, .. }
        | LogicalPlan::Aggregate { input, .. }
        | LogicalPlan::Window { input, .. } => scan_bytes(input),
        LogicalPlan::Union { inputs, .. } => inputs.iter().map(scan_bytes).sum(),
        LogicalPlan::Join { left, right, .. } => scan_bytes(left) + scan_bytes(right),
        LogicalPlan::Values { .. } => 0,
    }
}

/// `-o out.parquet` and `--format`: the output a user asked for.
pub fn output_for(path: Option<&Path>, format: Option<OutputFormat>) -> Result<Output> {
    match (path, format) {
        (Some(path), format) => {
            let format = format.or_else(|| OutputFormat::from_path(path)).ok_or_else(|| {
                Error::plan(format!(
                    "cannot tell the output format of '{}': use .parquet, .csv or .ndjson, or --format",
                    path.display()
                ))
            })?;
            Ok(Output::File(path.to_path_buf(), format))
        }
        (None, Some(OutputFormat::Parquet)) => Err(Error::plan(
            "Parquet output needs a file: use -o out.parquet",
        )),
        (None, Some(format)) => Ok(Output::Stdout(format)),
        (None, None) => Ok(Output::Table),
    }
}

impl RunReport {
    /// For messages: "peak RSS 61.2 MB of the 64.0 MB limit".
    pub fn memory_summary(&self) -> String {
        format!(
            "peak RSS {} of the {} limit",
            format_bytes(self.rss_bytes_peak),
            format_bytes(self.memory_bytes_max)
        )
    }
}

/// Where EXPLAIN ANALYZE's rows go: nowhere. The query still runs in full.
struct Discard;

impl Sink for Discard {
    fn write(&mut self, _batch: &RecordBatch) -> Result<()> {
        Ok(())
    }

    fn finish(self: Box<Self>) -> Result<()> {
        Ok(())
    }
}
