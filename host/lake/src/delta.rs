//! Delta Lake tables: the log (`<table>/_delta_log/<version>.json`) that
//! makes a folder of Parquet files a table Spark, Trino, polars, DuckDB and
//! Power BI read, with history.
//!
//! The host writes the log itself (protocol: reader version 1, writer
//! version 2; JSON commits, no checkpoints, so every version stays
//! readable from the log alone). A commit is one file created with
//! put-if-absent (a hard link on a local lake, a create without overwrite
//! on HDFS): readers see the version whole or not at all, and two writers
//! can never both write the same version. Each commit replaces the table's
//! files (or one partition's) and names the run that made it in its
//! `commitInfo` (`userMetadata`).
//!
//! Not for: deciding which tables a run commits together (the manifest);
//! tables upgraded by another tool to features the host does not know (it
//! refuses to write them, and says so).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use arrow_schema::{DataType, Field, Schema, TimeUnit};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::{Lake, LakeError};

/// The log's folder inside a table.
pub const LOG: &str = "_delta_log";
/// Hive's view of a table: per partition, a text file listing the current
/// data files (`SymlinkTextInputFormat`).
pub const SYMLINKS: &str = "_symlink_format_manifest";

/// A Delta table of the lake, by its folder.
pub struct DeltaTable<'a> {
    lake: &'a Lake,
    root: String,
}

/// A data file of a version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AddFile {
    /// Relative to the table's folder, URI-encoded.
    pub path: String,
    /// The file's partition, by column.
    pub partition_values: BTreeMap<String, Option<String>>,
    /// Bytes.
    pub size: u64,
    /// Milliseconds since the epoch.
    pub modification_time: i64,
    /// Whether the file changes the table's data (always, for the host).
    pub data_change: bool,
    /// Statistics as JSON text (`numRecords`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stats: Option<String>,
}

impl AddFile {
    /// Its rows, when its statistics say.
    pub fn rows(&self) -> Option<u64> {
        let stats: Value = serde_json::from_str(self.stats.as_deref()?).ok()?;
        stats.get("numRecords")?.as_u64()
    }

    /// Its path relative to the lake, under `root`.
    fn in_lake(&self, root: &str) -> String {
        format!("{root}/{}", decode(&self.path))
    }
}

/// The table's description (`metaData`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Metadata {
    /// Its id (a UUID), the same for the table's whole life.
    pub id: String,
    /// Always Parquet.
    pub format: Format,
    /// The columns, as Spark's JSON schema (partition columns included).
    pub schema_string: String,
    /// The partition columns.
    pub partition_columns: Vec<String>,
    /// Table properties.
    #[serde(default)]
    pub configuration: BTreeMap<String, String>,
    /// When the table was made, milliseconds since the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_time: Option<i64>,
}

/// A data file format.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Format {
    /// `parquet`.
    pub provider: String,
    /// Its options.
    #[serde(default)]
    pub options: BTreeMap<String, String>,
}

/// What a reader and a writer of the table must support.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Protocol {
    /// Reader version.
    pub min_reader_version: u32,
    /// Writer version.
    pub min_writer_version: u32,
    /// Reader features (reader version 3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reader_features: Option<Vec<String>>,
    /// Writer features (writer version 7).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub writer_features: Option<Vec<String>>,
}

/// The protocol the host writes: the oldest, which every reader knows.
const PROTOCOL: Protocol =
    Protocol { min_reader_version: 1, min_writer_version: 2, reader_features: None, writer_features: None };

/// A table at one version.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// The version.
    pub version: u64,
    /// The protocol.
    pub protocol: Protocol,
    /// The description.
    pub metadata: Metadata,
    /// The data files, by path.
    pub files: BTreeMap<String, AddFile>,
}

impl Snapshot {
    /// Rows in all files (from their statistics).
    pub fn rows(&self) -> u64 {
        self.files.values().filter_map(AddFile::rows).sum()
    }

    /// Bytes in all files.
    pub fn bytes(&self) -> u64 {
        self.files.values().map(|f| f.size).sum()
    }
}

