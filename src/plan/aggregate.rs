//! Aggregate calls as the plan holds them: which function, over which bound
//! argument, DISTINCT or not, with which FILTER.
//!
//! The binder (`sql/aggregate.rs`) casts every argument to the one type the
//! function's accumulator takes (BIGINT, DOUBLE or the decimal itself for
//! sums, DOUBLE for variances and quantiles, VARCHAR for string_agg), so the accumulators
//! in `exec/aggregate/` never meet a type they did not plan for.

use std::fmt;

use arrow::datatypes::DataType;

use crate::error::{Error, Result};
use crate::plan::expr::{sql_type_name, Expr};

/// Names of the aggregate functions, for the binder and for suggestions.
pub const AGGREGATE_FUNCTIONS: &[&str] = &[
    "count",
    "sum",
    "avg",
    "mean",
    "min",
    "max",
    "stddev",
    "stddev_samp",
    "stddev_pop",
    "variance",
    "var_samp",
    "var_pop",
    "bool_and",
    "bool_or",
    "string_agg",
    "any_value",
    "median",
    "approx_count_distinct",
    "quantile_cont",
    "quantile_disc",
];

pub fn is_aggregate(name: &str) -> bool {
    AGGREGATE_FUNCTIONS.contains(&name.to_ascii_lowercase().as_str())
}

#[derive(Debug, Clone, PartialEq)]
pub enum AggregateFunction {
    /// `count(*)`: rows, NULLs included.
    CountStar,
    /// `count(x)`: rows where x is not NULL.
    Count,
    /// BIGINT over integers (summed exactly in 128 bits; an error if the
    /// total does not fit), DOUBLE over floats, DECIMAL(38, s) over
    /// DECIMAL(p, s).
    Sum,
    /// DOUBLE over any number.
    Avg,
    Min,
    Max,
    /// The first non-NULL value met.
    AnyValue,
    /// variance/var_samp (sample), var_pop; `sqrt` for the stddev forms.
    Variance {
        sample: bool,
        sqrt: bool,
    },
    BoolAnd,
    BoolOr,
    /// Non-NULL values joined by `separator`, in the order met.
    StringAgg {
        separator: String,
    },
    /// The exact `q`-quantile of the non-NULL values, as DOUBLE: `median`
    /// is the continuous 0.5. Continuous interpolates between the two
    /// nearest values; discrete is the first value whose cumulative share
    /// reaches `q` (PostgreSQL's percentile_disc).
    Quantile {
        q: f64,
        continuous: bool,
    },
    /// An estimate of the distinct non-NULL values (HyperLogLog, 1024
    /// registers: about 3% standard error), as BIGINT.
    ApproxCountDistinct,
}

impl AggregateFunction {
    /// The result type over an argument of type `arg` (as cast by the
    /// binder; `None` for `count(*)`).
    pub fn return_type(&self, arg: Option<&DataType>) -> Result<DataType> {
        use AggregateFunction as F;
        Ok(match (self, arg) {
            (F::CountStar | F::Count, _) => DataType::Int64,
            (F::Sum, Some(DataType::Int64)) => DataType::Int64,
            (F::Sum, Some(DataType::Decimal128(_, s))) => DataType::Decimal128(38, *s),
            (F::Sum | F::Avg | F::Variance { .. }, Some(DataType::Float64)) => DataType::Float64,
            (F::Avg, Some(DataType::Int64 | DataType::Decimal128(..))) => DataType::Float64,
            (F::Min | F::Max | F::AnyValue, Some(t)) => t.clone(),
            (F::BoolAnd | F::BoolOr, Some(DataType::Boolean)) => DataType::Boolean,
            (F::StringAgg { .. }, Some(DataType::Utf8)) => DataType::Utf8,
            (F::Quantile { .. }, Some(DataType::Float64)) => DataType::Float64,
            (F::ApproxCountDistinct, Some(_)) => DataType::Int64,
            (f, arg) => {
                return Err(Error::Internal(format!(
                    "aggregate {f:?} bound over {}",
                    arg.map_or("no argument".to_string(), sql_type_name)
                )))
            }
        })
    }

    pub fn name(&self) -> &'static str {
        use AggregateFunction as F;
        match self {
            F::CountStar | F::Count => "count",
            F::Sum => "sum",
            F::Avg => "avg",
            F::Min => "min",
            F::Max => "max",
            F::AnyValue => "any_value",
            F::Variance {
                sample: true,
                sqrt: false,
            } => "var_samp",
            F::Variance {
                sample: false,
                sqrt: false,
            } => "var_pop",
            F::Variance {
                sample: true,
                sqrt: true,
            } => "stddev_samp",
            F::Variance {
                sample: false,
                sqrt: true,
            } => "stddev_pop",
            F::BoolAnd => "bool_and",
            F::BoolOr => "bool_or",
            F::StringAgg { .. } => "string_agg",
            F::Quantile {
                continuous: true, ..
            } => "quantile_cont",
            F::Quantile {
                continuous: false, ..
            } => "quantile_disc",
            F::ApproxCountDistinct => "approx_count_distinct",
        }
    }
}

/// One aggregate call, bound to the aggregate's input.
#[derive(Debug, Clone)]
pub struct AggregateExpr {
    pub func: AggregateFunction,
    /// The argument; `None` only for `count(*)`.
    pub arg: Option<Expr>,
    /// `DISTINCT`: each distinct non-NULL value of `arg` counts once per
    /// group.
    pub distinct: bool,
    /// `FILTER (WHERE ...)`: only rows where it is true are aggregated.
    pub filter: Option<Expr>,
}

impl AggregateExpr {
    /// Every expression the call reads.
    pub fn exprs(&self) -> impl Iterator<Item = &Expr> {
        self.arg.iter().chain(self.filter.iter())
    }

    /// The same call with its expressions rewritten by `f`.
    pub fn try_map(&self, f: &mut dyn FnMut(&Expr) -> Result<Expr>) -> Result<AggregateExpr> {
        Ok(AggregateExpr {
            func: self.func.clone(),
            arg: self.arg.as_ref().map(&mut *f).transpose()?,
            distinct: self.distinct,
            filter: self.filter.as_ref().map(&mut *f).transpose()?,
        })
    }
}

impl fmt::Display for AggregateExpr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}(", self.func.name())?;
        if self.distinct {
            write!(f, "DISTINCT ")?;
        }
        match &self.arg {
            Some(arg) => write!(f, "{arg}")?,
            None => write!(f, "*")?,
        }
        match &self.func {
            AggregateFunction::StringAgg { separator } => {
                write!(f, ", '{}'", separator.replace('\'', "''"))?
            }
            AggregateFunction::Quantile { q, .. } => write!(f, ", {q}")?,
            _ => {}
        }
        write!(f, ")")?;
        if let Some(filter) = &self.filter {
            write!(f, " FILTER (WHERE {filter})")?;
        }
        Ok(())
    }
}
