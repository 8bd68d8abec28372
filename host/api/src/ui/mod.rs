//! The pages under `/ui`, behind the same authentication as the data: the
//! pipeline as a graph, the runs, the quarantine and the Gold tables.
//!
//! Rendered on the server from what it already holds (the run log, the Gold
//! snapshot and the quarantine sample the watcher reads once per Silver
//! run): a page reads nothing from the lake or the store, and carries no
//! script (charts are SVG). Every value from data is escaped.

mod html;
mod svg;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use medallion_pipeline::Plan;
use serde_json::Value as Json;
use warp::http::StatusCode;

use crate::snapshot::{Snapshot, Table};
use crate::{ApiError, Reply, parameters, render, truncate};
use html::{E, Nav, number, page, seconds, url_value};

/// Runs the pages show (charts and lists).
const RUNS_SHOWN: usize = 20;
/// Rows in a Gold table's preview.
const PREVIEW_ROWS: usize = 10;
/// Reasons listed per table on the quarantine page; the rest are summed.
const REASONS_SHOWN: usize = 50;

/// The pipeline's shape, from `pipeline.yaml`: what feeds what.
#[derive(Debug, Clone, Default)]
pub struct Pipeline {
    /// Bronze tables and the source each lands from.
    pub bronze: Vec<(String, String)>,
    /// Silver tables.
    pub silver: Vec<Step>,
    /// Gold tables.
    pub gold: Vec<Step>,
}

/// A table built by a step of the pipeline.
#[derive(Debug, Clone, Default)]
pub struct Step {
    /// The table.
    pub table: String,
    /// The Bronze table it is cleaned from, if it is.
    pub bronze: Option<String>,
    /// The Silver tables it reads: its parents (foreign keys and `take`
    /// columns) and the tables its SQL names.
    pub reads: Vec<String>,
    /// The Silver tables its rows are checked against (foreign keys).
    pub parents: Vec<String>,
    /// The plugin that builds it, as named in the pipeline.
    pub plugin: Option<String>,
    /// Its column in the graph: Silver tables after the tables they read.
    pub depth: usize,
}

impl Pipeline {
    /// The shape of `plan`.
    pub fn of(plan: &Plan) -> Self {
        let bronze = plan
            .sources
            .iter()
            .map(|s| {
                let (medallion_lake::SourceSpec::Csv { path, .. } | medallion_lake::SourceSpec::Sqlite { path, .. }) =
                    s;
                let file = path.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default();
                (s.table().to_owned(), file)
            })
            .collect();
        let mut silver: Vec<Step> = plan
            .silver
            .tables
            .iter()
            .map(|(name, spec)| Step {
                table: name.clone(),
                bronze: spec.from.clone(),
                reads: plan.silver.reads(name),
                parents: spec.parents.iter().map(|p| p.table.clone()).collect(),
                plugin: spec.clean.as_ref().map(|c| c.plugin.clone()),
                depth: 0,
            })
            .collect();
        // Depth: one more than the deepest table read (`host validate`
        // refuses cycles; the bound keeps a bad plan from looping).
        for _ in 0..silver.len() {
            let depths: BTreeMap<String, usize> = silver.iter().map(|s| (s.table.clone(), s.depth)).collect();
            for step in &mut silver {
                step.depth = step.reads.iter().filter_map(|r| depths.get(r)).map(|d| d + 1).max().unwrap_or(0);
            }
        }
        let gold = plan
            .gold
            .tables
            .iter()
            .map(|(name, spec)| Step {
                table: name.clone(),
                bronze: None,
                reads: plan.gold.reads(spec, plan.silver.tables.keys()),
                parents: Vec::new(),
                plugin: spec.kpi.as_ref().map(|k| k.plugin.clone()),
                depth: 0,
            })
            .collect();
        Pipeline { bronze, silver, gold }
    }
}

