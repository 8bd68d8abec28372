//! Helpers for plugins that compute columns: read input columns by name as
//! plain values (whatever integer or float width or string layout arrived),
//! drop the columns the host computed for the plugin, and append the
//! plugin's own.

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{Date32Type, Float32Type, Float64Type, Int32Type, Int64Type, UInt32Type, UInt64Type};
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema};

use crate::Error;

fn column<'a>(batch: &'a RecordBatch, name: &str) -> Result<&'a ArrayRef, Error> {
    batch.column_by_name(name).ok_or_else(|| {
        let names: Vec<&str> = batch.schema_ref().fields().iter().map(|f| f.name().as_str()).collect();
        Error::bad_input(format!("input has no column `{name}`; it has {}", names.join(", ")))
    })
}

fn wrong_type(name: &str, array: &ArrayRef, expected: &str) -> Error {
    Error::bad_input(format!("column `{name}` is {}, expected {expected}", array.data_type()))
}

/// A numeric column as `f64`.
pub fn f64s(batch: &RecordBatch, name: &str) -> Result<Vec<Option<f64>>, Error> {
    let array = column(batch, name)?;
    Ok(match array.data_type() {
        DataType::Float64 => array.as_primitive::<Float64Type>().iter().collect(),
        DataType::Float32 => array.as_primitive::<Float32Type>().iter().map(|v| v.map(f64::from)).collect(),
        DataType::Int64 => array.as_primitive::<Int64Type>().iter().map(|v| v.map(|v| v as f64)).collect(),
        DataType::Int32 => array.as_primitive::<Int32Type>().iter().map(|v| v.map(f64::from)).collect(),
        DataType::UInt32 => array.as_primitive::<UInt32Type>().iter().map(|v| v.map(f64::from)).collect(),
        DataType::UInt64 => array.as_primitive::<UInt64Type>().iter().map(|v| v.map(|v| v as f64)).collect(),
        _ => return Err(wrong_type(name, array, "a number")),
    })
}

/// An integer column as `i64`.
pub fn i64s(batch: &RecordBatch, name: &str) -> Result<Vec<Option<i64>>, Error> {
    let array = column(batch, name)?;
    Ok(match array.data_type() {
        DataType::Int64 => array.as_primitive::<Int64Type>().iter().collect(),
        DataType::Int32 => array.as_primitive::<Int32Type>().iter().map(|v| v.map(i64::from)).collect(),
        DataType::UInt32 => array.as_primitive::<UInt32Type>().iter().map(|v| v.map(i64::from)).collect(),
        DataType::UInt64 => array.as_primitive::<UInt64Type>().iter().map(|v| v.map(|v| v as i64)).collect(),
        _ => return Err(wrong_type(name, array, "an integer")),
    })
}

/// A text column.
pub fn strings(batch: &RecordBatch, name: &str) -> Result<Vec<Option<String>>, Error> {
    let array = column(batch, name)?;
    Ok(match array.data_type() {
        DataType::Utf8 => array.as_string::<i32>().iter().map(|v| v.map(str::to_owned)).collect(),
        DataType::LargeUtf8 => array.as_string::<i64>().iter().map(|v| v.map(str::to_owned)).collect(),
        DataType::Utf8View => array.as_string_view().iter().map(|v| v.map(str::to_owned)).collect(),
        _ => return Err(wrong_type(name, array, "text")),
    })
}

/// A date column as days since 1970-01-01.
pub fn days(batch: &RecordBatch, name: &str) -> Result<Vec<Option<i32>>, Error> {
    let array = column(batch, name)?;
    match array.data_type() {
        DataType::Date32 => Ok(array.as_primitive::<Date32Type>().iter().collect()),
        _ => Err(wrong_type(name, array, "a date (Date32)")),
    }
}

/// `batch` without the columns named in `names` (those the host computed for
/// the plugin, say); names it does not have are ignored.
pub fn without(batch: &RecordBatch, names: &[&str]) -> Result<RecordBatch, Error> {
    let keep: Vec<usize> = batch
        .schema_ref()
        .fields()
        .iter()
        .enumerate()
        .filter(|(_, f)| !names.contains(&f.name().as_str()))
        .map(|(i, _)| i)
        .collect();
    Ok(batch.project(&keep)?)
}

/// `batch` with `columns` appended after its own.
pub fn append(batch: &RecordBatch, columns: Vec<(Field, ArrayRef)>) -> Result<RecordBatch, Error> {
    let mut fields: Vec<Field> = batch.schema_ref().fields().iter().map(|f| f.as_ref().clone()).collect();
    let mut arrays = batch.columns().to_vec();
    for (field, array) in columns {
        fields.push(field);
        arrays.push(array);
    }
    Ok(RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays)?)
}
