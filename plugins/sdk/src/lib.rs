//! The guest SDK for medallion plugins.
//!
//! A plugin author implements [`Plugin`] over Arrow [`RecordBatch`]es and calls
//! [`export_plugin!`] once. This crate is the only one that touches the WIT
//! bindings and the Arrow IPC encoding: plugin crates contain business logic
//! and nothing else.
//!
//! ```
//! use medallion_sdk::{export_plugin, Emitter, Error, Info, Plugin, Port, RecordBatch};
//!
//! struct Passthrough;
//!
//! impl Plugin for Passthrough {
//!     fn info() -> Info {
//!         Info::new("passthrough", env!("CARGO_PKG_VERSION"), "Forwards every batch")
//!             .input(Port::any("in", "any batch"))
//!             .output(Port::any("out", "the same batch"))
//!     }
//!     fn new(_config: &str) -> Result<Self, Error> { Ok(Passthrough) }
//!     fn push(&mut self, _port: &str, batch: RecordBatch, out: &mut Emitter) -> Result<(), Error> {
//!         out.emit("out", batch);
//!         Ok(())
//!     }
//! }
//!
//! export_plugin!(Passthrough);
//! ```
//!
//! Not for: anything the host does (scheduling, storage, limits).

mod adapter;
pub mod date;
mod ipc;
pub mod table;

pub use adapter::Adapter;
pub use arrow_array::{self, RecordBatch};
pub use arrow_schema::{self, DataType, Field as ArrowField, Schema, SchemaRef};
pub use medallion_window::{Aggregate, Computed, Needs, SortKey};

/// The bindings generated from `wit/`; used by [`export_plugin!`] only.
#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "plugin",
        pub_export_macro: true,
        default_bindings_module: "medallion_sdk::bindings",
        export_macro_name: "export",
    });
}

/// Exports a type that implements [`Plugin`] as the component's `transform`
/// (on wasm targets; natively it expands to nothing).
#[macro_export]
macro_rules! export_plugin {
    ($plugin:ty) => {
        // Natively the plugin crate is a plain library (for tests and for
        // benchmarks against the wasm build); only wasm exports the component.
        #[cfg(target_arch = "wasm32")]
        type __MedallionExported = $crate::Adapter<$plugin>;
        #[cfg(target_arch = "wasm32")]
        $crate::bindings::export!(__MedallionExported with_types_in $crate::bindings);
        // Natively, name the entry points so the plugin does not read as dead code.
        #[cfg(not(target_arch = "wasm32"))]
        const _: () = {
            let _ = <$plugin as $crate::Plugin>::new;
            let _ = <$plugin as $crate::Plugin>::push;
        };
    };
}

/// A business rule over Arrow batches.
///
/// The host builds one value per pipeline step with [`Plugin::new`], calls
/// [`Plugin::push`] for every input batch and [`Plugin::finish`] once at the
/// end. A plugin that needs totals or ranks over its whole input asks the
/// host for them ([`Plugin::needs`]) and stays batch by batch; state kept in
/// `self` lives across batches (a running window over sorted input, say),
/// and what is left is emitted in `finish`.
pub trait Plugin: Sized + 'static {
    /// Name, version, ports and accepted config; known before any config.
    fn info() -> Info;

    /// Builds an instance from the step's JSON config (see [`parse_config`]).
    fn new(config: &str) -> Result<Self, Error>;

    /// Output ports as this instance's config shapes them; by default the
    /// ports of [`Plugin::info`].
    fn outputs(&self) -> Vec<Port> {
        Self::info().outputs
    }

    /// What this instance asks of its input ports: columns the host
    /// computes over a port's whole input and appends to every batch, and an
    /// order the rows arrive in. A plugin that needs totals or ranks asks for
    /// them here instead of keeping its input until `finish`; by default it
    /// asks nothing.
    fn needs(&self) -> Vec<Needs> {
        Vec::new()
    }

    /// Handles one batch arriving on input port `port`.
    fn push(&mut self, port: &str, batch: RecordBatch, out: &mut Emitter) -> Result<(), Error>;

    /// Called once after the last batch.
    fn finish(&mut self, _out: &mut Emitter) -> Result<(), Error> {
        Ok(())
    }
}

