//! A scan of generated TPC-H data: `highwater gen` and the demo stream it
//! into Parquet through the same pipeline as a query.
//!
//! # Memory
//!
//! Streams: the generator yields one batch of `batch_rows` rows at a time,
//! and reserves nothing for it. The comment text pool is static data that
//! lives for the process (see [`text_pool`]); the heap counter sees it.

use std::sync::{Arc, OnceLock};

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use tpchgen::distribution::Distributions;
use tpchgen::text::TextPool;

use crate::error::{Error, Result};
use crate::exec::{Operator, Progress, RunContext};

/// The TPC-H tables, smallest first.
pub const TABLES: [&str; 8] = [
    "region", "nation", "supplier", "customer", "part", "partsupp", "orders", "lineitem",
];

type Batches =
    Box<dyn Iterator<Item = std::result::Result<RecordBatch, arrow::error::ArrowError>> + Send>;

pub struct TpchScan {
    ctx: Arc<RunContext>,
    batches: std::iter::Peekable<Batches>,
    schema: SchemaRef,
}

/// dbgen's text pool, from which comments are drawn, is 300 MB. Under a
/// limit that cannot spare that, comments come from a small pool instead:
/// every other column is unchanged (each comment consumes the same random
/// draws whatever the pool's size), only the comment text differs from
/// dbgen's.
///
/// The small pool is a sixteenth of the limit, from 1 to 8 MB. A fixed 8 MB
/// was most of what a 32MB limit allows the heap: a writer's first 1 MB
/// then fitted with half a megabyte to spare, and on a machine whose
/// process started larger (a smaller allowance) `gen` failed between
/// tables. It is made once, for the process's one limit.
const CANONICAL_POOL_LIMIT_BYTES_MIN: u64 = 2 << 30;
const SMALL_POOL_BYTES_MIN: u64 = 1 << 20;
const SMALL_POOL_BYTES_MAX: u64 = 8 << 20;
static SMALL_POOL: OnceLock<TextPool> = OnceLock::new();

/// The text pool to use under a memory limit, and whether it is dbgen's.
pub fn text_pool(memory_bytes_max: u64) -> (&'static TextPool, bool) {
    if memory_bytes_max >= CANONICAL_POOL_LIMIT_BYTES_MIN {
        (TextPool::get_or_init_default(), true)
    } else {
        let bytes = (memory_bytes_max / 16).clamp(SMALL_POOL_BYTES_MIN, SMALL_POOL_BYTES_MAX);
        let pool =
            SMALL_POOL.get_or_init(|| TextPool::new(bytes as i32, Distributions::static_default()));
        (pool, false)
    }
}

impl TpchScan {
    pub fn new(ctx: Arc<RunContext>, table: &str, scale: f64) -> Result<TpchScan> {
        use tpchgen::generators as g;
        use tpchgen_arrow as a;
        let rows = ctx.config.batch_rows;
        let (pool, _) = text_pool(ctx.config.memory_bytes_max);
        let d = Distributions::static_default();
        let batches: Batches = match table {
            "region" => Box::new(
                a::RegionArrow::new(g::RegionGenerator::new_with_distributions_and_text_pool(
                    d, pool,
                ))
                .with_batch_size(rows),
            ),
            "nation" => Box::new(
                a::NationArrow::new(g::NationGenerator::new_with_distributions_and_text_pool(
                    d, pool,
                ))
                .with_batch_size(rows),
            ),
            "supplier" => Box::new(
                a::SupplierArrow::new(g::SupplierGenerator::new_with_distributions_and_text_pool(
                    scale, 1, 1, d, pool,
                ))
                .with_batch_size(rows),
            ),
            "customer" => Box::new(
                a::CustomerArrow::new(g::CustomerGenerator::new_with_distributions_and_text_pool(
                    scale, 1, 1, d, pool,
                ))
                .with_batch_size(rows),
            ),
            "part" => Box::new(
                a::PartArrow::new(g::PartGenerator::new_with_distributions_and_text_pool(
                    scale, 1, 1, d, pool,
                ))
                .with_batch_size(rows),
            ),
            "partsupp" => Box::new(
                a::PartSuppArrow::new(g::PartSuppGenerator::new_with_text_pool(scale, 1, 1, pool))
                    .with_batch_size(rows),
            ),
            "orders" => Box::new(
                a::OrderArrow::new(g::OrderGenerator::new_with_distributions_and_text_pool(
                    scale, 1, 1, d, pool,
                ))
                .with_batch_size(rows),
            ),
            "lineitem" => Box::new(
                a::LineItemArrow::new(g::LineItemGenerator::new_with_distributions_and_text_pool(
                    scale, 1, 1, d, pool,
                ))
                .with_batch_size(rows),
            ),
            other => {
                return Err(Error::plan(format!(
                    "unknown TPC-H table '{other}' (tables: {})",
                    TABLES.join(", ")
                )))
            }
        };
        let mut batches = batches.peekable();
        let schema = match batches.peek() {
            Some(Ok(b)) => b.schema(),
            Some(Err(e)) => return Err(Error::Execution(format!("generating {table}: {e}"))),
            None => {
                return Err(Error::plan(format!(
                    "scale {scale} gives no rows of {table}"
                )))
            }
        };
        Ok(TpchScan {
            ctx,
            batches,
            schema,
        })
    }
}

impl Operator for TpchScan {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn next_batch(&mut self) -> Result<Option<RecordBatch>> {
        self.ctx.check()?;
        let batch = self.batches.next().transpose()?;
        if let Some(b) = &batch {
            Progress::add(&self.ctx.progress.rows_read, b.num_rows() as u64);
        }
        Ok(batch)
    }
}
