//! A hostile plugin. It speaks the contract through raw bindings (not the
//! SDK) so that it can break every promise the SDK keeps. Its config is the
//! name of the misbehaviour to show on `push`:
//!
//! - `loop`: never returns;
//! - `memory`: allocates until something stops it;
//! - `panic`, `trap`: dies;
//! - `wrong-schema`: emits a batch that breaks its declared `out` schema;
//! - `not-ipc`: emits bytes that are not Arrow IPC;
//! - `undeclared-port`: emits on a port it never declared;
//! - `escape`: tries the file system, the network, the environment and the
//!   clock, and reports what it got as a batch on `probes`;
//! - `noisy`: prints far more than the log keeps, then behaves;
//! - `good`: forwards its input to `probes` unchanged;
//! - `needs-rank`: asks the host for a rank of `id` (`needs`), then is good;
//! - `needs-undeclared-port`: asks something of an input port it does not
//!   declare.
//!
//! The config is the mode as a JSON string, or an object whose `"mode"` is
//! (to stand in a step whose config is an object).

#![cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]

use std::cell::Cell;
use std::sync::Arc;

use arrow_array::{ArrayRef, Int64Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};

mod bindings {
    wit_bindgen::generate!({ path: "../../../wit", world: "plugin" });
}

use bindings::exports::medallion::plugin::transform::{
    Aggregate, ComputedColumn, ErrorKind, Field as WitField, Guest, GuestInstance, InputNeeds, Instance, Output,
    PluginError, PluginInfo, Port,
};

struct Evil;

struct EvilInstance {
    mode: String,
    pushes: Cell<u64>,
}

impl Guest for Evil {
    type Instance = EvilInstance;

    fn describe() -> PluginInfo {
        PluginInfo {
            name: "evil".to_owned(),
            version: "0.1.0".to_owned(),
            description: "Misbehaves on purpose, as its config says.".to_owned(),
            inputs: vec![port("in", None)],
            outputs: out_ports(),
            config_schema: r#"{"type":"string"}"#.to_owned(),
            stateless: false,
        }
    }
}

fn port(name: &str, fields: Option<Vec<WitField>>) -> Port {
    Port { name: name.to_owned(), description: String::new(), fields }
}

fn out_ports() -> Vec<Port> {
    let id = WitField { name: "id".to_owned(), data_type: "Int64".to_owned(), nullable: false };
    vec![port("out", Some(vec![id])), port("probes", None), port("rejected", None)]
}

impl GuestInstance for EvilInstance {
    fn create(config: String) -> Result<Instance, PluginError> {
        let mode = match config.split_once(r#""mode":""#) {
            Some((_, rest)) => {
                rest.trim_start().trim_start_matches('"').split('"').next().unwrap_or_default().to_owned()
            }
            None => config.trim().trim_matches('"').to_owned(),
        };
        if mode == "bad-config" {
            return Err(PluginError { kind: ErrorKind::BadConfig, message: "bad-config asked for".to_owned() });
        }
        Ok(Instance::new(EvilInstance { mode, pushes: Cell::new(0) }))
    }

    fn outputs(&self) -> Vec<Port> {
        out_ports()
    }

    fn needs(&self) -> Vec<InputNeeds> {
        let rank = ComputedColumn {
            name: "_rank".to_owned(),
            aggregate: Aggregate::RankAscending,
            of: Some("id".to_owned()),
            weight: None,
            per: None,
        };
        let on = |port: &str| InputNeeds { port: port.to_owned(), computed: vec![rank.clone()], sorted_by: Vec::new() };
        match self.mode.as_str() {
            "needs-rank" => vec![on("in")],
            "needs-undeclared-port" => vec![on("elsewhere")],
            _ => Vec::new(),
        }
    }

