//! Silver's relational rules for one table, applied batch by batch while the
//! cleaned rows stream by in Bronze order, the same with data and without
//! (`host validate` builds them over empty inputs): the first reason that
//! applies to a row (`duplicate_key`, then each parent's reason in order),
//! the parents' `take` columns, `derive` columns, the output columns; and
//! SQL tables over the tables built before them.
//!
//! What the rules remember is keys, not rows: the keys seen so far, and per
//! parent its keys with the columns children take ([`ParentIndex`]).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use arrow_array::{Array, ArrayRef, BooleanArray, Int64Array, RecordBatch, StringArray, UInt32Array};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use medallion_pipeline::{SilverSpec, SilverTableSpec};
use polars::prelude::{DataFrame, Engine, Expr, IntoLazy, LazyFrame, col};

use super::keys::{Key, KeyColumn, KeyKind, KeyMap, KeySet};
use super::spill::KeyMemory;
use super::{REASON, SilverError};
use crate::frame;

/// The relational rules of one table, with what they remember of the rows
/// already seen.
pub(super) struct Rules<'a> {
    table: &'a str,
    /// The key column's position in the cleaned rows.
    key: Option<usize>,
    /// The keys seen so far.
    seen: KeySet,
    parents: Vec<Parent<'a>>,
    /// The cleaned rows' schema with `_reason`: the rejected rows'.
    rejected_schema: SchemaRef,
    /// The kept rows' schema: the cleaned columns and the taken ones.
    kept_schema: SchemaRef,
    /// `derive`, then the output columns.
    output: Vec<Expr>,
    derive: Vec<Expr>,
    /// The table's schema in Silver.
    pub(super) schema: SchemaRef,
}

/// One parent check.
struct Parent<'a> {
    /// The column's position in the cleaned rows.
    column: usize,
    reason: String,
    index: &'a ParentIndex,
    /// The columns this table takes, by position among the index's.
    take: Vec<usize>,
}

/// What the rules made of some batches.
pub(super) struct Applied {
    /// The kept rows, in the table's Silver schema.
    pub(super) kept: Vec<RecordBatch>,
    /// The rejected rows with their cleaned values and `_reason`.
    pub(super) rejected: Vec<RecordBatch>,
}

