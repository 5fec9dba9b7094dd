//! Helpers for tests that run the `highwater` binary as a user would.

#![allow(dead_code)]

use std::fs::File;

use arrow::array::RecordBatch;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    /// The child's peak RSS as the kernel counted it (wait4's ru_maxrss).
    pub rss_bytes_peak: u64,
}

impl Run {
    pub fn ok(&self) -> &Self {
        assert_eq!(self.code, 0, "highwater failed:\n{}", self.stderr);
        self
    }

    /// Assert the peak RSS stayed under `limit` ("64MB"), and print it so
    /// that `--nocapture` shows the figures.
    pub fn assert_rss_under(&self, limit: &str) -> &Self {
        let max = parse_size(limit);
        eprintln!(
            "peak RSS {:.1} MB under --memory-limit {limit}",
            self.rss_bytes_peak as f64 / 1e6
        );
        assert!(
            self.rss_bytes_peak < max,
            "peak RSS {} over the {limit} limit",
            self.rss_bytes_peak
        );
        self
    }
}

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_highwater")
}

/// A scratch directory for one test, empty at the start.
pub fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Run the binary with `args`, reading its peak RSS from the OS.
pub fn run(args: &[&str]) -> Run {
    run_in(args, None)
}

/// Set in the environment of a test binary re-run as a [`launcher`]: the
/// directory holding the arguments and receiving the results.
const LAUNCH_DIR: &str = "HIGHWATER_TEST_LAUNCH_DIR";

/// Run the binary through a fresh copy of this test binary (see [`launcher`]).
///
/// Why not spawn it directly: Rust spawns children with `vfork`, and at
/// `exec` Linux folds the parent's high-water RSS into the child's
/// `ru_maxrss`. A test process that has read a Parquet file would lend its
/// own peak to every child it measures. A freshly exec'd launcher is small,
/// so what `wait4` reports for its child is the child's own peak.
pub fn run_in(args: &[&str], temp_dir: Option<&Path>) -> Run {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "launch-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    // NUL-separated: SQL arguments may hold newlines.
    std::fs::write(dir.join("args"), args.join("\0")).unwrap();
    let mut command = Command::new(std::env::current_exe().unwrap());
    command
        .args(["launcher", "--exact", "--quiet", "--test-threads=1"])
        .env(LAUNCH_DIR, &dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    if let Some(temp) = temp_dir {
        command.env("HIGHWATER_TEMP_DIR", temp);
    }
    let status = command.status().expect("spawning the test launcher");
    assert!(status.success(), "the test launcher failed: {status}");
    let read = |name: &str| std::fs::read_to_string(dir.join(name)).unwrap();
    let result = read("result");
    let (code, rss) = result.trim().split_once(' ').expect("launcher result");
    let run = Run {
        code: code.parse().unwrap(),
        stdout: read("stdout"),
        stderr: read("stderr"),
        rss_bytes_peak: rss.parse().unwrap(),
    };
    let _ = std::fs::remove_dir_all(&dir);
    run
}

/// The body of the `launcher` test that every test file using [`run`]
/// declares.
///
/// Re-run by [`run_in`], it spawns the binary as asked, waits for it with
/// `wait4`, and writes back its exit code, peak RSS and output. Run as an
/// ordinary test, it checks that path: `--version` must measure as the small
/// process it is, not as this test process.
pub fn launcher() {
    let Some(dir) = std::env::var_os(LAUNCH_DIR).map(PathBuf::from) else {
        let r = run(&["--version"]);
        r.ok();
        assert!(r.stdout.starts_with("highwater "), "{}", r.stdout);
        assert!(
            r.rss_bytes_peak > 0 && r.rss_bytes_peak < 24 << 20,
            "--version measured at {} bytes",
            r.rss_bytes_peak
        );
        return;
    };
    let args = std::fs::read_to_string(dir.join("args")).unwrap();
    let args: Vec<&str> = if args.is_empty() {
        Vec::new()
    } else {
        args.split('\0').collect()
    };
    // wait4 below reaps it; clippy cannot see that.
    #[allow(clippy::zombie_processes)]
    let child = Command::new(bin())
        .args(&args)
        .stdin(Stdio::null())
        .stdout(File::create(dir.join("stdout")).unwrap())
        .stderr(File::create(dir.join("stderr")).unwrap())
        .env_remove("HIGHWATER_MEMORY_LIMIT")
        .env_remove(LAUNCH_DIR)
        .spawn()
        .expect("spawning highwater");
    let (code, rss) = wait_with_rusage(child.id() as i32);
    std::fs::write(dir.join("result"), format!("{code} {rss}")).unwrap();
}

/// wait4 on one child: its exit code (128+signal if killed) and peak RSS.
pub fn wait_with_rusage(pid: i32) -> (i32, u64) {
    let mut status = 0;
    // SAFETY: wait4 writes into the two out-parameters only.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let waited = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(waited, pid, "wait4 failed");
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        128 + libc::WTERMSIG(status)
    };
    (code, usage.ru_maxrss as u64 * 1024)
}

