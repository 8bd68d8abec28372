//! The run's memory budget, handed to what honours it. Silver holds keys,
//! not rows, by construction, and its rows in flight are row groups whose
//! size Bronze and Silver take from the budget; Gold's queries run on
//! polars' streaming engine, whose group-bys and joins spill to the run's
//! scratch folder once the process holds more than its share of the budget
//! (polars counts every allocation: it is the host's allocator).
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

/// What a Gold query holds per row of its largest input, in bytes: the
/// customer group-by over 60M orders peaked at 4.1 GiB (polars keeps each
/// set-aside row's hash and key, and its evicted partial aggregates, in
/// memory), and at 1.3 GiB over a quarter of them.
const QUERY_BYTES_PER_ROW: u64 = 80;

/// The most ranges a Gold query is split into: each one scans its inputs
/// again.
pub const MOST_PARTS: usize = 64;

/// How many ranges of its `split_by` column a Gold query whose largest
/// input has `rows` rows runs over, for a budget of `memory` bytes: enough
/// for each range to hold at most polars' share of the budget.
pub fn query_parts(rows: u64, memory: u64) -> usize {
    let share = ((memory as f64 * POLARS_SHARE) as u64).max(1);
    rows.saturating_mul(QUERY_BYTES_PER_ROW).div_ceil(share).clamp(1, MOST_PARTS as u64) as usize
}

/// The part of the budget Silver's keys may hold on the heap (bitmaps and
/// position arrays, and the columns children take from parents); the rest
/// of them go to mapped files in the scratch folder. At scale 10 they are
/// about 0.5 GiB: on the heap from a 2 GiB budget up.
const KEY_SHARE: f64 = 0.25;

/// Bytes of Silver's keys held on the heap, for a budget of `memory` bytes.
pub fn key_memory(memory: u64) -> u64 {
    (memory as f64 * KEY_SHARE) as u64
}

/// Rows per Parquet row group written, for a budget of `memory` bytes.
/// Silver cleans a table a row group at a time, up to five row groups in
/// flight per table (two per cleaning instance and the one being written)
/// and two tables at once; at about 100 bytes a row in memory, ten row
/// groups of `memory / 2048` rows take half the budget. Between 64Ki rows
/// (a plugin batch) and 1Mi rows (the most that pays: a budget from 2 GiB
/// up), a power of two.
pub fn row_group_rows(memory: u64) -> usize {
    const FEWEST: u64 = 1 << 16;
    const MOST: u64 = 1 << 20;
    let fit = (memory / 2048).clamp(FEWEST, MOST);
    1 << fit.ilog2()
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_query_is_split_only_when_its_input_outgrows_polars_share() {
        // Scale 1's 6M orders in the default budget of a 24 GiB machine: whole.
        assert_eq!(query_parts(6_000_000, 12 << 30), 1);
        // Scale 10's 60M orders in 3 GiB: three ranges of 20M orders.
        assert_eq!(query_parts(60_000_000, 3 << 30), 3);
        assert_eq!(query_parts(0, 1 << 20), 1);
        assert_eq!(query_parts(u64::MAX, 0), 64);
    }

    #[test]
    fn row_groups_shrink_with_the_budget_between_a_batch_and_a_million_rows() {
        assert_eq!(row_group_rows(24 << 30), 1 << 20);
        assert_eq!(row_group_rows(2 << 30), 1 << 20);
        assert_eq!(row_group_rows(1 << 30), 1 << 19);
        assert_eq!(row_group_rows(300 << 20), 1 << 17);
        assert_eq!(row_group_rows(64 << 20), 1 << 16);
        assert_eq!(row_group_rows(0), 1 << 16);
    }
}
