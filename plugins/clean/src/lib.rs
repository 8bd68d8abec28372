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
//! does not parse).

use std::sync::Arc;

use arrow_array::builder::{Float64Builder, Int64Builder, StringBuilder, UInt64Builder};
use arrow_array::{Array, ArrayRef, BooleanArray, Date32Array, RecordBatch, StringArray, StringViewArray};
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
        let out_schema = Arc::new(Schema::new(fields));
        Ok(Clean { config, out_schema, rows_seen: 0 })
    }

    /// Splits one batch into (clean, rejected).
    pub fn apply(&mut self, batch: &RecordBatch) -> Result<(RecordBatch, RecordBatch), Error> {
        let rows = batch.num_rows();
        let mut reasons: Vec<Option<&str>> = vec![None; rows];
        let mut typed = Vec::with_capacity(self.out_schema.fields().len());
        for rule in &self.config.columns {
            let input = string_column(batch, &rule.name)?;
            typed.push(rule.cast_and_check(&input, &mut reasons));
        }
        for name in &self.config.keep {
            typed.push(Arc::new(string_column(batch, name)?) as ArrayRef);
        }
        let keep = BooleanArray::from_iter(reasons.iter().map(|r| Some(r.is_none())));
        // Filter column by column: before filtering, required columns still
        // hold the nulls of the rows being rejected.
        let kept =
            typed.iter().map(|column| arrow_select::filter::filter(column, &keep)).collect::<Result<Vec<_>, _>>()?;
        let clean = RecordBatch::try_new(self.out_schema.clone(), kept)?;
        let rejected = self.rejected(batch, &keep, &reasons)?;
        self.rows_seen += rows as u64;
        Ok((clean, rejected))
    }

    fn rejected(
        &self,
        batch: &RecordBatch,
        keep: &BooleanArray,
        reasons: &[Option<&str>],
    ) -> Result<RecordBatch, Error> {
        let drop = arrow_select::filter::filter_record_batch(batch, &arrow_arith_not(keep))?;
        let mut reason = StringBuilder::new();
        let mut position = UInt64Builder::new();
        for (i, r) in reasons.iter().enumerate() {
            if let Some(r) = r {
                reason.append_value(r);
                position.append_value(self.rows_seen + i as u64);
            }
        }
        let mut fields: Vec<Field> = drop.schema().fields().iter().map(|f| f.as_ref().clone()).collect();
        fields.push(Field::new("_reason", DataType::Utf8, false));
        fields.push(Field::new("_row", DataType::UInt64, false));
        let mut columns = drop.columns().to_vec();
        columns.push(Arc::new(reason.finish()));
        columns.push(Arc::new(position.finish()));
        Ok(RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)?)
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
    fn cast_and_check<'a>(&'a self, input: &StringArray, reasons: &mut [Option<&'a str>]) -> ArrayRef {
        match self.kind {
            Kind::Int => {
                let mut out = Int64Builder::with_capacity(input.len());
                for (i, value) in input.iter().enumerate() {
                    let parsed = self.parse(value, i, reasons, |s| s.parse::<i64>().ok());
                    self.check(parsed.map(|v| v as f64), i, reasons);
                    out.append_option(parsed);
                }
                Arc::new(out.finish())
            }
            Kind::Double => {
                let mut out = Float64Builder::with_capacity(input.len());
                for (i, value) in input.iter().enumerate() {
                    let parsed = self.parse(value, i, reasons, |s| s.parse::<f64>().ok().filter(|v| v.is_finite()));
                    self.check(parsed, i, reasons);
                    out.append_option(parsed);
                }
                Arc::new(out.finish())
            }
            Kind::Date => {
                let days: Vec<Option<i32>> = input
                    .iter()
                    .enumerate()
                    .map(|(i, value)| {
                        let parsed = self.parse(value, i, reasons, parse_iso_date);
                        self.check(parsed.map(f64::from), i, reasons);
                        parsed
                    })
                    .collect();
                Arc::new(Date32Array::from(days))
            }
            Kind::String => {
                // Text has no bounds: NaN stands for "present".
                for (i, value) in input.iter().enumerate() {
                    self.check(value.map(|_| f64::NAN), i, reasons);
                }
                Arc::new(input.clone())
            }
        }
    }

    /// Parses a non-empty value; records a reject when it does not parse and
    /// the rule says so.
    fn parse<'a, T>(
        &'a self,
        value: Option<&str>,
        row: usize,
        reasons: &mut [Option<&'a str>],
        parse: impl Fn(&str) -> Option<T>,
    ) -> Option<T> {
        let text = value.map(str::trim).filter(|s| !s.is_empty())?;
        let parsed = parse(text);
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
    let b = text.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let digits = |range: std::ops::Range<usize>| -> Option<i32> {
        b[range].iter().try_fold(0i32, |acc, &d| d.is_ascii_digit().then(|| acc * 10 + i32::from(d - b'0')))
    };
    let (year, month, day) = (digits(0..4)?, digits(5..7)?, digits(8..10)?);
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return None;
    }
    Some(days_from_civil(year, month, day))
}

fn days_in_month(year: i32, month: i32) -> i32 {
    match month {
        4 | 6 | 9 | 11 => 30,
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        _ => 31,
    }
}

/// Howard Hinnant's days-from-civil algorithm.
fn days_from_civil(year: i32, month: i32, day: i32) -> i32 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

impl Plugin for Clean {
    fn info() -> Info {
        Info::new(
            "clean",
            env!("CARGO_PKG_VERSION"),
            "Casts string columns to int, double or date and validates each row; rejects go to `rejected` with a reason.",
        )
        .input(Port::any("in", "string columns as Bronze holds them"))
        .output(Port::any("out", "the typed columns in config order, then the `keep` columns"))
        .output(Port::any("rejected", "the rejected rows' original values, with `_reason` and `_row`"))
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
        ]
    }

    fn push(&mut self, _port: &str, batch: RecordBatch, out: &mut Emitter) -> Result<(), Error> {
        let (clean, rejected) = self.apply(&batch)?;
        out.emit("out", clean);
        out.emit("rejected", rejected);
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
