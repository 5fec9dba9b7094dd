//! Function calls and the special forms around them (CASE, EXTRACT,
//! SUBSTRING, TRIM, INTERVAL, `||`) → bound [`Expr`]s.
//!
//! Each function's arguments are checked and cast here to the types
//! [`ScalarFunction::evaluate`] expects, so that evaluation never meets a
//! type it did not plan for. An unknown function gets the nearest known
//! names.

use std::sync::Arc;

use arrow::array::{Array, AsArray, StringArray};
use arrow::datatypes::{DataType, IntervalUnit};
use regex::Regex;
use sqlparser::ast::helpers::attached_token::AttachedToken;
use sqlparser::ast::{
    CaseWhen, DuplicateTreatment, Expr as SqlExpr, Function, FunctionArg, FunctionArgExpr,
    FunctionArguments, Interval,
};

use crate::error::{Error, Result};
use crate::plan::expr::{sql_type_name, Expr};
use crate::plan::function::{current_date, current_timestamp, valid_format, Field, ScalarFunction};
use crate::sql::expr::{coerce_to, edit_distance, fold, ExprPlanner};

/// Names of the scalar functions, for suggestions.
pub const SCALAR_FUNCTIONS: &[&str] = &[
    "lower",
    "upper",
    "trim",
    "ltrim",
    "rtrim",
    "substring",
    "substr",
    "length",
    "char_length",
    "concat",
    "replace",
    "split_part",
    "starts_with",
    "ends_with",
    "contains",
    "lpad",
    "rpad",
    "regexp_matches",
    "regexp_replace",
    "regexp_extract",
    "date_part",
    "datepart",
    "extract",
    "date_trunc",
    "datetrunc",
    "strftime",
    "strptime",
    "current_date",
    "today",
    "now",
    "current_timestamp",
    "date_diff",
    "datediff",
    "year",
    "quarter",
    "month",
    "week",
    "day",
    "dayofmonth",
    "dayofweek",
    "isodow",
    "dayofyear",
    "hour",
    "minute",
    "second",
    "epoch",
    "left",
    "right",
    "strpos",
    "instr",
    "position",
    "if",
    "iff",
    "abs",
    "round",
    "floor",
    "ceil",
    "ceiling",
    "sqrt",
    "ln",
    "log10",
    "exp",
    "power",
    "pow",
    "mod",
    "hash",
    "coalesce",
    "ifnull",
    "nullif",
    "greatest",
    "least",
];

fn is_string(t: &DataType) -> bool {
    matches!(t, DataType::Utf8 | DataType::Utf8View | DataType::LargeUtf8)
}

