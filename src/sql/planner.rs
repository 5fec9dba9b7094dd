//! Queries → logical plans.
//!
//! Handles SELECT lists with expressions and aliases, WHERE, GROUP BY and
//! HAVING with aggregates (`grouped`, with `sql/aggregate.rs`), SELECT
//! DISTINCT, ORDER BY, LIMIT/OFFSET, UNION [ALL], INTERSECT, EXCEPT, VALUES,
//! joins (`table_with_joins`, `join`), [NOT] IN / [NOT] EXISTS subqueries
//! in WHERE and a join's ON (as semi and anti joins), scalar subqueries (uncorrelated ones
//! through the `ExprPlanner` hook, correlated ones through `correlated.rs`;
//! in ORDER BY as hidden select items, see `ordered_select`), window calls and
//! named windows (with `sql/window.rs`; in a grouped query over its
//! groups, see `grouped`), subqueries in
//! FROM, WITH, session tables and views, and the table forms
//! `read_parquet(...)`, `read_csv(...)`, `read_ndjson(...)` and `'path'`.
//! Anything else (INTERSECT/EXCEPT ALL, ...) is refused with a
//! `NotImplemented` error that names it, not misread.

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::BTreeSet;
use std::ops::ControlFlow;
use std::rc::Rc;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, Int64Array, RecordBatch, RecordBatchOptions};
use arrow::datatypes::{DataType, Field, Schema};
use sqlparser::ast::{
    Distinct, ExcludeSelectItem, Expr as SqlExpr, FunctionArg, FunctionArgExpr, GroupByExpr, Ident,
    InTarget, JoinConstraint, JoinOperator, LimitClause, ObjectName, OrderByExpr, OrderByKind,
    Query, RenameSelectItem, Select, SelectItem, SetExpr, SetOperator, SetQuantifier, TableAlias,
    TableAliasColumnDef, TableFactor, TableWithJoins, Value as SqlValue, VisitMut, VisitorMut,
    WildcardAdditionalOptions,
};

use crate::config::RunConfig;
use crate::error::{Error, Result, SqlLocation};
use crate::plan::aggregate::{AggregateExpr, AggregateFunction};
use crate::plan::expr::{sql_type_name, BinaryOp, Expr};
use crate::plan::function::ScalarFunction;
use crate::plan::logical::{JoinKind, LogicalPlan, SortKey};
use crate::plan::optimizer::equi_key;
use crate::plan::window::{Frame, WindowExpr, WindowFunction};
use crate::source::{CsvOptions, FileFormat, Source};
use crate::sql::aggregate::{
    found_outside_subqueries, group_by_all, group_name, Aggregated, AGGREGATE_NOT_ALLOWED,
};
use crate::sql::catalog::{Catalog, Table, View};
use crate::sql::ddl;
use crate::sql::expr::{
    location, span_location, ExprPlanner, Scope, ScopeColumn, SubqueryPlanner, SUBQUERY_NOT_HERE,
};
use crate::sql::types::parse_type_name;
use crate::sql::window::{distinct_on, named_windows, Windowed};

mod correlated;
use correlated::Decorrelated;

/// A plan together with the names its columns go by.
#[derive(Clone)]
struct Planned {
    plan: LogicalPlan,
    scope: Scope,
}

pub struct QueryPlanner<'a> {
    config: &'a RunConfig,
    /// The session's tables and views.
    catalog: &'a Catalog,
    /// CTEs visible here, innermost last; a later one shadows an earlier one.
    ctes: Vec<(String, Planned)>,
    /// Correlated subqueries joined in so far, for their names.
    correlated_count: usize,
    /// Scalar subqueries of the SELECT being planned that were planned on
    /// their own to see whether they are correlated, and were not: their
    /// plans, so that the select list and WHERE take them instead of
    /// planning them (and reading their files' footers) again.
    uncorrelated: Uncorrelated,
}

/// See [`QueryPlanner::uncorrelated`].
type Uncorrelated = Rc<RefCell<Vec<(Query, LogicalPlan)>>>;

impl<'a> QueryPlanner<'a> {
    pub fn new(config: &'a RunConfig, catalog: &'a Catalog) -> Self {
        QueryPlanner::with_ctes(config, catalog, Vec::new())
    }

    /// A planner of its own for a subquery, which sees the CTEs `ctes`.
    fn with_ctes(
        config: &'a RunConfig,
        catalog: &'a Catalog,
        ctes: Vec<(String, Planned)>,
    ) -> Self {
        QueryPlanner {
            config,
            catalog,
            ctes,
            correlated_count: 0,
            uncorrelated: Uncorrelated::default(),
        }
    }

    pub fn plan(&mut self, query: &Query) -> Result<LogicalPlan> {
        Ok(self.query(query)?.plan)
    }

    /// Every row of a named table: a session table or view, or a file.
    pub fn plan_table(&mut self, name: &ObjectName) -> Result<LogicalPlan> {
        Ok(self.named_table(name)?.plan)
    }

    /// Every row of files in `format`.
    pub fn plan_files(&mut self, format: FileFormat, patterns: Vec<String>) -> Result<LogicalPlan> {
        let alias = table_stem(patterns.first().map(String::as_str).unwrap_or(""));
        Ok(self.scan(format, patterns, Some(&alias))?.plan)
    }

    /// A view's query, its columns renamed as the view says, under its name.
    /// It is planned apart from the query that names it: that query's CTEs
    /// are not visible in it.
    pub fn plan_view(&self, name: &str, view: &View) -> Result<LogicalPlan> {
        Ok(self.view(name, view)?.plan)
    }

    fn view(&self, name: &str, view: &View) -> Result<Planned> {
        let mut inner = QueryPlanner::new(self.config, self.catalog);
        let planned = inner.query(&view.query)?;
        apply_alias(
            planned,
            &TableAlias {
                name: Ident::new(name),
                columns: view
                    .columns
                    .iter()
                    .map(|c| TableAliasColumnDef::from_name(c.value.clone()))
                    .collect(),
                explicit: false,
                at: None,
            },
        )
    }

    /// A session table: a scan of its files, or no rows if it has none.
    fn session_table(&self, table: &Table) -> Result<Planned> {
        let scope = Scope::from_schema(&table.schema, Some(&table.name));
        if table.files.is_empty() {
            return Ok(Planned {
                plan: ddl::empty_rows(&table.schema)?,
                scope,
            });
        }
        // The files are written by the statements before this one, which
        // have not run yet: nothing here may read them. Their size is
        // unknown to the planner.
        let source = Arc::new(Source {
            format: FileFormat::Parquet,
            patterns: vec![table.name.clone()],
            files: table.files.clone(),
            schema: table.schema.clone(),
            rows_total: None,
            bytes_total: 0,
            ordering: Vec::new(),
            distinct_max: vec![None; table.schema.fields().len()],
        });
        Ok(scan_of(source, scope))
    }

    fn query(&mut self, query: &Query) -> Result<Planned> {
        let visible = self.ctes.len();
        let result = self.query_inner(query);
        self.ctes.truncate(visible);
        result
    }

    fn query_inner(&mut self, query: &Query) -> Result<Planned> {
        if let Some(with) = &query.with {
            if with.recursive {
                return Err(Error::NotImplemented("WITH RECURSIVE".into()));
            }
            for cte in &with.cte_tables {
                let planned = self.query(&cte.query)?;
                let planned = apply_alias(planned, &cte.alias)?;
                self.ctes
                    .push((cte.alias.name.value.to_ascii_lowercase(), planned));
            }
        }
        if query.fetch.is_some() || !query.locks.is_empty() {
            return Err(Error::NotImplemented("FETCH and FOR UPDATE clauses".into()));
        }
        // DISTINCT ON keeps the first row of each key by the query's ORDER
        // BY, so it is planned with it (set operations' arms have none).
        let rewritten;
        let body = match &*query.body {
            SetExpr::Select(select) if matches!(select.distinct, Some(Distinct::On(_))) => {
                rewritten =
                    SetExpr::Select(Box::new(distinct_on(select, query.order_by.as_ref())?));
                &rewritten
            }
            body => body,
        };
        let mut planned = match (body, &query.order_by) {
            (SetExpr::Select(select), Some(order_by)) => {
                self.ordered_select(select, &order_by.kind)?
            }
            (body, order_by) => {
                let planned = self.set_expr(body)?;
                match order_by {
                    Some(order_by) => self.order_by(planned, &order_by.kind)?,
                    None => planned,
                }
            }
        };
        if let Some(limit) = &query.limit_clause {
            let (limit, offset) = match limit {
                LimitClause::LimitOffset {
                    limit,
                    offset,
                    limit_by,
                } => {
                    if !limit_by.is_empty() {
                        return Err(Error::NotImplemented("LIMIT BY".into()));
                    }
                    (limit.as_ref(), offset.as_ref().map(|o| &o.value))
                }
                LimitClause::OffsetCommaLimit { offset, limit } => (Some(limit), Some(offset)),
            };
            let fetch = limit.map(|e| self.count(e, "LIMIT")).transpose()?;
            let skip = offset
                .map(|e| self.count(e, "OFFSET"))
                .transpose()?
                .unwrap_or(0);
            planned.plan = LogicalPlan::Limit {
                input: Box::new(planned.plan),
                skip,
                fetch,
            };
        }
        Ok(planned)
    }

    /// A LIMIT or OFFSET: a constant, non-negative integer.
    fn count(&self, e: &SqlExpr, clause: &str) -> Result<usize> {
        let scope = Scope::default();
        let schema = Schema::empty();
        let planned = ExprPlanner::new(&scope, &schema).plan(e)?;
        let bad = || {
            Error::plan(format!("{clause} must be a non-negative integer, got {e}")).at(location(e))
        };
        match planned {
            Expr::Literal(v) => {
                let n = v.as_any().downcast_ref::<Int64Array>().ok_or_else(bad)?;
                usize::try_from(n.value(0)).map_err(|_| bad())
            }
            _ => Err(bad()),
        }
    }

    fn set_expr(&mut self, body: &SetExpr) -> Result<Planned> {
        match body {
            SetExpr::Select(select) => self.select(select),
            SetExpr::Query(query) => self.query(query),
            SetExpr::SetOperation {
                op,
                set_quantifier,
                left,
                right,
            } => {
                let all = match set_quantifier {
                    SetQuantifier::All => true,
                    SetQuantifier::None | SetQuantifier::Distinct => false,
                    q => {
                        return Err(Error::NotImplemented(format!("{op} {q}")));
                    }
                };
                let left = self.set_expr(left)?;
                let right = self.set_expr(right)?;
                match (op, all) {
                    (SetOperator::Union, true) => union(left, right),
                    (SetOperator::Union, false) => {
                        let planned = union(left, right)?;
                        Ok(Planned {
                            plan: distinct_rows(planned.plan)?,
                            scope: planned.scope,
                        })
                    }
                    (SetOperator::Intersect | SetOperator::Except, all) => {
                        intersect_or_except(*op == SetOperator::Intersect, all, left, right)
                    }
                    (op, _) => Err(Error::NotImplemented(format!("{op} ALL"))),
                }
            }
            SetExpr::Values(values) => self.values(values),
            other => Err(Error::NotImplemented(format!("the query form '{other}'"))),
        }
    }

