//! One configured plugin instance and the guarded calls into it.
//!
//! Every call runs under the instance's time budget and memory cap; the
//! guest's output goes to the log; a fault poisons the instance; every output
//! batch is decoded and checked against its port before the caller sees it.

use std::sync::Arc;
use std::time::Duration;

use arrow_array::RecordBatch;
use medallion_window::Needs;
use wasmtime::component::ResourceAny;
use wasmtime::{Store, Trap};

use super::bindings::exports::medallion::plugin::transform as wit;
use super::bindings::{Plugin, PluginPre};
use super::error::{Call, Fault, PluginError};
use super::info::{PluginInfo, PortInfo, needs_from_wit};
use super::limits::EPOCH_TICK;
use super::sandbox::Sandbox;
use super::{Limits, ipc};

/// Batches emitted by one call, per output port, in the order emitted.
pub type Outputs = Vec<(String, Vec<RecordBatch>)>;

/// A configured plugin instance.
pub struct Instance {
    store: Store<Sandbox>,
    bindings: Plugin,
    handle: ResourceAny,
    info: Arc<PluginInfo>,
    outputs: Vec<PortInfo>,
    needs: Vec<Needs>,
    limits: Limits,
    poisoned: Option<Call>,
    /// The IPC bytes of the batch being pushed, kept between calls so that a
    /// push writes into memory already mapped.
    encoded: Vec<u8>,
}

/// Above this, the encode buffer is given back after the call rather than
/// kept for the next.
const KEEP_ENCODED_BYTES: usize = 64 << 20;

impl Instance {
    pub(crate) fn create(
        pre: &PluginPre<Sandbox>,
        info: Arc<PluginInfo>,
        config: &str,
        limits: Limits,
    ) -> Result<Self, PluginError> {
        let mut store = Store::new(pre.engine(), Sandbox::new(&limits));
        store.limiter(|sandbox| &mut sandbox.memory);
        // What one call may return is bounded by the instance's memory cap
        // already; wasmtime's own default (128 MiB) would refuse the result
        // of an aggregating plugin's `finish` over a large table.
        store.set_hostcall_fuel(limits.memory_bytes);
        let name = info.name.as_str();
        let (bindings, created) = guarded(&mut store, name, Call::Create, &limits, |store| {
            let bindings = pre.instantiate(&mut *store)?;
            let created = bindings.medallion_plugin_transform().instance().call_create(&mut *store, config)?;
            Ok((bindings, created))
        })?;
        let handle = created.map_err(|e| returned(name, Call::Create, e))?;
        let raw_outputs = guarded(&mut store, name, Call::Outputs, &limits, |store| {
            bindings.medallion_plugin_transform().instance().call_outputs(&mut *store, handle)
        })?;
        let outputs =
            raw_outputs.into_iter().map(|port| PortInfo::from_wit(name, port)).collect::<Result<Vec<_>, _>>()?;
        let raw_needs = guarded(&mut store, name, Call::Needs, &limits, |store| {
            bindings.medallion_plugin_transform().instance().call_needs(&mut *store, handle)
        })?;
        let needs = needs_from_wit(&info, raw_needs)?;
        Ok(Instance { store, bindings, handle, info, outputs, needs, limits, poisoned: None, encoded: Vec::new() })
    }

    /// The plugin's description.
    pub fn info(&self) -> &PluginInfo {
        &self.info
    }

    /// The output ports as this instance's config shapes them.
    pub fn outputs(&self) -> &[PortInfo] {
        &self.outputs
    }

    /// What this instance asks of the batches pushed on `port`: columns
    /// computed over the port's whole input and an order
    /// (`medallion_window::prepare` gives them); `None`: batches as they come.
    pub fn needs(&self, port: &str) -> Option<&Needs> {
        self.needs.iter().find(|n| n.port == port && !n.is_empty())
    }

    /// The largest the instance's linear memory has grown, in bytes (it
    /// never shrinks): what the plugin's memory cap is measured against.
    pub fn memory_peak(&self) -> usize {
        self.store.data().memory.peak
    }

    /// Pushes one batch on input port `port`.
    pub fn push(&mut self, port: &str, batch: &RecordBatch) -> Result<Outputs, PluginError> {
        if !self.info.inputs.iter().any(|p| p.name == port) {
            let known = self.info.inputs.iter().map(|p| format!("`{}`", p.name)).collect::<Vec<_>>().join(", ");
            return Err(PluginError::UnknownPort { plugin: self.info.name.clone(), port: port.to_owned(), known });
        }
        self.refuse_if_poisoned()?;
        let mut encoded = std::mem::take(&mut self.encoded);
        let raw = match ipc::encode_into(batch, &mut encoded) {
            Ok(()) => self.call(Call::Push, |store, bindings, handle| {
                bindings.medallion_plugin_transform().instance().call_push(store, handle, port, &encoded)
            }),
            Err(e) => Err(PluginError::Encode { plugin: self.info.name.clone(), cause: e.to_string() }),
        };
        if encoded.capacity() <= KEEP_ENCODED_BYTES {
            self.encoded = encoded;
        }
        self.check_outputs(Call::Push, raw?)
    }

    /// Signals the end of input and returns what the plugin emits last.
    pub fn finish(&mut self) -> Result<Outputs, PluginError> {
        let raw = self.call(Call::Finish, |store, bindings, handle| {
            bindings.medallion_plugin_transform().instance().call_finish(store, handle)
        })?;
        self.check_outputs(Call::Finish, raw)
    }

