//! Measures the plugin boundary: a cast-and-validate plugin against the same
//! code compiled natively, pass-through IPC throughput, the cost of one call
//! and of one instantiation, and the compile cache.
//!
//! Usage (see `bench/plugin-boundary.sh`, which runs it under hyperfine):
//!   plugin-boundary cast native|wasm|boundary|ipc PLUGINS_DIR [ROWS] [BATCH_ROWS]
//!   plugin-boundary ab PLUGINS_DIR [ROUNDS] [ROWS]
//!   plugin-boundary repeat ENGINE PLUGINS_DIR [ROUNDS] [ROWS]   (for a profiler)
//!   plugin-boundary passthrough PLUGINS_DIR [MIB]
//!   plugin-boundary micro PLUGINS_DIR

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_array::{ArrayRef, Int64Array, RecordBatch, StringArray};
use medallion_plugin::{Limits, LoadedPlugin, Runtime};
use medallion_sdk::Plugin;

#[global_allocator]
static ALLOCATOR: polars_ooc::Allocator = polars_ooc::Allocator;

const CAST_CONFIG: &str = r#"{
  "columns": [
    {"name": "order_id", "type": "int", "required": true},
    {"name": "order_date", "type": "date", "on_unparseable": "reject"},
    {"name": "total_amount", "type": "double", "gt": 0, "reason": "non_positive_amount"}
  ],
  "keep": ["payment_method"]
}"#;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize| args.get(i).map(String::as_str);
    let number = |i: usize, default: usize| arg(i).and_then(|s| s.parse().ok()).unwrap_or(default);
    let result = match (arg(0), arg(1), arg(2)) {
        (Some("cast"), Some(engine), Some(dir)) => {
            cast(engine, Path::new(dir), number(3, 1_000_000), number(4, 65_536))
        }
        (Some("ab"), Some(dir), _) => ab(Path::new(dir), number(2, 15), number(3, 1_000_000)),
        (Some("repeat"), Some(engine), Some(dir)) => {
            repeat(engine, Path::new(dir), number(3, 30), number(4, 1_000_000))
        }
        (Some("passthrough"), Some(dir), _) => passthrough(Path::new(dir), number(2, 2048)),
        (Some("micro"), Some(dir), _) => micro(Path::new(dir)),
        _ => Err("usage: plugin-boundary cast native|wasm|boundary|ipc DIR [ROWS] [BATCH] | ab DIR [ROUNDS] [ROWS] \
             | repeat ENGINE DIR [ROUNDS] [ROWS] | passthrough DIR [MIB] | micro DIR"
            .into()),
    };
    if let Err(e) = result {
        eprintln!("plugin-boundary: {e}");
        std::process::exit(1);
    }
}

type BenchResult = Result<(), Box<dyn std::error::Error>>;

/// Orders-like string batches with about 2% of rows to reject.
fn order_batches(rows: usize, batch_rows: usize) -> Vec<RecordBatch> {
    let methods = ["credit_card", "debit_card", "paypal", "cash"];
    (0..rows)
        .step_by(batch_rows)
        .map(|start| {
            let end = (start + batch_rows).min(rows);
            let ids = (start..end).map(|i| if i % 97 == 0 { None } else { Some(i.to_string()) });
            let dates = (start..end).map(|i| {
                if i % 101 == 0 {
                    "2023-02-30".to_owned()
                } else {
                    format!("20{:02}-{:02}-{:02}", 20 + i % 5, 1 + i % 12, 1 + i % 28)
                }
            });
            let amounts =
                (start..end).map(|i| if i % 103 == 0 { "0".to_owned() } else { format!("{}.{:02}", i % 500, i % 100) });
            let method = (start..end).map(|i| methods[i % 4]);
            let columns: Vec<(&str, ArrayRef)> = vec![
                ("order_id", Arc::new(ids.collect::<StringArray>())),
                ("order_date", Arc::new(dates.map(Some).collect::<StringArray>())),
                ("total_amount", Arc::new(amounts.map(Some).collect::<StringArray>())),
                ("payment_method", Arc::new(method.map(Some).collect::<StringArray>())),
            ];
            RecordBatch::try_from_iter(columns).unwrap_or_else(|e| panic!("{e}"))
        })
        .collect()
}

fn runtime() -> Result<Runtime, Box<dyn std::error::Error>> {
    Ok(Runtime::new(Runtime::default_cache_dir())?)
}

fn load(runtime: &Runtime, dir: &Path, name: &str) -> Result<LoadedPlugin, Box<dyn std::error::Error>> {
    Ok(runtime.load(&dir.join(format!("{name}.wasm")))?)
}

