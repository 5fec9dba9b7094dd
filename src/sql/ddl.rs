//! Statements that change session objects or write files: CREATE TABLE
//! (with columns, or AS a query), INSERT, CREATE VIEW, DROP, and COPY.
//!
//! Each is planned into a [`Statement`]: rows to write (a query into a new
//! table file or a COPY target) and the [`Change`] the catalog takes once
//! they are written. Planning applies the change to the planning copy of
//! the catalog at once, so later statements of the script see it.

use std::sync::Arc;

use arrow::array::{new_null_array, RecordBatch};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use sqlparser::ast::{
    ColumnOptionDef, CreateTable, CreateView, Ident, Insert, ObjectName, ObjectType, TableObject,
};

use crate::config::RunConfig;
use crate::error::{Error, Result};
use crate::io::OutputFormat;
use crate::plan::expr::{sql_type_name, Expr};
use crate::plan::LogicalPlan;
use crate::source::{CsvOptions, FileFormat};
use crate::sql::catalog::{Catalog, Change, Table, View};
use crate::sql::copy::{Copy, CopySource};
use crate::sql::planner::{set_option, QueryPlanner};
use crate::sql::types::arrow_type;
use crate::sql::Statement;

/// Session table files favour speed: they are read back once or twice
/// within the run, never kept.
const TABLE_ZSTD_LEVEL: i32 = 1;

/// A table or view name: one part, compared in lower case as SQL does for
/// unquoted names.
fn object_name(name: &ObjectName) -> Result<String> {
    match name.0.as_slice() {
        [part] => part
            .as_ident()
            .map(|i| i.value.to_ascii_lowercase())
            .ok_or_else(|| Error::plan(format!("bad name '{name}'"))),
        _ => Err(Error::plan(format!(
            "'{name}': session tables and views have one-part names"
        ))),
    }
}

pub fn create_table(
    create: &CreateTable,
    config: &RunConfig,
    catalog: &mut Catalog,
) -> Result<Statement> {
    if create.external || !create.constraints.is_empty() {
        return Err(Error::NotImplemented(
            "EXTERNAL tables and table constraints: session tables are plain files of rows".into(),
        ));
    }
    let name = object_name(&create.name)?;
    if nothing_to_create(
        catalog,
        false,
        &name,
        create.if_not_exists,
        create.or_replace,
    )? {
        return Ok(Statement::Catalog(Change::None));
    }
    let declared = if create.columns.is_empty() {
        None
    } else {
        let mut fields = Vec::with_capacity(create.columns.len());
        for column in &create.columns {
            refuse_constraints(&column.name, &column.options)?;
            let t = arrow_type(&column.data_type)
                .map_err(|e| Error::plan(format!("column '{}': {e}", column.name.value)))?;
            fields.push(Field::new(column.name.value.clone(), t, true));
        }
        check_unique(&name, &fields)?;
        Some(Arc::new(Schema::new(fields)))
    };
    match (&create.query, declared) {
        (None, None) => Err(Error::plan(format!(
            "CREATE TABLE {name} needs columns or AS a query"
        ))),
        (None, Some(schema)) => {
            let change = Change::CreateTable(Table {
                name,
                schema,
                files: Vec::new(),
            });
            catalog.apply(&change)?;
            Ok(Statement::Catalog(change))
        }
        (Some(query), declared) => {
            let plan = QueryPlanner::new(config, catalog).plan(query)?;
            let schema = match declared {
                Some(schema) => schema,
                None => nullable(&plan.schema()),
            };
            check_unique(&name, schema.fields().iter().map(|f| f.as_ref()))?;
            let table = Table {
                name,
                schema,
                files: Vec::new(),
            };
            let plan = into_table(plan, &table, None)?;
            let path = catalog.new_file(&table.name);
            let change = Change::CreateTable(Table {
                files: vec![path.clone()],
                ..table
            });
            catalog.apply(&change)?;
            Ok(table_write(plan, path, change))
        }
    }
}

