//! Window function calls in a select list (and QUALIFY): bound against
//! the window's input, planned as stacked `Window` nodes (one per distinct
//! PARTITION BY and ORDER BY), with the select list then planned over their
//! output. Also the rewrites that end in windows: named windows written
//! out (`named_windows`) and DISTINCT ON as a row_number (`distinct_on`).
//!
//! As grouped select lists are (see `sql/aggregate.rs`), it takes two
//! passes: the first records each call and stands in a NULL of its type;
//! the second, over the window nodes' output, makes each call its column.

use std::borrow::Cow;
use std::cell::RefCell;
use std::ops::ControlFlow;

use arrow::array::{new_null_array, Array, AsArray};
use arrow::datatypes::{DataType, Float64Type, Int64Type, Schema};
use sqlparser::ast::{
    BinaryOperator, Distinct, Expr as SqlExpr, Function, FunctionArg, FunctionArgExpr,
    FunctionArgumentList, FunctionArguments, Ident, NamedWindowDefinition, NamedWindowExpr,
    OrderBy, OrderByExpr, OrderByKind, OrderBySort, Query, Select, SelectItem, Value as SqlValue,
    VisitMut, VisitorMut, WindowFrameBound, WindowFrameUnits, WindowSpec, WindowType,
};

use crate::error::{Error, Result};
use crate::plan::aggregate::AggregateFunction as F;
use crate::plan::expr::sql_type_name;
use crate::plan::expr::Expr;
use crate::plan::logical::{LogicalPlan, SortKey};
use crate::plan::window::{Frame, RangeEnd, WindowExpr, WindowFunction};
use crate::sql::aggregate::{bind_aggregate, Aggregated};
use crate::sql::expr::{coerce_to, location, span_location, ExprPlanner, Scope, ScopeColumn};

/// Names of the window-only functions (aggregates work OVER windows too).
pub const WINDOW_FUNCTIONS: &[&str] = &[
    "row_number",
    "rank",
    "dense_rank",
    "lag",
    "lead",
    "first_value",
    "last_value",
    "nth_value",
    "ntile",
    "percent_rank",
    "cume_dist",
];

/// The window calls of one select list.
pub struct Windowed<'a> {
    input_scope: &'a Scope,
    input_schema: &'a Schema,
    /// In a grouped query the input is the aggregate's output, over which
    /// calls are bound as its select list is (`rank() OVER (ORDER BY
    /// sum(x))`).
    aggregated: Option<&'a Aggregated<'a>>,
    /// Calls met, with their `Debug` text (by which repeats are one call).
    calls: RefCell<Vec<(WindowExpr, String)>>,
    /// Pass 2: each call's column in the output of the window nodes.
    columns: Vec<usize>,
}

impl<'a> Windowed<'a> {
    pub fn new(input_scope: &'a Scope, input_schema: &'a Schema) -> Self {
        Windowed {
            input_scope,
            input_schema,
            aggregated: None,
            calls: RefCell::new(Vec::new()),
            columns: Vec::new(),
        }
    }

    /// The window calls of a grouped select list, over `schema`: the
    /// aggregate's output (see `sql/aggregate.rs`).
    pub fn over_groups(scope: &'a Scope, schema: &'a Schema, aggregated: &'a Aggregated) -> Self {
        Windowed {
            aggregated: Some(aggregated),
            ..Windowed::new(scope, schema)
        }
    }

    pub fn is_empty(&self) -> bool {
        self.calls.borrow().is_empty()
    }

    /// A window call: recorded in pass 1, its column in pass 2.
    pub fn call(&self, f: &Function, planner: &ExprPlanner) -> Result<Expr> {
        let input = ExprPlanner {
            aggregated: self.aggregated,
            ..ExprPlanner::new(self.input_scope, self.input_schema)
        };
        let bound = bind_window(&input, f).map_err(|e| e.at(location(f)))?;
        let key = format!("{bound:?}");
        let mut calls = self.calls.borrow_mut();
        let found = calls.iter().position(|(_, k)| *k == key);
        if self.columns.is_empty() {
            let t = bound.data_type.clone();
            if found.is_none() {
                calls.push((bound, key));
            }
            return Ok(Expr::Literal(new_null_array(&t, 1)));
        }
        let i = found
            .ok_or_else(|| Error::Internal(format!("window call {bound} missed by pass 1")))?;
        let column = self.columns[i];
        Ok(Expr::column(
            column,
            planner.schema.field(column).name().clone(),
        ))
    }