/// Answers `GET /ui...`.
pub(crate) fn handle(snapshot: &Snapshot, pipeline: &Pipeline, path: &str, query: &str) -> Result<Reply, ApiError> {
    let mut params = parameters(query)?;
    let run = params.remove("run");
    if let Some(name) = params.keys().next() {
        let message = format!("unknown parameter `{}`; the pages take `run`", truncate(name));
        return Err(ApiError { parameter: Some(truncate(name)), ..ApiError::new(StatusCode::BAD_REQUEST, message) });
    }
    let run = match run {
        Some(id) => Some(snapshot.runs.iter().find(|r| r["run_id"] == id.as_str()).ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                format!("no run `{}` among the last {} runs", truncate(&id), snapshot.runs.len()),
            )
        })?),
        None => None,
    };
    let body = match path.trim_end_matches('/') {
        "/ui" => pipeline_page(snapshot, pipeline, run),
        "/ui/runs" => runs_page(snapshot),
        "/ui/quarantine" => quarantine_page(snapshot, run),
        "/ui/gold" => gold_page(snapshot),
        "/ui/icon.svg" => {
            return Ok(Reply { cacheable: false, ..Reply::with_type("image/svg+xml", html::ICON.into()) });
        }
        "/ui/style.css" => {
            return Ok(Reply { cacheable: false, ..Reply::with_type("text/css; charset=utf-8", html::STYLE.into()) });
        }
        _ => {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                format!("no page {}; the pages are /ui, /ui/runs, /ui/quarantine and /ui/gold", truncate(path)),
            ));
        }
    };
    let mut reply = Reply { cacheable: false, ..Reply::with_type("text/html; charset=utf-8", body.into_bytes()) };
    reply.extra.push((
        warp::http::header::CONTENT_SECURITY_POLICY,
        "default-src 'none'; style-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
            .to_owned(),
    ));
    reply.extra.push((warp::http::header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_owned()));
    reply.extra.push((warp::http::header::REFERRER_POLICY, "no-referrer".to_owned()));
    reply.extra.push((warp::http::header::CACHE_CONTROL, "no-store".to_owned()));
    Ok(reply)
}

/// A run's text field.
fn text<'a>(run: &'a Json, key: &str) -> &'a str {
    run[key].as_str().unwrap_or_default()
}

/// A run's tables.
fn tables(run: &Json) -> &[Json] {
    run["tables"].as_array().map(Vec::as_slice).unwrap_or_default()
}

/// Run `run`'s entry for `table` of `stage`.
fn entry<'a>(run: &'a Json, stage: &str, table: &str) -> Option<&'a Json> {
    tables(run).iter().find(|t| t["stage"] == stage && t["table"] == table)
}

/// Links to the other runs, `current` marked.
fn run_links(snapshot: &Snapshot, page: &str, current: &str) -> String {
    let mut out = String::from("<p class=\"runs\">Runs: ");
    for run in snapshot.runs.iter().take(RUNS_SHOWN) {
        let id = text(run, "run_id");
        let mark = if id == current { " aria-current=\"true\"" } else { "" };
        let _ = write!(
            out,
            "<a href=\"{page}?run={}\"{mark} class=\"status-{}\">{}</a>",
            url_value(id),
            E(text(run, "status")),
            E(id)
        );
    }
    out.push_str("</p>\n");
    out
}

/// A run's peak memory and budget, `-` where its log does not say.
fn memory(run: &Json) -> String {
    use medallion_common::memory::size_text;
    match (run["peak_memory"].as_u64(), run["memory_budget"].as_u64()) {
        (Some(peak), Some(budget)) => format!("{} ({})", size_text(peak), size_text(budget)),
        (Some(peak), None) => size_text(peak),
        _ => "-".to_owned(),
    }
}

/// A run's one-line summary.
fn run_line(run: &Json) -> String {
    let total: f64 = run["stages"].as_array().into_iter().flatten().filter_map(|s| s["seconds"].as_f64()).sum();
    let mut out = format!(
        "<p>Run <code>{}</code>: <span class=\"status-{}\">{}</span>, started {}, {} in its stages",
        E(text(run, "run_id")),
        E(text(run, "status")),
        E(text(run, "status")),
        E(text(run, "started_at")),
        seconds(total)
    );
    if let Some(error) = run["error"].as_str() {
        let _ = write!(out, "<br><span class=\"bad\">{}</span>", E(error.lines().next().unwrap_or_default()));
    }
    out.push_str("</p>\n");
    out
}

/// A plugin as a run used it: `name version · sha256…` (short).
fn plugin_used(entry: Option<&Json>, named: Option<&str>) -> String {
    match entry.and_then(|e| e["plugin"].as_str()) {
        Some(name) => {
            let sha = entry.and_then(|e| e["plugin_sha256"].as_str()).unwrap_or_default();
            let version = entry.and_then(|e| e["plugin_version"].as_str()).unwrap_or_default();
            format!("{name} {version} · {}", sha.get(..12).unwrap_or(sha))
        }
        None => named.map_or_else(|| "no plugin".to_owned(), |n| format!("{n} (not run)")),
    }
}

