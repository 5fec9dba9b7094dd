//! Spill files: compressed Arrow IPC in a per-run directory.
//!
//! Each run creates `highwater-<pid>-<nanos>` under `--temp-dir` and holds an
//! exclusive `flock` on a lock file inside it for as long as it lives. The
//! kernel drops that lock when the process dies, however it dies, so at the
//! next start any `highwater-*` directory whose lock can be taken belongs to a
//! dead run and is removed. A run makes its directory under a pending name
//! (`.highwater-pending-*`) and renames it only once the lock is held, so a
//! run starting beside it never sees the directory unlocked and takes it for
//! dead; a pending directory is removed by the sweep only when it is older
//! than [`PENDING_STALE_SECS`], its run having died before the rename. Only
//! names of that exact form are swept, never anything else in the temp dir.
//! The directory is also removed when the [`SpillManager`] is dropped: on
//! success, on error, and on Ctrl-C/SIGTERM (which unwind through the
//! normal error path).
//!
//! Every spill file of batches is an Arrow IPC stream compressed with LZ4
//! (the fastest of the codecs IPC offers; spill files live seconds, so ratio
//! matters less than speed), its fixed-width columns in byte planes, which
//! LZ4 passes several times faster and packs tighter ([`planes`]). A
//! [`BlobFile`] holds bytes that are compressed already (the Parquet
//! writer's pages). All bytes written count against `--spill-limit`.

use std::fs::{self, File};
use std::io::{BufReader, BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, GenericByteViewArray, RecordBatch, RecordBatchOptions,
};
use arrow::datatypes::{ByteViewType, DataType, SchemaRef};
use arrow::ipc::reader::StreamReader;
use arrow::ipc::writer::{IpcWriteOptions, StreamWriter};
use arrow::ipc::CompressionType;

mod planes;

use crate::analyze;
use crate::config::format_bytes;
use crate::error::{Error, Result};

const DIR_PREFIX: &str = "highwater-";
const LOCK_FILE: &str = ".lock";
const PENDING_PREFIX: &str = ".highwater-pending-";
/// A pending directory older than this belongs to a run that died while
/// creating it.
const PENDING_STALE_SECS: u64 = 600;
/// Buffer between the IPC encoder and the file, and between file and decoder.
/// Small, because a merge holds one per run it reads; reads and writes of
/// this size already cost little more than a copy from the page cache.
pub const IO_BUFFER_BYTES: usize = 64 * 1024;

/// The run's spill directory and the accounting of what is written to it.
#[derive(Clone)]
pub struct SpillManager {
    shared: Arc<Shared>,
}

struct Shared {
    dir: PathBuf,
    /// Held for the life of the run; see the module doc.
    _lock: File,
    spill_bytes_max: u64,
    spill_bytes: AtomicU64,
    spill_files: AtomicU64,
    next_file: AtomicU64,
}

