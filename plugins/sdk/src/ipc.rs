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
/// Re-validating the host's input (UTF-8 of every string, every offset)
/// would add a sixth to the cost of a cleaning plugin. Skipping it is safe
/// for the host whatever the bytes hold: were they invalid (a bug in the
/// host or in a library it read them with), the damage would stay inside
/// this sandboxed instance, and the host validates everything it gets back.
///
/// arrow-ipc 60.1's `StreamDecoder` does not pass its skip-validation flag
/// on to the batches it decodes, so the stream's framing is walked here (the
/// walk can go once arrow forwards the flag). A stream with other messages
/// (dictionaries, say, from a categorical column) goes to arrow's own
/// decoder, which validates.
pub(crate) fn decode(bytes: Vec<u8>) -> Result<Vec<RecordBatch>, Error> {
    let stream = Buffer::from_vec(bytes);
    let mut schema: Option<SchemaRef> = None;
    let mut batches = Vec::new();
    let mut at = 0;
    // As arrow does, a stream may end at a message boundary without the
    // end-of-stream marker.
    while at < stream.len() {
        let (body_at, metadata) = message_at(&stream, at)?;
        let Some(metadata) = metadata else {
            if body_at < stream.len() {
                return Err(invalid("bytes after the end-of-stream marker"));
            }
            break;
        };
        let message = arrow_ipc::root_as_message(metadata).map_err(|e| invalid(e.to_string()))?;
        let body_len = usize::try_from(message.bodyLength()).map_err(|_| invalid("a body length out of range"))?;
        if body_len > stream.len() - body_at {
            return Err(truncated());
        }
        let body = stream.slice_with_length(body_at, body_len);
        match message.header_type() {
            MessageHeader::Schema if schema.is_some() => return Err(invalid("a second schema")),
            MessageHeader::Schema => {
                let header = message.header_as_schema().ok_or_else(|| invalid("an unreadable schema"))?;
                let decoded = arrow_ipc::convert::try_fb_to_schema(header).map_err(|e| invalid(e.to_string()))?;
                schema = Some(Arc::new(decoded));
            }
            MessageHeader::RecordBatch => {
                let header = message.header_as_record_batch().ok_or_else(|| invalid("an unreadable batch"))?;
                let schema = schema.clone().ok_or_else(|| invalid("a batch before the schema"))?;
                let mut trusted = UnsafeFlag::new();
                // SAFETY: invalid data cannot reach past this instance's
                // memory (see above).
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
    Ok(batches)
}

/// Where the body of the message at `at` starts, and its metadata; at the
/// end-of-stream marker, where the marker ends and `None`.
fn message_at(stream: &Buffer, at: usize) -> Result<(usize, Option<&[u8]>), Error> {
    let word = |i: usize| {
        let bytes = stream.get(i..i.checked_add(4)?)?;
        Some(u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
    };
    // A continuation marker, then the length; streams before format 0.15
    // have the length alone.
    let (length, metadata_at) = match word(at).ok_or_else(truncated)? {
        u32::MAX => (word(at + 4).ok_or_else(truncated)?, at + 8),
        length => (length, at + 4),
    };
    if length == 0 {
        return Ok((metadata_at, None));
    }
    let body_at =
        usize::try_from(length).ok().and_then(|length| metadata_at.checked_add(length)).ok_or_else(truncated)?;
    let metadata = stream.get(metadata_at..body_at).ok_or_else(truncated)?;
    Ok((body_at, Some(metadata)))
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
        encode("in", batches).unwrap_or_else(|e| panic!("{}", e.message))
    }

    fn refused(bytes: &[u8]) -> String {
        decode(bytes.to_vec()).err().map(|e| e.message).unwrap_or_else(|| panic!("accepted {} bytes", bytes.len()))
    }

    /// The stream's messages without the continuation markers (the framing
    /// before format 0.15): a 4-byte length, the metadata, the body.
    fn legacy(bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut at = 0;
        while at < bytes.len() {
            assert_eq!(&bytes[at..at + 4], &[0xff; 4]);
            let length = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().unwrap_or_else(|e| panic!("{e}")));
            let end = if length == 0 {
                at + 8
            } else {
                let message = arrow_ipc::root_as_message(&bytes[at + 8..at + 8 + length as usize])
                    .unwrap_or_else(|e| panic!("{e}"));
                at + 8 + length as usize + message.bodyLength() as usize
            };
            out.extend_from_slice(&bytes[at + 4..end]);
            at = end;
        }
        out
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
    fn a_stream_cut_inside_a_message_is_refused() {
        let bytes = stream_of(&[batch(0..100)]);
        for cut in [3, 7, 100, bytes.len() - 9, bytes.len() - 1] {
            assert!(refused(&bytes[..cut]).contains("Arrow IPC stream"), "cut at {cut}");
        }
    }

    #[test]
    fn a_stream_may_end_without_its_end_of_stream_marker_as_arrow_allows() {
        let written = batch(0..100);
        let bytes = stream_of(std::slice::from_ref(&written));
        let decoded = decode(bytes[..bytes.len() - 8].to_vec()).unwrap_or_else(|e| panic!("{}", e.message));
        assert_eq!(decoded, [written]);
    }

    #[test]
    fn bytes_after_the_end_of_stream_marker_are_refused() {
        let mut bytes = stream_of(&[batch(0..10)]);
        bytes.extend_from_slice(b"more");
        assert!(refused(&bytes).contains("after the end-of-stream marker"));
    }

    #[test]
    fn a_second_schema_is_refused() {
        let mut bytes = stream_of(&[batch(0..10)]);
        bytes.truncate(bytes.len() - 8);
        bytes.extend(stream_of(&[batch(10..20)]));
        assert!(refused(&bytes).contains("a second schema"));
    }

    #[test]
    fn a_length_past_the_end_is_refused_as_truncated() {
        let mut bytes = vec![0xff; 4];
        bytes.extend_from_slice(&u32::MAX.to_le_bytes());
        bytes.extend_from_slice(&[0; 16]);
        assert!(refused(&bytes).contains("truncated"));
    }

    #[test]
    fn the_framing_before_format_0_15_is_read_too() {
        let written = [batch(0..50), batch(50..60)];
        let decoded = decode(legacy(&stream_of(&written))).unwrap_or_else(|e| panic!("{}", e.message));
        assert_eq!(decoded, written);
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
