//! The plugin runtime: one wasmtime engine per process, components compiled
//! once and cached on disk, a sandbox per instance with a memory cap and a time
//! budget per call, and Arrow batches across the boundary as IPC streams.
//!
//! Not for: deciding which plugin runs where (that is the pipeline's job) or
//! knowing what any plugin computes.

mod cache;
mod discovery;
mod error;
mod info;
mod instance;
mod ipc;
mod limits;
mod runtime;
mod sandbox;

pub use cache::CacheOutcome;
pub use discovery::{Catalog, sha256_hex};
pub use error::{Call, Fault, PluginError};
pub use info::{PluginInfo, PortInfo};
pub use instance::{Instance, Outputs};
pub use limits::Limits;
pub use runtime::{CONTRACT_PACKAGE, CONTRACT_VERSION, LoadedPlugin, Runtime};

/// What the fuzzing benchmark (bench/fuzz.sh) calls: the decoding of the
/// Arrow IPC bytes a plugin hands back. Not an API.
#[doc(hidden)]
pub mod fuzzing {
    /// Decodes `bytes` as the host decodes a plugin's output; the rows, or
    /// why they were refused.
    pub fn decode_ipc(bytes: Vec<u8>) -> Result<usize, String> {
        let batches = crate::ipc::decode(bytes)?;
        Ok(batches.iter().map(arrow_array::RecordBatch::num_rows).sum())
    }
}

/// Host bindings generated from the WIT contract in `wit/`.
mod bindings {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "plugin",
    });
}

/// Checks that a plugin has the input and output ports a step uses, naming
/// what it has instead.
pub fn check_ports(info: &PluginInfo, inputs: &[&str], outputs: &[&str]) -> Result<(), String> {
    let names = |ports: &[PortInfo]| ports.iter().map(|p| format!("`{}`", p.name)).collect::<Vec<_>>().join(", ");
    for input in inputs {
        if !info.inputs.iter().any(|p| p.name == *input) {
            return Err(format!(
                "plugin `{}` has no input port `{input}` (it has {}); this step pushes on `{input}`",
                info.name,
                names(&info.inputs)
            ));
        }
    }
    for output in outputs {
        if !info.outputs.iter().any(|p| p.name == *output) {
            return Err(format!(
                "plugin `{}` has no output port `{output}` (it has {}); this step reads {}",
                info.name,
                names(&info.outputs),
                outputs.iter().map(|o| format!("`{o}`")).collect::<Vec<_>>().join(" and ")
            ));
        }
    }
    Ok(())
}

/// Encodes `batch` as IPC and decodes it back with full validation, as the
/// boundary does; returns the rows decoded. For benchmarks.
#[doc(hidden)]
pub fn ipc_roundtrip(batch: &arrow_array::RecordBatch) -> Result<usize, String> {
    let mut bytes = Vec::new();
    ipc::encode_into(batch, &mut bytes).map_err(|e| e.to_string())?;
    Ok(ipc::decode(bytes)?.iter().map(|b| b.num_rows()).sum())
}