/// One version of a table's history.
#[derive(Debug, Clone, Serialize)]
pub struct Version {
    /// The version.
    pub version: u64,
    /// When it was committed, milliseconds since the epoch.
    pub timestamp: i64,
    /// The run that committed it (from `commitInfo`), if the host did.
    pub run_id: Option<String>,
    /// The operation (`WRITE`, ...).
    pub operation: String,
    /// Rows in the table at this version.
    pub rows: u64,
    /// Bytes of data files in the table at this version.
    pub bytes: u64,
    /// Whether every file of the version is still there (older versions'
    /// files go when the history is trimmed).
    pub readable: bool,
}

/// One new data file of a commit.
#[derive(Debug, Clone)]
pub struct NewFile {
    /// Lake-relative path, under the table's folder.
    pub path: String,
    /// Bytes.
    pub size: u64,
    /// Rows.
    pub rows: u64,
}

/// A commit: the files that replace the table's (or one partition's).
#[derive(Debug, Clone)]
pub struct Change<'a> {
    /// The run committing.
    pub run_id: &'a str,
    /// When, milliseconds since the epoch.
    pub timestamp: i64,
    /// The data files' columns (without the partition column); `None`: as
    /// they are (a commit that empties an existing table).
    pub schema: Option<&'a Schema>,
    /// The partition replaced, `(column, value)`, as `ingest_date=...`
    /// names it; `None`: the whole table is replaced.
    pub partition: Option<(&'a str, &'a str)>,
    /// The new files.
    pub files: Vec<NewFile>,
}

/// A commit checked and ready to write (see [`DeltaTable::prepare`]).
#[derive(Debug, Clone)]
pub struct Prepared {
    version: u64,
    text: String,
}

/// What trimming the history deleted.
#[derive(Debug, Clone, Copy, Default)]
pub struct Trimmed {
    /// Files deleted.
    pub files: u64,
    /// Their bytes.
    pub bytes: u64,
}

impl<'a> DeltaTable<'a> {
    /// The table in the lake folder `root` (lake-relative).
    pub fn new(lake: &'a Lake, root: &str) -> Self {
        DeltaTable { lake, root: root.trim_matches('/').to_owned() }
    }

    fn error(&self, message: impl Into<String>) -> LakeError {
        LakeError::Delta { url: self.lake.url().to_owned(), table: self.root.clone(), message: message.into() }
    }

    fn commit_path(&self, version: u64) -> String {
        format!("{}/{LOG}/{version:020}.json", self.root)
    }

    /// The versions in the log, oldest first (empty: no table here).
    pub fn versions(&self) -> Result<Vec<u64>, LakeError> {
        let prefix = format!("{}/{LOG}/", self.root);
        let mut versions: Vec<u64> = self
            .lake
            .list(&format!("{}/{LOG}", self.root))?
            .iter()
            .filter_map(|file| file.strip_prefix(&prefix)?.strip_suffix(".json")?.parse().ok())
            .collect();
        versions.sort_unstable();
        if let Some(first) = versions.first().filter(|v| **v != 0) {
            return Err(self.error(format!(
                "its log starts at version {first}, after a checkpoint written by another tool; the host reads logs kept whole from version 0\n  hint: read this table with that tool, or rebuild it with the host"
            )));
        }
        if let Some(gap) = versions.iter().enumerate().find(|(at, v)| **v != *at as u64) {
            return Err(self.error(format!("its log has no version {} (it jumps to {})", gap.0, gap.1)));
        }
        Ok(versions)
    }

    /// Whether the table exists (has a log).
    pub fn exists(&self) -> Result<bool, LakeError> {
        Ok(!self.versions()?.is_empty())
    }

    /// The actions of one version, as JSON objects.
    fn actions(&self, version: u64) -> Result<Vec<serde_json::Map<String, Value>>, LakeError> {
        let path = self.commit_path(version);
        let bytes = self.lake.get(&path)?.ok_or_else(|| self.error(format!("version {version} is missing")))?;
        let text = std::str::from_utf8(&bytes).map_err(|e| self.error(format!("version {version}: {e}")))?;
        text.lines()
            .enumerate()
            .filter(|(_, line)| !line.trim().is_empty())
            .map(|(at, line)| {
                serde_json::from_str(line).map_err(|e| self.error(format!("version {version}, line {}: {e}", at + 1)))
            })
            .collect()
    }