    /// `VALUES (1, 'a'), (2, NULL)`: constant rows, each column of the type
    /// its values unify to (as UNION ALL unifies), named column0, column1, ...
    fn values(&mut self, values: &sqlparser::ast::Values) -> Result<Planned> {
        let scope = Scope::default();
        let schema = Schema::empty();
        let exprs = ExprPlanner::new(&scope, &schema);
        let width = values.rows.first().map_or(0, |r| r.content.len());
        let mut columns: Vec<Vec<ArrayRef>> = vec![Vec::new(); width];
        for row in &values.rows {
            let row = &row.content;
            if row.len() != width {
                return Err(Error::plan(format!(
                    "VALUES rows must have the same number of values: {width} and {}",
                    row.len()
                ))
                .at(row.first().and_then(location)));
            }
            for (column, e) in columns.iter_mut().zip(row) {
                match exprs.plan(e)? {
                    Expr::Literal(v) => column.push(v),
                    _ => {
                        return Err(Error::plan("VALUES takes constants").at(location(e)));
                    }
                }
            }
        }
        let mut fields = Vec::with_capacity(width);
        let mut arrays = Vec::with_capacity(width);
        for (i, column) in columns.into_iter().enumerate() {
            let mut t = DataType::Null;
            for v in &column {
                t = union_type(&t, v.data_type()).ok_or_else(|| {
                    Error::plan(format!(
                        "VALUES column {} mixes {} and {}",
                        i + 1,
                        sql_type_name(&t),
                        sql_type_name(v.data_type())
                    ))
                })?;
            }
            if t == DataType::Utf8View {
                t = DataType::Utf8;
            }
            let cast = column
                .iter()
                .map(|v| Ok(arrow::compute::cast(v, &t)?))
                .collect::<Result<Vec<ArrayRef>>>()?;
            let refs: Vec<&dyn Array> = cast.iter().map(|a| a.as_ref()).collect();
            arrays.push(arrow::compute::concat(&refs)?);
            fields.push(Field::new(format!("column{i}"), t, true));
        }
        let schema = Arc::new(Schema::new(fields));
        let batch = RecordBatch::try_new_with_options(
            schema.clone(),
            arrays,
            &RecordBatchOptions::new().with_row_count(Some(values.rows.len())),
        )?;
        Ok(Planned {
            plan: LogicalPlan::Values { batch },
            scope: Scope::from_schema(&schema, None),
        })
    }

    fn select(&mut self, select: &Select) -> Result<Planned> {
        let refuse = |what: &str| Err(Error::NotImplemented(what.to_string()));
        let distinct = match &select.distinct {
            None | Some(Distinct::All) => false,
            Some(Distinct::Distinct) => true,
            // Any row of each key: an arm of a set operation, whose ORDER BY
            // is the whole operation's (otherwise `query_inner` has written
            // it out with its ORDER BY).
            Some(Distinct::On(_)) => return self.select(&distinct_on(select, None)?),
        };
        let all;
        let group_by: &[SqlExpr] = match &select.group_by {
            GroupByExpr::Expressions(exprs, modifiers) if modifiers.is_empty() => exprs,
            GroupByExpr::All(modifiers) if modifiers.is_empty() => {
                all = group_by_all(&select.projection)?;
                &all
            }
            GroupByExpr::All(_) | GroupByExpr::Expressions(..) => {
                return refuse("ROLLUP, CUBE, GROUPING SETS and GROUP BY ... WITH")
            }
        };
        if select.top.is_some() || select.into.is_some() {
            return refuse("TOP and INTO");
        }
        let select = &*named_windows(select)?;
        let input = self.from(&select.from)?;
        let mut plan = input.plan;
        let scope = input.scope;
        let schema = plan.schema();
        // A scalar subquery is planned by a planner of its own that sees the
        // same CTEs and session objects, unless looking for correlation
        // below has planned it already.
        let (config, catalog, ctes) = (self.config, self.catalog, self.ctes.clone());
        self.uncorrelated.borrow_mut().clear();
        let uncorrelated = self.uncorrelated.clone();
        let subqueries = move |query: &Query| {
            let planned = uncorrelated
                .borrow()
                .iter()
                .find(|(q, _)| q == query)
                .cloned();
            match planned {
                Some((_, plan)) => Ok(plan),
                None => QueryPlanner::with_ctes(config, catalog, ctes.clone()).plan(query),
            }
        };
        let subqueries: &SubqueryPlanner = &subqueries;
        let exprs = ExprPlanner {
            subqueries: Some(subqueries),
            ..ExprPlanner::new(&scope, &schema)
        };
        if let Some(predicate) = &select.selection {
            // Conjuncts that are [NOT] IN / EXISTS subqueries become semi and
            // anti joins; the rest filter.
            let mut conjuncts = Vec::new();
            split_and(predicate, &mut conjuncts);
            let mut semi_joins = Vec::new();
            for c in conjuncts {
                if matches!(
                    c,
                    SqlExpr::In {
                        target: InTarget::Subquery(_),
                        ..
                    } | SqlExpr::Exists { .. }
                ) {
                    semi_joins.push(c);
                    continue;
                }
                // A correlated subquery in it is joined first (see
                // planner/correlated.rs), and its columns dropped after.
                let mut conjunct = c.clone();
                let joined = self.decorrelate(plan, &scope, [&mut conjunct])?;
                plan = joined.plan;
                let joined_schema = plan.schema();
                let exprs = match joined.joined {
                    true => ExprPlanner {
                        subqueries: Some(subqueries),
                        ..ExprPlanner::new(&joined.scope, &joined_schema)
                    },
                    false => ExprPlanner { ..exprs },
                };
                let planned = exprs.plan(&conjunct)?;
                match planned.data_type(&joined_schema)? {
                    DataType::Boolean | DataType::Null => {}
                    other => {
                        return Err(Error::plan(format!(
                            "WHERE needs a BOOLEAN condition, got {}",
                            sql_type_name(&other)
                        ))
                        .at(location(c)))
                    }
                }
                plan = LogicalPlan::Filter {
                    input: Box::new(plan),
                    predicate: planned,
                };
                if joined.joined {
                    plan = plan.select_columns(&(0..schema.fields().len()).collect::<Vec<_>>())?;
                }
            }
            for c in semi_joins {
                plan = self.subquery_join(plan, &scope, c)?;
            }
        }
        // A select list is grouped if it has GROUP BY or HAVING, or if
        // planning it plainly meets an aggregate call.
        // Window calls are recorded on the way (pass 1 of sql/window.rs).
        // Without GROUP BY, correlated subqueries in it are joined first
        // (see planner/correlated.rs); the outer columns keep their places,
        // so `*` still means `scope`.
        let ungrouped = group_by.is_empty() && select.having.is_none();
        let mut projection = select.projection.clone();
        let joined = match ungrouped {
            true => self.decorrelate(plan.clone(), &scope, item_exprs(&mut projection))?,
            false => Decorrelated::unchanged(plan.clone(), scope.clone()),
        };
        keep_names(&mut projection, &select.projection);
        let item_schema = joined.plan.schema();
        let mut windowed = Windowed::new(&joined.scope, &item_schema);
        let qualify = qualify_condition(select, &scope);
        let plain = if ungrouped {
            let with_windows = ExprPlanner {
                windowed: Some(&windowed),
                subqueries: Some(subqueries),
                ..ExprPlanner::new(&joined.scope, &item_schema)
            };
            let planned = select_items(&with_windows, &scope, &projection).and_then(|items| {
                if let Some(q) = &qualify {
                    with_windows.plan(q)?;
                }
                Ok(items)
            });
            match planned {
                Ok(planned) => Some(planned),
                Err(e) if is_aggregate_here(&e) => None,
                Err(e) => return Err(e),
            }
        } else {
            None
        };
        let mut plan = match plain {
            Some((items, names)) if windowed.is_empty() => {
                no_window_to_qualify(qualify.as_ref())?;
                LogicalPlan::project(joined.plan, items, names)?
            }
            Some(_) => {
                let (plan, window_scope) = windowed.plan(joined.plan)?;
                let window_schema = plan.schema();
                let planner = ExprPlanner {
                    windowed: Some(&windowed),
                    subqueries: Some(subqueries),
                    ..ExprPlanner::new(&window_scope, &window_schema)
                };
                let plan = qualified(plan, &planner, qualify.as_ref())?;
                // `*` still means the input's columns: `scope`.
                let (items, names) = select_items(&planner, &scope, &projection)?;
                LogicalPlan::project(plan, items, names)?
            }
            None => self.grouped_decorrelated(plan, &scope, select, group_by, subqueries)?,
        };
        if distinct {
            plan = distinct_rows(plan)?;
        }
        let scope = Scope::from_schema(&plan.schema(), None);
        Ok(Planned { plan, scope })
    }

    /// A grouped SELECT (see [`grouped`]) whose select list or HAVING may
    /// hold correlated scalar subqueries tied to its group keys. Each is
    /// joined to the input rows (planner/correlated.rs), and its value
    /// becomes one more group key: one value per key, so the groups stay
    /// the same, and the select list may read it as a key.
    fn grouped_decorrelated(
        &mut self,
        plan: LogicalPlan,
        scope: &Scope,
        select: &Select,
        group_by: &[SqlExpr],
        subqueries: &SubqueryPlanner,
    ) -> Result<LogicalPlan> {
        let mut rewritten = select.clone();
        let items = item_exprs(&mut rewritten.projection).chain(rewritten.having.as_mut());
        let joined = self.decorrelate(plan.clone(), scope, items)?;
        if !joined.joined {
            return grouped(plan, scope, select, group_by, subqueries);
        }
        // A key that is not a group key has many values in a group: the
        // subquery would have no one value there.
        let schema = plan.schema();
        let exprs = ExprPlanner::new(scope, &schema);
        let group = group_by
            .iter()
            .map(|g| Ok(format!("{:?}", group_item(&exprs, g, &select.projection)?)))
            .collect::<Result<Vec<_>>>()?;
        for key in &joined.outer_keys {
            if !group.contains(&format!("{:?}", exprs.plan(key)?)) {
                return Err(Error::plan(format!(
                    "a correlated subquery in a grouped query may only read the outer \
                     query's group keys, and '{key}' is not one"
                ))
                .at(location(key)));
            }
        }
        keep_names(&mut rewritten.projection, &select.projection);
        let mut group_by = group_by.to_vec();
        group_by.extend(joined.values.iter().cloned());
        grouped(
            joined.plan,
            &joined.scope,
            &rewritten,
            &group_by,
            subqueries,
        )
    }

    /// ORDER BY over the query's output: by column name or alias, by ordinal,
    /// or by an expression of output columns.
    fn order_by(&mut self, planned: Planned, kind: &OrderByKind) -> Result<Planned> {
        let schema = planned.plan.schema();
        let items = order_items(kind, schema.fields().len());
        let keys = items
            .iter()
            .map(|item| {
                let expr = order_expr(&planned.scope, &schema, item).map_err(|e| match e {
                    Error::Plan { message, location } if is_unknown_column(&message) => {
                        Error::Plan {
                            message: format!(
                                "{message}; ORDER BY after a set operation sees only its columns"
                            ),
                            location,
                        }
                    }
                    other => other,
                })?;
                sort_key(item, expr)
            })
            .collect::<Result<_>>()?;
        Ok(Planned {
            plan: LogicalPlan::Sort {
                input: Box::new(planned.plan),
                keys,
                fetch: None,
            },
            scope: planned.scope,
        })
    }

