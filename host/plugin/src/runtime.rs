//! The engine, the linker and loaded plugins.
//!
//! One `Engine` per process (with the epoch ticker that enforces time
//! budgets), one `Linker` per [`Runtime`], one pre-instantiated component per
//! loaded plugin. Creating an [`Instance`] is then a cheap `Store` plus an
//! instantiation from the `InstancePre`.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Engine, OptLevel, Store};

use super::bindings::PluginPre;
use super::cache::{CacheOutcome, DiskCache};
use super::error::{Call, PluginError};
use super::info::PluginInfo;
use super::instance::{Instance, guarded};
use super::limits::EPOCH_TICK;
use super::sandbox::Sandbox;
use super::{Limits, sha256_hex};

/// The WIT package plugins must be built against.
pub const CONTRACT_PACKAGE: &str = "medallion:plugin";
/// Its version; bump with every change to `wit/`.
pub const CONTRACT_VERSION: &str = "0.2.0";

/// Every engine setting, in one place.
fn engine_config() -> Config {
    let mut config = Config::new();
    config.wasm_component_model(true);
    config.epoch_interruption(true);
    config.cranelift_opt_level(OptLevel::Speed);
    #[cfg(feature = "profiling")]
    if std::env::var_os("MEDALLION_PERFMAP").is_some() {
        config.profiler(wasmtime::ProfilingStrategy::PerfMap);
    }
    config
}

/// The process's engine, created on first use with its epoch ticker.
fn engine() -> Result<&'static Engine, PluginError> {
    static ENGINE: OnceLock<Result<Engine, String>> = OnceLock::new();
    ENGINE
        .get_or_init(|| {
            let engine = Engine::new(&engine_config()).map_err(|e| format!("{e:#}"))?;
            let ticking = engine.clone();
            std::thread::Builder::new()
                .name("medallion-epoch".to_owned())
                .spawn(move || {
                    loop {
                        std::thread::sleep(EPOCH_TICK);
                        ticking.increment_epoch();
                    }
                })
                .map_err(|e| format!("cannot start the epoch thread: {e}"))?;
            Ok(engine)
        })
        .as_ref()
        .map_err(|e| PluginError::Engine(e.clone()))
}

/// Loads plugins; holds the linker and the compiled-code cache.
pub struct Runtime {
    engine: &'static Engine,
    linker: Linker<Sandbox>,
    cache: Option<DiskCache>,
}

impl Runtime {
    /// A runtime whose compiled components are cached under `cache_dir`
    /// (`None`: compile every time).
    pub fn new(cache_dir: Option<PathBuf>) -> Result<Self, PluginError> {
        let engine = engine()?;
        let mut linker = Linker::new(engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker).map_err(|e| PluginError::Engine(format!("{e:#}")))?;
        let cache = cache_dir.map(|dir| DiskCache::new(dir, engine));
        Ok(Runtime { engine, linker, cache })
    }

    /// The default cache folder: `$XDG_CACHE_HOME/medallion/plugins`, else
    /// `~/.cache/medallion/plugins`.
    pub fn default_cache_dir() -> Option<PathBuf> {
        let base = std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))?;
        Some(base.join("medallion").join("plugins"))
    }

    /// Loads the plugin in `path`: compiles it (or takes it from the cache),
    /// checks its contract version and asks it to describe itself.
    pub fn load(&self, path: &Path) -> Result<LoadedPlugin, PluginError> {
        let wasm = std::fs::read(path).map_err(|source| PluginError::Read { path: path.to_owned(), source })?;
        self.load_bytes(path, &wasm)
    }

    /// Like [`Runtime::load`], for bytes already in memory; `path` names them
    /// in messages.
    pub fn load_bytes(&self, path: &Path, wasm: &[u8]) -> Result<LoadedPlugin, PluginError> {
        let sha256 = sha256_hex(wasm);
        let not_a_component =
            |e: wasmtime::Error| PluginError::NotAComponent { path: path.to_owned(), cause: format!("{e:#}") };
        let (component, cache) = match &self.cache {
            Some(cache) => cache.load_or_compile(self.engine, &sha256, wasm).map_err(not_a_component)?,
            None => (Component::new(self.engine, wasm).map_err(not_a_component)?, CacheOutcome::Compiled),
        };
        self.check_contract(path, &component)?;
        let pre = self.linker.instantiate_pre(&component).map_err(|e| PluginError::Engine(format!("{e:#}")))?;
        let pre = PluginPre::new(pre).map_err(|e| PluginError::Engine(format!("{e:#}")))?;
        let info = describe(&pre, path)?;
        Ok(LoadedPlugin { path: path.to_owned(), sha256, pre, info: Arc::new(info), cache })
    }

    fn check_contract(&self, path: &Path, component: &Component) -> Result<(), PluginError> {
        let wanted = format!("{CONTRACT_PACKAGE}/transform@");
        let ty = component.component_type();
        let exports: Vec<String> = ty.exports(self.engine).map(|(name, _)| name.to_owned()).collect();
        match exports.iter().find_map(|name| name.strip_prefix(&wanted)) {
            Some(CONTRACT_VERSION) => Ok(()),
            Some(found) => Err(PluginError::ContractMismatch {
                path: path.to_owned(),
                found: found.to_owned(),
                expected: CONTRACT_VERSION.to_owned(),
            }),
            None => Err(PluginError::NotAPlugin {
                path: path.to_owned(),
                expected: format!("{wanted}{CONTRACT_VERSION}"),
                found: if exports.is_empty() { "nothing".to_owned() } else { exports.join(", ") },
            }),
        }
    }
}

fn describe(pre: &PluginPre<Sandbox>, path: &Path) -> Result<PluginInfo, PluginError> {
    let name = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let limits = Limits::default().with_call_budget(Duration::from_secs(10));
    let mut store = Store::new(pre.engine(), Sandbox::new(&limits));
    store.limiter(|sandbox| &mut sandbox.memory);
    let raw = guarded(&mut store, &name, Call::Describe, &limits, |store| {
        let plugin = pre.instantiate(&mut *store)?;
        plugin.medallion_plugin_transform().call_describe(&mut *store)
    })?;
    PluginInfo::from_wit(raw)
}

/// A compiled, checked plugin, ready to instantiate.
pub struct LoadedPlugin {
    path: PathBuf,
    sha256: String,
    pre: PluginPre<Sandbox>,
    info: Arc<PluginInfo>,
    cache: CacheOutcome,
}

impl LoadedPlugin {
    /// What the plugin says of itself.
    pub fn info(&self) -> &PluginInfo {
        &self.info
    }

    /// The file it came from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Hex sha256 of the `.wasm` file.
    pub fn sha256(&self) -> &str {
        &self.sha256
    }

    /// Whether the compiled code came from the disk cache.
    pub fn cache_outcome(&self) -> &CacheOutcome {
        &self.cache
    }

    /// A new instance configured with `config` (JSON), under `limits`.
    pub fn instantiate(&self, config: &str, limits: Limits) -> Result<Instance, PluginError> {
        Instance::create(&self.pre, self.info.clone(), config, limits)
    }
}
