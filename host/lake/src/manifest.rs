//! The commit manifest: which run's files make up a partition of a zone,
//! and which version of each Delta table they are.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::delta::{Change, DeltaTable, NewFile};
use super::{Lake, LakeError, ParquetTable};

/// Where a zone keeps each run's manifest (zones of whole tables).
const RUNS: &str = "_runs";

/// The zone Silver is published in.
pub const SILVER_ZONE: &str = "silver";
/// Silver's one partition: the current snapshot (what readers of Silver and
/// its quarantine open).
pub const SILVER_PARTITION: &str = "current";

/// One committed partition of a zone (say, Bronze for one ingest date).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// The run that produced it.
    pub run_id: String,
    /// When it was committed (RFC 3339, UTC).
    pub committed_at: String,
    /// Per table: its files and counts.
    pub tables: BTreeMap<String, TableFiles>,
}

/// A table's files in one commit.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableFiles {
    /// Where its rows came from (a file name).
    pub source: String,
    /// Data files, lake-relative.
    pub files: Vec<String>,
    /// Rows in the data files.
    pub rows: u64,
    /// Quarantine files, lake-relative.
    pub quarantine_files: Vec<String>,
    /// Rows in the quarantine files.
    pub quarantined: u64,
    /// Quarantined rows per reason (Silver).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub reasons: BTreeMap<String, u64>,
    /// The Delta version committed, per Delta table (its folder): the
    /// table's and its quarantine's. Empty in manifests of hosts before Delta.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub versions: BTreeMap<String, u64>,
}

impl Manifest {
    fn location(zone: &str, partition: &str) -> String {
        format!("{zone}/_commits/{partition}.json")
    }

    /// The committed manifest of `zone`'s `partition`, if any.
    pub fn read(lake: &Lake, zone: &str, partition: &str) -> Result<Option<Self>, LakeError> {
        let location = Self::location(zone, partition);
        let Some(bytes) = lake.get(&location)? else { return Ok(None) };
        serde_json::from_slice(&bytes).map(Some).map_err(|e| LakeError::Manifest {
            url: lake.url().to_owned(),
            path: location,
            message: e.to_string(),
        })
    }

    /// The manifest of `zone`'s whole tables (Silver) as the run `run_id`
    /// committed it (`None`: no such run kept). An error when its files are
    /// gone (its versions trimmed from the tables' history).
    pub fn at_run(lake: &Lake, zone: &str, run_id: &str) -> Result<Option<Self>, LakeError> {
        let location = Self::run_location(zone, run_id);
        let Some(bytes) = lake.get(&location)? else { return Ok(None) };
        let manifest: Manifest = serde_json::from_slice(&bytes).map_err(|e| LakeError::Manifest {
            url: lake.url().to_owned(),
            path: location.clone(),
            message: e.to_string(),
        })?;
        for (table, files) in &manifest.tables {
            for file in &files.files {
                lake.size(file).map_err(|_| LakeError::Manifest {
                    url: lake.url().to_owned(),
                    path: location.clone(),
                    message: format!(
                        "table `{table}` of run {run_id} is no longer readable: its files were deleted when the history was trimmed\n  hint: history.keep_runs sets how many runs are kept"
                    ),
                })?;
            }
        }
        Ok(Some(manifest))
    }

    /// The Delta version this manifest committed of the table in folder
    /// `root`.
    pub fn version_of(&self, root: &str) -> Option<u64> {
        self.tables.values().find_map(|t| t.versions.get(root).copied())
    }

    /// The committed partitions of `zone`, sorted (for dates: oldest first).
    pub fn partitions(lake: &Lake, zone: &str) -> Result<Vec<String>, LakeError> {
        let prefix = format!("{zone}/_commits/");
        let mut names: Vec<String> = lake
            .list(&format!("{zone}/_commits"))?
            .into_iter()
            .filter_map(|f| f.strip_prefix(&prefix).and_then(|n| n.strip_suffix(".json")).map(str::to_owned))
            .collect();
        names.sort();
        Ok(names)
    }