    /// The table at `version` (the latest when `None`); `None` when the
    /// table does not exist.
    pub fn snapshot(&self, version: Option<u64>) -> Result<Option<Snapshot>, LakeError> {
        let versions = self.versions()?;
        let Some(&latest) = versions.last() else { return Ok(None) };
        let upto = version.unwrap_or(latest);
        if upto > latest {
            return Err(self.error(format!("there is no version {upto}: the latest is {latest}")));
        }
        let mut replay = Replay::default();
        for version in 0..=upto {
            replay.apply(self, version, self.actions(version)?)?;
        }
        replay.finish(self, upto).map(Some)
    }

    /// Every version, oldest first, with its rows and bytes.
    pub fn history(&self) -> Result<Vec<Version>, LakeError> {
        let mut replay = Replay::default();
        let mut history = Vec::new();
        let present: BTreeSet<String> = self.lake.list(&self.root)?.into_iter().collect();
        for version in self.versions()? {
            let actions = self.actions(version)?;
            let info = actions.iter().find_map(|a| a.get("commitInfo")).cloned().unwrap_or(Value::Null);
            replay.apply(self, version, actions)?;
            let files = replay.files.values();
            history.push(Version {
                version,
                timestamp: info.get("timestamp").and_then(Value::as_i64).unwrap_or(0),
                run_id: info.get("userMetadata").and_then(Value::as_str).and_then(run_of).map(str::to_owned),
                operation: info.get("operation").and_then(Value::as_str).unwrap_or("").to_owned(),
                rows: files.clone().filter_map(AddFile::rows).sum(),
                bytes: files.clone().map(|f| f.size).sum(),
                readable: files.clone().all(|f| present.contains(&f.in_lake(&self.root))),
            });
        }
        Ok(history)
    }

    /// The data files of a snapshot, lake-relative, in path order.
    pub fn files_of(&self, snapshot: &Snapshot) -> Vec<String> {
        snapshot.files.values().map(|f| f.in_lake(&self.root)).collect()
    }

    /// Writes a commit [`DeltaTable::prepare`] made: the one step that
    /// makes the version visible. Returns the version.
    pub fn write(&self, prepared: Prepared) -> Result<u64, LakeError> {
        let version = prepared.version;
        if !self.lake.create_new(&self.commit_path(version), prepared.text.into_bytes())? {
            return Err(self.error(format!(
                "version {version} was committed by someone else meanwhile\n  hint: one writer per table: is another tool writing it?"
            )));
        }
        Ok(version)
    }