impl ExprPlanner<'_> {
    /// The plain positional arguments of a call, planned.
    pub fn call_args(&self, f: &Function) -> Result<Vec<Expr>> {
        let FunctionArguments::List(list) = &f.args else {
            return Ok(Vec::new());
        };
        if !list.clauses.is_empty() {
            return Err(Error::NotImplemented(format!(
                "clauses inside the arguments of {}",
                f.name
            )));
        }
        if matches!(list.duplicate_treatment, Some(DuplicateTreatment::Distinct)) {
            return Err(Error::plan(format!(
                "DISTINCT is only allowed in aggregate functions, not in {}",
                f.name
            )));
        }
        list.args
            .iter()
            .map(|a| match a {
                FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => self.plan(e),
                other => Err(Error::plan(format!(
                    "{} takes plain arguments, got {other}",
                    f.name
                ))),
            })
            .collect()
    }

    pub fn scalar_function(&self, f: &Function) -> Result<Expr> {
        // Calls with OVER never get here: `ExprPlanner::plan` sends them to
        // the window binder (or refuses them) first.
        if f.filter.is_some() {
            return Err(Error::plan(format!(
                "FILTER is only allowed in aggregate functions, not in {}",
                f.name
            )));
        }
        let name = f.name.to_string().to_ascii_lowercase();
        if crate::plan::aggregate::is_aggregate(&name) {
            return Err(Error::plan(format!(
                "{}: {f}",
                crate::sql::aggregate::AGGREGATE_NOT_ALLOWED
            )));
        }
        // if(c, a, b) is CASE WHEN c THEN a ELSE b END, planned as one so
        // that its branches are coerced, and evaluated, as CASE's are.
        if matches!(name.as_str(), "if" | "iff") {
            let args = crate::sql::window::plain_args(f, &name)?;
            let [c, a, b] = args[..] else {
                return Err(Error::plan(format!(
                    "{name} takes 3 plain arguments (condition, then, else)"
                )));
            };
            return self.plan(&SqlExpr::Case {
                case_token: AttachedToken::empty(),
                end_token: AttachedToken::empty(),
                operand: None,
                conditions: vec![CaseWhen {
                    condition: c.clone(),
                    result: a.clone(),
                }],
                else_result: Some(Box::new(b.clone())),
            });
        }
        let args = self.call_args(f)?;
        self.call(&name, args)
    }

    /// Bind `name(args)`.
    pub fn call(&self, name: &str, args: Vec<Expr>) -> Result<Expr> {
        use ScalarFunction as F;
        let n = args.len();
        let arity = |min: usize, max: usize| -> Result<()> {
            if n < min || n > max {
                let want = if min == max {
                    format!("{min}")
                } else if max == usize::MAX {
                    format!("at least {min}")
                } else {
                    format!("{min} to {max}")
                };
                return Err(Error::plan(format!(
                    "{name} takes {want} argument{}, got {n}",
                    if max == 1 { "" } else { "s" }
                )));
            }
            Ok(())
        };
        let mut args = args;
        let func = match name {
            "lower" | "lcase" | "upper" | "ucase" | "length" | "char_length"
            | "character_length" | "len" => {
                arity(1, 1)?;
                self.strings(name, &mut args, &[0])?;
                match name {
                    "lower" | "lcase" => F::Lower,
                    "upper" | "ucase" => F::Upper,
                    _ => F::Length,
                }
            }
            "trim" | "ltrim" | "rtrim" => {
                arity(1, 2)?;
                self.strings(name, &mut args, &[0, 1])?;
                F::Trim {
                    start: name != "rtrim",
                    end: name != "ltrim",
                }
            }
            "substring" | "substr" => {
                arity(2, 3)?;
                self.strings(name, &mut args, &[0])?;
                self.integers(name, &mut args, &[1, 2])?;
                F::Substring
            }
            "concat" => {
                arity(1, usize::MAX)?;
                self.as_text(&mut args)?;
                F::Concat
            }
            "replace" => {
                arity(3, 3)?;
                self.strings(name, &mut args, &[0, 1, 2])?;
                F::Replace
            }
            "split_part" => {
                arity(3, 3)?;
                self.strings(name, &mut args, &[0, 1])?;
                self.integers(name, &mut args, &[2])?;
                F::SplitPart
            }
            "starts_with" | "prefix" | "ends_with" | "suffix" | "contains" => {
                arity(2, 2)?;
                self.strings(name, &mut args, &[0, 1])?;
                match name {
                    "starts_with" | "prefix" => F::StartsWith,
                    "ends_with" | "suffix" => F::EndsWith,
                    _ => F::Contains,
                }
            }
            "lpad" | "rpad" => {
                arity(2, 3)?;
                if n == 2 {
                    args.push(Expr::Literal(Arc::new(StringArray::from(vec![" "]))));
                }
                self.strings(name, &mut args, &[0, 2])?;
                self.integers(name, &mut args, &[1])?;
                if name == "lpad" {
                    F::Lpad
                } else {
                    F::Rpad
                }
            }
            "regexp_matches" | "regexp_full_match" => {
                arity(2, 2)?;
                self.strings(name, &mut args, &[0])?;
                let pattern = constant_text(name, "pattern", &args.remove(1))?;
                let pattern = if name == "regexp_full_match" {
                    format!("^(?:{pattern})$")
                } else {
                    pattern
                };
                F::RegexpMatches(regex(name, &pattern)?)
            }
            "regexp_replace" => {
                arity(3, 4)?;
                let options = match args.get(3) {
                    Some(o) => constant_text(name, "options", o)?,
                    None => String::new(),
                };
                args.truncate(3);
                self.strings(name, &mut args, &[0, 2])?;
                let pattern = constant_text(name, "pattern", &args.remove(1))?;
                if let Some(bad) = options.chars().find(|c| !matches!(c, 'g' | 'i')) {
                    return Err(Error::plan(format!(
                        "regexp_replace option '{bad}' is not known (options: g, i)"
                    )));
                }
                let pattern = if options.contains('i') {
                    format!("(?i){pattern}")
                } else {
                    pattern
                };
                F::RegexpReplace {
                    regex: regex(name, &pattern)?,
                    global: options.contains('g'),
                }
            }
            "regexp_extract" => {
                arity(2, 3)?;
                let group = match args.get(2) {
                    Some(g) => constant_integer(name, "group", g)?,
                    None => 0,
                };
                args.truncate(2);
                self.strings(name, &mut args, &[0])?;
                let pattern = constant_text(name, "pattern", &args.remove(1))?;
                let regex = regex(name, &pattern)?;
                if group < 0 || group as usize >= regex.captures_len() {
                    return Err(Error::plan(format!(
                        "regexp_extract group {group} is not in the pattern '{pattern}'"
                    )));
                }
                F::RegexpExtract {
                    regex,
                    group: group as usize,
                }
            }
            "date_part" | "datepart" | "date_trunc" | "datetrunc" => {
                arity(2, 2)?;
                let field = field(name, &args.remove(0))?;
                self.temporal(name, &args[0])?;
                if name.contains("trunc") {
                    F::DateTrunc(field)
                } else {
                    F::DatePart(field)
                }
            }
            "strftime" => {
                arity(2, 2)?;
                self.temporal(name, &args[0])?;
                F::Strftime(format_text(name, &args.remove(1))?)
            }
            "strptime" => {
                arity(2, 2)?;
                self.strings(name, &mut args, &[0])?;
                F::Strptime(format_text(name, &args.remove(1))?)
            }
            "current_date" | "today" => {
                arity(0, 0)?;
                return Ok(Expr::Literal(current_date()));
            }
            "now" | "current_timestamp" | "get_current_timestamp" => {
                arity(0, 0)?;
                return Ok(Expr::Literal(current_timestamp()));
            }
            // DuckDB's shorthands for date_part.
            "year" | "quarter" | "month" | "week" | "day" | "dayofmonth" | "dayofweek"
            | "isodow" | "dayofyear" | "hour" | "minute" | "second" | "epoch" => {
                arity(1, 1)?;
                args.insert(0, text_literal(name));
                return self.call("date_part", args);
            }
            // date_diff counts the boundaries of `part` crossed from the
            // second argument to the third, as DuckDB's does: months between
            // Jan 31 and Feb 1 are 1.
            "date_diff" | "datediff" => {
                arity(3, 3)?;
                let part = field(name, &args[0])?;
                let (end, start) = (args.pop().expect("3"), args.pop().expect("3"));
                self.temporal(name, &start)?;
                self.temporal(name, &end)?;
                let date = |e: Expr| e.cast(DataType::Date32);
                let part_of = |f: &str, e: Expr| self.call("date_part", vec![text_literal(f), e]);
                let minus = |a: Expr, b: Expr| self.binary(crate::plan::BinaryOp::Minus, a, b);
                let times = |a: Expr, k: i64| {
                    self.binary(crate::plan::BinaryOp::Multiply, a, int_literal(k))
                };
                let days = || minus(date(end.clone()), date(start.clone()));
                return match part {
                    Field::Day => Ok(days()?.cast(DataType::Int64)),
                    // Whole weeks, toward zero.
                    Field::Week => Ok(self
                        .binary(crate::plan::BinaryOp::Divide, days()?, int_literal(7))?
                        .cast(DataType::Int64)),
                    Field::Year => minus(part_of("year", end)?, part_of("year", start)?),
                    Field::Month | Field::Quarter => {
                        let unit = if part == Field::Month {
                            "month"
                        } else {
                            "quarter"
                        };
                        let per_year = if part == Field::Month { 12 } else { 4 };
                        let years = minus(
                            part_of("year", end.clone())?,
                            part_of("year", start.clone())?,
                        )?;
                        let units = minus(part_of(unit, end)?, part_of(unit, start)?)?;
                        self.binary(crate::plan::BinaryOp::Plus, times(years, per_year)?, units)
                    }
                    // Whole units since the epoch, so that 10:59 to 11:00
                    // is an hour.
                    Field::Hour | Field::Minute | Field::Second => {
                        let unit = match part {
                            Field::Hour => 3600,
                            Field::Minute => 60,
                            _ => 1,
                        };
                        let units = |e: Expr| {
                            let seconds = part_of("epoch", e)?;
                            let units = self.binary(
                                crate::plan::BinaryOp::Divide,
                                seconds,
                                int_literal(unit),
                            )?;
                            self.call("floor", vec![units])
                        };
                        Ok(minus(units(end)?, units(start)?)?.cast(DataType::Int64))
                    }
                    other => Err(Error::NotImplemented(format!(
                        "{name} by {} (built: second, minute, hour, day, week, month, quarter, \
                         year)",
                        format!("{other:?}").to_ascii_lowercase()
                    ))),
                };
            }
            "strpos" | "instr" | "position" => {
                arity(2, 2)?;
                self.strings(name, &mut args, &[0, 1])?;
                F::Strpos
            }
            "left" | "right" => {
                arity(2, 2)?;
                self.strings(name, &mut args, &[0])?;
                self.integers(name, &mut args, &[1])?;
                let n = args.pop().expect("2");
                let s = args.pop().expect("2");
                if name == "left" {
                    return self.call("substring", vec![s, int_literal(1), n]);
                }
                // From the n-th character from the end; all of a shorter one.
                let length = self.call("length", vec![s.clone()])?;
                let from = self.binary(
                    crate::plan::BinaryOp::Plus,
                    self.binary(crate::plan::BinaryOp::Minus, length, n)?,
                    int_literal(1),
                )?;
                let from = self.call("greatest", vec![from, int_literal(1)])?;
                return self.call("substring", vec![s, from]);
            }
            "abs" => {
                arity(1, 1)?;
                self.exact_or_float(name, &mut args, 0)?;
                F::Abs
            }
            "round" => {
                arity(1, 2)?;
                self.exact_or_float(name, &mut args, 0)?;
                self.integers(name, &mut args, &[1])?;
                F::Round
            }
            "floor" | "ceil" | "ceiling" => {
                arity(1, 1)?;
                self.exact_or_float(name, &mut args, 0)?;
                if name == "floor" {
                    F::Floor
                } else {
                    F::Ceil
                }
            }
            "sqrt" | "ln" | "log10" | "exp" | "power" | "pow" => {
                let two = matches!(name, "power" | "pow");
                arity(1 + usize::from(two), 1 + usize::from(two))?;
                for i in 0..args.len() {
                    self.float(name, &mut args, i)?;
                }
                match name {
                    "sqrt" => F::Sqrt,
                    "ln" => F::Ln,
                    "log10" => F::Log10,
                    "exp" => F::Exp,
                    _ => F::Power,
                }
            }
            "mod" => {
                arity(2, 2)?;
                let b = args.pop().expect("two arguments");
                let a = args.pop().expect("two arguments");
                return self.binary(crate::plan::BinaryOp::Modulo, a, b);
            }
            "hash" => {
                arity(1, usize::MAX)?;
                F::Hash
            }
            "coalesce" | "ifnull" | "greatest" | "least" => {
                if name == "ifnull" {
                    arity(2, 2)?;
                } else {
                    arity(1, usize::MAX)?;
                }
                self.common_type(name, &mut args)?;
                match name {
                    "coalesce" | "ifnull" => F::Coalesce,
                    "greatest" => F::Greatest,
                    _ => F::Least,
                }
            }
            "nullif" => {
                arity(2, 2)?;
                // The result has the first argument's type; the second is
                // compared as that type.
                let t = args[0].data_type(self.schema)?;
                let second = args.pop().expect("two arguments");
                let second = self.coerce(second, &t).map_err(|_| {
                    Error::plan("nullif compares its arguments, and they are of different types")
                })?;
                args.push(second);
                F::NullIf
            }
            _ => return Err(unknown_function(name)),
        };
        fold(Expr::Function { func, args })
    }

    /// Cast the arguments at `positions` (those that exist) to `to`, or fail
    /// naming the argument if one is not `kind` (as `accepts` tells). NULL
    /// is accepted everywhere.
    fn cast_args(
        &self,
        name: &str,
        args: &mut [Expr],
        positions: &[usize],
        (kind, accepts, to): (&str, fn(&DataType) -> bool, DataType),
    ) -> Result<()> {
        for &i in positions {
            let Some(a) = args.get(i) else { continue };
            let t = a.data_type(self.schema)?;
            if !accepts(&t) && t != DataType::Null {
                return Err(Error::plan(format!(
                    "{name}: argument {} must be {kind}, got {}",
                    i + 1,
                    sql_type_name(&t)
                )));
            }
            args[i] = self.coerce(args[i].clone(), &to)?;
        }
        Ok(())
    }

    fn strings(&self, name: &str, args: &mut [Expr], positions: &[usize]) -> Result<()> {
        let kind = (
            "VARCHAR",
            is_string as fn(&DataType) -> bool,
            DataType::Utf8,
        );
        self.cast_args(name, args, positions, kind)
    }

    /// Any value as text, as `concat` and `||` take them.
    pub fn as_text(&self, args: &mut [Expr]) -> Result<()> {
        for a in args.iter_mut() {
            *a = self.coerce(a.clone(), &DataType::Utf8)?;
        }
        Ok(())
    }

    fn integers(&self, name: &str, args: &mut [Expr], positions: &[usize]) -> Result<()> {
        let kind = (
            "an integer",
            DataType::is_integer as fn(&DataType) -> bool,
            DataType::Int64,
        );
        self.cast_args(name, args, positions, kind)
    }

    fn float(&self, name: &str, args: &mut [Expr], i: usize) -> Result<()> {
        let kind = (
            "a number",
            DataType::is_numeric as fn(&DataType) -> bool,
            DataType::Float64,
        );
        self.cast_args(name, args, &[i], kind)
    }

    /// Integers as BIGINT, decimals as they are, other numbers as DOUBLE.
    fn exact_or_float(&self, name: &str, args: &mut [Expr], i: usize) -> Result<()> {
        let t = args[i].data_type(self.schema)?;
        let to = match &t {
            t if t.is_integer() => DataType::Int64,
            DataType::Decimal128(..) => t.clone(),
            t if t.is_numeric() || *t == DataType::Null => DataType::Float64,
            other => {
                return Err(Error::plan(format!(
                    "{name}: argument {} must be a number, got {}",
                    i + 1,
                    sql_type_name(other)
                )))
            }
        };
        args[i] = self.coerce(args[i].clone(), &to)?;
        Ok(())
    }

    fn temporal(&self, name: &str, e: &Expr) -> Result<()> {
        match e.data_type(self.schema)? {
            DataType::Date32 | DataType::Date64 | DataType::Timestamp(..) | DataType::Null => {
                Ok(())
            }
            other => Err(Error::plan(format!(
                "{name} needs a DATE or TIMESTAMP, got {}",
                sql_type_name(&other)
            ))),
        }
    }

    /// Cast every argument to the one type they all meet at.
    pub fn common_type(&self, name: &str, args: &mut [Expr]) -> Result<DataType> {
        let mut t = DataType::Null;
        for a in args.iter() {
            let at = a.data_type(self.schema)?;
            t = crate::sql::planner::union_type(&t, &at).ok_or_else(|| {
                Error::plan(format!(
                    "{name}: arguments of types {} and {} do not meet",
                    sql_type_name(&t),
                    sql_type_name(&at)
                ))
            })?;
        }
        if t == DataType::Utf8View {
            t = DataType::Utf8;
        }
        for a in args.iter_mut() {
            *a = self.coerce(a.clone(), &t)?;
        }
        Ok(t)
    }

    pub fn coerce(&self, e: Expr, to: &DataType) -> Result<Expr> {
        coerce_to(e, to, self.schema)
    }

    /// CASE [operand] WHEN ... THEN ... [ELSE ...] END: every result is cast
    /// to the type they meet at.
    pub fn case(
        &self,
        operand: Option<&SqlExpr>,
        conditions: &[sqlparser::ast::CaseWhen],
        else_result: Option<&SqlExpr>,
    ) -> Result<Expr> {
        let operand = operand.map(|o| self.plan(o)).transpose()?;
        let mut whens = Vec::with_capacity(conditions.len());
        let mut results = Vec::with_capacity(conditions.len() + 1);
        for c in conditions {
            let when = self.plan(&c.condition)?;
            let when = match &operand {
                // CASE x WHEN 1 THEN ...: x = 1.
                Some(x) => self.binary(crate::plan::BinaryOp::Eq, x.clone(), when)?,
                None => when,
            };
            match when.data_type(self.schema)? {
                DataType::Boolean => {}
                DataType::Null => {}
                other => {
                    return Err(Error::plan(format!(
                        "CASE WHEN needs a BOOLEAN condition, got {}",
                        sql_type_name(&other)
                    )))
                }
            }
            whens.push(when);
            results.push(self.plan(&c.result)?);
        }
        if let Some(e) = else_result {
            results.push(self.plan(e)?);
        }
        self.common_type("CASE", &mut results)?;
        let otherwise = (results.len() > whens.len()).then(|| Box::new(results.pop().unwrap()));
        let when_null = |w: Expr| -> Result<Expr> {
            if w.data_type(self.schema)? == DataType::Null {
                return fold(w.cast(DataType::Boolean));
            }
            Ok(w)
        };
        let branches = whens
            .into_iter()
            .map(when_null)
            .zip(results)
            .map(|(w, r)| Ok((w?, r)))
            .collect::<Result<Vec<_>>>()?;
        Ok(Expr::Case {
            branches,
            otherwise,
        })
    }

    /// `INTERVAL '1 day'`, `INTERVAL 3 MONTH`, `INTERVAL '2' HOUR`.
    pub fn interval(&self, interval: &Interval) -> Result<Expr> {
        if interval.last_field.is_some() {
            return Err(Error::NotImplemented(
                "INTERVAL ranges (DAY TO SECOND)".into(),
            ));
        }
        let value = self.plan(&interval.value)?;
        let Expr::Literal(v) = &value else {
            return Err(Error::plan("INTERVAL takes a constant"));
        };
        let text = arrow::util::display::array_value_to_string(v.as_ref(), 0)?;
        let text = match &interval.leading_field {
            Some(unit) => format!("{text} {unit}"),
            None => text,
        };
        let literal = Expr::Literal(Arc::new(StringArray::from(vec![text.clone()])));
        fold(literal.cast(DataType::Interval(IntervalUnit::MonthDayNano)))
            .map_err(|_| Error::plan(format!("'{text}' is not a valid INTERVAL")))
    }
}

