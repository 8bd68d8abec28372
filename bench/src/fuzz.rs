//! A time-boxed fuzzer of the inputs that users and plugins control: CSV
//! sources, `pipeline.yaml` with `${...}` interpolation, the API's query
//! strings (`$filter`, `$orderby`, `$skiptoken`, paging, the REST filters)
//! and the Arrow IPC bytes a plugin hands back.
//!
//! Inputs are seeds (valid inputs), mutated at random (bytes flipped,
//! inserted, deleted, repeated; tokens from a dictionary per target; two
//! inputs spliced), plus inputs generated from a small grammar for the
//! queries. There is no coverage guidance (that needs a nightly compiler):
//! this finds what random and structured garbage finds, in the host's own
//! release build. A panic, or a call slower than 5 s, is a finding: its
//! input is written to the output folder and the run fails at the end.
//!
//! Usage: fuzz TARGET SECONDS OUT_DIR [GOLD_STORE PIPELINE]
//!   TARGET: csv | pipeline | query | ipc   (query needs a Gold store)

use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_array::{ArrayRef, Date32Array, Float64Array, Int64Array, RecordBatch, StringArray};

#[global_allocator]
static ALLOCATOR: polars_ooc::Allocator = polars_ooc::Allocator;

/// xorshift64*: fast, and a run is replayed from its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// One random change to `input`.
fn mutate(rng: &mut Rng, input: &mut Vec<u8>, dictionary: &[&[u8]], seeds: &[Vec<u8>]) {
    let at = rng.below(input.len() + 1);
    match rng.below(8) {
        0 if !input.is_empty() => {
            let i = rng.below(input.len());
            input[i] ^= 1 << rng.below(8);
        }
        1 => input.insert(at, rng.next() as u8),
        2 if !input.is_empty() => {
            let end = (at + 1 + rng.below(16)).min(input.len());
            input.drain(at.min(end)..end);
        }
        3 if !input.is_empty() => {
            let start = rng.below(input.len());
            let end = (start + 1 + rng.below(64)).min(input.len());
            let copy = input[start..end].to_vec();
            let at = rng.below(input.len() + 1);
            input.splice(at..at, copy);
        }
        4 => {
            let token = rng.pick(dictionary);
            input.splice(at..at, token.iter().copied());
        }
        5 if !input.is_empty() => {
            // An interesting integer over four bytes (lengths, offsets, counts).
            let value: u32 = *rng.pick(&[0, 1, 0x7f, 0x80, 0xff, 0xffff, 0x7fff_ffff, 0x8000_0000, u32::MAX]);
            let i = rng.below(input.len());
            for (k, byte) in value.to_le_bytes().iter().enumerate() {
                if let Some(slot) = input.get_mut(i + k) {
                    *slot = *byte;
                }
            }
        }
        6 => {
            let other = rng.pick(seeds);
            let from = rng.below(other.len() + 1);
            input.truncate(at);
            input.extend_from_slice(&other[from..]);
        }
        _ => input.truncate(at),
    }
}

/// Makes an input from nothing (a grammar).
type Generate<'a> = Box<dyn Fn(&mut Rng) -> Vec<u8> + 'a>;
/// The call under test.
type Call<'a> = Box<dyn Fn(&[u8]) + 'a>;

/// A target: seeds, a dictionary, and the call under test.
struct Target<'a> {
    seeds: Vec<Vec<u8>>,
    dictionary: Vec<&'static [u8]>,
    generate: Option<Generate<'a>>,
    call: Call<'a>,
}

fn csv_target(scratch: &Path) -> Target<'static> {
    let file = scratch.join(format!("fuzz-{}.csv", std::process::id()));
    let seeds: Vec<Vec<u8>> = [
        &b"order_id,customer_id,order_date,total_amount\n1,2,2023-01-05,10.5\n2,,2023-02-30,x\n"[..],
        b"a,b,c\r\n\"1,2\",\"say \"\"hi\"\"\",\"line\nbreak\"\r\n,,\r\n",
        b"\xef\xbb\xbfid,name\n1,\xe9t\xe9\n2,\"open\n",
        b"x\n1\n2\n3\n",
    ]
    .iter()
    .map(|s| s.to_vec())
    .collect();
    Target {
        seeds,
        dictionary: vec![b"\"", b",", b"\n", b"\r\n", b"\"\"", b"\xff", b"\xef\xbb\xbf", b"\r", b"\0", b",,,,,,,,"],
        generate: None,
        call: Box::new(move |input| {
            std::fs::write(&file, input).unwrap_or_else(|e| panic!("cannot write {}: {e}", file.display()));
            use medallion_lake::sources::{CsvSource, OnBadRecord, Source};
            for mode in [OnBadRecord::Fail, OnBadRecord::Quarantine] {
                let Ok(mut source) = CsvSource::open(&file, None, mode) else { continue };
                while let Ok(Some(_)) = source.next_batch() {
                    source.take_bad_records();
                }
            }
        }),
    }
}