    /// Checks `change` against the table and makes its log entry, without
    /// writing anything: a commit of several tables checks them all first.
    pub fn prepare(&self, change: &Change<'_>) -> Result<Prepared, LakeError> {
        let current = self.snapshot(None)?;
        let version = current.as_ref().map_or(0, |s| s.version + 1);
        let partition_columns: Vec<String> = change.partition.iter().map(|(c, _)| (*c).to_owned()).collect();
        let schema_string = match change.schema {
            None => None,
            Some(schema) => {
                let partition = change.partition.map(|(c, _)| c);
                let columns = schema_json(schema, partition).map_err(|e| self.error(e))?;
                // A partition replaced keeps the other partitions' files:
                // the table's columns are the union, and a column may not
                // change its type.
                match (&current, partition) {
                    (Some(snapshot), Some(_)) => {
                        Some(merge_schemas(&snapshot.metadata.schema_string, &columns).map_err(|e| self.error(e))?)
                    }
                    _ => Some(columns),
                }
            }
        };
        let mut lines = Vec::new();
        let rows: u64 = change.files.iter().map(|f| f.rows).sum();
        let bytes: u64 = change.files.iter().map(|f| f.size).sum();
        let mut parameters = json!({ "mode": "Overwrite", "partitionBy": serde_json::to_string(&partition_columns).unwrap_or_default() });
        if let Some((column, value)) = change.partition {
            parameters["replaceWhere"] = json!(format!("{column} = '{value}'"));
        }
        lines.push(json!({ "commitInfo": {
            "timestamp": change.timestamp,
            "operation": "WRITE",
            "operationParameters": parameters,
            "isBlindAppend": false,
            "operationMetrics": {
                "numFiles": change.files.len().to_string(),
                "numOutputRows": rows.to_string(),
                "numOutputBytes": bytes.to_string(),
            },
            "engineInfo": concat!("medallion/", env!("CARGO_PKG_VERSION")),
            "userMetadata": format!("{RUN_PREFIX}{}", change.run_id),
        }}));
        match &current {
            None => {
                let schema_string =
                    schema_string.ok_or_else(|| self.error("a new table needs its columns: it has no files"))?;
                lines.push(json!({ "protocol": PROTOCOL }));
                let metadata = Metadata {
                    id: new_id(),
                    format: Format { provider: "parquet".to_owned(), options: BTreeMap::new() },
                    schema_string,
                    partition_columns,
                    configuration: BTreeMap::new(),
                    created_time: Some(change.timestamp),
                };
                lines.push(json!({ "metaData": metadata }));
            }
            Some(snapshot) => {
                if snapshot.protocol.min_writer_version > PROTOCOL.min_writer_version {
                    return Err(self.error(format!(
                        "another tool upgraded it to Delta writer version {} ({:?}), which the host does not write\n  hint: rebuild it from the host (delete its folder), or write it with that tool",
                        snapshot.protocol.min_writer_version, snapshot.protocol.writer_features
                    )));
                }
                if snapshot.metadata.partition_columns != partition_columns {
                    return Err(self.error(format!(
                        "it is partitioned by {:?}, this commit by {partition_columns:?}",
                        snapshot.metadata.partition_columns
                    )));
                }
                if let Some(schema_string) = schema_string.filter(|s| *s != snapshot.metadata.schema_string) {
                    let metadata = Metadata { schema_string, ..snapshot.metadata.clone() };
                    lines.push(json!({ "metaData": metadata }));
                }
                let added: BTreeSet<String> = change
                    .files
                    .iter()
                    .filter_map(|f| f.path.strip_prefix(&format!("{}/", self.root)).map(encode))
                    .collect();
                // A file the commit adds again (a conversion retried) is not
                // also removed: readers differ on which of the two wins.
                let replaced =
                    snapshot.files.values().filter(|f| !added.contains(&f.path)).filter(|f| match change.partition {
                        None => true,
                        Some((column, value)) => {
                            f.partition_values.get(column).and_then(Option::as_deref) == Some(value)
                        }
                    });
                for file in replaced {
                    lines.push(json!({ "remove": {
                        "path": file.path,
                        "deletionTimestamp": change.timestamp,
                        "dataChange": true,
                        "extendedFileMetadata": true,
                        "partitionValues": file.partition_values,
                        "size": file.size,
                    }}));
                }
            }
        }
        for file in &change.files {
            let relative = file
                .path
                .strip_prefix(&format!("{}/", self.root))
                .ok_or_else(|| self.error(format!("file `{}` is not in the table's folder", file.path)))?;
            let add = AddFile {
                path: encode(relative),
                partition_values: change
                    .partition
                    .iter()
                    .map(|(c, v)| ((*c).to_owned(), Some((*v).to_owned())))
                    .collect(),
                size: file.size,
                modification_time: change.timestamp,
                data_change: true,
                stats: Some(json!({ "numRecords": file.rows }).to_string()),
            };
            lines.push(json!({ "add": add }));
        }
        let mut text = String::new();
        for line in lines {
            text.push_str(&line.to_string());
            text.push('\n');
        }
        Ok(Prepared { version, text })
    }

