//! What a plugin instance can reach: nothing but its own memory.
//!
//! WASI is linked because `wasm32-wasip2` guests import it, but the context
//! grants no preopened directory, no environment or arguments, no network, a
//! clock frozen at the Unix epoch and a fixed random stream; stdout and
//! stderr land in a bounded buffer that the host drains into its log.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use wasmtime::ResourceLimiter;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};
use wasmtime_wasi::{HostMonotonicClock, HostWallClock, WasiCtx, WasiCtxView, WasiView};

use super::Limits;

/// The data of one instance's `Store`.
pub(crate) struct Sandbox {
    wasi: WasiCtx,
    table: ResourceTable,
    pub(crate) memory: MemoryCap,
    pub(crate) stdout: LogSink,
    pub(crate) stderr: LogSink,
}

impl Sandbox {
    pub(crate) fn new(limits: &Limits) -> Self {
        let stdout = LogSink::new(limits.log_bytes);
        let stderr = LogSink::new(limits.log_bytes);
        let wasi = WasiCtx::builder()
            .stdout(stdout.clone())
            .stderr(stderr.clone())
            .wall_clock(FrozenClock)
            .monotonic_clock(FrozenClock)
            .secure_random(wasmtime_wasi::Deterministic::new(FIXED_RANDOM.to_vec()))
            .insecure_random(wasmtime_wasi::Deterministic::new(FIXED_RANDOM.to_vec()))
            .insecure_random_seed(0)
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .socket_addr_check(|_, _| Box::pin(async { false }))
            .build();
        Sandbox {
            wasi,
            table: ResourceTable::new(),
            memory: MemoryCap { max_bytes: limits.memory_bytes, hit: false, peak: 0 },
            stdout,
            stderr,
        }
    }
}

impl WasiView for Sandbox {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

/// Bytes a guest gets when it asks for randomness: fixed, so runs repeat.
const FIXED_RANDOM: [u8; 16] =
    [0x6d, 0x65, 0x64, 0x61, 0x6c, 0x6c, 0x69, 0x6f, 0x6e, 0x2d, 0x72, 0x6e, 0x67, 0x2d, 0x30, 0x31];

/// A clock that always reads the Unix epoch: plugins are pure functions of
/// their input, and a KPI that needs "today" gets it from its config.
struct FrozenClock;

impl HostWallClock for FrozenClock {
    fn resolution(&self) -> Duration {
        Duration::from_secs(1)
    }
    fn now(&self) -> Duration {
        Duration::ZERO
    }
}

impl HostMonotonicClock for FrozenClock {
    fn resolution(&self) -> u64 {
        1_000_000_000
    }
    fn now(&self) -> u64 {
        0
    }
}

/// Caps the instance's linear memory and remembers when the cap was hit, so
/// the resulting trap can be reported as what it is, and how large the
/// memory grew.
pub(crate) struct MemoryCap {
    max_bytes: usize,
    pub(crate) hit: bool,
    pub(crate) peak: usize,
}

impl ResourceLimiter for MemoryCap {
    fn memory_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        if desired > self.max_bytes {
            self.hit = true;
            return Ok(false);
        }
        self.peak = self.peak.max(desired);
        Ok(true)
    }

    fn table_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }
}

const MAX_TABLE_ELEMENTS: usize = 1 << 20;

/// A bounded buffer for guest output: keeps the first `capacity` bytes of a
/// call, counts the rest. Writes never fail, so a chatty plugin cannot crash
/// itself by printing.
#[derive(Clone)]
pub(crate) struct LogSink(Arc<Mutex<LogBuffer>>);

#[derive(Default)]
struct LogBuffer {
    kept: Vec<u8>,
    capacity: usize,
    dropped: u64,
}

impl LogSink {
    fn new(capacity: usize) -> Self {
        LogSink(Arc::new(Mutex::new(LogBuffer { capacity, ..LogBuffer::default() })))
    }

    fn append(&self, bytes: &[u8]) {
        let mut buffer = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let room = buffer.capacity.saturating_sub(buffer.kept.len());
        let taken = bytes.len().min(room);
        buffer.kept.extend_from_slice(&bytes[..taken]);
        buffer.dropped += (bytes.len() - taken) as u64;
    }

    /// Takes what was written since the last drain, and how many bytes were
    /// dropped.
    pub(crate) fn drain(&self) -> (String, u64) {
        let mut buffer = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let text = String::from_utf8_lossy(&buffer.kept).into_owned();
        buffer.kept.clear();
        (text, std::mem::take(&mut buffer.dropped))
    }
}

impl IsTerminal for LogSink {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for LogSink {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for LogSink {
    async fn ready(&mut self) {}
}

impl OutputStream for LogSink {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.append(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(1 << 20)
    }
}

impl tokio::io::AsyncWrite for LogSink {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        self.append(buf);
        std::task::Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}
