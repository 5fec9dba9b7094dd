//! Aggregate queries: binding aggregate calls, and planning the select list
//! and HAVING of a grouped query over the aggregate's output.
//!
//! A grouped SELECT is planned in two passes over the same SQL:
//!
//! 1. **Collect.** Select items and HAVING are planned with every aggregate
//!    call bound against the input and recorded, standing in as a NULL of
//!    its result type (so that types check); the result is thrown away.
//! 2. **Plan.** With the aggregate's output schema now known (group columns,
//!    then one column per recorded call) they are planned again; an
//!    aggregate call becomes its output column.
//!
//! Window calls in a grouped select list (`rank() OVER (ORDER BY sum(x))`)
//! are bound over the aggregate's output in pass 2 and recorded; if there
//! are any, their window nodes go over the aggregate (after HAVING) and
//! the select list is planned a third time, over the window nodes' output,
//! whose first columns are still the aggregate's.
//!
//! In every pass, any sub-expression that binds over the input to a GROUP
//! BY expression becomes that group column, so `SELECT upper(name) ...
//! GROUP BY upper(name)` and `SELECT a + 1 ... GROUP BY a` both work, while
//! a column that is neither grouped nor inside an aggregate is an error that
//! says so.

use std::cell::RefCell;
use std::ops::ControlFlow;

use arrow::array::{new_null_array, Array, AsArray};
use arrow::datatypes::{DataType, Schema};
use sqlparser::ast::{
    DuplicateTreatment, Expr as SqlExpr, Function, FunctionArg, FunctionArgExpr, FunctionArguments,
    Query, SelectItem, Value as SqlValue, Visit, Visitor,
};

use crate::error::{Error, Result};
use crate::plan::aggregate::{is_aggregate, AggregateExpr, AggregateFunction};
use crate::plan::expr::{sql_type_name, Expr};
use crate::sql::expr::{coerce_to, location, ExprPlanner, Scope};

/// What the error says when an aggregate appears where none may; the
/// planner looks for it to notice that a select list aggregates.
pub const AGGREGATE_NOT_ALLOWED: &str =
    "aggregate functions are not allowed in WHERE, GROUP BY, or inside another aggregate";

/// The aggregation a grouped SELECT's expressions are planned against.
pub struct Aggregated<'a> {
    pub input_scope: &'a Scope,
    pub input_schema: &'a Schema,
    /// GROUP BY expressions over the input, and their `Debug` text, by
    /// which sub-expressions are matched to them.
    pub group: Vec<Expr>,
    group_keys: Vec<String>,
    /// Aggregate calls met so far, and their `Debug` text.
    calls: RefCell<Vec<(AggregateExpr, String)>>,
    /// Pass 1: record calls and stand in NULLs; pass 2: refer to columns.
    pub collecting: bool,
}

impl<'a> Aggregated<'a> {
    pub fn new(input_scope: &'a Scope, input_schema: &'a Schema, group: Vec<Expr>) -> Self {
        let group_keys = group.iter().map(|e| format!("{e:?}")).collect();
        Aggregated {
            input_scope,
            input_schema,
            group,
            group_keys,
            calls: RefCell::new(Vec::new()),
            collecting: true,
        }
    }

    pub fn aggregates(&self) -> Vec<AggregateExpr> {
        self.calls.borrow().iter().map(|(a, _)| a.clone()).collect()
    }