/// Runs a plugin natively, as the host would run its component: one instance
/// with `config`, the batches given what it [`Plugin::needs`] on `in` (the
/// host's own implementation), each pushed on `in`, then `finish`; returns
/// what it emitted on `out`. For plugin crates' own tests (batch-split
/// invariance: the same rows in one batch and in many must give the same
/// result).
#[cfg(not(target_arch = "wasm32"))]
pub fn run_natively<P: Plugin>(config: &str, batches: Vec<RecordBatch>) -> Result<Vec<RecordBatch>, Error> {
    let mut plugin = P::new(config)?;
    let needs = plugin.needs();
    let inputs: Vec<String> = P::info().inputs.into_iter().map(|p| p.name).collect();
    let inputs: Vec<&str> = inputs.iter().map(String::as_str).collect();
    medallion_window::check_ports(&needs, &inputs).map_err(Error::internal)?;
    let batches = match needs.into_iter().find(|n| n.port == "in") {
        Some(needs) => medallion_window::prepare(&needs, batches).map_err(|e| Error::bad_input(e.to_string()))?,
        None => batches,
    };
    let mut out = Emitter::default();
    for batch in batches {
        plugin.push("in", batch, &mut out)?;
    }
    plugin.finish(&mut out)?;
    Ok(out.batches("out").to_vec())
}

/// Parses a JSON config into `C`, turning serde's message (with its line and
/// column) into a [`Error::bad_config`].
pub fn parse_config<C: serde::de::DeserializeOwned>(config: &str) -> Result<C, Error> {
    let text = if config.trim().is_empty() { "{}" } else { config };
    serde_json::from_str(text).map_err(|e| Error::bad_config(e.to_string()))
}

/// A plugin's description of itself.
#[derive(Debug, Clone)]
pub struct Info {
    name: String,
    version: String,
    description: String,
    inputs: Vec<Port>,
    outputs: Vec<Port>,
    config_schema: String,
    stateless: bool,
}

impl Info {
    /// A plugin with no ports yet, an empty config schema, and state.
    pub fn new(name: &str, version: &str, description: &str) -> Self {
        Info {
            name: name.to_owned(),
            version: version.to_owned(),
            description: description.to_owned(),
            inputs: Vec::new(),
            outputs: Vec::new(),
            config_schema: r#"{"type":"object","additionalProperties":false}"#.to_owned(),
            stateless: false,
        }
    }

    /// Adds an input port.
    pub fn input(mut self, port: Port) -> Self {
        self.inputs.push(port);
        self
    }

    /// Adds an output port.
    pub fn output(mut self, port: Port) -> Self {
        self.outputs.push(port);
        self
    }

    /// Sets the JSON Schema of the accepted config.
    pub fn config_schema(mut self, json_schema: &str) -> Self {
        self.config_schema = json_schema.to_owned();
        self
    }

    /// Declares that each output depends on its input batch alone.
    pub fn stateless(mut self) -> Self {
        self.stateless = true;
        self
    }
}

/// A named input or output and the columns it carries.
#[derive(Debug, Clone)]
pub struct Port {
    name: String,
    description: String,
    schema: Option<SchemaRef>,
}

impl Port {
    /// A port that takes batches of any schema.
    pub fn any(name: &str, description: &str) -> Self {
        Port { name: name.to_owned(), description: description.to_owned(), schema: None }
    }

    /// A port whose batches have exactly `schema`.
    pub fn with_schema(name: &str, description: &str, schema: SchemaRef) -> Self {
        Port { name: name.to_owned(), description: description.to_owned(), schema: Some(schema) }
    }
}

/// What went wrong in a plugin, and whose fault it is.
#[derive(Debug, Clone)]
pub struct Error {
    kind: ErrorKind,
    message: String,
}

#[derive(Debug, Clone, Copy)]
enum ErrorKind {
    BadConfig,
    BadInput,
    Internal,
}

impl Error {
    /// The config is malformed or breaks the plugin's rules.
    pub fn bad_config(message: impl Into<String>) -> Self {
        Error { kind: ErrorKind::BadConfig, message: message.into() }
    }

    /// An input batch is not what the port expects.
    pub fn bad_input(message: impl Into<String>) -> Self {
        Error { kind: ErrorKind::BadInput, message: message.into() }
    }

    /// Anything else.
    pub fn internal(message: impl Into<String>) -> Self {
        Error { kind: ErrorKind::Internal, message: message.into() }
    }
}

impl From<arrow_schema::ArrowError> for Error {
    fn from(e: arrow_schema::ArrowError) -> Self {
        Error::internal(e.to_string())
    }
}

/// Collects the batches a call emits, per output port.
#[derive(Debug, Default)]
pub struct Emitter {
    ports: Vec<(String, Vec<RecordBatch>)>,
}

impl Emitter {
    /// The batches emitted so far on `port` (for native tests of a plugin).
    pub fn batches(&self, port: &str) -> &[RecordBatch] {
        self.ports.iter().find(|(name, _)| name == port).map(|(_, b)| b.as_slice()).unwrap_or_default()
    }

    /// Emits `batch` on output port `port`. Empty batches are dropped.
    pub fn emit(&mut self, port: &str, batch: RecordBatch) {
        if batch.num_rows() == 0 {
            return;
        }
        match self.ports.iter_mut().find(|(name, _)| name == port) {
            Some((_, batches)) => batches.push(batch),
            None => self.ports.push((port.to_owned(), vec![batch])),
        }
    }
}
