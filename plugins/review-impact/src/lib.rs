//! The effect of reviews per product.
//!
//! - `review_score`, the Bayesian weighted rating `(v·R + m·C) / (v + m)`:
//!   `v` = `nb_reviews`, `R` = `avg_rating`, `m` = `prior_weight` (config),
//!   `C` = the mean rating over every review of every product;
//! - `negative_share = negative / nb_reviews` (0 without reviews), where
//!   `negative` is the `negative_column` (reviews rated 2 or less, counted by
//!   the step's SQL);
//! - `impact_class`, the first that applies: `no_reviews`; `at_risk`
//!   (negative share ≥ `risk_share` with at least `min_reviews` reviews);
//!   `driver` (review score ≥ `driver_score`); else `neutral`.
//!
//! A product without `avg_rating` counts as one without reviews, in `C`
//! and in its own figures. `C` is over every product: the host computes it (the plugin asks for the
//! mean rating weighted by reviews in `needs`), and the plugin works batch
//! by batch, keeping nothing. The result does not depend on how products
//! arrive in batches.

use std::sync::Arc;

use arrow_array::{ArrayRef, Float64Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field};
use medallion_sdk::table::{append, f64s, without};
use medallion_sdk::{Aggregate, Computed, Emitter, Error, Info, Needs, Plugin, Port, export_plugin, parse_config};
use serde::Deserialize;

/// The config, under the step in `pipeline.yaml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// `m`: how many reviews' worth of the mean a product starts with.
    pub prior_weight: f64,
    /// The input column counting negative reviews.
    pub negative_column: String,
    /// Negative share from which a reviewed product is at risk.
    pub risk_share: f64,
    /// Reviews needed before a product can be at risk.
    pub min_reviews: f64,
    /// Review score from which a product drives sales.
    pub driver_score: f64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            prior_weight: 10.0,
            negative_column: "nb_negative".into(),
            risk_share: 0.3,
            min_reviews: 5.0,
            driver_score: 4.0,
        }
    }
}

/// The mean rating over every review, computed by the host.
const MEAN: &str = "_review_mean_rating";

/// The plugin.
pub struct ReviewImpact {
    config: Config,
}

impl Plugin for ReviewImpact {
    fn info() -> Info {
        Info::new("review-impact", env!("CARGO_PKG_VERSION"), "Bayesian review score, negative-review share and impact class per product")
            .input(Port::any("in", "one row per product: avg_rating, nb_reviews and the negative-review count"))
            .output(Port::any("out", "the input columns, then review_score, negative_share, impact_class"))
            .config_schema(r#"{"type":"object","additionalProperties":false,"properties":{"prior_weight":{"type":"number","default":10},"negative_column":{"type":"string","default":"nb_negative"},"risk_share":{"type":"number","default":0.3},"min_reviews":{"type":"number","default":5},"driver_score":{"type":"number","default":4.0}}}"#)
            .stateless()
    }

    fn new(config: &str) -> Result<Self, Error> {
        let config: Config = parse_config(config)?;
        if config.prior_weight < 0.0 {
            return Err(Error::bad_config("prior_weight must be ≥ 0"));
        }
        Ok(ReviewImpact { config })
    }

    fn needs(&self) -> Vec<Needs> {
        vec![Needs::on("in").computed(Computed::new(MEAN, Aggregate::Mean).of("avg_rating").weighted_by("nb_reviews"))]
    }

    fn push(&mut self, _port: &str, batch: RecordBatch, out: &mut Emitter) -> Result<(), Error> {
        let c = &self.config;
        let rating = f64s(&batch, "avg_rating")?;
        let count = f64s(&batch, "nb_reviews")?;
        let negative = f64s(&batch, &c.negative_column)?;
        // The same on every row; null when there is no review at all.
        let mean = f64s(&batch, MEAN)?.first().copied().flatten().unwrap_or(0.0);
        let mut score = Vec::with_capacity(rating.len());
        let mut share = Vec::with_capacity(rating.len());
        let mut class = Vec::with_capacity(rating.len());
        for i in 0..rating.len() {
            // Without a rating, the reviews count for nothing (as in C).
            let v = if rating[i].is_some() { count[i].unwrap_or(0.0) } else { 0.0 };
            let s = if v + c.prior_weight > 0.0 {
                (v * rating[i].unwrap_or(0.0) + c.prior_weight * mean) / (v + c.prior_weight)
            } else {
                mean
            };
            let n = if v > 0.0 { negative[i].unwrap_or(0.0) / v } else { 0.0 };
            class.push(match () {
                _ if v == 0.0 => "no_reviews",
                _ if n >= c.risk_share && v >= c.min_reviews => "at_risk",
                _ if s >= c.driver_score => "driver",
                _ => "neutral",
            });
            score.push(s);
            share.push(n);
        }
        out.emit(
            "out",
            append(
                &without(&batch, &[MEAN])?,
                vec![
                    (
                        Field::new("review_score", DataType::Float64, false),
                        Arc::new(Float64Array::from(score)) as ArrayRef,
                    ),
                    (Field::new("negative_share", DataType::Float64, false), Arc::new(Float64Array::from(share))),
                    (Field::new("impact_class", DataType::Utf8, false), Arc::new(StringArray::from(class))),
                ],
            )?,
        );
        Ok(())
    }
}

export_plugin!(ReviewImpact);

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::Int64Array;
    use arrow_array::cast::AsArray;
    use arrow_array::types::Float64Type;

