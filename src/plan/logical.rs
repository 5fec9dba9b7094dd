//! The logical plan: a tree of relational operations over columns bound by
//! index.

use std::fmt;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::{Field, Schema, SchemaRef};

use crate::error::Result;
use crate::plan::aggregate::{AggregateExpr, AggregateFunction};
use crate::plan::expr::{sql_type_name, Expr};
use crate::plan::window::{WindowExpr, WindowFunction};
use crate::source::Source;

#[derive(Debug, Clone)]
pub enum LogicalPlan {
    /// Read files. The output is the source's columns at `projection`, in
    /// ascending order; `filters` are bound to the source's full schema and
    /// are applied exactly by the scan.
    Scan {
        source: Arc<Source>,
        projection: Vec<usize>,
        filters: Vec<Expr>,
        /// Stop after this many rows have passed `filters`.
        limit: Option<usize>,
    },
    Filter {
        input: Box<LogicalPlan>,
        predicate: Expr,
    },
    Project {
        input: Box<LogicalPlan>,
        exprs: Vec<Expr>,
        schema: SchemaRef,
    },
    Limit {
        input: Box<LogicalPlan>,
        skip: usize,
        fetch: Option<usize>,
    },
    /// UNION ALL: the inputs' rows one input after another. The inputs have
    /// the same column types.
    Union {
        inputs: Vec<LogicalPlan>,
        schema: SchemaRef,
    },
    /// Constant rows from the query text: `VALUES ...`, or the one row of
    /// no columns that a `SELECT` without `FROM` reads.
    Values { batch: RecordBatch },
    /// GROUP BY: one row per distinct value of `group` (NULL is a value),
    /// or exactly one row when `group` is empty. The output is the group
    /// columns, then one column per aggregate.
    Aggregate {
        input: Box<LogicalPlan>,
        group: Vec<Expr>,
        aggregates: Vec<AggregateExpr>,
        schema: SchemaRef,
    },
    /// Window functions over `input`: its rows and columns, then one column
    /// per call. Every call has the same PARTITION BY and ORDER BY (a query
    /// with several windows stacks one node per window).
    Window {
        input: Box<LogicalPlan>,
        exprs: Vec<WindowExpr>,
        schema: SchemaRef,
    },
    /// A join of `left` and `right` on equal `on` keys (left expression
    /// over the left input, right over the right, of one type) and `filter`
    /// over the left's columns followed by the right's. No keys and no
    /// filter is a cross join.
    Join {
        left: Box<LogicalPlan>,
        right: Box<LogicalPlan>,
        kind: JoinKind,
        on: Vec<(Expr, Expr)>,
        filter: Option<Expr>,
        /// `NOT IN` semantics for an anti join: a NULL key on either side
        /// makes a row's outcome unknown, so it is not returned.
        null_aware: bool,
        schema: SchemaRef,
    },
    /// ORDER BY, with an optional LIMIT folded in (top-k).
    Sort {
        input: Box<LogicalPlan>,
        keys: Vec<SortKey>,
        fetch: Option<usize>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinKind {
    Inner,
    Left,
    Right,
    Full,
    /// Left rows with a match, once each; left columns only.
    Semi,
    /// Left rows without a match; left columns only.
    Anti,
}

/// A join with its inputs swapped: the same rows, from a join that builds
/// the other input. See [`JoinKind::mirror`].
pub struct Mirrored {
    pub kind: JoinKind,
    /// The key pairs, right key first.
    pub on: Vec<(Expr, Expr)>,
    /// The filter, over the right input's columns then the left's.
    pub filter: Option<Expr>,
    /// The mirrored join's columns in the query's order: the left input's
    /// first.
    pub order: Vec<usize>,
}

impl JoinKind {
    /// This join with its inputs swapped, where its left and right inputs
    /// have `nl` and `nr` columns; None for SEMI and ANTI, whose output is
    /// the left input's rows.
    pub fn mirror(
        self,
        on: Vec<(Expr, Expr)>,
        filter: Option<Expr>,
        nl: usize,
        nr: usize,
    ) -> Result<Option<Mirrored>> {
        let kind = match self {
            JoinKind::Inner | JoinKind::Full => self,
            JoinKind::Left => JoinKind::Right,
            JoinKind::Right => JoinKind::Left,
            JoinKind::Semi | JoinKind::Anti => return Ok(None),
        };
        // The filter reads a pair as left columns then right ones.
        let filter = filter
            .map(|f| f.remap(&|i| Some(if i < nl { i + nr } else { i - nl })))
            .transpose()?;
        Ok(Some(Mirrored {
            kind,
            on: on.into_iter().map(|(l, r)| (r, l)).collect(),
            filter,
            order: (nr..nr + nl).chain(0..nr).collect(),
        }))
    }

    /// Whether the output has the right side's columns.
    pub fn keeps_right(self) -> bool {
        !matches!(self, JoinKind::Semi | JoinKind::Anti)
    }

    /// Whether unmatched left rows come out (NULLs for the right).
    pub fn left_outer(self) -> bool {
        matches!(self, JoinKind::Left | JoinKind::Full)
    }

    /// Whether unmatched right rows come out (NULLs for the left).
    pub fn right_outer(self) -> bool {
        matches!(self, JoinKind::Right | JoinKind::Full)
    }

    pub fn name(self) -> &'static str {
        match self {
            JoinKind::Inner => "Inner",
            JoinKind::Left => "Left",
            JoinKind::Right => "Right",
            JoinKind::Full => "Full",
            JoinKind::Semi => "Semi",
            JoinKind::Anti => "Anti",
        }
    }
}

#[derive(Debug, Clone)]
pub struct SortKey {
    pub expr: Expr,
    pub descending: bool,
    pub nulls_first: bool,
}

impl fmt::Display for SortKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} NULLS {}",
            self.expr,
            if self.descending { "DESC" } else { "ASC" },
            if self.nulls_first { "FIRST" } else { "LAST" }
        )
    }
}