/// For CREATE TABLE or VIEW `name`: true if there is nothing to do (it
/// exists, IF NOT EXISTS), an error if the name is the other kind's or may
/// not be replaced.
fn nothing_to_create(
    catalog: &Catalog,
    view: bool,
    name: &str,
    if_not_exists: bool,
    or_replace: bool,
) -> Result<bool> {
    catalog.check_free(name, view)?;
    let (kind, exists) = if view {
        ("view", catalog.view(name).is_some())
    } else {
        ("table", catalog.table(name).is_some())
    };
    match (exists, if_not_exists, or_replace) {
        (false, ..) => Ok(false),
        (true, true, _) => Ok(true),
        (true, false, true) => Ok(false),
        (true, false, false) => Err(Error::plan(format!(
            "{kind} '{name}' already exists (use CREATE OR REPLACE {})",
            kind.to_ascii_uppercase()
        ))),
    }
}

fn refuse_constraints(column: &Ident, options: &[ColumnOptionDef]) -> Result<()> {
    match options.first() {
        None => Ok(()),
        Some(o) => Err(Error::NotImplemented(format!(
            "column '{}': constraint '{o}' (session tables keep no constraints)",
            column.value
        ))),
    }
}

fn check_unique<'f>(table: &str, fields: impl IntoIterator<Item = &'f Field>) -> Result<()> {
    let mut seen = std::collections::BTreeSet::new();
    for f in fields {
        if !seen.insert(f.name().to_ascii_lowercase()) {
            return Err(Error::plan(format!(
                "table '{table}' would have two columns named '{}'",
                f.name()
            )));
        }
    }
    Ok(())
}

/// The same columns, every one nullable: a table holds whatever its inserts
/// give it.
fn nullable(schema: &Schema) -> SchemaRef {
    Arc::new(Schema::new(
        schema
            .fields()
            .iter()
            .map(|f| Field::new(f.name(), f.data_type().clone(), true))
            .collect::<Vec<_>>(),
    ))
}

fn table_write(plan: LogicalPlan, path: std::path::PathBuf, then: Change) -> Statement {
    Statement::Write {
        plan,
        path,
        format: OutputFormat::Parquet,
        zstd_level: Some(TABLE_ZSTD_LEVEL),
        then,
    }
}

/// Fit `plan`'s rows to `table`: by position, or into the named `columns`
/// with NULL in the rest. Values are cast to the column types; a value
/// that does not convert fails the statement.
fn into_table(plan: LogicalPlan, table: &Table, columns: Option<&[String]>) -> Result<LogicalPlan> {
    let input = plan.schema();
    let width = table.schema.fields().len();
    // For each table column, the input column that fills it, if any.
    let sources: Vec<Option<usize>> = match columns {
        None => {
            if input.fields().len() != width {
                return Err(Error::plan(format!(
                    "table '{}' has {width} columns but {} values were given",
                    table.name,
                    input.fields().len()
                )));
            }
            (0..width).map(Some).collect()
        }
        Some(names) => {
            if input.fields().len() != names.len() {
                return Err(Error::plan(format!(
                    "{} columns were named but {} values were given",
                    names.len(),
                    input.fields().len()
                )));
            }
            let mut sources = vec![None; width];
            for (i, name) in names.iter().enumerate() {
                let at = table
                    .schema
                    .fields()
                    .iter()
                    .position(|f| f.name().eq_ignore_ascii_case(name))
                    .ok_or_else(|| {
                        Error::plan(format!(
                            "table '{}' has no column '{name}' (columns: {})",
                            table.name,
                            column_list(&table.schema)
                        ))
                    })?;
                if sources[at].replace(i).is_some() {
                    return Err(Error::plan(format!("column '{name}' is named twice")));
                }
            }
            sources
        }
    };
    let mut exprs = Vec::with_capacity(width);
    for (field, source) in table.schema.fields().iter().zip(sources) {
        let to = field.data_type();
        let e = match source {
            Some(i) => {
                let from = input.field(i).data_type();
                if from != to
                    && from != &DataType::Null
                    && !arrow::compute::can_cast_types(from, to)
                {
                    return Err(Error::plan(format!(
                        "column '{}' of '{}' is {}, and a {} cannot be stored in it",
                        field.name(),
                        table.name,
                        sql_type_name(to),
                        sql_type_name(from)
                    )));
                }
                Expr::column(i, input.field(i).name().clone()).cast(to.clone())
            }
            None => Expr::Literal(new_null_array(to, 1)),
        };
        exprs.push(if e.data_type(&input)? == *to {
            e
        } else {
            e.cast(to.clone())
        });
    }
    // The table's own schema, all nullable, so every file of the table has
    // exactly the schema its scans expect.
    Ok(LogicalPlan::Project {
        input: Box::new(plan),
        exprs,
        schema: table.schema.clone(),
    })
}