fn pipeline_target(scratch: &Path, pipeline: &Path) -> Target<'static> {
    let file = scratch.join(format!("fuzz-{}.yaml", std::process::id()));
    let base = scratch.to_owned();
    let real = std::fs::read(pipeline).unwrap_or_else(|e| panic!("{}: {e}", pipeline.display()));
    let seeds = vec![
        real,
        b"lake: ${LAKE:-data/lake}\nsources:\n  dir: ${A:-${B:-x}}\n  tables: {}\n".to_vec(),
        b"a: &x [1, 2]\nb: *x\nsilver: {tables: {t: {from: x, key: k}}}\n".to_vec(),
    ];
    Target {
        seeds,
        dictionary: vec![
            b"${",
            b"}",
            b":-",
            b"${SET}",
            b"${UNSET}",
            b"${A:-${B:-${C}}}",
            b"$${",
            b"\n  ",
            b": ",
            b"- ",
            b"{",
            b"[",
            b"'",
            b"\"",
            b"&a ",
            b"*a",
            b"<<: *a\n",
            b"!!binary ",
            b"~",
            b"\t",
        ],
        generate: None,
        call: Box::new(move |input| {
            std::fs::write(&file, input).unwrap_or_else(|e| panic!("cannot write {}: {e}", file.display()));
            let env = |name: &str| (name == "SET" || name == "A").then(|| "value".to_owned());
            if let Ok(spec) = medallion_pipeline::load(&file, &["gold.store=sqlite:x.db".to_owned()], env) {
                let _ = spec.plan_without_sources(&file, &base);
                let _ = spec.plan(&file, &base);
            }
        }),
    }
}

