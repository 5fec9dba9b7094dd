//! The SQL front-end: text → statements → logical plans.
//!
//! Parsing is sqlparser's, with the DuckDB dialect, because DuckDB's
//! conventions (`read_parquet(...)`, `'file.csv'` as a table, `{'a': 'INT'}`
//! column maps, `name=value` arguments) are what ETL users already write.
//! Where DuckDB and PostgreSQL differ, we follow DuckDB; ARCHITECTURE.md lists
//! the choices.

pub mod aggregate;
pub mod expr;
pub mod function;
pub mod planner;
pub mod types;
pub mod window;

use sqlparser::ast::Statement as SqlStatement;
use sqlparser::dialect::DuckDbDialect;
use sqlparser::parser::Parser;

use crate::config::RunConfig;
use crate::error::{Error, Result, SqlLocation};
use crate::plan::LogicalPlan;

/// What a statement asks for, planned (not yet optimised).
pub enum Statement {
    /// A query whose rows are the result.
    Query(LogicalPlan),
    /// EXPLAIN: show the optimised plan instead of running it.
    Explain(LogicalPlan),
    /// EXPLAIN ANALYZE: run the query, discard its rows, and show the plan
    /// with what each operator did.
    ExplainAnalyze(LogicalPlan),
}

/// Parse a script of one or more statements.
pub fn parse(sql: &str) -> Result<Vec<SqlStatement>> {
    Parser::parse_sql(&DuckDbDialect {}, sql).map_err(|e| {
        let text = e.to_string();
        let text = text
            .strip_prefix("sql parser error: ")
            .unwrap_or(&text)
            .to_string();
        let location = location_in(&text);
        let message = match text.find(" at Line: ") {
            Some(at) => text[..at].to_string(),
            None => text,
        };
        Error::Sql { message, location }
    })
}

/// sqlparser ends its messages with "at Line: 3, Column: 14".
fn location_in(text: &str) -> Option<SqlLocation> {
    let at = text.find("Line: ")?;
    let rest = &text[at + "Line: ".len()..];
    let line: u64 = rest.split(',').next()?.trim().parse().ok()?;
    let col_at = rest.find("Column: ")?;
    let column: u64 = rest[col_at + "Column: ".len()..]
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect::<String>()
        .parse()
        .ok()?;
    Some(SqlLocation { line, column })
}

/// Plan one parsed statement.
pub fn plan(statement: &SqlStatement, config: &RunConfig) -> Result<Statement> {
    match statement {
        SqlStatement::Query(query) => Ok(Statement::Query(
            planner::QueryPlanner::new(config).plan(query)?,
        )),
        SqlStatement::Explain {
            statement, analyze, ..
        } => match plan(statement, config)? {
            Statement::Query(p) | Statement::Explain(p) | Statement::ExplainAnalyze(p) => {
                Ok(if *analyze {
                    Statement::ExplainAnalyze(p)
                } else {
                    Statement::Explain(p)
                })
            }
        },
        other => {
            let text = other.to_string();
            let first: String = text
                .split_whitespace()
                .take(2)
                .collect::<Vec<_>>()
                .join(" ");
            Err(Error::NotImplemented(format!(
                "{first} statements: highwater runs queries (SELECT, WITH, EXPLAIN)"
            )))
        }
    }
}

/// Show where an error points in the SQL text: the line, and a caret under
/// the column.
pub fn caret(sql: &str, location: SqlLocation) -> Option<String> {
    let line = sql.lines().nth(location.line.checked_sub(1)? as usize)?;
    let column = (location.column.max(1) - 1) as usize;
    let pad: String = line
        .chars()
        .take(column)
        .map(|c| if c == '\t' { '\t' } else { ' ' })
        .collect();
    Some(format!("  {line}\n  {pad}^"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_errors_carry_their_position() {
        let sql = "SELECT a\nFROM t WHERE )";
        let err = parse(sql).unwrap_err();
        let location = err.sql_location().expect("a location");
        assert_eq!(location.line, 2);
        assert!(caret(sql, location).is_some());
    }

    #[test]
    fn caret_points_at_the_column() {
        let shown = caret("SELECT x\nFROM t", SqlLocation { line: 2, column: 6 }).unwrap();
        assert_eq!(shown, "  FROM t\n       ^");
    }
}
