//! Faults a plugin can commit, each contained: the error names the plugin,
//! the call and the cause, and the next good plugin runs normally.

use std::path::Path;
use std::time::{Duration, Instant};

use medallion_plugin::{Call, Fault, Limits, PluginError, Runtime};
use medallion_tests::{artifacts, temp_dir};

use crate::util::{load, port, pretty, runtime, shared_runtime, strings};

fn small_limits() -> Limits {
    Limits::default().with_memory_bytes(64 << 20).with_call_budget(Duration::from_millis(300))
}

/// Pushes one batch into the evil plugin in `mode`, returns the error, then
/// checks that a good plugin on the same runtime still works.
fn evil_push(runtime: &Runtime, mode: &str) -> PluginError {
    evil_push_timed(runtime, mode).0
}

/// Like [`evil_push`], also timing the failing call.
fn evil_push_timed(runtime: &Runtime, mode: &str) -> (PluginError, Duration) {
    let evil = load(runtime, artifacts::EVIL);
    let mut instance = evil.instantiate(mode, small_limits()).unwrap_or_else(|e| panic!("{e}"));
    let batch = strings(&[("a", &[Some("1")])]);
    let started = Instant::now();
    let result = instance.push("in", &batch);
    let elapsed = started.elapsed();
    let error = match result {
        Ok(outputs) => panic!("`{mode}` should fail, got {} outputs", outputs.len()),
        Err(error) => error,
    };
    // The faulted instance stays dead; a good plugin runs as if nothing happened.
    assert!(matches!(instance.push("in", &batch), Err(PluginError::Poisoned { .. })));
    let good = load(runtime, artifacts::PASSTHROUGH);
    let mut good = good.instantiate("", small_limits()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(port(&good.push("in", &batch).unwrap_or_else(|e| panic!("{e}")), "out"), [batch]);
    (error, elapsed)
}

fn fault_of(error: &PluginError) -> (&str, Call, &Fault) {
    match error {
        PluginError::Fault { plugin, call, fault, .. } => (plugin, *call, fault),
        other => panic!("expected a fault, got: {other}"),
    }
}

#[test]
fn an_endless_loop_is_stopped_within_its_budget() {
    let (error, elapsed) = evil_push_timed(&shared_runtime(), "loop");
    let (plugin, call, fault) = fault_of(&error);
    assert_eq!((plugin, call, fault), ("evil", Call::Push, &Fault::Timeout(Duration::from_millis(300))));
    // Never before its budget, and stopped rather than hung: how soon after
    // the budget (1 ms epoch ticks) depends on the machine's load, which a
    // test must not assert.
    assert!(elapsed >= Duration::from_millis(300) && elapsed < Duration::from_secs(30), "took {elapsed:?}");
    assert!(error.to_string().starts_with("plugin `evil` failed in `push`: ran past its time budget of 300ms"));
}

#[test]
fn a_memory_bomb_hits_the_cap() {
    let error = evil_push(&shared_runtime(), "memory");
    assert_eq!(fault_of(&error), ("evil", Call::Push, &Fault::MemoryCap(64 << 20)));
    assert!(error.to_string().contains("memory cap of 64 MiB"), "{error}");
}

#[test]
fn a_panic_is_reported_with_its_message() {
    let error = evil_push(&shared_runtime(), "panic");
    let (_, call, fault) = fault_of(&error);
    assert_eq!(call, Call::Push);
    assert!(matches!(fault, Fault::Panic(message) if message.contains("evil plugin panicked on purpose")), "{fault:?}");
}

#[test]
fn a_trap_is_reported_as_a_trap() {
    let error = evil_push(&shared_runtime(), "trap");
    let (_, call, fault) = fault_of(&error);
    assert_eq!(call, Call::Push);
    assert!(matches!(fault, Fault::Trap(message) if message.contains("unreachable")), "{fault:?}");
}

#[test]
fn an_output_with_the_wrong_schema_is_refused() {
    let error = evil_push(&shared_runtime(), "wrong-schema");
    assert_eq!(
        error.to_string(),
        "plugin `evil` returned a bad batch on port `out` in `push`: column 0 should be `id`, got `name`"
    );
}

#[test]
fn nulls_in_a_column_declared_non_null_are_refused() {
    let error = evil_push(&shared_runtime(), "null-in-non-null");
    assert!(error.to_string().ends_with("column `id` is declared non-null but holds nulls"), "{error}");
}

#[test]
fn bytes_that_are_not_arrow_ipc_are_refused() {
    let error = evil_push(&shared_runtime(), "not-ipc");
    let message = error.to_string();
    assert!(
        message.starts_with("plugin `evil` returned a bad batch on port `out` in `push`: not a valid Arrow IPC stream"),
        "{message}"
    );
}

#[test]
fn output_on_an_undeclared_port_is_refused() {
    let error = evil_push(&shared_runtime(), "undeclared-port");
    assert_eq!(
        error.to_string(),
        "plugin `evil` returned a bad batch on port `elsewhere` in `push`: the plugin declares no such output port"
    );
}

#[test]
fn a_plugin_gets_no_file_network_environment_or_clock() {
    let evil = load(&shared_runtime(), artifacts::EVIL);
    let mut instance = evil.instantiate("escape", small_limits()).unwrap_or_else(|e| panic!("{e}"));
    let outputs = instance.push("in", &strings(&[("a", &[Some("1")])])).unwrap_or_else(|e| panic!("{e}"));
    let report = pretty(port(&outputs, "probes"));
    for line in report.lines().filter(|l| l.starts_with("| ") && !l.contains("probe")) {
        let ok = line.contains("denied:")
            || line.contains("| env vars ") && line.contains("| 0 ")
            || line.contains("| wall clock secs ") && line.contains("| 0 ");
        assert!(ok, "the sandbox let this through: {line}\n{report}");
    }
    assert!(!Path::new("/tmp/evil-plugin-was-here").exists());
}

#[test]
fn a_chatty_plugin_is_cut_off_in_the_log_but_keeps_working() {
    let evil = load(&shared_runtime(), artifacts::EVIL);
    let mut instance = evil.instantiate("noisy", small_limits()).unwrap_or_else(|e| panic!("{e}"));
    let batch = strings(&[("a", &[Some("1")])]);
    let outputs = instance.push("in", &batch).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(port(&outputs, "probes"), [batch]);
}

#[test]
fn a_truncated_wasm_file_is_not_a_component() {
    let cache = temp_dir();
    let bytes = std::fs::read(artifacts::PASSTHROUGH).unwrap_or_default();
    let file = cache.path().join("truncated.wasm");
    std::fs::write(&file, &bytes[..bytes.len() / 2]).unwrap_or_else(|e| panic!("{e}"));
    let error = runtime(cache.path()).load(&file).err().map(|e| e.to_string()).unwrap_or_default();
    assert!(error.starts_with(&format!("{} is not a valid WebAssembly component:", file.display())), "{error}");
    assert!(error.contains("hint: plugins are wasm32-wasip2 components"), "{error}");
}

#[test]
fn a_core_module_is_not_a_component() {
    let cache = temp_dir();
    let file = cache.path().join("core.wasm");
    std::fs::write(&file, wat::parse_str("(module (func (export \"run\")))").unwrap_or_default())
        .unwrap_or_else(|e| panic!("{e}"));
    let error = runtime(cache.path()).load(&file).err();
    assert!(matches!(error, Some(PluginError::NotAComponent { .. })), "{error:?}");
}

#[test]
fn a_component_without_the_contract_is_not_a_plugin() {
    let cache = temp_dir();
    let file = cache.path().join("empty-component.wasm");
    std::fs::write(&file, wat::parse_str("(component)").unwrap_or_default()).unwrap_or_else(|e| panic!("{e}"));
    let error = runtime(cache.path()).load(&file).err().map(|e| e.to_string()).unwrap_or_default();
    assert!(error.ends_with("is a component but not a medallion plugin: it exports no `medallion:plugin/transform@0.2.0` (it exports: nothing)"), "{error}");
}

#[test]
fn a_plugin_built_against_another_contract_version_names_both_versions() {
    let cache = temp_dir();
    let error = runtime(cache.path()).load(Path::new(artifacts::OLD_CONTRACT)).err();
    let message = error.map(|e| e.to_string()).unwrap_or_default();
    assert!(
        message.contains("was built against medallion:plugin@0.1.0, but this host speaks medallion:plugin@0.2.0"),
        "{message}"
    );
}

#[test]
fn a_plugin_asking_something_of_a_port_it_does_not_have_is_refused_at_create() {
    let evil = load(&shared_runtime(), artifacts::EVIL);
    let error =
        evil.instantiate("needs-undeclared-port", small_limits()).err().map(|e| e.to_string()).unwrap_or_default();
    assert_eq!(
        error,
        "plugin `evil` describes itself wrongly: `needs` names input port `elsewhere`, which it does not declare"
    );
    let asked = evil.instantiate("needs-rank", small_limits()).unwrap_or_else(|e| panic!("{e}"));
    let needs = asked.needs("in").unwrap_or_else(|| panic!("evil in needs-rank asks for a rank"));
    assert_eq!(needs.computed[0].name, "_rank");
    assert!(evil.instantiate("good", small_limits()).unwrap_or_else(|e| panic!("{e}")).needs("in").is_none());
}

#[test]
fn a_plugin_refusing_its_config_fails_create_without_poisoning_the_runtime() {
    let evil = load(&shared_runtime(), artifacts::EVIL);
    let error = evil.instantiate("bad-config", small_limits()).err().map(|e| e.to_string()).unwrap_or_default();
    assert_eq!(error, "plugin `evil` refused `create` (bad config): bad-config asked for");
    assert!(evil.instantiate("good", small_limits()).is_ok());
}

/// Arrow IPC streams that made the decoder panic (found by bench/fuzz.sh)
/// are refused as invalid: a plugin that hands them back fails its call, and
/// the host goes on.
#[test]
fn malformed_ipc_found_by_fuzzing_is_refused_without_a_panic() {
    let folder = medallion_tests::repo_root().join("tests/fuzz-regressions");
    let mut cases = 0;
    for entry in std::fs::read_dir(&folder).unwrap_or_else(|e| panic!("{}: {e}", folder.display())) {
        let path = entry.unwrap_or_else(|e| panic!("{e}")).path();
        if path.extension().is_none_or(|e| e != "arrows") {
            continue;
        }
        let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let refused = medallion_plugin::fuzzing::decode_ipc(bytes);
        assert!(
            refused.as_ref().is_err_and(|e| e.starts_with("not a valid Arrow IPC stream")),
            "{}: {refused:?}",
            path.display()
        );
        cases += 1;
    }
    assert!(cases >= 2, "the regression cases are in {}", folder.display());
}