    /// After a commit, from one reading of the log: writes the symlink
    /// manifests of the latest version (of `partition` only, when given;
    /// see below), then trims the history to the last `keep` versions:
    /// deletes every Parquet file in the table's folder that none of them
    /// references (older versions' files, and a killed run's), except
    /// `also_keep` (lake-relative) and anything under a folder named `_...`
    /// or `.…` (logs, manifests). The log stays whole: older versions are
    /// listed, no longer readable.
    pub fn tidy(
        &self,
        keep: usize,
        also_keep: &BTreeSet<String>,
        partition: Option<&str>,
    ) -> Result<Trimmed, LakeError> {
        let versions = self.versions()?;
        let Some(&latest) = versions.last() else { return Ok(Trimmed::default()) };
        let oldest_kept = (latest + 1).saturating_sub(keep.max(1) as u64);
        let mut replay = Replay::default();
        let mut referenced: BTreeSet<String> = BTreeSet::new();
        for version in versions {
            replay.apply(self, version, self.actions(version)?)?;
            if version >= oldest_kept {
                referenced.extend(replay.files.values().map(|f| f.in_lake(&self.root)));
            }
        }
        self.write_symlinks(&replay.files, partition)?;
        let mut trimmed = Trimmed::default();
        for file in self.lake.list(&self.root)? {
            // Only data files: never a log, a manifest, or anything of a
            // table nested in this folder.
            let inside = file.strip_prefix(&format!("{}/", self.root)).unwrap_or(&file);
            let ours = inside.ends_with(".parquet")
                && !inside.split('/').any(|part| part.starts_with('_') || part.starts_with('.'));
            if !ours || referenced.contains(&file) || also_keep.contains(&file) {
                continue;
            }
            trimmed.bytes += self.lake.size(&file).unwrap_or(0);
            self.lake.delete(&file)?;
            trimmed.files += 1;
        }
        Ok(trimmed)
    }

    /// Writes the symlink manifests of the latest version (for Presto and
    /// Athena): per partition, `_symlink_format_manifest/[<column>=<value>/]manifest`
    /// lists its files by their full location; only `partition`'s
    /// (`column=value`) when given, else every partition's. A partition
    /// emptied is left with an empty list.
    fn write_symlinks(&self, files: &BTreeMap<String, AddFile>, partition: Option<&str>) -> Result<(), LakeError> {
        let mut by_partition: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for file in files.values() {
            let folder = partition_folder(&file.partition_values);
            by_partition.entry(folder).or_default().push(self.lake.location(&file.in_lake(&self.root)));
        }
        let prefix = format!("{}/{SYMLINKS}/", self.root);
        for old in self.lake.list(&format!("{}/{SYMLINKS}", self.root))? {
            let folder = old.strip_prefix(&prefix).and_then(|f| f.strip_suffix("manifest")).unwrap_or_default();
            by_partition.entry(folder.trim_end_matches('/').to_owned()).or_default();
        }
        for (folder, files) in by_partition {
            if partition.is_some_and(|only| only != folder) {
                continue;
            }
            let path = match folder.as_str() {
                "" => format!("{prefix}manifest"),
                folder => format!("{prefix}{folder}/manifest"),
            };
            let mut text = files.join("\n");
            if !text.is_empty() {
                text.push('\n');
            }
            self.lake.put(&path, text.into_bytes())?;
        }
        Ok(())
    }
}

/// Checks that `name` can name a lake table: a letter, then letters,
/// digits and `_` (at most 128). Table names become folder names and SQL
/// names in other engines: nothing else is safe in both.
pub fn check_table_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic());
    if first_ok && name.len() <= 128 && chars.all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Ok(());
    }
    Err(format!(
        "`{name}` cannot name a lake table: use a letter, then letters, digits and `_` (it becomes a folder and a table name in Spark, Trino and Hive)"
    ))
}

/// Every Delta table of the lake (its zones `bronze`, `silver` and
/// `quarantine`), by folder, sorted.
pub fn find_tables(lake: &Lake) -> Result<Vec<String>, LakeError> {
    let marker = format!("/{LOG}/");
    let mut roots = BTreeSet::new();
    for zone in ["bronze", "silver", "quarantine"] {
        for file in lake.list(zone)? {
            if let Some((root, _)) = file.split_once(&marker) {
                roots.insert(root.to_owned());
            }
        }
    }
    Ok(roots.into_iter().collect())
}

/// How `commitInfo.userMetadata` names the run.
const RUN_PREFIX: &str = "medallion run ";

fn run_of(user_metadata: &str) -> Option<&str> {
    user_metadata.strip_prefix(RUN_PREFIX)
}

