//! Stock KPIs per product, row by row (stateless).
//!
//! - `avg_daily_sales = total_quantity_sold / days` where `days` is the
//!   `days_column` (the days the sales cover);
//! - `days_of_cover = stock_quantity / avg_daily_sales` (null without sales);
//! - `stock_status`, the first that applies: `out_of_stock` (stock ≤ 0),
//!   `no_sales` (nothing sold), `critical` (cover < `lead_time_days`), `low`
//!   (cover < lead time + `safety_days`), `overstock` (cover >
//!   `overstock_days`), else `ok`;
//! - `reorder_qty = max(0, ceil(avg_daily_sales × (lead_time_days +
//!   safety_days) − stock_quantity))`.

use std::sync::Arc;

use arrow_array::{ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field};
use medallion_sdk::table::{append, f64s};
use medallion_sdk::{Emitter, Error, Info, Plugin, Port, export_plugin, parse_config};
use serde::Deserialize;

/// The config, under the step in `pipeline.yaml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Days between ordering and receiving stock.
    pub lead_time_days: f64,
    /// Extra days of cover kept as a buffer.
    pub safety_days: f64,
    /// Cover above which stock is excessive.
    pub overstock_days: f64,
    /// The input column holding the days the sales cover.
    pub days_column: String,
}

impl Default for Config {
    fn default() -> Self {
        Config { lead_time_days: 7.0, safety_days: 7.0, overstock_days: 180.0, days_column: "days_observed".into() }
    }
}

/// The plugin.
pub struct StockStatus {
    config: Config,
}

impl StockStatus {
    /// The KPI columns for one batch.
    pub fn compute(&self, batch: &RecordBatch) -> Result<RecordBatch, Error> {
        let stock = f64s(batch, "stock_quantity")?;
        let sold = f64s(batch, "total_quantity_sold")?;
        let days = f64s(batch, &self.config.days_column)?;
        let c = &self.config;
        let mut avg = Vec::with_capacity(batch.num_rows());
        let mut cover = Vec::with_capacity(batch.num_rows());
        let mut status = Vec::with_capacity(batch.num_rows());
        let mut reorder = Vec::with_capacity(batch.num_rows());
        for i in 0..batch.num_rows() {
            let stock = stock[i].unwrap_or(0.0);
            let daily = match (sold[i], days[i]) {
                (Some(sold), Some(days)) if days > 0.0 => sold / days,
                _ => 0.0,
            };
            let days_of_cover = (daily > 0.0).then(|| stock / daily);
            let label = match days_of_cover {
                _ if stock <= 0.0 => "out_of_stock",
                None => "no_sales",
                Some(d) if d < c.lead_time_days => "critical",
                Some(d) if d < c.lead_time_days + c.safety_days => "low",
                Some(d) if d > c.overstock_days => "overstock",
                Some(_) => "ok",
            };
            avg.push(daily);
            cover.push(days_of_cover);
            status.push(label);
            reorder.push(((daily * (c.lead_time_days + c.safety_days) - stock).ceil()).max(0.0) as i64);
        }
        append(
            batch,
            vec![
                (
                    Field::new("avg_daily_sales", DataType::Float64, false),
                    Arc::new(Float64Array::from(avg)) as ArrayRef,
                ),
                (Field::new("days_of_cover", DataType::Float64, true), Arc::new(Float64Array::from(cover))),
                (Field::new("stock_status", DataType::Utf8, false), Arc::new(StringArray::from(status))),
                (Field::new("reorder_qty", DataType::Int64, false), Arc::new(Int64Array::from(reorder))),
            ],
        )
    }
}

impl Plugin for StockStatus {
    fn info() -> Info {
        Info::new(
            "stock-status",
            env!("CARGO_PKG_VERSION"),
            "Average daily sales, days of cover, stock status and reorder quantity per product",
        )
        .input(Port::any("in", "stock_quantity, total_quantity_sold and the days column, per product"))
        .output(Port::any("out", "the input columns, then avg_daily_sales, days_of_cover, stock_status, reorder_qty"))
        .config_schema(CONFIG_SCHEMA)
        .stateless()
    }

    fn new(config: &str) -> Result<Self, Error> {
        let config: Config = parse_config(config)?;
        if config.lead_time_days < 0.0 || config.safety_days < 0.0 || config.overstock_days <= 0.0 {
            return Err(Error::bad_config("lead_time_days and safety_days must be ≥ 0, overstock_days > 0"));
        }
        Ok(StockStatus { config })
    }

    fn push(&mut self, _port: &str, batch: RecordBatch, out: &mut Emitter) -> Result<(), Error> {
        out.emit("out", self.compute(&batch)?);
        Ok(())
    }
}

const CONFIG_SCHEMA: &str = r#"{"type":"object","additionalProperties":false,"properties":{
  "lead_time_days":{"type":"number","default":7},"safety_days":{"type":"number","default":7},
  "overstock_days":{"type":"number","default":180},"days_column":{"type":"string","default":"days_observed"}}}"#;

export_plugin!(StockStatus);

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::Array;
    use arrow_array::cast::AsArray;
    use arrow_array::types::{Float64Type, Int64Type};

    #[test]
    fn statuses_cover_and_reorder_worked_by_hand() {
        // 100 days; lead 7 + safety 7 = 14 days.
        let batch = RecordBatch::try_from_iter([
            ("stock_quantity", Arc::new(Int64Array::from(vec![0, 5, 10, 20, 1000, 50])) as ArrayRef),
            ("total_quantity_sold", Arc::new(Int64Array::from(vec![100, 100, 100, 100, 100, 0]))),
            ("days_observed", Arc::new(Int64Array::from(vec![100; 6]))),
        ])
        .unwrap();
        let plugin = StockStatus::new("{}").unwrap();
        let out = plugin.compute(&batch).unwrap();
        let status: Vec<&str> =
            out.column_by_name("stock_status").unwrap().as_string::<i32>().iter().flatten().collect();
        // 1/day: cover 5 < 7 critical; 10 < 14 low; 20 ok; 1000 > 180 overstock; no sales.
        assert_eq!(status, ["out_of_stock", "critical", "low", "ok", "overstock", "no_sales"]);
        let cover = out.column_by_name("days_of_cover").unwrap().as_primitive::<Float64Type>();
        assert_eq!(cover.value(1), 5.0);
        assert!(cover.is_null(5));
        let reorder: Vec<i64> =
            out.column_by_name("reorder_qty").unwrap().as_primitive::<Int64Type>().values().to_vec();
        // 14 days of 1/day minus stock.
        assert_eq!(reorder, [14, 9, 4, 0, 0, 0]);
    }
}
