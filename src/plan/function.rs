//! Scalar functions: what `lower(x)`, `date_trunc('month', d)` or
//! `coalesce(a, b)` compute, one batch at a time.
//!
//! The SQL binder (`sql/function.rs`) picks the function, checks the
//! arguments and casts them to the types the evaluation here expects:
//! strings are `Utf8`, counts and positions `Int64`, float math `Float64`.
//! Arguments that must be constant (a regex, a date part, a format) are
//! checked and compiled once at plan time and live in the variant, not in
//! the argument list.
//!
//! Semantics follow DuckDB: a NULL argument gives NULL, except for
//! `concat` (which skips NULLs), `coalesce`, `greatest`/`least` (which
//! ignore NULLs) and `hash`. Positions are 1-based and count characters,
//! not bytes.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, BooleanBuilder, Date32Array, Float64Array, Int64Array,
    StringArray, StringBuilder, TimestampMicrosecondArray, UInt64Array,
};
use arrow::compute::kernels::cmp;
use arrow::compute::kernels::temporal::{date_part, DatePart};
use arrow::compute::kernels::zip::zip;
use arrow::compute::{cast, is_not_null, nullif};
use arrow::datatypes::{DataType, Float64Type, Int64Type, TimeUnit};
use arrow::row::{RowConverter, SortField};
use chrono::{DateTime, Datelike, NaiveDate, NaiveDateTime, Timelike};
use regex::Regex;

use crate::error::{Error, Result};

#[derive(Debug, Clone)]
pub enum ScalarFunction {
    Lower,
    Upper,
    /// Trim the characters of the second argument (or spaces) from the
    /// start, the end, or both.
    Trim {
        start: bool,
        end: bool,
    },
    /// substring(s, start [, length]), 1-based, in characters.
    Substring,
    Length,
    /// concat(a, b, ...): NULL arguments are skipped.
    Concat,
    /// a || b: NULL if either side is.
    ConcatOperator,
    Replace,
    SplitPart,
    StartsWith,
    EndsWith,
    /// strpos(s, sub): where sub first starts in s, in characters from 1;
    /// 0 if it does not occur.
    Strpos,
    Contains,
    Lpad,
    Rpad,
    RegexpMatches(Regex),
    RegexpReplace {
        regex: Regex,
        global: bool,
    },
    RegexpExtract {
        regex: Regex,
        group: usize,
    },
    DatePart(Field),
    DateTrunc(Field),
    Strftime(String),
    Strptime(String),
    Abs,
    /// round(x, digits); for decimals the digits are fixed at plan time.
    Round,
    Floor,
    Ceil,
    Sqrt,
    Ln,
    Log10,
    Exp,
    Power,
    Hash,
    Coalesce,
    NullIf,
    Greatest,
    Least,
}

/// A part of a date or time, as `extract`, `date_part` and `date_trunc`
/// name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    Year,
    Quarter,
    Month,
    Week,
    Day,
    DayOfWeek,
    IsoDayOfWeek,
    DayOfYear,
    Hour,
    Minute,
    Second,
    Millisecond,
    Microsecond,
    Epoch,
}

impl Field {
    pub fn parse(name: &str) -> Option<Field> {
        Some(match name.to_ascii_lowercase().as_str() {
            "year" | "years" | "y" | "yr" => Field::Year,
            "quarter" | "quarters" => Field::Quarter,
            "month" | "months" | "mon" => Field::Month,
            "week" | "weeks" | "w" => Field::Week,
            "day" | "days" | "d" | "dayofmonth" => Field::Day,
            "dow" | "dayofweek" => Field::DayOfWeek,
            "isodow" => Field::IsoDayOfWeek,
            "doy" | "dayofyear" => Field::DayOfYear,
            "hour" | "hours" | "h" => Field::Hour,
            "minute" | "minutes" | "m" | "min" => Field::Minute,
            "second" | "seconds" | "s" | "sec" => Field::Second,
            "millisecond" | "milliseconds" | "ms" => Field::Millisecond,
            "microsecond" | "microseconds" | "us" => Field::Microsecond,
            "epoch" => Field::Epoch,
            _ => return None,
        })
    }

