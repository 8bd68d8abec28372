//! [`prepare`]: the computed columns and the order, over Arrow batches.
//!
//! Memory, beyond the computed columns themselves (8 bytes a row each): a
//! `per` column keeps each row's group (4 bytes a row); the aggregates keep
//! one accumulator per group; a rank sorts its column's values with their
//! group and row (16 bytes a row) and writes the ranks (8 bytes a row); an
//! order concatenates the input once to sort it. Sums add in input order (before any sort), so
//! a result never depends on how the rows were batched.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::fmt;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int64Type};
use arrow_array::{Array, ArrayRef, Float64Array, Int64Array, RecordBatch, UInt32Array, UInt64Array};
use arrow_cast::{CastOptions, cast_with_options};
use arrow_ord::sort::{SortColumn, lexsort_to_indices};
use arrow_schema::{DataType, Field, Schema, SchemaRef, SortOptions};

use crate::{Aggregate, Computed, Needs};

/// Why the batches could not be prepared as asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NeedError(String);

impl fmt::Display for NeedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for NeedError {}

impl Needs {
    /// Checks what is asked against the schema of the port's batches: every
    /// column named exists with a type its aggregate takes, and no computed
    /// column takes an input column's name.
    pub fn check(&self, schema: &Schema) -> Result<(), NeedError> {
        let port = &self.port;
        let column = |name: &str, role: &str, c: &Computed| {
            schema.field_with_name(name).map(|f| f.data_type().clone()).map_err(|_| {
                let have: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
                NeedError(format!(
                    "computed column `{}` on port `{port}`: its {role} `{name}` is not an input column (the input has {})",
                    c.name,
                    have.join(", ")
                ))
            })
        };
        let mut names: Vec<&str> = Vec::new();
        for c in &self.computed {
            let bad = |why: String| NeedError(format!("computed column `{}` on port `{port}`: {why}", c.name));
            if c.name.is_empty() {
                return Err(bad("its name is empty".to_owned()));
            }
            if schema.field_with_name(&c.name).is_ok() || names.contains(&c.name.as_str()) {
                return Err(bad(format!(
                    "the input already has a column `{}`; rename that column in the step's SQL (or, for the plugin's author, name the computed column otherwise)",
                    c.name
                )));
            }
            names.push(&c.name);
            match (&c.of, c.aggregate) {
                (None, Aggregate::Count) => {}
                (Some(of), Aggregate::Count) => {
                    return Err(bad(format!("`count` counts rows and takes no column (it names `{of}`)")));
                }
                (None, aggregate) => {
                    return Err(bad(format!("`{}` needs the column it is computed from", aggregate.name())));
                }
                (Some(of), aggregate) => {
                    let data_type = column(of, "column", c)?;
                    // Extremes and ranks order values as i64 or f64: a UInt64
                    // past i64 fits neither exactly.
                    let fits = match aggregate {
                        Aggregate::Sum | Aggregate::Mean => numeric(&data_type),
                        _ => (numeric(&data_type) && data_type != DataType::UInt64) || data_type == DataType::Date32,
                    };
                    if !fits {
                        return Err(bad(format!(
                            "`{}` of `{of}` ({data_type}) is not computed; it takes numbers{}",
                            aggregate.name(),
                            if matches!(aggregate, Aggregate::Sum | Aggregate::Mean) {
                                ""
                            } else {
                                " (not UInt64: cast it to BIGINT in the SQL) and dates"
                            }
                        )));
                    }
                }
            }
            if let Some(weight) = &c.weight {
                if !matches!(c.aggregate, Aggregate::Sum | Aggregate::Mean) {
                    return Err(bad(format!("only `sum` and `mean` take a weight, not `{}`", c.aggregate.name())));
                }
                let data_type = column(weight, "weight", c)?;
                if !numeric(&data_type) {
                    return Err(bad(format!("its weight `{weight}` is {data_type}, not a number")));
                }
            }
            if let Some(per) = &c.per {
                let data_type = column(per, "group column", c)?;
                if !arrow_cast::can_cast_types(&data_type, &DataType::Utf8) {
                    return Err(bad(format!("its group column `{per}` is {data_type}, which cannot group rows")));
                }
            }
        }
        for key in &self.sorted_by {
            if schema.field_with_name(&key.column).is_err() && !names.contains(&key.column.as_str()) {
                return Err(NeedError(format!(
                    "port `{port}` asks for its rows sorted by `{}`, which is neither an input column nor a computed one",
                    key.column
                )));
            }
        }
        Ok(())
    }
}