    /// Commits this manifest for `zone`'s `partition` (`ingest_date=...`
    /// for a partitioned table, else the whole table): each table, and each
    /// of its quarantine tables, as the next version of its Delta table,
    /// then this manifest, which names the versions that go together (the
    /// host's readers follow it: they see one run's tables, never a mix).
    /// Then each table's history is trimmed to its last `keep_runs`
    /// versions, as well as it can: once the manifest is written the commit
    /// has happened, so a failed deletion is a warning, and the next commit
    /// deletes what is left.
    ///
    /// A zone still published the old way (manifests only, files under
    /// `run=<id>/` folders) is converted first, once: see [`Manifest::convert`].
    pub fn commit(&mut self, lake: &Lake, zone: &str, partition: &str, keep_runs: usize) -> Result<(), LakeError> {
        // The zone's manifests, read once: for the conversion, then for
        // the files the trim keeps (with this one in its partition's place).
        let mut manifests = Self::zone(lake, zone)?;
        let converted = Self::convert(lake, zone, &mut manifests)?;
        // Every file written, none visible yet.
        medallion_common::faults::pause_at(&format!("commit-{zone}"));
        let started = std::time::Instant::now();
        let committed = self.publish(lake, zone, partition)?;
        let published = started.elapsed().as_secs_f64();
        manifests.insert(partition.to_owned(), self.clone());
        let kept = Self::files_of_all(&manifests);
        let tidied = Self::tidy(lake, zone, &converted, keep_runs, None, &kept)
            .and_then(|()| Self::tidy(lake, zone, &committed, keep_runs, Some(partition), &kept));
        tracing::debug!(
            zone,
            tables = committed.len(),
            commit_s = format!("{published:.3}"),
            tidy_s = format!("{:.3}", started.elapsed().as_secs_f64() - published),
            "committed"
        );
        if let Err(e) = tidied {
            tracing::warn!(
                zone,
                partition,
                "committed; trimming the tables' history failed ({e}): the next commit tries again"
            );
        }
        Ok(())
    }

    /// Writes each table's Delta version, then the manifest. Returns the
    /// Delta tables committed.
    fn publish(&mut self, lake: &Lake, zone: &str, partition: &str) -> Result<Vec<String>, LakeError> {
        let location = Self::location(zone, partition);
        let column_value = partition.split_once('=');
        let timestamp = now_millis();
        // Every table's commit checked and made first, so that a table that
        // cannot be committed (a column type Delta lacks, another tool's
        // protocol) fails the run before any version is written.
        let mut prepared = Vec::new();
        for (table, files) in &self.tables {
            for (root, group) in delta_groups(lake, zone, table, files, partition)? {
                let delta = DeltaTable::new(lake, &root);
                let parquet = if group.is_empty() {
                    if !delta.exists()? {
                        continue;
                    }
                    None
                } else {
                    Some(ParquetTable::open(lake, &group, std::sync::Arc::new(arrow_schema::Schema::empty()))?)
                };
                let new_files = parquet.iter().flat_map(ParquetTable::files);
                let change = Change {
                    run_id: &self.run_id,
                    timestamp,
                    schema: parquet.as_ref().map(|p| p.schema().as_ref()),
                    partition: column_value,
                    files: new_files.map(|(path, size, rows)| NewFile { path, size, rows }).collect(),
                };
                prepared.push((table.clone(), root, delta.prepare(&change)?));
            }
        }
        let mut roots = Vec::new();
        for (table, root, commit) in prepared {
            let version = DeltaTable::new(lake, &root).write(commit)?;
            if let Some(files) = self.tables.get_mut(&table) {
                files.versions.insert(root.clone(), version);
            }
            roots.push(root);
        }
        // Every table's version written; the manifest, which the host's
        // readers follow, not yet.
        medallion_common::faults::pause_at(&format!("commit-{zone}-manifest"));
        let json = serde_json::to_vec_pretty(self).map_err(|e| LakeError::Manifest {
            url: lake.url().to_owned(),
            path: location.clone(),
            message: e.to_string(),
        })?;
        // A zone of whole tables (Silver) also keeps each run's manifest, by
        // which Gold reads an earlier run's tables (`--silver-run`).
        if !partition.contains('=') {
            lake.put(&Self::run_location(zone, &self.run_id), json.clone())?;
        }
        lake.put(&location, json)?;
        Ok(roots)
    }

