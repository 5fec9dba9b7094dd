//! Expressions, bound to the columns of their input by index.
//!
//! An expression is planned once and evaluated once per batch with arrow's
//! compute kernels. Literals are one-row arrays, passed to kernels as
//! `Scalar`s so that `col + 1` never materialises a column of ones.
//!
//! Types are derived by evaluating the expression on an empty batch of its
//! input schema: the kernels then decide the result type exactly as they
//! will at run time, so the plan's schema and the data can never disagree.

use std::collections::BTreeSet;
use std::fmt;
use std::sync::Arc;

use arrow::array::{new_null_array, Array, ArrayRef, BooleanArray, RecordBatch, UInt32Array};
use arrow::array::{Datum, Scalar};
use arrow::compute::kernels::{boolean, cmp, comparison, numeric};
use arrow::compute::{cast_with_options, is_not_null, is_null, CastOptions};
use arrow::datatypes::{DataType, Schema};
use arrow::error::ArrowError;
use arrow::util::display::{ArrayFormatter, FormatOptions};

use crate::error::{Error, Result};
use crate::plan::decimal_arith::{unchecked, DecimalOp};
use crate::plan::function::ScalarFunction;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinaryOp {
    Plus,
    Minus,
    Multiply,
    Divide,
    Modulo,
    Eq,
    NotEq,
    Lt,
    LtEq,
    Gt,
    GtEq,
    And,
    Or,
    /// IS DISTINCT FROM: `<>` where NULL equals NULL, never NULL itself.
    IsDistinctFrom,
    IsNotDistinctFrom,
}

impl BinaryOp {
    pub fn is_comparison(self) -> bool {
        matches!(
            self,
            BinaryOp::Eq
                | BinaryOp::NotEq
                | BinaryOp::IsDistinctFrom
                | BinaryOp::IsNotDistinctFrom
                | BinaryOp::Lt
                | BinaryOp::LtEq
                | BinaryOp::Gt
                | BinaryOp::GtEq
        )
    }

    pub fn is_arithmetic(self) -> bool {
        matches!(
            self,
            BinaryOp::Plus
                | BinaryOp::Minus
                | BinaryOp::Multiply
                | BinaryOp::Divide
                | BinaryOp::Modulo
        )
    }

    /// The same comparison with its operands swapped: `a < b` is `b > a`.
    pub fn swapped(self) -> BinaryOp {
        match self {
            BinaryOp::Lt => BinaryOp::Gt,
            BinaryOp::LtEq => BinaryOp::GtEq,
            BinaryOp::Gt => BinaryOp::Lt,
            BinaryOp::GtEq => BinaryOp::LtEq,
            other => other,
        }
    }

    fn symbol(self) -> &'static str {
        match self {
            BinaryOp::Plus => "+",
            BinaryOp::Minus => "-",
            BinaryOp::Multiply => "*",
            BinaryOp::Divide => "/",
            BinaryOp::Modulo => "%",
            BinaryOp::Eq => "=",
            BinaryOp::NotEq => "<>",
            BinaryOp::Lt => "<",
            BinaryOp::LtEq => "<=",
            BinaryOp::Gt => ">",
            BinaryOp::GtEq => ">=",
            BinaryOp::And => "AND",
            BinaryOp::Or => "OR",
            BinaryOp::IsDistinctFrom => "IS DISTINCT FROM",
            BinaryOp::IsNotDistinctFrom => "IS NOT DISTINCT FROM",
        }
    }
}