    /// A SELECT with ORDER BY. A key that is not an output column (or an
    /// expression of them) may still be one of the input's columns, an
    /// aggregate or a scalar subquery, as in `SELECT name FROM t ORDER BY
    /// age` (PostgreSQL and DuckDB accept all three): the select is planned
    /// again with such keys as hidden extra items, sorted, and the extras
    /// projected away.
    fn ordered_select(&mut self, select: &Select, kind: &OrderByKind) -> Result<Planned> {
        let planned = self.select(select)?;
        let schema = planned.plan.schema();
        let items = order_items(kind, schema.fields().len());
        let mut keys = Vec::with_capacity(items.len());
        let mut hidden = Vec::new();
        let mut unresolved = None;
        for item in items.iter() {
            match order_expr(&planned.scope, &schema, item) {
                Ok(expr) => keys.push(Some(sort_key(item, expr)?)),
                Err(e) if is_hidden_key(&e) => {
                    unresolved.get_or_insert(e);
                    hidden.push(item);
                    keys.push(None);
                }
                Err(e) => return Err(e),
            }
        }
        let Some(unresolved) = unresolved else {
            let keys = keys.into_iter().flatten().collect();
            return Ok(Planned {
                plan: LogicalPlan::Sort {
                    input: Box::new(planned.plan),
                    keys,
                    fetch: None,
                },
                scope: planned.scope,
            });
        };
        if matches!(select.distinct, Some(Distinct::Distinct)) {
            // The hidden key would make rows distinct that are not.
            return Err(Error::plan(
                "for SELECT DISTINCT, ORDER BY expressions must appear in the select list",
            )
            .at(location(&hidden[0].expr)));
        }
        let mut widened = select.clone();
        for (i, item) in hidden.iter().enumerate() {
            widened.projection.push(SelectItem::ExprWithAlias {
                expr: item.expr.clone(),
                alias: Ident::new(format!("__highwater_order_{i}")),
            });
        }
        // Not an input column or an aggregate either: the first error says
        // what was not found among the outputs.
        let Ok(wide) = self.select(&widened) else {
            return Err(match unresolved {
                Error::Plan { message, location } if is_unknown_column(&message) => Error::Plan {
                    message: format!(
                        "{message}; ORDER BY sees the select list and the columns of FROM"
                    ),
                    location,
                },
                other => other,
            });
        };
        let wide_schema = wide.plan.schema();
        let visible = schema.fields().len();
        let mut next_hidden = visible..wide_schema.fields().len();
        let keys = keys
            .into_iter()
            .zip(items.iter())
            .map(|(key, item)| match key {
                Some(key) => Ok(key),
                None => {
                    let i = next_hidden.next().ok_or_else(|| {
                        Error::Internal("a hidden ORDER BY column went missing".into())
                    })?;
                    sort_key(item, Expr::column(i, wide_schema.field(i).name().clone()))
                }
            })
            .collect::<Result<_>>()?;
        let sorted = LogicalPlan::Sort {
            input: Box::new(wide.plan),
            keys,
            fetch: None,
        };
        let (exprs, names) = schema
            .fields()
            .iter()
            .enumerate()
            .map(|(i, f)| (Expr::column(i, f.name().clone()), f.name().clone()))
            .unzip();
        Ok(Planned {
            plan: LogicalPlan::project(sorted, exprs, names)?,
            scope: planned.scope,
        })
    }

    /// The FROM clause: one row of no columns without one; `FROM a, b` is a
    /// cross join, whose keys the optimizer finds in WHERE.
    fn from(&mut self, from: &[TableWithJoins]) -> Result<Planned> {
        if from.is_empty() {
            return Ok(Planned {
                plan: LogicalPlan::Values {
                    batch: RecordBatch::try_new_with_options(
                        Arc::new(Schema::empty()),
                        vec![],
                        &RecordBatchOptions::new().with_row_count(Some(1)),
                    )?,
                },
                scope: Scope::default(),
            });
        }
        let mut planned: Option<Planned> = None;
        for t in from {
            let next = self.table_with_joins(t)?;
            planned = Some(match planned {
                None => next,
                Some(left) => join(left, next, JoinKind::Inner, &JoinConstraint::None, None)?,
            });
        }
        planned.ok_or_else(|| Error::Internal("empty FROM".into()))
    }

    /// `[NOT] IN (subquery)` or `[NOT] EXISTS (subquery)`, a conjunct of
    /// WHERE, as a semi or anti join of `plan` (whose columns `scope`
    /// names) with the subquery.
    ///
    /// NOT IN is a null-aware anti join: SQL says `x NOT IN (1, NULL)` is
    /// unknown, so such rows are not returned. EXISTS may be correlated:
    /// its WHERE is bound over the subquery's columns and, one level out,
    /// this query's, and becomes the join's keys and filter.
    fn subquery_join(
        &mut self,
        plan: LogicalPlan,
        scope: &Scope,
        e: &SqlExpr,
    ) -> Result<LogicalPlan> {
        let outer_width = scope.columns.len();
        let outer_schema = plan.schema();
        match e {
            SqlExpr::In {
                expr,
                target: InTarget::Subquery(subquery),
                negated,
                ..
            } => {
                let sub = self.query(subquery)?;
                let sub_schema = sub.plan.schema();
                if sub_schema.fields().len() != 1 {
                    return Err(Error::plan(format!(
                        "IN (subquery) needs a subquery of one column, got {}",
                        sub_schema.fields().len()
                    ))
                    .at(location(e)));
                }
                let value = ExprPlanner::new(scope, &outer_schema).plan(expr)?;
                let combined = concat_schemas(&outer_schema, &sub_schema);
                let both = nested_scope(scope, &sub.scope);
                let eq = ExprPlanner::new(&both, &combined)
                    .binary(
                        BinaryOp::Eq,
                        value,
                        Expr::column(outer_width, sub_schema.field(0).name().clone()),
                    )
                    .map_err(|err| err.at(location(e)))?;
                let Some(key) = equi_key(&eq, outer_width)? else {
                    return Err(Error::NotImplemented(
                        "IN (subquery) with a constant on the left".into(),
                    ));
                };
                let kind = if *negated {
                    JoinKind::Anti
                } else {
                    JoinKind::Semi
                };
                Ok(LogicalPlan::join(
                    plan,
                    sub.plan,
                    kind,
                    vec![key],
                    None,
                    *negated,
                ))
            }
            SqlExpr::Exists { subquery, negated } => {
                let select = exists_select(subquery)?;
                let inner = self.from(&select.from)?;
                if calls_an_aggregate(&select.projection) {
                    // Without GROUP BY that subquery returns one row even
                    // over no rows, so EXISTS holds for every outer row and
                    // NOT EXISTS for none. As a semi join it held only where
                    // a row matched.
                    return Ok(if *negated {
                        LogicalPlan::Limit {
                            input: Box::new(plan),
                            skip: 0,
                            fetch: Some(0),
                        }
                    } else {
                        plan
                    });
                }
                let inner_schema = inner.plan.schema();
                let combined = concat_schemas(&outer_schema, &inner_schema);
                let both = nested_scope(scope, &inner.scope);
                let mut on = Vec::new();
                let mut filter = Vec::new();
                if let Some(condition) = &select.selection {
                    let planner = ExprPlanner::new(&both, &combined);
                    split_join_condition(
                        &planner,
                        condition,
                        "WHERE",
                        outer_width,
                        &mut on,
                        &mut filter,
                    )?;
                }
                let kind = if *negated {
                    JoinKind::Anti
                } else {
                    JoinKind::Semi
                };
                Ok(LogicalPlan::join(
                    plan,
                    inner.plan,
                    kind,
                    on,
                    Expr::conjunction(filter),
                    false,
                ))
            }
            other => Err(Error::Internal(format!(
                "not a subquery condition: {other}"
            ))),
        }
    }

    /// A table and the joins that follow it, left to right.
    fn table_with_joins(&mut self, t: &TableWithJoins) -> Result<Planned> {
        let mut planned = self.table_factor(&t.relation)?;
        // A scalar subquery in ON is planned on its own and runs before the
        // query, as in WHERE; a correlated one is refused there.
        let (config, catalog, ctes) = (self.config, self.catalog, self.ctes.clone());
        let scalar =
            move |query: &Query| QueryPlanner::with_ctes(config, catalog, ctes.clone()).plan(query);
        let scalar: &SubqueryPlanner = &scalar;
        for j in &t.joins {
            let mut right = self.table_factor(&j.relation)?;
            use JoinOperator as J;
            let (kind, constraint) = match &j.join_operator {
                J::Join(c) | J::Inner(c) => (JoinKind::Inner, c),
                J::Left(c) | J::LeftOuter(c) => (JoinKind::Left, c),
                J::Right(c) | J::RightOuter(c) => (JoinKind::Right, c),
                J::FullOuter(c) => (JoinKind::Full, c),
                J::CrossJoin(c) => (JoinKind::Inner, c),
                J::Semi(c) | J::LeftSemi(c) => (JoinKind::Semi, c),
                J::Anti(c) | J::LeftAnti(c) => (JoinKind::Anti, c),
                other => {
                    return Err(Error::NotImplemented(format!(
                        "the join '{}'",
                        other_name(other)
                    )))
                }
            };
            if matches!(j.join_operator, JoinOperator::CrossJoin(_))
                != matches!(constraint, JoinConstraint::None)
            {
                return Err(Error::plan(
                    "a JOIN needs ON, USING or NATURAL; only CROSS JOIN goes without",
                ));
            }
            let (constraint, tests) = subquery_tests(constraint);
            if tests.is_empty() {
                planned = join(planned, right, kind, &constraint, Some(scalar))?;
                continue;
            }
            // `[NOT] IN (subquery)` and `[NOT] EXISTS` conjuncts of ON are
            // semi and anti joins, as in WHERE. In an inner join ON is a
            // WHERE: they test the joined rows (and the optimizer moves each
            // down to the side it reads). In an outer or semi join they may
            // only test the side whose rows they decide to match, which they
            // then filter before the join: `t LEFT JOIN u ON a = c AND d IN
            // (…)` is `t LEFT JOIN (u WHERE d IN (…)) ON a = c`.
            match kind {
                JoinKind::Inner => {
                    planned = join(planned, right, kind, &constraint, Some(scalar))?;
                    for test in tests {
                        planned.plan = self.subquery_join(planned.plan, &planned.scope, test)?;
                    }
                }
                JoinKind::Left | JoinKind::Semi | JoinKind::Anti => {
                    for test in tests {
                        right = self.one_side_test(&planned, right, false, test)?;
                    }
                    planned = join(planned, right, kind, &constraint, Some(scalar))?;
                }
                JoinKind::Right => {
                    for test in tests {
                        planned = self.one_side_test(&right, planned, true, test)?;
                    }
                    planned = join(planned, right, kind, &constraint, Some(scalar))?;
                }
                JoinKind::Full => {
                    return Err(Error::NotImplemented(format!(
                        "IN and EXISTS subqueries in the ON of a FULL JOIN ('{}'): \
                         such a test decides which rows of both sides match",
                        tests[0]
                    ))
                    .at(location(tests[0])))
                }
            }
        }
        Ok(planned)
    }