    fn run_location(zone: &str, run_id: &str) -> String {
        format!("{zone}/{RUNS}/{run_id}.json")
    }

    /// Every committed manifest of `zone`, by partition.
    pub fn zone(lake: &Lake, zone: &str) -> Result<BTreeMap<String, Self>, LakeError> {
        let mut manifests = BTreeMap::new();
        for partition in Self::partitions(lake, zone)? {
            if let Some(manifest) = Self::read(lake, zone, &partition)? {
                manifests.insert(partition, manifest);
            }
        }
        Ok(manifests)
    }

    /// Every file `manifests` name (data and quarantine).
    pub fn files_of_all(manifests: &BTreeMap<String, Self>) -> BTreeSet<String> {
        let tables = manifests.values().flat_map(|m| m.tables.values());
        tables.flat_map(|t| t.files.iter().chain(&t.quarantine_files).cloned()).collect()
    }

    /// After a commit: the symlink manifests of the tables committed (of
    /// `partition` only, when given), their history trimmed (`kept`, the
    /// files of every committed manifest of the zone, stay whatever their
    /// table's history says), and run manifests older than the history
    /// deleted.
    pub fn tidy(
        lake: &Lake,
        zone: &str,
        roots: &[String],
        keep_runs: usize,
        partition: Option<&str>,
        kept: &BTreeSet<String>,
    ) -> Result<(), LakeError> {
        if roots.is_empty() {
            return Ok(());
        }
        medallion_common::faults::fail_at("collect-garbage").map_err(|message| LakeError::Delta {
            url: lake.url().to_owned(),
            table: zone.to_owned(),
            message,
        })?;
        let mut failed = None;
        for root in roots {
            let table = DeltaTable::new(lake, root);
            // The symlink manifests of the partition committed only (a
            // zone of whole tables has one, named "").
            let symlinks = partition.map(|p| if p.contains('=') { p } else { "" });
            let tidied = table.tidy(keep_runs, kept, symlinks);
            match tidied {
                Ok(trimmed) if trimmed.files > 0 => {
                    tracing::debug!(table = %root, files = trimmed.files, bytes = trimmed.bytes, "history trimmed");
                }
                Ok(_) => {}
                // The other tables are still tidied.
                Err(e) => failed = Some(e),
            }
        }
        // The run manifests of runs older than the history kept.
        let prefix = format!("{zone}/{RUNS}/");
        let mut runs: Vec<String> = lake.list(&format!("{zone}/{RUNS}"))?;
        runs.retain(|f| f.starts_with(&prefix) && f.ends_with(".json"));
        runs.sort();
        for old in runs.iter().rev().skip(keep_runs) {
            lake.delete(old)?;
        }
        failed.map_or(Ok(()), Err)
    }

    /// Converts a zone published before the lake's tables were Delta tables
    /// (each partition's manifest naming files under `run=<id>/` folders):
    /// each file is copied to the layout of a Delta table (a hard link on a
    /// local lake), each manifest committed as its tables' first Delta
    /// version and rewritten with the new paths. The old files go when the
    /// tables' history is next trimmed ([`Manifest::tidy`]). Safe to repeat
    /// if interrupted. `manifests` are the zone's ([`Manifest::zone`]),
    /// rewritten in place. Returns the Delta tables committed.
    pub fn convert(lake: &Lake, zone: &str, manifests: &mut BTreeMap<String, Self>) -> Result<Vec<String>, LakeError> {
        let mut roots: Vec<String> = Vec::new();
        for (partition, manifest) in manifests.iter_mut() {
            let old: Vec<&String> = manifest
                .tables
                .values()
                .flat_map(|t| t.files.iter().chain(&t.quarantine_files))
                .filter(|f| old_layout(f).is_some())
                .collect();
            if old.is_empty() {
                continue;
            }
            tracing::info!(
                lake = lake.url(),
                zone,
                partition,
                files = old.len(),
                "converting a partition published by an older host to Delta tables (once; the files are copied, then the old ones deleted)"
            );
            let mut replaced = Vec::new();
            for files in manifest.tables.values_mut() {
                for file in files.files.iter_mut().chain(files.quarantine_files.iter_mut()) {
                    if let Some(new) = old_layout(file) {
                        // A conversion retried: the copy made before stays
                        // (a version may name it already).
                        if lake.size(&new).ok() != Some(lake.size(file)?) {
                            lake.copy(file, &new)?;
                        }
                        replaced.push(std::mem::replace(file, new));
                    }
                }
            }
            for root in manifest.publish(lake, zone, partition)? {
                if !roots.contains(&root) {
                    roots.push(root);
                }
            }
            for old in replaced {
                lake.delete(&old)?;
            }
        }
        Ok(roots)
    }
}

