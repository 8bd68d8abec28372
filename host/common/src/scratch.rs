//! A run's scratch folder on local disk: where work that does not fit the
//! memory budget spills. It is removed when the run ends, however it ends;
//! the folders of runs that were killed are removed by the next one.

use std::path::{Path, PathBuf};

const PREFIX: &str = "medallion-run-";

/// A folder `medallion-run-<pid>-<run id>` under a spill folder (the
/// server's is `...-serve`), removed on drop.
#[derive(Debug)]
pub struct Scratch {
    dir: PathBuf,
}

impl Scratch {
    /// Creates the run's folder under `under` (created if missing), first
    /// removing the folders there of processes that are gone.
    pub fn create(under: &Path, run_id: &str) -> std::io::Result<Self> {
        std::fs::create_dir_all(under)?;
        remove_abandoned(under);
        let dir = under.join(format!("{PREFIX}{}-{run_id}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        // What spills is business data, and the server maps its files from
        // here: no other user reads or writes them.
        #[cfg(unix)]
        std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))?;
        Ok(Scratch { dir })
    }

    /// The folder.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// A subfolder `name`, created, removed when the value returned drops
    /// (or with this folder).
    pub fn nested(&self, name: &str) -> std::io::Result<Scratch> {
        Ok(Scratch { dir: self.folder(name)? })
    }

    /// A subfolder, created.
    pub fn folder(&self, name: &str) -> std::io::Result<PathBuf> {
        let dir = self.dir.join(name);
        std::fs::create_dir_all(&dir)?;
        Ok(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.dir)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!("could not remove the scratch folder {}: {e}", self.dir.display());
        }
    }
}

/// Removes the scratch folders under `under` whose process is gone (a killed
/// run's). A folder of a live process, or one this cannot tell, stays.
fn remove_abandoned(under: &Path) {
    let Ok(entries) = std::fs::read_dir(under) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.strip_prefix(PREFIX)).and_then(|rest| rest.split('-').next())
        else {
            continue;
        };
        let gone = pid.parse::<u32>().is_ok_and(|pid| !Path::new(&format!("/proc/{pid}")).exists());
        if gone && Path::new("/proc/self").exists() {
            tracing::info!("removing the scratch folder of a run that did not end: {}", entry.path().display());
            std::fs::remove_dir_all(entry.path()).ok();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scratch_folder_goes_with_its_run_and_with_dead_runs() {
        let under = std::env::temp_dir().join(format!("medallion-scratch-test-{}", std::process::id()));
        // A folder left by a process that cannot exist (pids stop far below).
        let dead = under.join(format!("{PREFIX}4294967295-20260101T000000Z-1"));
        std::fs::create_dir_all(&dead).unwrap_or_else(|e| panic!("{e}"));
        let other = under.join("not-ours");
        std::fs::create_dir_all(&other).unwrap_or_else(|e| panic!("{e}"));
        let scratch = Scratch::create(&under, "run-1").unwrap_or_else(|e| panic!("{e}"));
        assert!(!dead.exists(), "a dead run's folder is removed");
        assert!(other.exists(), "what is not a run's folder stays");
        let sub = scratch.folder("gold").unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(sub.join("t"), b"x").unwrap_or_else(|e| panic!("{e}"));
        let dir = scratch.path().to_owned();
        assert!(dir.starts_with(&under));
        // A second run meanwhile leaves this live one's folder alone.
        let second = Scratch::create(&under, "run-2").unwrap_or_else(|e| panic!("{e}"));
        assert!(dir.exists());
        drop(second);
        drop(scratch);
        assert!(!dir.exists(), "the folder goes with the run");
        std::fs::remove_dir_all(&under).ok();
    }
}
