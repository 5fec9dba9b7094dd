//! Correlated scalar subqueries, as LEFT JOINs with grouped subqueries
//! (decorrelation).
//!
//! ```sql
//! WHERE l_quantity < (SELECT 0.2 * avg(l_quantity) FROM lineitem i
//!                     WHERE i.l_partkey = p_partkey)
//! ```
//!
//! becomes a LEFT JOIN of the outer rows with
//! `SELECT i.l_partkey AS key, 0.2 * avg(l_quantity) AS value FROM lineitem i
//! GROUP BY i.l_partkey` on `key = p_partkey`, and the subquery's value is
//! `value` (both under names no query uses): the aggregate over the rows
//! the correlation selects, computed once per key instead of once per
//! outer row. The grouped subquery is an ordinary aggregate, so it spills
//! like any other, and it has one row a key, so the join keeps the outer
//! rows as they are.
//!
//! The subquery may sit anywhere in a WHERE conjunct, the select list or
//! HAVING (and ORDER BY, whose keys that hold one are planned as hidden
//! select items): each correlated one found (outside nested queries) is joined,
//! and the expression reads its value instead. A WHERE conjunct then
//! filters the joined rows, and the join's columns are dropped again. In a
//! grouped query the keys must be group keys, and the value is grouped by
//! too (`QueryPlanner::grouped_decorrelated`).
//!
//! Built for what this rewrite keeps exact: a subquery that is one SELECT
//! of one expression over aggregates, without GROUP BY, HAVING, DISTINCT
//! or LIMIT; outer columns only in equalities `inner = outer` in its WHERE.
//! An outer row with no matching key sees NULL, which is what an aggregate
//! over no rows gives, except count: a bare count becomes
//! `coalesce(value, 0)`, and any other expression over count is refused,
//! since its value over no rows cannot be had from NULL.

use std::ops::ControlFlow;
use std::sync::Arc;

use arrow::array::Int64Array;
use arrow::datatypes::Schema;
use sqlparser::ast::{
    BinaryOperator, Expr as SqlExpr, GroupByExpr, Ident, Query, SelectItem, SetExpr, TableAlias,
    VisitMut, VisitorMut,
};

use super::{apply_alias, concat_schemas, split_and, Planned, QueryPlanner};
use crate::error::{Error, Result};
use crate::plan::expr::Expr;
use crate::plan::logical::{JoinKind, LogicalPlan};
use crate::plan::optimizer::equi_key;
use crate::sql::expr::{location, outer_column_in, ExprPlanner, Scope};

/// Names of the grouped subquery's columns. Expressions are planned over
/// the outer columns and these together, so they must not be names a query
/// would use (`value` would make a user's `value` ambiguous).
const KEY: &str = "__correlated_key";
const VALUE: &str = "__correlated_value";

/// A plan with the columns of the correlated subqueries joined to it, and
/// the names of all its columns.
pub(super) struct Decorrelated {
    pub plan: LogicalPlan,
    pub scope: Scope,
    /// Whether any subquery was joined.
    pub joined: bool,
    /// The expressions that read the joined values, and the outer sides of
    /// the correlation keys: a grouped query groups by the values too, and
    /// needs the keys among its group keys.
    pub values: Vec<SqlExpr>,
    pub outer_keys: Vec<SqlExpr>,
}

impl Decorrelated {
    /// `plan` with nothing joined yet.
    pub fn unchanged(plan: LogicalPlan, scope: Scope) -> Self {
        Decorrelated {
            plan,
            scope,
            joined: false,
            values: Vec::new(),
            outer_keys: Vec::new(),
        }
    }
}

/// Replaces each correlated scalar subquery of the expressions it visits,
/// outside nested queries, by the column of its joined value.
struct Rewriter<'p, 'a> {
    planner: &'p mut QueryPlanner<'a>,
    /// What correlation is judged against: the outer query's own columns.
    outer: &'p Scope,
    into: Decorrelated,
    /// How deep in queries the visit is: subqueries of subqueries are
    /// their own business.
    depth: usize,
    error: Option<Error>,
}

