//! The medallion host: a general engine that runs a medallion pipeline whose
//! business rules are sandboxed WebAssembly plugins.
//!
//! Architecture invariant: nothing under `host/` names a business column;
//! the e-commerce knowledge lives in `pipeline.yaml` and `plugins/`.

pub mod api;
pub mod cancel;
pub mod frame;
pub mod gold;
pub mod lake;
pub mod pipeline;
pub mod plugin;
pub mod progress;
pub mod silver;
pub mod sources;
mod suggest;
