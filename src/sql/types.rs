//! SQL type names → arrow types.

use arrow::datatypes::{DataType, TimeUnit};
use sqlparser::ast::{DataType as SqlType, ExactNumberInfo};
use sqlparser::dialect::DuckDbDialect;
use sqlparser::parser::Parser;

use crate::error::{Error, Result};

/// DuckDB's default for a bare DECIMAL.
const DECIMAL_DEFAULT: (u8, i8) = (18, 3);

pub fn arrow_type(t: &SqlType) -> Result<DataType> {
    use SqlType as S;
    Ok(match t {
        S::Boolean | S::Bool => DataType::Boolean,
        S::TinyInt(_) => DataType::Int8,
        S::SmallInt(_) | S::Int2(_) | S::Int16 => DataType::Int16,
        S::Int(_) | S::Integer(_) | S::Int4(_) | S::Int32 | S::MediumInt(_) => DataType::Int32,
        S::BigInt(_) | S::Int8(_) | S::Int64 => DataType::Int64,
        S::HugeInt => DataType::Decimal128(38, 0),
        S::UTinyInt | S::UInt8 => DataType::UInt8,
        S::USmallInt | S::UInt16 => DataType::UInt16,
        S::UnsignedInteger | S::IntegerUnsigned(_) | S::UInt32 => DataType::UInt32,
        S::UBigInt | S::UInt64 => DataType::UInt64,
        S::Real | S::Float4 | S::Float32 => DataType::Float32,
        // DuckDB: FLOAT is single precision.
        S::Float(_) => DataType::Float32,
        S::Double(_) | S::DoublePrecision | S::Float8 | S::Float64 => DataType::Float64,
        S::Decimal(info) | S::Numeric(info) | S::Dec(info) => {
            let (p, s) = match info {
                ExactNumberInfo::None => DECIMAL_DEFAULT,
                ExactNumberInfo::Precision(p) => (*p as u8, 0),
                ExactNumberInfo::PrecisionAndScale(p, s) => (*p as u8, *s as i8),
            };
            if p == 0 || p > 38 || s < 0 || s as u8 > p {
                return Err(Error::plan(format!(
                    "DECIMAL({p},{s}) is out of range: precision 1 to 38, scale 0 to precision"
                )));
            }
            DataType::Decimal128(p, s)
        }
        S::Varchar(_)
        | S::Text
        | S::String(_)
        | S::Char(_)
        | S::Character(_)
        | S::CharVarying(_)
        | S::CharacterVarying(_)
        | S::Nvarchar(_) => DataType::Utf8,
        S::Blob(_) | S::Bytea | S::Binary(_) | S::Varbinary(_) => DataType::Binary,
        S::Date => DataType::Date32,
        S::Timestamp(_, tz) => match tz {
            sqlparser::ast::TimezoneInfo::Tz | sqlparser::ast::TimezoneInfo::WithTimeZone => {
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
            }
            _ => DataType::Timestamp(TimeUnit::Microsecond, None),
        },
        S::Datetime(_) => DataType::Timestamp(TimeUnit::Microsecond, None),
        other => {
            return Err(Error::NotImplemented(format!("the SQL type {other}")));
        }
    })
}

/// Parse a type written as text, as in `columns={'a': 'BIGINT'}`.
pub fn parse_type_name(text: &str) -> Result<DataType> {
    let dialect = DuckDbDialect {};
    let parsed = Parser::new(&dialect)
        .try_with_sql(text)
        .and_then(|mut p| p.parse_data_type())
        .map_err(|e| Error::plan(format!("'{text}' is not a SQL type: {e}")))?;
    arrow_type(&parsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_type_names_map() {
        assert_eq!(parse_type_name("BIGINT").unwrap(), DataType::Int64);
        assert_eq!(parse_type_name("varchar").unwrap(), DataType::Utf8);
        assert_eq!(
            parse_type_name("DECIMAL(15,2)").unwrap(),
            DataType::Decimal128(15, 2)
        );
        assert_eq!(parse_type_name("DATE").unwrap(), DataType::Date32);
        assert_eq!(parse_type_name("DOUBLE").unwrap(), DataType::Float64);
        assert!(parse_type_name("NOT A TYPE").is_err());
        assert!(parse_type_name("DECIMAL(50,2)").is_err());
    }
}
