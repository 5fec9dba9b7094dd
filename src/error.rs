//! The library's one error type.
//!
//! Errors are grouped by who has to act on them, as DataFusion does: the user's
//! query (`Plan`, `Sql`), the user's data (`Input`), the machine (`Io`,
//! `ResourcesExhausted`), or us (`Internal`, "likely a bug"). Each variant
//! carries the context a user needs to find the problem: a file, a line, a
//! column, or a position in the SQL text. The binary maps each category to a
//! distinct exit code (see [`Error::exit_code`]).

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use arrow::error::ArrowError;
use parquet::errors::ParquetError;

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A position in the SQL text, 1-based, as sqlparser reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SqlLocation {
    pub line: u64,
    pub column: u64,
}

#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The SQL text does not parse.
    Sql {
        message: String,
        location: Option<SqlLocation>,
    },
    /// The query parses but cannot be planned: unknown column or function,
    /// a type error, a bad argument.
    Plan {
        message: String,
        location: Option<SqlLocation>,
    },
    /// The input data is bad: a corrupt file, a malformed CSV row, a value
    /// that does not parse as its column's type.
    Input {
        path: PathBuf,
        /// 1-based line in a text file, where known.
        line: Option<u64>,
        message: String,
    },
    /// An operating-system error on a named file.
    Io {
        path: PathBuf,
        action: &'static str,
        source: io::Error,
    },
    /// The memory limit or the spill limit would be crossed.
    ResourcesExhausted(String),
    /// A feature that highwater does not have (yet).
    NotImplemented(String),
    /// An error while executing a plan that is not the input's fault.
    Execution(String),
    /// Ctrl-C or SIGTERM.
    Interrupted,
    /// An invariant broke: this is a bug in highwater.
    Internal(String),
    Arrow(ArrowError),
    Parquet(ParquetError),
}

impl Error {
    pub fn plan(message: impl Into<String>) -> Self {
        Error::Plan {
            message: message.into(),
            location: None,
        }
    }

    pub fn io(action: &'static str, path: impl AsRef<Path>, source: io::Error) -> Self {
        Error::Io {
            path: path.as_ref().to_path_buf(),
            action,
            source,
        }
    }

    pub fn input(path: impl AsRef<Path>, message: impl Into<String>) -> Self {
        Error::Input {
            path: path.as_ref().to_path_buf(),
            line: None,
            message: message.into(),
        }
    }

    /// Attach a SQL position to a plan error that has none yet.
    pub fn at(self, location: Option<SqlLocation>) -> Self {
        match self {
            Error::Plan {
                message,
                location: None,
            } => Error::Plan { message, location },
            other => other,
        }
    }

    /// A plan error with `context` in front of its message.
    pub fn prefix(self, context: &str) -> Self {
        match self {
            Error::Plan { message, location } => Error::Plan {
                message: format!("{context}{message}"),
                location,
            },
            other => other,
        }
    }

    /// Re-label an Arrow or Parquet error that came from reading `path` as bad
    /// input, keeping a line number when the reader reported one.
    pub fn reading(self, path: &Path) -> Self {
        match self {
            Error::Arrow(ArrowError::IoError(_, source)) | Error::Io { source, .. } => {
                Error::io("read", path, source)
            }
            Error::Arrow(e) => {
                let message = arrow_message(&e);
                Error::Input {
                    path: path.to_path_buf(),
                    line: line_number_in(&message),
                    message,
                }
            }
            Error::Parquet(ParquetError::External(e)) => Error::Input {
                path: path.to_path_buf(),
                line: None,
                message: e.to_string(),
            },
            Error::Parquet(e) => Error::Input {
                path: path.to_path_buf(),
                line: None,
                message: parquet_message(&e),
            },
            other => other,
        }
    }

    /// The process exit code for this category of error.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Sql { .. } | Error::Plan { .. } | Error::NotImplemented(_) => 3,
            Error::Input { .. } | Error::Parquet(_) => 4,
            Error::ResourcesExhausted(_) => 5,
            Error::Io { .. } => 6,
            Error::Interrupted => 130,
            Error::Execution(_) | Error::Arrow(_) => 1,
            Error::Internal(_) => 70,
        }
    }

    pub fn sql_location(&self) -> Option<SqlLocation> {
        match self {
            Error::Sql { location, .. } | Error::Plan { location, .. } => *location,
            _ => None,
        }
    }
}

