//! From a logical plan to a tree of operators. No I/O happens here: scans
//! open their files when first pulled.

use std::sync::Arc;

use crate::analyze::{self, Analysis};
use crate::error::Result;
use crate::exec::aggregate::parallel::{self, ParallelAggregate};
use crate::exec::aggregate::streaming::{self, StreamingAggregate};
use crate::exec::aggregate::Aggregate;
use crate::exec::analyzed::Analyzed;
use crate::exec::filter::Filter;
use crate::exec::hash_join::HashJoin;
use crate::exec::join_sides::{self, JoinSides};
use crate::exec::limit::Limit;
use crate::exec::prefetch::Prefetch;
use crate::exec::project::Project;
use crate::exec::scan_parquet::ParquetScan;
use crate::exec::scan_text::TextScan;
use crate::exec::sort::Sort;
use crate::exec::union::Union;
use crate::exec::values::Values;
use crate::exec::window::Window;
use crate::exec::{BoxedOperator, RunContext, THREADED_POOL_BYTES_MIN};
use crate::plan::logical::{LogicalPlan, SortKey};
use crate::plan::optimizer;
use crate::plan::Expr;
use crate::source::{FileFormat, OrderColumn};

pub fn build(plan: LogicalPlan, ctx: &Arc<RunContext>) -> Result<BoxedOperator> {
    build_node(plan, ctx, None)
}

/// [`build`], for a plan whose rows go straight out (to a file, stdout or
/// the terminal's table), where strings as views or plain are the same: a
/// sort at the root (or under a limit there) hands them out plain, as it
/// holds them (see [`Sort::with_plain_strings`]). Not for session tables,
/// whose scans expect the types their table was planned with.
pub fn build_for_writer(plan: LogicalPlan, ctx: &Arc<RunContext>) -> Result<BoxedOperator> {
    match plan {
        LogicalPlan::Sort { input, keys, fetch } => Ok(Box::new(
            Sort::new(ctx.clone(), build(*input, ctx)?, keys, fetch)?.with_plain_strings(),
        )),
        LogicalPlan::Limit { input, skip, fetch } if matches!(*input, LogicalPlan::Sort { .. }) => {
            Ok(Box::new(Limit::new(
                build_for_writer(*input, ctx)?,
                skip,
                fetch,
            )))
        }
        plan => build(plan, ctx),
    }
}

/// [`build`], with every operator wrapped to record what it does into
/// `analysis` (EXPLAIN ANALYZE). Nodes are added in pre-order, the order in
/// which the plan prints its lines.
pub fn build_analyzed(
    plan: LogicalPlan,
    ctx: &Arc<RunContext>,
    analysis: &Arc<Analysis>,
) -> Result<BoxedOperator> {
    build_node(plan, ctx, Some(analysis))
}

fn build_node(
    plan: LogicalPlan,
    ctx: &Arc<RunContext>,
    analysis: Option<&Arc<Analysis>>,
) -> Result<BoxedOperator> {
    let Some(analysis) = analysis else {
        return build_operator(plan, ctx, None);
    };
    let node = analysis.add_node();
    // What the operator reserves while it is built is its own.
    let previous = analyze::enter(Some(node.clone()));
    let op = build_operator(plan, ctx, Some(analysis));
    analyze::leave(previous);
    Ok(Box::new(Analyzed::new(op?, node)))
}

