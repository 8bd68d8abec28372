//! The run's memory budget, handed to what honours it. Silver holds keys,
//! not rows, by construction; Gold's queries run on polars' streaming
//! engine, whose group-bys and joins spill to the run's scratch folder once
//! the process holds more than its share of the budget (polars counts every
//! allocation: it is the host's allocator).
//!
//! Not for: plugin memory (each instance has its own cap, `plugins.limits`).

use std::path::Path;

/// The part of the budget past which polars spills: the rest is for what
/// cannot spill (a query's result, a plugin's whole-input columns, the
/// tables' batches on their way to disk).
const POLARS_SHARE: f64 = 0.5;

/// Groups a streaming group-by keeps aggregating in place per thread
/// (polars' default is 4,096): rows of other groups are set aside whole, to
/// be aggregated at the end or spilled. The 20,000 products of a sum by
/// product fit, instead of 80% of 180M order items set aside (at scale 10:
/// 5.8 s and 0.7 GiB instead of 11.6 s and 4.4 GiB); each thread's table
/// costs a few tens of MB.
const HOT_GROUPS: usize = 1 << 18;

/// Gives polars the budget (`memory` bytes) and its spill folder, under
/// `scratch`. Call it once at the start of a run, before polars computes.
pub fn apply(memory: u64, scratch: &Path) {
    let megabytes = ((memory as f64 * POLARS_SHARE) / 1e6).max(1.0) as u64;
    // SAFETY: polars reads these variables and nothing else writes them; a
    // run sets them before its stages start, while no other thread of ours
    // reads the environment.
    unsafe {
        std::env::set_var("POLARS_OOC_MEMORY_BUDGET_MB", megabytes.to_string());
        std::env::set_var("POLARS_OOC_SPILL_DIR", scratch.join("polars"));
        if std::env::var_os("POLARS_HOT_TABLE_SIZE").is_none() {
            std::env::set_var("POLARS_HOT_TABLE_SIZE", HOT_GROUPS.to_string());
        }
    }
    polars_config::config().reload_env_var("POLARS_OOC_MEMORY_BUDGET_MB");
}
