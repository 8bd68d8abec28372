//! The `medallion` Python module (a wheel built with maturin): the host's
//! plugin runtime, the same wasmtime sandbox with the same limits, log
//! capture and output checks, for Python processes such as Spark's
//! executors running `mapInArrow`. Batches cross as pyarrow `RecordBatch`es
//! through the Arrow C Data Interface (no copy of the columns at the
//! boundary), and the interpreter's lock is let go while a plugin runs, so
//! that other Python threads go on.
//!
//! ```python
//! import medallion
//! plugin = medallion.Plugin.load("dist/plugins/clean.wasm")
//! instance = plugin.instantiate('{"columns": {...}}', memory_mb=1024)
//! for port, batches in instance.push("in", batch): ...
//! for port, batches in instance.finish(): ...
//! ```
//!
//! `medallion.run` runs a whole pipeline with the host's run, Silver's
//! tables and Gold's queries computed by a Spark driver, and
//! `medallion.Parts` writes a task's rows into the lake (see [`driver`] and
//! `host/python/medallion_spark.py`).

mod driver;

use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use arrow_array::RecordBatch;
use arrow_pyarrow::PyArrowType;
use medallion_plugin::{Limits, LoadedPlugin, Outputs, PluginError, Runtime};
use pyo3::exceptions::{PyException, PyRuntimeError};
use pyo3::prelude::*;

pyo3::create_exception!(
    medallion,
    PluginFailure,
    PyException,
    "A plugin failed or broke the contract: the message names the plugin, the call and the cause."
);

/// A plugin's outputs as Python sees them: `(port, [batches])` pairs.
type PyOutputs = Vec<(String, Vec<PyArrowType<RecordBatch>>)>;

fn failure(e: PluginError) -> PyErr {
    PluginFailure::new_err(e.to_string())
}

fn to_python(outputs: Outputs) -> PyOutputs {
    outputs.into_iter().map(|(port, batches)| (port, batches.into_iter().map(PyArrowType).collect())).collect()
}

/// A compiled plugin (a `.wasm` component of the plugin contract).
#[pyclass(module = "medallion", frozen)]
struct Plugin {
    loaded: Arc<LoadedPlugin>,
}

#[pymethods]
impl Plugin {
    /// Compiles the plugin at `path` (or takes it from the compile cache,
    /// `cache_dir` or the host's default one).
    #[staticmethod]
    #[pyo3(signature = (path, cache_dir = None))]
    fn load(py: Python<'_>, path: PathBuf, cache_dir: Option<PathBuf>) -> PyResult<Plugin> {
        py.detach(|| {
            let runtime = Runtime::new(cache_dir.or_else(Runtime::default_cache_dir)).map_err(failure)?;
            let loaded = runtime.load(&path).map_err(failure)?;
            Ok(Plugin { loaded: Arc::new(loaded) })
        })
    }

    /// The plugin's name.
    #[getter]
    fn name(&self) -> String {
        self.loaded.info().name.clone()
    }

    /// The plugin's version.
    #[getter]
    fn version(&self) -> String {
        self.loaded.info().version.clone()
    }

    /// The sha256 of the `.wasm` file, as the run log records it.
    #[getter]
    fn sha256(&self) -> String {
        self.loaded.sha256().to_owned()
    }

    /// Whether the plugin keeps no state between batches (it may then run
    /// as many instances as there are partitions).
    #[getter]
    fn stateless(&self) -> bool {
        self.loaded.info().stateless
    }

    /// A configured instance: `config` is the step's JSON config;
    /// `memory_mb` and `call_budget_ms` are `plugins.limits` (the host's
    /// defaults when not given).
    #[pyo3(signature = (config = "{}", memory_mb = None, call_budget_ms = None))]
    fn instantiate(
        &self,
        py: Python<'_>,
        config: &str,
        memory_mb: Option<usize>,
        call_budget_ms: Option<u64>,
    ) -> PyResult<Instance> {
        let mut limits = Limits::default();
        if let Some(megabytes) = memory_mb {
            limits = limits.with_memory_bytes(megabytes << 20);
        }
        if let Some(milliseconds) = call_budget_ms {
            limits = limits.with_call_budget(Duration::from_millis(milliseconds));
        }
        let instance = py.detach(|| self.loaded.instantiate(config, limits)).map_err(failure)?;
        Ok(Instance { instance: Mutex::new(Some(instance)) })
    }

    fn __repr__(&self) -> String {
        format!("<medallion.Plugin {} {}>", self.name(), self.version())
    }
}

/// One configured instance of a plugin: batches pushed in, outputs back.
#[pyclass(module = "medallion")]
struct Instance {
    /// `None` once finished or failed: an instance that trapped is not
    /// called again.
    instance: Mutex<Option<medallion_plugin::Instance>>,
}

impl Instance {
    fn call(
        &self,
        py: Python<'_>,
        call: impl FnOnce(&mut medallion_plugin::Instance) -> Result<Outputs, PluginError> + Send,
        last: bool,
    ) -> PyResult<PyOutputs> {
        let mut slot = self.instance.lock().unwrap_or_else(PoisonError::into_inner);
        let instance = slot.as_mut().ok_or_else(|| {
            PyRuntimeError::new_err("this instance has finished or failed: instantiate the plugin again")
        })?;
        let result = py.detach(|| call(instance));
        if last || result.is_err() {
            *slot = None;
        }
        result.map(to_python).map_err(failure)
    }
}

#[pymethods]
impl Instance {
    /// Pushes `batch` to input `port`; returns what the plugin emitted, as
    /// `(port, [batches])` pairs.
    fn push(&self, py: Python<'_>, port: &str, batch: PyArrowType<RecordBatch>) -> PyResult<PyOutputs> {
        self.call(py, |instance| instance.push(port, &batch.0), false)
    }

    /// Ends the input: returns what the plugin emits last. The instance is
    /// done after it.
    fn finish(&self, py: Python<'_>) -> PyResult<PyOutputs> {
        self.call(py, |instance| instance.finish(), true)
    }

    /// The most linear memory the instance has used, in bytes.
    #[getter]
    fn memory_peak(&self) -> usize {
        self.instance.lock().unwrap_or_else(PoisonError::into_inner).as_ref().map_or(0, |i| i.memory_peak())
    }
}

/// The module.
#[pymodule]
fn medallion(module: &Bound<'_, PyModule>) -> PyResult<()> {
    module.add_class::<Plugin>()?;
    module.add_class::<Instance>()?;
    module.add("PluginFailure", module.py().get_type::<PluginFailure>())?;
    module.add("CONTRACT_VERSION", medallion_plugin::CONTRACT_VERSION)?;
    module.add_class::<driver::Parts>()?;
    module.add_function(wrap_pyfunction!(driver::run, module)?)?;
    module.add("RunFailure", module.py().get_type::<driver::RunFailure>())?;
    Ok(())
}
