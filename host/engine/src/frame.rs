//! Arrow record batches to polars data frames and back, through the Arrow C
//! Data Interface: buffers are handed over, not copied or re-encoded (polars
//! turns `Utf8` strings into its string views on the way in; that is its one
//! copy).
//!
//! arrow-rs and polars each define the C structs; they are the same
//! `#[repr(C)]` layout from the Arrow specification, so a struct exported by
//! one is moved, release callback and all, into the other's type.
//!
//! Not for: anything else polars does (see `silver` and `gold`).

use std::sync::Arc;

use arrow_array::ffi::{FFI_ArrowArray, FFI_ArrowSchema, from_ffi, to_ffi};
use arrow_array::{Array, RecordBatch, make_array};
use arrow_schema::{Field, Schema};
use polars::prelude::{Column, CompatLevel, DataFrame, PlSmallStr, PolarsError, PolarsResult, Series};
use polars_arrow::ffi as pffi;
use polars_core::query_result::QueryResult;

/// A batch conversion that failed (a type one side does not know).
#[derive(Debug, thiserror::Error)]
#[error("converting between Arrow and polars: {0}")]
pub struct FrameError(String);

impl From<PolarsError> for FrameError {
    fn from(e: PolarsError) -> Self {
        FrameError(e.to_string())
    }
}

impl From<arrow_schema::ArrowError> for FrameError {
    fn from(e: arrow_schema::ArrowError) -> Self {
        FrameError(e.to_string())
    }
}

const _: () = {
    assert!(size_of::<FFI_ArrowArray>() == size_of::<pffi::ArrowArray>());
    assert!(size_of::<FFI_ArrowSchema>() == size_of::<pffi::ArrowSchema>());
};

/// Moves a struct between the two libraries' definitions of the same C type.
///
/// # Safety
/// `A` and `B` must be the same `#[repr(C)]` Arrow C Data Interface struct.
unsafe fn transmute_c<A, B>(value: A) -> B {
    assert_eq!(size_of::<A>(), size_of::<B>());
    let value = std::mem::ManuallyDrop::new(value);
    // SAFETY: same size and layout (the caller's promise); `value` is not dropped.
    unsafe { std::ptr::read((&*value as *const A).cast::<B>()) }
}

/// How strings leave polars: see [`from_polars`].
const COMPAT: CompatLevel = CompatLevel::oldest();

/// One polars data frame holding `batches` (all with `schema`), column by
/// column, one chunk per batch.
pub fn to_polars(schema: &Schema, batches: &[RecordBatch]) -> Result<DataFrame, FrameError> {
    let mut columns = Vec::with_capacity(schema.fields().len());
    for (i, field) in schema.fields().iter().enumerate() {
        let ffi_schema = FFI_ArrowSchema::try_from(field.as_ref())?;
        // SAFETY: an arrow-rs schema struct, read as polars' identical one.
        let polars_schema: pffi::ArrowSchema = unsafe { transmute_c(ffi_schema) };
        // SAFETY: the struct was just exported and is valid.
        let polars_field = unsafe { pffi::import_field_from_c(&polars_schema) }?;
        let mut chunks = Vec::with_capacity(batches.len());
        for batch in batches {
            let (array, _) = to_ffi(&batch.column(i).to_data())?;
            // SAFETY: as above, for the array struct; its type is the field's.
            let array: pffi::ArrowArray = unsafe { transmute_c(array) };
            chunks.push(unsafe { pffi::import_array_from_c(array, polars_field.dtype().clone()) }?);
        }
        let name = PlSmallStr::from(field.name().as_str());
        let series = if chunks.is_empty() {
            Series::new_empty(name, &polars::prelude::DataType::from_arrow_field(&polars_field))
        } else {
            Series::try_from((name, chunks))?
        };
        columns.push(Column::from(series));
    }
    let height = batches.iter().map(RecordBatch::num_rows).sum();
    Ok(DataFrame::new(height, columns)?)
}

/// The frame as Arrow record batches (one per chunk after aligning them).
///
/// Strings leave as `LargeUtf8` holding just their own bytes: polars' string
/// views may point into buffers shared with much larger frames (a join's
/// output, before a group-by), and exporting those buffers would carry
/// gigabytes along with a 20,000-row table.
pub fn from_polars(frame: &mut DataFrame) -> Result<Vec<RecordBatch>, FrameError> {
    frame.align_chunks_par();
    let mut schema: Option<Arc<Schema>> = None;
    let mut batches = Vec::new();
    for chunk in frame.iter_chunks(COMPAT, true) {
        let (chunk_schema, arrays) = chunk.into_schema_and_arrays();
        let mut columns = Vec::with_capacity(arrays.len());
        let mut fields = Vec::with_capacity(arrays.len());
        for (array, field) in arrays.into_iter().zip(chunk_schema.iter_values()) {
            let c_schema = pffi::export_field_to_c(field);
            let c_array = pffi::export_array_to_c(array);
            // SAFETY: polars' structs read as arrow-rs' identical ones.
            let (c_schema, c_array): (FFI_ArrowSchema, FFI_ArrowArray) =
                unsafe { (transmute_c(c_schema), transmute_c(c_array)) };
            let data = unsafe { from_ffi(c_array, &c_schema) }?;
            fields.push(Field::try_from(&c_schema)?);
            columns.push(make_array(data));
        }
        let schema = schema.get_or_insert_with(|| Arc::new(Schema::new(fields))).clone();
        batches.push(RecordBatch::try_new(schema, columns)?);
    }
    Ok(batches)
}

