//! Rewrites that make a logical plan cheaper without changing its result.
//!
//! 1. **Filters down.** Conjuncts of a WHERE move through projections (by
//!    substituting the projected expressions), through unions (into every
//!    branch), through sorts, and through aggregates when they read only
//!    group columns, into the scan, which applies them while
//!    reading: Parquet row groups are pruned by statistics and rows by a row
//!    filter, before the other columns are decoded.
//!    Around a join, each condition goes to the side it reads when the
//!    join kind allows, and an equality across an inner join becomes a
//!    hash key. Semi and anti joins (`IN`, `EXISTS`) then move down the
//!    same way, to the inner-join input that has the columns they test.
//!    A tree of inner joins whose written order would make a cross product
//!    that a later input avoids is reordered, and so is one whose written
//!    order looks several times costlier, by sizes from Parquet metadata
//!    ([`crate::plan::cardinality`]), than an order found from them;
//!    otherwise it stays.
//! 2. **Columns out.** Each scan reads only the columns something above it
//!    uses; aggregates nobody reads are dropped.
//! 3. **No-op projections and sorts out.** What `SELECT *` and pruning
//!    leave behind, and sorts of rows that already come in their order.
//! 4. **Limits down.** A LIMIT is copied below projections and into union
//!    branches and scans, so that reading stops as soon as enough rows exist;
//!    above a sort it turns the sort into a top-k.
//!
//! Constant folding happens earlier, as the SQL planner builds expressions.
//! The optimizer does no I/O.

use std::collections::BTreeSet;

use crate::error::{Error, Result};
use crate::plan::cardinality::{equality_columns, selectivity, Cardinality};
use crate::plan::expr::{BinaryOp, Expr};
use crate::plan::logical::{JoinKind, LogicalPlan};
use crate::plan::physical;

pub fn optimize(plan: LogicalPlan) -> Result<LogicalPlan> {
    let plan = push_filters(plan)?;
    let plan = push_semi_joins(plan)?;
    let plan = connect_inner_joins(plan)?;
    let all: Vec<usize> = (0..plan.schema().fields().len()).collect();
    let plan = prune(plan, &all)?;
    let plan = choose_build_sides(plan)?;
    let plan = remove_identity_projections(plan)?;
    let plan = remove_needless_sorts(plan)?;
    push_limits(plan)
}

/// A sort whose input already comes in its order goes
/// ([`physical::sorted_by`]): `SELECT DISTINCT ON (k) ... ORDER BY k, x`
/// is a window sorted by `k, x` (see `sql::window::distinct_on`), and a
/// Parquet file may declare the order asked for. Before limits move down,
/// so that a LIMIT above such a sort reaches the scan.
fn remove_needless_sorts(plan: LogicalPlan) -> Result<LogicalPlan> {
    let plan = map_children(plan, remove_needless_sorts)?;
    match plan {
        LogicalPlan::Sort {
            input,
            keys,
            fetch: None,
        } if physical::sorted_by(&keys, &physical::ordering(&input)) => Ok(*input),
        other => Ok(other),
    }
}

/// Drop projections that pass their input through unchanged (what `SELECT *`
/// and pruning leave behind), so that they cost nothing and do not stand
/// between a limit and the scan.
fn remove_identity_projections(plan: LogicalPlan) -> Result<LogicalPlan> {
    match plan {
        LogicalPlan::Project {
            input,
            exprs,
            schema,
        } => {
            let input = remove_identity_projections(*input)?;
            let in_schema = input.schema();
            let identity = exprs.len() == in_schema.fields().len()
                && exprs.iter().enumerate().all(|(i, e)| {
                    matches!(e, Expr::Column { index, .. } if *index == i)
                        && schema.field(i).name() == in_schema.field(i).name()
                        && schema.field(i).data_type() == in_schema.field(i).data_type()
                });
            if identity {
                Ok(input)
            } else {
                Ok(LogicalPlan::Project {
                    input: Box::new(input),
                    exprs,
                    schema,
                })
            }
        }
        other => map_children(other, remove_identity_projections),
    }
}

fn push_filters(plan: LogicalPlan) -> Result<LogicalPlan> {
    match plan {
        LogicalPlan::Filter { input, predicate } => {
            let mut conjuncts = Vec::new();
            predicate.split_conjunction(&mut conjuncts);
            push_down(*input, conjuncts)
        }
        join @ LogicalPlan::Join { .. } => push_down(join, Vec::new()),
        other => map_children(other, push_filters),
    }
}

