//! A page store for the Parquet writer that keeps a row group's finished
//! pages in the run's spill directory instead of on the heap.
//!
//! Why: a row group's column chunks must each be contiguous in the file, so
//! the writer holds every finished page until the row group closes. On the
//! heap that makes the row group only as large as the memory it may use,
//! and under a small limit that is a few MB: TPC-H lineitem at 32MB became
//! 615 row groups. Each row group leaves its metadata on the heap until the
//! footer is written (measured: 12.5 KB a row group for lineitem's 16
//! columns), so the writer's memory grew with the output: the SF1 copy and
//! sort crossed the 32MB limit, and SF10 would have crossed much larger
//! ones. With pages spooled, row groups are closed by rows and encoded
//! size, as if memory were plentiful, and the heap holds only each column's
//! page being encoded and its dictionary.
//!
//! # Memory
//!
//! One page per column at a time, while a chunk is spliced into the file.
//! Pages are ZSTD-compressed already, so they are written as they are; one
//! file per row group, shared by its columns (a file per column chunk would
//! open as many files at once as the output has columns), and removed when
//! the row group has been copied out.

use std::fmt;
use std::sync::{Arc, Mutex, Weak};

use bytes::Bytes;
use parquet::column::page_store::{PageKey, PageStore, PageStoreArgs, PageStoreFactory};
use parquet::errors::{ParquetError, Result};

use crate::spill::{BlobFile, SpillManager};

/// Makes a [`PageSpool`] for each column chunk.
pub struct PageSpoolFactory {
    spill: SpillManager,
    /// The open row group's file, while any of its chunks holds it.
    file: Mutex<Weak<BlobFile>>,
}

impl PageSpoolFactory {
    pub fn new(spill: SpillManager) -> Self {
        PageSpoolFactory {
            spill,
            file: Mutex::new(Weak::new()),
        }
    }
}

impl fmt::Debug for PageSpoolFactory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PageSpoolFactory({})", self.spill.dir().display())
    }
}

impl PageStoreFactory for PageSpoolFactory {
    /// A row group's column writers are made together, its first column
    /// first: that one starts the row group's file, the rest share it.
    fn create(&self, args: &PageStoreArgs<'_>) -> Result<Box<dyn PageStore>> {
        let mut current = self.file.lock().unwrap_or_else(|p| p.into_inner());
        let file = match current.upgrade() {
            Some(file) if args.column_index() > 0 => file,
            _ => {
                let file = Arc::new(self.spill.blob_file("parquet-pages").map_err(external)?);
                *current = Arc::downgrade(&file);
                file
            }
        };
        Ok(Box::new(PageSpool {
            file,
            pages: Vec::new(),
        }))
    }
}

/// One column chunk's pages, in its row group's spill file.
struct PageSpool {
    file: Arc<BlobFile>,
    /// Where each page is, by its key.
    pages: Vec<(u64, usize)>,
}

impl PageStore for PageSpool {
    fn put(&mut self, value: Bytes) -> Result<PageKey> {
        let at = self.file.append(&value).map_err(external)?;
        self.pages.push((at, value.len()));
        Ok(PageKey::new(self.pages.len() as u64 - 1))
    }

    fn take(&mut self, key: PageKey) -> Result<Bytes> {
        let &(at, len) = usize::try_from(key.get())
            .ok()
            .and_then(|i| self.pages.get(i))
            .ok_or_else(|| ParquetError::General(format!("no spooled page {}", key.get())))?;
        Ok(Bytes::from(self.file.read(at, len).map_err(external)?))
    }
}

/// Our error inside parquet's, so that the sink reports it whole (the spill
/// file's path, a full disk, the spill limit).
fn external(e: crate::error::Error) -> ParquetError {
    ParquetError::External(Box::new(e))
}
