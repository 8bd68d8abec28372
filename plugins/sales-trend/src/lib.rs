//! Daily sales trend.
//!
//! - `revenue_7d_avg`: the mean of `total_revenue` over the `window_days`
//!   calendar days ending on the row's date; a day without sales counts as 0;
//! - `revenue_growth_pct`: `(revenue − revenue lag days before) / revenue lag
//!   days before × 100`, with `lag_days` 7 (the same weekday a week before);
//!   null when that day had no revenue.
//!
//! The plugin asks the host for its rows in date order, each with its day's
//! whole revenue (`needs`), and keeps only the last `max(window_days,
//! lag_days)` days' totals; its rows come out in that order (the undated
//! last), whatever the step's SQL ordered. The result does not depend on how
//! the days arrive in batches.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow_array::{ArrayRef, Float64Array, RecordBatch};
use arrow_schema::{DataType, Field};
use medallion_sdk::table::{append, days, f64s, without};
use medallion_sdk::{Aggregate, Computed, Emitter, Error, Info, Needs, Plugin, Port, export_plugin, parse_config};
use serde::Deserialize;

/// The config, under the step in `pipeline.yaml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Days in the moving average.
    pub window_days: i32,
    /// Days back for the growth comparison.
    pub lag_days: i32,
}

impl Default for Config {
    fn default() -> Self {
        Config { window_days: 7, lag_days: 7 }
    }
}

/// Each row's day's revenue, computed by the host.
const DAY_REVENUE: &str = "_sales_day_revenue";

/// The plugin.
pub struct SalesTrend {
    config: Config,
    /// Revenue per day, of the days seen that a later day can still need.
    recent: BTreeMap<i32, f64>,
}

impl Plugin for SalesTrend {
    fn info() -> Info {
        Info::new("sales-trend", env!("CARGO_PKG_VERSION"), "Daily sales: trailing average revenue and growth against the same weekday a week before")
            .input(Port::any("in", "one row per day: date (Date32), total_revenue"))
            .output(Port::any("out", "the input columns, then revenue_7d_avg, revenue_growth_pct"))
            .config_schema(r#"{"type":"object","additionalProperties":false,"properties":{"window_days":{"type":"integer","minimum":1,"default":7},"lag_days":{"type":"integer","minimum":1,"default":7}}}"#)
    }

    fn new(config: &str) -> Result<Self, Error> {
        let config: Config = parse_config(config)?;
        if config.window_days < 1 || config.lag_days < 1 {
            return Err(Error::bad_config("window_days and lag_days must be at least 1"));
        }
        Ok(SalesTrend { config, recent: BTreeMap::new() })
    }

    fn needs(&self) -> Vec<Needs> {
        let day_revenue = Computed::new(DAY_REVENUE, Aggregate::Sum).of("total_revenue").per("date");
        vec![Needs::on("in").computed(day_revenue).sorted_by("date")]
    }

    fn push(&mut self, _port: &str, batch: RecordBatch, out: &mut Emitter) -> Result<(), Error> {
        let dates = days(&batch, "date")?;
        let revenue = f64s(&batch, "total_revenue")?;
        let day_revenue = f64s(&batch, DAY_REVENUE)?;
        let (window, lag) = (self.config.window_days, self.config.lag_days);
        let mut average = Vec::with_capacity(batch.num_rows());
        let mut growth = Vec::with_capacity(batch.num_rows());
        for i in 0..batch.num_rows() {
            // Dates ascending, the undated last: every earlier day is known.
            let Some(day) = dates[i] else {
                average.push(None);
                growth.push(None);
                continue;
            };
            self.recent.insert(day, day_revenue[i].unwrap_or(0.0));
            let total: f64 = (day - window + 1..=day).map(|d| self.recent.get(&d).copied().unwrap_or(0.0)).sum();
            average.push(Some(total / f64::from(window)));
            let before = self.recent.get(&(day - lag)).copied().filter(|b| *b != 0.0);
            growth.push(before.map(|before| (revenue[i].unwrap_or(0.0) - before) / before * 100.0));
            // Days no later row can reach.
            let oldest = day - (window - 1).max(lag);
            while self.recent.first_key_value().is_some_and(|(d, _)| *d < oldest) {
                self.recent.pop_first();
            }
        }
        out.emit(
            "out",
            append(
                &without(&batch, &[DAY_REVENUE])?,
                vec![
                    (
                        Field::new("revenue_7d_avg", DataType::Float64, true),
                        Arc::new(Float64Array::from(average)) as ArrayRef,
                    ),
                    (Field::new("revenue_growth_pct", DataType::Float64, true), Arc::new(Float64Array::from(growth))),
                ],
            )?,
        );
        Ok(())
    }
}

export_plugin!(SalesTrend);

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::Date32Array;
    use arrow_array::cast::AsArray;
    use arrow_array::types::Float64Type;