#[derive(Debug, Clone)]
pub enum Expr {
    /// The input's column at `index`; `name` is for display only.
    Column {
        index: usize,
        name: String,
    },
    /// A constant: a one-row array.
    Literal(ArrayRef),
    Binary {
        op: BinaryOp,
        left: Box<Expr>,
        right: Box<Expr>,
    },
    Not(Box<Expr>),
    Negate(Box<Expr>),
    IsNull(Box<Expr>),
    IsNotNull(Box<Expr>),
    Cast {
        expr: Box<Expr>,
        to: DataType,
        /// TRY_CAST: a value that does not convert becomes NULL.
        try_cast: bool,
    },
    Like {
        expr: Box<Expr>,
        pattern: Box<Expr>,
        negated: bool,
        case_insensitive: bool,
    },
    Function {
        func: ScalarFunction,
        args: Vec<Expr>,
    },
    /// CASE WHEN c1 THEN r1 ... ELSE e END. A result is evaluated only on
    /// the rows that take it, so `CASE WHEN x <> 0 THEN 1 % x END` cannot
    /// fail on the rows where x is 0.
    Case {
        branches: Vec<(Expr, Expr)>,
        otherwise: Option<Box<Expr>>,
    },
    /// An uncorrelated scalar subquery: one column, at most one row. The
    /// session runs it before the plan that holds it and puts its value in
    /// its place as a literal (`Session::run_subqueries`), so no operator
    /// ever evaluates this node on rows.
    Subquery(Arc<Subquery>),
}

#[derive(Debug)]
pub struct Subquery {
    pub plan: crate::plan::LogicalPlan,
    pub data_type: DataType,
    /// The query as written, shortened, for EXPLAIN.
    pub text: String,
}

/// The result of evaluating an expression on a batch.
pub enum Value {
    Array(ArrayRef),
    /// One value standing for every row.
    Scalar(ArrayRef),
}

impl Value {
    pub fn into_array(self, rows: usize) -> Result<ArrayRef> {
        match self {
            Value::Array(a) => Ok(a),
            Value::Scalar(s) => repeat(&s, rows),
        }
    }

    fn datum(&self) -> Box<dyn Datum + '_> {
        match self {
            Value::Array(a) => Box::new(a),
            Value::Scalar(s) => Box::new(Scalar::new(s)),
        }
    }
}

/// A column of `rows` copies of a one-row array's value.
pub fn repeat(one: &ArrayRef, rows: usize) -> Result<ArrayRef> {
    if one.is_null(0) {
        return Ok(new_null_array(one.data_type(), rows));
    }
    let indices = UInt32Array::from(vec![0u32; rows]);
    Ok(arrow::compute::take(one.as_ref(), &indices, None)?)
}

impl Expr {
    pub fn column(index: usize, name: impl Into<String>) -> Expr {
        Expr::Column {
            index,
            name: name.into(),
        }
    }

    pub fn binary(op: BinaryOp, left: Expr, right: Expr) -> Expr {
        Expr::Binary {
            op,
            left: Box::new(left),
            right: Box::new(right),
        }
    }

    pub fn cast(self, to: DataType) -> Expr {
        Expr::Cast {
            expr: Box::new(self),
            to,
            try_cast: false,
        }
    }

