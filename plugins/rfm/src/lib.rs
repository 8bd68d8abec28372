//! Customer recency, RFM score and segment, over all customers at once.
//!
//! - `recency_days = as_of − last_order_date`, where `as_of` is the config's
//!   date or, by default, the latest `last_order_date` in the input;
//! - R, F and M scores from 1 to `bins` (5): a customer's score is 1 + ⌊bins
//!   × (customers strictly worse) / customers⌋, where worse means a longer
//!   recency, fewer `total_orders`, a smaller `total_spent`; ties share a
//!   score. `rfm_score` is the three digits, `"545"`;
//! - `segment`, the first that applies: `champions` (R ≥ 4 and F ≥ 4),
//!   `loyal` (F ≥ 4), `new` (R ≥ 4 and F = 1), `promising` (R ≥ 4),
//!   `at_risk` (R ≤ 2 and F ≥ 3), `lost` (R = 1), else `needs_attention`.
//!
//! The result does not depend on how customers arrive in batches.

use std::sync::Arc;

use arrow_array::{ArrayRef, Int64Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field};
use medallion_sdk::table::{Buffered, append, per_batch};
use medallion_sdk::{Emitter, Error, Info, Plugin, Port, export_plugin, parse_config};
use serde::Deserialize;

/// The config, under the step in `pipeline.yaml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// The day recency is measured from, `YYYY-MM-DD`; default the latest order.
    pub as_of: Option<String>,
    /// Score levels (5: quintiles).
    pub bins: u32,
}

impl Default for Config {
    fn default() -> Self {
        Config { as_of: None, bins: 5 }
    }
}

/// The plugin.
pub struct Rfm {
    as_of: Option<i32>,
    bins: u32,
    rows: Buffered,
}

/// Scores `values` so that higher is better: 1 + ⌊bins × (values strictly
/// lower) / n⌋.
fn scores(values: &[f64], bins: u32) -> Vec<u32> {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len().max(1) as f64;
    values
        .iter()
        .map(|v| {
            let below = sorted.partition_point(|s| s.total_cmp(v).is_lt()) as f64;
            1 + ((f64::from(bins) * below / n).floor() as u32).min(bins - 1)
        })
        .collect()
}

fn segment(r: u32, f: u32) -> &'static str {
    match (r, f) {
        (4.., 4..) => "champions",
        (_, 4..) => "loyal",
        (4.., 1) => "new",
        (4.., _) => "promising",
        (..=2, 3..) => "at_risk",
        (1, _) => "lost",
        _ => "needs_attention",
    }
}

impl Plugin for Rfm {
    fn info() -> Info {
        Info::new("rfm", env!("CARGO_PKG_VERSION"), "Customer recency, RFM score and segment")
            .input(Port::any("in", "one row per customer: last_order_date (Date32), total_orders, total_spent"))
            .output(Port::any("out", "the input columns, then recency_days, rfm_score, segment"))
            .config_schema(r#"{"type":"object","additionalProperties":false,"properties":{"as_of":{"type":"string","format":"date"},"bins":{"type":"integer","minimum":2,"maximum":9,"default":5}}}"#)
    }

    fn new(config: &str) -> Result<Self, Error> {
        let config: Config = parse_config(config)?;
        if !(2..=9).contains(&config.bins) {
            return Err(Error::bad_config(format!("bins is {}; give 2 to 9", config.bins)));
        }
        let as_of = match &config.as_of {
            None => None,
            Some(text) => Some(
                medallion_sdk::date::parse_iso(text)
                    .ok_or_else(|| Error::bad_config(format!("as_of `{text}` is not a date like 2026-11-24")))?,
            ),
        };
        Ok(Rfm { as_of, bins: config.bins, rows: Buffered::default() })
    }

    fn push(&mut self, _port: &str, batch: RecordBatch, _out: &mut Emitter) -> Result<(), Error> {
        self.rows.push(batch);
        Ok(())
    }

    fn finish(&mut self, out: &mut Emitter) -> Result<(), Error> {
        let last = self.rows.days("last_order_date")?;
        let orders = self.rows.f64s("total_orders")?;
        let spent = self.rows.f64s("total_spent")?;
        let as_of = self.as_of.or_else(|| last.iter().flatten().max().copied()).unwrap_or(0);
        let recency: Vec<Option<i64>> = last.iter().map(|d| d.map(|d| i64::from(as_of - d))).collect();
        // Higher is better for every score: negate recency (unknown = worst).
        let r = scores(
            &recency.iter().map(|d| d.map_or(f64::NEG_INFINITY, |d| -(d as f64))).collect::<Vec<_>>(),
            self.bins,
        );
        let f = scores(&orders.iter().map(|v| v.unwrap_or(0.0)).collect::<Vec<_>>(), self.bins);
        let m = scores(&spent.iter().map(|v| v.unwrap_or(0.0)).collect::<Vec<_>>(), self.bins);
        let score: Vec<String> = (0..r.len()).map(|i| format!("{}{}{}", r[i], f[i], m[i])).collect();
        let segments: Vec<&str> = (0..r.len()).map(|i| segment(r[i], f[i])).collect();
        let parts = per_batch(&self.rows, &recency)
            .into_iter()
            .zip(per_batch(&self.rows, &score))
            .zip(per_batch(&self.rows, &segments));
        for (batch, ((recency, score), segments)) in self.rows.batches().iter().zip(parts) {
            out.emit(
                "out",
                append(
                    batch,
                    vec![
                        (
                            Field::new("recency_days", DataType::Int64, true),
                            Arc::new(Int64Array::from(recency.to_vec())) as ArrayRef,
                        ),
                        (Field::new("rfm_score", DataType::Utf8, false), Arc::new(StringArray::from(score.to_vec()))),
                        (Field::new("segment", DataType::Utf8, false), Arc::new(StringArray::from(segments.to_vec()))),
                    ],
                )?,
            );
        }
        Ok(())
    }
}

export_plugin!(Rfm);

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::cast::AsArray;
    use arrow_array::types::Int64Type;
    use arrow_array::{Date32Array, Float64Array};

