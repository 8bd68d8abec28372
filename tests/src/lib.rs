//! The test harness: plugins built from source for the tests, and a plugins
//! folder holding them as a user's would.

pub mod hdfs;

use std::path::Path;

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

/// A temporary folder, removed when dropped.
pub fn temp_dir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap_or_else(|e| panic!("cannot make a temporary folder: {e}"))
}