    fn input(&self) -> ExprPlanner<'_> {
        ExprPlanner::new(self.input_scope, self.input_schema)
    }

    /// `e` as a group column or an aggregate's column, if it is one.
    pub fn lookup(&self, e: &SqlExpr, planner: &ExprPlanner) -> Result<Option<Expr>> {
        match e {
            SqlExpr::Value(_) | SqlExpr::Nested(_) => return Ok(None),
            SqlExpr::Function(f) if f.over.is_none() && is_aggregate(&f.name.to_string()) => {
                return self.call(f, planner).map(Some);
            }
            _ => {}
        }
        if let Ok(bound) = self.input().plan(e) {
            let key = format!("{bound:?}");
            if let Some(i) = self.group_keys.iter().position(|k| *k == key) {
                return Ok(Some(Expr::column(i, group_name(&self.group[i]))));
            }
        }
        Ok(None)
    }

    /// An aggregate call: recorded in pass 1, its column in pass 2.
    fn call(&self, f: &Function, planner: &ExprPlanner) -> Result<Expr> {
        let bound = bind_aggregate(&self.input(), f).map_err(|e| e.at(location(f)))?;
        let key = format!("{bound:?}");
        let mut calls = self.calls.borrow_mut();
        let found = calls.iter().position(|(_, k)| *k == key);
        if self.collecting {
            let arg = bound
                .arg
                .as_ref()
                .map(|a| a.data_type(self.input_schema))
                .transpose()?;
            let t = bound.func.return_type(arg.as_ref())?;
            if found.is_none() {
                calls.push((bound, key));
            }
            return Ok(Expr::Literal(new_null_array(&t, 1)));
        }
        let i = found.ok_or_else(|| {
            Error::Internal(format!("aggregate {bound} missed by the first pass"))
        })?;
        let column = self.group.len() + i;
        Ok(Expr::column(
            column,
            planner.schema.field(column).name().clone(),
        ))
    }

    /// The error for a column that is neither grouped nor aggregated (or
    /// the input's own error if it does not exist).
    pub fn ungrouped(&self, parts: &[sqlparser::ast::Ident]) -> Error {
        match self.input_scope.resolve(parts) {
            Ok(_) => {
                let shown: Vec<&str> = parts.iter().map(|p| p.value.as_str()).collect();
                Error::plan(format!(
                    "column '{}' must appear in the GROUP BY clause or be used in an aggregate function",
                    shown.join(".")
                ))
            }
            Err(e) => e,
        }
    }
}

/// DuckDB's `GROUP BY ALL`: the select items that call no aggregate (nor a
/// window function or a scalar subquery, which are no keys either), as if
/// listed in GROUP BY.
pub fn group_by_all(projection: &[SelectItem]) -> Result<Vec<SqlExpr>> {
    let mut keys = Vec::new();
    for item in projection {
        let e = match item {
            SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } => e,
            other => {
                return Err(Error::NotImplemented(format!(
                    "GROUP BY ALL with {other} in the select list (list the columns)"
                )))
            }
        };
        // A constant groups nothing, and as a key a number would be read
        // as an ordinal.
        if matches!(e, SqlExpr::Value(_)) {
            continue;
        }
        // A subquery is no key either: it is a constant, or tied to them.
        let no_key = |e: &SqlExpr| match e {
            SqlExpr::Subquery(_) => true,
            SqlExpr::Function(f) => f.over.is_some() || is_aggregate(&f.name.to_string()),
            _ => false,
        };
        if !found_outside_subqueries(e, no_key) {
            keys.push(e.clone());
        }
    }
    Ok(keys)
}

/// Whether `found` holds for an expression of `node` that is not inside a
/// subquery of it (a subquery itself is seen, its inside is its own).
pub fn found_outside_subqueries(node: &impl Visit, found: impl Fn(&SqlExpr) -> bool) -> bool {
    struct Finder<F> {
        depth: usize,
        found: F,
    }
    impl<F: Fn(&SqlExpr) -> bool> Visitor for Finder<F> {
        type Break = ();
        fn pre_visit_query(&mut self, _: &Query) -> ControlFlow<()> {
            self.depth += 1;
            ControlFlow::Continue(())
        }
        fn post_visit_query(&mut self, _: &Query) -> ControlFlow<()> {
            self.depth -= 1;
            ControlFlow::Continue(())
        }
        fn pre_visit_expr(&mut self, e: &SqlExpr) -> ControlFlow<()> {
            match self.depth == 0 && (self.found)(e) {
                true => ControlFlow::Break(()),
                false => ControlFlow::Continue(()),
            }
        }
    }
    node.visit(&mut Finder { depth: 0, found }).is_break()
}

