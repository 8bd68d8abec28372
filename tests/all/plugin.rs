//! The plugin runtime on well-behaved plugins: describing, pushing, checking
//! outputs, configs, what a plugin `needs`, and the compile cache.

use std::path::Path;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::{ArrayRef, RecordBatch};
use medallion_plugin::{CacheOutcome, Limits, PluginError};
use medallion_tests::{artifacts, temp_dir};

use crate::util::{load, port, pretty, runtime, shared_runtime, strings};

#[test]
fn passthrough_returns_each_batch_unchanged() {
    let plugin = load(&shared_runtime(), artifacts::PASSTHROUGH);
    let mut instance = plugin.instantiate("{}", Limits::default()).unwrap_or_else(|e| panic!("{e}"));
    let batch = strings(&[("id", &[Some("1"), None, Some("3")]), ("text", &[Some("a,\"b\"\nc"), Some(""), None])]);
    let outputs = instance.push("in", &batch).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(port(&outputs, "out"), [batch]);
    assert!(instance.finish().unwrap_or_else(|e| panic!("{e}")).is_empty());
}

#[test]
fn one_instance_returns_every_batch_of_a_sequence_unchanged_whatever_their_sizes_and_columns() {
    // The host keeps its encode buffer between pushes: a small batch after a
    // large one, or one with other columns, must not carry anything over.
    let plugin = load(&shared_runtime(), artifacts::PASSTHROUGH);
    let mut instance = plugin.instantiate("{}", Limits::default()).unwrap_or_else(|e| panic!("{e}"));
    let long: Vec<String> = (0..50_000).map(|i| format!("value number {i}")).collect();
    let long: Vec<Option<&str>> = long.iter().map(|s| Some(s.as_str())).collect();
    let sequence = [
        strings(&[("id", &long), ("text", &long)]),
        strings(&[("id", &[Some("1")]), ("text", &[None])]),
        strings(&[("other", &[Some("x"), Some("y")])]),
        strings(&[("id", &long[..10]), ("text", &long[10..20])]),
    ];
    for (i, batch) in sequence.iter().enumerate() {
        let outputs = instance.push("in", batch).unwrap_or_else(|e| panic!("push {i}: {e}"));
        assert_eq!(port(&outputs, "out"), std::slice::from_ref(batch), "push {i}");
    }
}

#[test]
fn a_plugin_describes_its_name_version_ports_and_config() {
    let plugin = load(&shared_runtime(), artifacts::CLEAN);
    let info = plugin.info();
    assert_eq!((info.name.as_str(), info.version.as_str()), ("clean", "0.1.0"));
    assert_eq!(info.inputs.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(), ["in"]);
    assert_eq!(info.outputs.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(), ["out", "rejected", "nulled"]);
    assert!(info.config_schema.contains("\"columns\""), "{}", info.config_schema);
    assert!(info.stateless);
    assert_eq!(plugin.sha256().len(), 64);
}

#[test]
fn clean_casts_types_and_sends_each_bad_row_to_rejected_with_its_reason() {
    let plugin = load(&shared_runtime(), artifacts::CLEAN);
    let config = r#"{
        "columns": [
            {"name": "order_id", "type": "int", "required": true},
            {"name": "order_date", "type": "date", "on_unparseable": "reject"},
            {"name": "total_amount", "type": "double", "gt": 0, "reason": "non_positive_amount"}
        ],
        "keep": ["payment_method"]
    }"#;
    let mut instance = plugin.instantiate(config, Limits::default()).unwrap_or_else(|e| panic!("{e}"));
    let batch = strings(&[
        ("order_id", &[Some("1"), Some("x"), Some("3"), Some("4"), Some(" 5 "), None]),
        (
            "order_date",
            &[Some("2024-02-29"), Some("2024-01-01"), Some("2023-02-30"), Some("2024-01-02"), None, Some("2024-01-03")],
        ),
        ("total_amount", &[Some("10.5"), Some("1"), Some("2"), Some("0"), Some("7"), Some("3")]),
        ("payment_method", &[Some("paypal"), Some("cash"), None, Some("card"), Some("cash"), Some("cash")]),
    ]);
    let outputs = instance.push("in", &batch).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        pretty(port(&outputs, "out")),
        [
            "+----------+------------+--------------+----------------+------+",
            "| order_id | order_date | total_amount | payment_method | _row |",
            "+----------+------------+--------------+----------------+------+",
            "| 1        | 2024-02-29 | 10.5         | paypal         | 0    |",
            "| 5        |            | 7.0          | cash           | 4    |",
            "+----------+------------+--------------+----------------+------+",
        ]
        .join("\n")
    );
    assert_eq!(
        pretty(port(&outputs, "rejected")),
        [
            "+----------+------------+--------------+----------------+---------------------+------+",
            "| order_id | order_date | total_amount | payment_method | _reason             | _row |",
            "+----------+------------+--------------+----------------+---------------------+------+",
            "| x        | 2024-01-01 | 1            | cash           | null_key            | 1    |",
            "| 3        | 2023-02-30 | 2            |                | bad_date            | 2    |",
            "| 4        | 2024-01-02 | 0            | card           | non_positive_amount | 3    |",
            "|          | 2024-01-03 | 3            | cash           | null_key            | 5    |",
            "+----------+------------+--------------+----------------+---------------------+------+",
        ]
        .join("\n")
    );
    // Row positions keep counting across batches.
    let second = instance.push("in", &batch).unwrap_or_else(|e| panic!("{e}"));
    let rejected = pretty(port(&second, "rejected"));
    assert!(rejected.contains("| null_key            | 7    |"), "{rejected}");
}

