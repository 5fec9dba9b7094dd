//! Parsing COPY in DuckDB's form:
//!
//! ```sql
//! COPY (query) TO 'path' (FORMAT parquet, COMPRESSION zstd)
//! COPY table TO 'path' (FORMAT csv)
//! COPY table FROM 'path' (FORMAT csv, HEADER true, DELIMITER '|')
//! ```
//!
//! sqlparser parses PostgreSQL's COPY, whose option list is closed: it
//! refuses DuckDB's `COMPRESSION`. So the frame of the statement is parsed
//! here, and everything inside it (the query, the table name, the option
//! values) by sqlparser's own parser.

use sqlparser::ast::{Expr as SqlExpr, Ident, ObjectName, Query};
use sqlparser::keywords::Keyword;
use sqlparser::parser::{Parser, ParserError};
use sqlparser::tokenizer::Token;

#[derive(Debug, Clone)]
pub enum CopySource {
    Query(Box<Query>),
    Table(ObjectName),
}

#[derive(Debug, Clone)]
pub struct Copy {
    pub source: CopySource,
    /// `TO` a file; otherwise `FROM` a file into a table.
    pub to: bool,
    pub path: String,
    /// `name [value]` pairs, as written.
    pub options: Vec<(Ident, Option<SqlExpr>)>,
}

/// Parse one COPY statement; the parser stands on the COPY keyword.
pub fn parse_copy(parser: &mut Parser) -> Result<Copy, ParserError> {
    parser.expect_keyword_is(Keyword::COPY)?;
    let source = if parser.consume_token(&Token::LParen) {
        let query = parser.parse_query()?;
        parser.expect_token(&Token::RParen)?;
        CopySource::Query(query)
    } else {
        CopySource::Table(parser.parse_object_name(false)?)
    };
    let to = if parser.parse_keyword(Keyword::TO) {
        true
    } else {
        parser.expect_keyword_is(Keyword::FROM)?;
        false
    };
    let path = parser.parse_literal_string()?;
    let with = parser.parse_keyword(Keyword::WITH);
    let mut options = Vec::new();
    if parser.consume_token(&Token::LParen) {
        options = parser.parse_comma_separated(|p| {
            let name = p.parse_identifier()?;
            let value = match p.peek_token().token {
                Token::Comma | Token::RParen => None,
                _ => Some(p.parse_expr()?),
            };
            Ok((name, value))
        })?;
        parser.expect_token(&Token::RParen)?;
    } else if with {
        return parser.expected("( after WITH", parser.peek_token());
    }
    Ok(Copy {
        source,
        to,
        path,
        options,
    })
}