fn build_operator(
    plan: LogicalPlan,
    ctx: &Arc<RunContext>,
    analysis: Option<&Arc<Analysis>>,
) -> Result<BoxedOperator> {
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
        LogicalPlan::Filter { input, predicate } => Box::new(Filter::new(
            ctx.clone(),
            build_node(*input, ctx, analysis)?,
            predicate,
        )),
        LogicalPlan::Project {
            input,
            exprs,
            schema,
        } => Box::new(Project::new(
            build_node(*input, ctx, analysis)?,
            exprs,
            schema,
        )),
        LogicalPlan::Limit { input, skip, fetch } => {
            Box::new(Limit::new(build_node(*input, ctx, analysis)?, skip, fetch))
        }
        LogicalPlan::Union { inputs, schema } => Box::new(Union::new(
            inputs
                .into_iter()
                .map(|i| build_node(i, ctx, analysis))
                .collect::<Result<_>>()?,
            schema,
        )),
        LogicalPlan::Values { batch } => Box::new(Values::new(batch)),
        LogicalPlan::Aggregate {
            input,
            group,
            aggregates,
            schema,
        } => {
            let order = ordering(&input);
            let columns: Vec<usize> = order.iter().map(|o| o.column).collect();
            let ordered = streaming::suits(&group, &columns, &input.schema());
            let input = build_node(*input, ctx, analysis)?;
            if ordered {
                return Ok(Box::new(StreamingAggregate::new(
                    ctx.clone(),
                    input,
                    group,
                    aggregates,
                    schema,
                    &order,
                )?));
            }
            // On several threads only where each worker still gets a pool
            // share worth having: under small limits, halving every table
            // costs more in spilling than the second core gives.
            let threads = ctx.config.threads;
            if threads > 1
                && parallel::suits(&group, &aggregates)
                && ctx.budget.pool_bytes() >= THREADED_POOL_BYTES_MIN
            {
                Box::new(ParallelAggregate::new(
                    ctx.clone(),
                    input,
                    group,
                    aggregates,
                    schema,
                    threads,
                )?)
            } else {
                Box::new(Aggregate::new(
                    ctx.clone(),
                    input,
                    group,
                    aggregates,
                    schema,
                )?)
            }
        }
        LogicalPlan::Join {
            left,
            right,
            kind,
            on,
            filter,
            null_aware,
            schema,
        } => {
            // Where the planner knows the left input's size, it chose the
            // build side from facts, not guesses.
            let guessed = !optimizer::size_is_known(&left);
            // The probe side on a thread of its own too: its scan decodes
            // while the join probes (see `Prefetch`).
            let left = Prefetch::wrap(build_node(*left, ctx, analysis)?, ctx);
            let right = build_node(*right, ctx, analysis)?;
            if guessed
                && join_sides::mirrors(kind)
                && ctx.budget.pool_bytes() >= join_sides::POOL_BYTES_MIN
            {
                Box::new(JoinSides::new(
                    ctx.clone(),
                    left,
                    right,
                    kind,
                    on,
                    filter,
                    schema,
                )?)
            } else {
                // The build side is read whole before the first probe row:
                // decoded on a thread of its own meanwhile.
                let right = Prefetch::wrap(right, ctx);
                Box::new(HashJoin::new(
                    ctx.clone(),
                    left,
                    right,
                    kind,
                    on,
                    filter,
                    null_aware,
                    schema,
                )?)
            }
        }
        LogicalPlan::Window {
            input,
            exprs,
            schema,
        } => {
            // The window reads its input sorted by partition then order
            // keys; the sort is part of this node, unless the input comes
            // sorted so (a window with the same keys below, a sorted file).
            let keys = exprs.first().map(|w| w.sort_keys()).unwrap_or_default();
            let sorted_already = sorted_by(&keys, &ordering(&input));
            let input = build_node(*input, ctx, analysis)?;
            let sorted: BoxedOperator = if keys.is_empty() || sorted_already {
                input
            } else {
                Box::new(Sort::new(ctx.clone(), input, keys, None)?)
            };
            Box::new(Window::new(ctx.clone(), sorted, exprs, schema)?)
        }
        LogicalPlan::Sort { input, keys, fetch } => Box::new(Sort::new(
            ctx.clone(),
            build_node(*input, ctx, analysis)?,
            keys,
            fetch,
        )?),
    })
}

/// The leading keys that are plain columns, as an ordering; a column seen
/// before orders nothing more and is left out.
fn key_columns(keys: &[SortKey]) -> Vec<OrderColumn> {
    let mut order: Vec<OrderColumn> = Vec::new();
    for k in keys {
        let Expr::Column { index, .. } = &k.expr else {
            break;
        };
        if order.iter().all(|o| o.column != *index) {
            order.push(OrderColumn {
                column: *index,
                descending: k.descending,
                nulls_first: k.nulls_first,
            });
        }
    }
    order
}

/// Whether rows in `order` are already sorted by `keys`: every key is a
/// column, and those columns, repeats left out (a window partitioned and
/// ordered by `k` sorts by `k, k`), begin the ordering in the same
/// directions. Ties stay in input order either way, as the sort is stable.
pub fn sorted_by(keys: &[SortKey], order: &[OrderColumn]) -> bool {
    keys.iter().all(|k| matches!(k.expr, Expr::Column { .. }))
        && order.starts_with(&key_columns(keys))
}

/// The columns (output positions, major key first) whose values `plan`'s
/// rows come ordered by, as far as can be known: what a sort (or a window,
/// by its partition then order keys) on plain columns says, or a Parquet
/// file whose metadata and statistics say so
/// ([`crate::source::parquet_ordering`]), through the operators that keep
/// row order and the columns they pass on.
pub fn ordering(plan: &LogicalPlan) -> Vec<OrderColumn> {
    match plan {
        LogicalPlan::Sort { keys, .. } => key_columns(keys),
        // The window sorts its input by partition then order keys (see
        // `build_operator`) and passes the rows on in that order, its results
        // after the input's columns.
        LogicalPlan::Window { exprs, .. } => {
            key_columns(&exprs.first().map(|w| w.sort_keys()).unwrap_or_default())
        }
        LogicalPlan::Scan {
            source, projection, ..
        } => source
            .ordering
            .iter()
            .map_while(|o| {
                let column = projection.iter().position(|&p| p == o.column)?;
                Some(OrderColumn { column, ..*o })
            })
            .collect(),
        LogicalPlan::Filter { input, .. } | LogicalPlan::Limit { input, .. } => ordering(input),
        LogicalPlan::Project { input, exprs, .. } => ordering(input)
            .into_iter()
            .map_while(|o| {
                let column = exprs
                    .iter()
                    .position(|e| matches!(e, Expr::Column { index, .. } if *index == o.column))?;
                Some(OrderColumn { column, ..o })
            })
            .collect(),
        _ => Vec::new(),
    }
}
