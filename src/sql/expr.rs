//! SQL expressions → bound [`Expr`]s, with names resolved, types coerced and
//! constants folded.
//!
//! Coercion follows DuckDB: an integer and a decimal meet as decimals; any
//! float makes both sides DOUBLE; `/` between integers is DOUBLE division; a
//! string literal compared with a date, timestamp or number is read as that
//! type. Integer overflow is an error at run time (the kernels are checked).

use std::sync::Arc;

use arrow::array::{
    new_null_array, Array, ArrayRef, BooleanArray, Decimal128Array, Float64Array, Int64Array,
    StringArray,
};
use arrow::datatypes::{DataType, Schema};
use sqlparser::ast::{
    BinaryOperator, CastKind, Expr as SqlExpr, Ident, InTarget, Spanned, UnaryOperator,
    Value as SqlValue,
};

use crate::error::{Error, Result, SqlLocation};
use crate::plan::expr::{sql_type_name, BinaryOp, Expr, Subquery};
use crate::plan::LogicalPlan;
use crate::sql::aggregate::Aggregated;
use crate::sql::types::arrow_type;
use crate::sql::window::Windowed;

/// The columns visible to an expression: what each is called, and under which
/// table name or alias.
#[derive(Debug, Clone, Default)]
pub struct Scope {
    pub columns: Vec<ScopeColumn>,
}

#[derive(Debug, Clone)]
pub struct ScopeColumn {
    pub qualifier: Option<String>,
    pub name: String,
    /// 0 for the query's own columns; 1 for an enclosing query's, seen from
    /// a correlated subquery. A name found at two depths is the nearer one.
    pub depth: u8,
    /// A side's own copy of a USING (or NATURAL) key, beside the merged
    /// column: found only by its table's name (`u.x`) and in `u.*`, not
    /// as `x` nor in `*`.
    pub hidden: bool,
}

impl Scope {
    pub fn from_schema(schema: &Schema, qualifier: Option<&str>) -> Scope {
        Scope {
            columns: schema
                .fields()
                .iter()
                .map(|f| ScopeColumn {
                    qualifier: qualifier.map(str::to_string),
                    name: f.name().clone(),
                    depth: 0,
                    hidden: false,
                })
                .collect(),
        }
    }

    /// The same columns under a new table name.
    pub fn requalify(&self, qualifier: &str) -> Scope {
        Scope {
            columns: self
                .columns
                .iter()
                // A hidden key copy is not the aliased join's column (it
                // has the merged one): it keeps its place, unreachable.
                .map(|c| ScopeColumn {
                    qualifier: (!c.hidden).then(|| qualifier.to_string()),
                    name: c.name.clone(),
                    depth: c.depth,
                    hidden: c.hidden,
                })
                .collect(),
        }
    }

    /// Find `name` or `qualifier.name`, ignoring case as DuckDB does.
    pub fn resolve(&self, parts: &[Ident]) -> Result<usize> {
        let (qualifier, name) = match parts {
            [name] => (None, &name.value),
            [.., q, name] => (Some(&q.value), &name.value),
            [] => return Err(Error::Internal("empty identifier".into())),
        };
        let matches: Vec<usize> = self
            .columns
            .iter()
            .enumerate()
            .filter(|(_, c)| {
                c.name.eq_ignore_ascii_case(name)
                    && (qualifier.is_some() || !c.hidden)
                    && qualifier.is_none_or(|q| {
                        c.qualifier
                            .as_deref()
                            .is_some_and(|cq| cq.eq_ignore_ascii_case(q))
                    })
            })
            .map(|(i, _)| i)
            .collect();
        let shown = parts
            .iter()
            .map(|p| p.value.as_str())
            .collect::<Vec<_>>()
            .join(".");
        let nearest = matches.iter().map(|&i| self.columns[i].depth).min();
        let matches: Vec<usize> = matches
            .into_iter()
            .filter(|&i| Some(self.columns[i].depth) == nearest)
            .collect();
        match matches.as_slice() {
            [one] => Ok(*one),
            [] => Err(Error::plan(format!(
                "unknown column '{shown}'{}",
                self.suggest(name)
            ))),
            _ => Err(Error::plan(format!(
                "column reference '{shown}' is ambiguous: qualify it with a table name"
            ))),
        }
    }

