//! Helpers shared by the suite: a runtime with a private cache, batches from
//! literals, and the real `host` binary.

use std::path::Path;
use std::process::{Command, Output};
use std::sync::{Arc, OnceLock};

use arrow_array::{ArrayRef, RecordBatch, StringArray};
use medallion_plugin::{LoadedPlugin, Runtime};

/// A runtime whose compile cache is a folder of the test's own.
pub(crate) fn runtime(cache: &Path) -> Runtime {
    Runtime::new(Some(cache.to_owned())).unwrap_or_else(|e| panic!("runtime: {e}"))
}

/// A runtime whose compile cache is shared by the whole test run: for tests
/// that are not about the cache, so each plugin compiles once per run.
pub(crate) fn shared_runtime() -> Runtime {
    runtime(&shared_home().join("medallion").join("plugins"))
}

/// A home for cache folders, shared by the whole test run (what
/// `XDG_CACHE_HOME` points at for the `host` binary).
pub(crate) fn shared_home() -> &'static Path {
    static HOME: OnceLock<tempfile::TempDir> = OnceLock::new();
    HOME.get_or_init(medallion_tests::temp_dir).path()
}

/// Loads a plugin, failing the test with the error if it cannot.
pub(crate) fn load(runtime: &Runtime, wasm: &str) -> LoadedPlugin {
    runtime.load(Path::new(wasm)).unwrap_or_else(|e| panic!("load {wasm}: {e}"))
}

/// A batch of nullable string columns.
pub(crate) fn strings(columns: &[(&str, &[Option<&str>])]) -> RecordBatch {
    let arrays = columns.iter().map(|(name, values)| {
        let array: ArrayRef = Arc::new(StringArray::from(values.to_vec()));
        (name.to_string(), array)
    });
    RecordBatch::try_from_iter(arrays).unwrap_or_else(|e| panic!("batch: {e}"))
}

/// Arrow's table rendering of some batches, for readable assertions.
pub(crate) fn pretty(batches: &[RecordBatch]) -> String {
    arrow_cast::pretty::pretty_format_batches(batches).map(|t| t.to_string()).unwrap_or_else(|e| panic!("pretty: {e}"))
}

/// Runs the real `host` binary with `args`, with a cache folder of `home`.
pub(crate) fn host(home: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_host"))
        .args(args)
        .env("XDG_CACHE_HOME", home)
        .env_remove("RUST_LOG")
        .env_remove("MEDALLION_PLUGINS")
        .output()
        .unwrap_or_else(|e| panic!("cannot run host: {e}"))
}

/// A command's stdout and stderr as text.
pub(crate) fn text(output: &Output) -> (String, String) {
    (String::from_utf8_lossy(&output.stdout).into_owned(), String::from_utf8_lossy(&output.stderr).into_owned())
}

/// A path as &str, for argument lists.
pub(crate) fn arg(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

/// The single output port's batches, or a panic naming what came instead.
pub(crate) fn port<'a>(outputs: &'a [(String, Vec<RecordBatch>)], name: &str) -> &'a [RecordBatch] {
    outputs.iter().find(|(port, _)| port == name).map(|(_, batches)| batches.as_slice()).unwrap_or_else(|| {
        panic!("no output on port `{name}`; got {:?}", outputs.iter().map(|(p, _)| p).collect::<Vec<_>>())
    })
}

/// The test venv's Python (scripts/test makes it, with the Delta readers of
/// tests/delta/requirements.txt and the `medallion` module built from
/// host/python); `MEDALLION_PYTHON` names another.
pub(crate) fn python() -> std::path::PathBuf {
    let python = std::env::var_os("MEDALLION_PYTHON").map(std::path::PathBuf::from).unwrap_or_else(|| {
        std::path::PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/medallion/venv/bin/python")
    });
    assert!(
        python.is_file(),
        "no {}: scripts/test makes that venv (PySpark, delta-spark, deltalake, polars, and the medallion module)",
        python.display()
    );
    python
}