    fn days(dates: &[i32], revenue: &[f64]) -> RecordBatch {
        RecordBatch::try_from_iter([
            ("date", Arc::new(Date32Array::from(dates.to_vec())) as ArrayRef),
            ("total_revenue", Arc::new(Float64Array::from(revenue.to_vec()))),
        ])
        .unwrap()
    }

    fn run(batches: Vec<RecordBatch>) -> Vec<(Option<f64>, Option<f64>)> {
        let out = medallion_sdk::run_natively::<SalesTrend>("{}", batches).unwrap();
        let mut rows = Vec::new();
        for batch in &out {
            let avg = batch.column_by_name("revenue_7d_avg").unwrap().as_primitive::<Float64Type>();
            let growth = batch.column_by_name("revenue_growth_pct").unwrap().as_primitive::<Float64Type>();
            for i in 0..batch.num_rows() {
                rows.push((avg.is_valid(i).then(|| avg.value(i)), growth.is_valid(i).then(|| growth.value(i))));
            }
        }
        rows
    }

    use arrow_array::Array;

    #[test]
    fn average_and_growth_worked_by_hand() {
        // Days 0..=7 with revenue 70 each except day 3 missing and day 7 = 140.
        let dates = [0, 1, 2, 4, 5, 6, 7];
        let revenue = [70.0, 70.0, 70.0, 70.0, 70.0, 70.0, 140.0];
        let rows = run(vec![days(&dates, &revenue)]);
        // Day 0: only itself in the window: 70 / 7 = 10.
        assert_eq!(rows[0], (Some(10.0), None));
        // Day 6: days 0..=6 minus day 3: 6 × 70 / 7 = 60.
        assert_eq!(rows[5].0, Some(60.0));
        // Day 7: days 1..=7 hold days 1, 2, 4, 5, 6 (5 × 70) and 140: 490 / 7 = 70.
        assert_eq!(rows[6].0, Some(70.0));
        // Day 7 against day 0: (140 − 70) / 70 = +100 %.
        assert_eq!(rows[6].1, Some(100.0));
    }

    #[test]
    fn days_out_of_order_and_undated_rows_come_sorted_with_the_same_figures() {
        let sorted = run(vec![days(&[0, 1, 2, 4, 5, 6, 7], &[70.0, 70.0, 70.0, 70.0, 70.0, 70.0, 140.0])]);
        let batch = RecordBatch::try_from_iter([
            (
                "date",
                Arc::new(Date32Array::from(vec![Some(7), None, Some(2), Some(0), Some(6), Some(1), Some(5), Some(4)]))
                    as ArrayRef,
            ),
            ("total_revenue", Arc::new(Float64Array::from(vec![140.0, 9.0, 70.0, 70.0, 70.0, 70.0, 70.0, 70.0]))),
        ])
        .unwrap();
        let shuffled = run(vec![batch]);
        assert_eq!(shuffled[..7], sorted[..]);
        assert_eq!(shuffled[7], (None, None));
    }

    #[test]
    fn the_split_into_batches_does_not_matter() {
        let dates: Vec<i32> = (0..40).collect();
        let revenue: Vec<f64> = (0..40).map(|d| f64::from(d * 13 % 17) + 1.0).collect();
        let whole = run(vec![days(&dates, &revenue)]);
        let split = run((0..40).map(|i| days(&dates[i..i + 1], &revenue[i..i + 1])).collect());
        assert_eq!(whole, split);
    }
}