fn column_list(schema: &Schema) -> String {
    schema
        .fields()
        .iter()
        .map(|f| f.name().as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

pub fn insert(insert: &Insert, config: &RunConfig, catalog: &mut Catalog) -> Result<Statement> {
    if insert.overwrite
        || insert.or.is_some()
        || insert.on.is_some()
        || insert.returning.is_some()
        || !insert.assignments.is_empty()
    {
        return Err(Error::NotImplemented(
            "INSERT OVERWRITE, OR, ON CONFLICT, RETURNING and SET: highwater appends rows".into(),
        ));
    }
    let TableObject::TableName(name) = &insert.table else {
        return Err(Error::NotImplemented("INSERT INTO a table function".into()));
    };
    let name = object_name(name)?;
    let table = find_table(catalog, &name)?.clone();
    let Some(source) = &insert.source else {
        return Err(Error::plan("INSERT needs VALUES or a query"));
    };
    let plan = QueryPlanner::new(config, catalog).plan(source)?;
    let columns: Option<Vec<String>> = if insert.columns.is_empty() {
        None
    } else {
        Some(insert.columns.iter().map(|c| c.to_string()).collect())
    };
    let plan = into_table(plan, &table, columns.as_deref())?;
    let path = catalog.new_file(&name);
    let change = Change::AddFile {
        table: name,
        path: path.clone(),
    };
    catalog.apply(&change)?;
    Ok(table_write(plan, path, change))
}

fn find_table<'c>(catalog: &'c Catalog, name: &str) -> Result<&'c Table> {
    catalog.table(name).ok_or_else(|| {
        let known = catalog.names();
        Error::plan(format!(
            "no table '{name}' (session tables: {})",
            if known.is_empty() {
                "none".to_string()
            } else {
                known.join(", ")
            }
        ))
    })
}

pub fn create_view(
    create: &CreateView,
    config: &RunConfig,
    catalog: &mut Catalog,
) -> Result<Statement> {
    if create.materialized {
        return Err(Error::NotImplemented(
            "MATERIALIZED views (CREATE TABLE AS keeps a query's rows)".into(),
        ));
    }
    let name = object_name(&create.name)?;
    if nothing_to_create(
        catalog,
        true,
        &name,
        create.if_not_exists,
        create.or_replace,
    )? {
        return Ok(Statement::Catalog(Change::None));
    }
    let view = View {
        query: create.query.clone(),
        columns: create.columns.iter().map(|c| c.name.clone()).collect(),
    };
    // Plan it once now, so that a view that cannot work fails where it is
    // written rather than where it is read.
    QueryPlanner::new(config, catalog).plan_view(&name, &view)?;
    let change = Change::CreateView(name, view);
    catalog.apply(&change)?;
    Ok(Statement::Catalog(change))
}

