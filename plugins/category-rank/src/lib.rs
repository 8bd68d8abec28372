//! `revenue_rank_in_category`: 1 for the product with the highest
//! `total_revenue` in its `category`, ties sharing a rank (1, 2, 2, 4).
//! Products without a category are ranked together; a product without a
//! revenue ranks below every product with one.
//!
//! The rank is a rank over the whole input, which the host computes (the
//! plugin asks for it in `needs`): the plugin keeps nothing, and its memory
//! does not grow with the number of products.

use medallion_sdk::{Aggregate, Computed, Emitter, Error, Info, Needs, Plugin, Port, export_plugin, parse_config};
use serde::Deserialize;

/// The column the plugin adds.
const RANK: &str = "revenue_rank_in_category";

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
}

impl Plugin for CategoryRank {
    fn info() -> Info {
        Info::new("category-rank", env!("CARGO_PKG_VERSION"), "Revenue rank of each product within its category")
            .input(Port::any("in", "one row per product: category, total_revenue"))
            .output(Port::any("out", "the input columns, then revenue_rank_in_category"))
            .config_schema(r#"{"type":"object","additionalProperties":false,"properties":{"value_column":{"type":"string","default":"total_revenue"},"group_column":{"type":"string","default":"category"}}}"#)
            .stateless()
    }

    fn new(config: &str) -> Result<Self, Error> {
        Ok(CategoryRank { config: parse_config(config)? })
    }

    fn needs(&self) -> Vec<Needs> {
        let rank = Computed::new(RANK, Aggregate::RankDescending).of(&self.config.value_column);
        vec![Needs::on("in").computed(rank.per(&self.config.group_column))]
    }

    fn push(&mut self, _port: &str, batch: medallion_sdk::RecordBatch, out: &mut Emitter) -> Result<(), Error> {
        // The rank arrives computed, as the last column.
        out.emit("out", batch);
        Ok(())
    }
}

export_plugin!(CategoryRank);

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::cast::AsArray;
    use arrow_array::types::Int64Type;
    use arrow_array::{ArrayRef, Float64Array, RecordBatch, StringArray};
    use std::sync::Arc;

    fn products(categories: &[&str], revenue: &[f64]) -> RecordBatch {
        RecordBatch::try_from_iter([
            ("category", Arc::new(StringArray::from(categories.to_vec())) as ArrayRef),
            ("total_revenue", Arc::new(Float64Array::from(revenue.to_vec()))),
        ])
        .unwrap()
    }

    fn ranks(batches: Vec<RecordBatch>) -> Vec<i64> {
        let out = medallion_sdk::run_natively::<CategoryRank>("{}", batches).unwrap();
        out.iter().flat_map(|b| b.column_by_name(RANK).unwrap().as_primitive::<Int64Type>().values().to_vec()).collect()
    }

    #[test]
    fn ranks_within_each_category_with_ties() {
        let cats = ["a", "b", "a", "a", "b", "a"];
        let revenue = [10.0, 5.0, 30.0, 10.0, 7.0, 1.0];
        assert_eq!(ranks(vec![products(&cats, &revenue)]), [2, 2, 1, 2, 1, 4]);
        let split: Vec<RecordBatch> = (0..6).map(|i| products(&cats[i..i + 1], &revenue[i..i + 1])).collect();
        assert_eq!(ranks(split), [2, 2, 1, 2, 1, 4]);
    }

    #[test]
    fn a_product_without_revenue_ranks_last_in_its_category() {
        let batch = RecordBatch::try_from_iter([
            ("category", Arc::new(StringArray::from(vec![Some("a"), Some("a"), None, Some("a")])) as ArrayRef),
            ("total_revenue", Arc::new(Float64Array::from(vec![Some(0.0), None, Some(3.0), Some(-1.0)]))),
        ])
        .unwrap();
        assert_eq!(ranks(vec![batch]), [1, 3, 1, 2]);
    }
}
