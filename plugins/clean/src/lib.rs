//! Casts string columns to typed ones and validates each row.
//!
//! Every input row goes either to `out` (typed columns, in config order, then
//! the `keep` columns unchanged) or to `rejected` (the original values, plus
//! `_reason` and `_row`, the row's position in the input). A value that does
//! not parse becomes null, as the reference does, unless its column says
//! `on_unparseable: reject`. Then, in column order, the first rule a row
//! breaks gives its reason:
//!
//! - `required: true` and the value is null: `reason` (default `null_key`);
//! - `min` / `max` (inclusive) or `gt` / `lt` (exclusive) broken: `reason`
//!   (default `out_of_range`).
//!
//! Dates are ISO `YYYY-MM-DD` and must exist on the calendar (`2023-02-30`
//! does not parse). Columns that arrive already typed (a SQLite source's
//! integers and reals) are checked as they are.
//!
//! A `_row` column in the input (the row's position, added by the host) is
//! carried to both ports as the last column; without one, `_row` counts the
//! rows this instance has seen.

use std::sync::Arc;

use arrow_array::builder::{Float64Builder, Int64Builder, StringBuilder};
use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int64Type};
use arrow_array::{
    Array, ArrayRef, BooleanArray, Date32Array, Float64Array, Int64Array, RecordBatch, StringArray, StringViewArray,
    UInt64Array,
};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use medallion_sdk::{Emitter, Error, Info, Plugin, Port, export_plugin, parse_config};
use serde::Deserialize;

/// The plugin's config, as written under the step in `pipeline.yaml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Columns to cast and check, in output order.
    pub columns: Vec<ColumnRule>,
    /// Columns copied to `out` unchanged, after the typed ones.
    #[serde(default)]
    pub keep: Vec<String>,
}

/// How one column is cast and checked.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ColumnRule {
    /// Column name in the input (and the output).
    pub name: String,
    /// Target type.
    #[serde(rename = "type")]
    pub kind: Kind,
    /// A null (after casting) rejects the row.
    #[serde(default)]
    pub required: bool,
    /// Inclusive lower bound.
    pub min: Option<f64>,
    /// Inclusive upper bound.
    pub max: Option<f64>,
    /// Exclusive lower bound.
    pub gt: Option<f64>,
    /// Exclusive upper bound.
    pub lt: Option<f64>,
    /// What an unparseable value does: become null (default) or reject the row.
    #[serde(default)]
    pub on_unparseable: OnUnparseable,
    /// Reason code for a row this column rejects.
    pub reason: Option<String>,
}

/// Target type of a cast.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// 64-bit integer.
    Int,
    /// 64-bit float.
    Double,
    /// Calendar date (`Date32`).
    Date,
    /// Text, unchanged.
    String,
}

/// What an unparseable value does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnUnparseable {
    /// The value becomes null (the reference's behaviour).
    #[default]
    Null,
    /// The row is rejected with reason `bad_<type>` (or the column's reason).
    Reject,
}

/// Cleans batches according to a [`Config`]; usable natively and as a plugin.
pub struct Clean {
    config: Config,
    out_schema: SchemaRef,
    rows_seen: u64,
}

impl Clean {
    /// Checks the config and prepares the output schema.
    pub fn from_config(config: Config) -> Result<Self, Error> {
        if config.columns.is_empty() {
            return Err(Error::bad_config("`columns` is empty: name at least one column to cast"));
        }
        let mut fields: Vec<Field> =
            config.columns.iter().map(|c| Field::new(&c.name, c.kind.data_type(), !c.required)).collect();
        fields.extend(config.keep.iter().map(|name| Field::new(name, DataType::Utf8, true)));
        fields.push(Field::new(ROW, DataType::UInt64, false));
        let out_schema = Arc::new(Schema::new(fields));
        Ok(Clean { config, out_schema, rows_seen: 0 })
    }

    /// Splits one batch into clean and rejected rows, and lists the values
    /// that became null.
    pub fn apply(&mut self, batch: &RecordBatch) -> Result<Applied, Error> {
        let rows = batch.num_rows();
        let mut reasons: Vec<Option<&str>> = vec![None; rows];
        let mut typed = Vec::with_capacity(self.out_schema.fields().len());
        let mut nulled = Nulled::default();
        for rule in &self.config.columns {
            let input = Input::of(batch, &rule.name)?;
            let mut rows = Vec::new();
            typed.push(rule.cast_and_check(&input, &mut reasons, &mut rows)?);
            if let Input::Text(text) = &input {
                for row in rows {
                    nulled.add(row, &rule.name, text.value(row), rule.kind.unparseable_reason());
                }
            }
        }
        for name in &self.config.keep {
            typed.push(Arc::new(string_column(batch, name)?) as ArrayRef);
        }
        let positions = self.positions(batch)?;
        typed.push(positions.clone());
        let keep = BooleanArray::from_iter(reasons.iter().map(|r| Some(r.is_none())));
        // Filter column by column: before filtering, required columns still
        // hold the nulls of the rows being rejected.
        let kept =
            typed.iter().map(|column| arrow_select::filter::filter(column, &keep)).collect::<Result<Vec<_>, _>>()?;
        let clean = RecordBatch::try_new(self.out_schema.clone(), kept)?;
        let rejected = self.rejected(batch, &keep, &reasons, &positions)?;
        let nulled = nulled.finish(&positions, &reasons)?;
        self.rows_seen += rows as u64;
        Ok(Applied { clean, rejected, nulled })
    }