/// Arrow prefixes its messages with the variant name ("Parser error: ...");
/// we keep the text after it, which is the part that names the problem.
fn arrow_message(e: &ArrowError) -> String {
    match e {
        ArrowError::ParseError(m)
        | ArrowError::CsvError(m)
        | ArrowError::JsonError(m)
        | ArrowError::InvalidArgumentError(m)
        | ArrowError::CastError(m)
        | ArrowError::SchemaError(m)
        | ArrowError::ComputeError(m) => m.clone(),
        other => other.to_string(),
    }
}

fn parquet_message(e: &ParquetError) -> String {
    match e {
        ParquetError::General(m) => m.clone(),
        ParquetError::EOF(m) => format!("unexpected end of file: {m}"),
        other => other.to_string(),
    }
}

/// arrow-csv says "... at line 12" or "... for line 12"; pull the number out so
/// that the report can say it in one place.
fn line_number_in(message: &str) -> Option<u64> {
    for marker in ["at line ", "for line ", "line "] {
        if let Some(at) = message.find(marker) {
            let digits: String = message[at + marker.len()..]
                .chars()
                .take_while(|c| c.is_ascii_digit())
                .collect();
            if let Ok(n) = digits.parse() {
                return Some(n);
            }
        }
    }
    None
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Sql { message, location } => {
                write!(f, "SQL syntax error")?;
                if let Some(l) = location {
                    write!(f, " at line {}:{}", l.line, l.column)?;
                }
                write!(f, ": {message}")
            }
            Error::Plan { message, location } => {
                write!(f, "{message}")?;
                if let Some(l) = location {
                    write!(f, " (at line {}:{})", l.line, l.column)?;
                }
                Ok(())
            }
            Error::Input {
                path,
                line,
                message,
            } => {
                write!(f, "bad input in {}", path.display())?;
                if let Some(line) = line {
                    write!(f, " line {line}")?;
                }
                write!(f, ": {message}")
            }
            Error::Io {
                path,
                action,
                source,
            } => {
                if is_disk_full(source) {
                    write!(f, "disk full: cannot {action} {}: {source}", path.display())
                } else {
                    write!(f, "cannot {action} {}: {source}", path.display())
                }
            }
            Error::ResourcesExhausted(m) => write!(f, "resources exhausted: {m}"),
            Error::NotImplemented(m) => write!(f, "not implemented: {m}"),
            Error::Execution(m) => write!(f, "{m}"),
            Error::Interrupted => write!(f, "interrupted"),
            Error::Internal(m) => write!(f, "internal error (likely a bug in highwater): {m}"),
            Error::Arrow(e) => write!(f, "{}", arrow_message(e)),
            Error::Parquet(e) => write!(f, "parquet: {}", parquet_message(e)),
        }
    }
}

pub fn is_disk_full(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::StorageFull || e.raw_os_error() == Some(libc::ENOSPC)
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } => Some(source),
            Error::Arrow(e) => Some(e),
            Error::Parquet(e) => Some(e),
            _ => None,
        }
    }
}

impl From<ArrowError> for Error {
    fn from(e: ArrowError) -> Self {
        // Our own errors travel through arrow callbacks (row filters) wrapped
        // as external errors; unwrap them so that their category survives.
        match e {
            ArrowError::ExternalError(inner) => match inner.downcast::<Error>() {
                Ok(ours) => *ours,
                Err(other) => Error::Arrow(ArrowError::ExternalError(other)),
            },
            e => Error::Arrow(e),
        }
    }
}

impl From<ParquetError> for Error {
    fn from(e: ParquetError) -> Self {
        match e {
            ParquetError::ArrowError(m) => Error::Arrow(ArrowError::ComputeError(m)),
            ParquetError::External(inner) => match inner.downcast::<Error>() {
                Ok(ours) => *ours,
                Err(other) => Error::Parquet(ParquetError::External(other)),
            },
            e => Error::Parquet(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_line_numbers_are_found() {
        assert_eq!(
            line_number_in("Error while parsing value 'x' for column 1 at line 7"),
            Some(7)
        );
        assert_eq!(line_number_in("no number here"), None);
    }

    #[test]
    fn our_errors_survive_a_trip_through_arrow() {
        let e = ArrowError::ExternalError(Box::new(Error::Interrupted));
        assert!(matches!(Error::from(e), Error::Interrupted));
    }
}