impl LogicalPlan {
    pub fn schema(&self) -> SchemaRef {
        match self {
            LogicalPlan::Scan {
                source, projection, ..
            } => Arc::new(
                source
                    .schema
                    .project(projection)
                    .expect("scan projection indices are valid by construction"),
            ),
            LogicalPlan::Filter { input, .. }
            | LogicalPlan::Limit { input, .. }
            | LogicalPlan::Sort { input, .. } => input.schema(),
            LogicalPlan::Project { schema, .. }
            | LogicalPlan::Union { schema, .. }
            | LogicalPlan::Aggregate { schema, .. }
            | LogicalPlan::Window { schema, .. }
            | LogicalPlan::Join { schema, .. } => schema.clone(),
            LogicalPlan::Values { batch } => batch.schema(),
        }
    }

    /// The same plan with every expression of every node, scan filters
    /// included, passed through `f`. The schemas stay: `f` must keep each
    /// expression's type.
    pub fn map_exprs(self, f: &mut dyn FnMut(Expr) -> Result<Expr>) -> Result<LogicalPlan> {
        let each = |v: Vec<Expr>, f: &mut dyn FnMut(Expr) -> Result<Expr>| {
            v.into_iter().map(f).collect::<Result<Vec<_>>>()
        };
        let keys = |v: Vec<SortKey>, f: &mut dyn FnMut(Expr) -> Result<Expr>| {
            v.into_iter()
                .map(|k| {
                    Ok(SortKey {
                        expr: f(k.expr)?,
                        ..k
                    })
                })
                .collect::<Result<Vec<_>>>()
        };
        Ok(match self {
            LogicalPlan::Scan {
                source,
                projection,
                filters,
                limit,
            } => LogicalPlan::Scan {
                source,
                projection,
                filters: each(filters, f)?,
                limit,
            },
            LogicalPlan::Values { batch } => LogicalPlan::Values { batch },
            LogicalPlan::Filter { input, predicate } => LogicalPlan::Filter {
                input: Box::new(input.map_exprs(f)?),
                predicate: f(predicate)?,
            },
            LogicalPlan::Project {
                input,
                exprs,
                schema,
            } => LogicalPlan::Project {
                input: Box::new(input.map_exprs(f)?),
                exprs: each(exprs, f)?,
                schema,
            },
            LogicalPlan::Limit { input, skip, fetch } => LogicalPlan::Limit {
                input: Box::new(input.map_exprs(f)?),
                skip,
                fetch,
            },
            LogicalPlan::Union { inputs, schema } => LogicalPlan::Union {
                inputs: inputs
                    .into_iter()
                    .map(|i| i.map_exprs(f))
                    .collect::<Result<_>>()?,
                schema,
            },
            LogicalPlan::Aggregate {
                input,
                group,
                aggregates,
                schema,
            } => LogicalPlan::Aggregate {
                input: Box::new(input.map_exprs(f)?),
                group: each(group, f)?,
                aggregates: aggregates
                    .into_iter()
                    .map(|a| {
                        Ok(AggregateExpr {
                            arg: a.arg.map(&mut *f).transpose()?,
                            filter: a.filter.map(&mut *f).transpose()?,
                            ..a
                        })
                    })
                    .collect::<Result<_>>()?,
                schema,
            },
            LogicalPlan::Window {
                input,
                exprs,
                schema,
            } => LogicalPlan::Window {
                input: Box::new(input.map_exprs(f)?),
                exprs: exprs
                    .iter()
                    .map(|w| w.try_map(&mut |e| f(e.clone())))
                    .collect::<Result<_>>()?,
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
                left: Box::new(left.map_exprs(f)?),
                right: Box::new(right.map_exprs(f)?),
                kind,
                on: on
                    .into_iter()
                    .map(|(l, r)| Ok((f(l)?, f(r)?)))
                    .collect::<Result<_>>()?,
                filter: filter.map(&mut *f).transpose()?,
                null_aware,
                schema,
            },
            LogicalPlan::Sort {
                input,
                keys: k,
                fetch,
            } => LogicalPlan::Sort {
                input: Box::new(input.map_exprs(f)?),
                keys: keys(k, f)?,
                fetch,
            },
        })
    }