impl SpillManager {
    /// Remove dead runs' directories under `temp_dir`, then create this run's.
    pub fn create(temp_dir: &Path, spill_bytes_max: u64) -> Result<SpillManager> {
        fs::create_dir_all(temp_dir).map_err(|e| Error::io("create temp dir", temp_dir, e))?;
        remove_stale(temp_dir)?;
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let name = format!("{}-{nanos}", std::process::id());
        let pending = temp_dir.join(format!("{PENDING_PREFIX}{name}"));
        fs::create_dir(&pending).map_err(|e| Error::io("create spill dir", &pending, e))?;
        let lock_path = pending.join(LOCK_FILE);
        let lock = File::create(&lock_path).map_err(|e| Error::io("create", &lock_path, e))?;
        if !try_lock(&lock) {
            return Err(Error::Internal(format!(
                "a fresh spill directory {} is locked by someone else",
                pending.display()
            )));
        }
        // The lock stays with the open file across the rename.
        let dir = temp_dir.join(format!("{DIR_PREFIX}{name}"));
        fs::rename(&pending, &dir).map_err(|e| Error::io("rename spill dir", &pending, e))?;
        Ok(SpillManager {
            shared: Arc::new(Shared {
                dir,
                _lock: lock,
                spill_bytes_max,
                spill_bytes: AtomicU64::new(0),
                spill_files: AtomicU64::new(0),
                next_file: AtomicU64::new(0),
            }),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    /// Total bytes written to spill files in this run.
    pub fn spill_bytes(&self) -> u64 {
        self.shared.spill_bytes.load(Ordering::Relaxed)
    }

    pub fn spill_files(&self) -> u64 {
        self.shared.spill_files.load(Ordering::Relaxed)
    }

    /// Start a new file of raw blobs (not Arrow IPC: bytes that are
    /// compressed already, such as Parquet pages), read back by where they
    /// were put. It counts like any spill file.
    pub fn blob_file(&self, purpose: &str) -> Result<BlobFile> {
        let (path, file, node) = self.create_file(purpose, "blobs")?;
        Ok(BlobFile {
            shared: self.shared.clone(),
            file,
            path,
            end: AtomicU64::new(0),
            node,
        })
    }

    /// Create the run's next spill file, named for `purpose`, and count it
    /// (to the operator being run too, in EXPLAIN ANALYZE, which is
    /// returned).
    fn create_file(
        &self,
        purpose: &str,
        extension: &str,
    ) -> Result<(PathBuf, File, Option<analyze::Node>)> {
        let n = self.shared.next_file.fetch_add(1, Ordering::Relaxed);
        let path = self
            .shared
            .dir
            .join(format!("{purpose}-{n:06}.{extension}"));
        let file = File::options()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| Error::io("create spill file", &path, e))?;
        self.shared.spill_files.fetch_add(1, Ordering::Relaxed);
        let node = analyze::current();
        if let Some(node) = &node {
            node.spilled(0, 1);
        }
        Ok((path, file, node))
    }

    /// Start a new spill file for batches of `schema`; `purpose` goes into
    /// its name, which helps when looking at a directory mid-run.
    pub fn writer(&self, schema: SchemaRef, purpose: &str) -> Result<SpillWriter> {
        let (path, file, node) = self.create_file(purpose, "arrows")?;
        let options = IpcWriteOptions::default()
            .try_with_compression(Some(CompressionType::LZ4_FRAME))
            .map_err(Error::from)?;
        let counted = CountingWrite {
            inner: BufWriter::with_capacity(IO_BUFFER_BYTES, file),
            bytes: 0,
        };
        let writer = StreamWriter::try_new_with_options(counted, &schema, options)
            .map_err(|e| Error::from(e).reading(&path))?;
        Ok(SpillWriter {
            shared: self.shared.clone(),
            file: Some(SpillFile {
                path,
                schema,
                rows: 0,
                bytes: 0,
            }),
            writer: Some(writer),
            accounted: 0,
            node,
        })
    }
}

impl Shared {
    /// Count `written` more bytes against the run's spill total and
    /// `--spill-limit`, and to the operator `node` in EXPLAIN ANALYZE.
    fn account(&self, written: u64, node: Option<&analyze::Node>) -> Result<()> {
        if let Some(node) = node {
            node.spilled(written, 0);
        }
        let total = self.spill_bytes.fetch_add(written, Ordering::Relaxed) + written;
        if total > self.spill_bytes_max {
            return Err(Error::ResourcesExhausted(format!(
                "spill limit {} reached (--spill-limit)",
                format_bytes(self.spill_bytes_max)
            )));
        }
        Ok(())
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        // Best effort: if removal fails, the next run's stale sweep retries.
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// Remove spill directories of runs that are no longer alive; returns how
/// many were removed.
pub fn remove_stale(temp_dir: &Path) -> Result<usize> {
    let entries = match fs::read_dir(temp_dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(Error::io("list", temp_dir, e)),
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if !entry.path().is_dir() {
            continue;
        }
        if name.strip_prefix(PENDING_PREFIX).is_some_and(is_run_name) {
            let old = entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age.as_secs() > PENDING_STALE_SECS);
            if old && fs::remove_dir_all(entry.path()).is_ok() {
                removed += 1;
            }
            continue;
        }
        if !name.strip_prefix(DIR_PREFIX).is_some_and(is_run_name) {
            continue;
        }
        let lock_path = entry.path().join(LOCK_FILE);
        // A directory without a lock file cannot be a live run's (it is
        // renamed into place locked): it is stale too.
        let stale = match File::open(&lock_path) {
            Ok(lock) => try_lock(&lock),
            Err(_) => true,
        };
        if stale && fs::remove_dir_all(entry.path()).is_ok() {
            removed += 1;
        }
    }
    Ok(removed)
}

/// Whether `rest`, what follows a spill directory's prefix, is a run's
/// `<pid>-<nanos>` as [`SpillManager::create`] names it. Only such names
/// are swept: the temp dir is shared, and a prefix alone matched anything
/// beginning `highwater-`, such as a user's `/tmp/highwater-results` or the
/// tests' `/tmp/highwater-tests`, which has no lock file and was removed
/// whole, spill files of running tests with it.
fn is_run_name(rest: &str) -> bool {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    rest.split_once('-')
        .is_some_and(|(pid, nanos)| digits(pid) && digits(nanos))
}

/// Take an exclusive flock without waiting; true when we got it.
fn try_lock(file: &File) -> bool {
    // SAFETY: flock on a valid open descriptor.
    unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) == 0 }
}

/// Counts bytes on their way to the file so that the spill cap is exact.
struct CountingWrite<W> {
    inner: W,
    bytes: u64,
}

impl<W: Write> Write for CountingWrite<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// `batch` with every string or binary view column that uses less than half
/// of its data buffers copied into buffers of its own.
///
/// Why: a view array taken, filtered or sliced from a Parquet reader's batch
/// shares the reader's decoded pages, and IPC writes every buffer whole. A
/// join that splits each batch into partitions would write each page once a
/// partition, and again at each level: measured, a 565 MB partition of
/// lineitem became eight files of 525 MB.
pub(crate) fn compact_views(batch: &RecordBatch) -> RecordBatch {
    fn wasteful<T: ByteViewType + ?Sized>(a: &GenericByteViewArray<T>) -> bool {
        let held: usize = a.data_buffers().iter().map(|b| b.len()).sum();
        if held == 0 {
            return false;
        }
        let used: usize = a
            .views()
            .iter()
            .map(|&v| v as u32 as usize)
            .filter(|&len| len > 12)
            .sum();
        held > used * 2
    }
    // Nothing here fails: no column errs, and the schema and lengths stay.
    replace_columns(batch, |c| {
        Ok(match c.data_type() {
            DataType::Utf8View => {
                let a = c.as_string_view();
                wasteful(a).then(|| Arc::new(a.gc()) as ArrayRef)
            }
            DataType::BinaryView => {
                let a = c.as_binary_view();
                wasteful(a).then(|| Arc::new(a.gc()) as ArrayRef)
            }
            _ => None,
        })
    })
    .unwrap_or_else(|_| batch.clone())
}

/// `batch` with each column that `replace` gives a new array for (of the
/// same type and length) in its place; `batch` itself where it gives none.
fn replace_columns(
    batch: &RecordBatch,
    mut replace: impl FnMut(&ArrayRef) -> Result<Option<ArrayRef>>,
) -> Result<RecordBatch> {
    let mut columns: Option<Vec<ArrayRef>> = None;
    for (i, c) in batch.columns().iter().enumerate() {
        if let Some(a) = replace(c)? {
            columns.get_or_insert_with(|| batch.columns().to_vec())[i] = a;
        }
    }
    let Some(columns) = columns else {
        return Ok(batch.clone());
    };
    Ok(RecordBatch::try_new_with_options(
        batch.schema(),
        columns,
        &RecordBatchOptions::new().with_row_count(Some(batch.num_rows())),
    )?)
}

/// A spill file being written.
pub struct SpillWriter {
    shared: Arc<Shared>,
    /// Owns the path until `finish`, so that an abandoned writer's file is
    /// removed by `SpillFile`'s drop.
    file: Option<SpillFile>,
    writer: Option<StreamWriter<CountingWrite<BufWriter<File>>>>,
    /// Bytes of this file already added to the run's total.
    accounted: u64,
    /// The operator it spills for, when the run is analysed.
    node: Option<analyze::Node>,
}

impl SpillWriter {
    pub fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        let (Some(file), Some(writer)) = (self.file.as_mut(), self.writer.as_mut()) else {
            return Err(Error::Internal("spill writer used after finish".into()));
        };
        debug_assert_eq!(batch.schema(), file.schema, "spill batch schema");
        let batch = planes::to_planes(&compact_views(batch))?;
        writer
            .write(&batch)
            .map_err(|e| io_or(Error::from(e), "write spill file", &file.path))?;
        // Counts the stream header too, on the first batch.
        let written = writer.get_ref().bytes - self.accounted;
        self.accounted += written;
        file.rows += batch.num_rows() as u64;
        self.shared.account(written, self.node.as_ref())
    }