    /// The input's `_row` column, or positions counted by this instance.
    fn positions(&self, batch: &RecordBatch) -> Result<ArrayRef, Error> {
        match batch.column_by_name(ROW) {
            Some(column) if column.data_type() == &DataType::UInt64 && column.null_count() == 0 => Ok(column.clone()),
            Some(column) => {
                Err(Error::bad_input(format!("`{ROW}` is {}, expected non-null UInt64 positions", column.data_type())))
            }
            None => {
                Ok(Arc::new(UInt64Array::from_iter_values(self.rows_seen..self.rows_seen + batch.num_rows() as u64)))
            }
        }
    }

    fn rejected(
        &self,
        batch: &RecordBatch,
        keep: &BooleanArray,
        reasons: &[Option<&str>],
        positions: &ArrayRef,
    ) -> Result<RecordBatch, Error> {
        let drop_mask = arrow_arith_not(keep);
        let drop = arrow_select::filter::filter_record_batch(batch, &drop_mask)?;
        let mut reason = StringBuilder::new();
        for r in reasons.iter().flatten() {
            reason.append_value(r);
        }
        let mut fields = Vec::with_capacity(drop.num_columns() + 2);
        let mut columns = Vec::with_capacity(drop.num_columns() + 2);
        for (field, column) in drop.schema().fields().iter().zip(drop.columns()) {
            if field.name() != ROW {
                fields.push(field.as_ref().clone());
                columns.push(column.clone());
            }
        }
        fields.push(Field::new("_reason", DataType::Utf8, false));
        fields.push(Field::new(ROW, DataType::UInt64, false));
        columns.push(Arc::new(reason.finish()));
        columns.push(arrow_select::filter::filter(positions, &drop_mask)?);
        Ok(RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)?)
    }
}

/// What one batch gave.
pub struct Applied {
    /// Typed, valid rows (`out`).
    pub clean: RecordBatch,
    /// Rejected rows with their original values (`rejected`).
    pub rejected: RecordBatch,
    /// Values that did not parse and became null (`nulled`).
    pub nulled: RecordBatch,
}

/// Values that did not parse and became null in `out`: kept so that nothing
/// is lost, one row per value (rows rejected whole keep their values there).
#[derive(Default)]
struct Nulled {
    entries: Vec<(usize, String, String, &'static str)>,
}

impl Nulled {
    fn add(&mut self, row: usize, column: &str, value: &str, reason: &'static str) {
        self.entries.push((row, column.to_owned(), value.to_owned(), reason));
    }

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new(ROW, DataType::UInt64, false),
            Field::new("column", DataType::Utf8, false),
            Field::new("value", DataType::Utf8, false),
            Field::new("_reason", DataType::Utf8, false),
        ]))
    }

    /// The entries of rows that went to `out`.
    fn finish(self, positions: &ArrayRef, reasons: &[Option<&str>]) -> Result<RecordBatch, Error> {
        let kept: Vec<&(usize, String, String, &str)> =
            self.entries.iter().filter(|(row, ..)| reasons[*row].is_none()).collect();
        let indices = arrow_array::UInt32Array::from_iter_values(kept.iter().map(|(row, ..)| *row as u32));
        let rows = arrow_select::take::take(positions, &indices, None)?;
        let column: StringArray = kept.iter().map(|(_, c, ..)| Some(c.as_str())).collect();
        let value: StringArray = kept.iter().map(|(_, _, v, _)| Some(v.as_str())).collect();
        let reason: StringArray = kept.iter().map(|(.., r)| Some(*r)).collect();
        Ok(RecordBatch::try_new(Self::schema(), vec![rows, Arc::new(column), Arc::new(value), Arc::new(reason)])?)
    }
}

/// The position column the host adds and both ports carry.
const ROW: &str = "_row";

/// A column to cast: text as Bronze keeps CSV values, or already typed.
enum Input {
    Text(StringArray),
    Int(Int64Array),
    Float(Float64Array),
}