    /// A projection of `exprs` over `input`, named `names`.
    pub fn project(
        input: LogicalPlan,
        exprs: Vec<Expr>,
        names: Vec<String>,
    ) -> Result<LogicalPlan> {
        let in_schema = input.schema();
        let mut fields = Vec::with_capacity(exprs.len());
        for (e, name) in exprs.iter().zip(names) {
            fields.push(Field::new(
                name,
                e.data_type(&in_schema)?,
                e.nullable(&in_schema),
            ));
        }
        Ok(LogicalPlan::Project {
            input: Box::new(input),
            exprs,
            schema: Arc::new(Schema::new(fields)),
        })
    }

    /// GROUP BY `group` computing `aggregates`, over `input`.
    pub fn aggregate(
        input: LogicalPlan,
        group: Vec<Expr>,
        aggregates: Vec<AggregateExpr>,
    ) -> Result<LogicalPlan> {
        let in_schema = input.schema();
        let mut fields = Vec::with_capacity(group.len() + aggregates.len());
        for e in &group {
            let name = match e {
                Expr::Column { name, .. } => name.clone(),
                other => other.to_string(),
            };
            fields.push(Field::new(
                name,
                e.data_type(&in_schema)?,
                e.nullable(&in_schema),
            ));
        }
        for a in &aggregates {
            let arg = a
                .arg
                .as_ref()
                .map(|e| e.data_type(&in_schema))
                .transpose()?;
            let t = a.func.return_type(arg.as_ref())?;
            let counts = matches!(
                a.func,
                AggregateFunction::Count | AggregateFunction::CountStar
            );
            fields.push(Field::new(a.to_string(), t, !counts));
        }
        Ok(LogicalPlan::Aggregate {
            input: Box::new(input),
            group,
            aggregates,
            schema: Arc::new(Schema::new(fields)),
        })
    }