fn numeric(data_type: &DataType) -> bool {
    data_type.is_integer() || data_type.is_floating()
}

/// The port's whole input as the plugin asked for it: every computed column
/// appended to every batch, then the rows in the order asked for (ties in
/// input order), in batches of the same sizes as they came.
pub fn prepare(needs: &Needs, batches: Vec<RecordBatch>) -> Result<Vec<RecordBatch>, NeedError> {
    let Some(first) = batches.first() else { return Ok(batches) };
    let schema = first.schema();
    needs.check(&schema)?;
    if needs.is_empty() {
        return Ok(batches);
    }
    let mut added: Vec<Vec<ArrayRef>> = vec![Vec::with_capacity(needs.computed.len()); batches.len()];
    let mut fields: Vec<Field> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
    // Each row's group, worked out once per `per` column.
    let mut groups: HashMap<Option<&str>, Groups> = HashMap::new();
    for c in &needs.computed {
        let failed = |e: String| NeedError(format!("computed column `{}`: {e}", c.name));
        let per = c.per.as_deref();
        let groups = match groups.entry(per) {
            Entry::Occupied(known) => known.into_mut(),
            Entry::Vacant(new) => new.insert(Groups::of(per, &batches).map_err(failed)?),
        };
        let (field, arrays) = compute(c, &batches, groups).map_err(failed)?;
        fields.push(field);
        for (columns, array) in added.iter_mut().zip(arrays) {
            columns.push(array);
        }
    }
    let schema: SchemaRef = Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()));
    let lengths: Vec<usize> = batches.iter().map(RecordBatch::num_rows).collect();
    let appended = batches
        .into_iter()
        .zip(added)
        .map(|(batch, extra)| {
            let mut columns = batch.columns().to_vec();
            columns.extend(extra);
            RecordBatch::try_new(schema.clone(), columns)
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(arrow)?;
    if needs.sorted_by.is_empty() {
        return Ok(appended);
    }
    sort(needs, &schema, &appended, &lengths)
}

fn arrow(e: arrow_schema::ArrowError) -> NeedError {
    NeedError(e.to_string())
}

/// Sorts the rows (nulls last, ties in input order) and cuts them back into
/// batches of `lengths` rows.
fn sort(
    needs: &Needs,
    schema: &SchemaRef,
    batches: &[RecordBatch],
    lengths: &[usize],
) -> Result<Vec<RecordBatch>, NeedError> {
    let whole = arrow_select::concat::concat_batches(schema, batches).map_err(arrow)?;
    let rows = whole.num_rows();
    let mut columns: Vec<SortColumn> = Vec::with_capacity(needs.sorted_by.len() + 1);
    for key in &needs.sorted_by {
        let index = schema.index_of(&key.column).map_err(arrow)?;
        columns.push(SortColumn {
            values: whole.column(index).clone(),
            options: Some(SortOptions { descending: key.descending, nulls_first: false }),
        });
    }
    // The input position last: equal keys keep their order.
    columns.push(SortColumn { values: Arc::new(UInt64Array::from_iter_values(0..rows as u64)), options: None });
    let order: UInt32Array = lexsort_to_indices(&columns, None).map_err(arrow)?;
    let sorted = arrow_select::take::take_record_batch(&whole, &order).map_err(arrow)?;
    drop(whole);
    let mut out = Vec::with_capacity(lengths.len());
    let mut start = 0;
    for &length in lengths {
        out.push(sorted.slice(start, length));
        start += length;
    }
    Ok(out)
}

/// One computed column: its field and its array for each batch.
fn compute(c: &Computed, batches: &[RecordBatch], groups: &Groups) -> Result<(Field, Vec<ArrayRef>), String> {
    let column = |name: &str| -> Vec<ArrayRef> {
        batches
            .iter()
            .map(|b| {
                b.column_by_name(name)
                    .cloned()
                    .unwrap_or_else(|| arrow_array::new_null_array(&DataType::Null, b.num_rows()))
            })
            .collect()
    };
    let of = c.of.as_deref().map(column);
    let name = c.name.as_str();
    Ok(match (c.aggregate, of) {
        (Aggregate::Count, _) => {
            let mut counts = vec![0i64; groups.count];
            groups.each(|g, _| counts[g] += 1);
            let arrays = groups.per_batch(|g| counts[g]);
            (Field::new(name, DataType::Int64, false), int64_arrays(arrays))
        }
        (Aggregate::Sum | Aggregate::Mean, Some(of)) => {
            let values = floats(&of)?;
            let weights = c.weight.as_deref().map(|w| floats(&column(w))).transpose()?;
            let mut sums = vec![0.0f64; groups.count];
            let mut totals = vec![0.0f64; groups.count];
            groups.each(|g, (b, r)| {
                let value = &values[b];
                if value.is_null(r) {
                    return;
                }
                match &weights {
                    None => {
                        sums[g] += value.value(r);
                        totals[g] += 1.0;
                    }
                    Some(weights) if weights[b].is_valid(r) => {
                        let w = weights[b].value(r);
                        sums[g] += value.value(r) * w;
                        totals[g] += w;
                    }
                    Some(_) => {}
                }
            });
            if c.aggregate == Aggregate::Sum {
                let arrays = groups.per_batch(|g| sums[g]);
                (
                    Field::new(name, DataType::Float64, false),
                    arrays.into_iter().map(|v| Arc::new(Float64Array::from(v)) as ArrayRef).collect(),
                )
            } else {
                let means: Vec<Option<f64>> =
                    sums.iter().zip(&totals).map(|(s, t)| (*t != 0.0).then(|| s / t)).collect();
                let arrays = groups.per_batch(|g| means[g]);
                (
                    Field::new(name, DataType::Float64, true),
                    arrays.into_iter().map(|v| Arc::new(Float64Array::from(v)) as ArrayRef).collect(),
                )
            }
        }
        (Aggregate::Min | Aggregate::Max, Some(of)) => {
            let keys = Keys::of(&of)?;
            let mut best: Vec<Option<(usize, usize)>> = vec![None; groups.count];
            let wanted =
                if c.aggregate == Aggregate::Min { std::cmp::Ordering::Less } else { std::cmp::Ordering::Greater };
            groups.each(|g, at| {
                if !keys.is_valid(at) {
                    return;
                }
                if best[g].is_none_or(|held| keys.compare(at, held) == wanted) {
                    best[g] = Some(at);
                }
            });
            // The extremes as a small array of the column's own type (one
            // row per group, picked from the batches; a group with no value
            // picks the null after them); each row takes its group's.
            let data_type = of[0].data_type().clone();
            let null = arrow_array::new_null_array(&data_type, 1);
            let mut sources: Vec<&dyn Array> = of.iter().map(|a| a.as_ref()).collect();
            sources.push(null.as_ref());
            let picks: Vec<(usize, usize)> = best.iter().map(|at| at.unwrap_or((of.len(), 0))).collect();
            let extremes = arrow_select::interleave::interleave(&sources, &picks).map_err(|e| e.to_string())?;
            let arrays = groups
                .per_batch(|g| g as u32)
                .into_iter()
                .map(|ids| {
                    arrow_select::take::take(&extremes, &UInt32Array::from(ids), None).map_err(|e| e.to_string())
                })
                .collect::<Result<Vec<_>, _>>()?;
            (Field::new(name, data_type, true), arrays)
        }
        (Aggregate::RankAscending | Aggregate::RankDescending, Some(of)) => {
            let keys = Keys::of(&of)?;
            let ranks = ranks(&keys, groups, c.aggregate == Aggregate::RankDescending)?;
            let mut start = 0;
            let arrays = groups
                .lengths
                .iter()
                .map(|&length| {
                    start += length;
                    Arc::new(Int64Array::from(ranks[start - length..start].to_vec())) as ArrayRef
                })
                .collect();
            (Field::new(name, DataType::Int64, false), arrays)
        }
        (aggregate, None) => return Err(format!("`{}` needs the column it is computed from", aggregate.name())),
    })
}

fn int64_arrays(arrays: Vec<Vec<i64>>) -> Vec<ArrayRef> {
    arrays.into_iter().map(|v| Arc::new(Int64Array::from(v)) as ArrayRef).collect()
}

/// A cast that fails on a value out of range instead of making it null.
fn strict_cast(array: &ArrayRef, to: &DataType) -> Result<ArrayRef, String> {
    cast_with_options(array, to, &CastOptions { safe: false, ..Default::default() }).map_err(|e| e.to_string())
}

fn floats(arrays: &[ArrayRef]) -> Result<Vec<Float64Array>, String> {
    arrays.iter().map(|a| Ok(strict_cast(a, &DataType::Float64)?.as_primitive::<Float64Type>().clone())).collect()
}

/// Each row's group: one group for every row, or one per distinct value of
/// the `per` column (nulls one group).
struct Groups {
    count: usize,
    /// Per batch, each row's group; `None`: every row is in group 0.
    ids: Option<Vec<Vec<u32>>>,
    lengths: Vec<usize>,
}

impl Groups {
    fn of(per: Option<&str>, batches: &[RecordBatch]) -> Result<Self, String> {
        let lengths: Vec<usize> = batches.iter().map(RecordBatch::num_rows).collect();
        let Some(per) = per else { return Ok(Groups { count: 1, ids: None, lengths }) };
        let texts: Vec<ArrayRef> = batches
            .iter()
            .map(|b| {
                b.column_by_name(per)
                    .ok_or_else(|| format!("no column `{per}`"))
                    .and_then(|a| strict_cast(a, &DataType::Utf8))
            })
            .collect::<Result<_, _>>()?;
        let mut known: HashMap<Option<&str>, u32> = HashMap::new();
        let mut ids = Vec::with_capacity(batches.len());
        for text in &texts {
            let text = text.as_string::<i32>();
            let batch_ids: Vec<u32> = (0..text.len())
                .map(|i| {
                    let value = text.is_valid(i).then(|| text.value(i));
                    let next = known.len() as u32;
                    *known.entry(value).or_insert(next)
                })
                .collect();
            ids.push(batch_ids);
        }
        Ok(Groups { count: known.len().max(1), ids: Some(ids), lengths })
    }

    /// Calls `f(group, (batch, row))` for every row, in input order.
    fn each(&self, mut f: impl FnMut(usize, (usize, usize))) {
        for (b, &length) in self.lengths.iter().enumerate() {
            for r in 0..length {
                f(self.group(b, r), (b, r));
            }
        }
    }

    fn group(&self, b: usize, r: usize) -> usize {
        self.ids.as_ref().map_or(0, |ids| ids[b][r] as usize)
    }

    /// A value per row from its group, batch by batch.
    fn per_batch<T>(&self, mut value: impl FnMut(usize) -> T) -> Vec<Vec<T>> {
        self.lengths
            .iter()
            .enumerate()
            .map(|(b, &length)| (0..length).map(|r| value(self.group(b, r))).collect())
            .collect()
    }
}

/// A column's values in an order: integers and dates as `i64`, floats as
/// `f64` in IEEE total order.
enum Keys {
    Int(Vec<Int64Array>),
    Float(Vec<Float64Array>),
}

impl Keys {
    fn of(arrays: &[ArrayRef]) -> Result<Self, String> {
        if arrays.first().is_some_and(|a| a.data_type().is_floating()) {
            return Ok(Keys::Float(floats(arrays)?));
        }
        let ints = arrays
            .iter()
            .map(|a| {
                let a = if a.data_type() == &DataType::Date32 { strict_cast(a, &DataType::Int32)? } else { a.clone() };
                Ok(strict_cast(&a, &DataType::Int64)?.as_primitive::<Int64Type>().clone())
            })
            .collect::<Result<_, String>>()?;
        Ok(Keys::Int(ints))
    }

    fn is_valid(&self, (b, r): (usize, usize)) -> bool {
        match self {
            Keys::Int(a) => a[b].is_valid(r),
            Keys::Float(a) => a[b].is_valid(r),
        }
    }

    /// The value at `(b, r)` as a `u64` whose order is the values' (IEEE
    /// total order for floats), or `None` for a null.
    fn sortable(&self, (b, r): (usize, usize)) -> Option<u64> {
        const SIGN: u64 = 1 << 63;
        match self {
            Keys::Int(a) => a[b].is_valid(r).then(|| a[b].value(r) as u64 ^ SIGN),
            Keys::Float(a) => a[b].is_valid(r).then(|| {
                // As f64::total_cmp orders: negative values' magnitude bits flipped.
                let bits = a[b].value(r).to_bits() as i64;
                (bits ^ (((bits >> 63) as u64) >> 1) as i64) as u64 ^ SIGN
            }),
        }
    }

    fn compare(&self, (b, r): (usize, usize), (hb, hr): (usize, usize)) -> std::cmp::Ordering {
        match self {
            Keys::Int(a) => a[b].value(r).cmp(&a[hb].value(hr)),
            Keys::Float(a) => a[b].value(r).total_cmp(&a[hb].value(hr)),
        }
    }
}

/// Each row's rank in its group (rows end to end over the batches): the
/// values sorted once by group and value, ranks given run by run of equal
/// values. 16 bytes a row with a value, 8 a group.
fn ranks(keys: &Keys, groups: &Groups, descending: bool) -> Result<Vec<i64>, String> {
    let rows: usize = groups.lengths.iter().sum();
    if u32::try_from(rows).is_err() {
        return Err(format!("{rows} rows are more than a rank is computed over (4,294,967,295)"));
    }
    // (group, the value as an order-keeping u64, row) of the rows with a
    // value; (group, row) of the nulls; per group, its values and nulls.
    let mut valued: Vec<(u32, u64, u32)> = Vec::with_capacity(rows);
    let mut nulls: Vec<(u32, u32)> = Vec::new();
    let mut counts = vec![(0u32, 0u32); groups.count];
    let mut row = 0u32;
    groups.each(|g, at| {
        match keys.sortable(at) {
            Some(key) => {
                valued.push((g as u32, key, row));
                counts[g].0 += 1;
            }
            None => {
                nulls.push((g as u32, row));
                counts[g].1 += 1;
            }
        }
        row += 1;
    });
    valued.sort_unstable();
    let mut ranks = vec![0i64; rows];
    let (mut start, mut group_start) = (0, 0);
    while start < valued.len() {
        let (group, key, _) = valued[start];
        if start == 0 || valued[start - 1].0 != group {
            group_start = start;
        }
        let end = start + valued[start..].partition_point(|(g, k, _)| (*g, *k) == (group, key));
        let (values, group_nulls) = counts[group as usize];
        // Ascending: after the group's nulls and smaller values; descending:
        // after its larger values.
        let rank = if descending {
            1 + (group_start + values as usize - end) as i64
        } else {
            1 + i64::from(group_nulls) + (start - group_start) as i64
        };
        for &(_, _, row) in &valued[start..end] {
            ranks[row as usize] = rank;
        }
        start = end;
    }
    // A null is smaller than every value and equal to the other nulls.
    for (group, row) in nulls {
        ranks[row as usize] = if descending { 1 + i64::from(counts[group as usize].0) } else { 1 };
    }
    Ok(ranks)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Computed;
    use arrow_array::{Date32Array, StringArray};

    fn batch(category: &[Option<&str>], value: &[Option<f64>], weight: &[i64]) -> RecordBatch {
        RecordBatch::try_from_iter_with_nullable([
            ("category", Arc::new(StringArray::from(category.to_vec())) as ArrayRef, true),
            ("value", Arc::new(Float64Array::from(value.to_vec())), true),
            ("weight", Arc::new(Int64Array::from(weight.to_vec())), false),
        ])
        .unwrap()
    }

    fn ints(batches: &[RecordBatch], name: &str) -> Vec<Option<i64>> {
        batches
            .iter()
            .flat_map(|b| b.column_by_name(name).unwrap().as_primitive::<Int64Type>().iter().collect::<Vec<_>>())
            .collect()
    }

    fn f64s(batches: &[RecordBatch], name: &str) -> Vec<Option<f64>> {
        batches
            .iter()
            .flat_map(|b| b.column_by_name(name).unwrap().as_primitive::<Float64Type>().iter().collect::<Vec<_>>())
            .collect()
    }

    fn sample() -> Vec<RecordBatch> {
        let category = [Some("a"), Some("b"), Some("a"), None, Some("a"), Some("b")];
        let value = [Some(10.0), Some(5.0), Some(30.0), Some(2.0), None, Some(5.0)];
        let weight = [1, 2, 3, 4, 5, 6];
        // The same rows in one batch and in three.
        vec![
            batch(&category[..1], &value[..1], &weight[..1]),
            batch(&category[1..4], &value[1..4], &weight[1..4]),
            batch(&category[4..], &value[4..], &weight[4..]),
        ]
    }

    #[test]
    fn aggregates_over_all_rows_and_per_group_worked_by_hand() {
        let needs = Needs::on("in")
            .computed(Computed::new("n", Aggregate::Count))
            .computed(Computed::new("n_cat", Aggregate::Count).per("category"))
            .computed(Computed::new("sum", Aggregate::Sum).of("value"))
            .computed(Computed::new("mean_cat", Aggregate::Mean).of("value").per("category"))
            .computed(Computed::new("weighted", Aggregate::Mean).of("value").weighted_by("weight"))
            .computed(Computed::new("max_cat", Aggregate::Max).of("value").per("category"))
            .computed(Computed::new("min", Aggregate::Min).of("weight"));
        let out = prepare(&needs, sample()).unwrap();
        assert_eq!(out.iter().map(RecordBatch::num_rows).collect::<Vec<_>>(), [1, 3, 2]);
        assert_eq!(ints(&out, "n"), [Some(6); 6]);
        assert_eq!(ints(&out, "n_cat"), [3, 2, 3, 1, 3, 2].map(Some));
        assert_eq!(f64s(&out, "sum"), [Some(52.0); 6]);
        assert_eq!(f64s(&out, "mean_cat"), [20.0, 5.0, 20.0, 2.0, 20.0, 5.0].map(Some));
        // (10·1 + 5·2 + 30·3 + 2·4 + 5·6) / (1 + 2 + 3 + 4 + 6): the null's weight is skipped.
        assert_eq!(f64s(&out, "weighted"), [Some(148.0 / 16.0); 6]);
        assert_eq!(f64s(&out, "max_cat"), [30.0, 5.0, 30.0, 2.0, 30.0, 5.0].map(Some));
        assert_eq!(ints(&out, "min"), [Some(1); 6]);
        // The whole in one batch gives the same.
        let whole = arrow_select::concat::concat_batches(&sample()[0].schema(), &sample()).unwrap();
        let one = prepare(&needs, vec![whole]).unwrap();
        assert_eq!(f64s(&one, "weighted"), f64s(&out, "weighted"));
        assert_eq!(ints(&one, "n_cat"), ints(&out, "n_cat"));
    }

    #[test]
    fn ranks_share_ties_and_put_nulls_below_every_value() {
        let needs = Needs::on("in")
            .computed(Computed::new("up", Aggregate::RankAscending).of("value"))
            .computed(Computed::new("down", Aggregate::RankDescending).of("value"))
            .computed(Computed::new("down_cat", Aggregate::RankDescending).of("value").per("category"));
        let out = prepare(&needs, sample()).unwrap();
        // Values 10, 5, 30, 2, null, 5.
        assert_eq!(ints(&out, "up"), [5, 3, 6, 2, 1, 3].map(Some));
        assert_eq!(ints(&out, "down"), [2, 3, 1, 5, 6, 3].map(Some));
        // a: 10, 30, null; b: 5, 5; null group: 2.
        assert_eq!(ints(&out, "down_cat"), [2, 1, 1, 1, 3, 1].map(Some));
    }

    #[test]
    fn ranks_agree_with_counting_by_total_order_for_every_kind_of_float() {
        let special = [-0.0, 0.0, -1.5, 2.5, f64::INFINITY, f64::NEG_INFINITY, f64::NAN, 1e-300, -1e300];
        let values: Vec<Option<f64>> = (0..200u64)
            .map(|i| (i % 17 != 3).then(|| special[(i * 7 % 9) as usize] * ((i % 3) as f64 + 1.0)))
            .collect();
        let groups: Vec<Option<&str>> = (0..200).map(|i| [Some("x"), Some("y"), None][i % 3]).collect();
        let batches: Vec<RecordBatch> =
            (0..200).step_by(40).map(|s| batch(&groups[s..s + 40], &values[s..s + 40], &[0; 40])).collect();
        let needs = Needs::on("in")
            .computed(Computed::new("up", Aggregate::RankAscending).of("value").per("category"))
            .computed(Computed::new("down", Aggregate::RankDescending).of("value").per("category"));
        let out = prepare(&needs, batches).unwrap();
        let (up, down) = (ints(&out, "up"), ints(&out, "down"));
        for i in 0..200 {
            let peers: Vec<Option<f64>> = (0..200).filter(|j| groups[*j] == groups[i]).map(|j| values[j]).collect();
            let below = |a: Option<f64>, b: Option<f64>| match (a, b) {
                (None, None) | (Some(_), None) => false,
                (None, Some(_)) => true,
                (Some(a), Some(b)) => a.total_cmp(&b).is_lt(),
            };
            let smaller = peers.iter().filter(|p| below(**p, values[i])).count() as i64;
            let larger = peers.iter().filter(|p| below(values[i], **p)).count() as i64;
            assert_eq!((up[i], down[i]), (Some(1 + smaller), Some(1 + larger)), "row {i}: {:?}", values[i]);
        }
    }

    #[test]
    fn dates_rank_and_keep_their_type_as_extremes() {
        let days = RecordBatch::try_from_iter([(
            "day",
            Arc::new(Date32Array::from(vec![Some(3), None, Some(1), Some(3)])) as ArrayRef,
        )])
        .unwrap();
        let needs = Needs::on("in")
            .computed(Computed::new("latest", Aggregate::Max).of("day"))
            .computed(Computed::new("r", Aggregate::RankAscending).of("day"));
        let out = prepare(&needs, vec![days]).unwrap();
        let latest = out[0].column_by_name("latest").unwrap();
        assert_eq!(latest.data_type(), &DataType::Date32);
        assert_eq!(latest.as_primitive::<arrow_array::types::Date32Type>().values().to_vec(), [3, 3, 3, 3]);
        assert_eq!(ints(&out, "r"), [3, 1, 2, 3].map(Some));
    }

    #[test]
    fn sorts_with_nulls_last_ties_in_input_order_and_keeps_the_batch_sizes() {
        let needs = Needs::on("in")
            .sorted_by("value")
            .computed(Computed::new("position", Aggregate::Sum).of("weight").per("weight"));
        let out = prepare(&needs, sample()).unwrap();
        assert_eq!(out.iter().map(RecordBatch::num_rows).collect::<Vec<_>>(), [1, 3, 2]);
        assert_eq!(f64s(&out, "value"), [Some(2.0), Some(5.0), Some(5.0), Some(10.0), Some(30.0), None]);
        // The two 5s in input order: weights 2 then 6.
        assert_eq!(f64s(&out, "position"), [4.0, 2.0, 6.0, 1.0, 3.0, 5.0].map(Some));
        let down = prepare(&Needs::on("in").sorted_by_descending("value"), sample()).unwrap();
        assert_eq!(f64s(&down, "value"), [Some(30.0), Some(10.0), Some(5.0), Some(5.0), Some(2.0), None]);
    }

    #[test]
    fn what_cannot_be_computed_is_refused_with_the_column_named() {
        let schema = sample()[0].schema();
        let refused = |needs: Needs| needs.check(&schema).unwrap_err().to_string();
        assert!(
            refused(Needs::on("in").computed(Computed::new("value", Aggregate::Count)))
                .contains("the input already has a column `value`; rename that column in the step's SQL")
        );
        assert!(
            refused(Needs::on("in").computed(Computed::new("n", Aggregate::Count).of("value")))
                .contains("takes no column")
        );
        assert!(
            refused(Needs::on("in").computed(Computed::new("x", Aggregate::Sum).of("nope")))
                .contains("`nope` is not an input column (the input has category, value, weight)")
        );
        assert!(
            refused(Needs::on("in").computed(Computed::new("x", Aggregate::Sum).of("category")))
                .contains("takes numbers")
        );
        assert!(refused(Needs::on("in").computed(Computed::new("x", Aggregate::Max))).contains("needs the column"));
        assert!(
            refused(Needs::on("in").computed(Computed::new("x", Aggregate::Max).of("value").weighted_by("weight")))
                .contains("only `sum` and `mean`")
        );
        assert!(refused(Needs::on("in").sorted_by("nope")).contains("sorted by `nope`"));
        assert!(Needs::on("in").computed(Computed::new("x", Aggregate::Count)).sorted_by("x").check(&schema).is_ok());
    }

    #[test]
    fn unsigned_64_bit_values_are_summed_but_not_ranked() {
        let schema = Schema::new(vec![Field::new("big", DataType::UInt64, false)]);
        let rank = Needs::on("in").computed(Computed::new("r", Aggregate::RankAscending).of("big"));
        assert!(rank.check(&schema).unwrap_err().to_string().contains("not UInt64: cast it to BIGINT in the SQL"));
        assert!(Needs::on("in").computed(Computed::new("s", Aggregate::Sum).of("big")).check(&schema).is_ok());
    }

    #[test]
    fn a_plugin_asks_only_of_its_own_ports_once_each_and_within_bounds() {
        let ports = ["in"];
        assert!(crate::check_ports(&[Needs::on("in")], &ports).is_ok());
        assert!(crate::check_ports(&[Needs::on("other")], &ports).unwrap_err().contains("does not declare"));
        assert!(crate::check_ports(&[Needs::on("in"), Needs::on("in")], &ports).unwrap_err().contains("twice"));
        let many = (0..=crate::MAX_COMPUTED)
            .fold(Needs::on("in"), |n, i| n.computed(Computed::new(&format!("_c{i}"), Aggregate::Count)));
        assert!(crate::check_ports(&[many], &ports).unwrap_err().contains("at most 64"));
    }

    #[test]
    fn nothing_asked_and_no_rows_pass_through() {
        assert_eq!(prepare(&Needs::on("in"), sample()).unwrap(), sample());
        assert!(prepare(&Needs::on("in").sorted_by("value"), Vec::new()).unwrap().is_empty());
    }
}
