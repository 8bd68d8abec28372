//! `revenue_rank_in_category`: 1 for the product with the highest
//! `total_revenue` in its `category`, ties sharing a rank (1, 2, 2, 4).
//! Products without a category are ranked together. Needs every product, so
//! it keeps them until `finish`; the result does not depend on batching.

use std::collections::HashMap;
use std::sync::Arc;

use arrow_array::{ArrayRef, Int64Array, RecordBatch};
use arrow_schema::{DataType, Field};
use medallion_sdk::table::{Buffered, append, per_batch};
use medallion_sdk::{Emitter, Error, Info, Plugin, Port, export_plugin, parse_config};
use serde::Deserialize;

/// The config (`value_column` to rank by, default `total_revenue`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// The column ranked, highest first.
    pub value_column: String,
    /// The column that groups the ranking.
    pub group_column: String,
}

impl Default for Config {
    fn default() -> Self {
        Config { value_column: "total_revenue".into(), group_column: "category".into() }
    }
}

/// The plugin.
pub struct CategoryRank {
    config: Config,
    rows: Buffered,
}

impl Plugin for CategoryRank {
    fn info() -> Info {
        Info::new("category-rank", env!("CARGO_PKG_VERSION"), "Revenue rank of each product within its category")
            .input(Port::any("in", "one row per product: category, total_revenue"))
            .output(Port::any("out", "the input columns, then revenue_rank_in_category"))
            .config_schema(r#"{"type":"object","additionalProperties":false,"properties":{"value_column":{"type":"string","default":"total_revenue"},"group_column":{"type":"string","default":"category"}}}"#)
    }

    fn new(config: &str) -> Result<Self, Error> {
        Ok(CategoryRank { config: parse_config(config)?, rows: Buffered::default() })
    }

    fn push(&mut self, _port: &str, batch: RecordBatch, _out: &mut Emitter) -> Result<(), Error> {
        self.rows.push(batch);
        Ok(())
    }

    fn finish(&mut self, out: &mut Emitter) -> Result<(), Error> {
        let groups = self.rows.strings(&self.config.group_column)?;
        let values = self.rows.f64s(&self.config.value_column)?;
        let mut by_group: HashMap<Option<&str>, Vec<f64>> = HashMap::new();
        for (group, value) in groups.iter().zip(&values) {
            by_group.entry(group.as_deref()).or_default().push(value.unwrap_or(0.0));
        }
        for sorted in by_group.values_mut() {
            sorted.sort_by(|a, b| b.total_cmp(a));
        }
        // Rank = 1 + the number of values in the group strictly higher.
        let ranks: Vec<i64> = groups
            .iter()
            .zip(&values)
            .map(|(group, value)| {
                let sorted = &by_group[&group.as_deref()];
                let value = value.unwrap_or(0.0);
                1 + sorted.partition_point(|v| v.total_cmp(&value).is_gt()) as i64
            })
            .collect();
        for (batch, ranks) in self.rows.batches().iter().zip(per_batch(&self.rows, &ranks)) {
            let column = Arc::new(Int64Array::from(ranks.to_vec())) as ArrayRef;
            out.emit(
                "out",
                append(batch, vec![(Field::new("revenue_rank_in_category", DataType::Int64, false), column)])?,
            );
        }
        Ok(())
    }
}

export_plugin!(CategoryRank);

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::cast::AsArray;
    use arrow_array::types::Int64Type;
    use arrow_array::{Float64Array, StringArray};

    fn products(categories: &[&str], revenue: &[f64]) -> RecordBatch {
        RecordBatch::try_from_iter([
            ("category", Arc::new(StringArray::from(categories.to_vec())) as ArrayRef),
            ("total_revenue", Arc::new(Float64Array::from(revenue.to_vec()))),
        ])
        .unwrap()
    }

    fn ranks(batches: Vec<RecordBatch>) -> Vec<i64> {
        let out = medallion_sdk::run_natively::<CategoryRank>("{}", batches).unwrap();
        out.iter()
            .flat_map(|b| {
                b.column_by_name("revenue_rank_in_category").unwrap().as_primitive::<Int64Type>().values().to_vec()
            })
            .collect()
    }

    #[test]
    fn ranks_within_each_category_with_ties() {
        let cats = ["a", "b", "a", "a", "b", "a"];
        let revenue = [10.0, 5.0, 30.0, 10.0, 7.0, 1.0];
        assert_eq!(ranks(vec![products(&cats, &revenue)]), [2, 2, 1, 2, 1, 4]);
        let split: Vec<RecordBatch> = (0..6).map(|i| products(&cats[i..i + 1], &revenue[i..i + 1])).collect();
        assert_eq!(ranks(split), [2, 2, 1, 2, 1, 4]);
    }
}