    pub fn evaluate(&self, batch: &RecordBatch) -> Result<Value> {
        Ok(match self {
            Expr::Column { index, .. } => Value::Array(batch.column(*index).clone()),
            Expr::Literal(value) => Value::Scalar(value.clone()),
            Expr::Binary { op, left, right } => {
                let l = left.evaluate(batch)?;
                let r = right.evaluate(batch)?;
                let both_scalar = matches!((&l, &r), (Value::Scalar(_), Value::Scalar(_)));
                let result = match op {
                    BinaryOp::And | BinaryOp::Or => {
                        let rows = if both_scalar { 1 } else { batch.num_rows() };
                        let l = l.into_array(rows)?;
                        let r = r.into_array(rows)?;
                        let (l, r) = (as_boolean(&l)?, as_boolean(&r)?);
                        let out = if *op == BinaryOp::And {
                            boolean::and_kleene(l, r)?
                        } else {
                            boolean::or_kleene(l, r)?
                        };
                        Arc::new(out) as ArrayRef
                    }
                    op => binary_kernel(*op, l.datum().as_ref(), r.datum().as_ref())?,
                };
                if both_scalar {
                    Value::Scalar(result)
                } else {
                    Value::Array(result)
                }
            }
            Expr::Not(e) => map_value(e.evaluate(batch)?, |a| {
                Ok(Arc::new(boolean::not(as_boolean(a)?)?) as ArrayRef)
            })?,
            Expr::Negate(e) => map_value(e.evaluate(batch)?, |a| Ok(numeric::neg(a)?))?,
            Expr::IsNull(e) => {
                map_value(
                    e.evaluate(batch)?,
                    |a| Ok(Arc::new(is_null(a)?) as ArrayRef),
                )?
            }
            Expr::IsNotNull(e) => map_value(e.evaluate(batch)?, |a| {
                Ok(Arc::new(is_not_null(a)?) as ArrayRef)
            })?,
            Expr::Cast { expr, to, try_cast } => {
                let options = CastOptions {
                    safe: *try_cast,
                    ..Default::default()
                };
                map_value(expr.evaluate(batch)?, |a| {
                    Ok(cast_with_options(a, to, &options)?)
                })?
            }
            Expr::Like {
                expr,
                pattern,
                negated,
                case_insensitive,
            } => {
                let l = expr.evaluate(batch)?;
                let r = pattern.evaluate(batch)?;
                let both_scalar = matches!((&l, &r), (Value::Scalar(_), Value::Scalar(_)));
                let (l, r) = (l.datum(), r.datum());
                let out = match (negated, case_insensitive) {
                    (false, false) => comparison::like(l.as_ref(), r.as_ref())?,
                    (true, false) => comparison::nlike(l.as_ref(), r.as_ref())?,
                    (false, true) => comparison::ilike(l.as_ref(), r.as_ref())?,
                    (true, true) => comparison::nilike(l.as_ref(), r.as_ref())?,
                };
                let out = Arc::new(out) as ArrayRef;
                if both_scalar {
                    Value::Scalar(out)
                } else {
                    Value::Array(out)
                }
            }
            Expr::Function { func, args } => self.evaluate_function(func, args, batch)?,
            Expr::Case {
                branches,
                otherwise,
            } => self.evaluate_case(branches, otherwise.as_deref(), batch)?,
            // Type inference evaluates expressions on an empty batch; a
            // subquery's type is known without running it. On rows it means
            // the session did not replace it: a bug, not a NULL.
            Expr::Subquery(sub) if batch.num_rows() == 0 => {
                Value::Scalar(arrow::array::new_null_array(&sub.data_type, 1))
            }
            Expr::Subquery(sub) => {
                return Err(Error::Internal(format!(
                    "the subquery {} was not run before its plan",
                    sub.text
                )))
            }
        })
    }

    fn evaluate_function(
        &self,
        func: &ScalarFunction,
        args: &[Expr],
        batch: &RecordBatch,
    ) -> Result<Value> {
        let values = args
            .iter()
            .map(|a| a.evaluate(batch))
            .collect::<Result<Vec<_>>>()?;
        let all_scalar = values.iter().all(|v| matches!(v, Value::Scalar(_)));
        let rows = if all_scalar { 1 } else { batch.num_rows() };
        let arrays = values
            .into_iter()
            .map(|v| v.into_array(rows))
            .collect::<Result<Vec<_>>>()?;
        let out = func.evaluate(&arrays, rows)?;
        Ok(if all_scalar {
            Value::Scalar(out)
        } else {
            Value::Array(out)
        })
    }

