//! Window function calls as the plan holds them: `f(args) OVER (PARTITION
//! BY ... ORDER BY ... frame)`, bound to the window's input.

use std::fmt;

use arrow::datatypes::DataType;

use crate::error::Result;
use crate::plan::aggregate::AggregateFunction;
use crate::plan::expr::Expr;
use crate::plan::logical::SortKey;

#[derive(Debug, Clone, PartialEq)]
pub enum WindowFunction {
    RowNumber,
    /// The row's place among the partition's rows by ORDER BY, peers
    /// sharing the first place of their group (rank: gaps after ties;
    /// dense_rank: none).
    Rank {
        dense: bool,
    },
    /// The argument `offset` rows before (lag) or after (lead) in the
    /// partition, or the default (NULL unless given).
    Shift {
        offset: i64,
    },
    FirstValue,
    LastValue,
    /// The argument at the frame's `n`th row (from 1), or NULL.
    NthValue {
        n: i64,
    },
    /// The bucket, 1 to `buckets`, of the row's place in its partition:
    /// the first `rows % buckets` buckets hold one row more.
    Ntile {
        buckets: i64,
    },
    /// (rank - 1) / (partition rows - 1), or 0 for a partition of one row.
    PercentRank,
    /// Rows up to the row's last peer / partition rows.
    CumeDist,
    /// An aggregate over the frame: count, count(*), sum, avg, min, max.
    Aggregate(AggregateFunction),
}

/// Which rows around the current one an aggregate (or first/last_value)
/// sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frame {
    /// From the partition's start to the current row's last peer (SQL's
    /// default with ORDER BY: RANGE BETWEEN UNBOUNDED PRECEDING AND
    /// CURRENT ROW).
    ToPeers,
    /// From the partition's start to the current row (ROWS BETWEEN
    /// UNBOUNDED PRECEDING AND CURRENT ROW).
    ToRow,
    /// The whole partition (the default without ORDER BY, or BETWEEN
    /// UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING).
    Partition,
    /// ROWS BETWEEN with at least one bound an offset: each bound is rows
    /// from the current one (negative: PRECEDING), `None` for UNBOUNDED.
    /// The frame is empty where the start falls after the end.
    Rows {
        start: Option<i64>,
        end: Option<i64>,
    },
    /// RANGE BETWEEN with at least one bound an offset: the rows whose
    /// (single) ORDER BY value lies between the bounds, which are values
    /// too: see [`RangeEnd`].
    Range { start: RangeEnd, end: RangeEnd },
    /// GROUPS BETWEEN: each bound is peer groups from the current row's own
    /// (negative: PRECEDING), `None` for UNBOUNDED.
    Groups {
        start: Option<i64>,
        end: Option<i64>,
    },
}

/// One end of a RANGE frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeEnd {
    Unbounded,
    /// The current row's first peer (start) or last (end).
    CurrentRow,
    /// The ORDER BY value an offset away, computed per row by the next of
    /// the call's [`WindowExpr::range_bounds`]: rows from the first whose
    /// value is not before it (start), or to the last whose value is not
    /// after it (end), in the window's order.
    Value,
}

#[derive(Debug, Clone)]
pub struct WindowExpr {
    pub func: WindowFunction,
    /// The argument (absent for row_number, rank, count(*)), then for
    /// lag/lead the default value.
    pub args: Vec<Expr>,
    pub partition_by: Vec<Expr>,
    pub order_by: Vec<SortKey>,
    pub frame: Frame,
    /// For a RANGE frame, the bound values of its [`RangeEnd::Value`] ends
    /// (start first), as expressions of the input: the ORDER BY key plus or
    /// minus the offset, whichever is earlier in the window's order for
    /// PRECEDING.
    pub range_bounds: Vec<Expr>,
    pub data_type: DataType,
}

impl WindowExpr {
    /// The sort the window's input needs: partition keys, then order keys.
    pub fn sort_keys(&self) -> Vec<SortKey> {
        self.partition_by
            .iter()
            .map(|e| SortKey {
                expr: e.clone(),
                descending: false,
                nulls_first: false,
            })
            .chain(self.order_by.iter().cloned())
            .collect()
    }

    /// Whether `other` can be computed in the same pass (same partitions,
    /// same order).
    pub fn same_window(&self, other: &WindowExpr) -> bool {
        format!("{:?}{:?}", self.partition_by, self.order_by)
            == format!("{:?}{:?}", other.partition_by, other.order_by)
    }

    /// Every expression the call reads.
    pub fn exprs(&self) -> impl Iterator<Item = &Expr> {
        self.args
            .iter()
            .chain(&self.partition_by)
            .chain(self.order_by.iter().map(|k| &k.expr))
            .chain(&self.range_bounds)
    }