    /// ": did you mean 'l_orderkey'? columns: ..." for an unknown name.
    fn suggest(&self, name: &str) -> String {
        let lower = name.to_ascii_lowercase();
        let best = self
            .columns
            .iter()
            .map(|c| (edit_distance(&lower, &c.name.to_ascii_lowercase()), &c.name))
            .min_by_key(|(d, _)| *d);
        let mut text = String::new();
        if let Some((d, best)) = best {
            if d <= (lower.len() / 3).max(1) {
                text.push_str(&format!("; did you mean '{best}'?"));
            }
        }
        // Beside a join the bare names repeat; show which table is which.
        let first = self.columns.first().map(|c| &c.qualifier);
        let qualified = self.columns.iter().any(|c| Some(&c.qualifier) != first);
        let names: Vec<String> = self
            .columns
            .iter()
            .take(20)
            .map(|c| match (&c.qualifier, qualified) {
                (Some(q), true) => format!("{q}.{}", c.name),
                _ => c.name.clone(),
            })
            .collect();
        text.push_str(&format!(" (columns: {}", names.join(", ")));
        if self.columns.len() > 20 {
            text.push_str(", ...");
        }
        text.push(')');
        text
    }
}

/// Edit distance counting an adjacent transposition as one edit (optimal
/// string alignment), because swapped letters are the commonest typo.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = best;
        }
    }
    d[a.len()][b.len()]
}

pub fn location(e: &impl Spanned) -> Option<SqlLocation> {
    span_location(e.span())
}

/// Where a span starts, if the parser recorded it (identifiers carry a
/// span but are not `Spanned`).
pub fn span_location(span: sqlparser::tokenizer::Span) -> Option<SqlLocation> {
    let start = span.start;
    (start.line > 0).then_some(SqlLocation {
        line: start.line,
        column: start.column,
    })
}

/// How the error for a scalar subquery where none is planned begins: an
/// ORDER BY key that meets it is planned again as a hidden select item,
/// where subqueries are.
pub const SUBQUERY_NOT_HERE: &str = "a scalar subquery here";

/// Plans expressions over one input.
pub struct ExprPlanner<'a> {
    pub scope: &'a Scope,
    pub schema: &'a Schema,
    /// Set while planning a grouped query's select list and HAVING: `scope`
    /// and `schema` are then the aggregate's output, and this says how
    /// expressions over the input map onto it.
    pub aggregated: Option<&'a Aggregated<'a>>,
    /// Set while planning a select list that may call window functions.
    pub windowed: Option<&'a Windowed<'a>>,
    /// Plans a scalar subquery; set where one may appear (WHERE, the select
    /// list, HAVING).
    pub subqueries: Option<&'a SubqueryPlanner<'a>>,
}

/// The column an error from planning a subquery alone calls unknown, if
/// `outer` has it: the subquery is then correlated, not wrong.
pub(crate) fn outer_column_in(error: &Error, outer: &Scope) -> Option<String> {
    let Error::Plan { message, .. } = error else {
        return None;
    };
    let name = message
        .strip_prefix("unknown column '")?
        .split('\'')
        .next()?;
    let parts: Vec<Ident> = name.split('.').map(Ident::new).collect();
    outer.resolve(&parts).is_ok().then(|| name.to_string())
}

/// Plans the query of a scalar subquery, apart from the query it is in.
pub type SubqueryPlanner<'a> = dyn Fn(&sqlparser::ast::Query) -> Result<LogicalPlan> + 'a;

impl<'a> ExprPlanner<'a> {
    pub fn new(scope: &'a Scope, schema: &'a Schema) -> Self {
        ExprPlanner {
            scope,
            schema,
            aggregated: None,
            windowed: None,
            subqueries: None,
        }
    }

    pub fn plan(&self, e: &SqlExpr) -> Result<Expr> {
        if let Some(aggregated) = self.aggregated {
            if let Some(found) = aggregated
                .lookup(e, self)
                .map_err(|err| err.at(location(e)))?
            {
                return Ok(found);
            }
        }
        self.plan_inner(e).map_err(|err| err.at(location(e)))
    }

