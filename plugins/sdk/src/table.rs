//! Helpers for plugins that compute columns: read input columns by name as
//! plain values (whatever integer or float width or string layout arrived),
//! buffer batches until `finish`, and append computed columns.

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{Date32Type, Float32Type, Float64Type, Int32Type, Int64Type, UInt32Type, UInt64Type};
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema};

use crate::Error;

/// The batches a plugin keeps until `finish`, as one table.
#[derive(Debug, Default)]
pub struct Buffered {
    batches: Vec<RecordBatch>,
}

impl Buffered {
    /// Keeps a batch.
    pub fn push(&mut self, batch: RecordBatch) {
        if batch.num_rows() > 0 {
            self.batches.push(batch);
        }
    }

    /// The batches kept, in arrival order.
    pub fn batches(&self) -> &[RecordBatch] {
        &self.batches
    }

    /// Rows kept.
    pub fn rows(&self) -> usize {
        self.batches.iter().map(RecordBatch::num_rows).sum()
    }

    /// A column of every batch, end to end, as `f64` (nulls as `None`).
    pub fn f64s(&self, name: &str) -> Result<Vec<Option<f64>>, Error> {
        let mut values = Vec::with_capacity(self.rows());
        for batch in &self.batches {
            values.extend(f64s(batch, name)?);
        }
        Ok(values)
    }

    /// A column of every batch as `i64`.
    pub fn i64s(&self, name: &str) -> Result<Vec<Option<i64>>, Error> {
        let mut values = Vec::with_capacity(self.rows());
        for batch in &self.batches {
            values.extend(i64s(batch, name)?);
        }
        Ok(values)
    }

    /// A column of every batch as text.
    pub fn strings(&self, name: &str) -> Result<Vec<Option<String>>, Error> {
        let mut values = Vec::with_capacity(self.rows());
        for batch in &self.batches {
            values.extend(strings(batch, name)?);
        }
        Ok(values)
    }

    /// A date column of every batch as days since 1970-01-01.
    pub fn days(&self, name: &str) -> Result<Vec<Option<i32>>, Error> {
        let mut values = Vec::with_capacity(self.rows());
        for batch in &self.batches {
            values.extend(days(batch, name)?);
        }
        Ok(values)
    }
}

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

/// Splits `values` (one per row of the buffered batches, end to end) back
/// into per-batch slices, to append them batch by batch.
pub fn per_batch<'a, T>(buffered: &Buffered, values: &'a [T]) -> Vec<&'a [T]> {
    let mut start = 0;
    buffered
        .batches()
        .iter()
        .map(|b| {
            let slice = &values[start..start + b.num_rows()];
            start += b.num_rows();
            slice
        })
        .collect()
}