    pub const NAMES: &'static str = "year, quarter, month, week, day, dayofweek, isodow, \
         dayofyear, hour, minute, second, millisecond, microsecond, epoch";
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = format!("{self:?}").to_ascii_lowercase();
        write!(f, "{name}")
    }
}

impl fmt::Display for ScalarFunction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            ScalarFunction::Trim {
                start: true,
                end: true,
            } => "trim".to_string(),
            ScalarFunction::Trim { start: true, .. } => "ltrim".to_string(),
            ScalarFunction::Trim { .. } => "rtrim".to_string(),
            ScalarFunction::ConcatOperator => "||".to_string(),
            ScalarFunction::RegexpMatches(r) => format!("regexp_matches['{r}']"),
            ScalarFunction::RegexpReplace { regex, global } => {
                format!(
                    "regexp_replace['{regex}'{}]",
                    if *global { ", g" } else { "" }
                )
            }
            ScalarFunction::RegexpExtract { regex, group } => {
                format!("regexp_extract['{regex}', {group}]")
            }
            ScalarFunction::DatePart(field) => format!("date_part['{field}']"),
            ScalarFunction::DateTrunc(field) => format!("date_trunc['{field}']"),
            ScalarFunction::Strftime(format) => format!("strftime['{format}']"),
            ScalarFunction::Strptime(format) => format!("strptime['{format}']"),
            ScalarFunction::SplitPart => "split_part".to_string(),
            ScalarFunction::StartsWith => "starts_with".to_string(),
            ScalarFunction::EndsWith => "ends_with".to_string(),
            ScalarFunction::NullIf => "nullif".to_string(),
            other => format!("{other:?}").to_ascii_lowercase(),
        };
        write!(f, "{name}")
    }
}