impl<'a> Rules<'a> {
    /// The rules of `table` over cleaned rows of schema `cleaned`, its
    /// parents looked up in `indexes`; every column they name is checked.
    pub(super) fn new(
        table: &'a str,
        spec: &'a SilverTableSpec,
        cleaned: &SchemaRef,
        indexes: &'a HashMap<(String, String), Arc<ParentIndex>>,
        memory: &Arc<KeyMemory>,
    ) -> Result<Rules<'a>, SilverError> {
        let config =
            |field: &str, message: String| SilverError::Config(format!("silver.tables.{table}.{field}: {message}"));
        let names: Vec<String> = cleaned.fields().iter().map(|f| f.name().clone()).collect();
        let position = |field: &str, name: &str| {
            cleaned.index_of(name).map_err(|_| {
                config(
                    field,
                    format!(
                        "no column `{name}` after cleaning; the columns are {}",
                        names.iter().filter(|c| !c.starts_with('_')).cloned().collect::<Vec<_>>().join(", ")
                    ),
                )
            })
        };
        let key = match &spec.key {
            Some(key) => {
                let at = position("key", key)?;
                if KeyKind::of(cleaned.field(at).data_type()).is_none() {
                    return Err(config(
                        "key",
                        format!(
                            "`{key}` is {}; a key holds integers, dates, timestamps or text",
                            cleaned.field(at).data_type()
                        ),
                    ));
                }
                Some(at)
            }
            None => None,
        };
        let mut parents = Vec::new();
        let mut kept_fields: Vec<Field> = cleaned.fields().iter().map(|f| f.as_ref().clone()).collect();
        for parent in &spec.parents {
            let column = position("parents.column", &parent.column)?;
            let index = indexes.get(&(parent.table.clone(), parent.parent_key().to_owned())).ok_or_else(|| {
                super::engine_error(table, format!("parent `{}` is not built before this table", parent.table))
            })?;
            let kind = KeyKind::of(cleaned.field(column).data_type());
            if kind != Some(index.kind) {
                return Err(config(
                    "parents.column",
                    format!(
                        "`{}` is {} and `{}.{}` is {}; a column and its parent's key must both be integers, both dates, both timestamps or both text",
                        parent.column,
                        cleaned.field(column).data_type(),
                        parent.table,
                        parent.parent_key(),
                        index
                            .schema
                            .field_with_name(parent.parent_key())
                            .map(|f| f.data_type().to_string())
                            .unwrap_or_default()
                    ),
                ));
            }
            let mut taken = Vec::new();
            for take in &parent.take {
                let field = index.schema.field_with_name(take).map_err(|_| {
                    config(
                        "parents.take",
                        format!(
                            "parent `{}` has no column `{take}`; it has {}",
                            parent.table,
                            index.schema.fields().iter().map(|f| f.name().as_str()).collect::<Vec<_>>().join(", ")
                        ),
                    )
                })?;
                if kept_fields.iter().any(|f| f.name() == take) {
                    return Err(config(
                        "parents.take",
                        format!("`{take}` of parent `{}` is already a column of this table", parent.table),
                    ));
                }
                kept_fields.push(field.clone().with_nullable(true));
                taken.push(index.taken_position(take).ok_or_else(|| {
                    super::engine_error(table, format!("parent `{}` does not keep column `{take}`", parent.table))
                })?);
            }
            parents.push(Parent { column, reason: parent.orphan_reason(), index, take: taken });
        }
        let mut rejected_fields: Vec<Field> = cleaned.fields().iter().map(|f| f.as_ref().clone()).collect();
        rejected_fields.push(Field::new(REASON, DataType::Utf8, false));
        let mut derive = Vec::new();
        for (name, expression) in &spec.derive {
            let expr = polars::sql::sql_expr(expression).map_err(|e| {
                SilverError::Config(format!("silver.tables.{table}.derive.{name}: `{expression}`: {e}"))
            })?;
            derive.push(expr.alias(name.as_str()));
        }
        let kept_schema = Arc::new(Schema::new(kept_fields));
        for ((name, expression), expr) in spec.derive.iter().zip(&derive) {
            if !row_by_row(&kept_schema, expr) {
                return Err(SilverError::Config(format!(
                    "silver.tables.{table}.derive.{name}: `{expression}` combines rows (a sum, count, rank, window or shift); a derived column is worked out row by row as the rows stream\n  hint: compute it in a Gold table's SQL"
                )));
            }
        }
        let mut rules = Rules {
            table,
            key,
            seen: KeySet::new(memory),
            parents,
            rejected_schema: Arc::new(Schema::new(rejected_fields)),
            kept_schema,
            output: Vec::new(),
            derive,
            schema: Arc::new(Schema::empty()),
        };
        let mut derived = rules.derived(&[])?;
        let available: Vec<String> =
            derived.collect_schema().map_err(|e| rules.engine_error(e))?.iter_names().map(|n| n.to_string()).collect();
        rules.output = match &spec.columns {
            Some(columns) => columns
                .iter()
                .map(|c| {
                    if available.contains(c) {
                        Ok(col(c.as_str()))
                    } else {
                        Err(config(
                            "columns",
                            format!(
                                "no column `{c}` after cleaning; the columns are {}",
                                available
                                    .iter()
                                    .filter(|c| !c.starts_with('_'))
                                    .cloned()
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            ),
                        ))
                    }
                })
                .collect::<Result<_, _>>()?,
            None => available.iter().filter(|c| !c.starts_with('_')).map(|c| col(c.as_str())).collect(),
        };
        let empty = rules.derived(&[])?.select(rules.output.clone()).collect().map_err(|e| rules.engine_error(e))?;
        rules.schema = frame::arrow_schema(&empty).map_err(|e| rules.engine_error(e))?;
        Ok(rules)
    }

    fn engine_error(&self, e: impl std::fmt::Display) -> SilverError {
        super::engine_error(self.table, e)
    }

    /// The kept rows with their derived columns, as a lazy frame.
    fn derived(&self, kept: &[RecordBatch]) -> Result<LazyFrame, SilverError> {
        let frame = frame::to_polars(&self.kept_schema, kept).map_err(|e| self.engine_error(e))?;
        Ok(frame.lazy().with_columns(self.derive.clone()))
    }

    /// Applies the rules to the next cleaned batches, in Bronze order.
    pub(super) fn apply(&mut self, batches: &[RecordBatch]) -> Result<Applied, SilverError> {
        let mut kept = Vec::with_capacity(batches.len());
        let mut rejected = Vec::new();
        for batch in batches {
            let (kept_batch, rejected_batch) = self.check(batch)?;
            if kept_batch.num_rows() > 0 {
                kept.push(kept_batch);
            }
            if let Some(batch) = rejected_batch {
                rejected.push(batch);
            }
        }
        let kept = if kept.is_empty() {
            Vec::new()
        } else {
            let mut frame =
                self.derived(&kept)?.select(self.output.clone()).collect().map_err(|e| self.engine_error(e))?;
            frame::from_polars(&mut frame).map_err(|e| self.engine_error(e))?
        };
        let rejected = if rejected.is_empty() {
            Vec::new()
        } else {
            // Through polars, as the kept rows: the same column types.
            let mut frame = frame::to_polars(&self.rejected_schema, &rejected).map_err(|e| self.engine_error(e))?;
            frame::from_polars(&mut frame).map_err(|e| self.engine_error(e))?
        };
        Ok(Applied { kept, rejected })
    }

    /// One batch: its kept rows with the taken columns, and its rejected rows
    /// with their reason.
    fn check(&mut self, batch: &RecordBatch) -> Result<(RecordBatch, Option<RecordBatch>), SilverError> {
        let rows = batch.num_rows();
        let cleaned = &self.rejected_schema.fields()[..self.rejected_schema.fields().len() - 1];
        if batch.num_columns() != cleaned.len()
            || batch
                .schema()
                .fields()
                .iter()
                .zip(cleaned)
                .any(|(a, b)| a.name() != b.name() || a.data_type() != b.data_type())
        {
            return Err(self.engine_error(format!(
                "the cleaning plugin's `out` batches do not all have the same columns: {:?} after {:?}",
                batch.schema().fields().iter().map(|f| format!("{}: {}", f.name(), f.data_type())).collect::<Vec<_>>(),
                cleaned.iter().map(|f| format!("{}: {}", f.name(), f.data_type())).collect::<Vec<_>>()
            )));
        }
        let key = match self.key {
            Some(at) => Some(KeyColumn::new(batch.column(at)).map_err(|e| self.engine_error(e))?),
            None => None,
        };
        let columns: Vec<KeyColumn> = self
            .parents
            .iter()
            .map(|p| KeyColumn::new(batch.column(p.column)))
            .collect::<Result<_, _>>()
            .map_err(|e| self.engine_error(e))?;
        let mut keep = Vec::with_capacity(rows);
        let mut why: Vec<Option<&str>> = Vec::new();
        // Per parent that gives columns, the kept rows' positions in it.
        let mut positions: Vec<Vec<u32>> = self.parents.iter().map(|_| Vec::new()).collect();
        let mut found: Vec<u32> = vec![0; self.parents.len()];
        for row in 0..rows {
            let mut reason = None;
            if let Some(key) = &key
                && !self.seen.insert(key.get(row))
            {
                reason = Some("duplicate_key");
            }
            if reason.is_none() {
                for (i, parent) in self.parents.iter().enumerate() {
                    match parent.index.position(columns[i].get(row)) {
                        Some(position) => found[i] = position,
                        None => {
                            reason = Some(parent.reason.as_str());
                            break;
                        }
                    }
                }
            }
            keep.push(reason.is_none());
            match reason {
                None => {
                    for (i, parent) in self.parents.iter().enumerate() {
                        if !parent.take.is_empty() {
                            positions[i].push(found[i]);
                        }
                    }
                }
                Some(reason) => {
                    if why.is_empty() {
                        why.reserve(rows);
                    }
                    why.push(Some(reason));
                }
            }
        }
        let rejected_mask: BooleanArray = keep.iter().map(|k| Some(!k)).collect();
        let mask = BooleanArray::from(keep);
        let mut kept = arrow_select::filter::filter_record_batch(batch, &mask).map_err(|e| self.engine_error(e))?;
        if self.kept_schema.fields().len() > batch.num_columns() {
            let mut columns = kept.columns().to_vec();
            for (parent, positions) in self.parents.iter().zip(positions) {
                for &column in &parent.take {
                    columns.push(parent.index.gather(column, &positions).map_err(|e| self.engine_error(e))?);
                }
            }
            kept = RecordBatch::try_new(self.kept_schema.clone(), columns).map_err(|e| self.engine_error(e))?;
        }
        if why.is_empty() {
            return Ok((kept, None));
        }
        let rejected =
            arrow_select::filter::filter_record_batch(batch, &rejected_mask).map_err(|e| self.engine_error(e))?;
        let mut columns = rejected.columns().to_vec();
        columns.push(Arc::new(StringArray::from(why)) as ArrayRef);
        let rejected = RecordBatch::try_new(self.rejected_schema.clone(), columns).map_err(|e| self.engine_error(e))?;
        Ok((kept, Some(rejected)))
    }
}

