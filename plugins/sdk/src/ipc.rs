//! Arrow IPC stream bytes in and out of the guest.
//!
//! Not for: schema checks; the host checks every output against its port.

use arrow_array::RecordBatch;
use arrow_buffer::Buffer;
use arrow_ipc::reader::StreamDecoder;
use arrow_ipc::writer::StreamWriter;

use crate::Error;

/// Decodes every batch of one IPC stream, without copying the column data.
pub(crate) fn decode(bytes: Vec<u8>) -> Result<Vec<RecordBatch>, Error> {
    let mut buffer = Buffer::from_vec(bytes);
    // SAFETY: the bytes come from the host, which encodes them from arrays it
    // built or validated itself; re-validating (UTF-8 of every string, every
    // offset) would double the cost of a cleaning plugin. Were they invalid,
    // the damage would stay inside this sandboxed instance.
    let mut decoder = unsafe { StreamDecoder::new().with_skip_validation(true) };
    let mut batches = Vec::new();
    while !buffer.is_empty() {
        match decoder.decode(&mut buffer) {
            Ok(Some(batch)) => batches.push(batch),
            Ok(None) => {}
            Err(e) => return Err(Error::bad_input(format!("input is not a valid Arrow IPC stream: {e}"))),
        }
    }
    decoder.finish().map_err(|e| Error::bad_input(format!("input Arrow IPC stream is truncated: {e}")))?;
    Ok(batches)
}

/// Encodes batches that share one schema as one IPC stream.
pub(crate) fn encode(port: &str, batches: &[RecordBatch]) -> Result<Vec<u8>, Error> {
    let Some(first) = batches.first() else {
        return Ok(Vec::new());
    };
    let capacity = batches.iter().map(encoded_size_hint).sum::<usize>() + 1024;
    let mut writer = StreamWriter::try_new(Vec::with_capacity(capacity), first.schema_ref())
        .map_err(|e| Error::internal(format!("cannot start output on port `{port}`: {e}")))?;
    for batch in batches {
        if batch.schema_ref() != first.schema_ref() {
            return Err(Error::internal(format!(
                "batches emitted on port `{port}` have different schemas in one call"
            )));
        }
        writer.write(batch).map_err(|e| Error::internal(format!("cannot encode a batch for port `{port}`: {e}")))?;
    }
    writer.into_inner().map_err(|e| Error::internal(format!("cannot finish output on port `{port}`: {e}")))
}

/// Bytes of column data a batch holds. Not `get_array_memory_size`: arrays
/// decoded zero-copy share one input buffer, whose whole size that would count
/// once per column.
fn encoded_size_hint(batch: &RecordBatch) -> usize {
    batch.columns().iter().map(|c| c.to_data().get_slice_memory_size().unwrap_or(0)).sum()
}
