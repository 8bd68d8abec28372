//! `GET /metrics`: the server's and the runs' figures in the Prometheus text
//! format (version 0.0.4), for operators' monitoring.
//!
//! HTTP requests are counted by route and status, with a latency histogram
//! per route; routes are families (`/gold/*`, `/odata`, `/ui`, ...),
//! so a client cannot grow the series by asking for new paths. The runs'
//! figures come from the run log the server already holds.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use crate::snapshot::Snapshot;

/// Quarantine reasons given a series of their own per table.
const REASON_SERIES: usize = 20;

/// The latency histogram's upper bounds, seconds.
const BUCKETS: [f64; 12] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];

/// What the server counts as it answers.
#[derive(Debug, Default)]
pub(crate) struct Metrics {
    http: Mutex<BTreeMap<&'static str, Route>>,
}

/// One route family's requests.
#[derive(Debug, Default)]
struct Route {
    by_status: BTreeMap<u16, u64>,
    /// Requests at or under each of [`BUCKETS`] (not cumulative).
    buckets: [u64; BUCKETS.len()],
    count: u64,
    seconds: f64,
}

impl Metrics {
    /// Counts a request to `path` answered with `status` after `elapsed`.
    pub(crate) fn observe(&self, path: &str, status: u16, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        let mut http = self.http.lock().unwrap_or_else(PoisonError::into_inner);
        let route = http.entry(family(path)).or_default();
        *route.by_status.entry(status).or_default() += 1;
        if let Some(bucket) = BUCKETS.iter().position(|&le| seconds <= le) {
            route.buckets[bucket] += 1;
        }
        route.count += 1;
        route.seconds += seconds;
    }

    /// The text `/metrics` answers with.
    pub(crate) fn render(&self, snapshot: &Snapshot) -> String {
        let mut out = String::with_capacity(8192);
        self.render_http(&mut out);
        render_runs(&mut out, snapshot);
        out
    }

    fn render_http(&self, out: &mut String) {
        let http = self.http.lock().unwrap_or_else(PoisonError::into_inner);
        header(out, "medallion_http_requests_total", "counter", "HTTP requests answered, by route and status.");
        for (route, counts) in http.iter() {
            for (status, n) in &counts.by_status {
                let _ = writeln!(out, "medallion_http_requests_total{{route=\"{route}\",status=\"{status}\"}} {n}");
            }
        }
        let name = "medallion_http_request_duration_seconds";
        header(out, name, "histogram", "Time to answer an HTTP request (to its headers), by route.");
        for (route, counts) in http.iter() {
            let mut cumulative = 0;
            for (le, n) in BUCKETS.iter().zip(counts.buckets) {
                cumulative += n;
                let _ = writeln!(out, "{name}_bucket{{route=\"{route}\",le=\"{le}\"}} {cumulative}");
            }
            let _ = writeln!(out, "{name}_bucket{{route=\"{route}\",le=\"+Inf\"}} {}", counts.count);
            let _ = writeln!(out, "{name}_sum{{route=\"{route}\"}} {}", counts.seconds);
            let _ = writeln!(out, "{name}_count{{route=\"{route}\"}} {}", counts.count);
        }
    }
}

