//! The test harness: plugins built from source for the tests, and a plugins
//! folder holding them as a user's would.

pub mod hdfs;
pub mod modules;
pub mod postgres;
pub mod spark;

use std::path::{Path, PathBuf};

/// Paths of the plugins built by this crate's build script.
pub mod artifacts {
    include!(concat!(env!("OUT_DIR"), "/artifacts.rs"));
}

/// A fresh folder holding the product plugins (those under `plugins/`), named
/// `<package>.wasm`, as `cargo xtask build-plugins` lays them out.
pub fn plugins_folder() -> tempfile::TempDir {
    let dir = temp_dir();
    for (name, path) in artifacts::PRODUCT {
        copy_plugin(path, &dir.path().join(format!("{name}.wasm")));
    }
    dir
}

/// Copies a plugin file, failing the test with the reason if it cannot.
pub fn copy_plugin(from: &str, to: &Path) {
    std::fs::copy(from, to).unwrap_or_else(|e| panic!("cannot copy plugin {from} to {}: {e}", to.display()));
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> Result<u16, String> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    listener.local_addr().map(|a| a.port()).map_err(|e| e.to_string())
}

/// A temporary folder, removed when dropped.
pub fn temp_dir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap_or_else(|e| panic!("cannot make a temporary folder: {e}"))
}

/// The repository's root, found at run time from the package cargo runs
/// (`CARGO_MANIFEST_DIR` is set for tests and build scripts). A path baked in
/// at compile time would point at whichever clone built the binary first, as
/// cargo does not rebuild when a workspace moves.
pub fn repo_root() -> PathBuf {
    let start = std::env::var_os("CARGO_MANIFEST_DIR").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("."));
    start
        .ancestors()
        .find(|dir| dir.join("wit").is_dir() && dir.join("Cargo.toml").is_file())
        .map(Path::to_path_buf)
        .unwrap_or(start)
}

/// Named points where a `host` process started with [`Pause::env`] stops
/// until the test lets it go (see `medallion_common::faults::pause_at`):
/// the test acts at a known moment instead of guessing one with sleeps.
pub struct Pause {
    dir: tempfile::TempDir,
    points: String,
}

impl Pause {
    /// Pauses at each of `points` (`commit-silver`, `after-bronze`, ...).
    pub fn at(points: &[&str]) -> Self {
        Pause { dir: temp_dir(), points: points.join(",") }
    }

    /// The environment that asks for the pauses.
    pub fn env(&self) -> [(&'static str, String); 2] {
        [("MEDALLION_FAULT", self.points.clone()), ("MEDALLION_PAUSE", self.dir.path().to_string_lossy().into_owned())]
    }

    /// Waits until a process stands at `point`; panics after `patience`.
    pub fn reached(&self, point: &str, patience: std::time::Duration) {
        let reached = self.dir.path().join(format!("{point}.reached"));
        let started = std::time::Instant::now();
        while !reached.exists() {
            assert!(started.elapsed() < patience, "no process reached `{point}` within {patience:?}");
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }

    /// Lets every process at `point` (and any that comes later) go on.
    pub fn go(&self, point: &str) {
        std::fs::write(self.dir.path().join(format!("{point}.go")), "").unwrap_or_else(|e| panic!("{e}"));
    }
}