    fn plan_inner(&self, e: &SqlExpr) -> Result<Expr> {
        let planned = match e {
            SqlExpr::Identifier(ident) => self.column(std::slice::from_ref(ident))?,
            SqlExpr::CompoundIdentifier(parts) => self.column(parts)?,
            SqlExpr::Value(v) => literal(&v.value)?,
            SqlExpr::Nested(inner) => self.plan(inner)?,
            SqlExpr::TypedString(typed) => {
                let text = match &typed.value.value {
                    SqlValue::SingleQuotedString(s) | SqlValue::DoubleQuotedString(s) => s.clone(),
                    other => other.to_string(),
                };
                let to = arrow_type(&typed.data_type)?;
                let e = Expr::Literal(Arc::new(StringArray::from(vec![text.clone()]))).cast(to);
                fold(e).map_err(|_| {
                    Error::plan(format!(
                        "'{text}' is not a valid {} literal",
                        typed.data_type
                    ))
                })?
            }
            SqlExpr::BinaryOp {
                left,
                op: BinaryOperator::StringConcat,
                right,
            } => {
                let mut args = vec![self.plan(left)?, self.plan(right)?];
                self.as_text(&mut args)?;
                fold(Expr::Function {
                    func: crate::plan::function::ScalarFunction::ConcatOperator,
                    args,
                })?
            }
            SqlExpr::BinaryOp { left, op, right } => {
                let op = binary_op(op)?;
                self.binary(op, self.plan(left)?, self.plan(right)?)?
            }
            SqlExpr::UnaryOp { op, expr } => {
                let inner = self.plan(expr)?;
                match op {
                    UnaryOperator::Not => Expr::Not(Box::new(self.boolean(inner, "NOT")?)),
                    UnaryOperator::Minus => {
                        let t = inner.data_type(self.schema)?;
                        if !t.is_numeric() {
                            return Err(Error::plan(format!(
                                "cannot negate a {}",
                                sql_type_name(&t)
                            )));
                        }
                        Expr::Negate(Box::new(inner))
                    }
                    UnaryOperator::Plus => inner,
                    other => return Err(Error::NotImplemented(format!("the operator {other}"))),
                }
            }
            SqlExpr::IsNull(inner) => Expr::IsNull(Box::new(self.plan(inner)?)),
            SqlExpr::IsNotNull(inner) => Expr::IsNotNull(Box::new(self.plan(inner)?)),
            SqlExpr::Cast {
                kind,
                expr,
                data_type,
                ..
            } => Expr::Cast {
                expr: Box::new(self.plan(expr)?),
                to: arrow_type(data_type)?,
                try_cast: matches!(kind, CastKind::TryCast | CastKind::SafeCast),
            },
            SqlExpr::Between {
                expr,
                negated,
                low,
                high,
            } => {
                let value = self.plan(expr)?;
                let both = Expr::binary(
                    BinaryOp::And,
                    self.binary(BinaryOp::GtEq, value.clone(), self.plan(low)?)?,
                    self.binary(BinaryOp::LtEq, value, self.plan(high)?)?,
                );
                if *negated {
                    Expr::Not(Box::new(both))
                } else {
                    both
                }
            }
            SqlExpr::In {
                expr,
                target: InTarget::List(list),
                negated,
                ..
            } => {
                // x IN (a, b) is x = a OR x = b, which has the same NULL
                // semantics as SQL's IN list.
                let value = self.plan(expr)?;
                let mut any: Option<Expr> = None;
                for item in list {
                    let eq = self.binary(BinaryOp::Eq, value.clone(), self.plan(item)?)?;
                    any = Some(match any {
                        None => eq,
                        Some(prev) => Expr::binary(BinaryOp::Or, prev, eq),
                    });
                }
                let any = any.ok_or_else(|| Error::plan("IN () needs at least one value"))?;
                if *negated {
                    Expr::Not(Box::new(any))
                } else {
                    any
                }
            }
            SqlExpr::Like {
                negated,
                expr,
                pattern,
                escape_char,
                any: false,
            }
            | SqlExpr::ILike {
                negated,
                expr,
                pattern,
                escape_char,
                any: false,
            } => {
                if escape_char.is_some() {
                    return Err(Error::NotImplemented("LIKE ... ESCAPE".into()));
                }
                let value = self.string(self.plan(expr)?, "LIKE")?;
                let pattern = self.plan(pattern)?;
                let pattern = coerce_to(pattern, &value.data_type(self.schema)?, self.schema)?;
                Expr::Like {
                    expr: Box::new(value),
                    pattern: Box::new(pattern),
                    negated: *negated,
                    case_insensitive: matches!(e, SqlExpr::ILike { .. }),
                }
            }
            SqlExpr::Function(f) if f.over.is_some() => match self.windowed {
                Some(windowed) => windowed.call(f, self)?,
                None => {
                    return Err(Error::plan(format!(
                        "window functions are allowed only in the SELECT list and ORDER BY, \
                         not here: {f}"
                    ))
                    .at(location(f)))
                }
            },
            SqlExpr::Function(f) => self.scalar_function(f)?,
            SqlExpr::Case {
                operand,
                conditions,
                else_result,
                ..
            } => self.case(operand.as_deref(), conditions, else_result.as_deref())?,
            SqlExpr::IsDistinctFrom(a, b) => {
                self.binary(BinaryOp::IsDistinctFrom, self.plan(a)?, self.plan(b)?)?
            }
            SqlExpr::IsNotDistinctFrom(a, b) => {
                self.binary(BinaryOp::IsNotDistinctFrom, self.plan(a)?, self.plan(b)?)?
            }
            SqlExpr::IsTrue(inner)
            | SqlExpr::IsNotTrue(inner)
            | SqlExpr::IsFalse(inner)
            | SqlExpr::IsNotFalse(inner) => {
                // x IS TRUE is x IS NOT DISTINCT FROM true: never NULL.
                let (truth, negated) = match e {
                    SqlExpr::IsTrue(_) => (true, false),
                    SqlExpr::IsNotTrue(_) => (true, true),
                    SqlExpr::IsFalse(_) => (false, false),
                    _ => (false, true),
                };
                let op = if negated {
                    BinaryOp::IsDistinctFrom
                } else {
                    BinaryOp::IsNotDistinctFrom
                };
                let value = self.boolean(self.plan(inner)?, "IS TRUE/FALSE")?;
                let truth = Expr::Literal(Arc::new(BooleanArray::from(vec![truth])));
                Expr::binary(op, value, truth)
            }
            SqlExpr::Extract { field, expr, .. } => {
                let field = crate::sql::function::extract_field(field)?;
                let part = Expr::Literal(Arc::new(StringArray::from(vec![field.to_string()])));
                self.call("date_part", vec![part, self.plan(expr)?])?
            }
            // POSITION(sub IN s) is strpos(s, sub).
            SqlExpr::Position { expr, r#in } => {
                self.call("strpos", vec![self.plan(r#in)?, self.plan(expr)?])?
            }
            SqlExpr::Substring {
                expr,
                substring_from,
                substring_for,
                ..
            } => {
                let mut args = vec![self.plan(expr)?];
                args.push(match substring_from {
                    Some(from) => self.plan(from)?,
                    None => Expr::Literal(Arc::new(Int64Array::from(vec![1]))),
                });
                if let Some(len) = substring_for {
                    args.push(self.plan(len)?);
                }
                self.call("substring", args)?
            }
            SqlExpr::Trim {
                trim_where,
                trim_what,
                expr,
                trim_characters,
            } => {
                if trim_characters.is_some() {
                    return Err(Error::NotImplemented(
                        "TRIM with a list of characters".into(),
                    ));
                }
                let name = match trim_where {
                    Some(sqlparser::ast::TrimWhereField::Leading) => "ltrim",
                    Some(sqlparser::ast::TrimWhereField::Trailing) => "rtrim",
                    _ => "trim",
                };
                let mut args = vec![self.plan(expr)?];
                if let Some(what) = trim_what {
                    args.push(self.plan(what)?);
                }
                self.call(name, args)?
            }
            SqlExpr::Ceil { expr, field } | SqlExpr::Floor { expr, field } => {
                if !matches!(
                    field,
                    sqlparser::ast::CeilFloorKind::DateTimeField(
                        sqlparser::ast::DateTimeField::NoDateTime
                    )
                ) {
                    return Err(Error::NotImplemented(format!("the expression '{e}'")));
                }
                let name = if matches!(e, SqlExpr::Ceil { .. }) {
                    "ceil"
                } else {
                    "floor"
                };
                self.call(name, vec![self.plan(expr)?])?
            }
            SqlExpr::Interval(interval) => self.interval(interval)?,
            SqlExpr::Subquery(query) => self.scalar_subquery(query)?,
            other => {
                return Err(Error::NotImplemented(format!("the expression '{other}'")));
            }
        };
        // Type-check now, so that a type error is reported at plan time with
        // its position, and fold constants.
        planned.data_type(self.schema)?;
        fold(planned)
    }

    /// `(SELECT ...)` as a value: one column, at most one row (none is
    /// NULL). It runs before the query that holds it.
    fn scalar_subquery(&self, query: &sqlparser::ast::Query) -> Result<Expr> {
        let Some(plan_subquery) = self.subqueries else {
            return Err(Error::NotImplemented(format!(
                "{SUBQUERY_NOT_HERE} (they may appear in WHERE, the select list, HAVING, the ORDER BY of a SELECT and a join's ON)"
            )));
        };
        let plan = plan_subquery(query).map_err(|e| self.correlated(e))?;
        let schema = plan.schema();
        let [field] = schema.fields().iter().collect::<Vec<_>>()[..] else {
            return Err(Error::plan(format!(
                "a scalar subquery returns one column, and this one returns {}",
                schema.fields().len()
            )));
        };
        let mut text = query.to_string();
        if text.chars().count() > 60 {
            text = text.chars().take(57).collect::<String>() + "...";
        }
        Ok(Expr::Subquery(Arc::new(Subquery {
            data_type: field.data_type().clone(),
            plan,
            text,
        })))
    }

    /// A subquery is planned on its own, so a column of the outer query is
    /// unknown in it: say that correlation is what is missing.
    fn correlated(&self, e: Error) -> Error {
        // Over an aggregate's output the outer query's names are its input's.
        let outer = self.aggregated.map_or(self.scope, |a| a.input_scope);
        match outer_column_in(&e, outer) {
            Some(name) => Error::NotImplemented(format!(
                "correlated scalar subqueries here: this one reads '{name}' of the outer query \
                 (built: in WHERE, the select list and HAVING, tied by equalities)"
            )),
            None => e,
        }
    }

    fn column(&self, parts: &[Ident]) -> Result<Expr> {
        if let Some(aggregated) = self.aggregated {
            return Err(aggregated.ungrouped(parts));
        }
        let index = self.scope.resolve(parts)?;
        Ok(Expr::column(index, self.scope.columns[index].name.clone()))
    }

    pub fn boolean(&self, e: Expr, context: &str) -> Result<Expr> {
        match e.data_type(self.schema)? {
            DataType::Boolean => Ok(e),
            DataType::Null => Ok(e.cast(DataType::Boolean)),
            other => Err(Error::plan(format!(
                "{context} needs BOOLEAN operands, got {}",
                sql_type_name(&other)
            ))),
        }
    }

    fn string(&self, e: Expr, context: &str) -> Result<Expr> {
        match e.data_type(self.schema)? {
            DataType::Utf8 | DataType::Utf8View | DataType::LargeUtf8 => Ok(e),
            DataType::Null => Ok(e.cast(DataType::Utf8)),
            other => Err(Error::plan(format!(
                "{context} needs VARCHAR operands, got {}",
                sql_type_name(&other)
            ))),
        }
    }

    /// `left op right` with both sides coerced to types the kernel accepts.
    pub fn binary(&self, op: BinaryOp, left: Expr, right: Expr) -> Result<Expr> {
        if let Some(e) = self.date_arithmetic(op, &left, &right)? {
            return fold(e);
        }
        if matches!(op, BinaryOp::And | BinaryOp::Or) {
            let name = if op == BinaryOp::And { "AND" } else { "OR" };
            return fold(Expr::binary(
                op,
                self.boolean(left, name)?,
                self.boolean(right, name)?,
            ));
        }
        let lt = left.data_type(self.schema)?;
        let rt = right.data_type(self.schema)?;
        let mismatch = || {
            Error::plan(format!(
                "cannot apply '{}' to {} and {}",
                op_text(op),
                sql_type_name(&lt),
                sql_type_name(&rt)
            ))
        };
        let (l_to, r_to) = unify(op, &lt, &rt, &left, &right).ok_or_else(mismatch)?;
        let e = Expr::binary(
            op,
            coerce_to(left, &l_to, self.schema)?,
            coerce_to(right, &r_to, self.schema)?,
        );
        // The kernels have the last word on what they accept.
        e.data_type(self.schema).map_err(|_| mismatch())?;
        fold(e)
    }
}

impl ExprPlanner<'_> {
    /// DuckDB's date arithmetic that arrow's kernels do not have: a date
    /// plus or minus a number of days, and the days between two dates.
    /// (Dates and timestamps with intervals go to the kernels as they are.)
    fn date_arithmetic(&self, op: BinaryOp, left: &Expr, right: &Expr) -> Result<Option<Expr>> {
        if !matches!(op, BinaryOp::Plus | BinaryOp::Minus) {
            return Ok(None);
        }
        let lt = left.data_type(self.schema)?;
        let rt = right.data_type(self.schema)?;
        let days = |e: &Expr| e.clone().cast(DataType::Int32).cast(DataType::Int64);
        Ok(match (&lt, &rt) {
            (DataType::Date32, DataType::Date32) if op == BinaryOp::Minus => {
                Some(Expr::binary(op, days(left), days(right)))
            }
            (DataType::Date32, t) if t.is_integer() => Some(
                Expr::binary(op, days(left), right.clone().cast(DataType::Int64))
                    .cast(DataType::Int32)
                    .cast(DataType::Date32),
            ),
            (t, DataType::Date32) if t.is_integer() && op == BinaryOp::Plus => Some(
                Expr::binary(op, left.clone().cast(DataType::Int64), days(right))
                    .cast(DataType::Int32)
                    .cast(DataType::Date32),
            ),
            _ => None,
        })
    }
}

fn op_text(op: BinaryOp) -> String {
    Expr::binary(op, Expr::column(0, "a"), Expr::column(1, "b"))
        .to_string()
        .trim_start_matches("(a ")
        .trim_end_matches(" b)")
        .to_string()
}

/// Cast `e` to `to` unless it already is of that type; a constant is cast
/// now, so that `col < 5` compares with a literal of the column's type (which
/// is what row-group pruning looks for).
pub(crate) fn coerce_to(e: Expr, to: &DataType, schema: &Schema) -> Result<Expr> {
    if e.data_type(schema)? == *to {
        return Ok(e);
    }
    fold(e.cast(to.clone()))
}

/// The types the two sides of `op` are cast to, or `None` when they cannot
/// meet.
/// Whether `e` is a constant that converts to `t` exactly.
fn literal_fits(e: &Expr, t: &DataType) -> bool {
    let Expr::Literal(v) = e else {
        return false;
    };
    let exact = arrow::compute::CastOptions {
        safe: false,
        ..Default::default()
    };
    v.is_valid(0) && arrow::compute::cast_with_options(v, t, &exact).is_ok()
}

fn unify(
    op: BinaryOp,
    lt: &DataType,
    rt: &DataType,
    left: &Expr,
    right: &Expr,
) -> Option<(DataType, DataType)> {
    use DataType as T;
    let same = |t: &T| Some((t.clone(), t.clone()));
    if lt == &T::Null {
        return same(if rt == &T::Null { &T::Int64 } else { rt });
    }
    if rt == &T::Null {
        return same(lt);
    }
    let is_temporal = |t: &T| matches!(t, T::Date32 | T::Date64 | T::Timestamp(_, _));
    let is_interval = |t: &T| matches!(t, T::Interval(_));
    // Dates and timestamps move by intervals in arrow's kernels as they are.
    if matches!(op, BinaryOp::Plus | BinaryOp::Minus) && is_temporal(lt) && is_interval(rt) {
        return Some((lt.clone(), rt.clone()));
    }
    if op == BinaryOp::Plus && is_interval(lt) && is_temporal(rt) {
        return Some((lt.clone(), rt.clone()));
    }
    if op.is_arithmetic() && lt.is_integer() && rt.is_integer() && op == BinaryOp::Divide {
        return same(&T::Float64);
    }
    if lt.is_numeric() && rt.is_numeric() {
        if lt.is_floating() || rt.is_floating() {
            return same(&T::Float64);
        }
        let l_dec = as_decimal(lt, left);
        let r_dec = as_decimal(rt, right);
        return match (lt, rt) {
            (a, b) if a.is_integer() && b.is_integer() => {
                // `int_column = 2`: compare in the column's type when the
                // constant fits it, so the column stays bare and Parquet
                // row-group statistics can rule on it.
                if op.is_comparison() && literal_fits(right, a) {
                    return same(a);
                }
                if op.is_comparison() && literal_fits(left, b) {
                    return same(b);
                }
                same(&wider_integer(a, b))
            }
            _ => {
                let (l, r) = (l_dec?, r_dec?);
                if op.is_comparison() {
                    same(&common_decimal(&l, &r))
                } else {
                    Some((l, r))
                }
            }
        };
    }
    let is_string = |t: &T| matches!(t, T::Utf8 | T::Utf8View | T::LargeUtf8);
    if is_string(lt) && is_string(rt) {
        if !op.is_comparison() {
            return None;
        }
        return match (lt, rt) {
            (a, b) if a == b => same(a),
            (T::Utf8View, _) | (_, T::Utf8View) => same(&T::Utf8View),
            _ => same(&T::LargeUtf8),
        };
    }
    if op.is_comparison() {
        // A string literal meets a date, timestamp or number as that type.
        if is_string(lt) && (is_temporal(rt) || rt.is_numeric()) && matches!(left, Expr::Literal(_))
        {
            return same(rt);
        }
        if is_string(rt)
            && (is_temporal(lt) || lt.is_numeric())
            && matches!(right, Expr::Literal(_))
        {
            return same(lt);
        }
        if is_temporal(lt) && is_temporal(rt) {
            return match (lt, rt) {
                (T::Timestamp(..), _) => same(lt),
                (_, T::Timestamp(..)) => same(rt),
                _ => same(&T::Date32),
            };
        }
        if lt == rt {
            return same(lt);
        }
    }
    if lt == rt {
        return same(lt);
    }
    None
}

fn wider_integer(a: &DataType, b: &DataType) -> DataType {
    use DataType as T;
    let signed = |t: &T| matches!(t, T::Int8 | T::Int16 | T::Int32 | T::Int64);
    let width = |t: &T| t.primitive_width().unwrap_or(8);
    if signed(a) == signed(b) {
        if width(a) >= width(b) {
            a.clone()
        } else {
            b.clone()
        }
    } else {
        T::Int64
    }
}

/// An exact numeric type as a decimal: integers get as many digits as they
/// can hold (an integer literal only as many as it has).
fn as_decimal(t: &DataType, e: &Expr) -> Option<DataType> {
    use DataType as T;
    if let (Expr::Literal(v), true) = (e, t.is_integer()) {
        if let Some(i) = v.as_any().downcast_ref::<Int64Array>() {
            let digits = i.value(0).unsigned_abs().max(1).ilog10() as u8 + 1;
            return Some(T::Decimal128(digits, 0));
        }
    }
    Some(match t {
        T::Decimal128(..) => t.clone(),
        T::Int8 | T::UInt8 => T::Decimal128(3, 0),
        T::Int16 | T::UInt16 => T::Decimal128(5, 0),
        T::Int32 | T::UInt32 => T::Decimal128(10, 0),
        T::Int64 => T::Decimal128(19, 0),
        T::UInt64 => T::Decimal128(20, 0),
        _ => return None,
    })
}

fn common_decimal(a: &DataType, b: &DataType) -> DataType {
    match (a, b) {
        (DataType::Decimal128(p1, s1), DataType::Decimal128(p2, s2)) => {
            let scale = (*s1).max(*s2);
            let integer = (*p1 as i16 - *s1 as i16).max(*p2 as i16 - *s2 as i16);
            let precision = (scale as i16 + integer).clamp(1, 38) as u8;
            DataType::Decimal128(precision, scale)
        }
        _ => a.clone(),
    }
}

fn binary_op(op: &BinaryOperator) -> Result<BinaryOp> {
    use BinaryOperator as B;
    Ok(match op {
        B::Plus => BinaryOp::Plus,
        B::Minus => BinaryOp::Minus,
        B::Multiply => BinaryOp::Multiply,
        B::Divide => BinaryOp::Divide,
        B::Modulo => BinaryOp::Modulo,
        B::Eq => BinaryOp::Eq,
        B::NotEq => BinaryOp::NotEq,
        B::Lt => BinaryOp::Lt,
        B::LtEq => BinaryOp::LtEq,
        B::Gt => BinaryOp::Gt,
        B::GtEq => BinaryOp::GtEq,
        B::And => BinaryOp::And,
        B::Or => BinaryOp::Or,
        other => return Err(Error::NotImplemented(format!("the operator {other}"))),
    })
}

/// A SQL literal as a one-row array. Integers are BIGINT, numbers with a
/// decimal point DECIMAL with exactly their digits (as in DuckDB), numbers
/// with an exponent DOUBLE.
pub fn literal(v: &SqlValue) -> Result<Expr> {
    let array: ArrayRef = match v {
        SqlValue::Number(text, _) => number_literal(text)?,
        SqlValue::SingleQuotedString(s) => Arc::new(StringArray::from(vec![s.clone()])),
        SqlValue::Boolean(b) => Arc::new(BooleanArray::from(vec![*b])),
        SqlValue::Null => new_null_array(&DataType::Null, 1),
        other => return Err(Error::NotImplemented(format!("the literal {other}"))),
    };
    Ok(Expr::Literal(array))
}

fn number_literal(text: &str) -> Result<ArrayRef> {
    let bad = || Error::plan(format!("'{text}' is not a number"));
    if text.contains(['e', 'E']) {
        let f: f64 = text.parse().map_err(|_| bad())?;
        return Ok(Arc::new(Float64Array::from(vec![f])));
    }
    if let Some((int, frac)) = text.split_once('.') {
        let digits = format!("{int}{frac}");
        let scale = frac.len();
        let value: i128 = digits.parse().map_err(|_| bad())?;
        let precision = digits.trim_start_matches('0').len().max(scale).max(1);
        if precision > 38 {
            let f: f64 = text.parse().map_err(|_| bad())?;
            return Ok(Arc::new(Float64Array::from(vec![f])));
        }
        let array = Decimal128Array::from(vec![value])
            .with_precision_and_scale(precision as u8, scale as i8)?;
        return Ok(Arc::new(array));
    }
    match text.parse::<i64>() {
        Ok(i) => Ok(Arc::new(Int64Array::from(vec![i]))),
        Err(_) => {
            let value: i128 = text.parse().map_err(|_| bad())?;
            let array = Decimal128Array::from(vec![value]).with_precision_and_scale(38, 0)?;
            Ok(Arc::new(array))
        }
    }
}

/// Replace an expression that reads no column by its value.
pub fn fold(e: Expr) -> Result<Expr> {
    if matches!(e, Expr::Literal(_)) || !e.columns().is_empty() {
        return Ok(e);
    }
    match e.fold() {
        Ok(Some(value)) => Ok(Expr::Literal(value)),
        Ok(None) => Ok(e),
        Err(err) => Err(Error::plan(format!("cannot evaluate {e}: {err}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edit_distance_counts_edits() {
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("same", "same"), 0);
        assert_eq!(edit_distance("nmae", "name"), 1, "a swap is one edit");
    }

    #[test]
    fn number_literals_keep_their_digits() {
        let d = number_literal("0.05").unwrap();
        assert_eq!(d.data_type(), &DataType::Decimal128(2, 2));
        assert_eq!(number_literal("42").unwrap().data_type(), &DataType::Int64);
        assert_eq!(
            number_literal("1e3").unwrap().data_type(),
            &DataType::Float64
        );
    }
}