/// Whether `expr` gives each row a value from that row alone: on two probe
/// rows it must give what it gives each of them alone (a sum, a count, a
/// rank, a window or a shift does not). An expression that fails on the
/// probe is let through: it fails with its own message on data.
fn row_by_row(schema: &SchemaRef, expr: &Expr) -> bool {
    let probe = |rows: std::ops::Range<i64>| -> Option<DataFrame> {
        let columns: Vec<ArrayRef> = schema
            .fields()
            .iter()
            .map(|f| {
                let values = Arc::new(Int64Array::from_iter_values(rows.clone().map(|i| i + 2))) as ArrayRef;
                let values = if matches!(f.data_type(), DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View) {
                    arrow_cast::cast(&values, &DataType::Utf8).ok()?
                } else {
                    values
                };
                arrow_cast::cast(&values, f.data_type()).ok()
            })
            .collect::<Option<_>>()?;
        let batch = RecordBatch::try_new(schema.clone(), columns).ok()?;
        let frame = frame::to_polars(schema, &[batch]).ok()?.lazy().with_columns([expr.clone()]).collect().ok()?;
        let last = frame.columns().last()?.clone();
        DataFrame::new(last.len(), vec![last]).ok()
    };
    match (probe(0..2), probe(0..1), probe(1..2)) {
        (Some(both), Some(first), Some(second)) => {
            first.vstack(&second).map(|alone| alone.equals_missing(&both)).unwrap_or(true)
        }
        _ => true,
    }
}