/// A file's path in a Delta table's folder, for a file of the layout before
/// Delta (`<table>/[current/]run=<id>/<kind>-NNNNN.parquet`): `None` when
/// it is not one.
fn old_layout(path: &str) -> Option<String> {
    let (folder, name) = path.rsplit_once('/')?;
    let (parent, run) = folder.rsplit_once('/')?;
    let run = run.strip_prefix("run=")?;
    let parent = parent.strip_suffix("/current").unwrap_or(parent);
    let (kind, number) = name.strip_suffix(".parquet")?.split_once('-')?;
    let folder = if kind == "part" { parent.to_owned() } else { format!("{parent}/{kind}") };
    Some(format!("{folder}/part-{number}-{run}.parquet"))
}

/// A table's files grouped by the Delta table they go to: its data files
/// (`<zone>/<table>`), and its quarantine files (`quarantine/<zone>/<table>`
/// or, where a table has several kinds, `quarantine/<zone>/<table>/<kind>`),
/// plus any quarantine table of it that exists and gets no file this time
/// (it is emptied). Files are `<root>/[<partition>/]<name>`.
fn delta_groups(
    lake: &Lake,
    zone: &str,
    table: &str,
    files: &TableFiles,
    partition: &str,
) -> Result<BTreeMap<String, Vec<String>>, LakeError> {
    let partitioned = partition.contains('=');
    let bad = |file: &str, why: &str| LakeError::Manifest {
        url: lake.url().to_owned(),
        path: file.to_owned(),
        message: format!("table `{table}`: {why}"),
    };
    let root_of = |file: &str| -> Result<String, LakeError> {
        let (folder, _) = file.rsplit_once('/').ok_or_else(|| bad(file, "a file outside any table folder"))?;
        if !partitioned {
            return Ok(folder.to_owned());
        }
        folder
            .strip_suffix(&format!("/{partition}"))
            .map(str::to_owned)
            .ok_or_else(|| bad(file, &format!("a file outside partition `{partition}`")))
    };
    let data_root = format!("{zone}/{table}");
    let quarantine_root = format!("quarantine/{zone}/{table}");
    let mut groups: BTreeMap<String, Vec<String>> = BTreeMap::new();
    groups.insert(data_root.clone(), Vec::new());
    for file in &files.files {
        let root = root_of(file)?;
        if root != data_root {
            return Err(bad(file, &format!("a data file outside `{data_root}`")));
        }
        groups.entry(root).or_default().push(file.clone());
    }
    for file in &files.quarantine_files {
        let root = root_of(file)?;
        if root != quarantine_root && !root.starts_with(&format!("{quarantine_root}/")) {
            return Err(bad(file, &format!("a quarantine file outside `{quarantine_root}`")));
        }
        groups.entry(root).or_default().push(file.clone());
    }
    let log = format!("/{}/", crate::delta::LOG);
    for file in lake.list(&quarantine_root)? {
        if let Some((root, _)) = file.split_once(&log) {
            groups.entry(root.to_owned()).or_default();
        }
    }
    Ok(groups)
}

fn now_millis() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}