impl VisitorMut for Rewriter<'_, '_> {
    type Break = ();

    fn pre_visit_query(&mut self, _query: &mut Query) -> ControlFlow<()> {
        self.depth += 1;
        ControlFlow::Continue(())
    }

    fn post_visit_query(&mut self, _query: &mut Query) -> ControlFlow<()> {
        self.depth -= 1;
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, expr: &mut SqlExpr) -> ControlFlow<()> {
        if self.depth == 0 {
            if let SqlExpr::Exists { subquery, negated } = expr {
                if let Some(count) = exists_as_count(subquery, *negated) {
                    // Its subquery, if any, is visited next, as a child.
                    *expr = count;
                }
            }
        }
        let SqlExpr::Subquery(query) = expr else {
            return ControlFlow::Continue(());
        };
        if self.depth > 0 {
            return ControlFlow::Continue(());
        }
        match self
            .planner
            .join_correlated(self.outer, &mut self.into, query)
        {
            Ok(Some(value)) => {
                *expr = value;
                ControlFlow::Continue(())
            }
            Ok(None) => ControlFlow::Continue(()),
            Err(e) => {
                self.error = Some(e.at(location(expr)));
                ControlFlow::Break(())
            }
        }
    }
}

/// `[NOT] EXISTS (SELECT … FROM f WHERE w)` where it is a value rather
/// than a WHERE conjunct (those are semi and anti joins): `(SELECT count(*)
/// FROM f WHERE w) > 0`, or `= 0` for NOT EXISTS, which the count's
/// decorrelation makes exact for outer rows that match nothing. A SELECT
/// that calls an aggregate without GROUP BY has a row whatever it reads, so
/// its EXISTS is simply true. `None` for what the count would not keep
/// exact (see [`super::exists_select`]), which is then refused by name.
fn exists_as_count(subquery: &Query, negated: bool) -> Option<SqlExpr> {
    let select = super::exists_select(subquery).ok()?;
    let boolean = |b: bool| SqlExpr::value(sqlparser::ast::Value::Boolean(b));
    if super::calls_an_aggregate(&select.projection) {
        return Some(boolean(!negated));
    }
    let dialect = sqlparser::dialect::DuckDbDialect {};
    let parse = |text: &str| {
        sqlparser::parser::Parser::new(&dialect)
            .try_with_sql(text)
            .and_then(|mut p| p.parse_expr())
            .ok()
    };
    let mut counted = select.clone();
    counted.projection = vec![SelectItem::UnnamedExpr(parse("count(*)")?)];
    counted.distinct = None;
    let mut query = subquery.clone();
    // Its ORDER BY changes no count, and would name columns the count
    // does not group by.
    query.order_by = None;
    query.body = Box::new(SetExpr::Select(Box::new(counted)));
    Some(SqlExpr::BinaryOp {
        left: Box::new(SqlExpr::Subquery(Box::new(query))),
        op: if negated {
            BinaryOperator::Eq
        } else {
            BinaryOperator::Gt
        },
        right: Box::new(parse("0")?),
    })
}