    fn push(&self, _port: String, batch: Vec<u8>) -> Result<Vec<Output>, PluginError> {
        self.pushes.set(self.pushes.get() + 1);
        match self.mode.as_str() {
            "loop" => {
                let mut n = 0u64;
                loop {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
            }
            "memory" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1u8; 16 << 20]);
                    std::hint::black_box(&hoard);
                }
            }
            "panic" => panic!("evil plugin panicked on purpose"),
            "trap" => trap(),
            "wrong-schema" => {
                let names: ArrayRef = Arc::new(StringArray::from(vec!["not", "an", "id"]));
                let batch = RecordBatch::try_from_iter([("name", names)]).map_err(internal)?;
                Ok(vec![Output { port: "out".to_owned(), batches: encode(&batch)? }])
            }
            "null-in-non-null" => {
                let ids: ArrayRef = Arc::new(Int64Array::from(vec![Some(1), None]));
                let schema = Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, true)]));
                let batch = RecordBatch::try_new(schema, vec![ids]).map_err(internal)?;
                Ok(vec![Output { port: "out".to_owned(), batches: encode(&batch)? }])
            }
            "not-ipc" => Ok(vec![Output { port: "out".to_owned(), batches: b"definitely not arrow".to_vec() }]),
            "undeclared-port" => Ok(vec![Output { port: "elsewhere".to_owned(), batches: batch }]),
            "escape" => {
                let batch = probes();
                Ok(vec![Output { port: "probes".to_owned(), batches: encode(&batch)? }])
            }
            "noisy" => {
                let line = "x".repeat(1023);
                for _ in 0..1024 {
                    println!("{line}");
                }
                Ok(vec![Output { port: "probes".to_owned(), batches: batch }])
            }
            _ => Ok(vec![Output { port: "probes".to_owned(), batches: batch }]),
        }
    }

    fn finish(&self) -> Result<Vec<Output>, PluginError> {
        Ok(Vec::new())
    }
}

#[cfg(target_arch = "wasm32")]
fn trap() -> ! {
    core::arch::wasm32::unreachable()
}

#[cfg(not(target_arch = "wasm32"))]
fn trap() -> ! {
    std::process::abort()
}

/// Everything the sandbox should deny, tried and reported as (probe, result).
fn probes() -> RecordBatch {
    let mut rows: Vec<(&str, String)> = Vec::new();
    let outcome = |r: Result<String, std::io::Error>| match r {
        Ok(v) => format!("ok: {v}"),
        Err(e) => format!("denied: {e}"),
    };
    rows.push(("read /etc/passwd", outcome(std::fs::read_to_string("/etc/passwd").map(|s| s.len().to_string()))));
    rows.push(("list /", outcome(std::fs::read_dir("/").map(|d| d.count().to_string()))));
    rows.push(("create /tmp/evil", outcome(std::fs::write("/tmp/evil-plugin-was-here", b"x").map(|()| String::new()))));
    rows.push((
        "connect 127.0.0.1:22",
        outcome(std::net::TcpStream::connect("127.0.0.1:22").map(|s| format!("{:?}", s.peer_addr()))),
    ));
    rows.push(("env vars", format!("{}", std::env::vars().count())));
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    rows.push(("wall clock secs", now.to_string()));
    let probe: ArrayRef = Arc::new(StringArray::from_iter_values(rows.iter().map(|(p, _)| *p)));
    let result: ArrayRef = Arc::new(StringArray::from_iter_values(rows.iter().map(|(_, r)| r.as_str())));
    RecordBatch::try_from_iter([("probe", probe), ("result", result)])
        .unwrap_or_else(|_| RecordBatch::new_empty(Arc::new(Schema::empty())))
}

fn encode(batch: &RecordBatch) -> Result<Vec<u8>, PluginError> {
    let mut writer = arrow_ipc::writer::StreamWriter::try_new(Vec::new(), batch.schema_ref()).map_err(internal)?;
    writer.write(batch).map_err(internal)?;
    writer.into_inner().map_err(internal)
}

fn internal(e: impl std::fmt::Display) -> PluginError {
    PluginError { kind: ErrorKind::Internal, message: e.to_string() }
}

#[cfg(target_arch = "wasm32")]
bindings::export!(Evil with_types_in bindings);