/// The plugins the cast steps of `engines` use, loaded (compiled or read
/// from the cache) before any timing; none, and no runtime, for `native`
/// and `ipc` alone.
struct Loaded {
    clean: Option<LoadedPlugin>,
    passthrough: Option<LoadedPlugin>,
}

impl Loaded {
    fn new(dir: &Path, engines: &[&str]) -> Result<Self, Box<dyn std::error::Error>> {
        let (wasm, boundary) = (engines.contains(&"wasm"), engines.contains(&"boundary"));
        let runtime = if wasm || boundary { Some(runtime()?) } else { None };
        let load_if = |wanted: bool, name: &str| match (&runtime, wanted) {
            (Some(runtime), true) => load(runtime, dir, name).map(Some),
            _ => Ok(None),
        };
        Ok(Loaded { clean: load_if(wasm, "clean")?, passthrough: load_if(boundary, "passthrough")? })
    }
}

/// Runs the cast step once on `engine`: its time (instance creation
/// included), and the rows kept and rejected.
fn cast_step(
    engine: &str,
    plugins: &Loaded,
    batches: &[RecordBatch],
) -> Result<(Duration, usize, usize), Box<dyn std::error::Error>> {
    let (mut kept, mut rejected) = (0usize, 0usize);
    let started = Instant::now();
    match engine {
        "native" => {
            let mut clean = <clean::Clean as Plugin>::new(CAST_CONFIG).map_err(|e| format!("{e:?}"))?;
            for batch in batches {
                let applied = clean.apply(batch).map_err(|e| format!("{e:?}"))?;
                kept += applied.clean.num_rows();
                rejected += applied.rejected.num_rows();
            }
        }
        "wasm" => {
            let clean = plugins.clean.as_ref().ok_or("the clean plugin is not loaded")?;
            let mut instance = clean.instantiate(CAST_CONFIG, Limits::default())?;
            for batch in batches {
                for (port, out) in instance.push("in", batch)? {
                    let n: usize = out.iter().map(RecordBatch::num_rows).sum();
                    if port == "out" {
                        kept += n
                    } else if port == "rejected" {
                        rejected += n
                    }
                }
            }
            instance.finish()?;
        }
        "boundary" => {
            // The same batches through the pass-through plugin: what moving
            // this data across the boundary costs, with no rule applied.
            let passthrough = plugins.passthrough.as_ref().ok_or("the passthrough plugin is not loaded")?;
            let mut instance = passthrough.instantiate("", Limits::default())?;
            for batch in batches {
                for (_, out) in instance.push("in", batch)? {
                    kept += out.iter().map(RecordBatch::num_rows).sum::<usize>();
                }
            }
        }
        "ipc" => {
            // Native IPC encode and validated decode of the same batches:
            // the floor of what the boundary does twice per call.
            for batch in batches {
                kept += medallion_plugin::ipc_roundtrip(batch)?;
            }
        }
        other => return Err(format!("unknown engine `{other}` (native, wasm, boundary or ipc)").into()),
    }
    let elapsed = started.elapsed();
    let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
    if kept + rejected != rows {
        return Err(format!("{engine} lost rows: {kept} kept + {rejected} rejected != {rows}").into());
    }
    Ok((elapsed, kept, rejected))
}

fn cast(engine: &str, dir: &Path, rows: usize, batch_rows: usize) -> BenchResult {
    let batches = order_batches(rows, batch_rows);
    let plugins = Loaded::new(dir, &[engine])?;
    let (elapsed, kept, rejected) = cast_step(engine, &plugins, &batches)?;
    println!(
        "cast {engine}: {rows} rows in {} batches: {kept} kept, {rejected} rejected, {:.1} ms, {:.1} M rows/s",
        batches.len(),
        ms(elapsed),
        rows as f64 / elapsed.as_secs_f64() / 1e6
    );
    Ok(())
}

