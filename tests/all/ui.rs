//! The pages under `/ui` and `/metrics`, over two real pipeline runs served
//! by the real binary: what a real browser (Debian's headless Chromium)
//! shows and fetches, the figures a Prometheus text parser reads, the
//! refusals without credentials, and a product whose name is markup shown as
//! text.

use std::collections::BTreeMap;
use std::process::Command;
use std::sync::OnceLock;

use base64::Engine;

use crate::api::{PASSWORD, Server};
use crate::gold::Setup;
use crate::util::text;

/// What every product name is prefixed with: markup that must stay text.
const MARKUP: &str = "<script>alert(1)</script><b>x</b> ";

const PAGES: [&str; 4] = ["/ui", "/ui/runs", "/ui/quarantine", "/ui/gold"];

/// Two runs over sources whose product names hold markup, served from SQLite.
fn served() -> &'static (Setup, Server, serde_json::Value) {
    static SHARED: OnceLock<(Setup, Server, serde_json::Value)> = OnceLock::new();
    SHARED.get_or_init(|| {
        let setup = Setup::new("0.002");
        let products = setup.sources().join("products_data.db");
        let db = rusqlite::Connection::open(&products).unwrap_or_else(|e| panic!("{}: {e}", products.display()));
        db.execute("UPDATE products SET product_name = ?1 || product_name", [MARKUP]).unwrap_or_else(|e| panic!("{e}"));
        drop(db);
        let store = setup.sqlite();
        setup.run(&["--ingest-date", "2026-11-23"], &store);
        setup.run(&["--ingest-date", "2026-11-24"], &store);
        let runs = setup.runs(&store);
        let server = Server::start(&setup, &store, &[]);
        (setup, server, runs)
    })
}

fn basic() -> String {
    let credentials = base64::engine::general_purpose::STANDARD.encode(format!("analyst:{PASSWORD}"));
    format!("Basic {credentials}")
}

/// `n` as the pages write it (1,234,567).
fn number(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn latest(runs: &serde_json::Value) -> &serde_json::Value {
    &runs[0]
}

fn tables(run: &serde_json::Value) -> &[serde_json::Value] {
    run["tables"].as_array().map(Vec::as_slice).unwrap_or_default()
}

fn field<'a>(value: &'a serde_json::Value, key: &str) -> &'a str {
    value[key].as_str().unwrap_or_else(|| panic!("no `{key}` in {value}"))
}

#[test]
fn the_pages_refuse_access_without_credentials() {
    let (_, server, _) = served();
    let wrong =
        format!("Basic {}", base64::engine::general_purpose::STANDARD.encode("analyst:not-the-password-at-all"));
    for path in PAGES.iter().copied().chain(["/ui/style.css", "/metrics"]) {
        let answer = server.get(path, &[]);
        assert_eq!(answer.status, 401, "{path} without credentials: {}", answer.text());
        assert!(
            answer.headers.iter().any(|(n, v)| n.eq_ignore_ascii_case("www-authenticate") && v.starts_with("Basic")),
            "{path}: a browser is asked for a password"
        );
        assert_eq!(server.get(path, &[("Authorization", &wrong)]).status, 401, "{path} with a wrong password");
        assert!(!answer.text().contains("dm_"), "{path}: a refusal shows no data");
    }
}

