//! Writing a Silver frame as Parquet: a large one as several files encoded
//! side by side, in row order.

use arrow_array::RecordBatch;
use medallion_lake::{PartWriter, table_properties};
use polars::prelude::DataFrame;

use super::{SilverError, TableBuilder};
use crate::frame::{self, FrameError};

impl TableBuilder<'_> {
    /// Writes a frame as Parquet files under `folder`: a large one as an
    /// even number of files encoded by two writers side by side (in row
    /// order: file i holds the i-th slice of rows).
    pub(super) fn write(
        &self,
        frame: &DataFrame,
        folder: &str,
        prefix: &'static str,
    ) -> Result<(Vec<String>, u64), SilverError> {
        const ROWS_PER_FILE: usize = 8 << 20;
        const WRITERS: usize = 2;
        let rows = frame.height();
        let files =
            if rows >= 2 * PARALLEL_WRITE_ROWS { rows.div_ceil(ROWS_PER_FILE).next_multiple_of(WRITERS) } else { 1 };
        let slice_rows = rows.div_ceil(files).max(1);
        let mut frame = frame.clone();
        let batches = frame::from_polars(&mut frame).map_err(|e: FrameError| self.engine_error(e))?;
        let schema = match batches.first() {
            Some(batch) => batch.schema(),
            None => frame::arrow_schema(&frame).map_err(|e| self.engine_error(e))?,
        };
        let slices = split_rows(&batches, slice_rows);
        let write_slice = |index: usize, slice: &[RecordBatch]| -> Result<(Vec<String>, u64), SilverError> {
            let mut writer =
                PartWriter::new(self.lake, folder.to_owned(), schema.clone(), usize::MAX, table_properties())
                    .with_prefix(prefix)
                    .with_first_index(index);
            for batch in slice {
                writer.write(batch)?;
            }
            if slice.is_empty() {
                // An empty table is still a table: one file with its schema.
                writer.write(&RecordBatch::new_empty(schema.clone()))?;
            }
            Ok(writer.finish()?)
        };
        if slices.len() <= 1 {
            return write_slice(0, slices.first().map(Vec::as_slice).unwrap_or_default());
        }
        let written: Vec<Result<(Vec<String>, u64), SilverError>> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..WRITERS)
                .map(|writer| {
                    let (slices, write_slice) = (&slices, &write_slice);
                    scope.spawn(move || {
                        (writer..slices.len()).step_by(WRITERS).map(|i| write_slice(i, &slices[i])).collect::<Vec<_>>()
                    })
                })
                .collect();
            let mut by_writer: Vec<_> = handles
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)).into_iter())
                .collect();
            // Back in file order: slice i was written by writer i % WRITERS.
            (0..slices.len()).filter_map(|i| by_writer[i % WRITERS].next()).collect()
        });
        let (mut paths, mut total) = (Vec::new(), 0);
        for result in written {
            let (files, rows) = result?;
            paths.extend(files);
            total += rows;
        }
        Ok((paths, total))
    }
}

/// Tables at least twice this size are written by several writers at once.
const PARALLEL_WRITE_ROWS: usize = 1 << 20;

/// The batches cut into consecutive slices of `rows` rows (the last one
/// shorter), without copying.
fn split_rows(batches: &[RecordBatch], rows: usize) -> Vec<Vec<RecordBatch>> {
    let mut slices = vec![Vec::new()];
    let mut filled = 0;
    for batch in batches {
        let mut offset = 0;
        while offset < batch.num_rows() {
            if filled == rows {
                slices.push(Vec::new());
                filled = 0;
            }
            let take = (rows - filled).min(batch.num_rows() - offset);
            if let Some(slice) = slices.last_mut() {
                slice.push(batch.slice(offset, take));
            }
            offset += take;
            filled += take;
        }
    }
    if slices.len() == 1 && slices[0].is_empty() { Vec::new() } else { slices }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::{Int64Array, RecordBatch};

    use super::{PARALLEL_WRITE_ROWS, split_rows};
    use crate::silver::{SilverOptions, TableBuilder};
    use medallion_lake::Lake;

    fn batch(from: i64, rows: i64) -> RecordBatch {
        RecordBatch::try_from_iter([("n", Arc::new(Int64Array::from_iter_values(from..from + rows)) as _)]).unwrap()
    }

    #[test]
    fn slices_keep_every_row_once_in_order() {
        let batches = [batch(0, 5), batch(5, 2), batch(7, 6)];
        let slices = split_rows(&batches, 4);
        let sizes: Vec<usize> = slices.iter().map(|s| s.iter().map(RecordBatch::num_rows).sum()).collect();
        assert_eq!(sizes, [4, 4, 4, 1]);
        let values: Vec<i64> = slices
            .iter()
            .flatten()
            .flat_map(|b| b.column(0).as_any().downcast_ref::<Int64Array>().unwrap().values().to_vec())
            .collect();
        assert_eq!(values, (0..13).collect::<Vec<_>>());
        assert!(split_rows(&[], 4).is_empty());
        assert!(split_rows(&[batch(0, 0)], 4).is_empty());
    }

    #[test]
    fn a_large_table_is_written_by_two_writers_in_row_order() {
        let dir = tempfile::tempdir().unwrap();
        let lake = Lake::open(&dir.path().to_string_lossy()).unwrap();
        let options = SilverOptions {
            run_id: "r".to_owned(),
            bronze_partition: "ingest_date=2026-11-24".to_owned(),
            workers: 2,
            batch_rows: 65_536,
            limits: Default::default(),
        };
        let rows = 2 * PARALLEL_WRITE_ROWS as i64 + 3;
        let frame = polars::prelude::df!("n" => (0..rows).collect::<Vec<i64>>()).unwrap();
        let builder = TableBuilder { lake: &lake, name: "t", options: &options };
        let (files, written) = builder.write(&frame, "silver/t", "part").unwrap();
        assert_eq!(written, rows as u64);
        assert_eq!(files, ["silver/t/part-00000.parquet", "silver/t/part-00001.parquet"]);
        let mut next = 0;
        for batch in lake.read_parquet(&files).unwrap() {
            for value in batch.column(0).as_any().downcast_ref::<Int64Array>().unwrap().values() {
                assert_eq!(*value, next);
                next += 1;
            }
        }
        assert_eq!(next, rows);
    }
}