/// A log being replayed, version after version.
#[derive(Debug, Default)]
struct Replay {
    protocol: Option<Protocol>,
    metadata: Option<Metadata>,
    files: BTreeMap<String, AddFile>,
}

impl Replay {
    fn apply(
        &mut self,
        table: &DeltaTable<'_>,
        version: u64,
        actions: Vec<serde_json::Map<String, Value>>,
    ) -> Result<(), LakeError> {
        let bad = |what: &str, e: serde_json::Error| table.error(format!("version {version}: its `{what}`: {e}"));
        for action in actions {
            for (kind, body) in action {
                match kind.as_str() {
                    "protocol" => {
                        let protocol: Protocol = serde_json::from_value(body).map_err(|e| bad("protocol", e))?;
                        if protocol.min_reader_version > 1 {
                            return Err(table.error(format!(
                                "another tool upgraded it to Delta reader version {} ({:?}), which the host does not read\n  hint: rebuild it from the host (delete its folder), or read it with that tool",
                                protocol.min_reader_version, protocol.reader_features
                            )));
                        }
                        self.protocol = Some(protocol);
                    }
                    "metaData" => self.metadata = Some(serde_json::from_value(body).map_err(|e| bad("metaData", e))?),
                    "add" => {
                        let add: AddFile = serde_json::from_value(body).map_err(|e| bad("add", e))?;
                        self.files.insert(add.path.clone(), add);
                    }
                    "remove" => {
                        let path = body.get("path").and_then(Value::as_str).unwrap_or_default();
                        self.files.remove(path);
                    }
                    // commitInfo, txn, cdc, domainMetadata: nothing the
                    // table's files depend on.
                    _ => {}
                }
            }
        }
        Ok(())
    }

    fn finish(self, table: &DeltaTable<'_>, version: u64) -> Result<Snapshot, LakeError> {
        let missing = |what: &str| table.error(format!("no `{what}` in versions 0 to {version}"));
        Ok(Snapshot {
            version,
            protocol: self.protocol.ok_or_else(|| missing("protocol"))?,
            metadata: self.metadata.ok_or_else(|| missing("metaData"))?,
            files: self.files,
        })
    }
}

/// A new table id: a random (version 4) UUID.
fn new_id() -> String {
    let mut bytes = [0u8; 16];
    if getrandom::fill(&mut bytes).is_err() {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        bytes = (now.as_nanos() ^ (u128::from(std::process::id()) << 64)).to_le_bytes();
    }
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("{}-{}-{}-{}-{}", &hex[..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..])
}

/// The folder a partition's files go in: `column=value` (empty: none).
fn partition_folder(values: &BTreeMap<String, Option<String>>) -> String {
    values
        .iter()
        .map(|(column, value)| format!("{column}={}", value.as_deref().unwrap_or("__HIVE_DEFAULT_PARTITION__")))
        .collect::<Vec<_>>()
        .join("/")
}

/// A relative path as a URI path (RFC 2396): bytes outside the unreserved
/// set and `/` percent-encoded.
fn encode(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for byte in path.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' | b'=' => out.push(byte as char),
            other => out.push_str(&format!("%{other:02X}")),
        }
    }
    out
}