    /// After pass 1: the window nodes over `input`, and the scope of their
    /// output (the input's columns, then one per call). Ready for pass 2.
    pub fn plan(&mut self, input: LogicalPlan) -> Result<(LogicalPlan, Scope)> {
        let calls: Vec<WindowExpr> = self.calls.borrow().iter().map(|(w, _)| w.clone()).collect();
        let width = self.input_schema.fields().len();
        // Group calls by window, in the order first met.
        let mut windows: Vec<Vec<usize>> = Vec::new();
        for (i, w) in calls.iter().enumerate() {
            match windows.iter_mut().find(|g| calls[g[0]].same_window(w)) {
                Some(g) => g.push(i),
                None => windows.push(vec![i]),
            }
        }
        let mut plan = input;
        let mut columns = vec![0; calls.len()];
        let mut next = width;
        for group in &windows {
            let exprs: Vec<WindowExpr> = group.iter().map(|&i| calls[i].clone()).collect();
            for &i in group {
                columns[i] = next;
                next += 1;
            }
            plan = LogicalPlan::window(plan, exprs);
        }
        self.columns = columns;
        let mut scope = self.input_scope.clone();
        for i in 0..calls.len() {
            scope.columns.push(ScopeColumn {
                qualifier: None,
                // Not a name a query can write: only the calls refer to it.
                name: format!("#window{i}"),
                depth: 0,
                hidden: false,
            });
        }
        Ok((plan, scope))
    }
}

/// `select` with its WINDOW clause written out where its select list or
/// QUALIFY calls a named window, by PostgreSQL's rules: `OVER w` is w's window;
/// `OVER (w ORDER BY …)` takes w's PARTITION BY and adds an ORDER BY and
/// frame, which it may not do where w has them already. A definition may
/// name an earlier one the same way. Subqueries keep their own WINDOW
/// clauses, so they are left alone.
pub fn named_windows(select: &Select) -> Result<Cow<'_, Select>> {
    if select.named_window.is_empty() {
        return Ok(Cow::Borrowed(select));
    }
    let mut defined: Vec<(Ident, WindowSpec)> = Vec::new();
    for NamedWindowDefinition(name, def) in &select.named_window {
        if defined
            .iter()
            .any(|(n, _)| n.value.eq_ignore_ascii_case(&name.value))
        {
            return Err(Error::plan(format!("window '{name}' is defined twice"))
                .at(span_location(name.span)));
        }
        let spec = match def {
            NamedWindowExpr::NamedWindow(other) => defined_window(&defined, other)?.clone(),
            NamedWindowExpr::WindowSpec(spec) => derived_window(&defined, spec)?,
        };
        defined.push((name.clone(), spec));
    }
    let mut written = select.clone();
    let mut resolver = WrittenOut {
        defined: &defined,
        depth: 0,
    };
    for item in &mut written.projection {
        if let ControlFlow::Break(e) = item.visit(&mut resolver) {
            return Err(e);
        }
    }
    if let Some(qualify) = &mut written.qualify {
        if let ControlFlow::Break(e) = qualify.visit(&mut resolver) {
            return Err(e);
        }
    }
    Ok(Cow::Owned(written))
}

