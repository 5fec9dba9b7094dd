//! A file that appears under its name only when complete.
//!
//! Bytes go to `.<name>.highwater-tmp-<pid>` in the target's directory (the
//! same file system, so the final rename is atomic). `commit` flushes, syncs
//! and renames; dropping without commit removes the temporary file. A run
//! killed with SIGKILL can leave the hidden temporary behind, never a file
//! under the target name.
//!
//! Writeback starts as the file grows ([`WRITEBACK_STEP_BYTES`]), so that
//! the sync in `commit` waits for the last few MB, not the whole file: the
//! bench's join output (170 MB) spent 0.11 s in that sync, at the end of
//! the run, with nothing else left to do.

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

const BUFFER_BYTES: usize = 256 * 1024;

/// Bytes handed to the kernel between two requests to start writing them
/// back.
const WRITEBACK_STEP_BYTES: u64 = 8 << 20;

pub struct AtomicFile {
    target: PathBuf,
    temp: PathBuf,
    file: Option<BufWriter<File>>,
    /// Bytes written through `file`, buffered ones included.
    written: u64,
    /// Bytes whose writeback has been started.
    written_back: u64,
}

impl AtomicFile {
    pub fn create(target: &Path) -> Result<AtomicFile> {
        let name = target
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| Error::plan(format!("'{}' is not a file name", target.display())))?;
        let dir = match target.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        if target.is_dir() {
            return Err(Error::io(
                "write",
                target,
                std::io::Error::other("it is a directory"),
            ));
        }
        let temp = dir.join(format!(".{name}.highwater-tmp-{}", std::process::id()));
        let file = File::create(&temp).map_err(|e| Error::io("create", target, e))?;
        Ok(AtomicFile {
            target: target.to_path_buf(),
            temp,
            file: Some(BufWriter::with_capacity(BUFFER_BYTES, file)),
            written: 0,
            written_back: 0,
        })
    }

    pub fn target(&self) -> &Path {
        &self.target
    }

    /// Make the file appear under its target name.
    pub fn commit(mut self) -> Result<()> {
        let writer = self
            .file
            .take()
            .ok_or_else(|| Error::Internal("atomic file committed twice".into()))?;
        let file = writer
            .into_inner()
            .map_err(|e| Error::io("write", &self.target, e.into_error()))?;
        // Sync before rename, so that after a power cut the target holds
        // either the old content or the whole new one.
        file.sync_all()
            .map_err(|e| Error::io("write", &self.target, e))?;
        drop(file);
        fs::rename(&self.temp, &self.target).map_err(|e| Error::io("rename into", &self.target, e))
    }
}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let Some(f) = self.file.as_mut() else {
            return Err(std::io::Error::other("write after commit"));
        };
        let n = f.write(buf)?;
        self.written += n as u64;
        let in_kernel = self.written - f.buffer().len() as u64;
        if in_kernel - self.written_back >= WRITEBACK_STEP_BYTES {
            start_writeback(f.get_ref(), self.written_back, in_kernel);
            self.written_back = in_kernel;
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self.file.as_mut() {
            Some(f) => f.flush(),
            None => Ok(()),
        }
    }
}

/// Ask the kernel to start writing bytes `from..to` of `file` to disk,
/// without waiting for them. Only a hint: a failure shows at the sync.
#[cfg(target_os = "linux")]
fn start_writeback(file: &File, from: u64, to: u64) {
    use std::os::fd::AsRawFd;
    // SAFETY: the descriptor is open for as long as `file` is borrowed;
    // sync_file_range reads no memory of ours.
    unsafe {
        libc::sync_file_range(
            file.as_raw_fd(),
            from as libc::off64_t,
            (to - from) as libc::off64_t,
            libc::SYNC_FILE_RANGE_WRITE,
        );
    }
}

#[cfg(not(target_os = "linux"))]
fn start_writeback(_file: &File, _from: u64, _to: u64) {}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if self.file.take().is_some() {
            let _ = fs::remove_file(&self.temp);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("hw-atomic-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn entries(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn a_committed_file_appears_whole() {
        let dir = scratch("commit");
        let target = dir.join("out.csv");
        let mut f = AtomicFile::create(&target).unwrap();
        f.write_all(b"a,b\n1,2\n").unwrap();
        assert!(
            !target.exists(),
            "nothing under the target name before commit"
        );
        f.commit().unwrap();
        assert_eq!(fs::read(&target).unwrap(), b"a,b\n1,2\n");
        assert_eq!(entries(&dir), vec!["out.csv"]);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn an_error_halfway_leaves_nothing_behind() {
        let dir = scratch("abandon");
        let target = dir.join("out.parquet");
        let result: Result<()> = (|| {
            let mut f = AtomicFile::create(&target)?;
            f.write_all(&[0u8; 100_000]).unwrap();
            Err(Error::Execution("failed halfway".into()))
        })();
        assert!(result.is_err());
        assert!(entries(&dir).is_empty(), "left behind: {:?}", entries(&dir));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn an_existing_target_is_untouched_until_commit() {
        let dir = scratch("existing");
        let target = dir.join("out.csv");
        fs::write(&target, b"old").unwrap();
        let mut f = AtomicFile::create(&target).unwrap();
        f.write_all(b"new").unwrap();
        drop(f);
        assert_eq!(fs::read(&target).unwrap(), b"old");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_missing_directory_is_a_clear_error() {
        let err = AtomicFile::create(Path::new("/nonexistent-dir-hw/out.csv"))
            .err()
            .unwrap();
        assert!(
            err.to_string().contains("/nonexistent-dir-hw/out.csv"),
            "{err}"
        );
    }
}
