//! Hive DDL over the committed Silver tables, for Hive, Spark or Trino.

use std::sync::Arc;

use arrow_schema::{DataType, Schema};
use medallion_lake::{Lake, Manifest, ParquetTable};

use super::{PARTITION, SilverError, ZONE};

/// `CREATE EXTERNAL TABLE` statements for the committed Silver tables, so
/// Hive, Spark or Trino can query the lake: one table per Silver table, its
/// columns from its Parquet schema, its location the folder of the run that
/// is committed now (run the statements again after each run; dropping an
/// external table leaves its files alone).
pub fn hive_ddl(lake: &Lake, database: &str) -> Result<String, SilverError> {
    let manifest = Manifest::read(lake, ZONE, PARTITION)?.ok_or_else(|| {
        SilverError::Config(format!("no Silver in {}\n  hint: build it with `host run pipeline.yaml`", lake.url()))
    })?;
    let base = lake_location(lake.url());
    let mut ddl = format!(
        "-- Silver tables of {} (run {}, committed {})\nCREATE DATABASE IF NOT EXISTS {database};\n",
        lake.url(),
        manifest.run_id,
        manifest.committed_at
    );
    for (table, files) in &manifest.tables {
        let Some(first) = files.files.first() else { continue };
        let parquet = ParquetTable::open(lake, std::slice::from_ref(first), Arc::new(Schema::empty()))?;
        let columns: Vec<String> = parquet
            .schema()
            .fields()
            .iter()
            .map(|f| format!("  `{}` {}", f.name(), hive_type(f.data_type())))
            .collect();
        let folder = first.rsplit_once('/').map_or(first.as_str(), |(folder, _)| folder);
        ddl.push_str(&format!(
            "\nDROP TABLE IF EXISTS {database}.{table};\nCREATE EXTERNAL TABLE {database}.{table} (\n{}\n)\nSTORED AS PARQUET\nLOCATION '{base}/{folder}';\n",
            columns.join(",\n")
        ));
    }
    Ok(ddl)
}

/// The lake's URL as Hive wants a location: a scheme always.
fn lake_location(url: &str) -> String {
    let url = url.trim_end_matches('/');
    if url.contains("://") {
        return url.to_owned();
    }
    // A path: absolute, as a location read by another program must be.
    let absolute = std::path::absolute(url).unwrap_or_else(|_| std::path::PathBuf::from(url));
    let absolute = absolute.to_string_lossy();
    format!("file://{}", absolute.trim_start_matches("./").replace("/./", "/"))
}

fn hive_type(data_type: &DataType) -> &'static str {
    match data_type {
        DataType::Int8 | DataType::Int16 | DataType::Int32 | DataType::UInt8 | DataType::UInt16 => "INT",
        DataType::Int64 | DataType::UInt32 | DataType::UInt64 => "BIGINT",
        DataType::Float32 => "FLOAT",
        DataType::Float64 => "DOUBLE",
        DataType::Date32 => "DATE",
        DataType::Timestamp(..) => "TIMESTAMP",
        DataType::Boolean => "BOOLEAN",
        _ => "STRING",
    }
}