pub fn drop(
    object_type: &ObjectType,
    if_exists: bool,
    names: &[ObjectName],
    catalog: &mut Catalog,
) -> Result<Statement> {
    let [name] = names else {
        return Err(Error::NotImplemented(
            "DROP of several objects in one statement".into(),
        ));
    };
    let name = object_name(name)?;
    let change = match object_type {
        ObjectType::Table if catalog.table(&name).is_some() => Change::DropTable(name),
        ObjectType::View if catalog.view(&name).is_some() => Change::DropView(name),
        ObjectType::Table | ObjectType::View if if_exists => Change::None,
        ObjectType::Table | ObjectType::View => {
            let kind = if *object_type == ObjectType::Table {
                "table"
            } else {
                "view"
            };
            return Err(Error::plan(format!("no {kind} '{name}' to drop")));
        }
        other => return Err(Error::NotImplemented(format!("DROP {other}"))),
    };
    catalog.apply(&change)?;
    Ok(Statement::Catalog(change))
}

/// `COPY (query) TO 'path' (FORMAT ..., COMPRESSION zstd)`, `COPY t TO ...`
/// and `COPY t FROM 'path' (...)`.
pub fn copy(copy: &Copy, config: &RunConfig, catalog: &mut Catalog) -> Result<Statement> {
    if copy.to {
        copy_to(copy, config, catalog)
    } else {
        copy_from(copy, config, catalog)
    }
}

fn copy_to(copy: &Copy, config: &RunConfig, catalog: &Catalog) -> Result<Statement> {
    let plan = match &copy.source {
        CopySource::Query(query) => QueryPlanner::new(config, catalog).plan(query)?,
        CopySource::Table(name) => QueryPlanner::new(config, catalog).plan_table(name)?,
    };
    let path = std::path::PathBuf::from(&copy.path);
    let mut format = OutputFormat::from_path(&path);
    let mut compression: Option<String> = None;
    let mut zstd_level = None;
    let mut header = None;
    for (option, value) in &copy.options {
        let key = option.value.to_ascii_lowercase();
        if !matches!(
            key.as_str(),
            "format" | "compression" | "codec" | "compression_level" | "header"
        ) {
            return Err(Error::plan(format!(
                "COPY ... TO has no option '{key}' here \
                 (options: FORMAT, COMPRESSION, COMPRESSION_LEVEL, and HEADER for CSV)"
            )));
        }
        let text = option_text(option, value.as_ref())?;
        match key.as_str() {
            "format" => {
                format = Some(match text.to_ascii_lowercase().as_str() {
                    "parquet" => OutputFormat::Parquet,
                    "csv" => OutputFormat::Csv,
                    "json" | "ndjson" => OutputFormat::Ndjson,
                    other => {
                        return Err(Error::plan(format!(
                            "COPY writes FORMAT parquet, csv or json, not '{other}'"
                        )))
                    }
                })
            }
            "compression" | "codec" => compression = Some(text.to_ascii_lowercase()),
            "compression_level" => {
                zstd_level = Some(text.parse::<i32>().map_err(|_| {
                    Error::plan(format!("COMPRESSION_LEVEL takes an integer, got '{text}'"))
                })?)
            }
            _ => header = Some(text),
        }
    }
    let format = format.ok_or_else(|| {
        Error::plan(format!(
            "cannot tell the format of '{}': add (FORMAT parquet|csv|json) or use its extension",
            copy.path
        ))
    })?;
    match (format, compression.as_deref()) {
        (OutputFormat::Parquet, None | Some("zstd")) => {}
        (OutputFormat::Csv | OutputFormat::Ndjson, None | Some("none" | "uncompressed")) => {}
        (OutputFormat::Parquet, Some(other)) => {
            return Err(Error::NotImplemented(format!(
                "Parquet COMPRESSION '{other}': highwater writes ZSTD"
            )))
        }
        (_, Some(other)) => {
            return Err(Error::NotImplemented(format!(
                "COMPRESSION '{other}' for text output: it is written uncompressed"
            )))
        }
    }
    if zstd_level.is_some() && format != OutputFormat::Parquet {
        return Err(Error::plan("COMPRESSION_LEVEL applies to Parquet output"));
    }
    if let Some(header) = header {
        if format != OutputFormat::Csv {
            return Err(Error::plan("HEADER applies to CSV output"));
        }
        check_header(&header)?;
    }
    Ok(Statement::Write {
        plan,
        path,
        format,
        zstd_level,
        then: Change::None,
    })
}

