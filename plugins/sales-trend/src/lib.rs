//! Daily sales trend, over all the days at once (state until `finish`).
//!
//! - `revenue_7d_avg`: the mean of `total_revenue` over the `window_days`
//!   calendar days ending on the row's date; a day without sales counts as 0;
//! - `revenue_growth_pct`: `(revenue − revenue lag days before) / revenue lag
//!   days before × 100`, with `lag_days` 7 (the same weekday a week before);
//!   null when that day had no revenue.
//!
//! The result does not depend on how the days arrive in batches.

use std::collections::HashMap;
use std::sync::Arc;

use arrow_array::{ArrayRef, Float64Array, RecordBatch};
use arrow_schema::{DataType, Field};
use medallion_sdk::table::{Buffered, append, per_batch};
use medallion_sdk::{Emitter, Error, Info, Plugin, Port, export_plugin, parse_config};
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

/// The plugin.
pub struct SalesTrend {
    config: Config,
    rows: Buffered,
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
        Ok(SalesTrend { config, rows: Buffered::default() })
    }

    fn push(&mut self, _port: &str, batch: RecordBatch, _out: &mut Emitter) -> Result<(), Error> {
        self.rows.push(batch);
        Ok(())
    }

    fn finish(&mut self, out: &mut Emitter) -> Result<(), Error> {
        let dates = self.rows.days("date")?;
        let revenue = self.rows.f64s("total_revenue")?;
        let mut by_day: HashMap<i32, f64> = HashMap::new();
        for (date, revenue) in dates.iter().zip(&revenue) {
            if let Some(date) = date {
                *by_day.entry(*date).or_default() += revenue.unwrap_or(0.0);
            }
        }
        let window = self.config.window_days;
        let average: Vec<Option<f64>> = dates
            .iter()
            .map(|d| {
                d.map(|d| {
                    (d - window + 1..=d).map(|day| by_day.get(&day).copied().unwrap_or(0.0)).sum::<f64>()
                        / f64::from(window)
                })
            })
            .collect();
        let growth: Vec<Option<f64>> = dates
            .iter()
            .zip(&revenue)
            .map(|(d, r)| {
                let before = by_day.get(&(d.as_ref()? - self.config.lag_days)).copied().filter(|b| *b != 0.0)?;
                Some((r.unwrap_or(0.0) - before) / before * 100.0)
            })
            .collect();
        for ((batch, average), growth) in
            self.rows.batches().iter().zip(per_batch(&self.rows, &average)).zip(per_batch(&self.rows, &growth))
        {
            out.emit(
                "out",
                append(
                    batch,
                    vec![
                        (
                            Field::new("revenue_7d_avg", DataType::Float64, true),
                            Arc::new(Float64Array::from(average.to_vec())) as ArrayRef,
                        ),
                        (
                            Field::new("revenue_growth_pct", DataType::Float64, true),
                            Arc::new(Float64Array::from(growth.to_vec())),
                        ),
                    ],
                )?,
            );
        }
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
    fn the_split_into_batches_does_not_matter() {
        let dates: Vec<i32> = (0..40).collect();
        let revenue: Vec<f64> = (0..40).map(|d| f64::from(d * 13 % 17) + 1.0).collect();
        let whole = run(vec![days(&dates, &revenue)]);
        let split = run((0..40).map(|i| days(&dates[i..i + 1], &revenue[i..i + 1])).collect());
        assert_eq!(whole, split);
    }
}