fn regex(name: &str, pattern: &str) -> Result<Regex> {
    Regex::new(pattern).map_err(|e| Error::plan(format!("{name}: bad pattern '{pattern}': {e}")))
}

fn constant_text(name: &str, what: &str, e: &Expr) -> Result<String> {
    if let Expr::Literal(v) = e {
        if let Some(s) = v.as_string_opt::<i32>() {
            if s.is_valid(0) {
                return Ok(s.value(0).to_string());
            }
        }
        if let Some(s) = v.as_string_view_opt() {
            if s.is_valid(0) {
                return Ok(s.value(0).to_string());
            }
        }
    }
    Err(Error::plan(format!(
        "{name}: the {what} must be a constant string, got {e}"
    )))
}

fn constant_integer(name: &str, what: &str, e: &Expr) -> Result<i64> {
    if let Expr::Literal(v) = e {
        if let Ok(i) = arrow::compute::cast(v, &DataType::Int64) {
            let i = i.as_primitive::<arrow::datatypes::Int64Type>();
            if i.is_valid(0) && v.data_type().is_integer() {
                return Ok(i.value(0));
            }
        }
    }
    Err(Error::plan(format!(
        "{name}: the {what} must be a constant integer, got {e}"
    )))
}

fn text_literal(text: &str) -> Expr {
    Expr::Literal(Arc::new(StringArray::from(vec![text])))
}