    pub fn try_map(&self, f: &mut dyn FnMut(&Expr) -> Result<Expr>) -> Result<WindowExpr> {
        Ok(WindowExpr {
            func: self.func.clone(),
            args: self.args.iter().map(&mut *f).collect::<Result<_>>()?,
            partition_by: self
                .partition_by
                .iter()
                .map(&mut *f)
                .collect::<Result<_>>()?,
            order_by: self
                .order_by
                .iter()
                .map(|k| {
                    Ok(SortKey {
                        expr: f(&k.expr)?,
                        descending: k.descending,
                        nulls_first: k.nulls_first,
                    })
                })
                .collect::<Result<_>>()?,
            frame: self.frame,
            range_bounds: self
                .range_bounds
                .iter()
                .map(&mut *f)
                .collect::<Result<_>>()?,
            data_type: self.data_type.clone(),
        })
    }
}

impl fmt::Display for WindowExpr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match &self.func {
            WindowFunction::RowNumber => "row_number",
            WindowFunction::Rank { dense: false } => "rank",
            WindowFunction::Rank { dense: true } => "dense_rank",
            WindowFunction::Shift { offset } if *offset < 0 => "lag",
            WindowFunction::Shift { .. } => "lead",
            WindowFunction::FirstValue => "first_value",
            WindowFunction::LastValue => "last_value",
            WindowFunction::NthValue { .. } => "nth_value",
            WindowFunction::Ntile { .. } => "ntile",
            WindowFunction::PercentRank => "percent_rank",
            WindowFunction::CumeDist => "cume_dist",
            WindowFunction::Aggregate(a) => a.name(),
        };
        let args: Vec<String> = self.args.iter().map(|a| a.to_string()).collect();
        let args = match (&self.func, args.is_empty()) {
            (WindowFunction::Aggregate(AggregateFunction::CountStar), _) => "*".to_string(),
            (WindowFunction::Shift { offset }, false) => {
                let mut parts = vec![args[0].clone(), offset.abs().to_string()];
                parts.extend(args[1..].iter().cloned());
                parts.join(", ")
            }
            (WindowFunction::NthValue { n }, false) => format!("{}, {n}", args[0]),
            (WindowFunction::Ntile { buckets }, _) => buckets.to_string(),
            _ => args.join(", "),
        };
        write!(f, "{name}({args}) OVER (")?;
        let mut space = "";
        if !self.partition_by.is_empty() {
            let keys: Vec<String> = self.partition_by.iter().map(|e| e.to_string()).collect();
            write!(f, "PARTITION BY {}", keys.join(", "))?;
            space = " ";
        }
        if !self.order_by.is_empty() {
            let keys: Vec<String> = self.order_by.iter().map(|k| k.to_string()).collect();
            write!(f, "{space}ORDER BY {}", keys.join(", "))?;
            space = " ";
        }
        match self.frame {
            Frame::ToRow => write!(f, "{space}ROWS UNBOUNDED PRECEDING")?,
            Frame::Partition if !self.order_by.is_empty() => write!(
                f,
                "{space}ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING"
            )?,
            Frame::Rows { start, end } | Frame::Groups { start, end } => {
                let units = if matches!(self.frame, Frame::Rows { .. }) {
                    "ROWS"
                } else {
                    "GROUPS"
                };
                let bound = |b: Option<i64>, unbounded: &str| match b {
                    None => format!("UNBOUNDED {unbounded}"),
                    Some(0) => "CURRENT ROW".to_string(),
                    Some(n) if n < 0 => format!("{} PRECEDING", -n),
                    Some(n) => format!("{n} FOLLOWING"),
                };
                write!(
                    f,
                    "{space}{units} BETWEEN {} AND {}",
                    bound(start, "PRECEDING"),
                    bound(end, "FOLLOWING")
                )?
            }
            Frame::Range { start, end } => {
                let mut values = self.range_bounds.iter();
                let mut bound = |b: RangeEnd, unbounded: &str| match b {
                    RangeEnd::Unbounded => format!("UNBOUNDED {unbounded}"),
                    RangeEnd::CurrentRow => "CURRENT ROW".to_string(),
                    RangeEnd::Value => match values.next() {
                        Some(v) => format!("VALUE {v}"),
                        None => "VALUE ?".to_string(),
                    },
                };
                let start = bound(start, "PRECEDING");
                let end = bound(end, "FOLLOWING");
                write!(f, "{space}RANGE BETWEEN {start} AND {end}")?
            }
            _ => {}
        }
        write!(f, ")")
    }
}
