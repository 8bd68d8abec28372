//! `stock-status` 0.2.0, the example of a swap: the same name and columns as
//! 0.1.0, another rule. Stock is topped up to `target_cover_days` of sales
//! whenever the cover falls under `reorder_point_days`.
//!
//! - `avg_daily_sales = total_quantity_sold / days` (the `days_column`);
//! - `days_of_cover = stock_quantity / avg_daily_sales` (null without sales);
//! - `stock_status`: `out_of_stock` (stock ≤ 0), `no_sales`, `reorder`
//!   (cover < `reorder_point_days`), `excess` (cover > 3 × target), else
//!   `healthy`;
//! - `reorder_qty`: when out of stock or to reorder, `ceil(avg_daily_sales ×
//!   target_cover_days − stock)`, else 0.

use std::sync::Arc;

use arrow_array::{ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field};
use medallion_sdk::table::{append, f64s};
use medallion_sdk::{Emitter, Error, Info, Plugin, Port, export_plugin, parse_config};
use serde::Deserialize;

/// The config, under the step in `pipeline.yaml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct Config {
    /// Cover below which stock is reordered.
    pub reorder_point_days: f64,
    /// Cover a reorder tops the stock up to.
    pub target_cover_days: f64,
    /// The input column holding the days the sales cover.
    pub days_column: String,
}

impl Default for Config {
    fn default() -> Self {
        Config { reorder_point_days: 10.0, target_cover_days: 30.0, days_column: "days_observed".into() }
    }
}

/// The plugin.
pub struct StockStatus {
    config: Config,
}

impl Plugin for StockStatus {
    fn info() -> Info {
        Info::new("stock-status", env!("CARGO_PKG_VERSION"), "Stock status with a reorder point and a target cover")
            .input(Port::any("in", "stock_quantity, total_quantity_sold and the days column, per product"))
            .output(Port::any("out", "the input columns, then avg_daily_sales, days_of_cover, stock_status, reorder_qty"))
            .config_schema(r#"{"type":"object","properties":{"reorder_point_days":{"type":"number","default":10},"target_cover_days":{"type":"number","default":30},"days_column":{"type":"string","default":"days_observed"}}}"#)
            .stateless()
    }

    fn new(config: &str) -> Result<Self, Error> {
        // Unknown keys are ignored, so that 0.1.0's config runs this version too.
        Ok(StockStatus { config: parse_config(config)? })
    }

    fn push(&mut self, _port: &str, batch: RecordBatch, out: &mut Emitter) -> Result<(), Error> {
        let c = &self.config;
        let stock = f64s(&batch, "stock_quantity")?;
        let sold = f64s(&batch, "total_quantity_sold")?;
        let days = f64s(&batch, &c.days_column)?;
        let (mut avg, mut cover, mut status, mut reorder) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
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
                Some(d) if d < c.reorder_point_days => "reorder",
                Some(d) if d > 3.0 * c.target_cover_days => "excess",
                Some(_) => "healthy",
            };
            let quantity = match label {
                "out_of_stock" | "reorder" => (daily * c.target_cover_days - stock).ceil().max(0.0) as i64,
                _ => 0,
            };
            avg.push(daily);
            cover.push(days_of_cover);
            status.push(label);
            reorder.push(quantity);
        }
        let columns = vec![
            (Field::new("avg_daily_sales", DataType::Float64, false), Arc::new(Float64Array::from(avg)) as ArrayRef),
            (Field::new("days_of_cover", DataType::Float64, true), Arc::new(Float64Array::from(cover))),
            (Field::new("stock_status", DataType::Utf8, false), Arc::new(StringArray::from(status))),
            (Field::new("reorder_qty", DataType::Int64, false), Arc::new(Int64Array::from(reorder))),
        ];
        out.emit("out", append(&batch, columns)?);
        Ok(())
    }
}

export_plugin!(StockStatus);

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::cast::AsArray;

    #[test]
    fn reorders_up_to_the_target_cover() {
        let batch = RecordBatch::try_from_iter([
            ("stock_quantity", Arc::new(Int64Array::from(vec![0, 5, 20, 500])) as ArrayRef),
            ("total_quantity_sold", Arc::new(Int64Array::from(vec![100, 100, 100, 100]))),
            ("days_observed", Arc::new(Int64Array::from(vec![100; 4]))),
        ])
        .unwrap();
        let mut plugin = StockStatus::new("{}").unwrap();
        let mut out = Emitter::default();
        plugin.push("in", batch, &mut out).unwrap();
        let result = &out.batches("out")[0];
        let status: Vec<&str> =
            result.column_by_name("stock_status").unwrap().as_string::<i32>().iter().flatten().collect();
        assert_eq!(status, ["out_of_stock", "reorder", "healthy", "excess"]);
        let reorder = result.column_by_name("reorder_qty").unwrap().as_primitive::<arrow_array::types::Int64Type>();
        assert_eq!(reorder.values().to_vec(), [30, 25, 0, 0]);
    }
}