impl Input {
    fn of(batch: &RecordBatch, name: &str) -> Result<Self, Error> {
        let column = batch.column_by_name(name).ok_or_else(|| {
            Error::bad_input(format!("input has no column `{name}`; it has {:?}", column_names(batch)))
        })?;
        Ok(match column.data_type() {
            DataType::Int64 => Input::Int(column.as_primitive::<Int64Type>().clone()),
            DataType::Float64 => Input::Float(column.as_primitive::<Float64Type>().clone()),
            _ => Input::Text(string_column(batch, name)?),
        })
    }

    fn len(&self) -> usize {
        match self {
            Input::Text(a) => a.len(),
            Input::Int(a) => a.len(),
            Input::Float(a) => a.len(),
        }
    }
}

fn arrow_arith_not(mask: &BooleanArray) -> BooleanArray {
    BooleanArray::from(!mask.values())
}

/// The column `name` as UTF-8 strings, whichever string layout it arrived in.
fn string_column(batch: &RecordBatch, name: &str) -> Result<StringArray, Error> {
    let column = batch
        .column_by_name(name)
        .ok_or_else(|| Error::bad_input(format!("input has no column `{name}`; it has {:?}", column_names(batch))))?;
    if let Some(strings) = column.as_any().downcast_ref::<StringArray>() {
        return Ok(strings.clone());
    }
    if let Some(views) = column.as_any().downcast_ref::<StringViewArray>() {
        return Ok(views.iter().collect());
    }
    Err(Error::bad_input(format!("column `{name}` is {}, expected strings (Utf8)", column.data_type())))
}

fn column_names(batch: &RecordBatch) -> Vec<String> {
    batch.schema().fields().iter().map(|f| f.name().clone()).collect()
}

impl Kind {
    fn data_type(self) -> DataType {
        match self {
            Kind::Int => DataType::Int64,
            Kind::Double => DataType::Float64,
            Kind::Date => DataType::Date32,
            Kind::String => DataType::Utf8,
        }
    }

    fn unparseable_reason(self) -> &'static str {
        match self {
            Kind::Int => "bad_int",
            Kind::Double => "bad_double",
            Kind::Date => "bad_date",
            Kind::String => "bad_string",
        }
    }
}

impl ColumnRule {
    fn cast_and_check<'a>(
        &'a self,
        input: &Input,
        reasons: &mut [Option<&'a str>],
        nulled: &mut Vec<usize>,
    ) -> Result<ArrayRef, Error> {
        let typed_mismatch = |have: &str| {
            Err(Error::bad_input(format!("column `{}` is {have}; it cannot be cast to {:?}", self.name, self.kind)))
        };
        Ok(match (self.kind, input) {
            (Kind::Int, Input::Text(text)) => {
                let mut out = Int64Builder::with_capacity(input.len());
                for (i, value) in text.iter().enumerate() {
                    let parsed = self.parse(value, i, reasons, nulled, |s| s.parse::<i64>().ok());
                    self.check(parsed.map(|v| v as f64), i, reasons);
                    out.append_option(parsed);
                }
                Arc::new(out.finish())
            }
            (Kind::Int, Input::Int(ints)) => {
                for (i, value) in ints.iter().enumerate() {
                    self.check(value.map(|v| v as f64), i, reasons);
                }
                Arc::new(ints.clone())
            }
            (Kind::Double, Input::Text(text)) => {
                let mut out = Float64Builder::with_capacity(input.len());
                for (i, value) in text.iter().enumerate() {
                    let parsed =
                        self.parse(value, i, reasons, nulled, |s| s.parse::<f64>().ok().filter(|v| v.is_finite()));
                    self.check(parsed, i, reasons);
                    out.append_option(parsed);
                }
                Arc::new(out.finish())
            }
            (Kind::Double, Input::Float(floats)) => {
                for (i, value) in floats.iter().enumerate() {
                    self.check(value, i, reasons);
                }
                Arc::new(floats.clone())
            }
            (Kind::Double, Input::Int(ints)) => {
                let floats: Float64Array = ints.iter().map(|v| v.map(|v| v as f64)).collect();
                for (i, value) in floats.iter().enumerate() {
                    self.check(value, i, reasons);
                }
                Arc::new(floats)
            }
            (Kind::Date, Input::Text(text)) => {
                let days: Vec<Option<i32>> = text
                    .iter()
                    .enumerate()
                    .map(|(i, value)| {
                        let parsed = self.parse(value, i, reasons, nulled, parse_iso_date);
                        self.check(parsed.map(f64::from), i, reasons);
                        parsed
                    })
                    .collect();
                Arc::new(Date32Array::from(days))
            }
            (Kind::String, Input::Text(text)) => {
                // Text has no bounds: NaN stands for "present".
                for (i, value) in text.iter().enumerate() {
                    self.check(value.map(|_| f64::NAN), i, reasons);
                }
                Arc::new(text.clone())
            }
            (_, Input::Int(_)) => return typed_mismatch("Int64"),
            (_, Input::Float(_)) => return typed_mismatch("Float64"),
        })
    }