    fn evaluate_case(
        &self,
        branches: &[(Expr, Expr)],
        otherwise: Option<&Expr>,
        batch: &RecordBatch,
    ) -> Result<Value> {
        let rows = batch.num_rows();
        // Which branch each row takes: the first whose condition is true.
        let mut taken: Vec<Option<usize>> = vec![None; rows];
        for (b, (condition, _)) in branches.iter().enumerate() {
            let c = condition.evaluate_to_array(batch)?;
            let c = as_boolean(&c)?;
            for (row, slot) in taken.iter_mut().enumerate() {
                if slot.is_none() && c.is_valid(row) && c.value(row) {
                    *slot = Some(b);
                }
            }
        }
        let result_type = self.data_type(batch.schema_ref())?;
        // Each result on its own rows only; then the pieces are interleaved
        // back into row order.
        let mut pieces: Vec<ArrayRef> = Vec::new();
        let mut at: Vec<(usize, usize)> = vec![(0, 0); rows];
        let results = branches
            .iter()
            .map(|(_, r)| Some(r))
            .chain(std::iter::once(otherwise));
        for (b, result) in results.enumerate() {
            let branch = (b < branches.len()).then_some(b);
            let rows_here: Vec<u32> = (0..rows)
                .filter(|&r| taken[r] == branch)
                .map(|r| r as u32)
                .collect();
            if rows_here.is_empty() {
                continue;
            }
            let piece = match result {
                Some(result) => {
                    let indices = UInt32Array::from(rows_here.clone());
                    let subset = arrow::compute::take_record_batch(batch, &indices)?;
                    let v = result.evaluate_to_array(&subset)?;
                    cast_with_options(&v, &result_type, &CastOptions::default())?
                }
                None => new_null_array(&result_type, rows_here.len()),
            };
            let p = pieces.len();
            for (k, &r) in rows_here.iter().enumerate() {
                at[r as usize] = (p, k);
            }
            pieces.push(piece);
        }
        if pieces.is_empty() {
            return Ok(Value::Array(new_null_array(&result_type, rows)));
        }
        let refs: Vec<&dyn Array> = pieces.iter().map(|p| p.as_ref()).collect();
        Ok(Value::Array(arrow::compute::interleave(&refs, &at)?))
    }

    /// Evaluate to a full column for `batch`.
    pub fn evaluate_to_array(&self, batch: &RecordBatch) -> Result<ArrayRef> {
        self.evaluate(batch)?.into_array(batch.num_rows())
    }

    /// The type this expression yields over `schema`.
    pub fn data_type(&self, schema: &Schema) -> Result<DataType> {
        match self {
            Expr::Column { index, .. } => Ok(schema.field(*index).data_type().clone()),
            Expr::Literal(v) => Ok(v.data_type().clone()),
            Expr::Cast { to, .. } => Ok(to.clone()),
            Expr::Subquery(sub) => Ok(sub.data_type.clone()),
            // The planner casts every result to one type.
            Expr::Case {
                branches,
                otherwise,
            } => match branches.first() {
                Some((_, r)) => r.data_type(schema),
                None => otherwise
                    .as_ref()
                    .map_or(Ok(DataType::Null), |o| o.data_type(schema)),
            },
            _ => {
                let empty = RecordBatch::new_empty(Arc::new(schema.clone()));
                Ok(match self.evaluate(&empty)? {
                    Value::Array(a) | Value::Scalar(a) => a.data_type().clone(),
                })
            }
        }
    }

    /// Whether this expression may yield NULL over `schema`.
    pub fn nullable(&self, schema: &Schema) -> bool {
        match self {
            Expr::Column { index, .. } => schema.field(*index).is_nullable(),
            // A NullArray has no validity buffer, so ask for its logical nulls.
            Expr::Literal(v) => v.logical_null_count() > 0,
            Expr::IsNull(_) | Expr::IsNotNull(_) => false,
            Expr::Binary {
                op: BinaryOp::IsDistinctFrom | BinaryOp::IsNotDistinctFrom,
                ..
            } => false,
            Expr::Binary { op, left, right }
                if !matches!(op, BinaryOp::Divide | BinaryOp::Modulo) =>
            {
                left.nullable(schema) || right.nullable(schema)
            }
            Expr::Not(e) | Expr::Negate(e) => e.nullable(schema),
            Expr::Cast {
                expr,
                try_cast: false,
                ..
            } => expr.nullable(schema),
            _ => true,
        }
    }