impl ScalarFunction {
    /// Evaluate over `args`, each a column of `rows` values.
    pub fn evaluate(&self, args: &[ArrayRef], rows: usize) -> Result<ArrayRef> {
        use ScalarFunction as F;
        Ok(match self {
            F::Lower => map_str(&args[0], |s| Some(s.to_lowercase()))?,
            F::Upper => map_str(&args[0], |s| Some(s.to_uppercase()))?,
            F::Trim { start, end } => trim(args, *start, *end)?,
            F::Substring => substring(args)?,
            F::Length => {
                let s = utf8(&args[0])?;
                Arc::new(
                    s.iter()
                        .map(|v| v.map(|v| v.chars().count() as i64))
                        .collect::<Int64Array>(),
                )
            }
            F::Concat => concat(args, rows, false)?,
            F::ConcatOperator => concat(args, rows, true)?,
            F::Replace => {
                let (s, from, to) = (utf8(&args[0])?, utf8(&args[1])?, utf8(&args[2])?);
                let mut out = StringBuilder::new();
                for i in 0..rows {
                    match (value(s, i), value(from, i), value(to, i)) {
                        (Some(s), Some(from), Some(to)) => out.append_value(s.replace(from, to)),
                        _ => out.append_null(),
                    }
                }
                Arc::new(out.finish())
            }
            F::SplitPart => {
                let (s, delim) = (utf8(&args[0])?, utf8(&args[1])?);
                let n = args[2].as_primitive::<Int64Type>();
                let mut out = StringBuilder::new();
                for i in 0..rows {
                    match (value(s, i), value(delim, i), n.is_valid(i)) {
                        (Some(s), Some(delim), true) => {
                            out.append_value(split_part(s, delim, n.value(i)))
                        }
                        _ => out.append_null(),
                    }
                }
                Arc::new(out.finish())
            }
            F::StartsWith => str_predicate(args, rows, |s, p| s.starts_with(p))?,
            F::EndsWith => str_predicate(args, rows, |s, p| s.ends_with(p))?,
            F::Contains => str_predicate(args, rows, |s, p| s.contains(p))?,
            F::Strpos => {
                let (s, p) = (utf8(&args[0])?, utf8(&args[1])?);
                Arc::new(
                    (0..rows)
                        .map(|i| match (value(s, i), value(p, i)) {
                            (Some(s), Some(p)) => {
                                Some(s.find(p).map_or(0, |at| s[..at].chars().count() as i64 + 1))
                            }
                            _ => None,
                        })
                        .collect::<Int64Array>(),
                )
            }
            F::Lpad => pad(args, rows, true)?,
            F::Rpad => pad(args, rows, false)?,
            F::RegexpMatches(regex) => {
                let s = utf8(&args[0])?;
                Arc::new(
                    s.iter()
                        .map(|v| v.map(|v| regex.is_match(v)))
                        .collect::<BooleanArray>(),
                )
            }
            F::RegexpReplace { regex, global } => regexp_replace(args, rows, regex, *global)?,
            F::RegexpExtract { regex, group } => map_str(&args[0], |s| {
                Some(
                    regex
                        .captures(s)
                        .and_then(|c| c.get(*group))
                        .map_or(String::new(), |m| m.as_str().to_string()),
                )
            })?,
            F::DatePart(field) => extract(&args[0], *field)?,
            F::DateTrunc(field) => date_trunc(&args[0], *field)?,
            F::Strftime(format) => strftime(&args[0], format)?,
            F::Strptime(format) => strptime(&args[0], format)?,
            F::Abs => abs(&args[0])?,
            F::Round => round(args)?,
            F::Floor => floor_or_ceil(&args[0], false)?,
            F::Ceil => floor_or_ceil(&args[0], true)?,
            F::Sqrt => float_map(&args[0], f64::sqrt)?,
            F::Ln => float_map(&args[0], f64::ln)?,
            F::Log10 => float_map(&args[0], f64::log10)?,
            F::Exp => float_map(&args[0], f64::exp)?,
            F::Power => {
                let (b, e) = (
                    args[0].as_primitive::<Float64Type>(),
                    args[1].as_primitive::<Float64Type>(),
                );
                Arc::new(arrow::compute::binary::<_, _, _, Float64Type>(
                    b,
                    e,
                    f64::powf,
                )?)
            }
            F::Hash => hash(args, rows)?,
            F::Coalesce => {
                let mut result = args[args.len() - 1].clone();
                for a in args[..args.len() - 1].iter().rev() {
                    result = zip(&is_not_null(a)?, a, &result)?;
                }
                result
            }
            F::NullIf => {
                let equal = cmp::eq(&args[0], &args[1])?;
                nullif(&args[0], &equal)?
            }
            F::Greatest | F::Least => {
                let mut result = args[0].clone();
                for a in &args[1..] {
                    // Take `a` where it beats the result so far, or where the
                    // result is NULL: NULLs are ignored, as in DuckDB.
                    let beats = if matches!(self, F::Greatest) {
                        cmp::gt(a, &result)?
                    } else {
                        cmp::lt(a, &result)?
                    };
                    // A NULL comparison (either side NULL) does not beat.
                    let beats = match beats.nulls() {
                        Some(nulls) => BooleanArray::new(beats.values() & nulls.inner(), None),
                        None => beats,
                    };
                    let take = arrow::compute::or(&beats, &arrow::compute::is_null(&result)?)?;
                    result = zip(&take, a, &result)?;
                }
                result
            }
        })
    }
}

fn utf8(a: &ArrayRef) -> Result<&StringArray> {
    a.as_any()
        .downcast_ref::<StringArray>()
        .ok_or_else(|| Error::Internal(format!("expected VARCHAR, got {}", a.data_type())))
}

fn value(a: &StringArray, i: usize) -> Option<&str> {
    a.is_valid(i).then(|| a.value(i))
}

