//! highwater: ETL over Parquet, CSV and NDJSON under a hard memory ceiling.
//!
//! The data flow, and the module for each stage:
//!
//! ```text
//! SQL text ──sql──▶ LogicalPlan ──plan::optimizer──▶ LogicalPlan
//!          ──plan::physical──▶ exec operators ──exec::pipeline──▶ io sinks
//! ```
//!
//! `source` resolves tables to files, `memory` governs the budget and the
//! RSS monitor, `spill` owns the spill directory. ARCHITECTURE.md is the map.

pub mod analyze;
pub mod cli;
pub mod config;
pub mod error;
pub mod exec;
pub mod io;
pub mod memory;
pub mod plan;
pub mod report;
pub mod session;
pub mod signal;
pub mod source;
pub mod spill;
pub mod sql;

pub use config::RunConfig;
pub use error::{Error, Result};
pub use session::{Output, Session};
