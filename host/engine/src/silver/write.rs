//! Writing a Silver table as it streams: its batches, in row order, to
//! Parquet files of at most 8M rows, and to the indexes its children look
//! their parents up in.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use medallion_lake::{PartWriter, table_properties};

use super::rules::{ParentIndex, Wanted};
use super::{SilverError, TableBuilder, ZONE};

/// Rows per Silver file.
const ROWS_PER_FILE: usize = 8 << 20;

/// One Silver table being written.
pub(super) struct TableWriter<'a> {
    builder: &'a TableBuilder<'a>,
    schema: SchemaRef,
    files: PartWriter<'a>,
    indexes: Vec<((String, String), ParentIndex)>,
}

/// A written Silver table.
pub(super) struct Written {
    pub(super) files: Vec<String>,
    pub(super) rows: u64,
    /// The indexes of this table that other tables' parent checks read.
    pub(super) indexes: Vec<((String, String), ParentIndex)>,
}

impl<'a> TableWriter<'a> {
    /// A writer of the table `builder` builds, of `schema`, keeping the
    /// `wanted` indexes that are of this table.
    pub(super) fn new(
        builder: &'a TableBuilder<'a>,
        schema: SchemaRef,
        wanted: &BTreeMap<(String, String), Wanted>,
    ) -> Result<Self, SilverError> {
        let indexes = wanted
            .iter()
            .filter(|((table, _), _)| table == builder.name)
            .map(|((table, key), wanted)| {
                ParentIndex::new(table, key, &wanted.take, schema.clone(), builder.keys)
                    .map(|index| ((table.clone(), key.clone()), index))
                    .map_err(|e| SilverError::Config(format!("{}: {e}", wanted.asked_by)))
            })
            .collect::<Result<_, _>>()?;
        let properties = table_properties(builder.options.row_group_rows);
        let files = PartWriter::new(builder.lake, builder.folder(ZONE), schema.clone(), ROWS_PER_FILE, properties)
            .with_suffix(&builder.options.run_id);
        Ok(TableWriter { builder, schema, files, indexes })
    }

    /// Appends `batches` (in the table's schema).
    pub(super) fn write(&mut self, batches: &[RecordBatch]) -> Result<(), SilverError> {
        for batch in batches {
            for (_, index) in &mut self.indexes {
                index
                    .add(batch)
                    .map_err(|e| SilverError::Config(format!("silver.tables.{}: {e}", self.builder.name)))?;
            }
            self.files.write(batch)?;
        }
        Ok(())
    }

    /// Closes the last file (an empty table is one file with its schema)
    /// and hands on the indexes.
    pub(super) fn finish(mut self) -> Result<Written, SilverError> {
        if self.files.rows() == 0 {
            self.files.write(&RecordBatch::new_empty(self.schema.clone()))?;
        }
        let (files, rows) = self.files.finish()?;
        Ok(Written { files, rows, indexes: self.indexes })
    }
}

/// The indexes built so far, by (table, key column).
pub(super) type Indexes = HashMap<(String, String), Arc<ParentIndex>>;