impl QueryPlanner<'_> {
    /// Join to `plan` (named by `scope`) every correlated scalar subquery
    /// in `exprs`, rewriting each to read the joined value. The outer
    /// columns keep their places; the joined ones follow.
    pub(super) fn decorrelate<'e>(
        &mut self,
        plan: LogicalPlan,
        scope: &Scope,
        exprs: impl IntoIterator<Item = &'e mut SqlExpr>,
    ) -> Result<Decorrelated> {
        let mut rewriter = Rewriter {
            planner: self,
            outer: scope,
            into: Decorrelated::unchanged(plan, scope.clone()),
            depth: 0,
            error: None,
        };
        for e in exprs {
            if e.visit(&mut rewriter).is_break() {
                break;
            }
        }
        match rewriter.error {
            Some(e) => Err(e),
            None => Ok(rewriter.into),
        }
    }

    /// If `query` is a correlated scalar subquery of the query named by
    /// `outer`, LEFT JOIN it, grouped by its correlation keys, to
    /// `into` and return the expression that reads its value. `None` when
    /// it is not correlated: the ordinary path runs it once, taking the
    /// plan made here from [`QueryPlanner::uncorrelated`].
    fn join_correlated(
        &mut self,
        outer: &Scope,
        into: &mut Decorrelated,
        query: &Query,
    ) -> Result<Option<SqlExpr>> {
        let mut alone = QueryPlanner {
            config: self.config,
            catalog: self.catalog,
            ctes: self.ctes.clone(),
            correlated_count: 0,
            uncorrelated: Default::default(),
        };
        let error = match alone.query(query) {
            Ok(planned) => {
                (self.uncorrelated.borrow_mut()).push((query.clone(), planned.plan));
                return Ok(None);
            }
            Err(error) => error,
        };
        // Only an outer column unknown inside makes it correlated; any
        // other error (a typo, a missing table) is the answer.
        if outer_column_in(&error, outer).is_none() {
            return Err(error);
        }
        let n = self.correlated_count;
        self.correlated_count += 1;
        let name = format!("__correlated{n}");
        let outer_schema = into.plan.schema();
        let (derived, outer_keys, count) =
            self.grouped_subquery(query, &into.scope, &outer_schema)?;
        into.outer_keys.extend(outer_keys.iter().cloned());
        let derived = apply_alias(
            derived,
            &TableAlias {
                explicit: false,
                name: Ident::new(&name),
                columns: Vec::new(),
                at: None,
            },
        )?;
        // Join on outer = key, typed as an equality of the two would be.
        let outer_width = outer_schema.fields().len();
        let combined = concat_schemas(&outer_schema, &derived.plan.schema());
        let mut both = into.scope.clone();
        both.columns.extend(derived.scope.columns.iter().cloned());
        let planner = ExprPlanner::new(&both, &combined);
        let mut on = Vec::new();
        for (i, outer) in outer_keys.into_iter().enumerate() {
            let eq = SqlExpr::BinaryOp {
                left: Box::new(outer),
                op: BinaryOperator::Eq,
                right: Box::new(column_of(&name, &format!("{KEY}{i}"))),
            };
            let eq = planner.plan(&eq)?;
            let key = equi_key(&eq, outer_width)?.ok_or_else(|| {
                Error::Internal("a correlation key did not split into two sides".into())
            })?;
            on.push(key);
        }
        let mut joined = LogicalPlan::join(
            into.plan.clone(),
            derived.plan,
            JoinKind::Left,
            on,
            None,
            false,
        );
        if count {
            // An outer row without rows in the subquery counts 0, not NULL.
            let width = combined.fields().len();
            let exprs = (0..width)
                .map(|i| {
                    let column = Expr::column(i, combined.field(i).name().clone());
                    if i + 1 < width {
                        return Ok(column);
                    }
                    let zero = Expr::Literal(Arc::new(Int64Array::from(vec![0i64])));
                    planner.call("coalesce", vec![column, zero])
                })
                .collect::<Result<Vec<_>>>()?;
            let names = combined.fields().iter().map(|f| f.name().clone()).collect();
            joined = LogicalPlan::project(joined, exprs, names)?;
        }
        into.plan = joined;
        into.scope = both;
        into.joined = true;
        into.values.push(column_of(&name, VALUE));
        Ok(Some(column_of(&name, VALUE)))
    }

    /// The subquery grouped by its correlation keys: columns [`KEY`]0,
    /// [`KEY`]1, ..., then [`VALUE`]. Returns it with the outer side of
    /// each key and whether the value is a bare count.
    fn grouped_subquery(
        &mut self,
        query: &Query,
        outer: &Scope,
        outer_schema: &Schema,
    ) -> Result<(Planned, Vec<SqlExpr>, bool)> {
        let refuse = |why: &str| {
            Err(Error::NotImplemented(format!(
                "this correlated scalar subquery: {why} (built: one aggregate expression over \
                 a WHERE whose outer columns appear only in equalities)"
            )))
        };
        let SetExpr::Select(select) = query.body.as_ref() else {
            return refuse("it is not a plain SELECT");
        };
        let ungrouped = matches!(&select.group_by, GroupByExpr::Expressions(g, _) if g.is_empty());
        if !ungrouped
            || select.having.is_some()
            || select.distinct.is_some()
            || query.limit_clause.is_some()
            || query.order_by.is_some()
        {
            return refuse("it has GROUP BY, HAVING, DISTINCT, ORDER BY or LIMIT");
        }
        let value = match select.projection.as_slice() {
            [SelectItem::UnnamedExpr(e)] | [SelectItem::ExprWithAlias { expr: e, .. }] => e,
            _ => return refuse("it does not select one expression"),
        };
        let text = value.to_string().to_ascii_lowercase();
        let bare_count = matches!(value, SqlExpr::Function(f) if f.name.to_string().eq_ignore_ascii_case("count"));
        if text.contains("count(") && !bare_count {
            return refuse("an expression over count has no value to stand for no rows");
        }
        // Split its WHERE into conditions on its own columns and
        // equalities with the outer query's.
        let inner = self.from(&select.from)?;
        let inner_schema = inner.plan.schema();
        let plans_over = |scope: &Scope, schema: &Schema, e: &SqlExpr| {
            ExprPlanner::new(scope, schema).plan(e).is_ok()
        };
        let mut local: Vec<SqlExpr> = Vec::new();
        let (mut inner_keys, mut outer_keys) = (Vec::new(), Vec::new());
        let mut conjuncts = Vec::new();
        if let Some(w) = &select.selection {
            split_and(w, &mut conjuncts);
        }
        for c in conjuncts {
            if plans_over(&inner.scope, &inner_schema, c) {
                local.push(c.clone());
                continue;
            }
            let SqlExpr::BinaryOp {
                left,
                op: BinaryOperator::Eq,
                right,
            } = c
            else {
                return refuse(&format!("'{c}' reads the outer query other than by ="));
            };
            let inner_side = |e: &SqlExpr| plans_over(&inner.scope, &inner_schema, e);
            let outer_side = |e: &SqlExpr| plans_over(outer, outer_schema, e);
            if inner_side(left) && outer_side(right) {
                inner_keys.push((**left).clone());
                outer_keys.push((**right).clone());
            } else if inner_side(right) && outer_side(left) {
                inner_keys.push((**right).clone());
                outer_keys.push((**left).clone());
            } else {
                return refuse(&format!(
                    "'{c}' does not compare an inner with an outer value"
                ));
            }
        }
        if inner_keys.is_empty() {
            return refuse("no equality ties it to the outer query");
        }
        let mut grouped = (**select).clone();
        grouped.selection = local.into_iter().reduce(|a, b| SqlExpr::BinaryOp {
            left: Box::new(a),
            op: BinaryOperator::And,
            right: Box::new(b),
        });
        grouped.group_by = GroupByExpr::Expressions(inner_keys.clone(), Vec::new());
        grouped.projection = inner_keys
            .into_iter()
            .enumerate()
            .map(|(i, k)| SelectItem::ExprWithAlias {
                expr: k,
                alias: Ident::new(format!("{KEY}{i}")),
            })
            .chain(std::iter::once(SelectItem::ExprWithAlias {
                expr: value.clone(),
                alias: Ident::new(VALUE),
            }))
            .collect();
        let grouped_query = Query {
            body: Box::new(SetExpr::Select(Box::new(grouped))),
            ..query.clone()
        };
        Ok((self.query(&grouped_query)?, outer_keys, bare_count))
    }
}

fn column_of(table: &str, column: &str) -> SqlExpr {
    SqlExpr::CompoundIdentifier(vec![Ident::new(table), Ident::new(column)])
}
