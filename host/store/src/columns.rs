//! A Gold table read back from its store, column by column, with the types
//! the store declares: what `host serve` holds in memory and pages through.

use arrow_schema::DataType;

/// A whole table, as typed columns of equal length.
#[derive(Debug, Clone, Default)]
pub struct Columns {
    /// The columns, in the table's order.
    pub columns: Vec<Column>,
}

impl Columns {
    /// Rows in the table.
    pub fn rows(&self) -> usize {
        self.columns.first().map_or(0, |c| c.values.len())
    }

    /// The column named `name`.
    pub fn position(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c.name == name)
    }
}

/// One column.
#[derive(Debug, Clone)]
pub struct Column {
    /// Its name.
    pub name: String,
    /// Its type.
    pub kind: SqlType,
    /// Its values; a null's slot holds a default.
    pub values: Values,
    /// Which rows hold a value; `None` when every row does.
    pub valid: Option<Vec<bool>>,
}

impl Column {
    /// An empty column of `kind`.
    pub fn new(name: &str, kind: SqlType) -> Self {
        let values = match kind {
            SqlType::Integer => Values::Int(Vec::new()),
            SqlType::Double => Values::Double(Vec::new()),
            SqlType::Date => Values::Date(Vec::new()),
            SqlType::Text => Values::Text(Vec::new()),
            SqlType::Boolean => Values::Bool(Vec::new()),
        };
        Column { name: name.to_owned(), kind, values, valid: None }
    }

    /// Whether row `row` holds a value.
    pub fn is_valid(&self, row: usize) -> bool {
        self.valid.as_ref().is_none_or(|v| v[row])
    }

    /// Appends a null.
    pub fn push_null(&mut self) {
        let len = self.values.len();
        self.valid.get_or_insert_with(|| vec![true; len]).push(false);
        match &mut self.values {
            Values::Int(v) => v.push(0),
            Values::Double(v) => v.push(0.0),
            Values::Date(v) => v.push(0),
            Values::Text(v) => v.push(Box::from("")),
            Values::Bool(v) => v.push(false),
        }
    }

    /// Marks the value just pushed as present.
    pub fn pushed(&mut self) {
        if let Some(valid) = &mut self.valid {
            valid.push(true);
        }
    }
}

/// A column's values, by type.
#[derive(Debug, Clone)]
pub enum Values {
    /// Integers.
    Int(Vec<i64>),
    /// Floats.
    Double(Vec<f64>),
    /// Days since 1970-01-01.
    Date(Vec<i32>),
    /// Text.
    Text(Vec<Box<str>>),
    /// Booleans.
    Bool(Vec<bool>),
}

impl Values {
    /// Values held.
    pub fn len(&self) -> usize {
        match self {
            Values::Int(v) => v.len(),
            Values::Double(v) => v.len(),
            Values::Date(v) => v.len(),
            Values::Text(v) => v.len(),
            Values::Bool(v) => v.len(),
        }
    }

    /// Whether it holds no value.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A column's SQL type, by store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SqlType {
    /// 64-bit integer.
    Integer,
    /// 64-bit float.
    Double,
    /// Calendar date.
    Date,
    /// Text.
    Text,
    /// True or false.
    Boolean,
}

impl SqlType {
    /// The SQL type of an Arrow type, or `None` for types Gold does not store.
    pub fn of(data_type: &DataType) -> Option<Self> {
        Some(match data_type {
            DataType::Int8 | DataType::Int16 | DataType::Int32 | DataType::Int64 | DataType::UInt8 => SqlType::Integer,
            DataType::UInt16 | DataType::UInt32 => SqlType::Integer,
            DataType::Float32 | DataType::Float64 => SqlType::Double,
            DataType::Date32 => SqlType::Date,
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => SqlType::Text,
            DataType::Boolean => SqlType::Boolean,
            _ => return None,
        })
    }

    /// The type's name in `CREATE TABLE`, the same in SQLite and PostgreSQL
    /// (SQLite reads `DOUBLE PRECISION` as REAL and `DATE` as a date column).
    pub fn sql(self) -> &'static str {
        match self {
            SqlType::Integer => "BIGINT",
            SqlType::Double => "DOUBLE PRECISION",
            SqlType::Date => "DATE",
            SqlType::Text => "TEXT",
            SqlType::Boolean => "BOOLEAN",
        }
    }
}

/// A column's SQL type from the type a store declares for it.
pub fn declared_type(declared: &str) -> SqlType {
    let declared = declared.to_ascii_uppercase();
    if declared.contains("INT") {
        SqlType::Integer
    } else if ["DOUBLE", "REAL", "FLOAT", "NUMERIC"].iter().any(|t| declared.contains(t)) {
        SqlType::Double
    } else if declared == "DATE" {
        SqlType::Date
    } else if declared.starts_with("BOOL") {
        SqlType::Boolean
    } else {
        SqlType::Text
    }
}
