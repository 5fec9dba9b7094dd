//! Session objects: the tables and views a script creates.
//!
//! A table is a schema and a list of Parquet files in the run's spill
//! directory, one file per statement that added rows (CREATE TABLE AS,
//! INSERT, COPY FROM). Reading a table is a Parquet scan of those files, so
//! it gets pruning and pushdown like any file; the files go when the table
//! is dropped or when the run's spill directory is removed, so a table lasts
//! no longer than the run unless a query writes it out.
//!
//! A view is its query's text, planned again wherever the view is named, so
//! it sees the tables as they are when it is read.
//!
//! # Memory
//!
//! None held here beyond names, schemas and paths: a table's rows are on
//! disk, written through the Parquet sink (which reserves its row-group
//! buffer) and read through the scan.
//!
//! A statement is planned against a copy of the session's catalog, and the
//! session's catalog takes the statement's [`Change`] only once the
//! statement has run: a failed INSERT leaves the table as it was.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use sqlparser::ast::{Ident, Query};

use crate::error::{Error, Result};

#[derive(Debug, Clone)]
pub struct Table {
    pub name: String,
    /// Every column nullable: a table holds what its inserts give it.
    pub schema: SchemaRef,
    pub files: Vec<PathBuf>,
}

#[derive(Debug, Clone)]
pub struct View {
    pub query: Box<Query>,
    /// Names given in `CREATE VIEW v (a, b)`, if any.
    pub columns: Vec<Ident>,
}

/// What a statement does to the catalog once it has run.
#[derive(Debug, Clone)]
pub enum Change {
    /// A new table, replacing any of that name (CREATE OR REPLACE).
    CreateTable(Table),
    /// A file of rows added to a table.
    AddFile {
        table: String,
        path: PathBuf,
    },
    DropTable(String),
    CreateView(String, View),
    DropView(String),
    /// Nothing: `IF NOT EXISTS` met an existing object, or `IF EXISTS` a
    /// missing one.
    None,
}

#[derive(Debug, Clone)]
pub struct Catalog {
    tables: BTreeMap<String, Table>,
    views: BTreeMap<String, View>,
    /// Where table files go: inside the run's spill directory.
    dir: PathBuf,
    /// Shared by every copy, so that no two planned files share a name even
    /// when a copy's plans are thrown away.
    files_made: Arc<AtomicU64>,
}

impl Catalog {
    pub fn new(spill_dir: &Path) -> Catalog {
        Catalog {
            tables: BTreeMap::new(),
            views: BTreeMap::new(),
            dir: spill_dir.join("tables"),
            files_made: Arc::new(AtomicU64::new(0)),
        }
    }

    pub fn table(&self, name: &str) -> Option<&Table> {
        self.tables.get(name)
    }

    pub fn view(&self, name: &str) -> Option<&View> {
        self.views.get(name)
    }

    /// Tables and views, for "unknown table" messages.
    pub fn names(&self) -> Vec<String> {
        self.tables
            .keys()
            .chain(self.views.keys())
            .cloned()
            .collect()
    }

    /// A path no other table file has, for a new file of `table`.
    pub fn new_file(&self, table: &str) -> PathBuf {
        let n = self.files_made.fetch_add(1, Ordering::Relaxed);
        // The name is the user's; keep only what is safe in a file name.
        let stem: String = table
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .take(64)
            .collect();
        self.dir.join(format!("{stem}-{n:06}.parquet"))
    }

    /// Refuse a name that a view has when creating a table, and the reverse.
    pub fn check_free(&self, name: &str, for_view: bool) -> Result<()> {
        let taken = if for_view {
            self.tables.contains_key(name).then_some("table")
        } else {
            self.views.contains_key(name).then_some("view")
        };
        match taken {
            Some(kind) => Err(Error::plan(format!("'{name}' is already a {kind}"))),
            None => Ok(()),
        }
    }

    /// Apply a change; returns the files it made unreachable, for the
    /// caller to delete once nothing can read them.
    pub fn apply(&mut self, change: &Change) -> Result<Vec<PathBuf>> {
        match change {
            Change::CreateTable(table) => Ok(self
                .tables
                .insert(table.name.clone(), table.clone())
                .map(|old| old.files)
                .unwrap_or_default()),
            Change::AddFile { table, path } => {
                let t = self
                    .tables
                    .get_mut(table)
                    .ok_or_else(|| Error::Internal(format!("no table '{table}' to add to")))?;
                t.files.push(path.clone());
                Ok(Vec::new())
            }
            Change::DropTable(name) => Ok(self
                .tables
                .remove(name)
                .map(|t| t.files)
                .unwrap_or_default()),
            Change::CreateView(name, view) => {
                self.views.insert(name.clone(), view.clone());
                Ok(Vec::new())
            }
            Change::DropView(name) => {
                self.views.remove(name);
                Ok(Vec::new())
            }
            Change::None => Ok(Vec::new()),
        }
    }
}
