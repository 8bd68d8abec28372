//! Forwards every batch unchanged: the smallest plugin, and the measure of the
//! boundary's own cost.

use medallion_sdk::{Emitter, Error, Info, Plugin, Port, RecordBatch, export_plugin};

struct Passthrough;

impl Plugin for Passthrough {
    fn info() -> Info {
        Info::new("passthrough", env!("CARGO_PKG_VERSION"), "Forwards every batch on `in` to `out` unchanged.")
            .input(Port::any("in", "batches of any schema"))
            .output(Port::any("out", "the same batches"))
            .stateless()
    }

    fn new(config: &str) -> Result<Self, Error> {
        medallion_sdk::parse_config::<Empty>(config)?;
        Ok(Passthrough)
    }

    fn push(&mut self, _port: &str, batch: RecordBatch, out: &mut Emitter) -> Result<(), Error> {
        out.emit("out", batch);
        Ok(())
    }
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Empty {}

export_plugin!(Passthrough);