    /// Close the file and hand back its handle for reading.
    pub fn finish(mut self) -> Result<SpillFile> {
        let mut file = self
            .file
            .take()
            .ok_or_else(|| Error::Internal("spill writer finished twice".into()))?;
        let mut writer = self
            .writer
            .take()
            .ok_or_else(|| Error::Internal("spill writer finished twice".into()))?;
        writer
            .finish()
            .map_err(|e| io_or(Error::from(e), "write spill file", &file.path))?;
        let mut counted = writer
            .into_inner()
            .map_err(|e| io_or(Error::from(e), "write spill file", &file.path))?;
        counted
            .flush()
            .map_err(|e| Error::io("write spill file", &file.path, e))?;
        let rest = counted.bytes - self.accounted;
        self.shared.spill_bytes.fetch_add(rest, Ordering::Relaxed);
        if let Some(node) = &self.node {
            node.spilled(rest, 0);
        }
        file.bytes = counted.bytes;
        Ok(file)
    }
}

/// An I/O error inside an Arrow error becomes our I/O error on the path, so
/// that a full disk is reported as such.
fn io_or(e: Error, action: &'static str, path: &Path) -> Error {
    match e {
        Error::Arrow(arrow::error::ArrowError::IoError(_, source)) => {
            Error::io(action, path, source)
        }
        other => other,
    }
}

