//! Silver's first step: Bronze row groups pushed through instances of the
//! table's cleaning plugin, every row accounted for (`out`, `rejected`), what
//! it rejects or nulls written to quarantine with its reason.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use arrow_array::{Array, ArrayRef, RecordBatch, StringArray, StringViewArray, UInt64Array};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use medallion_common::progress::{Measure, Task};
use medallion_common::work;
use medallion_lake::{LakeError, ParquetTable, PartWriter, RowGroup, table_properties};
use medallion_plugin::{Instance, LoadedPlugin, PluginError};

use super::{LINEAGE, REASON, ROW, SilverError, TableBuilder};

/// What the cleaning step produced.
pub(super) struct Cleaned {
    pub(super) out_schema: SchemaRef,
    pub(super) out: Vec<RecordBatch>,
    pub(super) quarantine_files: Vec<String>,
    pub(super) quarantined: u64,
    pub(super) reasons: BTreeMap<String, u64>,
    pub(super) nulled: BTreeMap<String, u64>,
}

/// The cleaning plugin's batches by port, for one row group.
#[derive(Default, Clone)]
struct PortBatches {
    pub(super) out: Vec<RecordBatch>,
    rejected: Vec<RecordBatch>,
    nulled: Vec<RecordBatch>,
}

impl TableBuilder<'_> {
    /// Runs the cleaning plugin over every row group; writes its rejects to
    /// quarantine and returns its `out` batches in Bronze order.
    pub(super) fn clean(
        &self,
        input: &ParquetTable,
        plugin: &Arc<LoadedPlugin>,
        config: &str,
    ) -> Result<Cleaned, SilverError> {
        let groups = input.row_groups();
        let workers = if plugin.info().stateless { self.options.workers.clamp(1, groups.len().max(1)) } else { 1 };
        let data_columns = data_columns(input);
        let task = Task::open("silver", self.name, Some(input.rows()), Measure::Rows);
        let out_schema: Mutex<Option<SchemaRef>> = Mutex::new(None);
        let plugin_error = |source: PluginError| SilverError::Plugin { table: self.name.to_owned(), source };
        let start = || {
            let instance = plugin.instantiate(config, self.options.limits).map_err(plugin_error)?;
            super::streams(&instance)
                .map_err(|e| SilverError::Config(format!("silver.tables.{}.clean.plugin: {e}", self.name)))?;
            if let Some(port) = instance.outputs().iter().find(|p| p.name == "out")
                && let Some(schema) = &port.schema
            {
                out_schema.lock().unwrap_or_else(PoisonError::into_inner).get_or_insert(schema.clone());
            }
            Ok(instance)
        };
        let clean_group = |instance: &mut Instance, _, group: &RowGroup| {
            let mut ported = PortBatches::default();
            let mut position = group.offset;
            for batch in input.read(self.lake, group, self.options.batch_rows)? {
                medallion_common::cancel::check()?;
                let batch = with_positions(&batch?, &data_columns, position).map_err(|e| self.engine_error(e))?;
                position += batch.num_rows() as u64;
                let outputs = instance.push("in", &batch).map_err(plugin_error)?;
                task.advance(batch.num_rows() as u64, None);
                self.collect(batch.num_rows(), outputs, &mut ported)?;
            }
            Ok(ported)
        };
        let finish = |instance: Instance| self.refuse_late_rows(plugin, instance);
        let results = work::map_with(groups, workers, start, clean_group, finish)?;
        task.finish();
        let mut out = Vec::new();
        let mut rejected = Vec::new();
        let mut nulled = Vec::new();
        for group in results {
            out.extend(group.out);
            rejected.extend(group.rejected);
            nulled.extend(group.nulled);
        }
        let out_schema = out
            .first()
            .map(RecordBatch::schema)
            .or_else(|| out_schema.into_inner().unwrap_or_else(PoisonError::into_inner))
            .ok_or_else(|| {
                self.engine_error("the cleaning plugin declares no schema for `out` and emitted no batch")
            })?;
        let mut reasons = BTreeMap::new();
        let (mut quarantine_files, quarantined) = self.quarantine(&rejected, "clean", &mut reasons)?;
        let mut nulled_reasons = BTreeMap::new();
        let (nulled_files, _) = self.quarantine(&nulled, "nulled", &mut nulled_reasons)?;
        quarantine_files.extend(nulled_files);
        Ok(Cleaned { out_schema, out, quarantine_files, quarantined, reasons, nulled: nulled_reasons })
    }

    /// Ends a plugin instance: a cleaning plugin emits each row when it is
    /// pushed, so any row it emits at `finish` (on any port) fails the table.
    fn refuse_late_rows(&self, plugin: &LoadedPlugin, mut instance: Instance) -> Result<(), SilverError> {
        let plugin_error = |source: PluginError| SilverError::Plugin { table: self.name.to_owned(), source };
        let outputs = instance.finish().map_err(plugin_error)?;
        let mut late = PortBatches::default();
        self.collect(0, outputs, &mut late)?;
        let late_ports = [("out", &late.out), ("rejected", &late.rejected), ("nulled", &late.nulled)];
        match late_ports.iter().find(|(_, batches)| !batches.is_empty()) {
            Some((port, _)) => Err(plugin_error(PluginError::BadOutput {
                plugin: plugin.info().name.clone(),
                call: medallion_plugin::Call::Finish,
                port: (*port).to_owned(),
                cause: "a cleaning plugin must emit each row when it is pushed, not at `finish`".to_owned(),
            })),
            None => Ok(()),
        }
    }

    /// Writes batches that carry `_reason` to quarantine, counting reasons.
    fn quarantine(
        &self,
        batches: &[RecordBatch],
        prefix: &'static str,
        reasons: &mut BTreeMap<String, u64>,
    ) -> Result<(Vec<String>, u64), SilverError> {
        let Some(first) = batches.first() else { return Ok((Vec::new(), 0)) };
        let mut writer =
            PartWriter::new(self.lake, self.folder("quarantine/silver"), first.schema(), 4 << 20, table_properties())
                .with_prefix(prefix);
        for batch in batches {
            count_reason_column(batch, reasons).map_err(|e| self.engine_error(e))?;
            writer.write(batch).map_err(|e| match e {
                LakeError::Parquet { message, .. } if message.contains("schema") => self.engine_error(format!(
                    "the cleaning plugin's `{prefix}` batches do not all have the same columns: {message}"
                )),
                other => other.into(),
            })?;
        }
        Ok(writer.finish()?)
    }

    /// Sorts one call's outputs into `out` and `rejected`; every row pushed
    /// must come back on one of them.
    fn collect(
        &self,
        pushed: usize,
        outputs: medallion_plugin::Outputs,
        ported: &mut PortBatches,
    ) -> Result<(), SilverError> {
        let mut returned = 0;
        for (port, batches) in outputs {
            let target = match port.as_str() {
                "out" => &mut ported.out,
                "rejected" => &mut ported.rejected,
                "nulled" => &mut ported.nulled,
                other => {
                    return Err(self.engine_error(format!(
                        "the cleaning plugin emitted on port `{other}`; a cleaning step reads `out`, `rejected` and `nulled`"
                    )));
                }
            };
            for batch in batches {
                if port != "out" && batch.column_by_name(REASON).is_none() {
                    return Err(
                        self.engine_error(format!("the cleaning plugin's `{port}` batches have no `_reason` column"))
                    );
                }
                if port != "nulled" {
                    returned += batch.num_rows();
                }
                if batch.num_rows() > 0 {
                    target.push(batch);
                }
            }
        }
        if returned != pushed {
            return Err(SilverError::Conservation {
                table: self.name.to_owned(),
                detail: format!(
                    "the cleaning plugin was pushed {pushed} rows and returned {returned} on `out` and `rejected`; every row must come back on one of them"
                ),
            });
        }
        Ok(())
    }
}