    /// `side` filtered by `test`, an IN or EXISTS conjunct of an outer or
    /// semi join's ON, which must read no column of `other`, the join's
    /// other input; `side_is_left` says which input `side` is.
    fn one_side_test(
        &mut self,
        other: &Planned,
        side: Planned,
        side_is_left: bool,
        test: &SqlExpr,
    ) -> Result<Planned> {
        // Which columns the test reads is known once it is bound, over both
        // inputs side by side (so that a name of both is ambiguous here as
        // anywhere in ON): bind it there, and look at what it read.
        let (left, right) = match side_is_left {
            true => (side.clone(), other.clone()),
            false => (other.clone(), side.clone()),
        };
        let lw = left.scope.columns.len();
        let both = join(left, right, JoinKind::Inner, &JoinConstraint::None, None)?;
        let width = both.scope.columns.len();
        let bound = self.subquery_join(both.plan, &both.scope, test)?;
        let mut reads = BTreeSet::new();
        if let LogicalPlan::Join { on, filter, .. } = &bound {
            for (outer, _) in on {
                reads.extend(outer.columns());
            }
            if let Some(filter) = filter {
                reads.extend(filter.columns().into_iter().filter(|&c| c < width));
            }
        }
        let reads_other = match side_is_left {
            true => reads.iter().any(|&c| c >= lw),
            false => reads.iter().any(|&c| c < lw),
        };
        if reads_other {
            let (join_side, other_side) = match side_is_left {
                true => ("RIGHT", "right"),
                false => ("LEFT", "left"),
            };
            return Err(Error::NotImplemented(format!(
                "an IN or EXISTS subquery in the ON of a {join_side} JOIN that reads the \
                 {other_side} side ('{test}'): it may test only the side it filters"
            ))
            .at(location(test)));
        }
        Ok(Planned {
            plan: self.subquery_join(side.plan, &side.scope, test)?,
            scope: side.scope,
        })
    }

    fn table_factor(&mut self, factor: &TableFactor) -> Result<Planned> {
        match factor {
            TableFactor::NestedJoin {
                table_with_joins,
                alias,
            } => {
                let planned = self.table_with_joins(table_with_joins)?;
                match alias {
                    Some(alias) => apply_alias(planned, alias),
                    None => Ok(planned),
                }
            }
            TableFactor::Table {
                name, alias, args, ..
            } => {
                let planned = match args {
                    Some(args) => self.table_function(name, &args.args)?,
                    None => self.named_table(name)?,
                };
                match alias {
                    Some(alias) => apply_alias(planned, alias),
                    None => Ok(planned),
                }
            }
            TableFactor::Derived {
                subquery, alias, ..
            } => {
                let planned = self.query(subquery)?;
                match alias {
                    Some(alias) => apply_alias(planned, alias),
                    None => Ok(planned),
                }
            }
            other => Err(Error::NotImplemented(format!("the table form '{other}'"))),
        }
    }

    /// A bare name: a CTE, or a quoted path like `'data/*.parquet'`.
    fn named_table(&mut self, name: &ObjectName) -> Result<Planned> {
        let ident = match name.0.as_slice() {
            [part] => part.as_ident(),
            _ => None,
        };
        let Some(ident) = ident else {
            return Err(Error::plan(format!("unknown table '{name}'")));
        };
        let lower = ident.value.to_ascii_lowercase();
        if ident.quote_style != Some('\'') {
            if let Some((_, planned)) = self.ctes.iter().rev().find(|(n, _)| *n == lower) {
                return Ok(planned.clone());
            }
            if let Some(table) = self.catalog.table(&lower) {
                return self.session_table(table);
            }
            if let Some(view) = self.catalog.view(&lower) {
                return self.view(&lower, view);
            }
        }
        let path = ident.value.clone();
        let looks_like_file = ident.quote_style.is_some() || path.contains(['/', '.']);
        if looks_like_file {
            let format = FileFormat::from_extension(&path).ok_or_else(|| {
                Error::plan(format!(
                    "cannot tell the format of '{path}' from its extension: \
                     use read_parquet, read_csv or read_ndjson"
                ))
            })?;
            return self.scan(format, vec![path], Some(&table_stem(&ident.value)));
        }
        let mut known: Vec<String> = self.ctes.iter().map(|(n, _)| n.clone()).collect();
        known.extend(self.catalog.names());
        Err(Error::plan(format!(
            "unknown table '{}': tables are CTEs, session tables and views ({}) or files, such as 'data.parquet' or read_csv('x.csv')",
            ident.value,
            if known.is_empty() { "none here".to_string() } else { known.join(", ") }
        )))
    }

    fn table_function(&mut self, name: &ObjectName, args: &[FunctionArg]) -> Result<Planned> {
        let function = name.to_string().to_ascii_lowercase();
        let mut positional = Vec::new();
        let mut named = Vec::new();
        for arg in args {
            match arg {
                FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => positional.push(e),
                FunctionArg::Named {
                    name,
                    arg: FunctionArgExpr::Expr(e),
                    ..
                } => named.push((name.value.to_ascii_lowercase(), e)),
                other => return Err(Error::plan(format!("bad argument to {function}: {other}"))),
            }
        }
        let [paths] = positional.as_slice() else {
            return Err(Error::plan(format!(
                "{function} takes one path, or a list of paths, then named options"
            )));
        };
        let patterns = string_list(paths).map_err(|e| e.at(location(*paths)))?;
        let mut format = match function.as_str() {
            "read_parquet" | "parquet_scan" => FileFormat::Parquet,
            "read_csv" | "read_csv_auto" => FileFormat::Csv(CsvOptions::default()),
            "read_ndjson" | "read_json" | "read_json_auto" | "read_ndjson_auto" => {
                FileFormat::Ndjson
            }
            _ => {
                return Err(Error::plan(format!(
                    "unknown table function '{function}': use read_parquet, read_csv or read_ndjson"
                )))
            }
        };
        for (option, value) in named {
            let at = location(value);
            set_option(&mut format, &function, &option, value).map_err(|e| e.at(at))?;
        }
        let alias = table_stem(patterns.first().map(String::as_str).unwrap_or(""));
        self.scan(format, patterns, Some(&alias))
    }

    fn scan(
        &mut self,
        format: FileFormat,
        patterns: Vec<String>,
        qualifier: Option<&str>,
    ) -> Result<Planned> {
        let source = Arc::new(Source::open(format, patterns, self.config.infer_rows_max)?);
        let scope = Scope::from_schema(&source.schema, qualifier);
        Ok(scan_of(source, scope))
    }
}

/// Every column of `source`, named by `scope`.
fn scan_of(source: Arc<Source>, scope: Scope) -> Planned {
    let projection = (0..source.schema.fields().len()).collect();
    Planned {
        plan: LogicalPlan::Scan {
            source,
            projection,
            filters: Vec::new(),
            limit: None,
        },
        scope,
    }
}

/// What a wildcard stands for: each of `columns` (indexes into `scope`)
/// that its `EXCLUDE` (or `EXCEPT`) does not name, with the expression its
/// `REPLACE` puts in the column's place, and its name after `RENAME`. A
/// name an option gives that the wildcard does not have is an error.
fn wildcard_columns<'o>(
    options: &'o WildcardAdditionalOptions,
    scope: &Scope,
    columns: Vec<usize>,
) -> Result<Vec<(usize, Option<&'o SqlExpr>, String)>> {
    if options.opt_ilike.is_some() {
        return Err(Error::NotImplemented("* ILIKE".into()));
    }
    // A name an option gives, as (qualifier, column), and where it is.
    let named = |parts: &[Ident]| -> (Option<String>, String, Option<SqlLocation>) {
        // The parser gives every name a part; an empty one matches nothing.
        let Some((column, qualifier)) = parts.split_last() else {
            return (None, String::new(), None);
        };
        let qualifier = (!qualifier.is_empty()).then(|| {
            let q: Vec<&str> = qualifier.iter().map(|p| p.value.as_str()).collect();
            q.join(".")
        });
        (qualifier, column.value.clone(), span_location(column.span))
    };
    let mut excluded = Vec::new();
    match &options.opt_exclude {
        Some(ExcludeSelectItem::Single(name)) => excluded.push(named(&object_parts(name)?)),
        Some(ExcludeSelectItem::Multiple(names)) => {
            for name in names {
                excluded.push(named(&object_parts(name)?));
            }
        }
        None => {}
    }
    if let Some(except) = &options.opt_except {
        for ident in std::iter::once(&except.first_element).chain(&except.additional_elements) {
            excluded.push(named(std::slice::from_ref(ident)));
        }
    }
    let replaced: Vec<_> = options
        .opt_replace
        .iter()
        .flat_map(|r| &r.items)
        .map(|r| (named(std::slice::from_ref(&r.column_name)), &r.expr))
        .collect();
    let renamed: Vec<_> = match &options.opt_rename {
        Some(RenameSelectItem::Single(r)) => vec![r],
        Some(RenameSelectItem::Multiple(rs)) => rs.iter().collect(),
        None => Vec::new(),
    }
    .into_iter()
    .map(|r| (named(std::slice::from_ref(&r.ident)), r.alias.value.clone()))
    .collect();
    let is = |(qualifier, name, _): &(Option<String>, String, Option<SqlLocation>), i: usize| {
        let c = &scope.columns[i];
        c.name.eq_ignore_ascii_case(name)
            && qualifier.as_ref().is_none_or(|q| {
                c.qualifier
                    .as_deref()
                    .is_some_and(|cq| cq.eq_ignore_ascii_case(q))
            })
    };
    let every_name = excluded
        .iter()
        .map(|n| ("EXCLUDE", n))
        .chain(replaced.iter().map(|(n, _)| ("REPLACE", n)))
        .chain(renamed.iter().map(|(n, _)| ("RENAME", n)));
    for (option, n) in every_name {
        if !columns.iter().any(|&i| is(n, i)) {
            let shown = n.0.as_ref().map_or(n.1.clone(), |q| format!("{q}.{}", n.1));
            return Err(Error::plan(format!(
                "* {option} names '{shown}', which is not among the columns * stands for"
            ))
            .at(n.2));
        }
    }
    Ok(columns
        .into_iter()
        .filter(|&i| !excluded.iter().any(|n| is(n, i)))
        .map(|i| {
            let expr = replaced.iter().find(|(n, _)| is(n, i)).map(|(_, e)| *e);
            let name = renamed
                .iter()
                .find(|(n, _)| is(n, i))
                .map_or_else(|| scope.columns[i].name.clone(), |(_, alias)| alias.clone());
            (i, expr, name)
        })
        .collect())
}

/// The identifiers of a plain name (`t.x`).
fn object_parts(name: &ObjectName) -> Result<Vec<Ident>> {
    name.0
        .iter()
        .map(|part| {
            part.as_ident()
                .cloned()
                .ok_or_else(|| Error::plan(format!("expected a column name, got {name}")))
        })
        .collect()
}

/// The expressions of a select list's items, to rewrite in place.
fn item_exprs(items: &mut [SelectItem]) -> impl Iterator<Item = &mut SqlExpr> {
    items.iter_mut().filter_map(|item| match item {
        SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } => Some(e),
        _ => None,
    })
}

/// Give each unnamed item of `rewritten` that differs from its `original`
/// the name the original would have had.
fn keep_names(rewritten: &mut [SelectItem], original: &[SelectItem]) {
    for (item, original) in rewritten.iter_mut().zip(original) {
        if let (SelectItem::UnnamedExpr(e), SelectItem::UnnamedExpr(o)) = (&*item, original) {
            if e != o {
                *item = SelectItem::ExprWithAlias {
                    expr: e.clone(),
                    alias: Ident::new(derived_name(o)),
                };
            }
        }
    }
}

