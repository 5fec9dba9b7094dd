//! From a logical plan to a tree of operators. No I/O happens here: scans
//! open their files when first pulled.

use std::sync::Arc;

use crate::error::Result;
use crate::exec::aggregate::Aggregate;
use crate::exec::filter::Filter;
use crate::exec::hash_join::HashJoin;
use crate::exec::limit::Limit;
use crate::exec::project::Project;
use crate::exec::scan_parquet::ParquetScan;
use crate::exec::scan_text::TextScan;
use crate::exec::sort::Sort;
use crate::exec::union::Union;
use crate::exec::values::Values;
use crate::exec::{BoxedOperator, RunContext};
use crate::plan::logical::LogicalPlan;
use crate::source::FileFormat;

pub fn build(plan: LogicalPlan, ctx: &Arc<RunContext>) -> Result<BoxedOperator> {
    Ok(match plan {
        LogicalPlan::Scan {
            source,
            projection,
            filters,
            limit,
        } => match source.format {
            FileFormat::Parquet => Box::new(ParquetScan::new(
                ctx.clone(),
                source,
                projection,
                filters,
                limit,
            )?),
            FileFormat::Csv(_) | FileFormat::Ndjson => Box::new(TextScan::new(
                ctx.clone(),
                source,
                projection,
                filters,
                limit,
            )?),
        },
        LogicalPlan::Filter { input, predicate } => {
            Box::new(Filter::new(ctx.clone(), build(*input, ctx)?, predicate))
        }
        LogicalPlan::Project {
            input,
            exprs,
            schema,
        } => Box::new(Project::new(build(*input, ctx)?, exprs, schema)),
        LogicalPlan::Limit { input, skip, fetch } => {
            Box::new(Limit::new(build(*input, ctx)?, skip, fetch))
        }
        LogicalPlan::Union { inputs, schema } => Box::new(Union::new(
            inputs
                .into_iter()
                .map(|i| build(i, ctx))
                .collect::<Result<_>>()?,
            schema,
        )),
        LogicalPlan::Values { batch } => Box::new(Values::new(batch)),
        LogicalPlan::Aggregate {
            input,
            group,
            aggregates,
            schema,
        } => Box::new(Aggregate::new(
            ctx.clone(),
            build(*input, ctx)?,
            group,
            aggregates,
            schema,
        )?),
        LogicalPlan::Join {
            left,
            right,
            kind,
            on,
            filter,
            null_aware,
            schema,
        } => Box::new(HashJoin::new(
            ctx.clone(),
            build(*left, ctx)?,
            build(*right, ctx)?,
            kind,
            on,
            filter,
            null_aware,
            schema,
        )?),
        LogicalPlan::Sort { input, keys, fetch } => {
            Box::new(Sort::new(ctx.clone(), build(*input, ctx)?, keys, fetch)?)
        }
    })
}