/// `SELECT DISTINCT ON (keys) items … ORDER BY order` as the window it
/// is: `SELECT items … QUALIFY row_number() OVER (PARTITION BY keys ORDER
/// BY order) = 1`, the first row of each key by the query's ORDER BY (any
/// one without it). Ranks stream, so a key of any size fits. ORDER BY
/// items that are select ordinals or aliases are written out, as the
/// window cannot see the select list.
pub fn distinct_on(select: &Select, order_by: Option<&OrderBy>) -> Result<Select> {
    let Some(Distinct::On(keys)) = &select.distinct else {
        return Ok(select.clone());
    };
    if select.qualify.is_some() {
        return Err(Error::NotImplemented("DISTINCT ON with QUALIFY".into()));
    }
    let items = match order_by.map(|o| &o.kind) {
        None => Vec::new(),
        Some(OrderByKind::Expressions(items)) => items.clone(),
        Some(OrderByKind::All(_)) => {
            return Err(Error::NotImplemented(
                "DISTINCT ON with ORDER BY ALL".into(),
            ))
        }
    };
    let item_expr = |item: &SelectItem| match item {
        SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } => Some(e.clone()),
        _ => None,
    };
    // A select ordinal or alias, as the expression it stands for.
    let written_out = |e: &SqlExpr| -> SqlExpr {
        let found = match e {
            SqlExpr::Value(v) => match &v.value {
                SqlValue::Number(n, _) => n
                    .parse::<usize>()
                    .ok()
                    .and_then(|n| n.checked_sub(1))
                    .and_then(|i| select.projection.get(i))
                    .and_then(item_expr),
                _ => None,
            },
            SqlExpr::Identifier(name) => select.projection.iter().find_map(|i| match i {
                SelectItem::ExprWithAlias { expr, alias }
                    if alias.value.eq_ignore_ascii_case(&name.value) =>
                {
                    Some(expr.clone())
                }
                _ => None,
            }),
            _ => None,
        };
        found.unwrap_or_else(|| e.clone())
    };
    let order_by = items
        .into_iter()
        .map(|item| OrderByExpr {
            expr: written_out(&item.expr),
            ..item
        })
        .collect();
    let first = SqlExpr::Function(Function {
        name: Ident::new("row_number").into(),
        uses_odbc_syntax: false,
        parameters: FunctionArguments::None,
        args: FunctionArguments::List(FunctionArgumentList {
            duplicate_treatment: None,
            args: Vec::new(),
            clauses: Vec::new(),
        }),
        filter: None,
        null_treatment: None,
        over: Some(WindowType::WindowSpec(WindowSpec {
            window_name: None,
            partition_by: keys.iter().map(written_out).collect(),
            order_by,
            window_frame: None,
        })),
        within_group: Vec::new(),
    });
    let mut rewritten = select.clone();
    rewritten.distinct = None;
    rewritten.qualify = Some(SqlExpr::BinaryOp {
        left: Box::new(first),
        op: BinaryOperator::Eq,
        right: Box::new(SqlExpr::value(SqlValue::Number("1".into(), false))),
    });
    Ok(rewritten)
}

/// Replaces named windows in the expressions of one SELECT (depth 0).
struct WrittenOut<'d> {
    defined: &'d [(Ident, WindowSpec)],
    depth: usize,
}

impl VisitorMut for WrittenOut<'_> {
    type Break = Error;

    fn pre_visit_query(&mut self, _: &mut Query) -> ControlFlow<Error> {
        self.depth += 1;
        ControlFlow::Continue(())
    }

    fn post_visit_query(&mut self, _: &mut Query) -> ControlFlow<Error> {
        self.depth -= 1;
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, e: &mut SqlExpr) -> ControlFlow<Error> {
        let SqlExpr::Function(f) = e else {
            return ControlFlow::Continue(());
        };
        let spec = match &f.over {
            _ if self.depth > 0 => return ControlFlow::Continue(()),
            Some(WindowType::NamedWindow(w)) => defined_window(self.defined, w).cloned(),
            Some(WindowType::WindowSpec(spec)) if spec.window_name.is_some() => {
                derived_window(self.defined, spec)
            }
            _ => return ControlFlow::Continue(()),
        };
        match spec {
            Ok(spec) => {
                f.over = Some(WindowType::WindowSpec(spec));
                ControlFlow::Continue(())
            }
            Err(e) => ControlFlow::Break(e),
        }
    }
}

fn defined_window<'d>(defined: &'d [(Ident, WindowSpec)], name: &Ident) -> Result<&'d WindowSpec> {
    defined
        .iter()
        .find(|(n, _)| n.value.eq_ignore_ascii_case(&name.value))
        .map(|(_, spec)| spec)
        .ok_or_else(|| {
            let names: Vec<String> = defined.iter().map(|(n, _)| n.to_string()).collect();
            Error::plan(format!(
                "unknown window '{name}' (the WINDOW clause defines {})",
                names.join(", ")
            ))
            .at(span_location(name.span))
        })
}

/// `(w ORDER BY … frame)`: w's window with what `spec` adds.
fn derived_window(defined: &[(Ident, WindowSpec)], spec: &WindowSpec) -> Result<WindowSpec> {
    let Some(name) = &spec.window_name else {
        return Ok(spec.clone());
    };
    let base = defined_window(defined, name)?;
    let refuse = |message: String| Err(Error::plan(message).at(span_location(name.span)));
    if !spec.partition_by.is_empty() {
        return refuse(format!(
            "cannot override the PARTITION BY of window '{name}'"
        ));
    }
    if !base.order_by.is_empty() && !spec.order_by.is_empty() {
        return refuse(format!("cannot override the ORDER BY of window '{name}'"));
    }
    if base.window_frame.is_some() {
        return refuse(format!(
            "cannot copy window '{name}', which has a frame (OVER {name}, without parentheses, \
             is that window)"
        ));
    }
    Ok(WindowSpec {
        window_name: None,
        partition_by: base.partition_by.clone(),
        order_by: match spec.order_by.is_empty() {
            true => base.order_by.clone(),
            false => spec.order_by.clone(),
        },
        window_frame: spec.window_frame.clone(),
    })
}