fn map_str(a: &ArrayRef, f: impl Fn(&str) -> Option<String>) -> Result<ArrayRef> {
    let s = utf8(a)?;
    let mut out = StringBuilder::with_capacity(s.len(), s.value_data().len());
    for v in s.iter() {
        out.append_option(v.and_then(&f));
    }
    Ok(Arc::new(out.finish()))
}

fn str_predicate(args: &[ArrayRef], rows: usize, f: fn(&str, &str) -> bool) -> Result<ArrayRef> {
    let (s, p) = (utf8(&args[0])?, utf8(&args[1])?);
    let mut out = BooleanBuilder::with_capacity(rows);
    for i in 0..rows {
        out.append_option(match (value(s, i), value(p, i)) {
            (Some(s), Some(p)) => Some(f(s, p)),
            _ => None,
        });
    }
    Ok(Arc::new(out.finish()))
}

fn trim(args: &[ArrayRef], start: bool, end: bool) -> Result<ArrayRef> {
    let s = utf8(&args[0])?;
    let chars = args.get(1).map(utf8).transpose()?;
    let mut out = StringBuilder::new();
    for i in 0..s.len() {
        let Some(v) = value(s, i) else {
            out.append_null();
            continue;
        };
        let set: Vec<char> = match chars {
            Some(c) => match value(c, i) {
                Some(c) => c.chars().collect(),
                None => {
                    out.append_null();
                    continue;
                }
            },
            None => vec![' '],
        };
        let mut t = v;
        if start {
            t = t.trim_start_matches(set.as_slice());
        }
        if end {
            t = t.trim_end_matches(set.as_slice());
        }
        out.append_value(t);
    }
    Ok(Arc::new(out.finish()))
}

fn substring(args: &[ArrayRef]) -> Result<ArrayRef> {
    let s = utf8(&args[0])?;
    let start = args[1].as_primitive::<Int64Type>();
    let length = args.get(2).map(|a| a.as_primitive::<Int64Type>());
    let mut out = StringBuilder::new();
    for i in 0..s.len() {
        let len = match length {
            Some(l) if l.is_null(i) => {
                out.append_null();
                continue;
            }
            Some(l) => Some(l.value(i)),
            None => None,
        };
        let (Some(v), true) = (value(s, i), start.is_valid(i)) else {
            out.append_null();
            continue;
        };
        // SQL positions are 1-based; a start before 1 eats into the length,
        // as in PostgreSQL and DuckDB.
        let first = start.value(i);
        let end = len.map(|l| first.saturating_add(l.max(0)));
        let from = (first.max(1) - 1) as usize;
        let taken: String = match end {
            Some(end) => {
                let count = (end - 1).max(0) as usize;
                v.chars()
                    .take(count)
                    .skip(from.min(count))
                    .collect::<String>()
            }
            None => v.chars().skip(from).collect(),
        };
        out.append_value(taken);
    }
    Ok(Arc::new(out.finish()))
}

fn concat(args: &[ArrayRef], rows: usize, null_if_any_null: bool) -> Result<ArrayRef> {
    let strings = args.iter().map(utf8).collect::<Result<Vec<_>>>()?;
    let mut out = StringBuilder::new();
    let mut text = String::new();
    for i in 0..rows {
        text.clear();
        let mut null = false;
        for s in &strings {
            match value(s, i) {
                Some(v) => text.push_str(v),
                None => null = true,
            }
        }
        if null && null_if_any_null {
            out.append_null();
        } else {
            out.append_value(&text);
        }
    }
    Ok(Arc::new(out.finish()))
}

fn split_part(s: &str, delim: &str, n: i64) -> String {
    let parts: Vec<&str> = if delim.is_empty() {
        vec![s]
    } else {
        s.split(delim).collect()
    };
    // Negative positions count from the end, as in DuckDB.
    let index = if n > 0 {
        Some(n as usize - 1)
    } else if n < 0 {
        parts.len().checked_sub(n.unsigned_abs() as usize)
    } else {
        None
    };
    index
        .and_then(|i| parts.get(i))
        .map_or(String::new(), |p| p.to_string())
}

