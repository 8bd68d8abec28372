//! Compiled components cached on disk, so a run does not recompile unchanged
//! plugins.
//!
//! An entry is keyed by the wasm's sha256 and a hash of the engine (wasmtime
//! version and every setting that affects code). Its file holds a magic tag,
//! the sha256 of the compiled code, and the code. A corrupt entry fails the
//! check and a stale one fails wasmtime's own check; both are rebuilt.
//! Entries are written to a temporary file and renamed into place, so a
//! reader never sees half of one.
//!
//! Native code from the cache runs outside the sandbox, so whoever can write
//! the cache folder could run code as this user: the folder is created 0700,
//! and a folder or entry that is not owned by this user, or that group or
//! others may write, is not used (the plugin is compiled instead, and the
//! log says why).

use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

const MAGIC: &[u8; 8] = b"MEDCWASM";
const HEADER: usize = MAGIC.len() + 32;

/// How a component was obtained.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheOutcome {
    /// Loaded from the disk cache.
    Hit,
    /// Compiled: there was no entry (or no cache).
    Compiled,
    /// Compiled because the entry was unusable; says why.
    Rebuilt(String),
    /// Compiled, and the cache left alone: it is not safe to load; says why.
    Untrusted(String),
}

pub(crate) struct DiskCache {
    dir: PathBuf,
    engine_key: String,
}

impl DiskCache {
    pub(crate) fn new(dir: PathBuf, engine: &Engine) -> Self {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        DiskCache { dir, engine_key: format!("{:016x}", hasher.finish()) }
    }

    /// The file that holds (or would hold) the entry for `wasm_sha256`.
    pub(crate) fn entry_path(&self, wasm_sha256: &str) -> PathBuf {
        self.dir.join(format!("{wasm_sha256}-{}.cwasm", self.engine_key))
    }

    /// Loads the compiled component from the cache, or compiles `wasm` and
    /// stores the result.
    pub(crate) fn load_or_compile(
        &self,
        engine: &Engine,
        wasm_sha256: &str,
        wasm: &[u8],
    ) -> wasmtime::Result<(Component, CacheOutcome)> {
        let path = self.entry_path(wasm_sha256);
        if let Some(reason) = untrusted(&self.dir).or_else(|| untrusted(&path)) {
            tracing::warn!(%reason, "plugin cache not used: it could hold code planted by someone else");
            let code = engine.precompile_component(wasm)?;
            // SAFETY: `code` was produced by this engine a moment ago.
            let component = unsafe { Component::deserialize(engine, &code)? };
            return Ok((component, CacheOutcome::Untrusted(reason)));
        }
        let outcome = match std::fs::read(&path) {
            Ok(entry) => match load_entry(engine, &entry) {
                Ok(component) => return Ok((component, CacheOutcome::Hit)),
                Err(reason) => {
                    tracing::warn!(entry = %path.display(), %reason, "plugin cache entry unusable, rebuilding");
                    CacheOutcome::Rebuilt(reason)
                }
            },
            Err(_) => CacheOutcome::Compiled,
        };
        let code = engine.precompile_component(wasm)?;
        // SAFETY: `code` was produced by this engine a moment ago.
        let component = unsafe { Component::deserialize(engine, &code)? };
        if let Err(e) = store_entry(&path, &code) {
            tracing::warn!(entry = %path.display(), error = %e, "cannot write the plugin cache; the next run will compile again");
        }
        Ok((component, outcome))
    }
}

fn load_entry(engine: &Engine, entry: &[u8]) -> Result<Component, String> {
    if entry.len() < HEADER || &entry[..MAGIC.len()] != MAGIC {
        return Err("not a medallion cache entry".to_owned());
    }
    let (digest, code) = entry[MAGIC.len()..].split_at(32);
    if Sha256::digest(code).as_slice() != digest {
        return Err("checksum mismatch (corrupt entry)".to_owned());
    }
    // SAFETY: the code passed the checksum written by `store_entry`, which only
    // stores code this engine configuration produced; wasmtime additionally
    // checks the version and settings recorded in it.
    unsafe { Component::deserialize(engine, code) }.map_err(|e| format!("stale entry: {e}"))
}

/// Why the cache folder or entry at `path` must not be loaded: owned by
/// someone else, writable by group or others, or a symbolic link. `None` when
/// it is safe, or missing.
fn untrusted(path: &Path) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::symlink_metadata(path).ok()?;
    // /proc/self belongs to the process's effective user.
    let me = std::fs::metadata("/proc/self").map(|m| m.uid()).ok()?;
    let shown = path.display();
    if meta.file_type().is_symlink() {
        Some(format!("{shown} is a symbolic link"))
    } else if meta.uid() != me {
        Some(format!("{shown} is owned by uid {}, not by this user (uid {me})", meta.uid()))
    } else if meta.mode() & 0o022 != 0 {
        Some(format!("{shown} may be written by group or others (mode {:o}); `chmod go-w` it", meta.mode() & 0o777))
    } else {
        None
    }
}

fn store_entry(path: &Path, code: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    let mut file = tempfile::NamedTempFile::new_in(dir)?;
    file.write_all(MAGIC)?;
    file.write_all(&Sha256::digest(code))?;
    file.write_all(code)?;
    file.as_file().sync_all()?;
    file.persist(path).map_err(|e| e.error)?;
    Ok(())
}
