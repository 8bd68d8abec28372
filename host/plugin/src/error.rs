//! What can go wrong with a plugin, said so that a user knows which plugin,
//! which call, what happened and what to do.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// A call into a plugin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Call {
    /// `describe()`, at load time.
    Describe,
    /// `instance.create(config)`.
    Create,
    /// `instance.outputs()`.
    Outputs,
    /// `instance.needs()`.
    Needs,
    /// `instance.push(port, batch)`.
    Push,
    /// `instance.finish()`.
    Finish,
}

impl fmt::Display for Call {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Call::Describe => "describe",
            Call::Create => "create",
            Call::Outputs => "outputs",
            Call::Needs => "needs",
            Call::Push => "push",
            Call::Finish => "finish",
        })
    }
}

/// How a call ended abnormally, as opposed to the plugin returning an error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// The call ran past its time budget and was interrupted.
    Timeout(Duration),
    /// The instance tried to grow its memory past the cap.
    MemoryCap(usize),
    /// The guest panicked; the message is what it printed.
    Panic(String),
    /// Any other WebAssembly trap.
    Trap(String),
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::Timeout(budget) => write!(
                f,
                "ran past its time budget of {budget:?} and was stopped (raise `limits.call_budget_ms` if the work is legitimate)"
            ),
            Fault::MemoryCap(bytes) => write!(
                f,
                "tried to use more than its memory cap of {} MiB and was stopped (raise `limits.memory_mb` if the work is legitimate)",
                bytes >> 20
            ),
            Fault::Panic(message) => write!(f, "panicked: {message}"),
            Fault::Trap(message) => write!(f, "trapped: {message}"),
        }
    }
}

/// Any plugin failure.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    /// The plugin file could not be read.
    #[error("cannot read plugin file {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The bytes are not a valid WebAssembly component.
    #[error(
        "{} is not a valid WebAssembly component: {cause}\n  hint: plugins are wasm32-wasip2 components; build them with `cargo xtask build-plugins`",
        path.display()
    )]
    NotAComponent {
        /// The file.
        path: PathBuf,
        /// What wasmtime said.
        cause: String,
    },
    /// A component that does not export the medallion contract at all.
    #[error("{} is a component but not a medallion plugin: it exports no `{expected}` (it exports: {found})", path.display())]
    NotAPlugin {
        /// The file.
        path: PathBuf,
        /// The interface the host looks for.
        expected: String,
        /// What the component exports instead.
        found: String,
    },
    /// A plugin built against another version of the contract.
    #[error(
        "{} was built against medallion:plugin@{found}, but this host speaks medallion:plugin@{expected}\n  hint: rebuild the plugin with a medallion-sdk for contract {expected}",
        path.display()
    )]
    ContractMismatch {
        /// The file.
        path: PathBuf,
        /// The plugin's contract version.
        found: String,
        /// The host's contract version.
        expected: String,
    },
    /// A trap, timeout, memory overrun or panic inside a call.
    #[error("plugin `{plugin}` failed in `{call}`: {fault}{}", stderr_suffix(stderr))]
    Fault {
        /// The plugin's name.
        plugin: String,
        /// The call.
        call: Call,
        /// What happened.
        fault: Fault,
        /// The end of what the guest wrote to stderr during the call.
        stderr: String,
    },
    /// The plugin returned an error of its own.
    #[error("plugin `{plugin}` refused `{call}` ({kind}): {message}")]
    Returned {
        /// The plugin's name.
        plugin: String,
        /// The call.
        call: Call,
        /// `bad-config`, `bad-input` or `internal`.
        kind: &'static str,
        /// The plugin's message.
        message: String,
    },
    /// An output batch that is not Arrow IPC or breaks its port's schema.
    #[error("plugin `{plugin}` returned a bad batch on port `{port}` in `{call}`: {cause}")]
    BadOutput {
        /// The plugin's name.
        plugin: String,
        /// The call.
        call: Call,
        /// The output port.
        port: String,
        /// What is wrong with it.
        cause: String,
    },
    /// A push on a port the plugin does not declare.
    #[error("plugin `{plugin}` has no input port `{port}`; its inputs are: {known}")]
    UnknownPort {
        /// The plugin's name.
        plugin: String,
        /// The port asked for.
        port: String,
        /// The ports it has.
        known: String,
    },
    /// A call on an instance that faulted before.
    #[error("plugin `{plugin}` cannot be called again after it failed in `{call}`; create a new instance")]
    Poisoned {
        /// The plugin's name.
        plugin: String,
        /// The call that failed.
        call: Call,
    },
    /// The plugin's self-description is inconsistent.
    #[error("plugin `{plugin}` describes itself wrongly: {cause}")]
    BadDescription {
        /// The plugin's name.
        plugin: String,
        /// What is wrong.
        cause: String,
    },
    /// An input batch the host could not encode.
    #[error("cannot encode a batch for plugin `{plugin}`: {cause}")]
    Encode {
        /// The plugin's name.
        plugin: String,
        /// What arrow said.
        cause: String,
    },
    /// The engine could not be set up or could not link the plugin.
    #[error("plugin engine: {0}")]
    Engine(String),
}

fn stderr_suffix(stderr: &str) -> String {
    if stderr.trim().is_empty() { String::new() } else { format!("\n  plugin stderr: {}", stderr.trim()) }
}