/// The ORDER BY items over an output of `width` columns: DuckDB's `ORDER
/// BY ALL` is every column, left to right, with the options it gives.
fn order_items(kind: &OrderByKind, width: usize) -> Cow<'_, [OrderByExpr]> {
    match kind {
        OrderByKind::Expressions(items) => Cow::Borrowed(items),
        OrderByKind::All(options) => Cow::Owned(
            (1..=width)
                .map(|i| OrderByExpr {
                    expr: SqlExpr::value(SqlValue::Number(i.to_string(), false)),
                    options: options.clone(),
                    with_fill: None,
                })
                .collect(),
        ),
    }
}

/// An ORDER BY item as an expression of the output columns: an ordinal, a
/// column name or alias, an aggregate's text (`ORDER BY count(*)`), or an
/// expression of those.
fn order_expr(scope: &Scope, schema: &Schema, item: &OrderByExpr) -> Result<Expr> {
    match &item.expr {
        SqlExpr::Value(v) if matches!(v.value, SqlValue::Number(..)) => {
            let n: usize = v.value.to_string().parse().unwrap_or(0);
            if n == 0 || n > schema.fields().len() {
                return Err(Error::plan(format!(
                    "ORDER BY position {} is not in the select list (1 to {})",
                    v.value,
                    schema.fields().len()
                ))
                .at(location(&item.expr)));
            }
            Ok(Expr::column(n - 1, schema.field(n - 1).name().clone()))
        }
        e => match by_text(schema, e) {
            Some(i) if !matches!(e, SqlExpr::Identifier(_) | SqlExpr::CompoundIdentifier(_)) => {
                Ok(Expr::column(i, schema.field(i).name().clone()))
            }
            _ => ExprPlanner::new(scope, schema).plan(e),
        },
    }
}

fn sort_key(item: &OrderByExpr, expr: Expr) -> Result<SortKey> {
    if matches!(
        item.options.sort,
        Some(sqlparser::ast::OrderBySort::Using(_))
    ) {
        return Err(Error::NotImplemented("ORDER BY ... USING".into()));
    }
    Ok(SortKey {
        expr,
        descending: matches!(item.options.sort, Some(sqlparser::ast::OrderBySort::Desc)),
        // DuckDB's default: NULLS LAST for both ASC and DESC.
        nulls_first: item.options.nulls_first.unwrap_or(false),
    })
}

fn is_unknown_column(message: &str) -> bool {
    message.starts_with("unknown column")
}

/// Whether an ORDER BY key that failed against the output columns may
/// still be planned as a hidden select item: it names other columns, calls
/// an aggregate, or holds a scalar subquery (correlated or not, which the
/// select list plans).
fn is_hidden_key(e: &Error) -> bool {
    is_aggregate_here(e)
        || matches!(e, Error::Plan { message, .. } if is_unknown_column(message))
        || matches!(e, Error::NotImplemented(message) if message.starts_with(SUBQUERY_NOT_HERE))
}

/// The output column whose name is `e`'s SQL text, as an unaliased select
/// item is named.
fn by_text(schema: &Schema, e: &SqlExpr) -> Option<usize> {
    let text = e.to_string();
    schema
        .fields()
        .iter()
        .position(|f| f.name().eq_ignore_ascii_case(&text))
}

/// Whether `e` is the error for an aggregate call where a plain select
/// list was expected.
fn is_aggregate_here(e: &Error) -> bool {
    matches!(e, Error::Plan { message, .. } if message.starts_with(AGGREGATE_NOT_ALLOWED))
}

/// The select list planned by `exprs`: expressions and their output names.
/// Wildcards expand to the input's columns (`scope`); in a grouped query
/// each must be a group column.
fn select_items(
    exprs: &ExprPlanner,
    scope: &Scope,
    projection: &[SelectItem],
) -> Result<(Vec<Expr>, Vec<String>)> {
    let mut items = Vec::new();
    let mut names = Vec::new();
    let column = |i: usize, items: &mut Vec<Expr>| -> Result<()> {
        let c = &scope.columns[i];
        let e = if exprs.aggregated.is_some() {
            let mut parts: Vec<Ident> = c.qualifier.iter().map(Ident::new).collect();
            parts.push(Ident::new(&c.name));
            exprs.plan(&SqlExpr::CompoundIdentifier(parts))?
        } else {
            Expr::column(i, c.name.clone())
        };
        items.push(e);
        Ok(())
    };
    for item in projection {
        match item {
            SelectItem::Wildcard(options) | SelectItem::QualifiedWildcard(_, options) => {
                let columns: Vec<usize> = match item {
                    SelectItem::QualifiedWildcard(kind, _) => {
                        let qualifier = kind.to_string();
                        let qualifier = qualifier.trim_end_matches(".*");
                        let columns: Vec<usize> = (0..scope.columns.len())
                            .filter(|&i| {
                                scope.columns[i]
                                    .qualifier
                                    .as_deref()
                                    .is_some_and(|q| q.eq_ignore_ascii_case(qualifier))
                            })
                            .collect();
                        if columns.is_empty() {
                            return Err(Error::plan(format!(
                                "unknown table '{qualifier}' in {kind}"
                            )));
                        }
                        columns
                    }
                    _ => (0..scope.columns.len())
                        .filter(|&i| !scope.columns[i].hidden)
                        .collect(),
                };
                for (i, replaced, name) in wildcard_columns(options, scope, columns)? {
                    match replaced {
                        Some(e) => items.push(exprs.plan(e)?),
                        None => column(i, &mut items)?,
                    }
                    names.push(name);
                }
            }
            SelectItem::UnnamedExpr(e) => {
                items.push(exprs.plan(e)?);
                names.push(derived_name(e));
            }
            SelectItem::ExprWithAlias { expr, alias } => {
                items.push(exprs.plan(expr)?);
                names.push(alias.value.clone());
            }
            SelectItem::ExprWithAliases { .. } => {
                return Err(Error::NotImplemented(
                    "several aliases for one expression".into(),
                ));
            }
        }
    }
    if items.is_empty() && !projection.is_empty() {
        return Err(Error::plan(
            "the select list is empty once * EXCLUDE has removed its columns",
        ));
    }
    Ok((items, names))
}

/// A grouped SELECT over `input` (already filtered by WHERE): the
/// aggregate, HAVING over it, and the select list over that. See
/// `sql/aggregate.rs` for the passes.
fn grouped(
    input: LogicalPlan,
    scope: &Scope,
    select: &Select,
    group_by: &[SqlExpr],
    subqueries: &SubqueryPlanner,
) -> Result<LogicalPlan> {
    let schema = input.schema();
    let exprs = ExprPlanner::new(scope, &schema);
    let group = group_by
        .iter()
        .map(|g| group_item(&exprs, g, &select.projection))
        .collect::<Result<Vec<_>>>()?;
    let mut aggregated = Aggregated::new(scope, &schema, group.clone());
    let qualify = qualify_condition(select, scope);
    let fields = group
        .iter()
        .map(|e| {
            Ok(Field::new(
                group_name(e),
                e.data_type(&schema)?,
                e.nullable(&schema),
            ))
        })
        .collect::<Result<Vec<_>>>()?;
    let group_schema = Schema::new(fields);
    let no_names = Scope::default();
    // Pass 1: find the aggregate calls, those in window calls' arguments,
    // PARTITION BY and ORDER BY among them (the window calls bound here
    // are over stand-ins, and thrown away).
    {
        let windows = Windowed::over_groups(&no_names, &group_schema, &aggregated);
        let planner = ExprPlanner {
            scope: &no_names,
            schema: &group_schema,
            aggregated: Some(&aggregated),
            windowed: None,
            subqueries: Some(subqueries),
        };
        if let Some(having) = &select.having {
            planner.plan(having)?;
        }
        let planner = ExprPlanner {
            windowed: Some(&windows),
            ..planner
        };
        select_items(&planner, scope, &select.projection)?;
        if let Some(q) = &qualify {
            planner.plan(q)?;
        }
    }
    let mut plan = aggregate_plan(input, group, aggregated.aggregates())?;
    let out_schema = plan.schema();
    aggregated.collecting = false;
    // Pass 2: plan over the aggregate's output.
    let planner = ExprPlanner {
        scope: &no_names,
        schema: &out_schema,
        aggregated: Some(&aggregated),
        windowed: None,
        subqueries: Some(subqueries),
    };
    if let Some(having) = &select.having {
        let predicate = planner.plan(having)?;
        let predicate = planner
            .boolean(predicate, "HAVING")
            .map_err(|e| e.at(location(having)))?;
        plan = LogicalPlan::Filter {
            input: Box::new(plan),
            predicate,
        };
    }
    // Window calls run over the groups HAVING kept, so they are recorded
    // over the aggregate's output (pass 1 of sql/window.rs) and the select
    // list is planned a third time, over the window nodes' output, whose
    // first columns are the aggregate's.
    let mut windows = Windowed::over_groups(&no_names, &out_schema, &aggregated);
    let recording = ExprPlanner {
        windowed: Some(&windows),
        ..planner
    };
    let (items, names) = select_items(&recording, scope, &select.projection)?;
    if let Some(q) = &qualify {
        recording.plan(q)?;
    }
    if windows.is_empty() {
        no_window_to_qualify(qualify.as_ref())?;
        return LogicalPlan::project(plan, items, names);
    }
    let (plan, _) = windows.plan(plan)?;
    let window_schema = plan.schema();
    let planner = ExprPlanner {
        scope: &no_names,
        schema: &window_schema,
        aggregated: Some(&aggregated),
        windowed: Some(&windows),
        subqueries: Some(subqueries),
    };
    let plan = qualified(plan, &planner, qualify.as_ref())?;
    let (items, names) = select_items(&planner, scope, &select.projection)?;
    LogicalPlan::project(plan, items, names)
}

/// QUALIFY's condition, with each name that is not a column of the input
/// (`scope`) but a select item's alias replaced by that item's expression,
/// as DuckDB reads `QUALIFY rn = 1` after `row_number() OVER (…) AS rn`.
fn qualify_condition(select: &Select, scope: &Scope) -> Option<SqlExpr> {
    struct Aliases<'s> {
        projection: &'s [SelectItem],
        scope: &'s Scope,
    }
    impl VisitorMut for Aliases<'_> {
        type Break = ();
        // After the children, so that an alias's expression is not
        // searched for aliases again.
        fn post_visit_expr(&mut self, e: &mut SqlExpr) -> ControlFlow<()> {
            let SqlExpr::Identifier(name) = e else {
                return ControlFlow::Continue(());
            };
            if self.scope.resolve(std::slice::from_ref(name)).is_ok() {
                return ControlFlow::Continue(());
            }
            let aliased = self.projection.iter().find_map(|item| match item {
                SelectItem::ExprWithAlias { expr, alias }
                    if alias.value.eq_ignore_ascii_case(&name.value) =>
                {
                    Some(expr)
                }
                _ => None,
            });
            if let Some(expr) = aliased {
                *e = SqlExpr::Nested(Box::new(expr.clone()));
            }
            ControlFlow::Continue(())
        }
    }
    let mut condition = select.qualify.clone()?;
    let _ = condition.visit(&mut Aliases {
        projection: &select.projection,
        scope,
    });
    Some(condition)
}

/// QUALIFY filters on window calls' values; without any, DuckDB refuses
/// it rather than read it as a second WHERE, and so does highwater.
fn no_window_to_qualify(condition: Option<&SqlExpr>) -> Result<()> {
    match condition {
        Some(c) => Err(Error::plan(
            "QUALIFY needs a window function in the select list or in QUALIFY",
        )
        .at(location(c))),
        None => Ok(()),
    }
}