    fn products(rating: &[f64], count: &[i64], negative: &[i64]) -> RecordBatch {
        RecordBatch::try_from_iter([
            ("avg_rating", Arc::new(Float64Array::from(rating.to_vec())) as ArrayRef),
            ("nb_reviews", Arc::new(Int64Array::from(count.to_vec()))),
            ("nb_negative", Arc::new(Int64Array::from(negative.to_vec()))),
        ])
        .unwrap()
    }

    fn run(batches: Vec<RecordBatch>) -> Vec<(f64, f64, String)> {
        let out = medallion_sdk::run_natively::<ReviewImpact>(r#"{"prior_weight": 2}"#, batches).unwrap();
        let mut rows = Vec::new();
        for batch in &out {
            let score = batch.column_by_name("review_score").unwrap().as_primitive::<Float64Type>();
            let share = batch.column_by_name("negative_share").unwrap().as_primitive::<Float64Type>();
            let class = batch.column_by_name("impact_class").unwrap().as_string::<i32>();
            for i in 0..batch.num_rows() {
                rows.push((score.value(i), share.value(i), class.value(i).to_owned()));
            }
        }
        rows
    }

    #[test]
    fn bayesian_score_share_and_class_worked_by_hand() {
        // Mean over all reviews: (5×8 + 2×10 + 0) / 18 = 60 / 18 = 3.333…
        let rows = run(vec![products(&[5.0, 2.0, 0.0], &[8, 10, 0], &[0, 6, 0])]);
        let mean = 60.0 / 18.0;
        // (8×5 + 2×mean) / 10
        assert!((rows[0].0 - (40.0 + 2.0 * mean) / 10.0).abs() < 1e-12);
        assert_eq!((rows[0].1, rows[0].2.as_str()), (0.0, "driver"));
        // 6 of 10 negative: at risk.
        assert_eq!((rows[1].1, rows[1].2.as_str()), (0.6, "at_risk"));
        // No reviews: the mean, and its own class.
        assert!((rows[2].0 - mean).abs() < 1e-12);
        assert_eq!(rows[2].2, "no_reviews");
    }

    #[test]
    fn the_split_into_batches_does_not_matter() {
        let rating = [5.0, 2.0, 0.0, 4.5, 3.0];
        let count = [8, 10, 0, 3, 40];
        let negative = [0, 6, 0, 1, 20];
        let whole = run(vec![products(&rating, &count, &negative)]);
        let split = (0..5).map(|i| products(&rating[i..i + 1], &count[i..i + 1], &negative[i..i + 1])).collect();
        assert_eq!(whole, run(split));
    }
}
