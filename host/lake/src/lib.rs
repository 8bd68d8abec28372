//! The lake: one interface over a local folder (`file://` or a plain path)
//! and HDFS (`hdfs://host:port/path`), Parquet tables in zones (`bronze/`,
//! `silver/`, `quarantine/`), and publish-on-success commits.
//!
//! Publishing: a stage writes its files under a run folder
//! (`<zone>/<table>/<partition>/run=<run_id>/part-NNNNN.parquet`) that no
//! reader looks at, then commits by writing one manifest,
//! `<zone>/_commits/<partition>.json`, in a single atomic put (temporary file
//! and rename, on both backends). Readers follow the manifest, so they see
//! the previous run or the new one, never a mix. After the commit, files of
//! other runs in the same partition are deleted; a killed run's files are
//! removed by the next commit of that partition.
//!
//! Not for: deciding what goes in a table (the engine does that).

mod bronze;
mod lock;
mod manifest;
mod parts;
pub mod sources;
mod store;

pub use bronze::{BronzeReport, IngestError, IngestOptions, SourceSpec, TableReport, ingest};
pub use lock::{Holder, RunLock};
pub use manifest::{Manifest, SILVER_PARTITION, SILVER_ZONE, TableFiles};
pub use parts::{ParquetTable, PartWriter, RowGroup, table_properties};
pub use store::{Lake, LakeError};