/// A parent's keys, as its children check them, with the columns they take.
/// Built from the parent's Silver batches as they are written.
pub(super) struct ParentIndex {
    table: String,
    key: usize,
    kind: KeyKind,
    schema: SchemaRef,
    lookup: Lookup,
    memory: Arc<KeyMemory>,
    /// Bytes of the taken columns on the heap, counted in `memory`.
    held: u64,
}

enum Lookup {
    /// Only membership: a bitmap for dense integer keys.
    Set(KeySet),
    /// Positions, and the taken columns (by position in the parent) as
    /// the parent's batches gave them: `chunks[c][b]` is taken column `c`
    /// of batch `b`, whose first row is at position `starts[b]`. Never
    /// joined into one array, which would hold them twice for a moment.
    Map { keys: KeyMap, take: Vec<usize>, chunks: Vec<Vec<ArrayRef>>, starts: Vec<u32>, rows: u64 },
}

impl ParentIndex {
    /// An empty index of `table`'s key column `key`, keeping the `take`
    /// columns; `schema` is the table's Silver schema.
    pub(super) fn new(
        table: &str,
        key: &str,
        take: &[String],
        schema: SchemaRef,
        memory: &Arc<KeyMemory>,
    ) -> Result<ParentIndex, String> {
        let has = || schema.fields().iter().map(|f| f.name().as_str()).collect::<Vec<_>>().join(", ");
        let at = schema.index_of(key).map_err(|_| {
            format!("parent `{table}` has no column `{key}` (it has {}); give the parent's key with `key:`", has())
        })?;
        let kind = KeyKind::of(schema.field(at).data_type()).ok_or_else(|| {
            format!(
                "`{table}.{key}` is {}; a key holds integers, dates, timestamps or text",
                schema.field(at).data_type()
            )
        })?;
        let lookup = if take.is_empty() {
            Lookup::Set(KeySet::new(memory))
        } else {
            let take = take
                .iter()
                .map(|c| {
                    schema.index_of(c).map_err(|_| format!("parent `{table}` has no column `{c}`; it has {}", has()))
                })
                .collect::<Result<Vec<_>, _>>()?;
            let chunks = take.iter().map(|_| Vec::new()).collect();
            Lookup::Map { keys: KeyMap::new(memory), take, chunks, starts: Vec::new(), rows: 0 }
        };
        Ok(ParentIndex { table: table.to_owned(), key: at, kind, schema, lookup, memory: memory.clone(), held: 0 })
    }