#[test]
fn every_page_shows_the_run_log_and_data_as_text() {
    let (_, server, runs) = served();
    let auth = basic();
    let run = latest(runs);
    let run_id = field(run, "run_id");
    let mut bodies = BTreeMap::new();
    for path in PAGES {
        let answer = server.get(path, &[("Authorization", &auth)]);
        assert_eq!(answer.status, 200, "{path}: {}", answer.text());
        assert_eq!(answer.header("content-type"), Some("text/html; charset=utf-8"), "{path}");
        let policy = answer.header("content-security-policy").unwrap_or_default();
        assert!(policy.contains("default-src 'none'") && !policy.contains("unsafe"), "{path}: {policy}");
        let body = answer.text();
        assert!(!body.to_lowercase().contains("<script"), "{path} holds a script (markup from data not escaped?)");
        bodies.insert(path, body);
    }

    // The graph: every table of the latest run with its plugin and counts.
    let graph = &bodies["/ui"];
    assert!(graph.contains(run_id), "the pipeline page shows the latest run");
    for t in tables(run) {
        let table = field(t, "table");
        assert!(graph.contains(table), "{table} missing from the pipeline page");
        if let Some(sha) = t["plugin_sha256"].as_str() {
            assert!(graph.contains(sha), "{table}: its plugin's sha256 {sha} is not shown");
            assert!(graph.contains(&sha[..12]), "{table}: the graph names the plugin by its short sha256");
        }
        let rows = t["rows"].as_u64().unwrap_or_else(|| panic!("{t}"));
        assert!(graph.contains(&number(rows)), "{table}: {rows} rows not shown");
    }

    // The runs: both, each stage's time, one rows chart per table.
    let page = &bodies["/ui/runs"];
    for r in runs.as_array().into_iter().flatten() {
        assert!(page.contains(field(r, "run_id")), "{} missing from the runs page", r["run_id"]);
        let stages: Vec<&str> = r["stages"].as_array().into_iter().flatten().map(|s| field(s, "stage")).collect();
        assert_eq!(stages, ["bronze", "silver", "gold"], "the run log keeps each stage's time");
    }
    let series = tables(run).len();
    assert!(page.matches("<svg").count() > series, "a stage chart and one rows chart per table:\n{page}");

    // The quarantine: each reason of the latest run with its count, and a sample.
    let page = &bodies["/ui/quarantine"];
    let mut reasons = 0;
    for t in tables(run) {
        for (reason, count) in t["reasons"].as_object().into_iter().flatten() {
            let row = format!(
                "<td>{}</td><td>{}</td><td>{reason}</td><td class=\"n\">{}</td>",
                field(t, "stage"),
                field(t, "table"),
                number(count.as_u64().unwrap_or_default())
            );
            assert!(page.contains(&row), "{row} missing from the quarantine page");
            assert!(
                page.contains(&format!("{} · {reason}", field(t, "table"))),
                "no sample of {reason} in {}",
                field(t, "table")
            );
            reasons += 1;
        }
    }
    assert!(reasons > 0, "the generated sources have dirt: some reason must be shown");
    assert!(page.contains("Bronze row"), "the sample gives each row's position in the source");

    // Gold: every table, its rows and URLs, and the markup as text.
    let page = &bodies["/ui/gold"];
    for t in tables(run).iter().filter(|t| t["stage"] == "gold") {
        let table = field(t, "table");
        assert!(page.contains(&format!("<h2>{table}</h2>")), "{table} missing from the Gold page");
        assert!(page.contains(&format!("{} rows", number(t["rows"].as_u64().unwrap_or_default()))), "{table}");
        assert!(page.contains(&format!("href=\"/odata/{table}\"")), "{table}: no OData link");
    }
    assert!(page.contains("?format=csv&amp;page_size=1000"), "a CSV link per table");
    assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;&lt;b&gt;x&lt;/b&gt;"), "product names shown as text");

    // The CSV link answers CSV.
    let csv = server.get("/gold/sales/by-product?format=csv&page_size=5", &[("Authorization", &auth)]);
    assert_eq!(csv.status, 200, "{}", csv.text());
    assert!(csv.header("content-type").is_some_and(|t| t.starts_with("text/csv")));
    assert!(csv.text().starts_with("product_id,"), "{}", csv.text());
}