/// `plan` filtered by QUALIFY's condition, planned by `planner` over it.
fn qualified(
    plan: LogicalPlan,
    planner: &ExprPlanner,
    condition: Option<&SqlExpr>,
) -> Result<LogicalPlan> {
    let Some(condition) = condition else {
        return Ok(plan);
    };
    let predicate = planner.plan(condition)?;
    let predicate = planner
        .boolean(predicate, "QUALIFY")
        .map_err(|e| e.at(location(condition)))?;
    Ok(LogicalPlan::Filter {
        input: Box::new(plan),
        predicate,
    })
}

/// One GROUP BY item over the input: an expression, an ordinal of the
/// select list (`GROUP BY 1`), or a select alias that is not also an input
/// column (input columns win, as in DuckDB and PostgreSQL).
fn group_item(exprs: &ExprPlanner, g: &SqlExpr, projection: &[SelectItem]) -> Result<Expr> {
    let item_expr = |item: &SelectItem| match item {
        SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } => Some(e.clone()),
        _ => None,
    };
    match g {
        SqlExpr::Value(v) if matches!(v.value, SqlValue::Number(..)) => {
            let n: usize = v.value.to_string().parse().unwrap_or(0);
            let e = n
                .checked_sub(1)
                .and_then(|i| projection.get(i))
                .and_then(item_expr)
                .ok_or_else(|| {
                    Error::plan(format!(
                        "GROUP BY position {} is not an expression of the select list (1 to {})",
                        v.value,
                        projection.len()
                    ))
                    .at(location(g))
                })?;
            exprs.plan(&e)
        }
        SqlExpr::Identifier(ident) if exprs.scope.resolve(std::slice::from_ref(ident)).is_err() => {
            let aliased = projection.iter().find_map(|item| match item {
                SelectItem::ExprWithAlias { expr, alias }
                    if alias.value.eq_ignore_ascii_case(&ident.value) =>
                {
                    Some(expr.clone())
                }
                _ => None,
            });
            match aliased {
                Some(e) => exprs.plan(&e),
                None => exprs.plan(g),
            }
        }
        other => exprs.plan(other),
    }
}

/// The aggregate node. When the DISTINCT calls all take the same argument
/// x (`count(DISTINCT x)`), it is planned as two plain aggregations, first
/// by the groups and x, then by the groups alone: each spills like any
/// GROUP BY, where a DISTINCT inside one group could not (a global
/// `count(*), count(DISTINCT l_orderkey)` over SF1 lineitem failed at 64MB
/// for it). Calls without DISTINCT may sit beside them where their result
/// can be built from partial results by x: counts (summed), sum, min, max,
/// bool_and, bool_or and any_value. Anything else, or no DISTINCT call,
/// gives one aggregation.
fn aggregate_plan(
    input: LogicalPlan,
    group: Vec<Expr>,
    aggregates: Vec<AggregateExpr>,
) -> Result<LogicalPlan> {
    use AggregateFunction as F;
    let Some(first) = aggregates.iter().find(|a| a.distinct) else {
        return LogicalPlan::aggregate(input, group, aggregates);
    };
    let x = first.arg.clone();
    let same_arg = |a: &AggregateExpr| format!("{:?}", a.arg) == format!("{:?}", x);
    let splits = |a: &AggregateExpr| {
        if a.distinct {
            a.filter.is_none() && a.arg.is_some() && same_arg(a)
        } else {
            matches!(
                a.func,
                F::CountStar
                    | F::Count
                    | F::Sum
                    | F::Min
                    | F::Max
                    | F::BoolAnd
                    | F::BoolOr
                    | F::AnyValue
            )
        }
    };
    let several = aggregates.iter().any(|a| a.distinct && !same_arg(a));
    let all_split = aggregates.iter().all(splits);
    if several || !all_split {
        let parts = distinct_parts(&aggregates);
        // One part would plan the same aggregation again.
        if parts.len() > 1 {
            return distinct_aggregates_apart(input, group, aggregates, parts);
        }
    }
    if x.is_none() || !all_split {
        return LogicalPlan::aggregate(input, group, aggregates);
    }
    // The one aggregation: its schema is what the select list is planned
    // over, and it is the plan where the two would not give its types.
    let single = LogicalPlan::aggregate(input.clone(), group.clone(), aggregates.clone())?;
    let wanted = single.schema();
    let g = group.len();
    let global = g == 0;
    let mut inner_group = group;
    inner_group.extend(x);
    // By groups and x: each call without DISTINCT, as it is.
    let partial: Vec<AggregateExpr> = aggregates.iter().filter(|a| !a.distinct).cloned().collect();
    let inner = LogicalPlan::aggregate(input, inner_group, partial)?;
    let inner_schema = inner.schema();
    let column = |i: usize| Expr::column(i, inner_schema.field(i).name().clone());
    let outer_group = (0..g).map(column).collect();
    // By groups: a DISTINCT call over x, once a value; a count's partial
    // results summed; the others over their own partial results.
    let mut next_partial = g + 1;
    let mut counts = Vec::new();
    let outer = aggregates
        .iter()
        .enumerate()
        .map(|(i, a)| {
            let (func, arg) = if a.distinct {
                (a.func.clone(), column(g))
            } else {
                let at = next_partial;
                next_partial += 1;
                match a.func {
                    F::CountStar | F::Count => {
                        counts.push(g + i);
                        (F::Sum, column(at))
                    }
                    _ => (a.func.clone(), column(at)),
                }
            };
            AggregateExpr {
                func,
                arg: Some(arg),
                distinct: false,
                filter: None,
            }
        })
        .collect();
    let outer = LogicalPlan::aggregate(inner, outer_group, outer)?;
    let outer_schema = outer.schema();
    let same_types = (outer_schema.fields().iter())
        .zip(wanted.fields().iter())
        .all(|(a, b)| a.data_type() == b.data_type());
    if !same_types {
        return Ok(single);
    }
    // Under the original names; a count over no rows at all (a global
    // aggregate of empty input, whose sum is NULL) is 0.
    let exprs = (0..wanted.fields().len())
        .map(|i| {
            let c = Expr::column(i, outer_schema.field(i).name().clone());
            if global && counts.contains(&i) {
                let zero: ArrayRef = Arc::new(Int64Array::from(vec![0i64]));
                Expr::Function {
                    func: ScalarFunction::Coalesce,
                    args: vec![c, Expr::Literal(zero)],
                }
            } else {
                c
            }
        })
        .collect();
    let names = wanted.fields().iter().map(|f| f.name().clone()).collect();
    LogicalPlan::project(outer, exprs, names)
}

/// The calls of an aggregate by the argument they are DISTINCT over (`None`:
/// the calls without DISTINCT), each with its place in the select's order.
fn distinct_parts(aggregates: &[AggregateExpr]) -> Vec<(Option<String>, Vec<usize>)> {
    let mut parts: Vec<(Option<String>, Vec<usize>)> = Vec::new();
    for (i, a) in aggregates.iter().enumerate() {
        let key = a.distinct.then(|| format!("{:?}", a.arg));
        match parts.iter_mut().find(|(k, _)| *k == key) {
            Some((_, calls)) => calls.push(i),
            None => parts.push((key, vec![i])),
        }
    }
    parts
}

/// An aggregate with DISTINCT calls over several arguments
/// (`count(DISTINCT a), count(DISTINCT b)`), or with DISTINCT calls beside
/// calls that cannot be built from partial results by the DISTINCT argument
/// (`avg(c), count(DISTINCT a)`): one [`aggregate_plan`] over the input for
/// the calls of each DISTINCT argument, one for the calls without DISTINCT,
/// each then spilling on its own. As one aggregation, each group's sets of
/// distinct values sat in that group, which no spill can split: over SF1
/// lineitem, `l_returnflag, count(DISTINCT l_orderkey), count(DISTINCT
/// l_partkey)` stopped at 32MB. The input is read once for each part.
///
/// Without GROUP BY each part is one row, and they are joined side by
/// side. With GROUP BY each part's rows carry its own calls' columns and
/// NULL for the others' and go into one union, which a last aggregation
/// by the groups folds with any_value (the first non-NULL value: a group
/// has one row from each part, and only its own part's row holds the
/// call's value, which may itself be NULL). A union and an aggregation
/// rather than a join on the group columns because a NULL group must meet
/// its NULL group, which join keys never do, and because that aggregation
/// spills like any other.
fn distinct_aggregates_apart(
    input: LogicalPlan,
    group: Vec<Expr>,
    aggregates: Vec<AggregateExpr>,
    parts: Vec<(Option<String>, Vec<usize>)>,
) -> Result<LogicalPlan> {
    let wanted = LogicalPlan::aggregate(input.clone(), group.clone(), aggregates.clone())?.schema();
    let names: Vec<String> = wanted.fields().iter().map(|f| f.name().clone()).collect();
    let g = group.len();
    let plan_part = |calls: &[usize]| {
        aggregate_plan(
            input.clone(),
            group.clone(),
            calls.iter().map(|&i| aggregates[i].clone()).collect(),
        )
    };
    if g == 0 {
        let mut joined: Option<LogicalPlan> = None;
        // Where each call's column is in the joined row.
        let mut at = vec![0; aggregates.len()];
        let mut width = 0;
        for (_, calls) in &parts {
            let part = plan_part(calls)?;
            for (k, &i) in calls.iter().enumerate() {
                at[i] = width + k;
            }
            width += calls.len();
            joined = Some(match joined {
                None => part,
                Some(left) => {
                    LogicalPlan::join(left, part, JoinKind::Inner, Vec::new(), None, false)
                }
            });
        }
        let joined = joined.ok_or_else(|| Error::Internal("an aggregate with no calls".into()))?;
        let schema = joined.schema();
        let exprs = at
            .iter()
            .map(|&c| Expr::column(c, schema.field(c).name().clone()))
            .collect();
        return LogicalPlan::project(joined, exprs, names);
    }
    let mut inputs = Vec::with_capacity(parts.len());
    for (_, calls) in &parts {
        let part = plan_part(calls)?;
        let schema = part.schema();
        let column = |c: usize| Expr::column(c, schema.field(c).name().clone());
        let mut exprs: Vec<Expr> = (0..g).map(column).collect();
        for i in 0..aggregates.len() {
            let t = wanted.field(g + i).data_type();
            exprs.push(match calls.iter().position(|&c| c == i) {
                Some(k) if schema.field(g + k).data_type() == t => column(g + k),
                Some(k) => column(g + k).cast(t.clone()),
                None => Expr::Literal(arrow::array::new_null_array(t, 1)),
            });
        }
        inputs.push(LogicalPlan::project(part, exprs, names.clone())?);
    }
    let fields: Vec<Field> = (wanted.fields().iter())
        .map(|f| Field::new(f.name(), f.data_type().clone(), true))
        .collect();
    let union = LogicalPlan::Union {
        inputs,
        schema: Arc::new(Schema::new(fields)),
    };
    let schema = union.schema();
    let column = |c: usize| Expr::column(c, schema.field(c).name().clone());
    let picks = (g..g + aggregates.len())
        .map(|c| AggregateExpr {
            func: AggregateFunction::AnyValue,
            arg: Some(column(c)),
            distinct: false,
            filter: None,
        })
        .collect();
    let combined = LogicalPlan::aggregate(union, (0..g).map(column).collect(), picks)?;
    let schema = combined.schema();
    let exprs = (0..names.len())
        .map(|c| Expr::column(c, schema.field(c).name().clone()))
        .collect();
    LogicalPlan::project(combined, exprs, names)
}

