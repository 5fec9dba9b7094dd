//! Physical operators: pull-based, batch at a time.
//!
//! Each operator is a [`Operator`]: asked for its next batch, it pulls from
//! its input as much as it needs. Streaming operators (scan, filter, project,
//! limit, union) hold at most a batch or two and reserve nothing; operators
//! that buffer rows (sort, aggregate) reserve from the budget first and spill when
//! refused. Every operator file opens with a `# Memory` section.
//!
//! [`RunContext`] is what every operator can see of the run: the settings,
//! the memory budget, the spill manager and the progress counters.

pub mod aggregate;
pub mod analyzed;
pub mod filter;
pub mod group_table;
pub mod hash_join;
pub mod join_sides;
pub mod limit;
pub mod pipeline;
pub mod prefetch;
pub mod project;
pub mod scan_parquet;
pub mod scan_text;
pub mod scan_tpch;
pub mod slot_table;
pub mod sort;
pub mod union;
pub mod values;
pub mod window;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch, RecordBatchOptions};
use arrow::datatypes::SchemaRef;

use crate::config::RunConfig;
use crate::error::{Error, Result};
use crate::memory::MemoryBudget;
use crate::spill::SpillManager;

pub trait Operator: Send {
    fn schema(&self) -> SchemaRef;

    /// The next batch, or `None` when the input is exhausted. Batches are
    /// never empty.
    fn next_batch(&mut self) -> Result<Option<RecordBatch>>;
}

pub type BoxedOperator = Box<dyn Operator>;

/// What every operator of one run shares.
pub struct RunContext {
    pub config: RunConfig,
    pub budget: MemoryBudget,
    pub spill: SpillManager,
    pub progress: Progress,
}

impl RunContext {
    pub fn new(config: RunConfig, budget: MemoryBudget) -> Result<Arc<RunContext>> {
        let spill = SpillManager::create(&config.temp_dir, config.spill_bytes_max)?;
        Ok(Arc::new(RunContext {
            config,
            budget,
            spill,
            progress: Progress::default(),
        }))
    }

    /// Err if the run must stop: interrupted, or over the memory limit.
    /// Called once a batch by every loop that may run long.
    pub fn check(&self) -> Result<()> {
        if crate::signal::interrupted() {
            return Err(Error::Interrupted);
        }
        self.budget.check()
    }
}

/// Counters for the progress bar and the run report.
#[derive(Default)]
pub struct Progress {
    pub rows_read: AtomicU64,
    pub bytes_read: AtomicU64,
    /// Input bytes the run will read, when known in advance.
    pub bytes_total: AtomicU64,
    pub rows_written: AtomicU64,
    pub files_written: AtomicU64,
}

impl Progress {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    /// Count `rows` read from a source whose rows cost `bytes_per_row` on
    /// disk, for the report and the progress bar.
    pub fn add_read(&self, rows: usize, bytes_per_row: f64) {
        Progress::add(&self.rows_read, rows as u64);
        Progress::add(&self.bytes_read, (rows as f64 * bytes_per_row) as u64);
    }
}

/// The same columns under `schema`: the plan's names and nullability in
/// place of whatever the reader or branch produced. Keeps the row count when
/// there are no columns.
pub fn relabel(schema: &SchemaRef, batch: RecordBatch) -> Result<RecordBatch> {
    let rows = batch.num_rows();
    batch_of(schema, batch.columns().to_vec(), rows)
}

/// A batch of `columns` under `schema` that has `rows` rows even when there
/// are no columns (a join or aggregate that outputs none).
pub fn batch_of(schema: &SchemaRef, columns: Vec<ArrayRef>, rows: usize) -> Result<RecordBatch> {
    let options = RecordBatchOptions::new().with_row_count(Some(rows));
    Ok(RecordBatch::try_new_with_options(
        schema.clone(),
        columns,
        &options,
    )?)
}