fn query_target<'a>(snapshot: &'a medallion_api::snapshot::Snapshot) -> Target<'a> {
    let tables: Vec<(String, Vec<String>, Option<String>)> = snapshot
        .tables
        .iter()
        .map(|t| (t.name.clone(), t.data.columns.iter().map(|c| c.name.clone()).collect(), t.route.clone()))
        .collect();
    let generate = {
        let tables = tables.clone();
        move |rng: &mut Rng| -> Vec<u8> {
            let (name, columns, route) = rng.pick(&tables).clone();
            let column = |rng: &mut Rng| rng.pick(&columns).clone();
            let literal = |rng: &mut Rng| -> String {
                rng.pick(&[
                    "'x'",
                    "'it''s'",
                    "12",
                    "-3.5e10",
                    "1e400",
                    "2023-01-01",
                    "2023-02-31",
                    "null",
                    "true",
                    "''",
                    "9223372036854775808",
                    "'%E9'",
                    "NaN",
                    "-0",
                ])
                .to_string()
            };
            let mut parameters: Vec<String> = Vec::new();
            if rng.below(2) == 0 {
                let mut filter = String::new();
                for i in 0..1 + rng.below(4) {
                    if i > 0 {
                        let joint: &&str = rng.pick(&[" and ", " or ", " and not ", " or ("]);
                        filter.push_str(joint);
                    }
                    let op = *rng.pick(&["eq", "ne", "gt", "ge", "lt", "le", "in"]);
                    match rng.below(3) {
                        0 => filter.push_str(&format!("{} {op} {}", column(rng), literal(rng))),
                        1 => filter.push_str(&format!(
                            "{}({},{})",
                            rng.pick(&["contains", "startswith", "endswith", "tolower"]),
                            column(rng),
                            literal(rng)
                        )),
                        _ => filter.push_str(&format!("({} {op} ({}, {}))", column(rng), literal(rng), literal(rng))),
                    }
                }
                parameters.push(format!("$filter={filter}"));
            }
            if rng.below(2) == 0 {
                let mut order = column(rng);
                if rng.below(2) == 0 {
                    order.push_str(" desc");
                }
                if rng.below(3) == 0 {
                    order.push_str(&format!(",{} asc", column(rng)));
                }
                parameters.push(format!("$orderby={order}"));
            }
            if rng.below(2) == 0 {
                // A token as the service writes them (URL-safe base64 of a JSON
                // array), holding values of random types.
                use base64::Engine;
                let values: Vec<String> = (0..rng.below(4))
                    .map(|_| {
                        rng.pick(&[
                            "1",
                            "\"x\"",
                            "null",
                            "true",
                            "1.5",
                            "18446744073709551615",
                            "-1",
                            "[]",
                            "{}",
                            "4.9e-324",
                        ])
                        .to_string()
                    })
                    .collect();
                let json = format!("[{}]", values.join(","));
                parameters
                    .push(format!("$skiptoken={}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json)));
            }
            for (parameter, values) in [
                ("$top", &["0", "1", "5", "-1", "99999999999999999999", "x"][..]),
                ("$skip", &["0", "3", "-2", "18446744073709551615"][..]),
                ("$select", &["*", "", ",", "date,date"][..]),
                ("$count", &["true", "false", "maybe"][..]),
                ("page", &["0", "1", "2", "4294967296"][..]),
                ("page_size", &["0", "1", "1000", "100000"][..]),
            ] {
                if rng.below(4) == 0 {
                    parameters.push(format!("{parameter}={}", rng.pick(values)));
                }
            }
            if rng.below(4) == 0 {
                parameters.push(format!("$select={},{}", column(rng), column(rng)));
            }
            if rng.below(4) == 0 {
                parameters.push(format!("{}={}", column(rng), literal(rng)));
            }
            let path = match (&route, rng.below(3)) {
                (Some(route), 0) => route.clone(),
                (_, 1) => format!("/odata/{name}/$count"),
                _ => format!("/odata/{name}"),
            };
            let query: String = parameters
                .join("&")
                .bytes()
                .map(|b| if b == b' ' { "%20".to_owned() } else { (b as char).to_string() })
                .collect();
            format!("{path}?{query}").into_bytes()
        }
    };
    let mut rng = Rng(7);
    let seeds: Vec<Vec<u8>> = (0..32).map(|_| generate(&mut rng)).collect();
    Target {
        seeds,
        dictionary: vec![b"(", b")", b"'", b"%", b"%ff", b"&", b"=", b"$filter=", b" eq ", b",", b"%00", b"\xff"],
        generate: Some(Box::new(generate)),
        call: Box::new(move |input| {
            let text = String::from_utf8_lossy(input);
            let (path, query) = text.split_once('?').unwrap_or((&text, ""));
            medallion_api::fuzzing::get(snapshot, path, query);
        }),
    }
}

fn ipc_target() -> Target<'static> {
    let batch = RecordBatch::try_from_iter([
        ("id", Arc::new(Int64Array::from(vec![Some(1), None, Some(3)])) as ArrayRef),
        ("name", Arc::new(StringArray::from(vec![Some("a"), Some("été"), None]))),
        ("day", Arc::new(Date32Array::from(vec![Some(19_000), None, Some(0)]))),
        ("amount", Arc::new(Float64Array::from(vec![1.5, f64::NAN, -0.0]))),
    ])
    .unwrap_or_else(|e| panic!("{e}"));
    let encode = |batches: &[RecordBatch]| -> Vec<u8> {
        let mut out = Vec::new();
        let mut writer =
            arrow_ipc::writer::StreamWriter::try_new(&mut out, &batches[0].schema()).unwrap_or_else(|e| panic!("{e}"));
        for batch in batches {
            writer.write(batch).unwrap_or_else(|e| panic!("{e}"));
        }
        writer.finish().unwrap_or_else(|e| panic!("{e}"));
        drop(writer);
        out
    };
    let seeds = vec![encode(std::slice::from_ref(&batch)), encode(&[batch.clone(), batch.slice(1, 2)])];
    Target {
        seeds,
        dictionary: vec![b"\xff\xff\xff\xff", b"\0\0\0\0", b"\xff\xff\xff\x7f"],
        generate: None,
        call: Box::new(|input| {
            let _ = medallion_plugin::fuzzing::decode_ipc(input.to_vec());
        }),
    }
}

