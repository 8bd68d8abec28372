//! Table definitions over the committed Silver tables, for the engines that
//! read the lake: Spark and Trino read the Delta tables themselves, Hive
//! through Delta's Hive connector, Presto and Athena through each table's
//! symlink manifest (the current version's files).

use std::sync::Arc;

use arrow_schema::{DataType, Schema};
use medallion_lake::delta::{DeltaTable, SYMLINKS};
use medallion_lake::{Lake, Manifest, ParquetTable};

use super::{PARTITION, SilverError, ZONE};

/// The engine a definition is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    /// Spark with delta-spark: `CREATE TABLE ... USING DELTA LOCATION`.
    Spark,
    /// Trino's Delta Lake connector: `register_table`.
    Trino,
    /// Hive with Delta's connector (`io.delta.hive.DeltaStorageHandler`).
    Hive,
    /// Presto, Athena, Trino's Hive connector: external Parquet tables over
    /// the symlink manifests.
    Presto,
}

/// Definitions of the committed Silver tables for `engine`, in `database`.
/// All stay correct across runs: they name each table's stable folder, never
/// a run's files (Hive's connector reads the Delta log; Presto's tables
/// read the symlink manifest the host rewrites at each commit). Run the
/// Hive and Presto ones again when a table's columns change.
pub fn table_ddl(lake: &Lake, database: &str, engine: Engine) -> Result<String, SilverError> {
    let manifest = Manifest::read(lake, ZONE, PARTITION)?.ok_or_else(|| {
        SilverError::Config(format!("no Silver in {}\n  hint: build it with `host run pipeline.yaml`", lake.url()))
    })?;
    let mut ddl = format!(
        "-- Silver tables of {} for {} (run {}, committed {})\n",
        lake.url(),
        match engine {
            Engine::Spark => "Spark with delta-spark",
            Engine::Trino =>
                "Trino's Delta Lake connector (catalog `delta`, delta.register-table-procedure.enabled=true)",
            Engine::Hive => "Hive with Delta's connector (ADD JAR delta-hive-assembly_2.12-<version>.jar first)",
            Engine::Presto =>
                "Presto, Athena or Trino's Hive connector (the current version, through each table's symlink manifest)",
        },
        manifest.run_id,
        manifest.committed_at
    );
    ddl.push_str(&match engine {
        Engine::Trino => format!("CREATE SCHEMA IF NOT EXISTS delta.{database};\n"),
        Engine::Hive => format!(
            "SET hive.input.format=io.delta.hive.HiveInputFormat;\nSET hive.tez.input.format=io.delta.hive.HiveInputFormat;\nCREATE DATABASE IF NOT EXISTS {database};\n"
        ),
        Engine::Spark | Engine::Presto => format!("CREATE DATABASE IF NOT EXISTS {database};\n"),
    });
    for (table, files) in &manifest.tables {
        let root = format!("{ZONE}/{table}");
        if !DeltaTable::new(lake, &root).exists()? {
            return Err(SilverError::Config(format!(
                "Silver table `{table}` in {} is not a Delta table yet (written by an older host)\n  hint: `host lake convert pipeline.yaml` converts the lake",
                lake.url()
            )));
        }
        let location = lake.location(&root);
        match engine {
            Engine::Spark => ddl.push_str(&format!(
                "\nCREATE TABLE IF NOT EXISTS {database}.{table} USING DELTA LOCATION '{location}';\n"
            )),
            Engine::Trino => ddl.push_str(&format!(
                "\nCALL delta.system.register_table(schema_name => '{database}', table_name => '{table}', table_location => '{location}');\n"
            )),
            Engine::Hive | Engine::Presto => {
                let Some(first) = files.files.first() else { continue };
                let parquet = ParquetTable::open(lake, std::slice::from_ref(first), Arc::new(Schema::empty()))?;
                let columns: Vec<String> = parquet
                    .schema()
                    .fields()
                    .iter()
                    .map(|f| format!("  `{}` {}", f.name(), hive_type(f.data_type())))
                    .collect();
                let stored = if engine == Engine::Hive {
                    format!("STORED BY 'io.delta.hive.DeltaStorageHandler'\nLOCATION '{location}'")
                } else {
                    format!(
                        "ROW FORMAT SERDE 'org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe'\nSTORED AS INPUTFORMAT 'org.apache.hadoop.hive.ql.io.SymlinkTextInputFormat'\nOUTPUTFORMAT 'org.apache.hadoop.hive.ql.io.HiveIgnoreKeyTextOutputFormat'\nLOCATION '{location}/{SYMLINKS}'"
                    )
                };
                ddl.push_str(&format!(
                    "\nDROP TABLE IF EXISTS {database}.{table};\nCREATE EXTERNAL TABLE {database}.{table} (\n{}\n)\n{stored};\n",
                    columns.join(",\n")
                ));
            }
        }
    }
    Ok(ddl)
}

fn hive_type(data_type: &DataType) -> &'static str {
    match data_type {
        DataType::Int8 | DataType::Int16 | DataType::Int32 => "INT",
        DataType::Int64 => "BIGINT",
        DataType::Float32 => "FLOAT",
        DataType::Float64 => "DOUBLE",
        DataType::Date32 => "DATE",
        DataType::Timestamp(..) => "TIMESTAMP",
        DataType::Boolean => "BOOLEAN",
        _ => "STRING",
    }
}