    /// `left` joined with `right`; see [`LogicalPlan::Join`].
    pub fn join(
        left: LogicalPlan,
        right: LogicalPlan,
        kind: JoinKind,
        on: Vec<(Expr, Expr)>,
        filter: Option<Expr>,
        null_aware: bool,
    ) -> LogicalPlan {
        let (ls, rs) = (left.schema(), right.schema());
        let side = |schema: &SchemaRef, nullable: bool| {
            schema
                .fields()
                .iter()
                .map(|f| {
                    f.as_ref()
                        .clone()
                        .with_nullable(f.is_nullable() || nullable)
                })
                .collect::<Vec<Field>>()
        };
        let mut fields = side(&ls, kind.right_outer());
        if kind.keeps_right() {
            fields.extend(side(&rs, kind.left_outer()));
        }
        LogicalPlan::Join {
            left: Box::new(left),
            right: Box::new(right),
            kind,
            on,
            filter,
            null_aware,
            schema: Arc::new(Schema::new(fields)),
        }
    }

    /// `exprs` (of one window) computed over `input`.
    pub fn window(input: LogicalPlan, exprs: Vec<WindowExpr>) -> LogicalPlan {
        let in_schema = input.schema();
        let mut fields: Vec<Field> = in_schema
            .fields()
            .iter()
            .map(|f| f.as_ref().clone())
            .collect();
        for w in &exprs {
            // The ranking functions and count never give NULL.
            let nullable = !matches!(
                w.func,
                WindowFunction::RowNumber
                    | WindowFunction::Rank { .. }
                    | WindowFunction::Ntile { .. }
                    | WindowFunction::PercentRank
                    | WindowFunction::CumeDist
                    | WindowFunction::Aggregate(
                        AggregateFunction::Count | AggregateFunction::CountStar
                    )
            );
            fields.push(Field::new(w.to_string(), w.data_type.clone(), nullable));
        }
        LogicalPlan::Window {
            input: Box::new(input),
            exprs,
            schema: Arc::new(Schema::new(fields)),
        }
    }

    /// The plan that keeps `columns` of this plan's output, in that order.
    pub fn select_columns(self, columns: &[usize]) -> Result<LogicalPlan> {
        let schema = self.schema();
        if columns.len() == schema.fields().len()
            && columns.iter().enumerate().all(|(i, c)| i == *c)
        {
            return Ok(self);
        }
        let exprs = columns
            .iter()
            .map(|&c| Expr::column(c, schema.field(c).name()))
            .collect();
        let names = columns
            .iter()
            .map(|&c| schema.field(c).name().clone())
            .collect();
        LogicalPlan::project(self, exprs, names)
    }