/// A URI path back to the file's name.
fn decode(path: &str) -> String {
    let bytes = path.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while at < bytes.len() {
        let hex = bytes.get(at + 1..at + 3).and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[at], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(byte)) => {
                out.push(byte);
                at += 3;
            }
            (byte, _) => {
                out.push(byte);
                at += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The table's columns as Delta's (Spark's) JSON schema; `partition`, a
/// partition column not in the files, is added last as a date. Column
/// names must differ without regard to case (Spark's rule).
pub fn schema_json(schema: &Schema, partition: Option<&str>) -> Result<String, String> {
    let mut fields = schema.fields().iter().map(|f| field_json(f)).collect::<Result<Vec<_>, _>>()?;
    if let Some(column) = partition {
        fields.push(json!({ "name": column, "type": "date", "nullable": true, "metadata": {} }));
    }
    let mut seen = BTreeSet::new();
    for field in &fields {
        let name = field["name"].as_str().unwrap_or_default();
        if !seen.insert(name.to_lowercase()) {
            return Err(match partition {
                Some(column) if column.eq_ignore_ascii_case(name) => format!(
                    "the data has a column `{name}`, which is the table's partition column\n  hint: rename the source's column"
                ),
                _ => format!("two columns are named `{name}` (in any case): Delta readers refuse that"),
            });
        }
    }
    Ok(json!({ "type": "struct", "fields": fields }).to_string())
}

/// A partitioned table's columns after one partition is replaced: the
/// table's, with a new partition's type for each, then the new columns
/// (nullable: older partitions lack them). A column whose type changes is
/// an error (the older partitions' files could no longer be read).
fn merge_schemas(table: &str, new: &str) -> Result<String, String> {
    let fields = |text: &str| -> Result<Vec<Value>, String> {
        let value: Value = serde_json::from_str(text).map_err(|e| format!("its schema: {e}"))?;
        Ok(value["fields"].as_array().cloned().unwrap_or_default())
    };
    let (mut merged, new) = (fields(table)?, fields(new)?);
    for field in new {
        match merged.iter_mut().find(|f| f["name"] == field["name"]) {
            Some(old) if old["type"] != field["type"] => {
                return Err(format!(
                    "column `{}` was {} in the partitions already there and is {} now: readers could not read both\n  hint: give the source's column its former type, or land it under another table name",
                    field["name"].as_str().unwrap_or_default(),
                    old["type"],
                    field["type"]
                ));
            }
            Some(old) => {
                old["nullable"] =
                    json!(old["nullable"].as_bool().unwrap_or(true) || field["nullable"].as_bool().unwrap_or(true))
            }
            None => {
                let mut field = field;
                field["nullable"] = json!(true);
                merged.push(field);
            }
        }
    }
    Ok(json!({ "type": "struct", "fields": merged }).to_string())
}

fn field_json(field: &Field) -> Result<Value, String> {
    let data_type = type_json(field.data_type()).map_err(|e| format!("column `{}`: {e}", field.name()))?;
    Ok(json!({ "name": field.name(), "type": data_type, "nullable": field.is_nullable(), "metadata": {} }))
}

fn type_json(data_type: &DataType) -> Result<Value, String> {
    let name = |name: &str| Ok(Value::String(name.to_owned()));
    match data_type {
        DataType::Boolean => name("boolean"),
        DataType::Int8 => name("byte"),
        DataType::Int16 => name("short"),
        DataType::Int32 => name("integer"),
        DataType::Int64 => name("long"),
        DataType::Float32 => name("float"),
        DataType::Float64 => name("double"),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => name("string"),
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView | DataType::FixedSizeBinary(_) => {
            name("binary")
        }
        DataType::Date32 => name("date"),
        DataType::Timestamp(TimeUnit::Microsecond, Some(_)) => name("timestamp"),
        DataType::Decimal128(precision, scale) if *precision <= 38 => name(&format!("decimal({precision},{scale})")),
        DataType::Dictionary(_, values) => type_json(values),
        DataType::List(item) | DataType::LargeList(item) | DataType::ListView(item) | DataType::LargeListView(item) => {
            Ok(
                json!({ "type": "array", "elementType": type_json(item.data_type())?, "containsNull": item.is_nullable() }),
            )
        }
        DataType::Struct(fields) => {
            let fields = fields.iter().map(|f| field_json(f)).collect::<Result<Vec<_>, _>>()?;
            Ok(json!({ "type": "struct", "fields": fields }))
        }
        other => Err(format!(
            "{other} has no Delta type every reader knows (the lake writes signed integers, floats, text, dates, UTC microsecond timestamps, decimals, lists and structs)"
        )),
    }
}

/// The type a column is stored as so that every Delta reader reads it:
/// unsigned integers as the next wider signed type, timestamps as UTC
/// microseconds, dates as days, `Null` columns as text, inside lists and
/// structs too; others unchanged.
pub fn storable_type(data_type: &DataType) -> DataType {
    let field = |f: &Field| Arc::new(f.clone().with_data_type(storable_type(f.data_type())));
    match data_type {
        DataType::List(item) => DataType::List(field(item)),
        DataType::LargeList(item) => DataType::LargeList(field(item)),
        DataType::Struct(fields) => DataType::Struct(fields.iter().map(|f| field(f)).collect()),
        DataType::Dictionary(key, values) => DataType::Dictionary(key.clone(), Box::new(storable_type(values))),
        DataType::UInt8 => DataType::Int16,
        DataType::UInt16 => DataType::Int32,
        DataType::UInt32 | DataType::UInt64 => DataType::Int64,
        DataType::Float16 => DataType::Float32,
        DataType::Null => DataType::Utf8,
        DataType::Date64 => DataType::Date32,
        DataType::Timestamp(_, tz) => {
            DataType::Timestamp(TimeUnit::Microsecond, Some(tz.clone().unwrap_or_else(|| "UTC".into())))
        }
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_schema_is_written_as_spark_reads_it() {
        let schema = Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("name", DataType::LargeUtf8, true),
            Field::new("at", DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())), true),
        ]);
        let text = schema_json(&schema, Some("ingest_date")).unwrap();
        let value: Value = serde_json::from_str(&text).unwrap();
        let types: Vec<&str> =
            value["fields"].as_array().unwrap().iter().map(|f| f["type"].as_str().unwrap()).collect();
        assert_eq!(types, ["long", "string", "timestamp", "date"]);
        assert_eq!(value["fields"][0]["nullable"], false);
    }

    #[test]
    fn a_type_no_reader_knows_is_named() {
        let schema = Schema::new(vec![Field::new("n", DataType::UInt64, false)]);
        let error = schema_json(&schema, None).unwrap_err();
        assert!(error.contains("column `n`") && error.contains("UInt64"), "{error}");
        assert_eq!(storable_type(&DataType::UInt64), DataType::Int64);
    }

    #[test]
    fn paths_are_uri_encoded_and_back() {
        let path = "ingest_date=2026-11-24/part-00000-20261124T010203.5Z-00042 x%.parquet";
        assert_eq!(encode(path), "ingest_date=2026-11-24/part-00000-20261124T010203.5Z-00042%20x%25.parquet");
        assert_eq!(decode(&encode(path)), path);
    }

    #[test]
    fn a_partition_replaced_keeps_the_other_partitions_columns_and_refuses_a_type_change() {
        let columns = |fields: Vec<Field>| schema_json(&Schema::new(fields), Some("ingest_date")).unwrap();
        let before = columns(vec![Field::new("a", DataType::Utf8, false), Field::new("b", DataType::Int64, true)]);
        let after = columns(vec![Field::new("a", DataType::Utf8, false), Field::new("c", DataType::Float64, false)]);
        let merged: Value = serde_json::from_str(&merge_schemas(&before, &after).unwrap()).unwrap();
        let names: Vec<(&str, bool)> = merged["fields"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| (f["name"].as_str().unwrap(), f["nullable"].as_bool().unwrap()))
            .collect();
        assert_eq!(names, [("a", false), ("b", true), ("ingest_date", true), ("c", true)]);
        let retyped = columns(vec![Field::new("b", DataType::Utf8, true)]);
        let error = merge_schemas(&before, &retyped).unwrap_err();
        assert!(error.contains("column `b` was \"long\"") && error.contains("\"string\" now"), "{error}");
        let clash =
            schema_json(&Schema::new(vec![Field::new("INGEST_DATE", DataType::Utf8, true)]), Some("ingest_date"));
        assert!(clash.unwrap_err().contains("partition column"));
    }

    #[test]
    fn only_plain_names_name_tables() {
        for good in ["orders", "dim_date", "T2"] {
            assert!(check_table_name(good).is_ok(), "{good}");
        }
        for bad in ["", "_commits", "a/b", "..", "x y", "2fast", "naïve", "a-b"] {
            assert!(check_table_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn table_ids_are_version_4_uuids() {
        let (a, b) = (new_id(), new_id());
        assert_ne!(a, b);
        assert_eq!(a.len(), 36);
        assert_eq!(&a[14..15], "4");
    }
}
