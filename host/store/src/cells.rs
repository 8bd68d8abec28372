//! Cells of Arrow columns as the stores write them, identifiers quoted, and
//! the check that every Gold column has a type a store keeps.

use arrow_array::Array;
use arrow_array::cast::AsArray;
use arrow_array::types::{Date32Type, Float32Type, Float64Type, Int8Type, Int16Type, Int32Type, Int64Type, UInt32Type};
use arrow_schema::DataType;

use crate::{GoldTable, SqlType, StoreError};

/// One cell, read from an Arrow column.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Cell<'a> {
    /// No value.
    Null,
    /// An integer.
    Int(i64),
    /// A float.
    Double(f64),
    /// Days since 1970-01-01.
    Date(i32),
    /// Text.
    Text(&'a str),
    /// A boolean.
    Bool(bool),
}

/// The cell at `row` of `array`.
pub fn cell(array: &dyn Array, row: usize) -> Cell<'_> {
    if array.is_null(row) {
        return Cell::Null;
    }
    match array.data_type() {
        DataType::Int64 => Cell::Int(array.as_primitive::<Int64Type>().value(row)),
        DataType::Int32 => Cell::Int(i64::from(array.as_primitive::<Int32Type>().value(row))),
        DataType::Int16 => Cell::Int(i64::from(array.as_primitive::<Int16Type>().value(row))),
        DataType::Int8 => Cell::Int(i64::from(array.as_primitive::<Int8Type>().value(row))),
        DataType::UInt32 => Cell::Int(i64::from(array.as_primitive::<UInt32Type>().value(row))),
        DataType::UInt8 => Cell::Int(i64::from(array.as_primitive::<arrow_array::types::UInt8Type>().value(row))),
        DataType::UInt16 => Cell::Int(i64::from(array.as_primitive::<arrow_array::types::UInt16Type>().value(row))),
        DataType::Float64 => Cell::Double(array.as_primitive::<Float64Type>().value(row)),
        DataType::Float32 => Cell::Double(f64::from(array.as_primitive::<Float32Type>().value(row))),
        DataType::Date32 => Cell::Date(array.as_primitive::<Date32Type>().value(row)),
        DataType::Utf8 => Cell::Text(array.as_string::<i32>().value(row)),
        DataType::LargeUtf8 => Cell::Text(array.as_string::<i64>().value(row)),
        DataType::Utf8View => Cell::Text(array.as_string_view().value(row)),
        DataType::Boolean => Cell::Bool(array.as_boolean().value(row)),
        _ => Cell::Null,
    }
}

/// `name` quoted as an SQL identifier (both stores).
pub fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Checks that every column of every table has a type Gold stores.
pub fn check_types(tables: &[GoldTable], store: &str) -> Result<(), StoreError> {
    for table in tables {
        for field in table.schema.fields() {
            if SqlType::of(field.data_type()).is_none() {
                return Err(StoreError {
                    store: store.to_owned(),
                    message: format!(
                        "table `{}` column `{}` is {}; Gold stores integers, doubles, dates, text and booleans",
                        table.name,
                        field.name(),
                        field.data_type()
                    ),
                });
            }
        }
    }
    Ok(())
}
