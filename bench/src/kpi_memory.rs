//! The memory of an aggregating KPI plugin under contract 0.2.0: `rfm` over
//! N customers, the host computing what the plugin `needs` (three ranks over
//! every customer, their number, the latest order), then every batch pushed
//! through the sandboxed plugin under a memory cap.
//!
//! Usage (see `bench/kpi_memory.sh`):
//!   kpi-memory PLUGINS_DIR [CUSTOMERS] [CAP_MIB] [BATCH_ROWS]
//! Prints one line of figures: customers, the host's seconds for the needs,
//! the seconds pushing, the plugin's peak linear memory against its cap, and
//! the process's peak resident memory.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use arrow_array::{ArrayRef, Date32Array, Float64Array, Int64Array, RecordBatch};
use medallion_plugin::{Limits, Runtime};

#[global_allocator]
static ALLOCATOR: polars_ooc::Allocator = polars_ooc::Allocator;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let number = |i: usize, default: usize| args.get(i).and_then(|s| s.parse().ok()).unwrap_or(default);
    let Some(dir) = args.first() else {
        eprintln!("usage: kpi-memory PLUGINS_DIR [CUSTOMERS] [CAP_MIB] [BATCH_ROWS]");
        std::process::exit(2);
    };
    if let Err(e) = run(Path::new(dir), number(1, 20_000_000), number(2, 64), number(3, 65_536)) {
        eprintln!("kpi-memory: {e}");
        std::process::exit(1);
    }
}

/// A pseudo-random sequence (splitmix64), the same on every run.
fn mix(i: u64) -> u64 {
    let mut z = i.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Customers in batches: last order over three years, 1 to 40 orders,
/// spend in cents up to 5,000.00.
fn customers(count: usize, batch_rows: usize) -> Vec<RecordBatch> {
    (0..count)
        .step_by(batch_rows)
        .map(|start| {
            let rows = start as u64..(start + batch_rows).min(count) as u64;
            let ids: ArrayRef = Arc::new(Int64Array::from_iter_values(rows.clone().map(|i| i as i64)));
            let last: ArrayRef =
                Arc::new(Date32Array::from_iter_values(rows.clone().map(|i| 18_500 + (mix(i) % 1095) as i32)));
            let orders: ArrayRef =
                Arc::new(Int64Array::from_iter_values(rows.clone().map(|i| 1 + (mix(i + 7) % 40) as i64)));
            let spent: ArrayRef =
                Arc::new(Float64Array::from_iter_values(rows.map(|i| (mix(i + 13) % 500_000) as f64 / 100.0)));
            RecordBatch::try_from_iter([
                ("customer_id", ids),
                ("last_order_date", last),
                ("total_orders", orders),
                ("total_spent", spent),
            ])
            .unwrap_or_else(|e| panic!("{e}"))
        })
        .collect()
}

fn peak_rss_mib() -> u64 {
    medallion_common::memory::peak_resident_bytes().unwrap_or(0) >> 20
}

fn run(dir: &Path, count: usize, cap_mib: usize, batch_rows: usize) -> Result<(), Box<dyn std::error::Error>> {
    let cache = tempfile::tempdir()?;
    let plugin = Runtime::new(Some(cache.path().to_path_buf()))?.load(&dir.join("rfm.wasm"))?;
    let limits = Limits { memory_bytes: cap_mib << 20, ..Limits::default() };
    let mut instance = plugin.instantiate("{}", limits)?;
    let needs = instance.needs("in").cloned().ok_or("rfm asks nothing of its input: not a 0.2.0 rfm")?;
    let batches = customers(count, batch_rows);
    let started = Instant::now();
    let prepared = medallion_window::prepare(&needs, batches)?;
    let needs_seconds = started.elapsed().as_secs_f64();
    let started = Instant::now();
    let mut rows = 0;
    for batch in &prepared {
        for (port, out) in instance.push("in", batch)? {
            if port == "out" {
                rows += out.iter().map(RecordBatch::num_rows).sum::<usize>();
            }
        }
    }
    instance.finish()?;
    let push_seconds = started.elapsed().as_secs_f64();
    if rows != count {
        return Err(format!("{rows} rows out of {count}").into());
    }
    println!(
        "customers={count} batch_rows={batch_rows} needs_s={needs_seconds:.2} push_s={push_seconds:.2} plugin_peak_mib={:.1} cap_mib={cap_mib} process_peak_rss_mib={}",
        instance.memory_peak() as f64 / f64::from(1 << 20),
        peak_rss_mib()
    );
    Ok(())
}