/// Native, wasm and the pass-through boundary taking turns in one process on
/// the same batches, after one warm-up round each (native first and the
/// pass-through last in even rounds, the reverse in odd ones; wasm always
/// between them): the median of each, and the median of the per-round
/// wasm/native ratios.
fn ab(dir: &Path, rounds: usize, rows: usize) -> BenchResult {
    let rounds = rounds.max(1);
    let batches = order_batches(rows, 65_536);
    const ENGINES: [&str; 3] = ["native", "wasm", "boundary"];
    let plugins = Loaded::new(dir, &ENGINES)?;
    for engine in ENGINES {
        cast_step(engine, &plugins, &batches)?;
    }
    let (mut native, mut wasm, mut boundary, mut ratios) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for round in 0..rounds {
        let order = if round % 2 == 0 { [0, 1, 2] } else { [2, 1, 0] };
        let mut times = [0.0; 3];
        for slot in order {
            times[slot] = ms(cast_step(ENGINES[slot], &plugins, &batches)?.0);
        }
        native.push(times[0]);
        wasm.push(times[1]);
        boundary.push(times[2]);
        ratios.push(times[1] / times[0]);
    }
    println!(
        "cast A/B, {rows} rows, {rounds} rounds: native {:.1} ms, wasm {:.1} ms, pass-through boundary {:.1} ms \
         (medians); wasm/native {:.2}x (median of per-round ratios; min {:.2}, max {:.2})",
        median(&mut native),
        median(&mut wasm),
        median(&mut boundary),
        median(&mut ratios),
        ratios.iter().copied().fold(f64::INFINITY, f64::min),
        ratios.iter().copied().fold(0.0, f64::max),
    );
    Ok(())
}

/// One engine's cast step, round after round after one warm-up round:
/// something for a profiler to look at with little else in the picture.
fn repeat(engine: &str, dir: &Path, rounds: usize, rows: usize) -> BenchResult {
    let rounds = rounds.max(1);
    let batches = order_batches(rows, 65_536);
    let plugins = Loaded::new(dir, &[engine])?;
    cast_step(engine, &plugins, &batches)?;
    let mut times = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        times.push(ms(cast_step(engine, &plugins, &batches)?.0));
    }
    println!("cast {engine}, {rows} rows, {rounds} rounds: {:.1} ms (median)", median(&mut times));
    Ok(())
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn passthrough(dir: &Path, mib: usize) -> BenchResult {
    let runtime = runtime()?;
    let plugin = load(&runtime, dir, "passthrough")?;
    let mut instance = plugin.instantiate("", Limits::default())?;
    // 16 Int64 columns × 64k rows: 8 MiB per batch.
    let rows = 65_536;
    let columns: Vec<(String, ArrayRef)> = (0..16)
        .map(|c| (format!("c{c}"), Arc::new(Int64Array::from_iter_values(0..rows as i64)) as ArrayRef))
        .collect();
    let batch = RecordBatch::try_from_iter(columns)?;
    let batch_bytes = batch.get_array_memory_size();
    let calls = (mib << 20).div_ceil(batch_bytes);
    let started = Instant::now();
    for _ in 0..calls {
        let out = instance.push("in", &batch)?;
        debug_assert_eq!(out.len(), 1);
    }
    let elapsed = started.elapsed();
    let moved = (calls * batch_bytes) as f64;
    println!(
        "passthrough: {calls} batches of {:.1} MiB in {:.1} ms: {:.2} GB/s of Arrow data through the plugin and back",
        batch_bytes as f64 / 1048576.0,
        ms(elapsed),
        moved / elapsed.as_secs_f64() / 1e9
    );
    Ok(())
}

fn micro(dir: &Path) -> BenchResult {
    let runtime = runtime()?;
    let plugin = load(&runtime, dir, "passthrough")?;

    let mut instance = plugin.instantiate("", Limits::default())?;
    let empty = RecordBatch::try_from_iter([("a", Arc::new(Int64Array::from(Vec::<i64>::new())) as ArrayRef)])?;
    let calls = 100_000;
    let started = Instant::now();
    for _ in 0..calls {
        instance.push("in", &empty)?;
    }
    println!("empty-batch push: {:.2} µs per call (mean of {calls})", us(started.elapsed()) / calls as f64);

    let instances = 1_000;
    let started = Instant::now();
    for _ in 0..instances {
        drop(plugin.instantiate("", Limits::default())?);
    }
    println!(
        "instantiate + create + drop from InstancePre: {:.1} µs per instance (mean of {instances})",
        us(started.elapsed()) / instances as f64
    );

    for name in ["passthrough", "clean"] {
        let cache = tempfile::tempdir()?;
        let fresh = Runtime::new(Some(cache.path().to_owned()))?;
        let started = Instant::now();
        load(&fresh, dir, name)?;
        let compile = started.elapsed();
        let loads = 20;
        let started = Instant::now();
        for _ in 0..loads {
            load(&Runtime::new(Some(cache.path().to_owned()))?, dir, name)?;
        }
        let cached = started.elapsed() / loads;
        println!(
            "load {name}: compile {:.1} ms, from disk cache {:.2} ms: cache {:.0}x faster",
            ms(compile),
            ms(cached),
            compile.as_secs_f64() / cached.as_secs_f64()
        );
    }
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}
