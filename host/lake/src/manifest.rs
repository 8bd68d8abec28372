//! The commit manifest: which run's files make up a partition of a zone.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{Lake, LakeError};

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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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

    /// Publishes this manifest: the one atomic step of a commit. Then deletes
    /// every other file under the committed tables' partition folders, as
    /// well as it can: once the manifest is written the commit has happened,
    /// so a failed deletion is a warning, and the next commit of the
    /// partition deletes what is left.
    pub fn commit(&self, lake: &Lake, zone: &str, partition: &str) -> Result<(), LakeError> {
        let location = Self::location(zone, partition);
        let json = serde_json::to_vec_pretty(self).map_err(|e| LakeError::Manifest {
            url: lake.url().to_owned(),
            path: location.clone(),
            message: e.to_string(),
        })?;
        // Every file written, none visible yet.
        medallion_common::faults::pause_at(&format!("commit-{zone}"));
        lake.put(&location, json)?;
        if let Err(e) = self.collect_garbage(lake, zone, partition) {
            tracing::warn!(
                zone,
                partition,
                "committed; deleting other runs' files failed ({e}): the next commit of this partition tries again"
            );
        }
        Ok(())
    }

    fn collect_garbage(&self, lake: &Lake, zone: &str, partition: &str) -> Result<(), LakeError> {
        medallion_common::faults::fail_at("collect-garbage").map_err(|message| LakeError::Manifest {
            url: lake.url().to_owned(),
            path: Self::location(zone, partition),
            message,
        })?;
        for (table, files) in &self.tables {
            let keep: Vec<&String> = files.files.iter().chain(&files.quarantine_files).collect();
            for folder in [format!("{zone}/{table}/{partition}"), format!("quarantine/{zone}/{table}/{partition}")] {
                for file in lake.list(&folder)? {
                    if !keep.contains(&&file) {
                        lake.delete(&file)?;
                    }
                }
            }
        }
        Ok(())
    }
}
