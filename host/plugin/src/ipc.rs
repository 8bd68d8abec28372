//! Arrow IPC on the host side of the boundary, and the schema check that every
//! output batch passes.

use arrow_array::RecordBatch;
use arrow_buffer::Buffer;
use arrow_ipc::reader::StreamDecoder;
use arrow_ipc::writer::StreamWriter;
use arrow_schema::Schema;

/// Encodes one batch as an IPC stream (schema, batch, end marker) into
/// `out`, replacing what it held.
pub(crate) fn encode_into(batch: &RecordBatch, out: &mut Vec<u8>) -> Result<(), arrow_schema::ArrowError> {
    out.clear();
    // Column data plus room for the metadata; see the SDK on why not
    // `get_array_memory_size`.
    let capacity =
        batch.columns().iter().map(|c| c.to_data().get_slice_memory_size().unwrap_or(0)).sum::<usize>() + 1024;
    out.reserve(capacity);
    let mut writer = StreamWriter::try_new(out, batch.schema_ref())?;
    writer.write(batch)?;
    writer.finish()
}

/// Decodes every batch of an IPC stream without copying its column data.
/// Bytes from a plugin are untrusted: arrow-ipc panics on some malformed
/// streams (a buffer offset past the end, a misaligned buffer: found by
/// bench/fuzz.sh, kept in tests/fuzz-regressions/), so a panic is caught and
/// reported as an invalid stream.
pub(crate) fn decode(bytes: Vec<u8>) -> Result<Vec<RecordBatch>, String> {
    std::panic::catch_unwind(move || decode_stream(bytes))
        .unwrap_or_else(|_| Err("not a valid Arrow IPC stream: its buffers do not fit its data".to_owned()))
}

fn decode_stream(bytes: Vec<u8>) -> Result<Vec<RecordBatch>, String> {
    let mut buffer = Buffer::from_vec(bytes);
    let mut decoder = StreamDecoder::new();
    let mut batches = Vec::new();
    while !buffer.is_empty() {
        match decoder.decode(&mut buffer) {
            Ok(Some(batch)) => batches.push(batch),
            Ok(None) => {}
            Err(e) => return Err(format!("not a valid Arrow IPC stream: {e}")),
        }
    }
    decoder.finish().map_err(|e| format!("not a valid Arrow IPC stream (it ends early): {e}"))?;
    Ok(batches)
}

/// Checks that `batch` has exactly the declared columns: names, types, and no
/// nulls where the port says there are none.
pub(crate) fn check_schema(declared: &Schema, batch: &RecordBatch) -> Result<(), String> {
    let actual = batch.schema_ref();
    let names = |s: &Schema| s.fields().iter().map(|f| f.name().as_str()).collect::<Vec<_>>().join(", ");
    if declared.fields().len() != actual.fields().len() {
        return Err(format!("expected columns [{}], got [{}]", names(declared), names(actual)));
    }
    for (i, (want, got)) in declared.fields().iter().zip(actual.fields()).enumerate() {
        if want.name() != got.name() {
            return Err(format!("column {i} should be `{}`, got `{}`", want.name(), got.name()));
        }
        if want.data_type() != got.data_type() {
            return Err(format!("column `{}` should be {}, got {}", want.name(), want.data_type(), got.data_type()));
        }
        if !want.is_nullable() && batch.column(i).null_count() > 0 {
            return Err(format!("column `{}` is declared non-null but holds nulls", want.name()));
        }
    }
    Ok(())
}