    /// Visit this expression and every sub-expression, parents first.
    pub fn walk(&self, f: &mut dyn FnMut(&Expr)) {
        f(self);
        match self {
            Expr::Column { .. } | Expr::Literal(_) | Expr::Subquery(_) => {}
            Expr::Binary { left, right, .. } => {
                left.walk(f);
                right.walk(f);
            }
            Expr::Like { expr, pattern, .. } => {
                expr.walk(f);
                pattern.walk(f);
            }
            Expr::Not(e) | Expr::Negate(e) | Expr::IsNull(e) | Expr::IsNotNull(e) => e.walk(f),
            Expr::Cast { expr, .. } => expr.walk(f),
            Expr::Function { args, .. } => args.iter().for_each(|a| a.walk(f)),
            Expr::Case {
                branches,
                otherwise,
            } => {
                for (c, r) in branches {
                    c.walk(f);
                    r.walk(f);
                }
                if let Some(o) = otherwise {
                    o.walk(f);
                }
            }
        }
    }

    /// Rebuild this expression bottom-up, replacing each column reference
    /// with what `f` returns for it.
    pub fn map_columns(&self, f: &mut dyn FnMut(usize, &str) -> Result<Expr>) -> Result<Expr> {
        self.map_leaves(&mut |leaf| match leaf {
            Expr::Column { index, name } => f(*index, name),
            other => Ok(other.clone()),
        })
    }

    /// Rebuild this expression bottom-up, replacing each leaf (a column, a
    /// literal, a subquery) with what `f` returns for it.
    fn map_leaves(&self, f: &mut dyn FnMut(&Expr) -> Result<Expr>) -> Result<Expr> {
        Ok(match self {
            Expr::Column { .. } | Expr::Literal(_) | Expr::Subquery(_) => f(self)?,
            Expr::Binary { op, left, right } => Expr::Binary {
                op: *op,
                left: Box::new(left.map_leaves(f)?),
                right: Box::new(right.map_leaves(f)?),
            },
            Expr::Like {
                expr,
                pattern,
                negated,
                case_insensitive,
            } => Expr::Like {
                expr: Box::new(expr.map_leaves(f)?),
                pattern: Box::new(pattern.map_leaves(f)?),
                negated: *negated,
                case_insensitive: *case_insensitive,
            },
            Expr::Not(e) => Expr::Not(Box::new(e.map_leaves(f)?)),
            Expr::Negate(e) => Expr::Negate(Box::new(e.map_leaves(f)?)),
            Expr::IsNull(e) => Expr::IsNull(Box::new(e.map_leaves(f)?)),
            Expr::IsNotNull(e) => Expr::IsNotNull(Box::new(e.map_leaves(f)?)),
            Expr::Cast { expr, to, try_cast } => Expr::Cast {
                expr: Box::new(expr.map_leaves(f)?),
                to: to.clone(),
                try_cast: *try_cast,
            },
            Expr::Function { func, args } => Expr::Function {
                func: func.clone(),
                args: args
                    .iter()
                    .map(|a| a.map_leaves(f))
                    .collect::<Result<_>>()?,
            },
            Expr::Case {
                branches,
                otherwise,
            } => Expr::Case {
                branches: branches
                    .iter()
                    .map(|(c, r)| Ok((c.map_leaves(f)?, r.map_leaves(f)?)))
                    .collect::<Result<_>>()?,
                otherwise: otherwise
                    .as_ref()
                    .map(|o| o.map_leaves(f).map(Box::new))
                    .transpose()?,
            },
        })
    }

