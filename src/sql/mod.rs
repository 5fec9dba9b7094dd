//! The SQL front-end: text → statements → logical plans.
//!
//! Parsing is sqlparser's, with the DuckDB dialect, because DuckDB's
//! conventions (`read_parquet(...)`, `'file.csv'` as a table, `{'a': 'INT'}`
//! column maps, `name=value` arguments) are what ETL users already write.
//! Where DuckDB and PostgreSQL differ, we follow DuckDB; ARCHITECTURE.md lists
//! the choices.

pub mod aggregate;
pub mod catalog;
pub mod copy;
pub mod ddl;
pub mod expr;
pub mod function;
pub mod planner;
pub mod types;
pub mod window;

use std::path::PathBuf;

use sqlparser::ast::Statement as SqlStatement;
use sqlparser::dialect::DuckDbDialect;
use sqlparser::keywords::Keyword;
use sqlparser::parser::{Parser, ParserError};
use sqlparser::tokenizer::Token;

use crate::config::RunConfig;
use crate::error::{Error, Result, SqlLocation};
use crate::io::OutputFormat;
use crate::plan::LogicalPlan;
use crate::sql::catalog::{Catalog, Change};
use crate::sql::copy::Copy;

/// What a statement asks for, planned (not yet optimised).
pub enum Statement {
    /// A query whose rows are the result.
    Query(LogicalPlan),
    /// EXPLAIN: show the optimised plan instead of running it.
    Explain(LogicalPlan),
    /// EXPLAIN ANALYZE: run the query, discard its rows, and show the plan
    /// with what each operator did.
    ExplainAnalyze(LogicalPlan),
    /// Rows into a file: a `COPY ... TO` target, or a new file of a session
    /// table (CREATE TABLE AS, INSERT, COPY FROM). Once written, the session
    /// catalog takes `then`.
    Write {
        plan: LogicalPlan,
        path: PathBuf,
        format: OutputFormat,
        /// Overrides the session's `--zstd-level` for Parquet.
        zstd_level: Option<i32>,
        then: Change,
    },
    /// A catalog change with no rows to write: CREATE TABLE with columns,
    /// CREATE VIEW, DROP.
    Catalog(Change),
}

/// A statement as parsed: sqlparser's, or our COPY.
#[derive(Debug, Clone)]
pub enum Parsed {
    /// Boxed: sqlparser's statement is kilobytes, a script holds a few.
    Sql(Box<SqlStatement>),
    Copy(Copy),
}

impl Parsed {
    /// Whether it is a query whose rows are the script's output.
    pub fn is_query(&self) -> bool {
        matches!(self, Parsed::Sql(s) if matches!(**s, SqlStatement::Query(_)))
    }
}

/// Parse a script of one or more statements separated by semicolons.
pub fn parse(sql: &str) -> Result<Vec<Parsed>> {
    parse_statements(sql).map_err(|e| {
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

/// sqlparser's statement loop, with COPY parsed by [`copy::parse_copy`].
fn parse_statements(sql: &str) -> std::result::Result<Vec<Parsed>, ParserError> {
    let mut parser = Parser::new(&DuckDbDialect {}).try_with_sql(sql)?;
    let mut statements = Vec::new();
    let mut expecting_delimiter = false;
    loop {
        while parser.consume_token(&Token::SemiColon) {
            expecting_delimiter = false;
        }
        if parser.peek_token().token == Token::EOF {
            break;
        }
        if expecting_delimiter {
            return parser.expected("end of statement", parser.peek_token());
        }
        statements.push(if parser.peek_keyword(Keyword::COPY) {
            Parsed::Copy(copy::parse_copy(&mut parser)?)
        } else {
            Parsed::Sql(Box::new(parser.parse_statement()?))
        });
        expecting_delimiter = true;
    }
    Ok(statements)
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

/// Plan one parsed statement against `catalog`, which takes the
/// statement's change at once (so the script's later statements see it).
pub fn plan(statement: &Parsed, config: &RunConfig, catalog: &mut Catalog) -> Result<Statement> {
    let statement = match statement {
        Parsed::Copy(copy) => return ddl::copy(copy, config, catalog),
        Parsed::Sql(s) => s,
    };
    match &**statement {
        SqlStatement::Query(query) => Ok(Statement::Query(
            planner::QueryPlanner::new(config, catalog).plan(query)?,
        )),
        SqlStatement::Explain {
            statement, analyze, ..
        } => match plan(&Parsed::Sql(statement.clone()), config, catalog)? {
            Statement::Query(p) | Statement::Explain(p) | Statement::ExplainAnalyze(p) => {
                Ok(if *analyze {
                    Statement::ExplainAnalyze(p)
                } else {
                    Statement::Explain(p)
                })
            }
            _ => Err(Error::NotImplemented(
                "EXPLAIN of a statement other than a query".into(),
            )),
        },
        SqlStatement::CreateTable(create) => ddl::create_table(create, config, catalog),
        SqlStatement::Insert(insert) => ddl::insert(insert, config, catalog),
        SqlStatement::CreateView(create) => ddl::create_view(create, config, catalog),
        SqlStatement::Drop {
            object_type,
            if_exists,
            names,
            ..
        } => ddl::drop(object_type, *if_exists, names, catalog),
        other => {
            let text = other.to_string();
            let first: String = text
                .split_whitespace()
                .take(2)
                .collect::<Vec<_>>()
                .join(" ");
            Err(Error::NotImplemented(format!(
                "{first} statements: highwater runs queries (SELECT, WITH, EXPLAIN), \
                 COPY, CREATE TABLE/VIEW, INSERT and DROP"
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