fn pad(args: &[ArrayRef], rows: usize, left: bool) -> Result<ArrayRef> {
    let s = utf8(&args[0])?;
    let width = args[1].as_primitive::<Int64Type>();
    let fill = utf8(&args[2])?;
    let mut out = StringBuilder::new();
    for i in 0..rows {
        let (Some(v), true, Some(fill)) = (value(s, i), width.is_valid(i), value(fill, i)) else {
            out.append_null();
            continue;
        };
        let width = width.value(i).max(0) as usize;
        let len = v.chars().count();
        if len >= width {
            out.append_value(v.chars().take(width).collect::<String>());
            continue;
        }
        if fill.is_empty() {
            out.append_value(v);
            continue;
        }
        let padding: String = fill.chars().cycle().take(width - len).collect();
        if left {
            out.append_value(format!("{padding}{v}"));
        } else {
            out.append_value(format!("{v}{padding}"));
        }
    }
    Ok(Arc::new(out.finish()))
}

fn regexp_replace(args: &[ArrayRef], rows: usize, regex: &Regex, global: bool) -> Result<ArrayRef> {
    let (s, repl) = (utf8(&args[0])?, utf8(&args[1])?);
    let mut out = StringBuilder::new();
    for i in 0..rows {
        match (value(s, i), value(repl, i)) {
            (Some(s), Some(r)) => {
                // DuckDB writes groups as \1; the regex crate as ${1}.
                let r = backslash_groups(r);
                if global {
                    out.append_value(regex.replace_all(s, r.as_str()));
                } else {
                    out.append_value(regex.replace(s, r.as_str()));
                }
            }
            _ => out.append_null(),
        }
    }
    Ok(Arc::new(out.finish()))
}

/// `\1` → `${1}`, and a literal `$` kept literal.
fn backslash_groups(r: &str) -> String {
    let mut out = String::with_capacity(r.len());
    let mut chars = r.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek().is_some_and(|d| d.is_ascii_digit()) => {
                let d = chars.next().unwrap_or('0');
                out.push_str(&format!("${{{d}}}"));
            }
            '\\' if chars.peek() == Some(&'\\') => {
                chars.next();
                out.push('\\');
            }
            '$' => out.push_str("$$"),
            c => out.push(c),
        }
    }
    out
}

/// A date or timestamp column as microseconds since the epoch (UTC).
fn micros(a: &ArrayRef) -> Result<TimestampMicrosecondArray> {
    let t = cast(a, &DataType::Timestamp(TimeUnit::Microsecond, None))?;
    Ok(t.as_primitive().clone())
}

fn to_datetime(micros: i64) -> Option<NaiveDateTime> {
    DateTime::from_timestamp_micros(micros).map(|d| d.naive_utc())
}

fn extract(a: &ArrayRef, field: Field) -> Result<ArrayRef> {
    let part = |p: DatePart| -> Result<ArrayRef> { Ok(cast(&date_part(a, p)?, &DataType::Int64)?) };
    Ok(match field {
        Field::Year => part(DatePart::Year)?,
        Field::Quarter => part(DatePart::Quarter)?,
        Field::Month => part(DatePart::Month)?,
        Field::Week => part(DatePart::WeekISO)?,
        Field::Day => part(DatePart::Day)?,
        Field::DayOfWeek => part(DatePart::DayOfWeekSunday0)?,
        Field::IsoDayOfWeek => part(DatePart::DayOfWeekMonday1)?,
        Field::DayOfYear => part(DatePart::DayOfYear)?,
        Field::Hour => part(DatePart::Hour)?,
        Field::Minute => part(DatePart::Minute)?,
        Field::Second => part(DatePart::Second)?,
        // DuckDB counts the seconds in these too: 1.5 s is 1500 ms.
        Field::Millisecond | Field::Microsecond => {
            let per_second = if field == Field::Millisecond {
                1_000
            } else {
                1_000_000
            };
            let m = micros(a)?;
            Arc::new(
                m.iter()
                    .map(|v| v.map(|v| v.rem_euclid(60_000_000) / (1_000_000 / per_second)))
                    .collect::<Int64Array>(),
            )
        }
        Field::Epoch => {
            let m = micros(a)?;
            Arc::new(
                m.iter()
                    .map(|v| v.map(|v| v as f64 / 1e6))
                    .collect::<Float64Array>(),
            )
        }
    })
}

