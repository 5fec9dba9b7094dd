//! Correlated scalar subqueries in WHERE, as a LEFT JOIN with a grouped
//! subquery (decorrelation).
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
//! outer row. The grouped subquery is an
//! ordinary aggregate, so it spills like any other.
//!
//! Built for what this rewrite keeps exact: a comparison with the subquery
//! as a WHERE conjunct; a subquery that is one SELECT of one expression
//! over aggregates, without GROUP BY, HAVING, DISTINCT or LIMIT; outer
//! columns only in equalities `inner = outer` in its WHERE. An outer row
//! with no matching key sees NULL, which is what an aggregate over no rows
//! gives, except count: a bare count becomes `coalesce(value, 0)`, and any
//! other expression over count is refused, since its value over no rows
//! cannot be had from NULL.

use sqlparser::ast::{
    BinaryOperator, Expr as SqlExpr, GroupByExpr, Ident, Query, SelectItem, SetExpr, TableAlias,
};

use std::sync::Arc;

use arrow::array::Int64Array;
use arrow::datatypes::Schema;

use super::{apply_alias, concat_schemas, split_and, Planned, QueryPlanner};
use crate::error::{Error, Result};
use crate::plan::expr::Expr;
use crate::plan::logical::{JoinKind, LogicalPlan};
use crate::plan::optimizer::equi_key;
use crate::sql::expr::{location, outer_column_in, ExprPlanner, Scope, SubqueryPlanner};

/// Names of the grouped subquery's columns. The rewritten conjunct is
/// planned over the outer columns and these together, so they must not be
/// names a query would use (`value` would make a user's `value` ambiguous).
const KEY: &str = "__correlated_key";
const VALUE: &str = "__correlated_value";

impl QueryPlanner<'_> {
    /// If `conjunct` compares with a correlated scalar subquery, filter
    /// `plan` (named by `scope`) by it and return the result, with the
    /// same columns. `None` when the conjunct is not of that form.
    pub(super) fn correlated_scalar(
        &mut self,
        plan: &LogicalPlan,
        scope: &Scope,
        conjunct: &SqlExpr,
        subqueries: &SubqueryPlanner,
    ) -> Result<Option<LogicalPlan>> {
        let SqlExpr::BinaryOp { left, op, right } = conjunct else {
            return Ok(None);
        };
        let (query, subquery_on_left) = match (left.as_ref(), right.as_ref()) {
            (SqlExpr::Subquery(q), _) => (q, true),
            (_, SqlExpr::Subquery(q)) => (q, false),
            _ => return Ok(None),
        };
        // Uncorrelated: the ordinary path plans it and runs it once.
        let mut alone = QueryPlanner {
            config: self.config,
            catalog: self.catalog,
            ctes: self.ctes.clone(),
            correlated_count: 0,
        };
        let Err(error) = alone.query(query) else {
            return Ok(None);
        };
        // Only an outer column unknown inside makes it correlated; any
        // other error (a typo, a missing table) is the answer.
        if outer_column_in(&error, scope).is_none() {
            return Err(error);
        }
        let n = self.correlated_count;
        self.correlated_count += 1;
        let name = format!("__correlated{n}");
        let outer_schema = plan.schema();
        let (derived, outer_keys, count) = self
            .grouped_subquery(query, scope, &outer_schema)
            .map_err(|e| e.at(location(conjunct)))?;
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
        let mut both = scope.clone();
        both.columns.extend(derived.scope.columns.iter().cloned());
        let planner = ExprPlanner {
            subqueries: Some(subqueries),
            ..ExprPlanner::new(&both, &combined)
        };
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
        let mut joined =
            LogicalPlan::join(plan.clone(), derived.plan, JoinKind::Left, on, None, false);
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
        // The conjunct, reading the value in the subquery's place.
        let value = column_of(&name, VALUE);
        let (l, r) = if subquery_on_left {
            (value, (**right).clone())
        } else {
            ((**left).clone(), value)
        };
        let rewritten = SqlExpr::BinaryOp {
            left: Box::new(l),
            op: op.clone(),
            right: Box::new(r),
        };
        let predicate = planner.plan(&rewritten)?;
        let predicate = planner
            .boolean(predicate, "WHERE")
            .map_err(|e| e.at(location(conjunct)))?;
        let filtered = LogicalPlan::Filter {
            input: Box::new(joined),
            predicate,
        };
        Ok(Some(
            filtered.select_columns(&(0..outer_width).collect::<Vec<_>>())?,
        ))
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