/// The one data frame a query's collect gives, or what went wrong.
pub fn single(result: PolarsResult<QueryResult>) -> Result<DataFrame, String> {
    match result {
        Ok(QueryResult::Single(frame)) => Ok(frame),
        Ok(QueryResult::Multiple(_)) => Err("the query gave several results".to_owned()),
        Err(e) => Err(e.to_string()),
    }
}

/// The Arrow schema polars gives a frame's columns.
pub fn arrow_schema(frame: &DataFrame) -> Result<Arc<Schema>, FrameError> {
    let mut fields = Vec::with_capacity(frame.width());
    for column in frame.columns() {
        let field = column.field().to_arrow(COMPAT);
        let c_schema = pffi::export_field_to_c(&field);
        // SAFETY: polars' struct read as arrow-rs' identical one.
        let c_schema: FFI_ArrowSchema = unsafe { transmute_c(c_schema) };
        fields.push(Field::try_from(&c_schema)?);
    }
    Ok(Arc::new(Schema::new(fields)))
}

/// `batch` with the columns of `schema`, found by name and cast to its
/// types: rows computed by another engine (Spark) given the types the
/// host's own query gives. A column missing, one more, or a value that does
/// not fit the type is an error naming it.
pub fn conform(batch: &RecordBatch, schema: &Arc<Schema>) -> Result<RecordBatch, String> {
    let given = batch.schema();
    let names = |s: &Schema| s.fields().iter().map(|f| f.name().as_str()).collect::<Vec<_>>().join(", ");
    if given.fields().len() != schema.fields().len() {
        return Err(format!("the rows have the columns {}; expected {}", names(&given), names(schema)));
    }
    let options = arrow_cast::CastOptions { safe: false, ..Default::default() };
    let mut columns = Vec::with_capacity(schema.fields().len());
    for field in schema.fields() {
        let column = batch.column_by_name(field.name()).ok_or_else(|| {
            format!(
                "the rows have no column `{}`: they have {}; expected {}",
                field.name(),
                names(&given),
                names(schema)
            )
        })?;
        let cast = arrow_cast::cast_with_options(column, field.data_type(), &options)
            .map_err(|e| format!("column `{}` ({}) as {}: {e}", field.name(), column.data_type(), field.data_type()))?;
        columns.push(cast);
    }
    let options = arrow_array::RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
    RecordBatch::try_new_with_options(schema.clone(), columns, &options).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{Date32Array, Float64Array, Int64Array, StringArray};

    #[test]
    fn batches_survive_the_round_trip() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", arrow_schema::DataType::Int64, false),
            Field::new("name", arrow_schema::DataType::Utf8, true),
            Field::new("price", arrow_schema::DataType::Float64, true),
            Field::new("day", arrow_schema::DataType::Date32, true),
        ]));
        let batch = |ids: Vec<i64>| {
            let n = ids.len();
            RecordBatch::try_new(
                schema.clone(),
                vec![
                    Arc::new(Int64Array::from(ids)),
                    Arc::new(StringArray::from(
                        (0..n).map(|i| (i % 2 == 0).then(|| format!("n{i}"))).collect::<Vec<_>>(),
                    )),
                    Arc::new(Float64Array::from((0..n).map(|i| Some(i as f64 * 1.5)).collect::<Vec<_>>())),
                    Arc::new(Date32Array::from((0..n).map(|i| Some(19_000 + i as i32)).collect::<Vec<_>>())),
                ],
            )
            .unwrap()
        };
        let batches = vec![batch(vec![1, 2, 3]), batch(vec![4, 5])];
        let mut frame = to_polars(&schema, &batches).unwrap();
        assert_eq!(frame.height(), 5);
        let back = from_polars(&mut frame).unwrap();
        let rows: usize = back.iter().map(RecordBatch::num_rows).sum();
        assert_eq!(rows, 5);
        let first = &back[0];
        let ids = first.column(0).as_any().downcast_ref::<Int64Array>().unwrap();
        assert_eq!(ids.value(0), 1);
        let strings = arrow_cast::cast(first.column(1), &arrow_schema::DataType::Utf8).unwrap();
        let strings = strings.as_any().downcast_ref::<StringArray>().unwrap();
        assert_eq!(strings.value(0), "n0");
        assert!(strings.is_null(1));
        assert_eq!(first.schema().field(3).data_type(), &arrow_schema::DataType::Date32);
    }
}