fn truncate(d: NaiveDateTime, field: Field) -> Option<NaiveDateTime> {
    let date = d.date();
    let midnight = |date: NaiveDate| date.and_hms_opt(0, 0, 0);
    match field {
        Field::Year => midnight(NaiveDate::from_ymd_opt(date.year(), 1, 1)?),
        Field::Quarter => {
            let month = (date.month0() / 3) * 3 + 1;
            midnight(NaiveDate::from_ymd_opt(date.year(), month, 1)?)
        }
        Field::Month => midnight(NaiveDate::from_ymd_opt(date.year(), date.month(), 1)?),
        Field::Week => {
            let back = date.weekday().num_days_from_monday();
            midnight(date - chrono::Days::new(back as u64))
        }
        Field::Day | Field::DayOfWeek | Field::IsoDayOfWeek | Field::DayOfYear => midnight(date),
        Field::Hour => date.and_hms_opt(d.hour(), 0, 0),
        Field::Minute => date.and_hms_opt(d.hour(), d.minute(), 0),
        Field::Second => date.and_hms_opt(d.hour(), d.minute(), d.second()),
        Field::Millisecond => {
            date.and_hms_milli_opt(d.hour(), d.minute(), d.second(), d.nanosecond() / 1_000_000)
        }
        Field::Microsecond | Field::Epoch => Some(d),
    }
}

fn date_trunc(a: &ArrayRef, field: Field) -> Result<ArrayRef> {
    let m = micros(a)?;
    let truncated: TimestampMicrosecondArray = m
        .iter()
        .map(|v| {
            v.and_then(to_datetime)
                .and_then(|d| truncate(d, field))
                .map(|d| d.and_utc().timestamp_micros())
        })
        .collect();
    // The input's own type: a date stays a date.
    Ok(cast(&truncated, a.data_type())?)
}

fn strftime(a: &ArrayRef, format: &str) -> Result<ArrayRef> {
    let m = micros(a)?;
    let mut out = StringBuilder::new();
    for v in m.iter() {
        match v.and_then(to_datetime) {
            Some(d) => out.append_value(d.format(format).to_string()),
            None => out.append_null(),
        }
    }
    Ok(Arc::new(out.finish()))
}

fn strptime(a: &ArrayRef, format: &str) -> Result<ArrayRef> {
    let s = utf8(a)?;
    let mut out = Vec::with_capacity(s.len());
    for v in s.iter() {
        out.push(match v {
            None => None,
            Some(text) => {
                let parsed = NaiveDateTime::parse_from_str(text, format)
                    .or_else(|_| {
                        NaiveDate::parse_from_str(text, format)
                            .map(|d| d.and_hms_opt(0, 0, 0).unwrap_or_default())
                    })
                    .map_err(|e| {
                        Error::Execution(format!(
                            "strptime: '{text}' does not match the format '{format}': {e}"
                        ))
                    })?;
                Some(parsed.and_utc().timestamp_micros())
            }
        });
    }
    Ok(Arc::new(TimestampMicrosecondArray::from(out)))
}