    /// Adds the parent's next Silver batch.
    pub(super) fn add(&mut self, batch: &RecordBatch) -> Result<(), String> {
        let keys = KeyColumn::new(batch.column(self.key))?;
        match &mut self.lookup {
            Lookup::Set(set) => {
                // A null goes in as the set's one null, which `contains`
                // never finds: a null is never a parent.
                for row in 0..batch.num_rows() {
                    set.insert(keys.get(row));
                }
            }
            Lookup::Map { keys: map, take, chunks, starts, rows } => {
                if batch.num_rows() == 0 {
                    return Ok(());
                }
                for row in 0..batch.num_rows() {
                    let position =
                        u32::try_from(*rows + row as u64).ok().filter(|p| *p != u32::MAX).ok_or_else(|| {
                            format!(
                                "parent `{}` has more rows than children can take columns from (4 billion)",
                                self.table
                            )
                        })?;
                    if !map.insert(keys.get(row), position) {
                        return Err(format!(
                            "parent `{}` has the key {} on several rows, and a child takes columns from it: which row's? Give `{}` a `key:` (its later rows then go to quarantine as duplicate_key)",
                            self.table,
                            keys.describe(row),
                            self.table
                        ));
                    }
                }
                starts.push(*rows as u32);
                *rows += batch.num_rows() as u64;
                for (chunk, at) in chunks.iter_mut().zip(take.iter()) {
                    chunk.push(self.memory.keep(batch.column(*at), &mut self.held)?);
                }
            }
        }
        Ok(())
    }

    /// The row `key` is on (0 when the index only knows membership), or
    /// `None` when the parent has no such key.
    fn position(&self, key: Key<'_>) -> Option<u32> {
        match &self.lookup {
            Lookup::Set(set) => set.contains(key).then_some(0),
            Lookup::Map { keys, .. } => keys.get(key),
        }
    }

    /// Where column `name` is among the columns the index keeps.
    fn taken_position(&self, name: &str) -> Option<usize> {
        match &self.lookup {
            Lookup::Map { take, .. } => take.iter().position(|at| self.schema.field(*at).name() == name),
            Lookup::Set(_) => None,
        }
    }

    /// Taken column `column` (an index into `take`) at `positions`.
    fn gather(&self, column: usize, positions: &[u32]) -> Result<ArrayRef, arrow_schema::ArrowError> {
        let Lookup::Map { take, chunks, starts, .. } = &self.lookup else {
            return Err(arrow_schema::ArrowError::InvalidArgumentError("the index keeps no column".to_owned()));
        };
        let arrays: Vec<&dyn Array> = chunks[column].iter().map(|a| a.as_ref()).collect();
        match arrays.as_slice() {
            [] => Ok(arrow_array::new_empty_array(self.schema.field(take[column]).data_type())),
            [one] => arrow_select::take::take(*one, &UInt32Array::from(positions.to_vec()), None),
            _ => {
                let at: Vec<(usize, usize)> = positions
                    .iter()
                    .map(|&p| {
                        let batch = starts.partition_point(|&start| start <= p) - 1;
                        (batch, (p - starts[batch]) as usize)
                    })
                    .collect();
                arrow_select::interleave::interleave(&arrays, &at)
            }
        }
    }
}

