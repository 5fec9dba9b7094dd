//! The `highwater` binary: argument parsing and error reporting only. The
//! work is in the library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use highwater::config::{parse_byte_size, RunConfig};
use highwater::io::OutputFormat;
use highwater::memory::alloc::CountingAllocator;
use highwater::session::output_for;
use highwater::{Error, Session};

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

const MEMORY_HELP: &str = "The ceiling on the process's peak RSS: 512MB, 2GiB or 50% (of the \
machine's memory). KB/MB/GB are powers of 1000, KiB/MiB/GiB of 1024. Default: 80% of the smaller \
of the cgroup memory limit (v2 memory.max, v1 memory.limit_in_bytes) and physical RAM";

#[derive(Parser)]
#[command(
    name = "highwater",
    version,
    about = "ETL over Parquet, CSV and NDJSON under a hard memory ceiling"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,

    #[arg(long, global = true, env = "HIGHWATER_MEMORY_LIMIT", help = MEMORY_HELP)]
    memory_limit: Option<String>,

    /// Worker threads (default: the CPUs this process may use)
    #[arg(long, global = true, env = "HIGHWATER_THREADS")]
    threads: Option<usize>,

    /// Rows per batch between operators (default: 8192, fewer under a
    /// memory limit below 128MB, down to 1024 at 16MB)
    #[arg(long, global = true)]
    batch_rows: Option<usize>,

    /// Where the per-run spill directory is made (default: the system temp dir)
    #[arg(long, global = true, env = "HIGHWATER_TEMP_DIR")]
    temp_dir: Option<PathBuf>,

    /// The most spill files one merge pass reads at once
    #[arg(long, global = true, default_value_t = 64)]
    merge_fan_in: usize,

    /// The most bytes the run may spill, e.g. 20GB (default: no cap)
    #[arg(long, global = true)]
    spill_limit: Option<String>,

    /// The run report on stderr at the end
    #[arg(long, global = true, value_enum, default_value_t = ReportKind::Text)]
    report: ReportKind,
}

#[derive(Clone, Copy, ValueEnum)]
enum ReportKind {
    Text,
    Json,
    None,
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Parquet,
    Csv,
    Ndjson,
}

#[derive(Subcommand)]
enum Command {
    /// Run SQL: print the result, or write it with -o
    Sql {
        /// The SQL text (or use -f)
        sql: Option<String>,
        /// Run the statements in this file
        #[arg(short = 'f', long = "file")]
        file: Option<PathBuf>,
        /// Write the result here (format from the extension or --format)
        #[arg(short = 'o', long = "output")]
        output: Option<PathBuf>,
        /// Output format; without -o, csv or ndjson goes to stdout in full
        #[arg(long, value_enum)]
        format: Option<Format>,
        /// ZSTD level of Parquet output
        #[arg(long, default_value_t = 1)]
        zstd_level: i32,
    },
    /// Show a file's schema, rows, row groups, sizes, compression and statistics
    Inspect { file: PathBuf },
    /// Generate benchmark data
    Gen {
        #[command(subcommand)]
        kind: GenKind,
    },
    /// Generate demo data several times larger than the memory limit and run a job on it
    Demo {
        /// Where the demo's data and output go
        #[arg(long, default_value = "highwater-demo")]
        dir: PathBuf,
    },
}

#[derive(Subcommand)]
enum GenKind {
    /// TPC-H tables as ZSTD Parquet, one file per table
    Tpch {
        #[arg(long, default_value_t = 1.0)]
        scale: f64,
        #[arg(short = 'o', long = "output")]
        output: PathBuf,
        /// Only these tables (comma-separated)
        #[arg(long, value_delimiter = ',')]
        tables: Vec<String>,
    },
}