fn abs(a: &ArrayRef) -> Result<ArrayRef> {
    Ok(match a.data_type() {
        DataType::Int64 => {
            let ints = a.as_primitive::<Int64Type>();
            Arc::new(ints.try_unary::<_, Int64Type, _>(|v| {
                v.checked_abs().ok_or_else(|| {
                    arrow::error::ArrowError::ComputeError(format!("Overflow in abs({v})"))
                })
            })?)
        }
        DataType::Float64 => Arc::new(
            a.as_primitive::<Float64Type>()
                .unary::<_, Float64Type>(f64::abs),
        ),
        DataType::Decimal128(p, s) => {
            let d = a.as_primitive::<arrow::datatypes::Decimal128Type>();
            Arc::new(
                d.unary::<_, arrow::datatypes::Decimal128Type>(|v| v.abs())
                    .with_precision_and_scale(*p, *s)?,
            )
        }
        other => return Err(Error::Internal(format!("abs of {other}"))),
    })
}

/// floor and ceil: integers are already whole; decimals go through their
/// exact value.
fn floor_or_ceil(a: &ArrayRef, ceil: bool) -> Result<ArrayRef> {
    match a.data_type() {
        DataType::Int64 => Ok(a.clone()),
        DataType::Decimal128(p, s) => {
            let (p, s) = (*p, *s);
            let d = a.as_primitive::<arrow::datatypes::Decimal128Type>();
            let unit = 10i128.pow(s.max(0) as u32);
            // div_euclid rounds towards negative infinity: a floor.
            let out = d.unary::<_, arrow::datatypes::Decimal128Type>(|v| {
                let q = v.div_euclid(unit);
                if ceil && v.rem_euclid(unit) != 0 {
                    q + 1
                } else {
                    q
                }
            });
            Ok(Arc::new(out.with_precision_and_scale(p, 0)?))
        }
        _ => float_map(a, if ceil { f64::ceil } else { f64::floor }),
    }
}

fn float_map(a: &ArrayRef, f: fn(f64) -> f64) -> Result<ArrayRef> {
    let floats = cast(a, &DataType::Float64)?;
    Ok(Arc::new(
        floats
            .as_primitive::<Float64Type>()
            .unary::<_, Float64Type>(f),
    ))
}

/// round(x, digits): half away from zero, as DuckDB rounds. A decimal
/// keeps its type, with the dropped digits zero.
fn round(args: &[ArrayRef]) -> Result<ArrayRef> {
    let a = &args[0];
    let digits = args.get(1).map(|d| d.as_primitive::<Int64Type>());
    let digits_at = |i: usize| digits.map_or(Some(0), |d| d.is_valid(i).then(|| d.value(i)));
    Ok(match a.data_type() {
        DataType::Int64 => a.clone(),
        DataType::Decimal128(p, s) => {
            let d = a.as_primitive::<arrow::datatypes::Decimal128Type>();
            let out: arrow::array::Decimal128Array = (0..d.len())
                .map(|i| {
                    let (true, Some(n)) = (d.is_valid(i), digits_at(i)) else {
                        return None;
                    };
                    let drop = (*s as i64 - n).clamp(0, 38) as u32;
                    let unit = 10i128.pow(drop);
                    let v = d.value(i);
                    let half = unit / 2;
                    let q = (v.abs() + if drop > 0 { half } else { 0 }) / unit * unit;
                    Some(if v < 0 { -q } else { q })
                })
                .collect();
            Arc::new(out.with_precision_and_scale(*p, *s)?)
        }
        _ => {
            let f = a.as_primitive::<Float64Type>();
            Arc::new(
                (0..f.len())
                    .map(|i| {
                        let (true, Some(n)) = (f.is_valid(i), digits_at(i)) else {
                            return None;
                        };
                        let scale = 10f64.powi(n.clamp(-308, 308) as i32);
                        Some((f.value(i) * scale).round() / scale)
                    })
                    .collect::<Float64Array>(),
            )
        }
    })
}

