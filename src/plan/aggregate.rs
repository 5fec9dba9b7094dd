//! Aggregate functions as the plan names them: which function, over which
//! argument expressions, and the type each yields.
//!
//! The accumulators that compute them are in `exec/accumulator.rs`.

use std::fmt;

use arrow::datatypes::DataType;

use crate::plan::expr::Expr;

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
    "first",
    "arbitrary",
];

pub fn is_aggregate(name: &str) -> bool {
    AGGREGATE_FUNCTIONS.contains(&name.to_ascii_lowercase().as_str())
}

#[derive(Debug, Clone, PartialEq)]
pub enum AggregateFunction {
    /// count(*): rows, NULLs included.
    CountStar,
    /// count(x): non-NULL values.
    Count,
    Sum,
    Avg,
    Min,
    Max,
    Variance {
        sample: bool,
        sqrt: bool,
    },
    BoolAnd,
    BoolOr,
    StringAgg {
        separator: String,
    },
    AnyValue,
}

/// One aggregate of a GROUP BY: `func(DISTINCT? args)`, with `args` bound
/// to the aggregate's input.
#[derive(Debug, Clone)]
pub struct AggregateExpr {
    pub func: AggregateFunction,
    pub args: Vec<Expr>,
    pub distinct: bool,
}

impl AggregateFunction {
    /// The result type over arguments of `input` type (after the binder's
    /// casts: integers are BIGINT, floats DOUBLE, strings VARCHAR).
    pub fn return_type(&self, input: Option<&DataType>) -> DataType {
        match (self, input) {
            (AggregateFunction::CountStar | AggregateFunction::Count, _) => DataType::Int64,
            (AggregateFunction::Sum, Some(DataType::Decimal128(_, s))) => {
                DataType::Decimal128(38, *s)
            }
            (AggregateFunction::Sum, Some(t)) => t.clone(),
            (AggregateFunction::Avg | AggregateFunction::Variance { .. }, _) => DataType::Float64,
            (AggregateFunction::BoolAnd | AggregateFunction::BoolOr, _) => DataType::Boolean,
            (AggregateFunction::StringAgg { .. }, _) => DataType::Utf8,
            (_, Some(t)) => t.clone(),
            (_, None) => DataType::Null,
        }
    }

    fn name(&self) -> &'static str {
        match self {
            AggregateFunction::CountStar | AggregateFunction::Count => "count",
            AggregateFunction::Sum => "sum",
            AggregateFunction::Avg => "avg",
            AggregateFunction::Min => "min",
            AggregateFunction::Max => "max",
            AggregateFunction::Variance {
                sample: true,
                sqrt: false,
            } => "var_samp",
            AggregateFunction::Variance {
                sample: false,
                sqrt: false,
            } => "var_pop",
            AggregateFunction::Variance {
                sample: true,
                sqrt: true,
            } => "stddev_samp",
            AggregateFunction::Variance {
                sample: false,
                sqrt: true,
            } => "stddev_pop",
            AggregateFunction::BoolAnd => "bool_and",
            AggregateFunction::BoolOr => "bool_or",
            AggregateFunction::StringAgg { .. } => "string_agg",
            AggregateFunction::AnyValue => "any_value",
        }
    }
}

impl fmt::Display for AggregateExpr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.func == AggregateFunction::CountStar {
            return write!(f, "count(*)");
        }
        let args: Vec<String> = self.args.iter().map(|a| a.to_string()).collect();
        let distinct = if self.distinct { "DISTINCT " } else { "" };
        write!(f, "{}({distinct}{}", self.func.name(), args.join(", "))?;
        if let AggregateFunction::StringAgg { separator } = &self.func {
            write!(f, ", '{separator}'")?;
        }
        write!(f, ")")
    }
}