/// The smallest operator pool for which an operator hands work to a second
/// thread (a parallel aggregate's workers, a hash join's partition writer):
/// below it, the batches queued between threads are a share of the limit
/// worth keeping for the operators' own data.
pub const THREADED_POOL_BYTES_MIN: usize = 48 << 20;

/// How many rows ahead a loop over a batch's groups fetches what it will
/// read of the next ones (an accumulator's state, a group's key).
pub const PREFETCH_ROWS: usize = 16;

/// Ask the CPU to bring `v[i]` into cache; a hint only. On a large table
/// every row's group is a cache miss; a batch knows its groups in advance,
/// so fetching ahead lets the misses overlap instead of queueing.
#[inline(always)]
pub fn prefetch<T>(v: &[T], i: usize) {
    #[cfg(target_arch = "x86_64")]
    if let Some(x) = v.get(i) {
        // SAFETY: a prefetch reads nothing and changes nothing; the address
        // is that of an element in bounds.
        unsafe {
            std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(
                (x as *const T).cast::<i8>(),
            )
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (v, i);
}

/// A predicate's result as a selection mask: NULL counts as false.
pub fn true_mask(mask: &arrow::array::BooleanArray) -> arrow::array::BooleanArray {
    if arrow::array::Array::null_count(mask) == 0 {
        mask.clone()
    } else {
        arrow::compute::prep_null_mask_filter(mask)
    }
}

/// Operators and contexts for operator tests.
#[cfg(test)]
pub mod testing {
    use std::path::PathBuf;
    use std::sync::Arc;

    use arrow::array::RecordBatch;
    use arrow::datatypes::SchemaRef;

    use super::{Operator, RunContext};
    use crate::config::RunConfig;
    use crate::error::{Error, Result};
    use crate::memory::MemoryBudget;

    /// A small deterministic generator for test data.
    pub struct Lcg(pub u64);

    impl Lcg {
        /// The next number below `n`.
        pub fn below(&mut self, n: u64) -> u64 {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (self.0 >> 33) % n
        }
    }

    /// Yields the given batches, then optionally fails.
    pub struct Batches {
        pub schema: SchemaRef,
        pub batches: std::vec::IntoIter<RecordBatch>,
        pub fail_at_end: bool,
    }

    impl Batches {
        pub fn new(schema: SchemaRef, batches: Vec<RecordBatch>) -> Box<Self> {
            Box::new(Batches {
                schema,
                batches: batches.into_iter(),
                fail_at_end: false,
            })
        }
    }

    impl Operator for Batches {
        fn schema(&self) -> SchemaRef {
            self.schema.clone()
        }

        fn next_batch(&mut self) -> Result<Option<RecordBatch>> {
            match self.batches.next() {
                Some(b) => Ok(Some(b)),
                None if self.fail_at_end => Err(Error::Execution("input failed".into())),
                None => Ok(None),
            }
        }
    }

    /// Where operator tests spill: one directory for all of them, since
    /// every run makes its own spill directory inside and removes it.
    pub fn temp_dir() -> PathBuf {
        let dir = std::env::temp_dir().join("highwater-tests");
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// A run context over `budget`, spilling under `temp_dir`.
    pub fn context(
        budget: MemoryBudget,
        temp_dir: PathBuf,
        threads: usize,
        fan_in: usize,
        batch_rows: usize,
    ) -> Arc<RunContext> {
        let mut config = RunConfig::detect();
        config.temp_dir = temp_dir;
        config.threads = threads;
        config.merge_fan_in_max = fan_in;
        config.batch_rows = batch_rows;
        RunContext::new(config, budget).unwrap()
    }

    /// After an operator's run under `ctx`: nothing reserved, no spill file
    /// left.
    pub fn assert_clean(ctx: &RunContext) {
        assert_eq!(
            ctx.budget.reserved_bytes(),
            0,
            "reservations outlive the operator"
        );
        let left = std::fs::read_dir(ctx.spill.dir()).unwrap().count();
        assert_eq!(left, 1, "only the lock file should be left");
    }
}