/// A 64-bit hash of the arguments' values. Equal values hash equally
/// whatever the batch; NULL hashes too. Stable within one highwater version.
fn hash(args: &[ArrayRef], rows: usize) -> Result<ArrayRef> {
    let fields = args
        .iter()
        .map(|a| SortField::new(a.data_type().clone()))
        .collect();
    let converter = RowConverter::new(fields)?;
    let encoded = converter.convert_columns(args)?;
    let mut out = Vec::with_capacity(rows);
    for row in encoded.iter() {
        // SipHash with fixed keys: the same bytes give the same hash in
        // every run.
        let mut h = std::hash::DefaultHasher::new();
        row.as_ref().hash(&mut h);
        out.push(h.finish());
    }
    Ok(Arc::new(UInt64Array::from(out)))
}

/// Today's date, in UTC.
pub fn current_date() -> ArrayRef {
    let days = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| (d.as_secs() / 86_400) as i32);
    Arc::new(Date32Array::from(vec![days]))
}

/// now() and current_timestamp: the time the query is planned, in UTC, as
/// a TIMESTAMP (microseconds, no time zone, as highwater's timestamps are).
pub fn current_timestamp() -> ArrayRef {
    let micros = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64);
    Arc::new(arrow::array::TimestampMicrosecondArray::from(vec![micros]))
}

/// Whether a strftime/strptime format is valid.
pub fn valid_format(format: &str) -> bool {
    chrono::format::StrftimeItems::new(format)
        .all(|item| !matches!(item, chrono::format::Item::Error))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[Option<&str>]) -> ArrayRef {
        Arc::new(StringArray::from(v.to_vec()))
    }

    fn ints(v: &[Option<i64>]) -> ArrayRef {
        Arc::new(Int64Array::from(v.to_vec()))
    }

    fn text(a: &ArrayRef) -> Vec<Option<String>> {
        utf8(a)
            .unwrap()
            .iter()
            .map(|v| v.map(String::from))
            .collect()
    }

    #[test]
    fn substring_counts_characters_from_one() {
        let s = strings(&[Some("héllo"), Some("abc"), None]);
        let out = ScalarFunction::Substring
            .evaluate(
                &[
                    s.clone(),
                    ints(&[Some(2), Some(0), Some(1)]),
                    ints(&[Some(3), Some(2), Some(1)]),
                ],
                3,
            )
            .unwrap();
        assert_eq!(
            text(&out),
            vec![Some("éll".into()), Some("a".into()), None],
            "a start of 0 eats one character of the length"
        );
    }

    #[test]
    fn split_part_counts_from_either_end() {
        assert_eq!(split_part("a,b,c", ",", 2), "b");
        assert_eq!(split_part("a,b,c", ",", -1), "c");
        assert_eq!(split_part("a,b,c", ",", 4), "");
    }

    #[test]
    fn pad_cuts_or_fills() {
        let out = ScalarFunction::Lpad
            .evaluate(
                &[
                    strings(&[Some("7"), Some("12345")]),
                    ints(&[Some(3), Some(3)]),
                    strings(&[Some("0"), Some("0")]),
                ],
                2,
            )
            .unwrap();
        assert_eq!(text(&out), vec![Some("007".into()), Some("123".into())]);
    }

    #[test]
    fn regexp_replace_takes_backslash_groups() {
        assert_eq!(backslash_groups(r"\1-\2 $"), "${1}-${2} $$");
    }

    #[test]
    fn truncation_goes_to_the_start_of_the_unit() {
        let d = NaiveDate::from_ymd_opt(2024, 5, 17)
            .unwrap()
            .and_hms_opt(13, 45, 10)
            .unwrap();
        let day = |f| truncate(d, f).unwrap().to_string();
        assert_eq!(day(Field::Quarter), "2024-04-01 00:00:00");
        assert_eq!(
            day(Field::Week),
            "2024-05-13 00:00:00",
            "ISO weeks start on Monday"
        );
        assert_eq!(day(Field::Hour), "2024-05-17 13:00:00");
    }
}