/// A finished spill file. Dropping it deletes the file.
#[derive(Debug)]
pub struct SpillFile {
    path: PathBuf,
    schema: SchemaRef,
    rows: u64,
    bytes: u64,
}

impl SpillFile {
    pub fn rows(&self) -> u64 {
        self.rows
    }

    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Read the batches back, in the order they were written.
    pub fn reader(&self) -> Result<SpillReader> {
        let file =
            File::open(&self.path).map_err(|e| Error::io("open spill file", &self.path, e))?;
        let reader = StreamReader::try_new(BufReader::with_capacity(IO_BUFFER_BYTES, file), None)
            .map_err(|e| io_or(Error::from(e), "read spill file", &self.path))?;
        // SAFETY: the file was written by this run's `SpillWriter` from
        // valid arrays, into a directory only this run uses, and is read
        // back before the run ends; validating it again (UTF-8, offsets)
        // would cost a full pass over every spilled byte for nothing.
        let reader = unsafe { reader.with_skip_validation(true) };
        debug_assert_eq!(reader.schema(), self.schema, "spill file schema");
        Ok(SpillReader {
            reader,
            path: self.path.clone(),
            rows_left: self.rows,
        })
    }
}

impl Drop for SpillFile {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

/// A spill file of raw blobs, appended and read back by position; several
/// threads may append at once. Dropping it deletes the file.
pub struct BlobFile {
    shared: Arc<Shared>,
    file: File,
    path: PathBuf,
    end: AtomicU64,
    node: Option<analyze::Node>,
}

impl BlobFile {
    /// Append `bytes`; return where they start.
    pub fn append(&self, bytes: &[u8]) -> Result<u64> {
        let at = self.end.fetch_add(bytes.len() as u64, Ordering::Relaxed);
        self.file
            .write_all_at(bytes, at)
            .map_err(|e| Error::io("write spill file", &self.path, e))?;
        self.shared
            .account(bytes.len() as u64, self.node.as_ref())?;
        Ok(at)
    }

    /// The `len` bytes put at `at`.
    pub fn read(&self, at: u64, len: usize) -> Result<Vec<u8>> {
        let mut bytes = vec![0; len];
        self.file
            .read_exact_at(&mut bytes, at)
            .map_err(|e| Error::io("read spill file", &self.path, e))?;
        Ok(bytes)
    }
}

impl Drop for BlobFile {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

/// Batches read back from a spill file.
pub struct SpillReader {
    reader: StreamReader<BufReader<File>>,
    path: PathBuf,
    rows_left: u64,
}

impl SpillReader {
    pub fn next_batch(&mut self) -> Result<Option<RecordBatch>> {
        match self.reader.next() {
            Some(Ok(batch)) => {
                self.rows_left = self.rows_left.wrapping_sub(batch.num_rows() as u64);
                Ok(Some(planes::from_planes(&batch)?))
            }
            Some(Err(e)) => Err(io_or(Error::from(e), "read spill file", &self.path)),
            None => {
                debug_assert_eq!(self.rows_left, 0, "spill file row count");
                Ok(None)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("hw-spill-test-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn batch(n: i64) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("k", DataType::Int64, false),
            Field::new("s", DataType::Utf8, true),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from_iter_values(0..n)),
                Arc::new(StringArray::from_iter(
                    (0..n).map(|i| Some(format!("row {i}"))),
                )),
            ],
        )
        .unwrap()
    }