    fn call<R>(
        &mut self,
        call: Call,
        run: impl FnOnce(&mut Store<Sandbox>, &Plugin, ResourceAny) -> wasmtime::Result<Result<R, wit::PluginError>>,
    ) -> Result<R, PluginError> {
        self.refuse_if_poisoned()?;
        let (bindings, handle) = (&self.bindings, self.handle);
        let result =
            guarded(&mut self.store, &self.info.name, call, &self.limits, |store| run(store, bindings, handle));
        if result.is_err() {
            self.poisoned = Some(call);
        }
        result?.map_err(|e| returned(&self.info.name, call, e))
    }

    /// An instance that faulted or broke the contract is not called again.
    fn refuse_if_poisoned(&self) -> Result<(), PluginError> {
        match self.poisoned {
            Some(failed) => Err(PluginError::Poisoned { plugin: self.info.name.clone(), call: failed }),
            None => Ok(()),
        }
    }

    /// Decodes and checks a call's outputs; a plugin that breaks the contract
    /// is not called again.
    fn check_outputs(&mut self, call: Call, raw: Vec<wit::Output>) -> Result<Outputs, PluginError> {
        let checked = self.decode_outputs(call, raw);
        if checked.is_err() {
            self.poisoned = Some(call);
        }
        checked
    }

    fn decode_outputs(&self, call: Call, raw: Vec<wit::Output>) -> Result<Outputs, PluginError> {
        let mut outputs: Outputs = Vec::with_capacity(raw.len());
        for wit::Output { port, batches } in raw {
            let bad = |cause: String| PluginError::BadOutput {
                plugin: self.info.name.clone(),
                call,
                port: port.clone(),
                cause,
            };
            let declared = self
                .outputs
                .iter()
                .find(|p| p.name == port)
                .ok_or_else(|| bad("the plugin declares no such output port".to_owned()))?;
            let decoded = ipc::decode(batches).map_err(bad)?;
            if let Some(schema) = &declared.schema {
                for batch in &decoded {
                    ipc::check_schema(schema, batch).map_err(bad)?;
                }
            }
            match outputs.iter_mut().find(|(name, _)| *name == port) {
                Some((_, existing)) => existing.extend(decoded),
                None => outputs.push((port, decoded)),
            }
        }
        Ok(outputs)
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        if self.poisoned.is_none() {
            self.store.set_epoch_deadline(budget_ticks(self.limits.call_budget));
            // A plugin's destructor failing changes nothing the caller can act on.
            let _ = self.handle.resource_drop(&mut self.store);
        }
    }
}

/// Runs one call under the budget and the cap, forwards the guest's output to
/// the log, and turns an abnormal end into a [`Fault`] that names the call.
pub(crate) fn guarded<R>(
    store: &mut Store<Sandbox>,
    plugin: &str,
    call: Call,
    limits: &Limits,
    run: impl FnOnce(&mut Store<Sandbox>) -> wasmtime::Result<R>,
) -> Result<R, PluginError> {
    store.set_epoch_deadline(budget_ticks(limits.call_budget));
    store.data_mut().memory.hit = false;
    let result = run(store);
    let stderr = forward_guest_output(plugin, store.data());
    result.map_err(|error| {
        let fault = classify(&error, store.data().memory.hit, limits, &stderr);
        PluginError::Fault { plugin: plugin.to_owned(), call, fault, stderr: tail(&stderr, 2048) }
    })
}

fn budget_ticks(budget: Duration) -> u64 {
    (budget.as_nanos() / EPOCH_TICK.as_nanos()).max(1) as u64
}

fn classify(error: &wasmtime::Error, memory_hit: bool, limits: &Limits, stderr: &str) -> Fault {
    let trap = error.downcast_ref::<Trap>();
    if trap == Some(&Trap::Interrupt) {
        return Fault::Timeout(limits.call_budget);
    }
    if memory_hit {
        return Fault::MemoryCap(limits.memory_bytes);
    }
    if let Some(at) = stderr.find("panicked at") {
        return Fault::Panic(stderr[at..].lines().take(2).collect::<Vec<_>>().join(" ").trim().to_owned());
    }
    match trap {
        Some(trap) => Fault::Trap(trap.to_string()),
        None => Fault::Trap(format!("{error:#}")),
    }
}

fn returned(plugin: &str, call: Call, e: wit::PluginError) -> PluginError {
    let kind = match e.kind {
        wit::ErrorKind::BadConfig => "bad config",
        wit::ErrorKind::BadInput => "bad input",
        wit::ErrorKind::Internal => "internal error",
    };
    PluginError::Returned { plugin: plugin.to_owned(), call, kind, message: e.message }
}

/// Sends the guest's stdout and stderr of the last call to the log, under the
/// plugin's name; returns the stderr text.
fn forward_guest_output(plugin: &str, sandbox: &Sandbox) -> String {
    let (stdout, dropped_out) = sandbox.stdout.drain();
    let (stderr, dropped_err) = sandbox.stderr.drain();
    for line in stdout.lines() {
        tracing::info!(target: "plugin", plugin, "{line}");
    }
    for line in stderr.lines() {
        tracing::warn!(target: "plugin", plugin, "{line}");
    }
    if dropped_out + dropped_err > 0 {
        tracing::warn!(target: "plugin", plugin, dropped_bytes = dropped_out + dropped_err, "plugin output past the per-call log cap was dropped");
    }
    stderr
}

fn tail(text: &str, max: usize) -> String {
    let start = text.len().saturating_sub(max);
    let start = (start..=text.len()).find(|&i| text.is_char_boundary(i)).unwrap_or(text.len());
    text[start..].to_owned()
}