impl Drop for ParentIndex {
    fn drop(&mut self) {
        self.memory.release(self.held);
    }
}

/// A parent index some tables need: the columns they take, and the first
/// of them to ask (where an error about it points).
pub(super) struct Wanted {
    pub(super) take: Vec<String>,
    pub(super) asked_by: String,
}

/// The parent indexes the tables of `spec` need, by (parent table, its key
/// column).
pub(super) fn wanted_indexes(spec: &SilverSpec) -> BTreeMap<(String, String), Wanted> {
    let mut wanted: BTreeMap<(String, String), Wanted> = BTreeMap::new();
    for (name, table) in &spec.tables {
        for (i, parent) in table.parents.iter().enumerate() {
            let entry = wanted
                .entry((parent.table.clone(), parent.parent_key().to_owned()))
                .or_insert_with(|| Wanted { take: Vec::new(), asked_by: format!("silver.tables.{name}.parents[{i}]") });
            for column in &parent.take {
                if !entry.take.contains(column) {
                    entry.take.push(column.clone());
                }
            }
        }
    }
    wanted
}

/// Runs a `sql` table's query over the tables built before it, on polars'
/// streaming engine.
pub(super) fn run_sql(table: &str, sql: &str, frames: &HashMap<String, LazyFrame>) -> Result<DataFrame, SilverError> {
    let mut context = polars::sql::SQLContext::new();
    for (name, frame) in frames {
        context.register(name, frame.clone());
    }
    let result = context.execute(sql).and_then(|query| query.collect_with_engine(Engine::Streaming));
    frame::single(result).map_err(|e| SilverError::Config(format!("silver.tables.{table}.sql: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{Date32Array, Float64Array, LargeStringArray, UInt64Array};
    use polars::prelude::{JoinArgs, JoinType, MaintainOrderJoin, NULL, lit, when};

    /// A reproducible stream of numbers.
    struct Lcg(u64);

    impl Lcg {
        fn below(&mut self, n: u64) -> u64 {
            self.0 = self.0.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            (self.0 >> 33) % n
        }
    }

    fn parents() -> (RecordBatch, RecordBatch) {
        let p = RecordBatch::try_from_iter([
            ("pid", Arc::new(Int64Array::from_iter_values((0..400).map(|i| i * 3))) as ArrayRef),
            ("pdate", Arc::new(Date32Array::from_iter_values((0..400).map(|i| 19_000 + i))) as ArrayRef),
        ])
        .unwrap();
        let q = RecordBatch::try_from_iter([(
            "code",
            Arc::new(LargeStringArray::from_iter_values((0..30).map(|i| format!("c{i}")))) as ArrayRef,
        )])
        .unwrap();
        (p, q)
    }

    /// Cleaned rows with repeated and null keys, orphans of either parent,
    /// null parents: every path of the rules.
    fn cleaned(rows: usize, seed: u64) -> RecordBatch {
        let mut random = Lcg(seed);
        let mut ids = Vec::new();
        let mut pids = Vec::new();
        let mut codes = Vec::new();
        let mut quantities = Vec::new();
        let mut prices = Vec::new();
        for _ in 0..rows {
            ids.push((random.below(50) != 0).then(|| random.below(rows as u64 * 3 / 4) as i64 - 5));
            pids.push((random.below(20) != 0).then(|| random.below(1_300) as i64));
            codes.push((random.below(25) != 0).then(|| format!("c{}", random.below(33))));
            quantities.push(Some(random.below(9) as i64));
            prices.push((random.below(10) != 0).then(|| random.below(10_000) as f64 / 100.0));
        }
        RecordBatch::try_from_iter([
            ("id", Arc::new(Int64Array::from(ids)) as ArrayRef),
            ("pid", Arc::new(Int64Array::from(pids)) as ArrayRef),
            ("code", Arc::new(StringArray::from(codes)) as ArrayRef),
            ("qty", Arc::new(Int64Array::from(quantities)) as ArrayRef),
            ("price", Arc::new(Float64Array::from(prices)) as ArrayRef),
            ("_row", Arc::new(UInt64Array::from_iter_values(0..rows as u64)) as ArrayRef),
        ])
        .unwrap()
    }

    fn spec() -> SilverTableSpec {
        serde_json::from_value(serde_json::json!({
            "key": "id",
            "parents": [
                { "column": "pid", "table": "p", "take": ["pdate"], "reason": "orphan_p" },
                { "column": "code", "table": "q" },
            ],
            "derive": { "amount": "qty * price" },
            "columns": ["id", "pid", "code", "amount", "pdate"],
        }))
        .unwrap()
    }

    /// The rules as whole-table polars: what Silver did before it streamed.
    fn whole_table(cleaned: &RecordBatch, p: &RecordBatch, q: &RecordBatch) -> (DataFrame, DataFrame) {
        let frame = |b: &RecordBatch| frame::to_polars(&b.schema(), std::slice::from_ref(b)).unwrap();
        let (rows, p, q) = (frame(cleaned), frame(p), frame(q));
        let member = |c: &str, parent: &DataFrame, key: &str| {
            col(c)
                .is_in(lit(parent.column(key).unwrap().as_materialized_series().clone()).implode(false), false)
                .fill_null(false)
        };
        let reason = when(col("id").is_first_distinct().not()).then(lit("duplicate_key")).otherwise(
            when(member("pid", &p, "pid").not())
                .then(lit("orphan_p"))
                .otherwise(when(member("code", &q, "code").not()).then(lit("orphan_q")).otherwise(lit(NULL))),
        );
        let checked = rows.lazy().with_column(reason.alias(REASON)).collect().unwrap();
        let rejected = checked.clone().lazy().filter(col(REASON).is_not_null()).collect().unwrap();
        let mut join = JoinArgs::new(JoinType::Inner);
        join.maintain_order = MaintainOrderJoin::Left;
        let kept = checked
            .lazy()
            .filter(col(REASON).is_null())
            .join(p.lazy(), [col("pid")], [col("pid")], join)
            .with_column((col("qty") * col("price")).alias("amount"))
            .select([col("id"), col("pid"), col("code"), col("amount"), col("pdate")])
            .collect()
            .unwrap();
        (kept, rejected)
    }

    #[test]
    fn streaming_rules_give_what_the_whole_table_gives_row_for_row() {
        let (p, q) = parents();
        let spec = spec();
        for (rows, batch_rows, seed) in [(5_000, 97, 1), (5_000, 5_000, 2), (20_000, 1_024, 3), (3, 1, 4)] {
            let mut indexes = HashMap::new();
            for (name, key, take, batch) in [("p", "pid", vec!["pdate".to_owned()], &p), ("q", "code", vec![], &q)] {
                let mut index = ParentIndex::new(name, key, &take, batch.schema(), &KeyMemory::unbounded()).unwrap();
                for start in (0..batch.num_rows()).step_by(64) {
                    index.add(&batch.slice(start, 64.min(batch.num_rows() - start))).unwrap();
                }
                indexes.insert((name.to_owned(), key.to_owned()), Arc::new(index));
            }
            let input = cleaned(rows, seed);
            let mut rules = Rules::new("t", &spec, &input.schema(), &indexes, &KeyMemory::unbounded()).unwrap();
            let (mut kept, mut rejected) = (Vec::new(), Vec::new());
            // Several batches at a time, as row groups arrive.
            let slices: Vec<RecordBatch> =
                (0..rows).step_by(batch_rows).map(|start| input.slice(start, batch_rows.min(rows - start))).collect();
            for group in slices.chunks(3) {
                let applied = rules.apply(group).unwrap();
                kept.extend(applied.kept);
                rejected.extend(applied.rejected);
            }
            let (expected_kept, expected_rejected) = whole_table(&input, &p, &q);
            let got_kept = frame::to_polars(&rules.schema, &kept).unwrap();
            assert!(got_kept.height() > 0 && expected_rejected.height() > 0 || rows < 10);
            assert!(got_kept.equals_missing(&expected_kept), "kept rows differ ({rows} rows by {batch_rows})");
            let got_rejected = match rejected.first() {
                Some(first) => frame::to_polars(&first.schema(), &rejected).unwrap(),
                None => frame::to_polars(&rules.rejected_schema, &[]).unwrap(),
            };
            assert!(
                got_rejected.equals_missing(&expected_rejected),
                "rejected rows differ ({rows} rows by {batch_rows}):\n{got_rejected}\n{expected_rejected}"
            );
            assert_eq!(rules.schema.field_with_name("pdate").unwrap().data_type(), &DataType::Date32);
        }
    }

    #[test]
    fn the_rules_name_what_does_not_fit() {
        let (p, q) = parents();
        let mut indexes = HashMap::new();
        for (name, key, take, batch) in [("p", "pid", vec!["pdate".to_owned()], &p), ("q", "code", vec![], &q)] {
            indexes.insert(
                (name.to_owned(), key.to_owned()),
                Arc::new(ParentIndex::new(name, key, &take, batch.schema(), &KeyMemory::unbounded()).unwrap()),
            );
        }
        let input = cleaned(10, 5);
        let refused = |spec: serde_json::Value| {
            let spec: SilverTableSpec = serde_json::from_value(spec).unwrap();
            Rules::new("t", &spec, &input.schema(), &indexes, &KeyMemory::unbounded())
                .err()
                .expect("refused")
                .to_string()
        };
        let message = refused(serde_json::json!({ "key": "nope" }));
        assert!(message.contains("silver.tables.t.key") && message.contains("id, pid, code"), "{message}");
        let message = refused(serde_json::json!({ "key": "price" }));
        assert!(message.contains("Float64"), "{message}");
        let message = refused(serde_json::json!({ "parents": [{ "column": "code", "table": "p", "key": "pid" }] }));
        assert!(message.contains("`code` is Utf8 and `p.pid` is Int64"), "{message}");
        let message = refused(serde_json::json!({ "parents": [{ "column": "pid", "table": "p", "take": ["qty"] }] }));
        assert!(message.contains("parent `p` has no column `qty`"), "{message}");
        let message = refused(serde_json::json!({ "columns": ["id", "amount"] }));
        assert!(message.contains("no column `amount`"), "{message}");
        let message = refused(serde_json::json!({ "derive": { "x": "qty * * price" } }));
        assert!(message.contains("derive.x"), "{message}");
        for combining in ["qty / SUM(qty)", "COUNT(*)", "MAX(price)", "qty - LAG(qty) OVER (ORDER BY id)"] {
            let message = refused(serde_json::json!({ "derive": { "x": combining } }));
            assert!(message.contains("derive.x") && message.contains("combines rows"), "{combining}: {message}");
        }
        let spec: SilverTableSpec = serde_json::from_value(
            serde_json::json!({ "derive": { "x": "qty * price + 1", "y": "UPPER(code)", "z": "2" } }),
        )
        .unwrap();
        assert!(
            Rules::new("t", &spec, &input.schema(), &indexes, &KeyMemory::unbounded()).is_ok(),
            "row-by-row expressions pass"
        );
        let mut index =
            ParentIndex::new("p", "pid", &["pdate".to_owned()], p.schema(), &KeyMemory::unbounded()).unwrap();
        let twice = arrow_select::concat::concat_batches(&p.schema(), [&p.slice(0, 3), &p.slice(2, 1)]).unwrap();
        let message = index.add(&twice).expect_err("a repeated key refused");
        assert!(message.contains("the key 6 on several rows") && message.contains("`key:`"), "{message}");
        let mut membership = ParentIndex::new("p", "pid", &[], p.schema(), &KeyMemory::unbounded()).unwrap();
        assert!(membership.add(&twice).is_ok(), "membership alone does not mind repeats");
        assert!(
            ParentIndex::new("p", "missing", &[], p.schema(), &KeyMemory::unbounded())
                .err()
                .unwrap()
                .contains("give the parent's key")
        );
    }
}
