//! The plugin runtime: one wasmtime engine per process, components compiled
//! once and cached on disk, a sandbox per instance with a memory cap and a time
//! budget per call, and Arrow batches across the boundary as IPC streams.
//!
//! Not for: deciding which plugin runs where (that is the pipeline's job) or
//! knowing what any plugin computes.

mod cache;
mod discovery;
mod error;
mod instance;
mod ipc;
mod limits;
mod runtime;
mod sandbox;

pub use cache::CacheOutcome;
pub use discovery::{Catalog, sha256_hex};
pub use error::{Call, Fault, PluginError};
pub use instance::{Instance, Outputs};
pub use limits::Limits;
pub use runtime::{CONTRACT_PACKAGE, CONTRACT_VERSION, LoadedPlugin, PluginInfo, PortInfo, Runtime};

/// Host bindings generated from the WIT contract in `wit/`.
mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "plugin",
    });
}

/// Encodes `batch` as IPC and decodes it back with full validation, as the
/// boundary does; returns the rows decoded. For benchmarks.
#[doc(hidden)]
pub fn ipc_roundtrip(batch: &arrow_array::RecordBatch) -> Result<usize, String> {
    let bytes = ipc::encode(batch).map_err(|e| e.to_string())?;
    Ok(ipc::decode(bytes)?.iter().map(|b| b.num_rows()).sum())
}
