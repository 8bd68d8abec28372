//! Checks on the repository itself: the architecture invariants that
//! ordinary tests can state.

use std::path::{Path, PathBuf};

use medallion_plugin::{CONTRACT_VERSION, sha256_hex};

fn repo() -> PathBuf {
    medallion_tests::repo_root()
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

#[test]
fn the_wit_version_is_bumped_whenever_the_wit_changes() {
    let wit = read(&repo().join("wit/plugin.wit"));
    let lock = read(&repo().join("wit/VERSION.lock"));
    let (version, sha) = lock
        .lines()
        .find(|l| !l.starts_with('#'))
        .and_then(|l| l.split_once(' '))
        .unwrap_or_else(|| panic!("wit/VERSION.lock has no `<version> <sha256>` line"));
    assert!(
        wit.contains(&format!("package medallion:plugin@{version};")),
        "wit/plugin.wit does not declare version {version} of wit/VERSION.lock"
    );
    assert_eq!(version, CONTRACT_VERSION, "the host's CONTRACT_VERSION differs from wit/VERSION.lock");
    assert_eq!(
        sha256_hex(wit.as_bytes()),
        sha.trim(),
        "wit/plugin.wit changed: bump its package version, CONTRACT_VERSION and wit/VERSION.lock (new sha256)"
    );
}

#[test]
fn nothing_under_host_names_a_business_column() {
    let business = ["customer_id", "order_id", "product_id", "total_amount", "unit_price", "rating", "stock_quantity"];
    for file in rust_files(&repo().join("host")) {
        let text = read(&file);
        let words: Vec<&str> = text.split(|c: char| !(c.is_alphanumeric() || c == '_')).collect();
        for word in business {
            assert!(!words.contains(&word), "{} names the business column `{word}`", file.display());
        }
    }
}

#[test]
fn every_rust_file_says_what_it_is_for() {
    for folder in ["host", "plugins", "tests", "xtask/src", "bench/src", "datagen/src"] {
        for file in rust_files(&repo().join(folder)) {
            assert!(read(&file).starts_with("//!"), "{} does not open with a `//!` comment", file.display());
        }
    }
}

/// The host's crates by layer: a crate may depend only on crates of lower
/// layers (ARCHITECTURE.md draws the same picture).
const LAYERS: [(&str, u8); 10] = [
    ("medallion-common", 0),
    ("medallion-window", 0),
    ("medallion-plugin", 1),
    ("medallion-lake", 1),
    ("medallion-store", 1),
    ("medallion-pipeline", 2),
    ("medallion-python", 4),
    ("medallion-engine", 3),
    ("medallion-api", 3),
    ("medallion-host", 4),
];

/// Every package of the workspace with its path and its dependencies on
/// other packages of ours, as `cargo metadata` reports them.
fn workspace_packages() -> Vec<(String, PathBuf, Vec<String>)> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let output = std::process::Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--no-deps", "--offline"])
        .current_dir(repo())
        .output()
        .unwrap_or_else(|e| panic!("cargo metadata: {e}"));
    assert!(output.status.success(), "cargo metadata: {}", String::from_utf8_lossy(&output.stderr));
    let metadata: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| panic!("{e}"));
    let packages = metadata["packages"].as_array().cloned().unwrap_or_default();
    packages
        .iter()
        .map(|p| {
            let manifest = PathBuf::from(p["manifest_path"].as_str().unwrap_or_default());
            let dir = manifest.parent().map(Path::to_path_buf).unwrap_or_default();
            let ours = p["dependencies"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|d| d["kind"].is_null() && d["path"].is_string())
                .filter_map(|d| d["name"].as_str().map(str::to_owned))
                .collect();
            (p["name"].as_str().unwrap_or_default().to_owned(), dir, ours)
        })
        .collect()
}

#[test]
fn each_host_crate_depends_only_on_crates_below_it() {
    let layer = |name: &str| LAYERS.iter().find(|(n, _)| *n == name).map(|(_, l)| *l);
    let host = repo().join("host");
    let mut seen = 0;
    for (name, dir, depends_on) in workspace_packages() {
        if !dir.starts_with(&host) {
            continue;
        }
        seen += 1;
        let Some(own) = layer(&name) else {
            panic!("{name} ({}) is a host crate missing from LAYERS in tests/all/tidy.rs", dir.display())
        };
        for dependency in depends_on.iter().filter(|d| d.starts_with("medallion-") && *d != "medallion-datagen") {
            let below = layer(dependency).unwrap_or_else(|| panic!("{name} depends on {dependency}, not in LAYERS"));
            assert!(
                below < own,
                "{name} (layer {own}) depends on {dependency} (layer {below}): a crate may only depend on lower layers"
            );
        }
    }
    assert_eq!(seen, LAYERS.len(), "LAYERS names a crate that is not under host/");
}

