//! Plans: what a query computes, between the front-ends and the operators.
//!
//! The SQL front-end builds a [`LogicalPlan`]; [`optimizer::optimize`]
//! rewrites it (filters into scans, unread columns out of scans, limits down
//! to where they stop work early); [`physical::build`] turns it into a tree of
//! operators. Neither the optimizer nor the physical builder does I/O.

pub mod aggregate;
pub mod cardinality;
pub mod decimal_arith;
pub mod expr;
pub mod function;
pub mod logical;
pub mod optimizer;
pub mod physical;
pub mod window;

pub use expr::{BinaryOp, Expr};
pub use logical::{JoinKind, LogicalPlan, SortKey};