/// `/ui`: the pipeline as a graph, with a run's figures on each table.
fn pipeline_page(snapshot: &Snapshot, pipeline: &Pipeline, run: Option<&Json>) -> String {
    // By default the run whose Gold is served (the latest may be running).
    let served = snapshot.runs.iter().find(|r| snapshot.run_id.as_deref() == Some(text(r, "run_id")));
    let run = run.or(served).or(snapshot.runs.first());
    let empty = Json::Null;
    let run_json = run.unwrap_or(&empty);
    let mut body = String::from("<h1>Pipeline</h1>\n");
    match run {
        Some(run) => {
            body.push_str(&run_links(snapshot, "/ui", text(run, "run_id")));
            body.push_str(&run_line(run));
        }
        None => body.push_str("<p class=\"note\">No run yet: run <code>host run pipeline.yaml</code>.</p>\n"),
    }
    let gold_column = 2 + pipeline.silver.iter().map(|s| s.depth).max().unwrap_or(0);
    let mut nodes = Vec::new();
    let mut edges = Vec::new();
    for (table, source) in &pipeline.bronze {
        let e = entry(run_json, "bronze", table);
        let counts = e.map_or_else(|| "not landed in this run".to_owned(), |e| counts_line(None, e));
        nodes.push(svg::Node {
            id: format!("bronze:{table}"),
            zone: "bronze",
            lines: [table.clone(), format!("from {source}"), counts],
            warn: e.is_some_and(|e| e["quarantined"].as_u64().unwrap_or(0) > 0),
            column: 0,
        });
    }
    for (zone, steps) in [("silver", &pipeline.silver), ("gold", &pipeline.gold)] {
        for step in steps {
            let e = entry(run_json, zone, &step.table);
            // Conservation: a cleaned table's Bronze rows are its rows plus
            // the rows it quarantined.
            let rows_in = e.and_then(|e| {
                step.bronze.is_some().then(|| e["rows"].as_u64().unwrap_or(0) + e["quarantined"].as_u64().unwrap_or(0))
            });
            let counts = e.map_or_else(|| "not built in this run".to_owned(), |e| counts_line(rows_in, e));
            nodes.push(svg::Node {
                id: format!("{zone}:{}", step.table),
                zone,
                lines: [step.table.clone(), plugin_used(e, step.plugin.as_deref()), counts],
                warn: e.is_some_and(|e| e["quarantined"].as_u64().unwrap_or(0) > 0),
                column: if zone == "silver" { 1 + step.depth } else { gold_column },
            });
            let to = format!("{zone}:{}", step.table);
            edges.extend(step.bronze.iter().map(|b| (format!("bronze:{b}"), to.clone())));
            edges.extend(step.reads.iter().map(|r| (format!("silver:{r}"), to.clone())));
        }
    }
    body.push_str(&svg::graph(&nodes, &edges));
    body.push_str(&lineage_table(pipeline, run_json));
    page("Pipeline", Nav::Pipeline, snapshot.run_id.as_deref(), &body)
}

/// `in N → out M · quarantined Q` for a run's table entry.
fn counts_line(rows_in: Option<u64>, entry: &Json) -> String {
    let rows = entry["rows"].as_u64().unwrap_or(0);
    let quarantined = entry["quarantined"].as_u64().unwrap_or(0);
    let mut out = match rows_in {
        Some(n) => format!("in {} → out {}", number(n), number(rows)),
        None => format!("{} rows", number(rows)),
    };
    if quarantined > 0 {
        let _ = write!(out, " · quarantined {}", number(quarantined));
    }
    out
}

/// The graph as a table: every Silver and Gold table with its plugin in
/// full (sha256) and its counts.
fn lineage_table(pipeline: &Pipeline, run: &Json) -> String {
    let mut out = String::from(
        "<h2>Tables</h2>\n<table><tr><th>stage</th><th>table</th><th>reads</th><th>checked against</th>\
         <th>plugin</th><th>version</th><th>sha256</th><th>rows</th><th>quarantined</th></tr>\n",
    );
    for (zone, steps) in [("silver", &pipeline.silver), ("gold", &pipeline.gold)] {
        for step in steps {
            let e = entry(run, zone, &step.table);
            let field = |key: &str| e.and_then(|e| e[key].as_str()).unwrap_or("");
            let count = |key: &str| e.and_then(|e| e[key].as_u64()).map(number).unwrap_or_else(|| "-".to_owned());
            let _ = writeln!(
                out,
                "<tr><td>{zone}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td><code>{}</code></td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
                E(&step.table),
                E(&step.bronze.iter().chain(&step.reads).cloned().collect::<Vec<_>>().join(", ")),
                E(&step.parents.join(", ")),
                E(e.and_then(|e| e["plugin"].as_str()).or(step.plugin.as_deref()).unwrap_or("")),
                E(field("plugin_version")),
                E(field("plugin_sha256")),
                count("rows"),
                count("quarantined"),
            );
        }
    }
    out.push_str("</table>\n");
    out
}