    /// Renumber column references through `map` (old index → new index).
    pub fn remap(&self, map: &dyn Fn(usize) -> Option<usize>) -> Result<Expr> {
        self.map_columns(&mut |index, name| {
            map(index)
                .map(|i| Expr::column(i, name))
                .ok_or_else(|| Error::Internal(format!("column {name} (#{index}) lost in remap")))
        })
    }

    /// The input columns this expression reads.
    pub fn columns(&self) -> BTreeSet<usize> {
        let mut set = BTreeSet::new();
        self.walk(&mut |e| {
            if let Expr::Column { index, .. } = e {
                set.insert(*index);
            }
        });
        set
    }

    /// Whether a scalar subquery is in this expression.
    pub fn has_subquery(&self) -> bool {
        let mut found = false;
        self.walk(&mut |e| found |= matches!(e, Expr::Subquery(_)));
        found
    }

    /// Rebuild this expression with each scalar subquery replaced by what
    /// `f` returns for it (its value, once run).
    pub fn map_subqueries(&self, f: &mut dyn FnMut(&Subquery) -> Result<Expr>) -> Result<Expr> {
        self.map_leaves(&mut |leaf| match leaf {
            Expr::Subquery(sub) => f(sub),
            other => Ok(other.clone()),
        })
    }

    /// Split `a AND b AND c` into its conjuncts.
    pub fn split_conjunction(self, out: &mut Vec<Expr>) {
        match self {
            Expr::Binary {
                op: BinaryOp::And,
                left,
                right,
            } => {
                left.split_conjunction(out);
                right.split_conjunction(out);
            }
            other => out.push(other),
        }
    }

    /// Join conjuncts back with AND; `None` for an empty list.
    pub fn conjunction(exprs: impl IntoIterator<Item = Expr>) -> Option<Expr> {
        exprs
            .into_iter()
            .reduce(|a, b| Expr::binary(BinaryOp::And, a, b))
    }

    /// Evaluate an expression that reads no column, for constant folding.
    /// `None` if it does read a column.
    pub fn fold(&self) -> Result<Option<ArrayRef>> {
        if !self.columns().is_empty() || self.has_subquery() {
            return Ok(None);
        }
        if let Expr::Literal(v) = self {
            return Ok(Some(v.clone()));
        }
        let one_row = RecordBatch::try_new_with_options(
            Arc::new(Schema::empty()),
            vec![],
            &arrow::array::RecordBatchOptions::new().with_row_count(Some(1)),
        )?;
        Ok(Some(self.evaluate_to_array(&one_row)?))
    }
}

fn binary_kernel(op: BinaryOp, l: &dyn Datum, r: &dyn Datum) -> Result<ArrayRef> {
    Ok(match op {
        BinaryOp::Plus => arithmetic(DecimalOp::Add, numeric::add, l, r)?,
        BinaryOp::Minus => arithmetic(DecimalOp::Sub, numeric::sub, l, r)?,
        BinaryOp::Multiply => arithmetic(DecimalOp::Mul, numeric::mul, l, r)?,
        BinaryOp::Divide => numeric::div(l, r)?,
        BinaryOp::Modulo => numeric::rem(l, r)?,
        BinaryOp::Eq => Arc::new(cmp::eq(l, r)?),
        BinaryOp::NotEq => Arc::new(cmp::neq(l, r)?),
        BinaryOp::Lt => Arc::new(cmp::lt(l, r)?),
        BinaryOp::LtEq => Arc::new(cmp::lt_eq(l, r)?),
        BinaryOp::Gt => Arc::new(cmp::gt(l, r)?),
        BinaryOp::GtEq => Arc::new(cmp::gt_eq(l, r)?),
        BinaryOp::IsDistinctFrom => Arc::new(cmp::distinct(l, r)?),
        BinaryOp::IsNotDistinctFrom => Arc::new(cmp::not_distinct(l, r)?),
        BinaryOp::And | BinaryOp::Or => {
            return Err(Error::Internal(
                "boolean op reached the arithmetic kernel".into(),
            ))
        }
    })
}

