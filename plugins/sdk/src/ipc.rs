//! Arrow IPC stream bytes in and out of the guest.
//!
//! Not for: schema checks; the host checks every output against its port.

use std::collections::HashMap;
use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_buffer::Buffer;
use arrow_data::UnsafeFlag;
use arrow_ipc::MessageHeader;
use arrow_ipc::reader::{RecordBatchDecoder, StreamDecoder};
use arrow_ipc::writer::StreamWriter;
use arrow_schema::SchemaRef;

use crate::Error;

/// Decodes every batch of one IPC stream, without copying or re-validating
/// the column data.
///
/// The bytes come from the host, which encodes them from arrays it built or
/// validated itself; re-validating them (UTF-8 of every string, every
/// offset) would double the cost of a cleaning plugin, and were they invalid,
/// the damage would stay inside this sandboxed instance. arrow-ipc's
/// `StreamDecoder` does not pass its skip-validation flag on to the batches
/// it decodes, so the stream's framing is walked here; a stream with
/// dictionaries (which the host does not send) goes to arrow's own decoder.
pub(crate) fn decode(bytes: Vec<u8>) -> Result<Vec<RecordBatch>, Error> {
    if bytes.is_empty() {
        return Ok(Vec::new());
    }
    let stream = Buffer::from_vec(bytes);
    let mut schema: Option<SchemaRef> = None;
    let mut batches = Vec::new();
    let mut at = 0;
    while at < stream.len() {
        let Some((metadata, body_at)) = message_at(&stream, at)? else {
            return Ok(batches);
        };
        let message = arrow_ipc::root_as_message(metadata).map_err(|e| invalid(e.to_string()))?;
        let body_len = usize::try_from(message.bodyLength()).map_err(|_| invalid("a negative body length"))?;
        if body_len > stream.len() - body_at {
            return Err(truncated());
        }
        let body = stream.slice_with_length(body_at, body_len);
        match message.header_type() {
            MessageHeader::Schema => {
                let header = message.header_as_schema().ok_or_else(|| invalid("an unreadable schema"))?;
                let decoded = arrow_ipc::convert::try_fb_to_schema(header).map_err(|e| invalid(e.to_string()))?;
                schema = Some(Arc::new(decoded));
            }
            MessageHeader::RecordBatch => {
                let header = message.header_as_record_batch().ok_or_else(|| invalid("an unreadable batch"))?;
                let schema = schema.clone().ok_or_else(|| invalid("a batch before the schema"))?;
                let mut trusted = UnsafeFlag::new();
                // SAFETY: see above; the host encoded these arrays from valid ones.
                unsafe { trusted.set(true) };
                let no_dictionaries = HashMap::new();
                let batch = RecordBatchDecoder::try_new(&body, header, schema, &no_dictionaries, &message.version())
                    .and_then(|decoder| decoder.with_skip_validation(trusted).read_record_batch())
                    .map_err(|e| invalid(e.to_string()))?;
                batches.push(batch);
            }
            _ => return decode_with_arrow(stream),
        }
        at = body_at + body_len;
    }
    Err(truncated())
}

/// The metadata of the message at `at` and where its body starts; `None` at
/// the end-of-stream marker.
fn message_at(stream: &Buffer, at: usize) -> Result<Option<(&[u8], usize)>, Error> {
    let word =
        |i: usize| stream.get(i..i + 4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]])).ok_or_else(truncated);
    // A continuation marker, then the length; streams before format 0.15
    // have the length alone.
    let (length, metadata_at) = match word(at)? {
        u32::MAX => (word(at + 4)?, at + 8),
        length => (length, at + 4),
    };
    if length == 0 {
        return Ok(None);
    }
    let metadata = stream.get(metadata_at..metadata_at + length as usize).ok_or_else(truncated)?;
    Ok(Some((metadata, metadata_at + length as usize)))
}