    #[test]
    fn small_integers_are_written_as_byte_planes_and_read_back_as_values() {
        let temp = scratch("planes");
        let manager = SpillManager::create(&temp, u64::MAX).unwrap();
        let schema = Arc::new(Schema::new(vec![Field::new("k", DataType::Int64, false)]));
        // Keys below 2^12 in no order: a byte and a half of noise and six
        // bytes of zeros a value. LZ4 made 3.5 bytes a value of them in
        // place, 2.0 as planes.
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let keys = Int64Array::from_iter_values((0..100_000).map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % 4096) as i64
        }));
        let b = RecordBatch::try_new(schema, vec![Arc::new(keys)]).unwrap();
        let mut w = manager.writer(b.schema(), "test").unwrap();
        w.write(&b).unwrap();
        let file = w.finish().unwrap();
        assert!(
            file.bytes() < 250_000,
            "100,000 small keys took {} bytes",
            file.bytes()
        );
        let mut r = file.reader().unwrap();
        assert_eq!(r.next_batch().unwrap().unwrap(), b);
        assert!(r.next_batch().unwrap().is_none());
        drop((r, file, manager));
        fs::remove_dir_all(&temp).unwrap();
    }

    #[test]
    fn spilled_batches_read_back_identically_and_the_dir_goes_away() {
        let temp = scratch("roundtrip");
        let manager = SpillManager::create(&temp, u64::MAX).unwrap();
        let dir = manager.dir().to_path_buf();
        let b = batch(1000);
        let mut w = manager.writer(b.schema(), "test").unwrap();
        w.write(&b).unwrap();
        w.write(&b.slice(10, 5)).unwrap();
        let file = w.finish().unwrap();
        assert_eq!(file.rows(), 1005);
        assert!(file.bytes() > 0 && manager.spill_bytes() == file.bytes());
        let mut r = file.reader().unwrap();
        assert_eq!(r.next_batch().unwrap().unwrap(), b);
        assert_eq!(r.next_batch().unwrap().unwrap(), b.slice(10, 5));
        assert!(r.next_batch().unwrap().is_none());
        let path = file.path().to_path_buf();
        drop(file);
        assert!(!path.exists(), "a dropped spill file is deleted");
        drop(manager);
        assert!(!dir.exists(), "the run's directory is removed at the end");
        fs::remove_dir_all(&temp).unwrap();
    }

    #[test]
    fn a_dead_runs_directory_is_removed_at_the_next_start() {
        let temp = scratch("stale");
        // A killed run leaves its directory and an unlocked lock file.
        let stale = temp.join("highwater-999999-1");
        fs::create_dir_all(&stale).unwrap();
        fs::write(stale.join(LOCK_FILE), b"").unwrap();
        fs::write(stale.join("sort-000000.arrows"), b"junk").unwrap();
        // A live run's directory (its lock is held) must survive the sweep.
        let live = SpillManager::create(&temp, u64::MAX).unwrap();
        assert!(!stale.exists(), "stale spill dir was not removed");
        let second = SpillManager::create(&temp, u64::MAX).unwrap();
        assert!(live.dir().exists(), "a live run's dir was removed");
        drop(second);
        drop(live);
        fs::remove_dir_all(&temp).unwrap();
    }

    #[test]
    fn the_sweep_leaves_other_directories_that_begin_like_ours_alone() {
        let temp = scratch("not-ours");
        // Neither has a lock file, which in a run's directory means stale.
        let results = temp.join("highwater-results");
        let odd = temp.join("highwater-1-2-3");
        let pending = temp.join(".highwater-pending-notes");
        for dir in [&results, &odd, &pending] {
            fs::create_dir_all(dir).unwrap();
            fs::write(dir.join("data.parquet"), b"keep").unwrap();
        }
        let dead = temp.join("highwater-999999-2");
        fs::create_dir_all(&dead).unwrap();
        assert_eq!(remove_stale(&temp).unwrap(), 1);
        assert!(!dead.exists(), "a run's directory without a lock is stale");
        for dir in [&results, &odd, &pending] {
            assert!(
                dir.join("data.parquet").exists(),
                "{} was removed",
                dir.display()
            );
        }
        fs::remove_dir_all(&temp).unwrap();
    }

    #[test]
    fn the_spill_limit_is_enforced_and_named() {
        let temp = scratch("limit");
        let manager = SpillManager::create(&temp, 1000).unwrap();
        let b = batch(10_000);
        let mut w = manager.writer(b.schema(), "test").unwrap();
        let err = w.write(&b).unwrap_err();
        assert!(matches!(err, Error::ResourcesExhausted(_)));
        assert!(err.to_string().contains("--spill-limit"), "{err}");
        drop(w);
        drop(manager);
        fs::remove_dir_all(&temp).unwrap();
    }
}
