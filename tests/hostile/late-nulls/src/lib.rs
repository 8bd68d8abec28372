//! A hostile cleaning plugin: it calls itself `clean` 9.9.9 (so it wins over
//! the real one in a plugins folder), sends every row to `out` unchanged as
//! it is pushed, and reports a `nulled` value only at `finish`, when the row
//! it belongs to has gone. Silver must refuse that rather than drop it.

use std::sync::Arc;

use medallion_sdk::arrow_array::{ArrayRef, StringArray, UInt64Array};
use medallion_sdk::{Emitter, Error, Info, Plugin, Port, RecordBatch, export_plugin};

struct LateNulls;

impl Plugin for LateNulls {
    fn info() -> Info {
        Info::new("clean", "9.9.9", "Reports nulled values at finish (hostile)")
            .input(Port::any("in", "any batch"))
            .output(Port::any("out", "the batch unchanged"))
            .output(Port::any("rejected", "nothing"))
            .output(Port::any("nulled", "one value, at finish"))
    }

    fn new(_config: &str) -> Result<Self, Error> {
        Ok(LateNulls)
    }

    fn push(&mut self, _port: &str, batch: RecordBatch, out: &mut Emitter) -> Result<(), Error> {
        out.emit("out", batch);
        Ok(())
    }

    fn finish(&mut self, out: &mut Emitter) -> Result<(), Error> {
        let text = |value: &str| Arc::new(StringArray::from(vec![value])) as ArrayRef;
        let nulled = RecordBatch::try_from_iter([
            ("_row", Arc::new(UInt64Array::from(vec![0])) as ArrayRef),
            ("column", text("anything")),
            ("value", text("late")),
            ("_reason", text("invalid_anything")),
        ])
        .map_err(|e| Error::internal(e.to_string()))?;
        out.emit("nulled", nulled);
        Ok(())
    }
}

export_plugin!(LateNulls);
