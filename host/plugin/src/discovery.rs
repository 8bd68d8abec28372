//! Finding plugins in a folder and choosing among versions.
//!
//! Every `.wasm` file in the folder is loaded. When several carry the same
//! plugin name, the highest version wins unless a version is pinned: that is
//! how dropping a new file in the folder swaps a KPI.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::{Digest, Sha256};

use super::{LoadedPlugin, PluginError, Runtime};

/// Hex sha256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The plugins found in a folder, and the files that failed to load.
pub struct Catalog {
    plugins: Vec<Arc<LoadedPlugin>>,
    failures: Vec<(PathBuf, PluginError)>,
}

impl Catalog {
    /// Loads every `.wasm` file in `dir`, in name order. A file that fails to
    /// load is kept in [`Catalog::failures`] rather than failing the scan.
    pub fn scan(runtime: &Runtime, dir: &Path) -> Result<Self, PluginError> {
        let entries = std::fs::read_dir(dir).map_err(|source| PluginError::Read { path: dir.to_owned(), source })?;
        let mut files: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|entry| entry.path())
            .filter(|path| path.extension().is_some_and(|ext| ext == "wasm"))
            .collect();
        files.sort();
        let mut catalog = Catalog { plugins: Vec::new(), failures: Vec::new() };
        for file in files {
            match runtime.load(&file) {
                Ok(plugin) => catalog.plugins.push(Arc::new(plugin)),
                Err(error) => catalog.failures.push((file, error)),
            }
        }
        Ok(catalog)
    }

    /// Every plugin loaded, in file name order.
    pub fn plugins(&self) -> &[Arc<LoadedPlugin>] {
        &self.plugins
    }

    /// Files that are not usable plugins, with the reason.
    pub fn failures(&self) -> &[(PathBuf, PluginError)] {
        &self.failures
    }

    /// The plugin called `name`: the pinned `version` if given, else the
    /// highest version present.
    pub fn resolve(&self, name: &str, version: Option<&str>) -> Option<Arc<LoadedPlugin>> {
        let candidates = self.plugins.iter().filter(|p| p.info().name == name);
        match version {
            Some(pinned) => candidates.into_iter().find(|p| p.info().version == pinned).cloned(),
            None => {
                candidates.max_by(|a, b| version_key(&a.info().version).cmp(&version_key(&b.info().version))).cloned()
            }
        }
    }
}

impl Catalog {
    /// Why `name` (at `version`) cannot be resolved, with the near name or
    /// the versions there are.
    pub fn missing(&self, name: &str, version: Option<&str>) -> String {
        let versions: Vec<&str> =
            self.plugins.iter().filter(|p| p.info().name == name).map(|p| p.info().version.as_str()).collect();
        match version {
            Some(pinned) if !versions.is_empty() => {
                format!("plugin `{name}` has no version {pinned} in the plugins folder; it has {}", versions.join(", "))
            }
            _ => {
                let names: Vec<&str> = self.plugins.iter().map(|p| p.info().name.as_str()).collect();
                let hint = match medallion_common::suggest::nearest(name, names.iter().copied()) {
                    Some(near) => format!("did you mean `{near}`?"),
                    None if names.is_empty() => {
                        "the plugins folder is empty; build them with `cargo xtask build-plugins`".to_owned()
                    }
                    None => format!("the plugins are {}", names.join(", ")),
                };
                format!("no plugin `{name}` in the plugins folder\n  hint: {hint}")
            }
        }
    }
}

/// Orders versions semantically; a version that is not semver sorts first.
fn version_key(version: &str) -> Option<semver::Version> {
    semver::Version::parse(version).ok()
}
