//! The medallion stages and the run that strings them together: Silver
//! (Bronze through a cleaning plugin, then the relational rules, to typed
//! Parquet and quarantine), Gold (SQL steps and KPI plugins over Silver,
//! published to a store), and [`run`], which any front end (the `host`
//! command line, a test, another driver) calls to run a plan.
//!
//! Not for: parsing `pipeline.yaml` (`medallion-pipeline`), the plugin
//! runtime (`medallion-plugin`), storage (`medallion-lake`,
//! `medallion-store`) or printing (the front end's job).

pub mod budget;
pub mod frame;
pub mod gold;
mod read;
pub mod run;
pub mod silver;