/// The SELECT of an EXISTS subquery, in the forms a semi join or a count
/// of its rows keeps exact: one SELECT, without GROUP BY, HAVING, LIMIT,
/// OFFSET or a WITH of its own.
fn exists_select(subquery: &Query) -> Result<&Select> {
    let SetExpr::Select(select) = subquery.body.as_ref() else {
        return Err(Error::NotImplemented(
            "EXISTS over anything but a plain SELECT".into(),
        ));
    };
    let grouped = !matches!(&select.group_by, GroupByExpr::Expressions(g, _) if g.is_empty())
        || select.having.is_some();
    if grouped
        || subquery.with.is_some()
        || subquery.limit_clause.is_some()
        || subquery.fetch.is_some()
    {
        return Err(Error::NotImplemented(
            "EXISTS over a subquery with WITH, GROUP BY, HAVING or LIMIT".into(),
        ));
    }
    Ok(select)
}

/// Whether a select list calls an aggregate of its own: not inside a
/// subquery, and not as a window function.
fn calls_an_aggregate(projection: &[SelectItem]) -> bool {
    let aggregate = |e: &SqlExpr| {
        matches!(e, SqlExpr::Function(f)
            if f.over.is_none() && crate::plan::aggregate::is_aggregate(&f.name.to_string()))
    };
    projection
        .iter()
        .any(|item| found_outside_subqueries(item, aggregate))
}

/// A join's constraint without its `[NOT] IN (subquery)` and `[NOT] EXISTS`
/// conjuncts, and those conjuncts. An ON left with none keeps every pair
/// (`ON TRUE`).
fn subquery_tests(constraint: &JoinConstraint) -> (JoinConstraint, Vec<&SqlExpr>) {
    let JoinConstraint::On(condition) = constraint else {
        return (constraint.clone(), Vec::new());
    };
    let mut conjuncts = Vec::new();
    split_and(condition, &mut conjuncts);
    let (tests, rest): (Vec<&SqlExpr>, Vec<&SqlExpr>) = conjuncts.into_iter().partition(|c| {
        matches!(
            c,
            SqlExpr::In {
                target: InTarget::Subquery(_),
                ..
            } | SqlExpr::Exists { .. }
        )
    });
    if tests.is_empty() {
        return (constraint.clone(), tests);
    }
    let rest = rest
        .into_iter()
        .cloned()
        .reduce(|a, b| SqlExpr::BinaryOp {
            left: Box::new(a),
            op: sqlparser::ast::BinaryOperator::And,
            right: Box::new(b),
        })
        .unwrap_or(SqlExpr::Value(sqlparser::ast::Value::Boolean(true).into()));
    (JoinConstraint::On(rest), tests)
}

/// The conjuncts of `e`: `a AND (b AND c)` gives a, b, c.
fn split_and<'e>(e: &'e SqlExpr, out: &mut Vec<&'e SqlExpr>) {
    match e {
        SqlExpr::BinaryOp {
            left,
            op: sqlparser::ast::BinaryOperator::And,
            right,
        } => {
            split_and(left, out);
            split_and(right, out);
        }
        SqlExpr::Nested(inner)
            if matches!(
                inner.as_ref(),
                SqlExpr::BinaryOp {
                    op: sqlparser::ast::BinaryOperator::And,
                    ..
                }
            ) =>
        {
            split_and(inner, out)
        }
        other => out.push(other),
    }
}

/// A's fields, then b's.
fn concat_schemas(a: &Schema, b: &Schema) -> Schema {
    Schema::new(
        a.fields()
            .iter()
            .chain(b.fields().iter())
            .cloned()
            .collect::<Vec<_>>(),
    )
}

/// `outer`'s columns one level out, then `inner`'s: what a correlated
/// subquery's WHERE sees, nearer names first.
fn nested_scope(outer: &Scope, inner: &Scope) -> Scope {
    let mut both = Scope::default();
    for c in &outer.columns {
        let mut c = c.clone();
        c.depth += 1;
        both.columns.push(c);
    }
    both.columns.extend(inner.columns.iter().cloned());
    both
}

fn other_name(op: &JoinOperator) -> String {
    let text = format!("{op:?}");
    text.split(['(', ' ', '{']).next().unwrap_or("").to_string()
}

/// `left` joined with `right` by `kind` under `constraint`: ON conditions
/// split into equality keys (the hash join's) and the rest (its filter);
/// USING and NATURAL make key pairs of same-named columns and keep the
/// column once.
fn join(
    left: Planned,
    right: Planned,
    kind: JoinKind,
    constraint: &JoinConstraint,
    subqueries: Option<&SubqueryPlanner>,
) -> Result<Planned> {
    let lw = left.scope.columns.len();
    let mut scope = left.scope.clone();
    scope.columns.extend(right.scope.columns.iter().cloned());
    let (ls, rs) = (left.plan.schema(), right.plan.schema());
    let both = concat_schemas(&ls, &rs);
    let exprs = ExprPlanner {
        subqueries,
        ..ExprPlanner::new(&scope, &both)
    };
    let mut on = Vec::new();
    let mut filter = Vec::new();
    let mut using: Vec<(usize, usize)> = Vec::new();
    match constraint {
        JoinConstraint::On(e) => {
            split_join_condition(&exprs, e, "JOIN ... ON", lw, &mut on, &mut filter)?
        }
        JoinConstraint::Using(names) => {
            for name in names {
                let name = name.to_string();
                let ident = [Ident::new(name.trim_matches('"'))];
                let l = left
                    .scope
                    .resolve(&ident)
                    .map_err(|e| e.prefix("USING: left side: "))?;
                let r = right
                    .scope
                    .resolve(&ident)
                    .map_err(|e| e.prefix("USING: right side: "))?;
                using.push((l, r));
            }
        }
        JoinConstraint::Natural => {
            // A hidden key copy of an earlier USING join is no column of
            // its own: the merged one stands for it.
            for (l, c) in left.scope.columns.iter().enumerate() {
                if c.hidden {
                    continue;
                }
                if let Some(r) = right
                    .scope
                    .columns
                    .iter()
                    .position(|rc| !rc.hidden && rc.name.eq_ignore_ascii_case(&c.name))
                {
                    using.push((l, r));
                }
            }
        }
        JoinConstraint::None => {}
        JoinConstraint::UsingAlias(..) => {
            return Err(Error::NotImplemented("USING (...) AS alias".into()))
        }
    }
    for &(l, r) in &using {
        let eq = exprs.binary(
            BinaryOp::Eq,
            Expr::column(l, ls.field(l).name().clone()),
            Expr::column(lw + r, rs.field(r).name().clone()),
        )?;
        match equi_key(&eq, lw)? {
            Some(key) => on.push(key),
            None => return Err(Error::Internal("USING column pair is not a key".into())),
        }
    }
    let plan = LogicalPlan::join(
        left.plan,
        right.plan,
        kind,
        on,
        Expr::conjunction(filter),
        false,
    );
    if !kind.keeps_right() {
        return Ok(Planned {
            plan,
            scope: left.scope,
        });
    }
    if using.is_empty() {
        return Ok(Planned { plan, scope });
    }
    // USING/NATURAL, as in DuckDB: each key once, unqualified, where the
    // left's was (after a RIGHT or FULL join, whichever side is not NULL);
    // each side's own key copies stay, hidden, so that `t.x`, `u.x` and
    // `u.*` still reach them (PostgreSQL's rule, which DuckDB follows).
    let schema = plan.schema();
    let mut items = Vec::new();
    let mut names = Vec::new();
    let mut out_scope = Scope::default();
    for (i, c) in scope.columns.iter().enumerate() {
        let key = match i < lw {
            true => using.iter().find(|&&(l, _)| l == i).map(|&(_, r)| r),
            false => None,
        };
        let column = Expr::column(i, schema.field(i).name().clone());
        if let Some(r) = key {
            items.push(match kind.right_outer() {
                true => Expr::Function {
                    func: crate::plan::function::ScalarFunction::Coalesce,
                    args: vec![
                        column.clone(),
                        Expr::column(lw + r, schema.field(lw + r).name().clone()),
                    ],
                },
                false => column.clone(),
            });
            names.push(c.name.clone());
            out_scope.columns.push(ScopeColumn {
                qualifier: None,
                hidden: false,
                ..c.clone()
            });
        }
        let right_key = i >= lw && using.iter().any(|&(_, r)| r == i - lw);
        items.push(column);
        names.push(c.name.clone());
        out_scope.columns.push(ScopeColumn {
            hidden: c.hidden || key.is_some() || right_key,
            ..c.clone()
        });
    }
    Ok(Planned {
        plan: LogicalPlan::project(plan, items, names)?,
        scope: out_scope,
    })
}

/// `lineitem` for 'data/lineitem*.parquet': the table name a file goes by.
fn table_stem(path: &str) -> String {
    let file = path.rsplit('/').next().unwrap_or(path);
    let stem = file.split('.').next().unwrap_or(file);
    stem.trim_end_matches(['*', '?']).to_string()
}

/// The name DuckDB gives an unaliased select item: a column's own name, or
/// the expression's text.
fn derived_name(e: &SqlExpr) -> String {
    match e {
        SqlExpr::Identifier(i) => i.value.clone(),
        SqlExpr::CompoundIdentifier(parts) => {
            parts.last().map(|p| p.value.clone()).unwrap_or_default()
        }
        other => other.to_string(),
    }
}

fn apply_alias(planned: Planned, alias: &TableAlias) -> Result<Planned> {
    let mut scope = planned.scope.requalify(&alias.name.value);
    let mut plan = planned.plan;
    if !alias.columns.is_empty() {
        if alias.columns.len() > scope.columns.len() {
            return Err(Error::plan(format!(
                "{} has {} columns but {} names were given",
                alias.name.value,
                scope.columns.len(),
                alias.columns.len()
            )));
        }
        for (column, new) in scope.columns.iter_mut().zip(&alias.columns) {
            column.name = new.name.value.clone();
        }
        let schema = plan.schema();
        let exprs = (0..schema.fields().len())
            .map(|i| Expr::column(i, schema.field(i).name().clone()))
            .collect();
        let names = scope.columns.iter().map(|c| c.name.clone()).collect();
        plan = LogicalPlan::project(plan, exprs, names)?;
    }
    Ok(Planned { plan, scope })
}

/// Plan a join condition over the two sides' columns (`left_width` of them
/// the left's) and split it: equalities between the sides become hash keys
/// in `on`, every other conjunct goes to `filter`.
fn split_join_condition(
    planner: &ExprPlanner,
    condition: &SqlExpr,
    clause: &str,
    left_width: usize,
    on: &mut Vec<(Expr, Expr)>,
    filter: &mut Vec<Expr>,
) -> Result<()> {
    let bound = planner.plan(condition)?;
    let bound = planner
        .boolean(bound, clause)
        .map_err(|err| err.at(location(condition)))?;
    let mut conjuncts = Vec::new();
    bound.split_conjunction(&mut conjuncts);
    for c in conjuncts {
        match equi_key(&c, left_width)? {
            Some(key) => on.push(key),
            None => filter.push(c),
        }
    }
    Ok(())
}

