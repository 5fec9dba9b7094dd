//! Aggregate function names. The aggregate operator is not built yet; the
//! binder uses this list to refuse aggregates by name ("not implemented")
//! instead of calling them unknown, and to suggest names.

/// Names of the aggregate functions the SQL surface will take.
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
];

pub fn is_aggregate(name: &str) -> bool {
    AGGREGATE_FUNCTIONS.contains(&name.to_ascii_lowercase().as_str())
}