/// The route family of `path`: a fixed set of values.
fn family(path: &str) -> &'static str {
    match path {
        "/health" => "/health",
        "/docs" | "/docs/" => "/docs",
        "/openapi.json" => "/openapi.json",
        "/auth/login" => "/auth/login",
        "/runs" => "/runs",
        "/metrics" => "/metrics",
        "/gold/tables" => "/gold/tables",
        _ if path == "/odata" || path.starts_with("/odata/") => "/odata",
        _ if path == "/ui" || path.starts_with("/ui/") => "/ui",
        _ if path.starts_with("/gold/") => "/gold/*",
        _ => "other",
    }
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// A label value, escaped as the text format asks.
fn label(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// The runs' figures: runs by status, the Gold run being served, the latest
/// run, and the stages, rows and quarantine of the latest that ended.
fn render_runs(out: &mut String, snapshot: &Snapshot) {
    header(out, "medallion_runs", "gauge", "Runs in the run log, by status.");
    for (status, n) in &snapshot.run_counts {
        let _ = writeln!(out, "medallion_runs{{status=\"{}\"}} {n}", label(status));
    }
    header(out, "medallion_gold_served_info", "gauge", "The run whose Gold tables the server answers from.");
    if let Some(run) = &snapshot.run_id {
        let _ = writeln!(out, "medallion_gold_served_info{{run_id=\"{}\"}} 1", label(run));
    }
    if let Some(latest) = snapshot.runs.first() {
        let run_id = label(latest["run_id"].as_str().unwrap_or_default());
        let status = label(latest["status"].as_str().unwrap_or_default());
        header(out, "medallion_last_run_info", "gauge", "The latest run (running or ended) and its status.");
        let _ = writeln!(out, "medallion_last_run_info{{run_id=\"{run_id}\",status=\"{status}\"}} 1");
    }
    // The figures of the latest run that ended: a running run's would make
    // the series come and go.
    if let Some(last) = snapshot.runs.iter().find(|r| r["status"] != "running") {
        render_last_run(out, last);
    }
}

/// The stages, rows and quarantine of `run`.
fn render_last_run(out: &mut String, run: &serde_json::Value) {
    let name = "medallion_last_run_stage_seconds";
    header(out, name, "gauge", "Wall time of each stage of the latest run that ended.");
    for stage in run["stages"].as_array().into_iter().flatten() {
        let stage_name = label(stage["stage"].as_str().unwrap_or_default());
        let seconds = stage["seconds"].as_f64().unwrap_or_default();
        let _ = writeln!(out, "{name}{{stage=\"{stage_name}\"}} {seconds}");
    }
    let tables = run["tables"].as_array().map(Vec::as_slice).unwrap_or_default();
    let labels = |t: &serde_json::Value| {
        let (stage, table) = (t["stage"].as_str().unwrap_or_default(), t["table"].as_str().unwrap_or_default());
        format!("stage=\"{}\",table=\"{}\"", label(stage), label(table))
    };
    let rows = "medallion_last_run_rows";
    header(out, rows, "gauge", "Rows each table of the latest run that ended holds, by stage and table.");
    for t in tables {
        let _ = writeln!(out, "{rows}{{{}}} {}", labels(t), t["rows"].as_u64().unwrap_or_default());
    }
    let quarantined = "medallion_last_run_quarantined_rows";
    let help = "Rows the latest run that ended quarantined, by stage, table and reason (the 20 most frequent per table, the rest as (other)).";
    header(out, quarantined, "gauge", help);
    for t in tables {
        let Some(reasons) = t["reasons"].as_object().filter(|r| !r.is_empty()) else {
            let n = t["quarantined"].as_u64().unwrap_or_default();
            let _ = writeln!(out, "{quarantined}{{{},reason=\"\"}} {n}", labels(t));
            continue;
        };
        let reasons = crate::top_reasons(reasons, REASON_SERIES);
        for (reason, n) in reasons.top {
            let _ = writeln!(out, "{quarantined}{{{},reason=\"{}\"}} {n}", labels(t), label(reason));
        }
        if reasons.others > 0 {
            let _ = writeln!(out, "{quarantined}{{{},reason=\"(other)\"}} {}", labels(t), reasons.other_rows);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_are_a_fixed_set_of_families() {
        assert_eq!(family("/gold/sales/daily"), "/gold/*");
        assert_eq!(family("/odata/dm_sales_daily"), "/odata");
        assert_eq!(family("/ui/runs"), "/ui");
        assert_eq!(family("/../../etc/passwd"), "other");
        assert_eq!(family("/gold/tables"), "/gold/tables");
    }

    #[test]
    fn the_histogram_is_cumulative_and_counts_every_request() {
        let metrics = Metrics::default();
        metrics.observe("/health", 200, Duration::from_micros(500));
        metrics.observe("/health", 200, Duration::from_millis(30));
        metrics.observe("/health", 503, Duration::from_secs(60));
        let mut out = String::new();
        metrics.render_http(&mut out);
        assert!(out.contains("medallion_http_requests_total{route=\"/health\",status=\"200\"} 2\n"), "{out}");
        assert!(out.contains("medallion_http_requests_total{route=\"/health\",status=\"503\"} 1\n"), "{out}");
        assert!(out.contains("_bucket{route=\"/health\",le=\"0.001\"} 1\n"), "{out}");
        assert!(out.contains("_bucket{route=\"/health\",le=\"0.05\"} 2\n"), "{out}");
        assert!(out.contains("_bucket{route=\"/health\",le=\"10\"} 2\n"), "{out}");
        assert!(out.contains("_bucket{route=\"/health\",le=\"+Inf\"} 3\n"), "{out}");
        assert!(out.contains("_count{route=\"/health\"} 3\n"), "{out}");
    }

    #[test]
    fn reasons_get_at_most_twenty_series_per_table() {
        let reasons: serde_json::Map<String, serde_json::Value> =
            (0..30).map(|i| (format!("reason {i:02}"), serde_json::json!(100 - i))).collect();
        let run = serde_json::json!({"status": "succeeded", "stages": [],
            "tables": [{"stage": "silver", "table": "t", "rows": 5, "quarantined": 1, "reasons": reasons}]});
        let mut out = String::new();
        render_last_run(&mut out, &run);
        assert_eq!(out.matches("medallion_last_run_quarantined_rows{").count(), REASON_SERIES + 1, "{out}");
        let other: u64 = (20..30).map(|i| 100 - i).sum();
        assert!(out.contains(&format!("reason=\"(other)\"}} {other}\n")), "{out}");
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