#[test]
fn no_module_cycle_in_any_crate() {
    for (name, dir, _) in workspace_packages() {
        let src = dir.join("src");
        let cycle = medallion_tests::modules::cycle(&src);
        assert!(
            cycle.is_none(),
            "{name}: the modules {} use each other in a cycle",
            cycle.unwrap_or_default().join(" -> ")
        );
    }
}

#[test]
fn no_wasm_file_is_committed() {
    let listed = std::process::Command::new("git").args(["ls-files", "*.wasm", "*.cwasm"]).current_dir(repo()).output();
    // Outside a git checkout (a source tarball) there is nothing to check.
    if let Ok(output) = listed.as_ref().map_err(|_| ()).and_then(|o| if o.status.success() { Ok(o) } else { Err(()) }) {
        assert!(output.stdout.is_empty(), "committed wasm: {}", String::from_utf8_lossy(&output.stdout));
    }
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else { return files };
    for path in entries.filter_map(Result::ok).map(|e| e.path()) {
        if path.is_dir() {
            files.extend(rust_files(&path));
        } else if path.extension().is_some_and(|x| x == "rs") {
            files.push(path);
        }
    }
    files
}

/// `docker/compose.yaml` and `docker/Dockerfile` agree with `pipeline.yaml`
/// and the host (no Docker engine here, so this is what can be checked).
#[test]
fn the_compose_file_and_the_dockerfile_agree_with_the_pipeline() {
    let pipeline = read(&repo().join("pipeline.yaml"));
    let mut compose: serde_yaml_ng::Value = serde_yaml_ng::from_str(&read(&repo().join("docker/compose.yaml")))
        .unwrap_or_else(|e| panic!("docker/compose.yaml: {e}"));
    compose.apply_merge().unwrap_or_else(|e| panic!("docker/compose.yaml merge keys: {e}"));
    let services = &compose["services"];
    for name in ["namenode", "datanode", "postgres", "run", "serve"] {
        assert!(services.get(name).is_some(), "compose has no `{name}` service");
    }
    for name in ["namenode", "postgres", "serve"] {
        assert!(services[name].get("healthcheck").is_some(), "`{name}` has no health check");
    }
    for name in ["run", "serve", "gen-data"] {
        let service = &services[name];
        let environment = service["environment"].as_mapping().unwrap_or_else(|| panic!("`{name}` has no environment"));
        for key in environment.keys().filter_map(|k| k.as_str()) {
            assert!(pipeline.contains(&format!("${{{key}")), "`{name}` sets {key}, which pipeline.yaml does not read");
        }
        let plugins = environment
            .get("MEDALLION_PLUGINS")
            .and_then(|v| v.as_str())
            .unwrap_or_else(|| panic!("`{name}` does not set MEDALLION_PLUGINS"));
        let volumes: Vec<&str> =
            service["volumes"].as_sequence().into_iter().flatten().filter_map(|v| v.as_str()).collect();
        assert!(
            volumes.iter().any(|v| v.ends_with(&format!(":{plugins}"))),
            "`{name}` does not mount its plugins folder"
        );
        let command: Vec<&str> =
            service["command"].as_sequence().into_iter().flatten().filter_map(|v| v.as_str()).collect();
        assert!(
            ["gen-data", "run", "serve"].contains(&command.first().copied().unwrap_or_default()),
            "`{name}` runs an unknown host command: {command:?}"
        );
    }
    let lake = services["run"]["environment"]["MEDALLION_LAKE"].as_str().unwrap_or_default();
    assert!(lake.starts_with("hdfs://namenode:"), "the run's lake is the compose HDFS: {lake}");
    let gold = services["run"]["environment"]["MEDALLION_GOLD"].as_str().unwrap_or_default();
    assert!(
        gold.starts_with("postgres://") && gold.contains("@postgres:5432/"),
        "Gold is the compose PostgreSQL: {gold}"
    );
    let dockerfile = read(&repo().join("docker/Dockerfile"));
    assert!(dockerfile.contains("EXPOSE 8080"));
    assert!(services["serve"]["ports"][0].as_str().is_some_and(|p| p.ends_with(":8080")));
    for line in dockerfile.lines().map(|l| l.trim().trim_start_matches("ENV ")).filter(|l| l.starts_with("MEDALLION_"))
    {
        let key = line.split('=').next().unwrap_or_default();
        assert!(
            pipeline.contains(&format!("${{{key}")),
            "the Dockerfile sets {key}, which pipeline.yaml does not read"
        );
    }
    assert!(dockerfile.contains("cargo xtask build-plugins"), "the image builds its plugins from source");
}