/// Place `conjuncts` (bound to `plan`'s output) as low in `plan` as they go.
fn push_down(plan: LogicalPlan, conjuncts: Vec<Expr>) -> Result<LogicalPlan> {
    if conjuncts.is_empty() && !matches!(plan, LogicalPlan::Join { .. }) {
        return push_filters(plan);
    }
    match plan {
        LogicalPlan::Join {
            left,
            right,
            kind,
            on,
            filter,
            null_aware,
            ..
        } => push_into_join(*left, *right, kind, on, filter, null_aware, conjuncts),
        LogicalPlan::Scan {
            source,
            projection,
            mut filters,
            limit: None,
        } => {
            for c in conjuncts {
                filters.push(c.remap(&|i| projection.get(i).copied())?);
            }
            Ok(LogicalPlan::Scan {
                source,
                projection,
                filters,
                limit: None,
            })
        }
        LogicalPlan::Filter { input, predicate } => {
            let mut all = conjuncts;
            predicate.split_conjunction(&mut all);
            push_down(*input, all)
        }
        LogicalPlan::Project {
            input,
            exprs,
            schema,
        } => {
            let substituted = conjuncts
                .iter()
                .map(|c| {
                    c.map_columns(&mut |i, _| {
                        exprs.get(i).cloned().ok_or_else(|| {
                            Error::Internal(format!("filter reads column #{i} past a projection"))
                        })
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            Ok(LogicalPlan::Project {
                input: Box::new(push_down(*input, substituted)?),
                exprs,
                schema,
            })
        }
        LogicalPlan::Union { inputs, schema } => Ok(LogicalPlan::Union {
            inputs: inputs
                .into_iter()
                .map(|input| push_down(input, conjuncts.clone()))
                .collect::<Result<_>>()?,
            schema,
        }),
        LogicalPlan::Sort {
            input,
            keys,
            fetch: None,
        } => Ok(LogicalPlan::Sort {
            input: Box::new(push_down(*input, conjuncts)?),
            keys,
            fetch: None,
        }),
        // A condition on group columns alone (HAVING l_returnflag = 'R')
        // holds for a group exactly when it holds for each of its rows, so it
        // can filter rows before they are aggregated.
        LogicalPlan::Aggregate {
            input,
            group,
            aggregates,
            schema,
        } => {
            // Without groups nothing goes below: `HAVING false` over a global
            // aggregate gives no row, not a row that counted nothing.
            let (below, above): (Vec<Expr>, Vec<Expr>) = conjuncts
                .into_iter()
                .partition(|c| !group.is_empty() && c.columns().iter().all(|&i| i < group.len()));
            let below = below
                .iter()
                .map(|c| c.map_columns(&mut |i, _| Ok(group[i].clone())))
                .collect::<Result<Vec<_>>>()?;
            let plan = LogicalPlan::Aggregate {
                input: Box::new(push_down(*input, below)?),
                group,
                aggregates,
                schema,
            };
            Ok(filtered(plan, above))
        }
        // Below a LIMIT (or a top-k, or a scan that stops early) a filter
        // would change which rows are counted; it stays above.
        other => Ok(LogicalPlan::Filter {
            input: Box::new(push_filters(other)?),
            predicate: Expr::conjunction(conjuncts).expect("conjuncts is not empty"),
        }),
    }
}

/// Place `conjuncts` (over the join's output) and the join's own `filter`
/// where they belong. Which side a condition may move to depends on the
/// kind: below the side whose rows are kept whole (the left of a LEFT
/// join), a WHERE condition filters the same rows; below the other, it
/// would turn dropped rows into NULL-extended ones. An equality between
/// the two sides of an inner join becomes a hash key, so that `FROM a, b
/// WHERE a.x = b.y` is a hash join, not a cross join.
fn push_into_join(
    left: LogicalPlan,
    right: LogicalPlan,
    kind: JoinKind,
    mut on: Vec<(Expr, Expr)>,
    filter: Option<Expr>,
    null_aware: bool,
    conjuncts: Vec<Expr>,
) -> Result<LogicalPlan> {
    let lw = left.schema().fields().len();
    let left_only = |c: &Expr| c.columns().iter().all(|&i| i < lw);
    let right_only = |c: &Expr| {
        let cols = c.columns();
        !cols.is_empty() && cols.iter().all(|&i| i >= lw)
    };
    let to_right = |c: &Expr| c.remap(&|i| i.checked_sub(lw));
    let (mut to_l, mut to_r, mut above, mut join_filter) = (vec![], vec![], vec![], vec![]);
    // The join's own condition: for an inner join it is like WHERE; for
    // the others only the side whose rows it merely selects can take it.
    let mut own = Vec::new();
    if let Some(f) = filter {
        f.split_conjunction(&mut own);
    }
    for c in own {
        match kind {
            JoinKind::Inner => {}
            JoinKind::Left | JoinKind::Semi | JoinKind::Anti if right_only(&c) => {
                to_r.push(to_right(&c)?);
                continue;
            }
            JoinKind::Right if left_only(&c) && !c.columns().is_empty() => {
                to_l.push(c);
                continue;
            }
            _ => {
                join_filter.push(c);
                continue;
            }
        }
        // Inner: treated as the WHERE conditions below.
        above.push(c);
    }
    let mut wheres = conjuncts;
    if kind == JoinKind::Inner {
        wheres.append(&mut above);
    }
    for c in wheres {
        let goes_left = left_only(&c)
            && matches!(
                kind,
                JoinKind::Inner | JoinKind::Left | JoinKind::Semi | JoinKind::Anti
            );
        let goes_right = right_only(&c) && matches!(kind, JoinKind::Inner | JoinKind::Right);
        if goes_left {
            to_l.push(c);
        } else if goes_right {
            to_r.push(to_right(&c)?);
        } else if kind == JoinKind::Inner {
            match equi_key(&c, lw)? {
                Some(key) => on.push(key),
                None => join_filter.push(c),
            }
        } else {
            above.push(c);
        }
    }
    let join = LogicalPlan::join(
        push_down(left, to_l)?,
        push_down(right, to_r)?,
        kind,
        on,
        Expr::conjunction(join_filter),
        null_aware,
    );
    Ok(filtered(join, above))
}

/// Reorder a tree of inner joins where the query's order joins two inputs
/// that share no condition (a cross product) and a later input would
/// connect them: `FROM nation, orders, customer WHERE c_nationkey =
/// n_nationkey AND c_custkey = o_custkey` pairs nation with orders before
/// customer links them. The inputs are taken in the query's order, except
/// that each next one is the first still waiting that shares a condition
/// with those already joined.
///
/// That order is then weighed against one found from sizes
/// ([`JoinGraph::cheaper_order`]), which replaces it only when it looks
/// [`REORDER_GAIN_MIN`] times cheaper: `FROM lineitem, orders, customer,
/// nation WHERE ... AND n_name = 'GERMANY'` then joins nation to customer
/// first, and SF1 takes 0.53 s instead of 2.2 to 2.5 s.
///
/// A first greedy order by estimated join sizes, which always replaced the
/// written one and read a sparse foreign key's range as its distinct
/// values, made TPC-H Q9 join lineitem to supplier and nation first and
/// part (5% kept by a LIKE) late: 2.6 s became 5.6 s. With keys told apart
/// from foreign keys (see `cardinality`), the sized order of Q9 is the
/// written one; those of Q5 and Q10 look 1.3 and 2.1 times cheaper, below
/// the bar, and stay as written.
fn connect_inner_joins(plan: LogicalPlan) -> Result<LogicalPlan> {
    if !matches!(
        plan,
        LogicalPlan::Join {
            kind: JoinKind::Inner,
            ..
        }
    ) {
        return map_children(plan, connect_inner_joins);
    }
    let original = plan.clone();
    let mut leaves = Vec::new();
    let mut conditions = Vec::new();
    flatten_inner(plan, 0, &mut leaves, &mut conditions)?;
    // Each leaf's first column in the query's order, and its width.
    let widths: Vec<usize> = leaves.iter().map(|l| l.schema().fields().len()).collect();
    let starts: Vec<usize> = widths
        .iter()
        .scan(0, |at, w| {
            let start = *at;
            *at += w;
            Some(start)
        })
        .collect();
    let reads: Vec<BTreeSet<usize>> = conditions
        .iter()
        .map(|c| {
            c.columns()
                .into_iter()
                .map(|i| leaf_of(&starts, i))
                .collect()
        })
        .collect();
    // Whether `next` shares a condition with the leaves in `placed`.
    let connects = |placed: &[usize], next: usize| {
        reads.iter().any(|r| {
            r.contains(&next)
                && r.iter().any(|l| placed.contains(l))
                && r.iter().all(|l| *l == next || placed.contains(l))
        })
    };
    let mut order = vec![0];
    let mut waiting: Vec<usize> = (1..leaves.len()).collect();
    while !waiting.is_empty() {
        let at = waiting
            .iter()
            .position(|&l| connects(&order, l))
            .unwrap_or(0);
        order.push(waiting.remove(at));
    }
    let joins = JoinGraph {
        conditions: &conditions,
        reads: &reads,
        starts: &starts,
    };
    if let Some(cheaper) = joins.cheaper_order(&leaves, &order) {
        order = cheaper;
    }
    if order.iter().enumerate().all(|(i, &l)| i == l) {
        return inner_leaves_mapped(original);
    }
    let leaves = leaves
        .into_iter()
        .map(connect_inner_joins)
        .collect::<Result<Vec<_>>>()?;
    // Old column → new column, with the leaves in `order`.
    let mut new_index = vec![0; starts.last().map_or(0, |s| s + widths[widths.len() - 1])];
    let mut at = 0;
    for &l in &order {
        for c in 0..widths[l] {
            new_index[starts[l] + c] = at + c;
        }
        at += widths[l];
    }
    let mut leaves: Vec<Option<LogicalPlan>> = leaves.into_iter().map(Some).collect();
    let take = |leaves: &mut Vec<Option<LogicalPlan>>, l: usize| {
        leaves[l]
            .take()
            .ok_or_else(|| Error::Internal("a join input placed twice".into()))
    };
    let mut plan = take(&mut leaves, order[0])?;
    let mut placed = vec![order[0]];
    let mut pending: Vec<(Expr, BTreeSet<usize>)> = conditions.into_iter().zip(reads).collect();
    for &l in &order[1..] {
        placed.push(l);
        let (ready, rest): (Vec<_>, Vec<_>) = pending
            .into_iter()
            .partition(|(_, r)| r.iter().all(|x| placed.contains(x)));
        pending = rest;
        let ready = ready
            .into_iter()
            .map(|(c, _)| c.remap(&|i| new_index.get(i).copied()))
            .collect::<Result<Vec<_>>>()?;
        let right = take(&mut leaves, l)?;
        plan = push_into_join(plan, right, JoinKind::Inner, Vec::new(), None, false, ready)?;
    }
    // Conditions on no column at all (constants) go on top.
    let rest = pending
        .into_iter()
        .map(|(c, _)| c.remap(&|i| new_index.get(i).copied()))
        .collect::<Result<Vec<_>>>()?;
    filtered(plan, rest).select_columns(&new_index)
}

/// The input, of inputs side by side whose first columns are `starts`,
/// that holds `column`.
fn leaf_of(starts: &[usize], column: usize) -> usize {
    starts.iter().rposition(|&s| s <= column).unwrap_or(0)
}

/// How many times cheaper, by [`JoinGraph::cost`], an order found by
/// sizes must look than the written one to replace it. The guesses are
/// coarse (a filter keeps "half"), so the written order is kept unless it
/// looks clearly worse: of the TPC-H queries in the bench, the largest gain
/// seen is Q10's 2.1, while the lineitem, orders, customer, nation order
/// of [`connect_inner_joins`] looks 14.5 times costlier than nation first.
const REORDER_GAIN_MIN: f64 = 4.0;

/// The inner joins of one tree, for ordering them by size: the inputs'
/// conditions over all their columns side by side, the inputs each
/// condition reads, and each input's first column.
struct JoinGraph<'a> {
    conditions: &'a [Expr],
    reads: &'a [BTreeSet<usize>],
    starts: &'a [usize],
}

/// Inputs joined so far, left-deep, and the guess at their result.
#[derive(Clone)]
struct Joined {
    order: Vec<usize>,
    /// Where each input's columns begin in `card.columns`, once placed.
    at: Vec<Option<usize>>,
    applied: Vec<bool>,
    card: Cardinality,
}

impl JoinGraph<'_> {
    /// An order of `leaves` whose guessed [`cost`](Self::cost) is
    /// [`REORDER_GAIN_MIN`] times below `written`'s, if there is one and
    /// every input's rows can be guessed. Each input in turn starts a
    /// greedy order that joins next the connected input giving the fewest
    /// rows; the cheapest of those is the candidate.
    fn cheaper_order(&self, leaves: &[LogicalPlan], written: &[usize]) -> Option<Vec<usize>> {
        if leaves.len() < 3 {
            // Two inputs: the build side is chosen later, by size.
            return None;
        }
        let cards: Vec<Cardinality> = leaves.iter().map(Cardinality::of).collect::<Option<_>>()?;
        let written_cost = self.cost(&cards, written);
        let (best, best_cost) = (0..leaves.len())
            .map(|first| {
                let order = self.greedy(&cards, first);
                let cost = self.cost(&cards, &order);
                (order, cost)
            })
            .min_by(|a, b| a.1.total_cmp(&b.1))?;
        (best_cost * REORDER_GAIN_MIN < written_cost).then_some(best)
    }

    /// The rows of every intermediate result of joining `order` left-deep:
    /// what the joins build, probe and write beyond the inputs themselves
    /// and the final result, which no order changes.
    fn cost(&self, cards: &[Cardinality], order: &[usize]) -> f64 {
        let mut joined = self.start(cards, order[0]);
        let mut cost = 0.0;
        for (i, &leaf) in order.iter().enumerate().skip(1) {
            joined = self.extend(&joined, cards, leaf);
            if i + 1 < order.len() {
                cost += joined.card.rows;
            }
        }
        cost
    }

    /// From `first`, each next input is the one with a condition linking
    /// it to those joined that gives the fewest rows (the earliest written
    /// on a tie), or, where none links, the earliest written.
    fn greedy(&self, cards: &[Cardinality], first: usize) -> Vec<usize> {
        let mut joined = self.start(cards, first);
        let mut waiting: Vec<usize> = (0..cards.len()).filter(|&l| l != first).collect();
        while !waiting.is_empty() {
            let linked = waiting
                .iter()
                .enumerate()
                .filter(|&(_, &l)| self.links(&joined, l))
                .map(|(at, &l)| (at, self.extend(&joined, cards, l)))
                .min_by(|a, b| a.1.card.rows.total_cmp(&b.1.card.rows));
            joined = match linked {
                Some((at, next)) => {
                    waiting.remove(at);
                    next
                }
                None => {
                    let leaf = waiting.remove(0);
                    self.extend(&joined, cards, leaf)
                }
            };
        }
        joined.order
    }

    fn start(&self, cards: &[Cardinality], first: usize) -> Joined {
        let mut at = vec![None; cards.len()];
        at[first] = Some(0);
        Joined {
            order: vec![first],
            at,
            applied: vec![false; self.conditions.len()],
            card: cards[first].clone(),
        }
    }

    /// Whether an equality links `leaf` to an input already joined.
    fn links(&self, joined: &Joined, leaf: usize) -> bool {
        self.conditions.iter().zip(self.reads).any(|(c, r)| {
            r.contains(&leaf)
                && r.iter().any(|l| joined.at[*l].is_some())
                && r.iter().all(|l| *l == leaf || joined.at[*l].is_some())
                && equality_columns(c).is_some()
        })
    }

    /// `joined` with `leaf` joined on every condition that then becomes
    /// ready: equalities of a column on each side as keys, the rest as
    /// filters.
    fn extend(&self, joined: &Joined, cards: &[Cardinality], leaf: usize) -> Joined {
        let mut next = joined.clone();
        next.at[leaf] = Some(joined.card.columns.len());
        next.order.push(leaf);
        let mut keys = Vec::new();
        let mut filters = Vec::new();
        for (i, (c, r)) in self.conditions.iter().zip(self.reads).enumerate() {
            if next.applied[i] || !r.iter().all(|l| next.at[*l].is_some()) || r.is_empty() {
                continue;
            }
            next.applied[i] = true;
            let key = equality_columns(c).and_then(|(a, b)| {
                let (la, lb) = (leaf_of(self.starts, a), leaf_of(self.starts, b));
                let placed =
                    |column: usize, l: usize| joined.at[l].map(|at| at + column - self.starts[l]);
                if lb == leaf && la != leaf {
                    Some((placed(a, la)?, b - self.starts[leaf]))
                } else if la == leaf && lb != leaf {
                    Some((placed(b, lb)?, a - self.starts[leaf]))
                } else {
                    None
                }
            });
            match key {
                Some(k) => keys.push(k),
                None => filters.push(c),
            }
        }
        next.card = joined.card.join(&cards[leaf], &keys, &filters);
        next
    }
}

/// `plan`, a tree of inner joins kept as it is, with the same pass applied
/// below its inputs.
fn inner_leaves_mapped(plan: LogicalPlan) -> Result<LogicalPlan> {
    match plan {
        join @ LogicalPlan::Join {
            kind: JoinKind::Inner,
            ..
        } => map_children(join, inner_leaves_mapped),
        other => connect_inner_joins(other),
    }
}

/// The inputs of a tree of inner joins, left to right, and every key pair
/// and filter as a condition over all their columns side by side.
fn flatten_inner(
    plan: LogicalPlan,
    offset: usize,
    leaves: &mut Vec<LogicalPlan>,
    conditions: &mut Vec<Expr>,
) -> Result<()> {
    let LogicalPlan::Join {
        left,
        right,
        kind: JoinKind::Inner,
        on,
        filter,
        ..
    } = plan
    else {
        leaves.push(plan);
        return Ok(());
    };
    let lw = left.schema().fields().len();
    flatten_inner(*left, offset, leaves, conditions)?;
    flatten_inner(*right, offset + lw, leaves, conditions)?;
    let shift = |e: &Expr, by: usize| e.remap(&|i| Some(i + by));
    for (l, r) in on {
        conditions.push(Expr::binary(
            BinaryOp::Eq,
            shift(&l, offset)?,
            shift(&r, offset + lw)?,
        ));
    }
    if let Some(f) = filter {
        let mut conjuncts = Vec::new();
        f.split_conjunction(&mut conjuncts);
        for c in conjuncts {
            conditions.push(shift(&c, offset)?);
        }
    }
    Ok(())
}

/// Move each semi and anti join down to the input that has the columns it
/// tests: through projections (substituting the projected expressions),
/// filters, and into the side of an inner join that holds those columns.
/// Both only drop rows, by a test on the row's own columns, so the result
/// is the same; but `WHERE o_orderkey IN (...)` over a join of lineitem,
/// orders and customer then filters orders before the joins, not six
/// million joined rows after them (TPC-H Q18).
fn push_semi_joins(plan: LogicalPlan) -> Result<LogicalPlan> {
    match map_children(plan, push_semi_joins)? {
        LogicalPlan::Join {
            left,
            right,
            kind: kind @ (JoinKind::Semi | JoinKind::Anti),
            on,
            filter,
            null_aware,
            ..
        } => sink_semi(
            *left,
            SemiJoin {
                right: *right,
                kind,
                on,
                filter,
                null_aware,
            },
        ),
        other => Ok(other),
    }
}

/// A semi or anti join without its left input.
struct SemiJoin {
    right: LogicalPlan,
    kind: JoinKind,
    on: Vec<(Expr, Expr)>,
    filter: Option<Expr>,
    null_aware: bool,
}

impl SemiJoin {
    fn over(self, left: LogicalPlan) -> LogicalPlan {
        LogicalPlan::join(
            left,
            self.right,
            self.kind,
            self.on,
            self.filter,
            self.null_aware,
        )
    }

    /// The same test with its left columns (those below `left_width`)
    /// rewritten by `f`, and the right's (in the filter) renumbered to
    /// follow `new_left_width` columns.
    fn rebind(
        self,
        left_width: usize,
        new_left_width: usize,
        f: &dyn Fn(usize, &str) -> Result<Expr>,
    ) -> Result<SemiJoin> {
        let mut map = |i: usize, name: &str| {
            if i < left_width {
                f(i, name)
            } else {
                Ok(Expr::column(i - left_width + new_left_width, name))
            }
        };
        Ok(SemiJoin {
            on: self
                .on
                .into_iter()
                .map(|(l, r)| Ok((l.map_columns(&mut map)?, r)))
                .collect::<Result<_>>()?,
            filter: self.filter.map(|f| f.map_columns(&mut map)).transpose()?,
            ..self
        })
    }
}

fn sink_semi(left: LogicalPlan, semi: SemiJoin) -> Result<LogicalPlan> {
    let lw = left.schema().fields().len();
    let mut used = BTreeSet::new();
    for (l, _) in &semi.on {
        used.extend(l.columns());
    }
    if let Some(f) = &semi.filter {
        used.extend(f.columns().into_iter().filter(|&i| i < lw));
    }
    if used.is_empty() {
        return Ok(semi.over(left));
    }
    match left {
        LogicalPlan::Join {
            left: a,
            right: b,
            kind: JoinKind::Inner,
            on,
            filter,
            null_aware,
            ..
        } => {
            let aw = a.schema().fields().len();
            let (a, b) = if used.iter().all(|&i| i < aw) {
                let semi = semi.rebind(lw, aw, &|i, name| Ok(Expr::column(i, name)))?;
                (sink_semi(*a, semi)?, *b)
            } else if used.iter().all(|&i| i >= aw) {
                let semi = semi.rebind(lw, lw - aw, &|i, name| Ok(Expr::column(i - aw, name)))?;
                (*a, sink_semi(*b, semi)?)
            } else {
                let join = LogicalPlan::join(*a, *b, JoinKind::Inner, on, filter, null_aware);
                return Ok(semi.over(join));
            };
            Ok(LogicalPlan::join(
                a,
                b,
                JoinKind::Inner,
                on,
                filter,
                null_aware,
            ))
        }
        LogicalPlan::Project {
            input,
            exprs,
            schema,
        } => {
            let iw = input.schema().fields().len();
            let semi = semi.rebind(lw, iw, &|i, _| Ok(exprs[i].clone()))?;
            Ok(LogicalPlan::Project {
                input: Box::new(sink_semi(*input, semi)?),
                exprs,
                schema,
            })
        }
        LogicalPlan::Filter { input, predicate } => Ok(LogicalPlan::Filter {
            input: Box::new(sink_semi(*input, semi)?),
            predicate,
        }),
        other => Ok(semi.over(other)),
    }
}

/// `plan` under a filter of `conjuncts`, if there are any.
fn filtered(plan: LogicalPlan, conjuncts: Vec<Expr>) -> LogicalPlan {
    match Expr::conjunction(conjuncts) {
        Some(predicate) => LogicalPlan::Filter {
            input: Box::new(plan),
            predicate,
        },
        None => plan,
    }
}

/// `l = r` with `l` over the left side only and `r` over the right only (or
/// the other way round), as a key pair with `r` bound to the right input.
pub(crate) fn equi_key(c: &Expr, lw: usize) -> Result<Option<(Expr, Expr)>> {
    let Expr::Binary {
        op: BinaryOp::Eq,
        left,
        right,
    } = c
    else {
        return Ok(None);
    };
    let side = |e: &Expr| {
        let cols = e.columns();
        if cols.is_empty() {
            None
        } else if cols.iter().all(|&i| i < lw) {
            Some(true)
        } else if cols.iter().all(|&i| i >= lw) {
            Some(false)
        } else {
            None
        }
    };
    let (l, r) = match (side(left), side(right)) {
        (Some(true), Some(false)) => (left, right),
        (Some(false), Some(true)) => (right, left),
        _ => return Ok(None),
    };
    Ok(Some((l.as_ref().clone(), r.remap(&|i| i.checked_sub(lw))?)))
}

/// Rewrite `plan` so that its output is exactly the columns `required` (an
/// ascending list of its current output's indices), reading no others.
fn prune(plan: LogicalPlan, required: &[usize]) -> Result<LogicalPlan> {
    let position = |needed: &[usize]| {
        let needed = needed.to_vec();
        move |i: usize| needed.iter().position(|&n| n == i)
    };
    match plan {
        // The input keeps the columns the calls read and those passed
        // through that are required; calls nobody reads are dropped.
        LogicalPlan::Window { input, exprs, .. } => {
            let width = input.schema().fields().len();
            let calls: Vec<usize> = required
                .iter()
                .filter(|&&i| i >= width)
                .map(|&i| i - width)
                .collect();
            let exprs: Vec<_> = calls.iter().map(|&k| exprs[k].clone()).collect();
            let mut needed: BTreeSet<usize> =
                required.iter().copied().filter(|&i| i < width).collect();
            for w in &exprs {
                for e in w.exprs() {
                    needed.extend(e.columns());
                }
            }
            let needed: Vec<usize> = needed.into_iter().collect();
            let input = prune(*input, &needed)?;
            let at = position(&needed);
            let exprs = exprs
                .iter()
                .map(|w| w.try_map(&mut |e| e.remap(&at)))
                .collect::<Result<Vec<_>>>()?;
            let keep: Vec<usize> = required
                .iter()
                .map(|&i| {
                    if i < width {
                        at(i).expect("a required column is kept")
                    } else {
                        needed.len() + calls.iter().position(|&k| k == i - width).unwrap()
                    }
                })
                .collect();
            if exprs.is_empty() {
                return input.select_columns(&keep);
            }
            LogicalPlan::window(input, exprs).select_columns(&keep)
        }
        LogicalPlan::Scan {
            source,
            projection,
            filters,
            limit,
        } => Ok(LogicalPlan::Scan {
            projection: required.iter().map(|&i| projection[i]).collect(),
            source,
            filters,
            limit,
        }),
        LogicalPlan::Project {
            input,
            exprs,
            schema,
        } => {
            let kept: Vec<Expr> = required.iter().map(|&i| exprs[i].clone()).collect();
            let needed: Vec<usize> = kept
                .iter()
                .flat_map(|e| e.columns())
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect();
            let input = prune(*input, &needed)?;
            let at = position(&needed);
            let exprs = kept
                .iter()
                .map(|e| e.remap(&at))
                .collect::<Result<Vec<_>>>()?;
            Ok(LogicalPlan::Project {
                input: Box::new(input),
                exprs,
                schema: std::sync::Arc::new(schema.project(required)?),
            })
        }
        LogicalPlan::Filter { input, predicate } => {
            let mut needed: BTreeSet<usize> = required.iter().copied().collect();
            needed.extend(predicate.columns());
            let needed: Vec<usize> = needed.into_iter().collect();
            let input = prune(*input, &needed)?;
            let at = position(&needed);
            let predicate = predicate.remap(&at)?;
            let keep: Vec<usize> = required.iter().map(|&i| at(i).unwrap()).collect();
            LogicalPlan::Filter {
                input: Box::new(input),
                predicate,
            }
            .select_columns(&keep)
        }
        LogicalPlan::Sort { input, keys, fetch } => {
            let mut needed: BTreeSet<usize> = required.iter().copied().collect();
            for k in &keys {
                needed.extend(k.expr.columns());
            }
            let needed: Vec<usize> = needed.into_iter().collect();
            let input = prune(*input, &needed)?;
            let at = position(&needed);
            let keys = keys
                .into_iter()
                .map(|mut k| {
                    k.expr = k.expr.remap(&at)?;
                    Ok(k)
                })
                .collect::<Result<Vec<_>>>()?;
            let keep: Vec<usize> = required.iter().map(|&i| at(i).unwrap()).collect();
            LogicalPlan::Sort {
                input: Box::new(input),
                keys,
                fetch,
            }
            .select_columns(&keep)
        }
        LogicalPlan::Limit { input, skip, fetch } => Ok(LogicalPlan::Limit {
            input: Box::new(prune(*input, required)?),
            skip,
            fetch,
        }),
        LogicalPlan::Union { inputs, schema } => Ok(LogicalPlan::Union {
            inputs: inputs
                .into_iter()
                .map(|input| prune(input, required))
                .collect::<Result<_>>()?,
            schema: std::sync::Arc::new(schema.project(required)?),
        }),
        LogicalPlan::Values { batch } => Ok(LogicalPlan::Values {
            batch: batch.project(required)?,
        }),
        LogicalPlan::Join {
            left,
            right,
            kind,
            on,
            filter,
            null_aware,
            ..
        } => {
            let lw = left.schema().fields().len();
            let mut needed_l: BTreeSet<usize> =
                required.iter().copied().filter(|&i| i < lw).collect();
            let mut needed_r: BTreeSet<usize> = required
                .iter()
                .filter(|&&i| i >= lw)
                .map(|&i| i - lw)
                .collect();
            for (l, r) in &on {
                needed_l.extend(l.columns());
                needed_r.extend(r.columns());
            }
            if let Some(f) = &filter {
                for i in f.columns() {
                    if i < lw {
                        needed_l.insert(i);
                    } else {
                        needed_r.insert(i - lw);
                    }
                }
            }
            let needed_l: Vec<usize> = needed_l.into_iter().collect();
            let needed_r: Vec<usize> = needed_r.into_iter().collect();
            let (at_l, at_r) = (position(&needed_l), position(&needed_r));
            let new_lw = needed_l.len();
            let at = |i: usize| {
                if i < lw {
                    at_l(i)
                } else {
                    at_r(i - lw).map(|j| j + new_lw)
                }
            };
            let on = on
                .iter()
                .map(|(l, r)| Ok((l.remap(&at_l)?, r.remap(&at_r)?)))
                .collect::<Result<Vec<_>>>()?;
            let filter = filter.map(|f| f.remap(&at)).transpose()?;
            let keep: Vec<usize> = required.iter().map(|&i| at(i).unwrap()).collect();
            LogicalPlan::join(
                prune(*left, &needed_l)?,
                prune(*right, &needed_r)?,
                kind,
                on,
                filter,
                null_aware,
            )
            .select_columns(&keep)
        }
        // Every group column stays (dropping one would change the groups);
        // aggregates nobody reads are dropped, and the input is pruned to
        // what the rest reads.
        LogicalPlan::Aggregate {
            input,
            group,
            aggregates,
            schema,
        } => {
            let g = group.len();
            let kept: Vec<usize> = (0..g)
                .chain(required.iter().copied().filter(|&i| i >= g))
                .collect();
            let aggregates: Vec<_> = kept[g..]
                .iter()
                .map(|&i| aggregates[i - g].clone())
                .collect();
            let mut needed = BTreeSet::new();
            for e in group
                .iter()
                .chain(aggregates.iter().flat_map(|a| a.exprs()))
            {
                needed.extend(e.columns());
            }
            let needed: Vec<usize> = needed.into_iter().collect();
            let input = prune(*input, &needed)?;
            let at = position(&needed);
            let group = group
                .iter()
                .map(|e| e.remap(&at))
                .collect::<Result<Vec<_>>>()?;
            let aggregates = aggregates
                .iter()
                .map(|a| a.try_map(&mut |e| e.remap(&at)))
                .collect::<Result<Vec<_>>>()?;
            let keep: Vec<usize> = required
                .iter()
                .map(|&i| kept.iter().position(|&k| k == i).unwrap())
                .collect();
            LogicalPlan::Aggregate {
                input: Box::new(input),
                group,
                aggregates,
                schema: std::sync::Arc::new(schema.project(&kept)?),
            }
            .select_columns(&keep)
        }
    }
}

fn push_limits(plan: LogicalPlan) -> Result<LogicalPlan> {
    match plan {
        LogicalPlan::Limit {
            input,
            skip,
            fetch: Some(fetch),
        } => Ok(LogicalPlan::Limit {
            input: Box::new(limit_into(*input, skip.saturating_add(fetch))?),
            skip,
            fetch: Some(fetch),
        }),
        other => map_children(other, push_limits),
    }
}

/// Rewrite `plan`, of which only the first `rows` rows will be used, so that
/// it stops producing after them.
fn limit_into(plan: LogicalPlan, rows: usize) -> Result<LogicalPlan> {
    match plan {
        LogicalPlan::Scan {
            source,
            projection,
            filters,
            limit,
        } => Ok(LogicalPlan::Scan {
            source,
            projection,
            filters,
            limit: Some(limit.map_or(rows, |l| l.min(rows))),
        }),
        LogicalPlan::Project {
            input,
            exprs,
            schema,
        } => Ok(LogicalPlan::Project {
            input: Box::new(limit_into(*input, rows)?),
            exprs,
            schema,
        }),
        LogicalPlan::Union { inputs, schema } => Ok(LogicalPlan::Union {
            inputs: inputs
                .into_iter()
                .map(|input| {
                    Ok(LogicalPlan::Limit {
                        input: Box::new(limit_into(input, rows)?),
                        skip: 0,
                        fetch: Some(rows),
                    })
                })
                .collect::<Result<_>>()?,
            schema,
        }),
        LogicalPlan::Sort { input, keys, fetch } => Ok(LogicalPlan::Sort {
            input: Box::new(push_limits(*input)?),
            keys,
            fetch: Some(fetch.map_or(rows, |f| f.min(rows))),
        }),
        other => push_limits(other),
    }
}

/// Put the smaller input of each join on the right, the side the hash join
/// builds into memory: the fewer build bytes, the less it spills (or none
/// at all). Sizes are estimates from what is known without I/O; see
/// [`estimated_bytes`]. SEMI and ANTI joins keep their sides: their output
/// is the left side's rows.
fn choose_build_sides(plan: LogicalPlan) -> Result<LogicalPlan> {
    let plan = map_children(plan, choose_build_sides)?;
    let LogicalPlan::Join {
        left,
        right,
        kind,
        on,
        filter,
        null_aware,
        schema,
    } = plan
    else {
        return Ok(plan);
    };
    let swap = kind.keeps_right() && estimated_bytes(&left) < estimated_bytes(&right);
    let (nl, nr) = (left.schema().fields().len(), right.schema().fields().len());
    let mirrored = if swap {
        kind.mirror(on.clone(), filter.clone(), nl, nr)?
    } else {
        None
    };
    let Some(m) = mirrored else {
        return Ok(LogicalPlan::Join {
            left,
            right,
            kind,
            on,
            filter,
            null_aware,
            schema,
        });
    };
    let swapped = LogicalPlan::join(*right, *left, m.kind, m.on, m.filter, null_aware);
    swapped.select_columns(&m.order)
}

/// Whether [`estimated_bytes`] of `plan` is the size it will have, not a
/// guess: a Parquet scan without filters, as it is or reordered.
pub(crate) fn size_is_known(plan: &LogicalPlan) -> bool {
    match plan {
        LogicalPlan::Scan {
            source, filters, ..
        } => source.rows_total.is_some() && filters.is_empty(),
        LogicalPlan::Values { .. } => true,
        LogicalPlan::Project { input, .. }
        | LogicalPlan::Sort {
            input, fetch: None, ..
        } => size_is_known(input),
        _ => false,
    }
}

/// A rough size of what `plan` produces: a scan's rows times the width of
/// the columns it reads (or its file bytes in proportion to them), scaled
/// by each filter's [`selectivity`].
fn estimated_bytes(plan: &LogicalPlan) -> u64 {
    let scaled = |bytes: u64, s: f64| (bytes as f64 * s) as u64;
    match plan {
        LogicalPlan::Scan {
            source,
            projection,
            filters,
            ..
        } => {
            let read = match source.rows_total {
                // Parquet: rows times the Arrow width of the columns read,
                // what a build side holds. Compressed bytes mislead here: a
                // sorted key column compresses to almost nothing, so
                // TPC-H Q5 built 228k orders instead of 150k customers.
                Some(rows) => {
                    let width: usize = projection
                        .iter()
                        .map(|&i| {
                            let t = source.schema.field(i).data_type();
                            // Strings: a view and a short payload.
                            t.primitive_width().unwrap_or(24)
                        })
                        .sum();
                    rows * width.max(1) as u64
                }
                // Text formats: their bytes, in proportion to the columns.
                None => {
                    let all = source.schema.fields().len().max(1) as u64;
                    source.bytes_total / all * projection.len().max(1) as u64
                }
            };
            scaled(read, filters.iter().map(selectivity).product())
        }
        LogicalPlan::Values { batch } => batch.get_array_memory_size() as u64,
        LogicalPlan::Filter { input, predicate } => {
            scaled(estimated_bytes(input), selectivity(predicate))
        }
        LogicalPlan::Project { input, .. }
        | LogicalPlan::Limit { input, .. }
        | LogicalPlan::Sort { input, .. }
        | LogicalPlan::Aggregate { input, .. } => estimated_bytes(input),
        LogicalPlan::Union { inputs, .. } => inputs.iter().map(estimated_bytes).sum(),
        LogicalPlan::Window { input, .. } => estimated_bytes(input),
        // A semi or anti join filters its left input.
        LogicalPlan::Join {
            left,
            kind: JoinKind::Semi | JoinKind::Anti,
            ..
        } => estimated_bytes(left) / 2,
        LogicalPlan::Join { left, right, .. } => estimated_bytes(left) + estimated_bytes(right),
    }
}

fn map_children(
    plan: LogicalPlan,
    f: fn(LogicalPlan) -> Result<LogicalPlan>,
) -> Result<LogicalPlan> {
    Ok(match plan {
        leaf @ (LogicalPlan::Scan { .. } | LogicalPlan::Values { .. }) => leaf,
        LogicalPlan::Filter { input, predicate } => LogicalPlan::Filter {
            input: Box::new(f(*input)?),
            predicate,
        },
        LogicalPlan::Project {
            input,
            exprs,
            schema,
        } => LogicalPlan::Project {
            input: Box::new(f(*input)?),
            exprs,
            schema,
        },
        LogicalPlan::Limit { input, skip, fetch } => LogicalPlan::Limit {
            input: Box::new(f(*input)?),
            skip,
            fetch,
        },
        LogicalPlan::Union { inputs, schema } => LogicalPlan::Union {
            inputs: inputs.into_iter().map(f).collect::<Result<_>>()?,
            schema,
        },
        LogicalPlan::Window {
            input,
            exprs,
            schema,
        } => LogicalPlan::Window {
            input: Box::new(f(*input)?),
            exprs,
            schema,
        },
        LogicalPlan::Sort { input, keys, fetch } => LogicalPlan::Sort {
            input: Box::new(f(*input)?),
            keys,
            fetch,
        },
        LogicalPlan::Aggregate {
            input,
            group,
            aggregates,
            schema,
        } => LogicalPlan::Aggregate {
            input: Box::new(f(*input)?),
            group,
            aggregates,
            schema,
        },
        LogicalPlan::Join {
            left,
            right,
            kind,
            on,
            filter,
            null_aware,
            schema,
        } => LogicalPlan::Join {
            left: Box::new(f(*left)?),
            right: Box::new(f(*right)?),
            kind,
            on,
            filter,
            null_aware,
            schema,
        },
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Int64Array, RecordBatch, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};

    use super::*;

    fn values(rows: usize, names: [&str; 2]) -> LogicalPlan {
        let schema = Arc::new(Schema::new(vec![
            Field::new(names[0], DataType::Int64, false),
            Field::new(names[1], DataType::Utf8, false),
        ]));
        let ids: Int64Array = (0..rows as i64).collect();
        let text: StringArray = (0..rows).map(|i| Some(format!("row {i}"))).collect();
        let batch = RecordBatch::try_new(schema, vec![Arc::new(ids), Arc::new(text)]).unwrap();
        LogicalPlan::Values { batch }
    }

    #[test]
    fn the_smaller_input_is_built_whatever_side_it_was_written_on() {
        // small LEFT JOIN big ON small.a = big.c AND small.b < big.d
        let (small, big) = (values(10, ["a", "b"]), values(10_000, ["c", "d"]));
        let filter = Expr::binary(BinaryOp::Lt, Expr::column(1, "b"), Expr::column(3, "d"));
        let join = LogicalPlan::join(
            small,
            big,
            JoinKind::Left,
            vec![(Expr::column(0, "a"), Expr::column(0, "c"))],
            Some(filter),
            false,
        );
        let before = join.schema();
        let plan = optimize(join).unwrap();
        assert_eq!(plan.schema(), before, "the output keeps the query's order");
        let LogicalPlan::Project { input, exprs, .. } = &plan else {
            panic!("expected a reordering projection:\n{plan}");
        };
        let order: Vec<String> = exprs.iter().map(|e| e.to_string()).collect();
        assert_eq!(order, ["a", "b", "c", "d"]);
        let LogicalPlan::Join {
            left,
            kind,
            on,
            filter,
            ..
        } = input.as_ref()
        else {
            panic!("expected the join under it:\n{plan}");
        };
        assert_eq!(*kind, JoinKind::Right, "LEFT becomes RIGHT when swapped");
        assert_eq!(left.schema().field(0).name(), "c", "the big input probes");
        assert_eq!(on[0].0.to_string(), "c");
        // b was column 1 of (a, b, c, d); it is column 3 of (c, d, a, b).
        let Some(Expr::Binary { left, right, .. }) = filter else {
            panic!("the filter is kept");
        };
        let index = |e: &Expr| match e {
            Expr::Column { index, name } => (*index, name.clone()),
            other => panic!("{other}"),
        };
        assert_eq!(index(left), (3, "b".to_string()));
        assert_eq!(index(right), (1, "d".to_string()));
    }

    #[test]
    fn each_condition_of_a_filter_shrinks_the_estimate() {
        let above = |n: i64| {
            let n = Expr::Literal(Arc::new(Int64Array::from(vec![n])));
            Expr::binary(BinaryOp::Gt, Expr::column(0, "a"), n)
        };
        let five = (1..5).fold(above(0), |all, n| {
            Expr::binary(BinaryOp::And, all, above(n))
        });
        assert_eq!(selectivity(&five), 1.0 / 32.0);
        assert_eq!(
            selectivity(&Expr::binary(BinaryOp::Or, above(0), above(1))),
            0.75
        );
        // 1000 rows under five conditions look smaller than 100 rows.
        let filtered = LogicalPlan::Filter {
            input: Box::new(values(1000, ["a", "b"])),
            predicate: five,
        };
        assert!(estimated_bytes(&filtered) < estimated_bytes(&values(100, ["c", "d"])));
    }

    /// A Parquet table as the planner sees it: its rows and, for each
    /// (integer) column, its range; a filter on its first column if asked.
    fn parquet_table(
        name: &str,
        rows: u64,
        columns: &[(&str, u64)],
        filtered: bool,
    ) -> LogicalPlan {
        let fields: Vec<Field> = columns
            .iter()
            .map(|(n, _)| Field::new(*n, DataType::Int64, false))
            .collect();
        let source = Arc::new(crate::source::Source {
            format: crate::source::FileFormat::Parquet,
            patterns: vec![name.to_string()],
            files: Vec::new(),
            schema: Arc::new(Schema::new(fields)),
            rows_total: Some(rows),
            bytes_total: rows * 8,
            ordering: Vec::new(),
            distinct_max: columns.iter().map(|(_, range)| Some(*range)).collect(),
        });
        let one = Expr::Literal(Arc::new(Int64Array::from(vec![1])));
        let filters = filtered
            .then(|| Expr::binary(BinaryOp::Eq, Expr::column(0, columns[0].0), one))
            .into_iter()
            .collect();
        LogicalPlan::Scan {
            source,
            projection: (0..columns.len()).collect(),
            filters,
            limit: None,
        }
    }

    fn inner(
        left: LogicalPlan,
        right: LogicalPlan,
        l: (usize, &str),
        r: (usize, &str),
    ) -> LogicalPlan {
        let on = vec![(Expr::column(l.0, l.1), Expr::column(r.0, r.1))];
        LogicalPlan::join(left, right, JoinKind::Inner, on, None, false)
    }

    /// The tables under a tree of joins, left first.
    fn tables(plan: &LogicalPlan) -> Vec<String> {
        match plan {
            LogicalPlan::Scan { source, .. } => source.patterns.clone(),
            LogicalPlan::Join { left, right, .. } => [tables(left), tables(right)].concat(),
            LogicalPlan::Project { input, .. } | LogicalPlan::Filter { input, .. } => tables(input),
            other => vec![format!("{other}")],
        }
    }

    /// `FROM l, o, c, n` joined on l.ok = o.ok, o.ck = c.ck, c.nk = n.nk,
    /// with n filtered, shaped as TPC-H's lineitem, orders, customer and
    /// nation; `facts` replaces l where given.
    fn facts_first(facts: Option<LogicalPlan>) -> LogicalPlan {
        let l = facts
            .unwrap_or_else(|| parquet_table("l", 6000, &[("l_ok", 6000), ("l_x", 6000)], false));
        let o = parquet_table("o", 1500, &[("o_ok", 6000), ("o_ck", 150)], false);
        let c = parquet_table("c", 150, &[("c_ck", 150), ("c_nk", 25)], false);
        let n = parquet_table("n", 25, &[("n_flag", 2), ("n_nk", 25)], true);
        let lo = inner(l, o, (0, "l_ok"), (0, "o_ok"));
        let loc = inner(lo, c, (3, "o_ck"), (0, "c_ck"));
        inner(loc, n, (5, "c_nk"), (1, "n_nk"))
    }

    #[test]
    fn a_written_order_that_looks_far_costlier_is_replaced() {
        let plan = facts_first(None);
        let before = plan.schema();
        let plan = connect_inner_joins(plan).unwrap();
        assert_eq!(tables(&plan), ["c", "n", "o", "l"], "{plan}");
        assert_eq!(plan.schema(), before, "the output keeps the query's order");
    }

    #[test]
    fn a_good_written_order_and_one_of_unknown_sizes_stay() {
        let c = parquet_table("c", 150, &[("c_ck", 150), ("c_nk", 25)], false);
        let n = parquet_table("n", 25, &[("n_flag", 2), ("n_nk", 25)], true);
        let o = parquet_table("o", 1500, &[("o_ok", 6000), ("o_ck", 150)], false);
        let l = parquet_table("l", 6000, &[("l_ok", 6000), ("l_x", 6000)], false);
        let cn = inner(c, n, (1, "c_nk"), (1, "n_nk"));
        let cno = inner(cn, o, (0, "c_ck"), (1, "o_ck"));
        let plan = connect_inner_joins(inner(cno, l, (4, "o_ok"), (0, "l_ok"))).unwrap();
        assert_eq!(tables(&plan), ["c", "n", "o", "l"], "{plan}");
        // Rows in memory have no guess of distinct values: nothing moves.
        let plan = connect_inner_joins(facts_first(Some(values(6000, ["v", "w"])))).unwrap();
        assert_eq!(tables(&plan)[1..], ["o", "c", "n"], "{plan}");
    }

    #[test]
    fn semi_joins_keep_their_sides() {
        let (small, big) = (values(10, ["a", "b"]), values(10_000, ["c", "d"]));
        let join = LogicalPlan::join(
            small,
            big,
            JoinKind::Semi,
            vec![(Expr::column(0, "a"), Expr::column(0, "c"))],
            None,
            false,
        );
        let plan = optimize(join).unwrap();
        let LogicalPlan::Join { kind, left, .. } = &plan else {
            panic!("{plan}");
        };
        assert_eq!(*kind, JoinKind::Semi);
        assert_eq!(left.schema().field(0).name(), "a");
    }
}