fn main() -> ExitCode {
    highwater::memory::alloc::mark_installed();
    let cli = Cli::parse();
    highwater::signal::install();
    let mut sql_text = None;
    match run(cli, &mut sql_text) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // A closed stdout (piping into `head`) is the reader's choice, not
            // an error to report.
            if let Error::Io { source, .. } = &e {
                if source.kind() == std::io::ErrorKind::BrokenPipe {
                    return ExitCode::SUCCESS;
                }
            }
            eprintln!("highwater: error: {e}");
            if let (Some(location), Some(sql)) = (e.sql_location(), sql_text.as_deref()) {
                if let Some(shown) = highwater::sql::caret(sql, location) {
                    eprintln!("{shown}");
                }
            }
            ExitCode::from(e.exit_code().clamp(1, 255) as u8)
        }
    }
}

fn config_from(cli: &Cli) -> Result<RunConfig, Error> {
    let mut config = RunConfig::detect();
    if let Some(limit) = &cli.memory_limit {
        config.memory_bytes_max = parse_byte_size(limit)?;
    }
    if let Some(threads) = cli.threads {
        config.threads = threads.max(1);
    }
    config.batch_rows = match cli.batch_rows {
        Some(0) => return Err(Error::plan("--batch-rows must be at least 1")),
        Some(rows) => rows,
        None => default_batch_rows(config.memory_bytes_max),
    };
    if let Some(dir) = &cli.temp_dir {
        config.temp_dir = dir.clone();
    }
    if cli.merge_fan_in < 2 {
        return Err(Error::plan("--merge-fan-in must be at least 2"));
    }
    config.merge_fan_in_max = cli.merge_fan_in;
    if let Some(cap) = &cli.spill_limit {
        config.spill_bytes_max = parse_byte_size(cap)?;
    }
    Ok(config)
}

/// Under a small limit a batch is a real share of it: an operator may hold
/// a few copies of one batch at once (decoded, filtered, keyed), all
/// unreserved. One row per 16 KB of limit keeps that a few percent.
fn default_batch_rows(memory_bytes_max: u64) -> usize {
    (memory_bytes_max / (16 << 10)).clamp(1024, 8192) as usize
}

fn run(cli: Cli, sql_text: &mut Option<String>) -> Result<(), Error> {
    let mut config = config_from(&cli)?;
    if matches!(cli.command, Command::Demo { .. }) && cli.memory_limit.is_none() {
        config.memory_bytes_max = parse_byte_size(highwater::cli::demo::DEMO_MEMORY_LIMIT)?;
    }
    highwater::memory::tune_allocator(config.threads, config.memory_bytes_max);
    if let Command::Inspect { file } = &cli.command {
        print!("{}", highwater::cli::inspect::inspect(file, &config)?);
        return Ok(());
    }
    let mut session = Session::new(config.clone())?.with_progress(true);
    match &cli.command {
        Command::Sql {
            sql,
            file,
            output,
            format,
            zstd_level,
        } => {
            let text = match (sql, file) {
                (Some(s), None) => s.clone(),
                (None, Some(f)) => {
                    std::fs::read_to_string(f).map_err(|e| Error::io("read", f, e))?
                }
                (Some(_), Some(_)) => {
                    return Err(Error::plan("give SQL text or -f FILE, not both"))
                }
                (None, None) => return Err(Error::plan("give SQL text or -f FILE")),
            };
            *sql_text = Some(text.clone());
            let format = format.map(|f| match f {
                Format::Parquet => OutputFormat::Parquet,
                Format::Csv => OutputFormat::Csv,
                Format::Ndjson => OutputFormat::Ndjson,
            });
            let target = output_for(output.as_deref(), format)?;
            drop(session);
            config.zstd_level = *zstd_level;
            session = Session::new(config)?.with_progress(true);
            session.run_sql(&text, &target)?;
        }
        Command::Gen {
            kind:
                GenKind::Tpch {
                    scale,
                    output,
                    tables,
                },
        } => highwater::cli::gen::tpch(&mut session, *scale, output, tables)?,
        Command::Demo { dir } => highwater::cli::demo::demo(&mut session, dir)?,
        Command::Inspect { .. } => unreachable!("handled above"),
    }
    let report = session.report();
    match cli.report {
        ReportKind::Text => eprintln!("{}", report.to_text()),
        ReportKind::Json => eprintln!("{}", report.to_json()),
        ReportKind::None => {}
    }
    Ok(())
}