/// Bind `f OVER (...)` against the window's input.
fn bind_window(planner: &ExprPlanner, f: &Function) -> Result<WindowExpr> {
    let name = f.name.to_string().to_ascii_lowercase();
    // Named windows were replaced by their definitions (`named_windows`),
    // so a name left here has none.
    let unknown =
        |w: &Ident| Error::plan(format!("unknown window '{w}': no WINDOW clause defines it"));
    let spec = match &f.over {
        Some(WindowType::WindowSpec(spec)) => spec,
        Some(WindowType::NamedWindow(w)) => return Err(unknown(w)),
        None => return Err(Error::Internal(format!("{name} without OVER"))),
    };
    if let Some(w) = &spec.window_name {
        return Err(unknown(w));
    }
    let partition_by = spec
        .partition_by
        .iter()
        .map(|e| planner.plan(e))
        .collect::<Result<Vec<_>>>()?;
    let order_by = spec
        .order_by
        .iter()
        .map(|item| {
            if matches!(item.options.sort, Some(OrderBySort::Using(_))) {
                return Err(Error::NotImplemented("ORDER BY ... USING".into()));
            }
            Ok(SortKey {
                expr: planner.plan(&item.expr)?,
                descending: matches!(item.options.sort, Some(OrderBySort::Desc)),
                nulls_first: item.options.nulls_first.unwrap_or(false),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let mut range_bounds = Vec::new();
    let frame = match &spec.window_frame {
        None if order_by.is_empty() => Frame::Partition,
        None => Frame::ToPeers,
        Some(frame) => {
            // Rows (or groups) from the current one; None for UNBOUNDED.
            let offset = |b: &WindowFrameBound| -> Result<Option<i64>> {
                Ok(match b {
                    WindowFrameBound::CurrentRow => Some(0),
                    WindowFrameBound::Preceding(None) | WindowFrameBound::Following(None) => None,
                    WindowFrameBound::Preceding(Some(e)) => Some(-constant_offset(planner, e)?),
                    WindowFrameBound::Following(Some(e)) => Some(constant_offset(planner, e)?),
                })
            };
            let end = frame
                .end_bound
                .as_ref()
                .unwrap_or(&WindowFrameBound::CurrentRow);
            if matches!(frame.start_bound, WindowFrameBound::Following(None))
                || matches!(end, WindowFrameBound::Preceding(None))
            {
                return Err(Error::plan(format!(
                    "the window frame cannot start at UNBOUNDED FOLLOWING or end at UNBOUNDED \
                     PRECEDING (got {} AND {end})",
                    frame.start_bound
                )));
            }
            let has_value = |b: &WindowFrameBound| {
                matches!(
                    b,
                    WindowFrameBound::Preceding(Some(_)) | WindowFrameBound::Following(Some(_))
                )
            };
            match &frame.units {
                WindowFrameUnits::Range if has_value(&frame.start_bound) || has_value(end) => {
                    let mut range_end = |b: &WindowFrameBound| -> Result<RangeEnd> {
                        Ok(match b {
                            WindowFrameBound::CurrentRow => RangeEnd::CurrentRow,
                            WindowFrameBound::Preceding(None)
                            | WindowFrameBound::Following(None) => RangeEnd::Unbounded,
                            WindowFrameBound::Preceding(Some(e)) => {
                                range_bounds.push(range_bound(planner, spec, &order_by, e, true)?);
                                RangeEnd::Value
                            }
                            WindowFrameBound::Following(Some(e)) => {
                                range_bounds.push(range_bound(planner, spec, &order_by, e, false)?);
                                RangeEnd::Value
                            }
                        })
                    };
                    Frame::Range {
                        start: range_end(&frame.start_bound)?,
                        end: range_end(end)?,
                    }
                }
                units => match (units, offset(&frame.start_bound)?, offset(end)?) {
                    (WindowFrameUnits::Rows, None, Some(0)) => Frame::ToRow,
                    (_, None, None) => Frame::Partition,
                    (WindowFrameUnits::Range, None, Some(0)) if order_by.is_empty() => {
                        Frame::Partition
                    }
                    (WindowFrameUnits::Range, None, Some(0)) => Frame::ToPeers,
                    (WindowFrameUnits::Rows, start, end) => Frame::Rows { start, end },
                    // Without ORDER BY every row is a peer of every other.
                    (WindowFrameUnits::Range | WindowFrameUnits::Groups, _, _)
                        if order_by.is_empty() =>
                    {
                        Frame::Partition
                    }
                    (WindowFrameUnits::Range, start, end) => Frame::Range {
                        start: start.map_or(RangeEnd::Unbounded, |_| RangeEnd::CurrentRow),
                        end: end.map_or(RangeEnd::Unbounded, |_| RangeEnd::CurrentRow),
                    },
                    (WindowFrameUnits::Groups, start, end) => Frame::Groups { start, end },
                },
            }
        }
    };
    let args = plain_args(f, &name)?;
    let schema = planner.schema;
    let arity = |min: usize, max: usize| -> Result<()> {
        if (min..=max).contains(&args.len()) {
            Ok(())
        } else {
            Err(Error::plan(format!(
                "{name} takes {} arguments, got {}",
                if min == max {
                    min.to_string()
                } else {
                    format!("{min} to {max}")
                },
                args.len()
            )))
        }
    };
    let (func, args, data_type) = match name.as_str() {
        "row_number" | "rank" | "dense_rank" => {
            arity(0, 0)?;
            let func = match name.as_str() {
                "row_number" => WindowFunction::RowNumber,
                "rank" => WindowFunction::Rank { dense: false },
                _ => WindowFunction::Rank { dense: true },
            };
            (func, Vec::new(), DataType::Int64)
        }
        "lag" | "lead" => {
            arity(1, 3)?;
            let value = planner.plan(args[0])?;
            let t = value.data_type(schema)?;
            let offset = match args.get(1) {
                None => 1,
                Some(e) => constant_offset(planner, e)?,
            };
            let mut bound = vec![value];
            if let Some(d) = args.get(2) {
                bound.push(coerce_to(planner.plan(d)?, &t, schema)?);
            }
            let offset = if name == "lag" { -offset } else { offset };
            (WindowFunction::Shift { offset }, bound, t)
        }
        "ntile" => {
            arity(1, 1)?;
            let buckets = constant_offset(planner, args[0])?;
            if buckets == 0 {
                return Err(
                    Error::plan("ntile takes a positive number of buckets").at(location(args[0]))
                );
            }
            (
                WindowFunction::Ntile { buckets },
                Vec::new(),
                DataType::Int64,
            )
        }
        "percent_rank" | "cume_dist" => {
            arity(0, 0)?;
            let func = if name == "percent_rank" {
                WindowFunction::PercentRank
            } else {
                WindowFunction::CumeDist
            };
            (func, Vec::new(), DataType::Float64)
        }
        "nth_value" => {
            arity(2, 2)?;
            let value = planner.plan(args[0])?;
            let t = value.data_type(schema)?;
            let n = constant_offset(planner, args[1])?;
            if n == 0 {
                return Err(Error::plan("nth_value counts rows from 1").at(location(args[1])));
            }
            (WindowFunction::NthValue { n }, vec![value], t)
        }
        "first_value" | "last_value" => {
            arity(1, 1)?;
            let value = planner.plan(args[0])?;
            let t = value.data_type(schema)?;
            let func = if name == "first_value" {
                WindowFunction::FirstValue
            } else {
                WindowFunction::LastValue
            };
            (func, vec![value], t)
        }
        _ if crate::plan::aggregate::is_aggregate(&name) => {
            let mut plain = f.clone();
            plain.over = None;
            let a = bind_aggregate(planner, &plain)?;
            if a.distinct || a.filter.is_some() {
                return Err(Error::NotImplemented(format!(
                    "DISTINCT and FILTER in {name} OVER (...)"
                )));
            }
            if !matches!(
                a.func,
                F::CountStar | F::Count | F::Sum | F::Avg | F::Min | F::Max
            ) {
                return Err(Error::NotImplemented(format!(
                    "{name} as a window function (count, sum, avg, min and max are built)"
                )));
            }
            let arg_type = a.arg.as_ref().map(|e| e.data_type(schema)).transpose()?;
            let t = a.func.return_type(arg_type.as_ref())?;
            (
                WindowFunction::Aggregate(a.func),
                a.arg.into_iter().collect(),
                t,
            )
        }
        _ => {
            return Err(Error::plan(format!(
                "unknown window function '{name}' (window functions: {}, and count, sum, avg, \
                 min, max)",
                WINDOW_FUNCTIONS.join(", ")
            )))
        }
    };
    Ok(WindowExpr {
        func,
        args,
        partition_by,
        order_by,
        frame,
        range_bounds,
        data_type,
    })
}

/// The value a RANGE frame's `offset PRECEDING` (or FOLLOWING) bound stands
/// at, per row: the ORDER BY key minus or plus the offset, as SQL would
/// type it (`d - INTERVAL 7 DAY` stays a date). DESC turns PRECEDING into
/// plus.
fn range_bound(
    planner: &ExprPlanner,
    spec: &sqlparser::ast::WindowSpec,
    order_by: &[SortKey],
    offset: &SqlExpr,
    preceding: bool,
) -> Result<Expr> {
    let [key] = order_by else {
        return Err(Error::plan(format!(
            "a RANGE frame with an offset ({offset}) needs exactly one ORDER BY key, got {}",
            order_by.len()
        ))
        .at(location(offset)));
    };
    let key_type = key.expr.data_type(planner.schema)?;
    if !(key_type.is_numeric() || key_type.is_temporal()) {
        return Err(Error::plan(format!(
            "a RANGE frame with an offset needs a number, date or timestamp ORDER BY key, got {}",
            sql_type_name(&key_type)
        ))
        .at(location(offset)));
    }
    let value = planner.plan(offset)?;
    let Expr::Literal(v) = &value else {
        return Err(Error::plan(format!(
            "a RANGE frame's offset must be a constant, got {offset}"
        ))
        .at(location(offset)));
    };
    let negative = v.data_type().is_numeric()
        && arrow::compute::cast(v, &DataType::Float64)
            .ok()
            .is_some_and(|f| f.is_null(0) || f.as_primitive::<Float64Type>().value(0) < 0.0);
    if v.is_null(0) || negative {
        return Err(Error::plan(format!(
            "a RANGE frame's offset must be a non-negative constant, got {offset}"
        ))
        .at(location(offset)));
    }
    let op = if preceding != key.descending {
        BinaryOperator::Minus
    } else {
        BinaryOperator::Plus
    };
    let bound = SqlExpr::BinaryOp {
        left: Box::new(spec.order_by[0].expr.clone()),
        op,
        right: Box::new(offset.clone()),
    };
    let bound = planner.plan(&bound).map_err(|e| e.at(location(offset)))?;
    let bound_type = bound.data_type(planner.schema)?;
    if !(bound_type.is_numeric() || bound_type.is_temporal()) {
        return Err(Error::plan(format!(
            "a RANGE frame's offset {offset} does not step a {} ORDER BY key",
            sql_type_name(&key_type)
        ))
        .at(location(offset)));
    }
    Ok(bound)
}

/// The plain arguments of a call (a window call's, or `if`'s).
pub(crate) fn plain_args<'f>(f: &'f Function, name: &str) -> Result<Vec<&'f SqlExpr>> {
    let list = match &f.args {
        FunctionArguments::List(list) => list,
        FunctionArguments::None => return Ok(Vec::new()),
        FunctionArguments::Subquery(_) => {
            return Err(Error::NotImplemented("subqueries as arguments".into()))
        }
    };
    list.args
        .iter()
        .filter_map(|a| match a {
            FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => Some(Ok(e)),
            // count(*) is bound by the aggregate binder, which reads f.
            FunctionArg::Unnamed(FunctionArgExpr::Wildcard) => None,
            other => Some(Err(Error::plan(format!(
                "{name} takes plain arguments, got {other}"
            )))),
        })
        .collect()
}

/// lag/lead's offset, ntile's buckets, nth_value's n, a frame's rows: a
/// constant, non-negative integer.
fn constant_offset(planner: &ExprPlanner, e: &SqlExpr) -> Result<i64> {
    let bad = || {
        Error::plan(format!(
            "expected a constant non-negative integer (an offset, a count of rows or buckets), \
             got {e}"
        ))
        .at(location(e))
    };
    match planner.plan(e)? {
        Expr::Literal(v) if v.data_type().is_integer() => {
            let v = arrow::compute::cast(&v, &DataType::Int64).map_err(|_| bad())?;
            let v = v.as_primitive::<Int64Type>();
            if v.is_null(0) || v.value(0) < 0 {
                return Err(bad());
            }
            Ok(v.value(0))
        }
        _ => Err(bad()),
    }
}