/// Each distinct row of `plan` once: an aggregate grouped by every column
/// (so it spills like any GROUP BY, and NULLs are equal to each other).
fn distinct_rows(plan: LogicalPlan) -> Result<LogicalPlan> {
    let schema = plan.schema();
    let all = (0..schema.fields().len())
        .map(|i| Expr::column(i, schema.field(i).name().clone()))
        .collect();
    LogicalPlan::aggregate(plan, all, Vec::new())
}

/// INTERSECT or EXCEPT: both sides, each row tagged with its side, grouped
/// by every column with a count per side; a row is kept when both counts
/// are non-zero (INTERSECT) or only the left's is (EXCEPT). Grouping, not
/// a join, because set operations treat NULLs as equal, and so that they
/// spill like any GROUP BY.
///
/// With ALL, copies of a row are numbered on each side (row_number over
/// the row and its side) and the number joins the group: the n-th copy
/// of a left row survives INTERSECT ALL if the right has an n-th copy too,
/// which keeps min(l, r) copies, and EXCEPT ALL if it has not, which keeps
/// l - r. The numbering is a window, so it sorts, and spills, as one.
fn intersect_or_except(
    intersect: bool,
    all: bool,
    left: Planned,
    right: Planned,
) -> Result<Planned> {
    let width = left.plan.schema().fields().len();
    let tag = |planned: Planned, side: i64| -> Result<Planned> {
        let schema = planned.plan.schema();
        let mut exprs: Vec<Expr> = (0..schema.fields().len())
            .map(|i| Expr::column(i, schema.field(i).name().clone()))
            .collect();
        let mut names: Vec<String> = schema.fields().iter().map(|f| f.name().clone()).collect();
        exprs.push(Expr::Literal(Arc::new(Int64Array::from(vec![side]))));
        names.push("side".into());
        Ok(Planned {
            plan: LogicalPlan::project(planned.plan, exprs, names)?,
            scope: planned.scope,
        })
    };
    let both = union(tag(left, 0)?, tag(right, 1)?)?;
    let schema = both.plan.schema();
    let columns = |schema: &Schema, n: usize| -> Vec<Expr> {
        (0..n)
            .map(|i| Expr::column(i, schema.field(i).name().clone()))
            .collect()
    };
    let (input, group) = if all {
        let copy = WindowExpr {
            func: WindowFunction::RowNumber,
            args: Vec::new(),
            // The row's columns and its side.
            partition_by: columns(&schema, width + 1),
            order_by: Vec::new(),
            frame: Frame::Partition,
            range_bounds: Vec::new(),
            data_type: DataType::Int64,
        };
        let numbered = LogicalPlan::window(both.plan, vec![copy]);
        let mut group = columns(&schema, width);
        group.push(Expr::column(width + 1, "copy"));
        (numbered, group)
    } else {
        (both.plan, columns(&schema, width))
    };
    let counts = group.len();
    let side = Expr::column(width, "side");
    let count_side = |n: i64| AggregateExpr {
        func: AggregateFunction::CountStar,
        arg: None,
        distinct: false,
        filter: Some(Expr::binary(
            BinaryOp::Eq,
            side.clone(),
            Expr::Literal(Arc::new(Int64Array::from(vec![n]))),
        )),
    };
    let grouped = LogicalPlan::aggregate(input, group, vec![count_side(0), count_side(1)])?;
    let zero = || Expr::Literal(Arc::new(Int64Array::from(vec![0i64])));
    let in_left = Expr::binary(BinaryOp::Gt, Expr::column(counts, "l"), zero());
    let right_op = if intersect {
        BinaryOp::Gt
    } else {
        BinaryOp::Eq
    };
    let in_right = Expr::binary(right_op, Expr::column(counts + 1, "r"), zero());
    let kept = LogicalPlan::Filter {
        input: Box::new(grouped),
        predicate: Expr::binary(BinaryOp::And, in_left, in_right),
    };
    let schema = kept.schema();
    let exprs = (0..width)
        .map(|i| Expr::column(i, schema.field(i).name().clone()))
        .collect();
    let names = (0..width).map(|i| schema.field(i).name().clone()).collect();
    Ok(Planned {
        plan: LogicalPlan::project(kept, exprs, names)?,
        scope: both.scope,
    })
}

/// UNION ALL of two inputs with the same number of columns; types are
/// unified column by column and the names are the left side's.
fn union(left: Planned, right: Planned) -> Result<Planned> {
    let (ls, rs) = (left.plan.schema(), right.plan.schema());
    if ls.fields().len() != rs.fields().len() {
        return Err(Error::plan(format!(
            "UNION ALL sides have {} and {} columns",
            ls.fields().len(),
            rs.fields().len()
        )));
    }
    let mut types = Vec::new();
    for (l, r) in ls.fields().iter().zip(rs.fields()) {
        let t = union_type(l.data_type(), r.data_type()).ok_or_else(|| {
            Error::plan(format!(
                "UNION ALL column '{}' is {} on one side and {} on the other",
                l.name(),
                sql_type_name(l.data_type()),
                sql_type_name(r.data_type())
            ))
        })?;
        types.push(t);
    }
    let cast_to = |planned: Planned| -> Result<LogicalPlan> {
        let schema = planned.plan.schema();
        if schema
            .fields()
            .iter()
            .zip(&types)
            .all(|(f, t)| f.data_type() == t)
        {
            return Ok(planned.plan);
        }
        let exprs = schema
            .fields()
            .iter()
            .enumerate()
            .zip(&types)
            .map(|((i, f), t)| {
                let c = Expr::column(i, f.name().clone());
                if f.data_type() == t {
                    c
                } else {
                    c.cast(t.clone())
                }
            })
            .collect();
        let names = schema.fields().iter().map(|f| f.name().clone()).collect();
        LogicalPlan::project(planned.plan, exprs, names)
    };
    let fields: Vec<Field> = ls
        .fields()
        .iter()
        .zip(&types)
        .map(|(f, t)| Field::new(f.name(), t.clone(), true))
        .collect();
    let schema = Arc::new(Schema::new(fields));
    let scope = left.scope.clone();
    let mut inputs = Vec::new();
    for side in [left, right] {
        match side.plan {
            // Flatten a chain of UNION ALLs into one operator.
            LogicalPlan::Union { inputs: more, .. }
                if more.iter().all(|m| {
                    m.schema()
                        .fields()
                        .iter()
                        .zip(&types)
                        .all(|(f, t)| f.data_type() == t)
                }) =>
            {
                inputs.extend(more)
            }
            plan => inputs.push(cast_to(Planned {
                plan,
                scope: side.scope,
            })?),
        }
    }
    Ok(Planned {
        plan: LogicalPlan::Union { inputs, schema },
        scope,
    })
}

pub(crate) fn union_type(a: &DataType, b: &DataType) -> Option<DataType> {
    use DataType as T;
    if a == b {
        return Some(a.clone());
    }
    let is_string = |t: &T| matches!(t, T::Utf8 | T::Utf8View | T::LargeUtf8);
    match (a, b) {
        (T::Null, other) | (other, T::Null) => Some(other.clone()),
        (x, y) if is_string(x) && is_string(y) => Some(T::Utf8View),
        (x, y) if x.is_numeric() && y.is_numeric() => {
            if x.is_floating() || y.is_floating() {
                Some(T::Float64)
            } else if x.is_integer() && y.is_integer() {
                Some(T::Int64)
            } else {
                let dec = |t: &T| match t {
                    T::Decimal128(p, s) => (*p, *s),
                    _ => (20, 0),
                };
                let ((p1, s1), (p2, s2)) = (dec(x), dec(y));
                let scale = s1.max(s2);
                let int = (p1 as i16 - s1 as i16).max(p2 as i16 - s2 as i16);
                Some(T::Decimal128(
                    (int + scale as i16).clamp(1, 38) as u8,
                    scale,
                ))
            }
        }
        _ => None,
    }
}

/// A path or a list of paths: `'a.csv'` or `['a.csv', 'b.csv']`.
fn string_list(e: &SqlExpr) -> Result<Vec<String>> {
    match e {
        SqlExpr::Value(v) => match &v.value {
            SqlValue::SingleQuotedString(s) | SqlValue::DoubleQuotedString(s) => {
                Ok(vec![s.clone()])
            }
            other => Err(Error::plan(format!(
                "expected a path in quotes, got {other}"
            ))),
        },
        SqlExpr::Array(array) => {
            let mut out = Vec::new();
            for item in &array.elem {
                out.extend(string_list(item)?);
            }
            if out.is_empty() {
                return Err(Error::plan("the list of paths is empty"));
            }
            Ok(out)
        }
        other => Err(Error::plan(format!(
            "expected a path or a list of paths, got {other}"
        ))),
    }
}

pub(crate) fn set_option(
    format: &mut FileFormat,
    function: &str,
    option: &str,
    value: &SqlExpr,
) -> Result<()> {
    let FileFormat::Csv(csv) = format else {
        return Err(Error::plan(format!("{function} has no option '{option}'")));
    };
    let text = || -> Result<String> {
        match value {
            SqlExpr::Value(v) => match &v.value {
                SqlValue::SingleQuotedString(s) => Ok(s.clone()),
                other => Ok(other.to_string()),
            },
            other => Err(Error::plan(format!(
                "{option} takes a constant, got {other}"
            ))),
        }
    };
    let single_byte = |what: &str| -> Result<u8> {
        let t = text()?;
        let t = if t == "\\t" { "\t".to_string() } else { t };
        match t.as_bytes() {
            [b] => Ok(*b),
            _ => Err(Error::plan(format!(
                "{what} must be one character, got '{t}'"
            ))),
        }
    };
    match option {
        "header" => {
            csv.header = match text()?.to_ascii_lowercase().as_str() {
                "true" | "1" => true,
                "false" | "0" => false,
                other => {
                    return Err(Error::plan(format!(
                        "header takes true or false, got {other}"
                    )))
                }
            }
        }
        "delim" | "sep" | "delimiter" => csv.delimiter = single_byte("delim")?,
        "quote" => csv.quote = single_byte("quote")?,
        "nullstr" | "null_string" => csv.null_string = Some(text()?),
        "columns" => {
            let SqlExpr::Dictionary(fields) = value else {
                return Err(Error::plan(
                    "columns takes a map of names to types, such as {'a': 'BIGINT', 'b': 'VARCHAR'}",
                ));
            };
            let mut out = Vec::new();
            for field in fields {
                let type_name = match field.value.as_ref() {
                    SqlExpr::Value(v) => match &v.value {
                        SqlValue::SingleQuotedString(s) => s.clone(),
                        other => other.to_string(),
                    },
                    other => other.to_string(),
                };
                let t = parse_type_name(&type_name)
                    .map_err(|e| Error::plan(format!("column '{}': {e}", field.key.value)))?;
                out.push(Field::new(field.key.value.clone(), t, true));
            }
            csv.columns = Some(Arc::new(Schema::new(out)));
        }
        other => {
            return Err(Error::plan(format!(
            "{function} has no option '{other}' (options: header, delim, quote, nullstr, columns)"
        )))
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_stems_name_files() {
        assert_eq!(table_stem("data/lineitem*.parquet"), "lineitem");
        assert_eq!(table_stem("orders.csv"), "orders");
    }

    #[test]
    fn union_types_widen() {
        assert_eq!(
            union_type(&DataType::Int32, &DataType::Int64),
            Some(DataType::Int64)
        );
        assert_eq!(
            union_type(&DataType::Int32, &DataType::Float32),
            Some(DataType::Float64)
        );
        assert_eq!(union_type(&DataType::Utf8, &DataType::Boolean), None);
    }
}
