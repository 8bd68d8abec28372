//! The lake: one interface over a local folder (`file://` or a plain path)
//! and HDFS (`hdfs://host:port/path`), Parquet tables in zones (`bronze/`,
//! `silver/`, `quarantine/`), and publish-on-success commits.
//!
//! Every table is a Delta Lake table at a stable folder (`bronze/<table>`,
//! partitioned by `ingest_date`; `silver/<table>`; `quarantine/bronze/<table>`
//! and `quarantine/silver/<table>/<kind>`), which Spark, Trino, polars and
//! DuckDB read directly (see [`delta`]).
//!
//! Publishing: a stage writes its files into the tables' folders
//! (`<table>/[<partition>/]part-NNNNN-<run_id>.parquet`), where no reader
//! looks until a Delta version names them. It then commits each table as
//! its next Delta version (one file created with put-if-absent), and last
//! writes the zone's manifest, `<zone>/_commits/<partition>.json`, which
//! names the versions that belong together: the host's readers follow it,
//! so they see the previous run's tables or the new ones, never a mix. Each
//! table keeps the versions of its last N commits (`history.keep_runs`);
//! older versions' files, and a killed run's, are deleted after a commit.
//!
//! Not for: deciding what goes in a table (the engine does that).

mod bronze;
pub mod delta;
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