fn int_literal(v: i64) -> Expr {
    Expr::Literal(Arc::new(arrow::array::Int64Array::from(vec![v])))
}

fn field(name: &str, e: &Expr) -> Result<Field> {
    let text = constant_text(name, "part", e)?;
    Field::parse(&text).ok_or_else(|| {
        Error::plan(format!(
            "{name}: unknown part '{text}' (parts: {})",
            Field::NAMES
        ))
    })
}

/// A date part named by EXTRACT's keyword.
pub fn extract_field(field: &sqlparser::ast::DateTimeField) -> Result<Field> {
    let text = field.to_string();
    Field::parse(&text).ok_or_else(|| {
        Error::plan(format!(
            "extract: unknown part '{text}' (parts: {})",
            Field::NAMES
        ))
    })
}

fn format_text(name: &str, e: &Expr) -> Result<String> {
    let format = constant_text(name, "format", e)?;
    if !valid_format(&format) {
        return Err(Error::plan(format!("{name}: bad format '{format}'")));
    }
    Ok(format)
}

pub fn unknown_function(name: &str) -> Error {
    let all = SCALAR_FUNCTIONS
        .iter()
        .chain(crate::plan::aggregate::AGGREGATE_FUNCTIONS);
    let best = all
        .map(|f| (edit_distance(name, f), *f))
        .min_by_key(|(d, _)| *d);
    let hint = match best {
        Some((d, f)) if d <= (name.len() / 3).max(1) => format!("; did you mean '{f}'?"),
        _ => String::new(),
    };
    Error::plan(format!("unknown function '{name}'{hint}"))
}
