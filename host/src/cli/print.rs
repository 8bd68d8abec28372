//! What a stage did, printed as tables of rows, reasons and times: shared by
//! `host run` and `host ingest`.

use medallion_engine::run::{StageReport, StageSummary};
use medallion_engine::silver::SilverReport;
use medallion_lake::BronzeReport;

/// What a stage did, as tables of rows, reasons and times.
pub(crate) fn print_stage(summary: &StageSummary) {
    let (stage, run, seconds, to) = (summary.stage.name(), &summary.run_id, summary.seconds, &summary.written_to);
    match &summary.report {
        StageReport::Nothing => println!("{stage}: no tables in {stage}.tables; nothing to do"),
        StageReport::Bronze(report) => print_bronze(report, summary),
        StageReport::Silver { report, from } => {
            print_silver(report);
            println!("silver from {from} run={run} committed in {seconds:.1} s to {to}");
        }
        StageReport::Gold { tables, computed_seconds } => {
            println!("{:<28} {:>12} {:>8}  PLUGIN", "TABLE", "ROWS", "SECONDS");
            for t in tables {
                let plugin = t
                    .plugin
                    .as_ref()
                    .map(|p| format!("{} {} {}", p.name, p.version, &p.sha256[..12.min(p.sha256.len())]))
                    .unwrap_or_default();
                println!("{:<28} {:>12} {:>8.2}  {plugin}", t.table, t.rows, t.seconds);
            }
            println!(
                "gold run={run} computed in {computed_seconds:.1} s, published in {:.1} s to {to}",
                seconds - computed_seconds
            );
        }
    }
}

/// Bronze's table of rows, quarantine and bytes read, and its commit.
fn print_bronze(report: &BronzeReport, summary: &StageSummary) {
    println!("{:<20} {:>12} {:>12} {:>10}", "TABLE", "ROWS", "QUARANTINED", "MB READ");
    let mut bytes = 0;
    for t in &report.tables {
        println!("{:<20} {:>12} {:>12} {:>10.1}", t.table, t.rows, t.quarantined, t.bytes as f64 / 1e6);
        bytes += t.bytes;
    }
    println!(
        "bronze {} run={} committed in {:.1} s ({:.0} MB/s) to {}",
        summary.partition,
        summary.run_id,
        summary.seconds,
        bytes as f64 / 1e6 / summary.seconds.max(1e-9),
        summary.written_to
    );
}

fn print_silver(report: &SilverReport) {
    println!("{:<20} {:>12} {:>12} {:>12} {:>8}", "TABLE", "BRONZE ROWS", "ROWS", "QUARANTINED", "SECONDS");
    for t in &report.tables {
        println!("{:<20} {:>12} {:>12} {:>12} {:>8.2}", t.table, t.bronze_rows, t.rows, t.quarantined, t.seconds);
    }
    for t in report.tables.iter().filter(|t| !t.reasons.is_empty()) {
        let reasons: Vec<String> = t.reasons.iter().map(|(reason, n)| format!("{reason} {n}")).collect();
        println!("  quarantine {:<20} {}", t.table, reasons.join(", "));
    }
    for t in report.tables.iter().filter(|t| !t.nulled.is_empty()) {
        let nulled: Vec<String> = t.nulled.iter().map(|(reason, n)| format!("{reason} {n}")).collect();
        println!("  nulled     {:<20} {} (values that did not parse; kept in quarantine)", t.table, nulled.join(", "));
    }
    if report.keys_spilled > 0 {
        println!(
            "  keys       past their share of limits.memory: at most {} at once in mapped files in the scratch folder",
            medallion_common::memory::size_text(report.keys_spilled)
        );
    }
}