#[test]
fn a_bad_config_is_refused_with_the_plugins_own_message() {
    let plugin = load(&shared_runtime(), artifacts::CLEAN);
    let error = plugin.instantiate(r#"{"columns": [{"name": "id", "type": "integer"}]}"#, Limits::default()).err();
    let message = error.map(|e| e.to_string()).unwrap_or_default();
    assert!(
        message.starts_with("plugin `clean` refused `create` (bad config): unknown variant `integer`"),
        "{message}"
    );
    assert!(message.contains("line 1 column"), "{message}");
}

#[test]
fn a_push_on_an_undeclared_port_is_refused_before_the_plugin_runs() {
    let plugin = load(&shared_runtime(), artifacts::PASSTHROUGH);
    let mut instance = plugin.instantiate("", Limits::default()).unwrap_or_else(|e| panic!("{e}"));
    let error = instance.push("inn", &strings(&[("a", &[Some("1")])])).err();
    assert!(matches!(error, Some(PluginError::UnknownPort { .. })), "{error:?}");
    assert_eq!(
        error.map(|e| e.to_string()).unwrap_or_default(),
        "plugin `passthrough` has no input port `inn`; its inputs are: `in`"
    );
}

#[test]
fn a_plugin_keeps_no_state_between_instances() {
    let plugin = load(&shared_runtime(), artifacts::CLEAN);
    let config = r#"{"columns": [{"name": "id", "type": "int", "required": true}]}"#;
    let batch = strings(&[("id", &[None])]);
    for _ in 0..2 {
        let mut instance = plugin.instantiate(config, Limits::default()).unwrap_or_else(|e| panic!("{e}"));
        let outputs = instance.push("in", &batch).unwrap_or_else(|e| panic!("{e}"));
        assert!(pretty(port(&outputs, "rejected")).contains("| null_key | 0    |"));
    }
}

#[test]
fn a_second_load_comes_from_the_disk_cache() {
    let cache = temp_dir();
    let first = load(&runtime(cache.path()), artifacts::PASSTHROUGH);
    assert_eq!(first.cache_outcome(), &CacheOutcome::Compiled);
    let second = load(&runtime(cache.path()), artifacts::PASSTHROUGH);
    assert_eq!(second.cache_outcome(), &CacheOutcome::Hit);
    assert_eq!(first.sha256(), second.sha256());
}

#[test]
fn a_corrupt_or_foreign_cache_entry_is_detected_and_rebuilt() {
    let cache = temp_dir();
    load(&runtime(cache.path()), artifacts::PASSTHROUGH);
    let entry = only_entry(cache.path());

    let mut bytes = std::fs::read(&entry).unwrap_or_default();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&entry, &bytes).unwrap_or_else(|e| panic!("{e}"));
    let rebuilt = load(&runtime(cache.path()), artifacts::PASSTHROUGH);
    assert_eq!(rebuilt.cache_outcome(), &CacheOutcome::Rebuilt("checksum mismatch (corrupt entry)".to_owned()));
    assert_eq!(load(&runtime(cache.path()), artifacts::PASSTHROUGH).cache_outcome(), &CacheOutcome::Hit);

    std::fs::write(&entry, b"MEDCWASM").unwrap_or_else(|e| panic!("{e}"));
    let rebuilt = load(&runtime(cache.path()), artifacts::PASSTHROUGH);
    assert!(matches!(rebuilt.cache_outcome(), CacheOutcome::Rebuilt(_)), "{:?}", rebuilt.cache_outcome());
    let mut instance = rebuilt.instantiate("", Limits::default()).unwrap_or_else(|e| panic!("{e}"));
    assert!(instance.push("in", &strings(&[("a", &[Some("1")])])).is_ok());
}