    fn customers(last: &[i32], orders: &[i64], spent: &[f64]) -> RecordBatch {
        RecordBatch::try_from_iter([
            ("last_order_date", Arc::new(Date32Array::from(last.to_vec())) as ArrayRef),
            ("total_orders", Arc::new(Int64Array::from(orders.to_vec()))),
            ("total_spent", Arc::new(Float64Array::from(spent.to_vec()))),
        ])
        .unwrap()
    }

    fn run(config: &str, batches: Vec<RecordBatch>) -> Vec<(i64, String, String)> {
        let out = medallion_sdk::run_natively::<Rfm>(config, batches).unwrap();
        let mut rows = Vec::new();
        for batch in &out {
            let recency = batch.column_by_name("recency_days").unwrap().as_primitive::<Int64Type>();
            let score = batch.column_by_name("rfm_score").unwrap().as_string::<i32>();
            let segment = batch.column_by_name("segment").unwrap().as_string::<i32>();
            for i in 0..batch.num_rows() {
                rows.push((recency.value(i), score.value(i).to_owned(), segment.value(i).to_owned()));
            }
        }
        rows
    }

    #[test]
    fn scores_and_segments_worked_by_hand() {
        // Five customers, one per quintile on every axis.
        let last = [100, 90, 80, 70, 60];
        let orders = [10, 8, 6, 4, 1];
        let spent = [500.0, 400.0, 300.0, 200.0, 100.0];
        let rows = run("{}", vec![customers(&last, &orders, &spent)]);
        // As of day 100 (the latest order): recency 0, 10, 20, 30, 40.
        assert_eq!(rows.iter().map(|r| r.0).collect::<Vec<_>>(), [0, 10, 20, 30, 40]);
        assert_eq!(rows.iter().map(|r| r.1.as_str()).collect::<Vec<_>>(), ["555", "444", "333", "222", "111"]);
        assert_eq!(
            rows.iter().map(|r| r.2.as_str()).collect::<Vec<_>>(),
            ["champions", "champions", "needs_attention", "needs_attention", "lost"]
        );
        // An explicit as_of: 1970-05-01 is day 120.
        assert_eq!(run(r#"{"as_of":"1970-05-01"}"#, vec![customers(&last, &orders, &spent)])[0].0, 20);
    }

    #[test]
    fn ties_share_a_score_and_the_split_does_not_matter() {
        let last = [10, 10, 10, 5, 5, 1, 1, 1];
        let orders = [1, 1, 2, 2, 3, 3, 3, 9];
        let spent = [5.0, 5.0, 5.0, 1.0, 9.0, 9.0, 2.0, 3.0];
        let whole = run("{}", vec![customers(&last, &orders, &spent)]);
        assert_eq!(whole[0].1, whole[1].1);
        let split = (0..8).map(|i| customers(&last[i..i + 1], &orders[i..i + 1], &spent[i..i + 1])).collect();
        assert_eq!(whole, run("{}", split));
    }

    #[test]
    fn an_as_of_that_is_not_a_real_day_is_refused() {
        for bad in ["2023-02-31", "2026-13-45", "2026-1-1"] {
            assert!(Rfm::new(&format!(r#"{{"as_of":"{bad}"}}"#)).is_err(), "{bad}");
        }
        assert!(Rfm::new(r#"{"as_of":"2024-02-29"}"#).is_ok());
    }
}