/// `/ui/runs`: the last runs, time per stage, rows per table across runs.
fn runs_page(snapshot: &Snapshot) -> String {
    let runs: Vec<&Json> = snapshot.runs.iter().take(RUNS_SHOWN).collect();
    let mut body =
        format!("<h1>Runs</h1>\n<p class=\"note\">The last {} runs of the run log, newest first.</p>\n", runs.len());
    if runs.is_empty() {
        body.push_str("<p class=\"note\">No run yet: run <code>host run pipeline.yaml</code>.</p>\n");
        return page("Runs", Nav::Runs, snapshot.run_id.as_deref(), &body);
    }
    body.push_str("<h2>Time per stage</h2>\n");
    let bars: Vec<svg::StageBar> = runs
        .iter()
        .map(|run| svg::StageBar {
            run: text(run, "run_id").to_owned(),
            status: text(run, "status").to_owned(),
            stages: run["stages"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|s| (text(s, "stage").to_owned(), s["seconds"].as_f64().unwrap_or(0.0)))
                .collect(),
        })
        .collect();
    body.push_str(&svg::stage_bars(&bars));
    let _ = write!(
        body,
        "\n<h2>Rows per table</h2>\n<p class=\"note\">Oldest run on the left; a fall of more than {:.0}% from one run to the next is marked in red.</p>\n<div class=\"grid\">",
        svg::DROP * 100.0
    );
    let oldest_first: Vec<&Json> = runs.iter().rev().copied().collect();
    let mut series: BTreeSet<(usize, String, String)> = BTreeSet::new();
    for run in &oldest_first {
        for t in tables(run) {
            let stage = text(t, "stage");
            let order = ["bronze", "silver", "gold"].iter().position(|s| *s == stage).unwrap_or(3);
            series.insert((order, stage.to_owned(), text(t, "table").to_owned()));
        }
    }
    for (_, stage, table) in &series {
        let points: Vec<(String, Option<u64>)> = oldest_first
            .iter()
            .map(|run| (text(run, "run_id").to_owned(), entry(run, stage, table).and_then(|e| e["rows"].as_u64())))
            .collect();
        body.push_str(&svg::rows_line(&format!("{stage} · {table}"), &points));
    }
    body.push_str("</div>\n<h2>The runs</h2>\n");
    body.push_str(
        "<table><tr><th>run</th><th>status</th><th>started</th><th>bronze</th><th>silver</th><th>gold</th>\
         <th>peak memory (budget)</th><th>rows quarantined</th><th>error</th></tr>\n",
    );
    for run in &runs {
        let id = text(run, "run_id");
        let stage_time = |stage: &str| {
            run["stages"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|s| s["stage"] == stage)
                .and_then(|s| s["seconds"].as_f64())
                .map_or_else(|| "-".to_owned(), seconds)
        };
        let quarantined: u64 = tables(run).iter().filter_map(|t| t["quarantined"].as_u64()).sum();
        let _ = writeln!(
            body,
            "<tr><td><a href=\"/ui?run={}\"><code>{}</code></a></td><td class=\"status-{}\">{}</td><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\"><a href=\"/ui/quarantine?run={}\">{}</a></td><td>{}</td></tr>",
            url_value(id),
            E(id),
            E(text(run, "status")),
            E(text(run, "status")),
            E(text(run, "started_at")),
            stage_time("bronze"),
            stage_time("silver"),
            stage_time("gold"),
            memory(run),
            url_value(id),
            number(quarantined),
            E(run["error"].as_str().and_then(|e| e.lines().next()).unwrap_or("")),
        );
    }
    body.push_str("</table>\n");
    page("Runs", Nav::Runs, snapshot.run_id.as_deref(), &body)
}

