//! Silver's first step: Bronze row groups pushed through instances of the
//! table's cleaning plugin, every row accounted for (`out`, `rejected`), what
//! it rejects or nulls written to quarantine with its reason.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use arrow_array::{Array, ArrayRef, LargeStringArray, RecordBatch, StringArray, StringViewArray, UInt64Array};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use medallion_common::progress::{Measure, Task};
use medallion_common::work;
use medallion_lake::{LakeError, ParquetTable, PartWriter, RowGroup, table_properties};
use medallion_plugin::{Instance, LoadedPlugin, PluginError};

use super::{LINEAGE, REASON, ROW, SilverError, TableBuilder};

/// What the cleaning step did besides its `out` rows.
pub(super) struct Cleaned {
    /// The `out` schema the plugin declares, if it does.
    pub(super) declared: Option<SchemaRef>,
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

/// Row groups cleaned ahead of the one being consumed, per worker: what
/// bounds the memory of a table's cleaning.
const GROUPS_AHEAD_PER_WORKER: usize = 1;

/// Row groups of the budget's size (`row_group_rows`) a table holds at once
/// at most: two workers' two each and the one being consumed (see
/// [`crate::budget::row_group_rows`]).
const GROUPS_HELD: usize = 5;

/// How many Bronze row groups a table cleans ahead of the one consumed, and
/// with how many workers (at most `workers`): Bronze landed under a larger
/// budget has larger row groups than this run's `row_group_rows`, so fewer
/// of them are held, down to one worker and one group ahead.
fn in_flight(groups: &[RowGroup], workers: usize, row_group_rows: usize) -> (usize, usize) {
    let largest = groups.iter().map(|g| g.rows).max().unwrap_or(0).max(1);
    let fit = ((GROUPS_HELD * row_group_rows) as u64 / largest).max(2) as usize;
    let ahead = (workers * (1 + GROUPS_AHEAD_PER_WORKER)).min(fit - 1);
    (workers.min(ahead), ahead)
}

impl TableBuilder<'_> {
    /// Runs the cleaning plugin over every row group, `workers` instances at
    /// once; hands the `out` batches of each row group to `out`, in Bronze
    /// order, as they are ready, and writes the rejected and nulled rows to
    /// quarantine as they come.
    pub(super) fn clean(
        &self,
        input: &ParquetTable,
        plugin: &Arc<LoadedPlugin>,
        config: &str,
        mut out: impl FnMut(Vec<RecordBatch>) -> Result<(), SilverError>,
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
                if self.stop.load(std::sync::atomic::Ordering::Relaxed) {
                    return Err(SilverError::Stopped);
                }
                let batch = with_positions(&batch?, &data_columns, position).map_err(|e| self.engine_error(e))?;
                position += batch.num_rows() as u64;
                let outputs = instance.push("in", &batch).map_err(plugin_error)?;
                task.advance(batch.num_rows() as u64, None);
                self.collect(batch.num_rows(), outputs, &mut ported)?;
            }
            Ok(ported)
        };
        let finish = |instance: Instance| self.refuse_late_rows(plugin, instance);
        let mut rejected = Quarantine::new(self, "clean");
        let mut nulled = Quarantine::new(self, "nulled");
        let (workers, ahead) = in_flight(groups, workers, self.options.row_group_rows);
        work::map_in_order(groups, workers, ahead, start, clean_group, finish, |_, group: PortBatches| {
            rejected.write(&group.rejected)?;
            nulled.write(&group.nulled)?;
            out(group.out)
        })?;
        task.finish();
        let rejected = rejected.finish()?;
        let nulled = nulled.finish()?;
        let mut quarantine_files = rejected.files;
        quarantine_files.extend(nulled.files);
        let declared = out_schema.into_inner().unwrap_or_else(PoisonError::into_inner);
        Ok(Cleaned {
            declared,
            quarantine_files,
            quarantined: rejected.rows,
            reasons: rejected.reasons,
            nulled: nulled.reasons,
        })
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

/// A quarantine table being written: rows that carry `_reason`, counted by
/// reason, in the Delta table `quarantine/silver/<table>/<kind>`.
pub(super) struct Quarantine<'a> {
    builder: &'a TableBuilder<'a>,
    kind: &'static str,
    writer: Option<PartWriter<'a>>,
    reasons: BTreeMap<String, u64>,
}

impl<'a> Quarantine<'a> {
    pub(super) fn new(builder: &'a TableBuilder<'a>, kind: &'static str) -> Self {
        Quarantine { builder, kind, writer: None, reasons: BTreeMap::new() }
    }

    /// Writes `batches`, counting their reasons.
    pub(super) fn write(&mut self, batches: &[RecordBatch]) -> Result<(), SilverError> {
        for batch in batches {
            count_reason_column(batch, &mut self.reasons).map_err(|e| self.builder.engine_error(e))?;
            let builder = self.builder;
            let writer = self.writer.get_or_insert_with(|| {
                PartWriter::new(
                    builder.lake,
                    format!("{}/{}", builder.folder("quarantine/silver"), self.kind),
                    batch.schema(),
                    4 << 20,
                    table_properties(builder.options.row_group_rows),
                )
                .with_suffix(&builder.options.run_id)
            });
            let kind = self.kind;
            writer.write(batch).map_err(|e| match e {
                LakeError::Parquet { message, .. } if message.contains("schema") => builder.engine_error(format!(
                    "the `{kind}` quarantine batches do not all have the same columns (from the cleaning plugin's `rejected` or `nulled` ports): {message}"
                )),
                other => other.into(),
            })?;
        }
        Ok(())
    }

    /// Closes the files.
    pub(super) fn finish(self) -> Result<Quarantined, SilverError> {
        let (files, rows) = match self.writer {
            Some(writer) => writer.finish()?,
            None => (Vec::new(), 0),
        };
        Ok(Quarantined { files, rows, reasons: self.reasons })
    }
}

/// A quarantine file set written.
pub(super) struct Quarantined {
    pub(super) files: Vec<String>,
    pub(super) rows: u64,
    /// Rows per reason.
    pub(super) reasons: BTreeMap<String, u64>,
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
    let mut add = |reason: Option<&str>| {
        let reason = reason.unwrap_or("unknown");
        match reasons.get_mut(reason) {
            Some(count) => *count += 1,
            None => {
                reasons.insert(reason.to_owned(), 1);
            }
        }
    };
    if let Some(strings) = column.as_any().downcast_ref::<StringArray>() {
        strings.iter().for_each(&mut add);
    } else if let Some(strings) = column.as_any().downcast_ref::<LargeStringArray>() {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bronze_row_groups_larger_than_the_budgets_are_fewer_at_once() {
        let groups = |rows: u64| vec![RowGroup { file: String::new(), index: 0, rows, offset: 0 }; 8];
        // Landed under this run's budget: two workers, four groups ahead.
        assert_eq!(in_flight(&groups(1 << 19), 2, 1 << 19), (2, 4));
        // Twice the budget's size: one worker, one group ahead (two held,
        // four of the budget's size).
        assert_eq!(in_flight(&groups(1 << 20), 2, 1 << 19), (1, 1));
        // Smaller ones change nothing.
        assert_eq!(in_flight(&groups(1 << 16), 2, 1 << 19), (2, 4));
        assert_eq!(in_flight(&groups(1 << 20), 2, 1 << 16), (1, 1));
        assert_eq!(in_flight(&[], 2, 1 << 16), (2, 4));
    }
}