    /// Parses a non-empty value; records a reject when it does not parse and
    /// the rule says so.
    fn parse<'a, T>(
        &'a self,
        value: Option<&str>,
        row: usize,
        reasons: &mut [Option<&'a str>],
        nulled: &mut Vec<usize>,
        parse: impl Fn(&str) -> Option<T>,
    ) -> Option<T> {
        let text = value.map(str::trim).filter(|s| !s.is_empty())?;
        let parsed = parse(text);
        if parsed.is_none() && self.on_unparseable == OnUnparseable::Null {
            nulled.push(row);
        }
        if parsed.is_none() && self.on_unparseable == OnUnparseable::Reject && reasons[row].is_none() {
            reasons[row] = Some(self.reason.as_deref().unwrap_or(self.kind.unparseable_reason()));
        }
        parsed
    }

    /// Applies `required` and the bounds to one cast value.
    fn check<'a>(&'a self, value: Option<f64>, row: usize, reasons: &mut [Option<&'a str>]) {
        if reasons[row].is_some() {
            return;
        }
        let broken = match value {
            None => self.required.then_some("null_key"),
            Some(v) if v.is_nan() => None,
            Some(v) => {
                let out = self.min.is_some_and(|m| v < m)
                    || self.max.is_some_and(|m| v > m)
                    || self.gt.is_some_and(|m| v <= m)
                    || self.lt.is_some_and(|m| v >= m);
                out.then_some("out_of_range")
            }
        };
        if let Some(default) = broken {
            reasons[row] = Some(self.reason.as_deref().unwrap_or(default));
        }
    }
}

/// Days since 1970-01-01 of an ISO `YYYY-MM-DD` date that exists.
pub fn parse_iso_date(text: &str) -> Option<i32> {
    medallion_sdk::date::parse_iso(text)
}

impl Plugin for Clean {
    fn info() -> Info {
        Info::new(
            "clean",
            env!("CARGO_PKG_VERSION"),
            "Casts string columns to int, double or date and validates each row; rejects go to `rejected` with a reason.",
        )
        .input(Port::any("in", "string columns as Bronze holds them"))
        .output(Port::any("out", "the typed columns in config order, then the `keep` columns, then `_row`"))
        .output(Port::any("rejected", "the rejected rows' original values, with `_reason` and `_row`"))
        .output(Port::with_schema("nulled", "values that did not parse and became null: `_row`, column, value, `_reason`", Nulled::schema()))
        .config_schema(CONFIG_SCHEMA)
        .stateless()
    }

    fn new(config: &str) -> Result<Self, Error> {
        Clean::from_config(parse_config(config)?)
    }

    fn outputs(&self) -> Vec<Port> {
        vec![
            Port::with_schema("out", "typed, valid rows", self.out_schema.clone()),
            Port::any("rejected", "the rejected rows' original values, with `_reason` and `_row`"),
            Port::with_schema(
                "nulled",
                "values that did not parse and became null: `_row`, column, value, `_reason`",
                Nulled::schema(),
            ),
        ]
    }

    fn push(&mut self, _port: &str, batch: RecordBatch, out: &mut Emitter) -> Result<(), Error> {
        let applied = self.apply(&batch)?;
        out.emit("out", applied.clean);
        out.emit("rejected", applied.rejected);
        if applied.nulled.num_rows() > 0 {
            out.emit("nulled", applied.nulled);
        }
        Ok(())
    }
}

const CONFIG_SCHEMA: &str = r#"{
  "type": "object",
  "required": ["columns"],
  "additionalProperties": false,
  "properties": {
    "columns": {"type": "array", "items": {
      "type": "object", "required": ["name", "type"], "additionalProperties": false,
      "properties": {
        "name": {"type": "string"},
        "type": {"enum": ["int", "double", "date", "string"]},
        "required": {"type": "boolean", "default": false},
        "min": {"type": "number"}, "max": {"type": "number"},
        "gt": {"type": "number"}, "lt": {"type": "number"},
        "on_unparseable": {"enum": ["null", "reject"], "default": "null"},
        "reason": {"type": "string"}
      }}},
    "keep": {"type": "array", "items": {"type": "string"}}
  }
}"#;

export_plugin!(Clean);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_must_exist_on_the_calendar() {
        assert_eq!(parse_iso_date("1970-01-01"), Some(0));
        assert_eq!(parse_iso_date("2024-02-29"), Some(19_782));
        assert_eq!(parse_iso_date("2023-02-29"), None);
        assert_eq!(parse_iso_date("2023-02-30"), None);
        assert_eq!(parse_iso_date("2023-13-01"), None);
        assert_eq!(parse_iso_date("23-01-01"), None);
        assert_eq!(parse_iso_date("2023/01/01"), None);
    }
}