/// `/ui/quarantine`: a run's quarantined rows per table and reason, and a
/// sample of them when the lake holds that run's Silver.
fn quarantine_page(snapshot: &Snapshot, run: Option<&Json>) -> String {
    let mut body = String::from("<h1>Quarantine</h1>\n");
    // By default, the latest run that quarantined or built Silver.
    let run = run.or_else(|| snapshot.runs.iter().find(|r| tables(r).iter().any(|t| t["stage"] == "silver")));
    let Some(run) = run else {
        body.push_str("<p class=\"note\">No run has built Silver yet.</p>\n");
        return page("Quarantine", Nav::Quarantine, snapshot.run_id.as_deref(), &body);
    };
    let id = text(run, "run_id");
    body.push_str(&run_links(snapshot, "/ui/quarantine", id));
    body.push_str(&run_line(run));
    let mut counts: Vec<(&str, &str, String, u64)> = Vec::new();
    for t in tables(run) {
        let (stage, table) = (text(t, "stage"), text(t, "table"));
        match t["reasons"].as_object().filter(|r| !r.is_empty()) {
            Some(reasons) => {
                let reasons = crate::top_reasons(reasons, REASONS_SHOWN);
                counts.extend(reasons.top.into_iter().map(|(r, n)| (stage, table, r.to_owned(), n)));
                if reasons.others > 0 {
                    let others = format!("({} other reasons)", number(reasons.others as u64));
                    counts.push((stage, table, others, reasons.other_rows));
                }
            }
            None if t["quarantined"].as_u64().unwrap_or(0) > 0 => {
                counts.push((stage, table, "(no reason recorded)".to_owned(), t["quarantined"].as_u64().unwrap_or(0)));
            }
            None => {}
        }
    }
    if counts.is_empty() {
        body.push_str("<p>This run quarantined no row.</p>\n");
        return page("Quarantine", Nav::Quarantine, snapshot.run_id.as_deref(), &body);
    }
    body.push_str("<h2>Rows per table and reason</h2>\n<table><tr><th>stage</th><th>table</th><th>reason</th><th>rows</th></tr>\n");
    for (stage, table, reason, n) in &counts {
        let _ = writeln!(
            body,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td class=\"n\">{}</td></tr>",
            E(stage),
            E(table),
            E(reason),
            number(*n)
        );
    }
    body.push_str("</table>\n");
    body.push_str(&samples(snapshot, id));
    page("Quarantine", Nav::Quarantine, snapshot.run_id.as_deref(), &body)
}

/// The sampled rows of run `id`, per table and reason, or why there are none.
fn samples(snapshot: &Snapshot, id: &str) -> String {
    let mut out = String::from("<h2>Sample rows</h2>\n");
    let quarantine = &snapshot.quarantine;
    if let Some(error) = &quarantine.error {
        let _ = writeln!(
            out,
            "<p class=\"bad\">The lake could not be read (the server tries again every 30 s): {}</p>",
            E(error)
        );
    }
    let sample = match &quarantine.sample {
        Some(sample) if sample.run_id == id => sample,
        Some(sample) => {
            let _ = writeln!(
                out,
                "<p class=\"note\">The lake holds the quarantined rows of the Silver of run <a href=\"/ui/quarantine?run={}\"><code>{}</code></a> only; the counts above are this run's, from the run log.</p>",
                url_value(&sample.run_id),
                E(&sample.run_id)
            );
            return out;
        }
        None if !quarantine.checked => {
            out.push_str("<p class=\"note\">The server reads the sample from the lake right after it starts: reload in a moment.</p>\n");
            return out;
        }
        None => {
            if quarantine.error.is_none() {
                out.push_str("<p class=\"note\">The lake holds no Silver yet.</p>\n");
            }
            return out;
        }
    };
    let _ = writeln!(
        out,
        "<p class=\"note\">Up to {} rows per table and reason, from the first quarantine file of each kind; <em>Bronze row</em> is the row's position in the Bronze table (from 0).</p>",
        crate::quarantine::PER_REASON
    );
    for (table, taken) in &sample.tables {
        for (reason, rows) in &taken.reasons {
            let _ = writeln!(
                out,
                "<h3>{} · {} <span class=\"note\">(source {})</span></h3>",
                E(table),
                E(reason),
                E(&taken.source)
            );
            let names: Vec<&str> =
                rows.first().map(|r| r.values.iter().map(|(n, _)| n.as_str()).collect()).unwrap_or_default();
            out.push_str("<table><tr><th>Bronze row</th>");
            for name in &names {
                let _ = write!(out, "<th>{}</th>", E(name));
            }
            out.push_str("</tr>\n");
            for row in rows {
                let position = row.position.map(number).unwrap_or_default();
                let _ = write!(out, "<tr><td class=\"n\">{position}</td>");
                for (_, value) in &row.values {
                    match value {
                        Some(v) => {
                            let _ = write!(out, "<td>{}</td>", E(v));
                        }
                        None => out.push_str("<td class=\"note\">null</td>"),
                    }
                }
                out.push_str("</tr>\n");
            }
            out.push_str("</table>\n");
        }
    }
    out
}