fn copy_from(copy: &Copy, config: &RunConfig, catalog: &mut Catalog) -> Result<Statement> {
    let CopySource::Table(name) = &copy.source else {
        return Err(Error::plan("COPY ... FROM loads into a table, not a query"));
    };
    let name = object_name(name)?;
    let table = find_table(catalog, &name)?.clone();
    let mut format = FileFormat::from_extension(&copy.path);
    let mut csv_options = Vec::new();
    for (option, value) in &copy.options {
        let key = option.value.to_ascii_lowercase();
        if key == "format" {
            let text = option_text(option, value.as_ref())?;
            format = Some(match text.to_ascii_lowercase().as_str() {
                "parquet" => FileFormat::Parquet,
                "csv" => FileFormat::Csv(CsvOptions::default()),
                "json" | "ndjson" => FileFormat::Ndjson,
                other => {
                    return Err(Error::plan(format!(
                        "COPY reads FORMAT parquet, csv or json, not '{other}'"
                    )))
                }
            });
        } else {
            csv_options.push((key, value));
        }
    }
    let mut format = format.ok_or_else(|| {
        Error::plan(format!(
            "cannot tell the format of '{}': add (FORMAT parquet|csv|json) or use its extension",
            copy.path
        ))
    })?;
    // A CSV is read straight into the table's types, so that a value that
    // does not parse is reported with its file, line and column.
    if let FileFormat::Csv(csv) = &mut format {
        csv.columns = Some(table.schema.clone());
    }
    for (key, value) in csv_options {
        let key = if key == "null" {
            "nullstr".to_string()
        } else {
            key
        };
        let value = value.clone().unwrap_or_else(|| {
            sqlparser::ast::Expr::Value(sqlparser::ast::Value::Boolean(true).into())
        });
        set_option(&mut format, "COPY ... FROM", &key, &value)?;
    }
    let plan = QueryPlanner::new(config, catalog).plan_files(format, vec![copy.path.clone()])?;
    let plan = into_table(plan, &table, None)?;
    let path = catalog.new_file(&name);
    let change = Change::AddFile {
        table: name,
        path: path.clone(),
    };
    catalog.apply(&change)?;
    Ok(table_write(plan, path, change))
}

/// An option's value as text: `FORMAT parquet`, `FORMAT 'csv'`, `HEADER`.
fn option_text(option: &Ident, value: Option<&sqlparser::ast::Expr>) -> Result<String> {
    use sqlparser::ast::{Expr as SqlExpr, Value as SqlValue};
    match value {
        None => Ok("true".to_string()),
        Some(SqlExpr::Identifier(i)) => Ok(i.value.clone()),
        Some(SqlExpr::Value(v)) => match &v.value {
            SqlValue::SingleQuotedString(s) | SqlValue::DoubleQuotedString(s) => Ok(s.clone()),
            other => Ok(other.to_string()),
        },
        Some(other) => Err(Error::plan(format!(
            "option {} takes a constant, got {other}",
            option.value
        ))),
    }
}

/// CSV output always has a header: accept HEADER true, refuse false.
fn check_header(text: &str) -> Result<()> {
    match text.to_ascii_lowercase().as_str() {
        "true" | "1" => Ok(()),
        "false" | "0" => Err(Error::NotImplemented(
            "HEADER false: CSV output always has a header".into(),
        )),
        other => Err(Error::plan(format!(
            "HEADER takes true or false, got '{other}'"
        ))),
    }
}

/// The rows of an empty table: its schema and no rows.
pub fn empty_rows(schema: &SchemaRef) -> Result<LogicalPlan> {
    Ok(LogicalPlan::Values {
        batch: RecordBatch::new_empty(schema.clone()),
    })
}