/// `l op r`: decimals without a check a value where they cannot overflow
/// ([`unchecked`]), everything else by arrow's `checked` kernel.
fn arithmetic(
    op: DecimalOp,
    checked: fn(&dyn Datum, &dyn Datum) -> std::result::Result<ArrayRef, ArrowError>,
    l: &dyn Datum,
    r: &dyn Datum,
) -> Result<ArrayRef> {
    Ok(match unchecked(op, l, r)? {
        Some(done) => done,
        None => checked(l, r)?,
    })
}

fn map_value(v: Value, f: impl FnOnce(&ArrayRef) -> Result<ArrayRef>) -> Result<Value> {
    Ok(match v {
        Value::Array(a) => Value::Array(f(&a)?),
        Value::Scalar(s) => Value::Scalar(f(&s)?),
    })
}

fn as_boolean(a: &ArrayRef) -> Result<&BooleanArray> {
    a.as_any().downcast_ref::<BooleanArray>().ok_or_else(|| {
        Error::plan(format!(
            "expected a BOOLEAN, got {}",
            sql_type_name(a.data_type())
        ))
    })
}

/// The SQL name of an arrow type, for messages.
pub fn sql_type_name(t: &DataType) -> String {
    match t {
        DataType::Null => "NULL".into(),
        DataType::Boolean => "BOOLEAN".into(),
        DataType::Int8 => "TINYINT".into(),
        DataType::Int16 => "SMALLINT".into(),
        DataType::Int32 => "INTEGER".into(),
        DataType::Int64 => "BIGINT".into(),
        DataType::UInt8 => "UTINYINT".into(),
        DataType::UInt16 => "USMALLINT".into(),
        DataType::UInt32 => "UINTEGER".into(),
        DataType::UInt64 => "UBIGINT".into(),
        DataType::Float32 => "REAL".into(),
        DataType::Float64 => "DOUBLE".into(),
        DataType::Decimal128(p, s) | DataType::Decimal256(p, s) => format!("DECIMAL({p},{s})"),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => "VARCHAR".into(),
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView => "BLOB".into(),
        DataType::Date32 | DataType::Date64 => "DATE".into(),
        DataType::Timestamp(_, None) => "TIMESTAMP".into(),
        DataType::Timestamp(_, Some(_)) => "TIMESTAMP WITH TIME ZONE".into(),
        other => other.to_string(),
    }
}

impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expr::Column { name, .. } => write!(f, "{name}"),
            Expr::Literal(v) => {
                if v.is_null(0) {
                    return write!(f, "NULL");
                }
                let options = FormatOptions::default();
                match ArrayFormatter::try_new(v.as_ref(), &options) {
                    Ok(fmt)
                        if matches!(
                            v.data_type(),
                            DataType::Utf8 | DataType::Utf8View | DataType::LargeUtf8
                        ) =>
                    {
                        write!(f, "'{}'", fmt.value(0))
                    }
                    Ok(fmt) if matches!(v.data_type(), DataType::Date32) => {
                        write!(f, "DATE '{}'", fmt.value(0))
                    }
                    Ok(fmt) => write!(f, "{}", fmt.value(0)),
                    Err(_) => write!(f, "?"),
                }
            }
            Expr::Binary { op, left, right } => write!(f, "({left} {} {right})", op.symbol()),
            Expr::Not(e) => write!(f, "NOT {e}"),
            Expr::Negate(e) => write!(f, "-{e}"),
            Expr::IsNull(e) => write!(f, "{e} IS NULL"),
            Expr::IsNotNull(e) => write!(f, "{e} IS NOT NULL"),
            Expr::Cast { expr, to, try_cast } => {
                let name = if *try_cast { "TRY_CAST" } else { "CAST" };
                write!(f, "{name}({expr} AS {})", sql_type_name(to))
            }
            Expr::Like {
                expr,
                pattern,
                negated,
                case_insensitive,
            } => {
                let not = if *negated { "NOT " } else { "" };
                let like = if *case_insensitive { "ILIKE" } else { "LIKE" };
                write!(f, "{expr} {not}{like} {pattern}")
            }
            Expr::Function { func, args } => {
                let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
                if matches!(func, ScalarFunction::ConcatOperator) {
                    return write!(f, "({})", args.join(" || "));
                }
                write!(f, "{func}({})", args.join(", "))
            }
            Expr::Case {
                branches,
                otherwise,
            } => {
                write!(f, "CASE")?;
                for (c, r) in branches {
                    write!(f, " WHEN {c} THEN {r}")?;
                }
                if let Some(o) = otherwise {
                    write!(f, " ELSE {o}")?;
                }
                write!(f, " END")
            }
            Expr::Subquery(sub) => write!(f, "({})", sub.text),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::Field;

    fn batch() -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("a", DataType::Int64, true),
            Field::new("b", DataType::Boolean, true),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from(vec![Some(1), None, Some(3)])),
                Arc::new(BooleanArray::from(vec![Some(true), Some(false), None])),
            ],
        )
        .unwrap()
    }

    fn lit_i64(v: i64) -> Expr {
        Expr::Literal(Arc::new(Int64Array::from(vec![v])))
    }

    #[test]
    fn arithmetic_with_a_scalar_keeps_nulls() {
        let e = Expr::binary(BinaryOp::Plus, Expr::column(0, "a"), lit_i64(10));
        let out = e.evaluate_to_array(&batch()).unwrap();
        let out = out.as_any().downcast_ref::<Int64Array>().unwrap();
        assert_eq!(out, &Int64Array::from(vec![Some(11), None, Some(13)]));
    }

    #[test]
    fn integer_overflow_is_an_error_not_a_wrap() {
        let e = Expr::binary(BinaryOp::Plus, Expr::column(0, "a"), lit_i64(i64::MAX));
        assert!(e.evaluate(&batch()).is_err());
    }

    #[test]
    fn and_or_follow_three_valued_logic() {
        // NULL AND false is false; NULL OR true is true.
        let f = Expr::Literal(Arc::new(BooleanArray::from(vec![false])));
        let t = Expr::Literal(Arc::new(BooleanArray::from(vec![true])));
        let and = Expr::binary(BinaryOp::And, Expr::column(1, "b"), f);
        let out = and.evaluate_to_array(&batch()).unwrap();
        assert_eq!(
            out.as_any().downcast_ref::<BooleanArray>().unwrap(),
            &BooleanArray::from(vec![false, false, false])
        );
        let or = Expr::binary(BinaryOp::Or, Expr::column(1, "b"), t);
        let out = or.evaluate_to_array(&batch()).unwrap();
        assert_eq!(
            out.as_any().downcast_ref::<BooleanArray>().unwrap(),
            &BooleanArray::from(vec![true, true, true])
        );
    }

    #[test]
    fn types_come_from_the_kernels() {
        let schema = batch().schema();
        let e = Expr::binary(BinaryOp::Lt, Expr::column(0, "a"), lit_i64(2));
        assert_eq!(e.data_type(&schema).unwrap(), DataType::Boolean);
        let bad = Expr::binary(
            BinaryOp::Plus,
            Expr::column(0, "a"),
            Expr::Literal(Arc::new(StringArray::from(vec!["x"]))),
        );
        assert!(bad.data_type(&schema).is_err());
    }

    #[test]
    fn constants_fold() {
        let e = Expr::binary(BinaryOp::Multiply, lit_i64(6), lit_i64(7));
        let v = e.fold().unwrap().unwrap();
        assert_eq!(
            v.as_any().downcast_ref::<Int64Array>().unwrap().value(0),
            42
        );
        assert!(Expr::column(0, "a").fold().unwrap().is_none());
    }
}