/// The batch's data columns (no lineage) and `_row`, from `first`.
fn with_positions(
    batch: &RecordBatch,
    data_columns: &[usize],
    first: u64,
) -> Result<RecordBatch, arrow_schema::ArrowError> {
    let projected = batch.project(data_columns)?;
    let mut fields: Vec<Field> = projected.schema().fields().iter().map(|f| f.as_ref().clone()).collect();
    fields.push(Field::new(ROW, DataType::UInt64, false));
    let mut columns = projected.columns().to_vec();
    columns.push(Arc::new(UInt64Array::from_iter_values(first..first + batch.num_rows() as u64)) as ArrayRef);
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
}

fn count_reason_column(batch: &RecordBatch, reasons: &mut BTreeMap<String, u64>) -> Result<(), String> {
    let column = batch.column_by_name(REASON).ok_or("no `_reason` column")?;
    let mut add = |reason: Option<&str>| *reasons.entry(reason.unwrap_or("unknown").to_owned()).or_default() += 1;
    if let Some(strings) = column.as_any().downcast_ref::<StringArray>() {
        strings.iter().for_each(&mut add);
    } else if let Some(views) = column.as_any().downcast_ref::<StringViewArray>() {
        views.iter().for_each(&mut add);
    } else {
        return Err(format!("`_reason` is {}, expected text", column.data_type()));
    }
    Ok(())
}

/// The positions of Bronze's data columns (not its lineage columns).
fn data_columns(input: &ParquetTable) -> Vec<usize> {
    input
        .schema()
        .fields()
        .iter()
        .enumerate()
        .filter(|(_, f)| !LINEAGE.contains(&f.name().as_str()))
        .map(|(i, _)| i)
        .collect()
}