#[test]
fn metrics_read_by_a_prometheus_parser_equal_the_run_log() {
    let (_, server, runs) = served();
    let auth = basic();
    assert_eq!(server.get("/ui/runs", &[("Authorization", &auth)]).status, 200);
    let answer = server.get("/metrics", &[("Authorization", &auth)]);
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert!(answer.header("content-type").is_some_and(|t| t.starts_with("text/plain; version=0.0.4")));
    let lines = answer.text().lines().map(|l| Ok(l.to_owned())).collect::<Vec<std::io::Result<String>>>();
    let scrape = prometheus_parse::Scrape::parse(lines.into_iter()).unwrap_or_else(|e| panic!("{e}"));
    let value = |name: &str, labels: &[(&str, &str)]| -> f64 {
        let sample = scrape
            .samples
            .iter()
            .find(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
            .unwrap_or_else(|| panic!("no {name}{labels:?} in:\n{}", answer.text()));
        match sample.value {
            prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => panic!("{name} is not a plain value"),
        }
    };
    let all = runs.as_array().map(Vec::as_slice).unwrap_or_default();
    let succeeded = all.iter().filter(|r| r["status"] == "succeeded").count();
    assert_eq!(value("medallion_runs", &[("status", "succeeded")]), succeeded as f64);
    let run = latest(runs);
    let run_id = field(run, "run_id");
    assert_eq!(value("medallion_gold_served_info", &[("run_id", run_id)]), 1.0);
    assert_eq!(value("medallion_last_run_info", &[("run_id", run_id), ("status", "succeeded")]), 1.0);
    for stage in run["stages"].as_array().into_iter().flatten() {
        let seconds = stage["seconds"].as_f64().unwrap_or_default();
        assert_eq!(value("medallion_last_run_stage_seconds", &[("stage", field(stage, "stage"))]), seconds);
    }
    for t in tables(run) {
        let labels = [("stage", field(t, "stage")), ("table", field(t, "table"))];
        assert_eq!(value("medallion_last_run_rows", &labels), t["rows"].as_u64().unwrap_or_default() as f64);
        for (reason, count) in t["reasons"].as_object().into_iter().flatten() {
            let labels = [labels[0], labels[1], ("reason", reason.as_str())];
            assert_eq!(
                value("medallion_last_run_quarantined_rows", &labels),
                count.as_u64().unwrap_or_default() as f64
            );
        }
    }
    // This very test's page request was counted, and timed.
    assert!(value("medallion_http_requests_total", &[("route", "/ui"), ("status", "200")]) >= 1.0);
    let histogram = scrape
        .samples
        .iter()
        .find(|s| s.metric == "medallion_http_request_duration_seconds" && s.labels.get("route") == Some("/ui"))
        .unwrap_or_else(|| panic!("no latency histogram for /ui"));
    match &histogram.value {
        prometheus_parse::Value::Histogram(buckets) => {
            assert!(buckets.last().is_some_and(|b| b.count >= 1.0), "{buckets:?}");
        }
        other => panic!("the latency is not a histogram: {other:?}"),
    }
}

/// The run log's stages and counts by status come from PostgreSQL as well.
#[test]
fn the_pages_and_metrics_read_the_run_log_from_postgresql_too() {
    let (_, server) = crate::api::postgres_served();
    let auth = basic();
    let runs = server.get("/ui/runs", &[("Authorization", &auth)]);
    assert_eq!(runs.status, 200, "{}", runs.text());
    let metrics = server.get("/metrics", &[("Authorization", &auth)]).text();
    let lines = metrics.lines().map(|l| Ok(l.to_owned())).collect::<Vec<std::io::Result<String>>>();
    let scrape = prometheus_parse::Scrape::parse(lines.into_iter()).unwrap_or_else(|e| panic!("{e}"));
    let succeeded =
        scrape.samples.iter().find(|s| s.metric == "medallion_runs" && s.labels.get("status") == Some("succeeded"));
    assert!(succeeded.is_some_and(|s| matches!(s.value, prometheus_parse::Value::Gauge(n) if n >= 1.0)), "{metrics}");
    let gold = scrape
        .samples
        .iter()
        .find(|s| s.metric == "medallion_last_run_stage_seconds" && s.labels.get("stage") == Some("gold"));
    assert!(gold.is_some(), "the run log on PostgreSQL keeps Gold's time:\n{metrics}");
}

#[test]
fn a_real_browser_shows_every_page_with_no_error_and_no_request_elsewhere() {
    let (_, server, runs) = served();
    let root = medallion_tests::repo_root();
    let shots = root.join("target/ui-screenshots");
    std::fs::create_dir_all(&shots).unwrap_or_else(|e| panic!("{}: {e}", shots.display()));
    let output = Command::new("node")
        .arg(root.join("tests/ui/check.mjs"))
        .arg(format!("http://{}", server.address))
        .arg("analyst")
        .arg(PASSWORD)
        .arg(&shots)
        .args(PAGES)
        .output()
        .unwrap_or_else(|e| panic!("cannot run node ({e}): scripts/test installs Node's playwright-core and Chromium"));
    let (stdout, stderr) = text(&output);
    assert!(
        output.status.success(),
        "the browser check failed (scripts/test installs chromium and runs npm ci in tests/ui):\n{stdout}\n{stderr}"
    );
    let report: Vec<serde_json::Value> = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    assert_eq!(report.len(), PAGES.len());
    let run = latest(runs);
    for page in &report {
        let path = field(page, "path");
        assert_eq!(page["status"], 200, "{path}");
        assert_eq!(
            page["console_errors"],
            serde_json::json!([]),
            "{path}: the console shows errors ({})",
            page["failed"]
        );
        assert_eq!(page["failed"], serde_json::json!([]), "{path}: a resource failed");
        assert_eq!(page["outside_requests"], serde_json::json!([]), "{path}: a request left the server");
        assert_eq!(page["dialogs"], serde_json::json!([]), "{path}: a script ran");
        assert_eq!(page["stylesheet_applied"], true, "{path}: the style sheet did not apply");
        let shot = std::path::Path::new(field(page, "screenshot"));
        assert!(shot.metadata().is_ok_and(|m| m.len() > 1000), "{path}: no screenshot at {}", shot.display());
        let shown = field(page, "text");
        match path {
            "/ui" => {
                for t in tables(run) {
                    assert!(shown.contains(field(t, "table")), "{path}: {} not shown", t["table"]);
                }
            }
            "/ui/runs" => assert!(shown.contains(field(run, "run_id")), "{path}: the latest run not shown"),
            "/ui/quarantine" => {
                let t = tables(run).iter().find(|t| t["reasons"].as_object().is_some_and(|r| !r.is_empty()));
                let t = t.unwrap_or_else(|| panic!("no reason in the run log"));
                let (reason, count) =
                    t["reasons"].as_object().and_then(|r| r.iter().next()).unwrap_or_else(|| panic!());
                let line = format!(
                    "{}\t{}\t{reason}\t{}",
                    field(t, "stage"),
                    field(t, "table"),
                    number(count.as_u64().unwrap_or(0))
                );
                assert!(shown.contains(&line), "{path}: `{line}` not shown in:\n{shown}");
            }
            _ => assert!(shown.contains(MARKUP.trim_end()), "{path}: the product names are not shown as text"),
        }
    }
}
