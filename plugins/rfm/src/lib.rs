//! Customer recency, RFM score and segment.
//!
//! - `recency_days = as_of − last_order_date`, where `as_of` is the config's
//!   date or, by default, the latest `last_order_date` in the input;
//! - R, F and M scores from 1 to `bins` (5): a customer's score is 1 + ⌊bins
//!   × (customers strictly worse) / customers⌋, where worse means a longer
//!   recency, fewer `total_orders`, a smaller `total_spent`, and an unknown
//!   value is worse than any known one; ties share a score. `rfm_score` is
//!   the three digits, `"545"`;
//! - `segment`, the first that applies: `champions` (R ≥ 4 and F ≥ 4),
//!   `loyal` (F ≥ 4), `new` (R ≥ 4 and F = 1), `promising` (R ≥ 4),
//!   `at_risk` (R ≤ 2 and F ≥ 3), `lost` (R = 1), else `needs_attention`.
//!
//! The customers worse than each one, their number and the latest order are
//! over the whole input: the host computes them (the plugin asks for them in
//! `needs`) and the plugin scores each batch as it comes, keeping nothing,
//! so twenty million customers take no more of its memory than one batch.

use std::sync::Arc;

use arrow_array::{ArrayRef, Int64Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field};
use medallion_sdk::table::{append, days, i64s, without};
use medallion_sdk::{Aggregate, Computed, Emitter, Error, Info, Needs, Plugin, Port, export_plugin, parse_config};
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

/// The columns the host computes for the plugin: customers, the latest
/// order, and each customer's rank (1 + customers strictly worse) on R, F, M.
const CUSTOMERS: &str = "_rfm_customers";
const LATEST: &str = "_rfm_latest_order";
const RANK_R: &str = "_rfm_rank_recency";
const RANK_F: &str = "_rfm_rank_orders";
const RANK_M: &str = "_rfm_rank_spent";

/// The plugin.
pub struct Rfm {
    as_of: Option<i32>,
    bins: u32,
}

/// The score of a customer ranked `rank` (1 + customers strictly worse) of
/// `customers`: 1 + ⌊bins × worse / customers⌋.
fn score(rank: i64, customers: i64, bins: u32) -> u32 {
    let worse = (rank - 1) as f64;
    let customers = customers.max(1) as f64;
    1 + ((f64::from(bins) * worse / customers).floor() as u32).min(bins - 1)
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

fn known(values: Vec<Option<i64>>, name: &str) -> Result<Vec<i64>, Error> {
    values.into_iter().map(|v| v.ok_or_else(|| Error::internal(format!("the host gave a null `{name}`")))).collect()
}

impl Plugin for Rfm {
    fn info() -> Info {
        Info::new("rfm", env!("CARGO_PKG_VERSION"), "Customer recency, RFM score and segment")
            .input(Port::any("in", "one row per customer: last_order_date (Date32), total_orders, total_spent"))
            .output(Port::any("out", "the input columns, then recency_days, rfm_score, segment"))
            .config_schema(r#"{"type":"object","additionalProperties":false,"properties":{"as_of":{"type":"string","format":"date"},"bins":{"type":"integer","minimum":2,"maximum":9,"default":5}}}"#)
            .stateless()
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
        Ok(Rfm { as_of, bins: config.bins })
    }

    fn needs(&self) -> Vec<Needs> {
        let mut needs = Needs::on("in")
            .computed(Computed::new(CUSTOMERS, Aggregate::Count))
            .computed(Computed::new(RANK_R, Aggregate::RankAscending).of("last_order_date"))
            .computed(Computed::new(RANK_F, Aggregate::RankAscending).of("total_orders"))
            .computed(Computed::new(RANK_M, Aggregate::RankAscending).of("total_spent"));
        if self.as_of.is_none() {
            needs = needs.computed(Computed::new(LATEST, Aggregate::Max).of("last_order_date"));
        }
        vec![needs]
    }

    fn push(&mut self, _port: &str, batch: RecordBatch, out: &mut Emitter) -> Result<(), Error> {
        let last = days(&batch, "last_order_date")?;
        let customers = known(i64s(&batch, CUSTOMERS)?, CUSTOMERS)?;
        let [r, f, m] = [RANK_R, RANK_F, RANK_M].map(|name| i64s(&batch, name).and_then(|v| known(v, name)));
        let (r, f, m) = (r?, f?, m?);
        // The latest order is the same on every row (null: no order at all).
        let as_of = match self.as_of {
            Some(day) => day,
            None => days(&batch, LATEST)?.first().copied().flatten().unwrap_or(0),
        };
        let recency: Vec<Option<i64>> = last.iter().map(|d| d.map(|d| i64::from(as_of - d))).collect();
        let mut scores = Vec::with_capacity(batch.num_rows());
        let mut segments = Vec::with_capacity(batch.num_rows());
        for i in 0..batch.num_rows() {
            let [r, f, m] = [r[i], f[i], m[i]].map(|rank| score(rank, customers[i], self.bins));
            scores.push(format!("{r}{f}{m}"));
            segments.push(segment(r, f));
        }
        let input = without(&batch, &[CUSTOMERS, LATEST, RANK_R, RANK_F, RANK_M])?;
        out.emit(
            "out",
            append(
                &input,
                vec![
                    (
                        Field::new("recency_days", DataType::Int64, true),
                        Arc::new(Int64Array::from(recency)) as ArrayRef,
                    ),
                    (Field::new("rfm_score", DataType::Utf8, false), Arc::new(StringArray::from(scores))),
                    (Field::new("segment", DataType::Utf8, false), Arc::new(StringArray::from(segments))),
                ],
            )?,
        );
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
    fn an_unknown_value_is_worse_than_any_known_one() {
        let batch = RecordBatch::try_from_iter([
            ("last_order_date", Arc::new(Date32Array::from(vec![Some(10), None, Some(5)])) as ArrayRef),
            ("total_orders", Arc::new(Int64Array::from(vec![1, 2, 3]))),
            ("total_spent", Arc::new(Float64Array::from(vec![Some(1.0), Some(2.0), None]))),
        ])
        .unwrap();
        let out = medallion_sdk::run_natively::<Rfm>(r#"{"bins":3}"#, vec![batch]).unwrap();
        let recency = out[0].column_by_name("recency_days").unwrap().as_primitive::<Int64Type>();
        assert_eq!(recency.iter().collect::<Vec<_>>(), [Some(0), None, Some(5)]);
        let scores = out[0].column_by_name("rfm_score").unwrap().as_string::<i32>();
        assert_eq!(scores.iter().flatten().collect::<Vec<_>>(), ["312", "123", "231"]);
        // Only the input's columns and the plugin's own: the host's are dropped.
        assert_eq!(out[0].num_columns(), 6);
    }

    #[test]
    fn an_as_of_that_is_not_a_real_day_is_refused() {
        for bad in ["2023-02-31", "2026-13-45", "2026-1-1"] {
            assert!(Rfm::new(&format!(r#"{{"as_of":"{bad}"}}"#)).is_err(), "{bad}");
        }
        assert!(Rfm::new(r#"{"as_of":"2024-02-29"}"#).is_ok());
    }
}