#[test]
fn a_cache_others_could_write_is_not_loaded() {
    use std::os::unix::fs::PermissionsExt;
    let cache = temp_dir();
    load(&runtime(cache.path()), artifacts::PASSTHROUGH);
    let mode = |path: &Path, mode: u32| {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap_or_else(|e| panic!("{e}"))
    };
    mode(cache.path(), 0o777);
    let outcome = load(&runtime(cache.path()), artifacts::PASSTHROUGH).cache_outcome().clone();
    assert!(
        matches!(&outcome, CacheOutcome::Untrusted(why) if why.contains("may be written by group or others")),
        "{outcome:?}"
    );
    mode(cache.path(), 0o700);
    let entry = only_entry(cache.path());
    mode(&entry, 0o666);
    let outcome = load(&runtime(cache.path()), artifacts::PASSTHROUGH).cache_outcome().clone();
    assert!(matches!(&outcome, CacheOutcome::Untrusted(why) if why.contains(".cwasm")), "{outcome:?}");
    mode(&entry, 0o600);
    assert_eq!(load(&runtime(cache.path()), artifacts::PASSTHROUGH).cache_outcome(), &CacheOutcome::Hit);
}

#[test]
fn the_cache_folder_is_created_for_its_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let parent = temp_dir();
    let cache = parent.path().join("medallion/plugins");
    load(&runtime(&cache), artifacts::PASSTHROUGH);
    let mode = std::fs::metadata(&cache).unwrap_or_else(|e| panic!("{e}")).permissions().mode() & 0o777;
    assert_eq!(mode, 0o700, "{mode:o}");
}

fn only_entry(cache: &Path) -> std::path::PathBuf {
    let entries: Vec<_> = std::fs::read_dir(cache)
        .unwrap_or_else(|e| panic!("{e}"))
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "cwasm"))
        .collect();
    assert_eq!(entries.len(), 1, "{entries:?}");
    entries[0].clone()
}

/// A million customers whose R, F and M scores are known: last orders spread
/// evenly over 1000 days, orders and spend over 5 levels.
fn customers(count: usize) -> RecordBatch {
    use arrow_array::{Date32Array, Float64Array, Int64Array};
    let ids: ArrayRef = Arc::new(Int64Array::from_iter_values(0..count as i64));
    let last: ArrayRef = Arc::new(Date32Array::from_iter_values((0..count).map(|i| 19_000 + (i % 1000) as i32)));
    let orders: ArrayRef = Arc::new(Int64Array::from_iter_values((0..count).map(|i| (i % 5) as i64 + 1)));
    let spent: ArrayRef = Arc::new(Float64Array::from_iter_values((0..count).map(|i| ((i % 5) + 1) as f64 * 10.0)));
    RecordBatch::try_from_iter([
        ("customer_id", ids),
        ("last_order_date", last),
        ("total_orders", orders),
        ("total_spent", spent),
    ])
    .unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn rfm_scores_a_million_customers_batch_by_batch_in_a_small_memory_cap() {
    // The host computes the ranks and the latest order the plugin asks for
    // (`needs`); the plugin keeps nothing between batches, so 32 MiB is
    // plenty whatever the number of customers.
    let count = 1_000_000;
    let whole = customers(count);
    let plugin = load(&shared_runtime(), artifacts::RFM);
    let limits = Limits { memory_bytes: 32 << 20, ..Limits::default() };
    let mut instance = plugin.instantiate("{}", limits).unwrap_or_else(|e| panic!("{e}"));
    let needs = instance.needs("in").cloned().unwrap_or_else(|| panic!("rfm asks the host for its ranks"));
    let batches: Vec<RecordBatch> =
        (0..count).step_by(65_536).map(|start| whole.slice(start, 65_536.min(count - start))).collect();
    let prepared = medallion_window::prepare(&needs, batches).unwrap_or_else(|e| panic!("{e}"));
    let mut rows = 0;
    for batch in &prepared {
        let outputs = instance.push("in", batch).unwrap_or_else(|e| panic!("{e}"));
        for out in port(&outputs, "out") {
            let names: Vec<&str> = out.schema_ref().fields().iter().map(|f| f.name().as_str()).collect();
            assert_eq!(
                names,
                [
                    "customer_id",
                    "last_order_date",
                    "total_orders",
                    "total_spent",
                    "recency_days",
                    "rfm_score",
                    "segment"
                ]
            );
            let ids = out.column(0).as_primitive::<arrow_array::types::Int64Type>();
            let recency = out.column(4).as_primitive::<arrow_array::types::Int64Type>();
            let scores = out.column(5).as_string::<i32>();
            for i in (0..out.num_rows()).step_by(997) {
                let id = ids.value(i) as usize;
                let (day, level) = (id % 1000, id % 5 + 1);
                assert_eq!(recency.value(i), 999 - day as i64, "customer {id}");
                assert_eq!(scores.value(i), format!("{}{level}{level}", 1 + day / 200), "customer {id}");
            }
            rows += out.num_rows();
        }
    }
    assert!(instance.finish().unwrap_or_else(|e| panic!("{e}")).is_empty());
    assert_eq!(rows, count);
    assert!(instance.memory_peak() <= 32 << 20, "{}", instance.memory_peak());
}