/// TPC-H lineitem at scale 0.1 (600,572 rows), generated once per test
/// binary.
pub fn lineitem_sf01() -> &'static Path {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| generate_lineitem("tpch-sf0.1", "0.1"))
}

/// TPC-H orders at scale 0.1 (150,000 rows).
pub fn orders_sf01() -> &'static Path {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| generate("tpch-sf0.1", "0.1", "orders"))
}

/// TPC-H orders at scale 1 (1,500,000 rows).
pub fn orders_sf1() -> &'static Path {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| generate("tpch-sf1", "1", "orders"))
}

fn generate_lineitem(dir_name: &str, scale: &str) -> PathBuf {
    generate(dir_name, scale, "lineitem")
}

fn generate(dir_name: &str, scale: &str, table: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(dir_name);
    let path = dir.join(format!("{table}.parquet"));
    if !path.exists() {
        run(&[
            "gen",
            "tpch",
            "--scale",
            scale,
            "--tables",
            table,
            "-o",
            dir.to_str().unwrap(),
            "--report",
            "none",
        ])
        .ok();
    }
    path
}

/// TPC-H lineitem at scale 1 (6,001,215 rows, about 150 MB of Parquet and
/// 800 MB as Arrow in memory), generated once per test binary.
pub fn lineitem_sf1() -> &'static Path {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| generate_lineitem("tpch-sf1", "1"))
}

/// Run `sql` into `out` under `limit`, asserting success and peak RSS
/// under the limit; returns the run and its JSON report.
pub fn sql_to_file(sql: &str, out: &Path, limit: &str) -> (Run, serde_json::Value) {
    let r = run(&[
        "sql",
        sql,
        "-o",
        out.to_str().unwrap(),
        "--memory-limit",
        limit,
        "--report",
        "json",
    ]);
    r.ok().assert_rss_under(limit);
    let report = serde_json::from_str(r.stderr.trim()).unwrap();
    (r, report)
}

/// Start `sql` into `out` at 64MB with spill files under `temp`, send
/// SIGINT once `ready` says so, and check that it stops with 130 and leaves
/// nothing in `out`'s directory or in `temp`.
pub fn interrupt_when(sql: &str, out: &Path, temp: &Path, ready: impl Fn() -> bool) {
    let mut child = Command::new(bin())
        .args([
            "sql",
            sql,
            "-o",
            out.to_str().unwrap(),
            "--memory-limit",
            "64MB",
        ])
        .env("HIGHWATER_TEMP_DIR", temp)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    while !ready() && started.elapsed().as_secs() < 60 {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(ready(), "the run never reached the point to interrupt");
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130), "{status}");
    let dir = out.parent().unwrap();
    assert!(entries(dir).is_empty(), "left behind: {:?}", entries(dir));
    assert!(
        entries(temp).is_empty(),
        "spill dir left: {:?}",
        entries(temp)
    );
}

/// The batches of a Parquet file, read with the parquet crate directly.
pub fn batches(path: &Path) -> impl Iterator<Item = RecordBatch> {
    ParquetRecordBatchReaderBuilder::try_new(File::open(path).unwrap())
        .unwrap()
        .with_batch_size(65536)
        .build()
        .unwrap()
        .map(|b| b.unwrap())
}

/// The names in `dir`, sorted.
pub fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

pub fn parse_size(text: &str) -> u64 {
    let digits: u64 = text.trim_end_matches("MB").parse().unwrap();
    digits * 1000 * 1000
}