    fn fmt_indent(&self, f: &mut fmt::Formatter<'_>, depth: usize) -> fmt::Result {
        let pad = "  ".repeat(depth);
        match self {
            LogicalPlan::Scan {
                source,
                projection,
                filters,
                limit,
            } => {
                let cols: Vec<&str> = projection
                    .iter()
                    .map(|&i| source.schema.field(i).name().as_str())
                    .collect();
                write!(
                    f,
                    "{pad}Scan {} {} ({} file{}) columns=[{}]",
                    source.format.name(),
                    source.display_name(),
                    source.files.len(),
                    if source.files.len() == 1 { "" } else { "s" },
                    cols.join(", ")
                )?;
                if !filters.is_empty() {
                    let fs: Vec<String> = filters.iter().map(|e| e.to_string()).collect();
                    write!(f, " filters=[{}]", fs.join(", "))?;
                }
                if let Some(limit) = limit {
                    write!(f, " limit={limit}")?;
                }
                writeln!(f)
            }
            LogicalPlan::Filter { input, predicate } => {
                writeln!(f, "{pad}Filter {predicate}")?;
                input.fmt_indent(f, depth + 1)
            }
            LogicalPlan::Project {
                input,
                exprs,
                schema,
            } => {
                let items: Vec<String> = exprs
                    .iter()
                    .zip(schema.fields())
                    .map(|(e, field)| {
                        let shown = e.to_string();
                        if &shown == field.name() {
                            shown
                        } else {
                            format!("{shown} AS {}", field.name())
                        }
                    })
                    .collect();
                writeln!(f, "{pad}Project {}", items.join(", "))?;
                input.fmt_indent(f, depth + 1)
            }
            LogicalPlan::Limit { input, skip, fetch } => {
                write!(f, "{pad}Limit")?;
                if let Some(fetch) = fetch {
                    write!(f, " fetch={fetch}")?;
                }
                if *skip > 0 {
                    write!(f, " skip={skip}")?;
                }
                writeln!(f)?;
                input.fmt_indent(f, depth + 1)
            }
            LogicalPlan::Union { inputs, .. } => {
                writeln!(f, "{pad}UnionAll")?;
                for input in inputs {
                    input.fmt_indent(f, depth + 1)?;
                }
                Ok(())
            }
            LogicalPlan::Values { batch } => {
                let rows = batch.num_rows();
                writeln!(
                    f,
                    "{pad}Values {rows} row{}",
                    if rows == 1 { "" } else { "s" }
                )
            }
            LogicalPlan::Window { input, exprs, .. } => {
                let ws: Vec<String> = exprs.iter().map(|w| w.to_string()).collect();
                writeln!(f, "{pad}Window [{}]", ws.join(", "))?;
                input.fmt_indent(f, depth + 1)
            }
            LogicalPlan::Aggregate {
                input,
                group,
                aggregates,
                ..
            } => {
                let gs: Vec<String> = group.iter().map(|e| e.to_string()).collect();
                let aggs: Vec<String> = aggregates.iter().map(|a| a.to_string()).collect();
                write!(f, "{pad}Aggregate")?;
                if !gs.is_empty() {
                    write!(f, " group=[{}]", gs.join(", "))?;
                }
                if !aggs.is_empty() {
                    write!(f, " aggregates=[{}]", aggs.join(", "))?;
                }
                writeln!(f)?;
                input.fmt_indent(f, depth + 1)
            }
            LogicalPlan::Join {
                left,
                right,
                kind,
                on,
                filter,
                null_aware,
                ..
            } => {
                write!(f, "{pad}HashJoin {}", kind.name())?;
                if !on.is_empty() {
                    let keys: Vec<String> = on.iter().map(|(l, r)| format!("{l} = {r}")).collect();
                    write!(f, " on=[{}]", keys.join(", "))?;
                }
                if let Some(filter) = filter {
                    write!(f, " filter={filter}")?;
                }
                if *null_aware {
                    write!(f, " null-aware")?;
                }
                writeln!(f)?;
                left.fmt_indent(f, depth + 1)?;
                right.fmt_indent(f, depth + 1)
            }
            LogicalPlan::Sort { input, keys, fetch } => {
                let ks: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
                write!(f, "{pad}Sort {}", ks.join(", "))?;
                if let Some(fetch) = fetch {
                    write!(f, " top-k={fetch}")?;
                }
                writeln!(f)?;
                input.fmt_indent(f, depth + 1)
            }
        }
    }

    /// One line per column: name and SQL type, for DESCRIBE-like output.
    pub fn describe_schema(&self) -> String {
        self.schema()
            .fields()
            .iter()
            .map(|field| format!("{} {}", field.name(), sql_type_name(field.data_type())))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl fmt::Display for LogicalPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.fmt_indent(f, 0)
    }
}