/// Runs `target` for `seconds`; returns the findings written to `out`.
fn fuzz(name: &str, target: &Target, seconds: u64, out: &Path, seed: u64) -> usize {
    let mut rng = Rng(seed);
    let started = Instant::now();
    let mut corpus = target.seeds.clone();
    let (mut calls, mut findings, mut last_report) = (0u64, 0usize, Instant::now());
    while started.elapsed() < Duration::from_secs(seconds) {
        let mut input = match (&target.generate, rng.below(3)) {
            (Some(generate), 0) => generate(&mut rng),
            _ => rng.pick(&corpus).clone(),
        };
        for _ in 0..1 + rng.below(6) {
            mutate(&mut rng, &mut input, &target.dictionary, &target.seeds);
        }
        input.truncate(1 << 16);
        let call_started = Instant::now();
        let result = std::panic::catch_unwind(AssertUnwindSafe(|| (target.call)(&input)));
        let took = call_started.elapsed();
        calls += 1;
        let finding = match result {
            Err(panic) => Some(format!(
                "panic: {}",
                panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default()
            )),
            Ok(()) if took > Duration::from_secs(5) => Some(format!("slow: {took:?}")),
            Ok(()) => None,
        };
        if let Some(finding) = finding {
            findings += 1;
            let file = out.join(format!("{name}-{findings}.input"));
            let _ = std::fs::write(&file, &input);
            eprintln!("{name}: FINDING {findings} ({finding}), input in {}", file.display());
        }
        // Keep a few mutated inputs to mutate further (no coverage: a sample).
        if rng.below(64) == 0 && corpus.len() < 4096 {
            corpus.push(input);
        }
        if last_report.elapsed() > Duration::from_secs(60) {
            eprintln!("{name}: {calls} calls in {:.0} s, {findings} findings", started.elapsed().as_secs_f64());
            last_report = Instant::now();
        }
    }
    println!(
        "{name}: {calls} calls in {:.0} s ({:.0}/s), {findings} findings",
        started.elapsed().as_secs_f64(),
        calls as f64 / started.elapsed().as_secs_f64()
    );
    findings
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 4 {
        eprintln!("usage: fuzz csv|pipeline|query|ipc SECONDS OUT_DIR [GOLD_STORE PIPELINE]");
        std::process::exit(2);
    }
    let (name, seconds, out) = (&args[1], args[2].parse::<u64>().unwrap_or(60), PathBuf::from(&args[3]));
    std::fs::create_dir_all(&out).unwrap_or_else(|e| panic!("{}: {e}", out.display()));
    let pipeline = PathBuf::from(args.get(5).map_or("pipeline.yaml", String::as_str));
    let seed = std::env::var("FUZZ_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(0x9e37_79b9_7f4a_7c15);
    // Panics are findings, reported once each by `fuzz`.
    std::panic::set_hook(Box::new(|_| {}));
    let scratch = std::env::temp_dir();
    let findings = match name.as_str() {
        "csv" => fuzz(name, &csv_target(&scratch), seconds, &out, seed),
        "pipeline" => fuzz(name, &pipeline_target(&scratch, &pipeline), seconds, &out, seed),
        "ipc" => fuzz(name, &ipc_target(), seconds, &out, seed),
        "query" => {
            let store = args.get(4).unwrap_or_else(|| panic!("query needs a Gold store (sqlite:PATH)"));
            let spec =
                medallion_pipeline::load(&pipeline, &[], |n| std::env::var(n).ok()).unwrap_or_else(|e| panic!("{e}"));
            let mut store = medallion_store::open(store).unwrap_or_else(|e| panic!("{e}"));
            let files = medallion_common::scratch::Scratch::create(&scratch, "fuzz-query")
                .unwrap_or_else(|e| panic!("{}: {e}", scratch.display()));
            let snapshot =
                medallion_api::snapshot::load(store.as_mut(), &spec.gold, files).unwrap_or_else(|e| panic!("{e}"));
            fuzz(name, &query_target(&snapshot), seconds, &out, seed)
        }
        other => {
            eprintln!("no target `{other}`: csv, pipeline, query or ipc");
            std::process::exit(2);
        }
    };
    std::process::exit(i32::from(findings > 0));
}