/// The name a group column goes by in the aggregate's output.
pub fn group_name(e: &Expr) -> String {
    match e {
        Expr::Column { name, .. } => name.clone(),
        other => other.to_string(),
    }
}

/// Bind `f`, an aggregate call, over the input `planner` sees: its argument
/// cast to the type its accumulator takes.
pub fn bind_aggregate(planner: &ExprPlanner, f: &Function) -> Result<AggregateExpr> {
    use AggregateFunction as F;
    let name = f.name.to_string().to_ascii_lowercase();
    if f.over.is_some() {
        return Err(Error::NotImplemented("window functions (OVER)".into()));
    }
    if !f.within_group.is_empty() || f.null_treatment.is_some() {
        return Err(Error::NotImplemented(format!(
            "WITHIN GROUP and IGNORE/RESPECT NULLS in {name}"
        )));
    }
    let (distinct, args) = match &f.args {
        FunctionArguments::List(list) => {
            if !list.clauses.is_empty() {
                return Err(Error::NotImplemented(format!(
                    "ORDER BY and other clauses inside {name}(...)"
                )));
            }
            let distinct = matches!(list.duplicate_treatment, Some(DuplicateTreatment::Distinct));
            (distinct, list.args.as_slice())
        }
        FunctionArguments::None => (false, &[][..]),
        FunctionArguments::Subquery(_) => {
            return Err(Error::NotImplemented("subqueries as arguments".into()))
        }
    };
    let star = matches!(args, [FunctionArg::Unnamed(FunctionArgExpr::Wildcard)]);
    let mut exprs = Vec::new();
    if !star {
        for a in args {
            match a {
                FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => exprs.push(e),
                other => {
                    return Err(Error::plan(format!(
                        "{name} takes plain arguments, got {other}"
                    )))
                }
            }
        }
    }
    let filter = f
        .filter
        .as_ref()
        .map(|e| {
            let bound = planner.plan(e)?;
            planner.boolean(bound, "FILTER (WHERE ...)")
        })
        .transpose()?;
    let arity = |n: usize| -> Result<()> {
        if exprs.len() == n {
            Ok(())
        } else {
            Err(Error::plan(format!(
                "{name} takes {n} argument{}, got {}",
                if n == 1 { "" } else { "s" },
                exprs.len()
            )))
        }
    };
    if name == "count" && (star || exprs.is_empty()) {
        if distinct {
            return Err(Error::plan("count(DISTINCT *) is not valid: name a column"));
        }
        return Ok(AggregateExpr {
            func: F::CountStar,
            arg: None,
            distinct: false,
            filter,
        });
    }
    if star {
        return Err(Error::plan(format!(
            "{name}(*) is not valid: name a column"
        )));
    }
    let schema = planner.schema;
    let (func, arg) = match name.as_str() {
        "count" => {
            arity(1)?;
            (F::Count, planner.plan(exprs[0])?)
        }
        "sum" | "avg" | "mean" => {
            arity(1)?;
            let arg = planner.plan(exprs[0])?;
            let t = arg.data_type(schema)?;
            let to = match &t {
                t if t.is_integer() || *t == DataType::Null => DataType::Int64,
                t if t.is_floating() => DataType::Float64,
                DataType::Decimal128(..) => t.clone(),
                other => return Err(wrong_type(&name, "a number", other)),
            };
            let func = if name == "sum" { F::Sum } else { F::Avg };
            (func, coerce_to(arg, &to, schema)?)
        }
        "min" | "max" | "any_value" => {
            arity(1)?;
            let arg = planner.plan(exprs[0])?;
            let arg = match arg.data_type(schema)? {
                DataType::Null => coerce_to(arg, &DataType::Int64, schema)?,
                _ => arg,
            };
            let func = match name.as_str() {
                "min" => F::Min,
                "max" => F::Max,
                _ => F::AnyValue,
            };
            (func, arg)
        }
        "stddev" | "stddev_samp" | "stddev_pop" | "variance" | "var_samp" | "var_pop" => {
            arity(1)?;
            let arg = planner.plan(exprs[0])?;
            let t = arg.data_type(schema)?;
            if !t.is_numeric() && t != DataType::Null {
                return Err(wrong_type(&name, "a number", &t));
            }
            let func = F::Variance {
                sample: !name.ends_with("_pop"),
                sqrt: name.starts_with("stddev"),
            };
            (func, coerce_to(arg, &DataType::Float64, schema)?)
        }
        "bool_and" | "bool_or" => {
            arity(1)?;
            let arg = planner.plan(exprs[0])?;
            let arg = planner.boolean(arg, &name)?;
            let func = if name == "bool_and" {
                F::BoolAnd
            } else {
                F::BoolOr
            };
            (func, arg)
        }
        "string_agg" => {
            if exprs.is_empty() || exprs.len() > 2 {
                return Err(Error::plan(format!(
                    "string_agg takes a value and an optional separator, got {} arguments",
                    exprs.len()
                )));
            }
            let separator = match exprs.get(1) {
                None => ",".to_string(),
                Some(SqlExpr::Value(v)) => match &v.value {
                    SqlValue::SingleQuotedString(s) => s.clone(),
                    _ => return Err(separator_error(exprs[1])),
                },
                Some(other) => return Err(separator_error(other)),
            };
            let arg = planner.plan(exprs[0])?;
            (
                F::StringAgg { separator },
                coerce_to(arg, &DataType::Utf8, schema)?,
            )
        }
        "approx_count_distinct" => {
            arity(1)?;
            let arg = planner.plan(exprs[0])?;
            let arg = match arg.data_type(schema)? {
                DataType::Null => coerce_to(arg, &DataType::Int64, schema)?,
                _ => arg,
            };
            (F::ApproxCountDistinct, arg)
        }
        "median" | "quantile_cont" | "quantile_disc" => {
            let q = if name == "median" {
                arity(1)?;
                0.5
            } else {
                arity(2)?;
                quantile_fraction(planner, &name, exprs[1])?
            };
            let arg = planner.plan(exprs[0])?;
            let t = arg.data_type(schema)?;
            if !t.is_numeric() && t != DataType::Null {
                return Err(wrong_type(&name, "a number", &t));
            }
            let func = F::Quantile {
                q,
                continuous: name != "quantile_disc",
            };
            (func, coerce_to(arg, &DataType::Float64, schema)?)
        }
        other => return Err(Error::Internal(format!("unbound aggregate {other}"))),
    };
    Ok(AggregateExpr {
        func,
        arg: Some(arg),
        distinct,
        filter,
    })
}

fn wrong_type(name: &str, wanted: &str, got: &DataType) -> Error {
    Error::plan(format!("{name} takes {wanted}, got {}", sql_type_name(got)))
}

/// The fraction of `quantile_cont(x, q)`: a constant from 0 to 1.
fn quantile_fraction(planner: &ExprPlanner, name: &str, e: &SqlExpr) -> Result<f64> {
    let bad = || {
        Error::plan(format!(
            "{name}'s fraction must be a constant number from 0 to 1, got {e}"
        ))
        .at(location(e))
    };
    let Expr::Literal(value) = planner.plan(e)? else {
        return Err(bad());
    };
    let value = arrow::compute::cast(&value, &DataType::Float64).map_err(|_| bad())?;
    let value = value.as_primitive::<arrow::datatypes::Float64Type>();
    if value.is_null(0) || !(0.0..=1.0).contains(&value.value(0)) {
        return Err(bad());
    }
    Ok(value.value(0))
}

fn separator_error(e: &SqlExpr) -> Error {
    Error::plan(format!(
        "string_agg's separator must be a constant string, got {e}"
    ))
    .at(location(e))
}