/// arrow's own stream decoder, validating everything: for streams this
/// module does not walk itself.
fn decode_with_arrow(mut stream: Buffer) -> Result<Vec<RecordBatch>, Error> {
    let mut decoder = StreamDecoder::new();
    let mut batches = Vec::new();
    while !stream.is_empty() {
        if let Some(batch) = decoder.decode(&mut stream).map_err(|e| invalid(e.to_string()))? {
            batches.push(batch);
        }
    }
    decoder.finish().map_err(|_| truncated())?;
    Ok(batches)
}

fn invalid(cause: impl std::fmt::Display) -> Error {
    Error::bad_input(format!("input is not a valid Arrow IPC stream: {cause}"))
}

fn truncated() -> Error {
    Error::bad_input("input Arrow IPC stream is truncated")
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::{ArrayRef, Int64Array, RecordBatch, StringArray};

    use super::*;

    fn batch(rows: std::ops::Range<i64>) -> RecordBatch {
        let ids: ArrayRef = Arc::new(Int64Array::from_iter(rows.clone().map(|i| (i % 3 != 0).then_some(i))));
        let names: ArrayRef = Arc::new(StringArray::from_iter_values(rows.map(|i| format!("name-{i}"))));
        RecordBatch::try_from_iter([("id", ids), ("name", names)]).unwrap_or_else(|e| panic!("{e}"))
    }

    fn stream_of(batches: &[RecordBatch]) -> Vec<u8> {
        let mut writer = StreamWriter::try_new(Vec::new(), batches[0].schema_ref()).unwrap_or_else(|e| panic!("{e}"));
        for batch in batches {
            writer.write(batch).unwrap_or_else(|e| panic!("{e}"));
        }
        writer.into_inner().unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn every_batch_of_a_stream_comes_back_as_written() {
        let whole = batch(0..1000);
        let written = [whole.slice(0, 10), whole.slice(10, 990), whole.slice(1000, 0)];
        let decoded = decode(stream_of(&written)).unwrap_or_else(|e| panic!("{}", e.message));
        assert_eq!(decoded.len(), written.len());
        for (i, (got, want)) in decoded.iter().zip(&written).enumerate() {
            assert_eq!(got.schema(), want.schema(), "batch {i}");
            for (c, (g, w)) in got.columns().iter().zip(want.columns()).enumerate() {
                assert_eq!(g.to_data(), w.to_data(), "batch {i} column {c}");
            }
        }
    }

    #[test]
    fn an_empty_input_holds_no_batches() {
        assert!(decode(Vec::new()).unwrap_or_else(|e| panic!("{}", e.message)).is_empty());
    }

    #[test]
    fn a_stream_cut_anywhere_is_refused_as_truncated_or_invalid() {
        let bytes = stream_of(&[batch(0..100)]);
        for cut in [3, 7, 100, bytes.len() - 9, bytes.len() - 1] {
            let error = decode(bytes[..cut].to_vec()).err().unwrap_or_else(|| panic!("cut at {cut} accepted"));
            assert!(error.message.contains("Arrow IPC stream"), "cut at {cut}: {}", error.message);
        }
    }

    #[test]
    fn bytes_that_are_not_ipc_are_refused() {
        let error = decode(b"id,name\n1,one\n".to_vec()).err().unwrap_or_else(|| panic!("text accepted"));
        assert!(error.message.starts_with("input"), "{}", error.message);
    }

    #[test]
    fn a_stream_with_dictionaries_goes_to_arrows_own_decoder() {
        let values: arrow_array::DictionaryArray<arrow_array::types::Int32Type> = ["a", "b", "a"].into_iter().collect();
        let written =
            RecordBatch::try_from_iter([("tag", Arc::new(values) as ArrayRef)]).unwrap_or_else(|e| panic!("{e}"));
        let decoded = decode(stream_of(std::slice::from_ref(&written))).unwrap_or_else(|e| panic!("{}", e.message));
        assert_eq!(decoded, [written]);
    }
}