/// `/ui/gold`: each Gold table with its columns, rows, plugin, a preview
/// and its URLs.
fn gold_page(snapshot: &Snapshot) -> String {
    let mut body = String::from("<h1>Gold tables</h1>\n");
    if snapshot.tables.is_empty() {
        body.push_str(
            "<p class=\"note\">The Gold store holds no table yet: run <code>host run pipeline.yaml</code>.</p>\n",
        );
        return page("Gold tables", Nav::Gold, snapshot.run_id.as_deref(), &body);
    }
    let published = snapshot.runs.iter().find(|r| snapshot.run_id.as_deref() == Some(text(r, "run_id")));
    body.push_str("<p class=\"links\">");
    for table in snapshot.tables.iter() {
        let _ = write!(body, "<a href=\"#{}\">{}</a>", E(&table.name), E(&table.name));
    }
    body.push_str("</p>\n");
    for table in snapshot.tables.iter() {
        body.push_str(&gold_table(table, published.and_then(|run| entry(run, "gold", &table.name))));
    }
    page("Gold tables", Nav::Gold, snapshot.run_id.as_deref(), &body)
}

fn gold_table(table: &Table, entry: Option<&Json>) -> String {
    let name = &table.name;
    let mut out = format!("<section class=\"table\" id=\"{}\"><h2>{}</h2>\n", E(name), E(name));
    if !table.description.is_empty() {
        let _ = writeln!(out, "<p>{}</p>", E(&table.description));
    }
    let key: Vec<&str> = table.key.iter().map(|&k| table.data.columns[k].name.as_str()).collect();
    let _ = writeln!(
        out,
        "<p>{} rows · key {} · made by {}</p>",
        number(table.data.rows() as u64),
        E(&key.join(", ")),
        E(&plugin_used(entry, None))
    );
    out.push_str("<p class=\"links\">");
    if let Some(route) = table.route.as_ref().filter(|r| r.starts_with("/gold/")) {
        let _ = write!(
            out,
            "<a href=\"{}\">REST (JSON)</a><a href=\"{}?format=csv&amp;page_size={}\">CSV (first {} rows)</a>",
            E(route),
            E(route),
            crate::rest::MAX_PAGE_SIZE,
            number(crate::rest::MAX_PAGE_SIZE as u64)
        );
    }
    let _ =
        writeln!(out, "<a href=\"/odata/{}\">OData</a><a href=\"/odata/$metadata\">OData $metadata</a></p>", E(name));
    out.push_str("<h3>Columns</h3><table><tr><th>column</th><th>type</th></tr>\n");
    for column in &table.data.columns {
        let _ = writeln!(out, "<tr><td>{}</td><td><code>{}</code></td></tr>", E(&column.name), column.kind.sql());
    }
    out.push_str("</table>\n");
    let order = table.order(&[(table.order_by, true)]);
    let rows: Vec<usize> = order.iter().take(PREVIEW_ROWS).map(|&r| r as usize).collect();
    let _ = write!(
        out,
        "<h3>Preview</h3><p class=\"note\">The first {} rows by {} descending, as the API's first page.</p><table><tr>",
        rows.len(),
        E(&table.data.columns[table.order_by].name)
    );
    for column in &table.data.columns {
        let _ = write!(out, "<th>{}</th>", E(&column.name));
    }
    out.push_str("</tr>\n");
    for &row in &rows {
        out.push_str("<tr>");
        for column in &table.data.columns {
            match render::cell_text(column, row) {
                Some(text) if column.kind == medallion_store::SqlType::Text => {
                    let _ = write!(out, "<td>{}</td>", E(&text));
                }
                Some(text) => {
                    let _ = write!(out, "<td class=\"n\">{}</td>", E(&text));
                }
                None => out.push_str("<td class=\"note\">null</td>"),
            }
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</table></section>\n");
    out
}
