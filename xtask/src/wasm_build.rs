//! Builds plugin crates for `wasm32-wasip2` with a nested cargo.
//!
//! Shared by `cargo xtask build-plugins` and the test crate's build script
//! (which includes this file by path). The nested cargo gets its own target
//! folder and an environment cleaned of the outer cargo's variables, so it
//! neither deadlocks on the outer build's lock nor inherits its flags.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The WebAssembly target plugins are built for.
pub const WASM_TARGET: &str = "wasm32-wasip2";

/// The cargo profile plugins are built with (see the root `Cargo.toml`).
pub const PLUGIN_PROFILE: &str = "plugin";

/// A plugin crate: its package name and the `.wasm` file cargo names after it.
#[derive(Debug, Clone)]
pub struct PluginCrate {
    /// Cargo package name.
    pub package: String,
}

impl PluginCrate {
    /// The component file cargo produces for this crate.
    pub fn wasm_file(&self, target_dir: &Path) -> PathBuf {
        target_dir.join(WASM_TARGET).join(PLUGIN_PROFILE).join(format!("{}.wasm", self.package.replace('-', "_")))
    }
}

/// The plugin crates directly under `folder`: the workspace's packages there
/// that build a `cdylib`, as `cargo metadata` reports them. Sorted by name.
pub fn plugin_crates(folder: &Path) -> Result<Vec<PluginCrate>, String> {
    let metadata = cargo_metadata::MetadataCommand::new()
        .current_dir(folder)
        .no_deps()
        .env_remove("CARGO_TARGET_DIR")
        .exec()
        .map_err(|e| format!("cargo metadata in {}: {e}", folder.display()))?;
    let folder = folder.canonicalize().map_err(|e| format!("{}: {e}", folder.display()))?;
    let mut crates: Vec<PluginCrate> = metadata
        .packages
        .into_iter()
        .filter(|p| p.manifest_path.parent().and_then(|dir| dir.parent()).is_some_and(|dir| dir == folder))
        .filter(|p| p.targets.iter().any(|t| t.kind.iter().any(|k| k.to_string() == "cdylib")))
        .map(|p| PluginCrate { package: p.name.to_string() })
        .collect();
    crates.sort_by(|a, b| a.package.cmp(&b.package));
    Ok(crates)
}

/// Makes sure the wasm target's standard library is installed (automatic
/// rustup installs are off on some machines).
pub fn ensure_wasm_target() -> Result<(), String> {
    let sysroot = Command::new(std::env::var("RUSTC").unwrap_or_else(|_| "rustc".to_owned()))
        .args(["--print", "sysroot"])
        .output()
        .map_err(|e| format!("cannot run rustc: {e}"))?;
    let sysroot = PathBuf::from(String::from_utf8_lossy(&sysroot.stdout).trim());
    if sysroot.join("lib/rustlib").join(WASM_TARGET).is_dir() {
        return Ok(());
    }
    let status = Command::new("rustup")
        .args(["target", "add", WASM_TARGET])
        .status()
        .map_err(|e| format!("cannot run rustup to add {WASM_TARGET}: {e}"))?;
    if status.success() { Ok(()) } else { Err(format!("`rustup target add {WASM_TARGET}` failed")) }
}

/// Builds `crates` for the wasm target into `target_dir`, from the workspace
/// at `root`.
pub fn build(root: &Path, target_dir: &Path, crates: &[PluginCrate]) -> Result<(), String> {
    if crates.is_empty() {
        return Ok(());
    }
    ensure_wasm_target()?;
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let mut command = Command::new(cargo);
    command
        .current_dir(root)
        .args(["build", "--quiet", "--target", WASM_TARGET, "--profile", PLUGIN_PROFILE, "--target-dir"])
        .arg(target_dir);
    for krate in crates {
        command.args(["-p", &krate.package]);
    }
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy();
        let inherited = (key.starts_with("CARGO_") && key != "CARGO_HOME" && !key.starts_with("CARGO_REGISTRIES"))
            || key.starts_with("RUSTC")
            || key.starts_with("RUSTDOC")
            || key == "RUSTFLAGS";
        if inherited {
            command.env_remove(key.as_ref());
        }
    }
    let status = command.status().map_err(|e| format!("cannot run cargo: {e}"))?;
    if status.success() { Ok(()) } else { Err(format!("building plugins for {WASM_TARGET} failed ({status})")) }
}
