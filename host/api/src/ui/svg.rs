//! Charts drawn on the server as SVG: the pipeline's graph, the time each
//! stage of a run took, and a table's rows across runs. No script, no
//! library: the pages work offline and load nothing from elsewhere.

use std::fmt::Write as _;

use super::html::{E, number, seconds};

/// A box of the pipeline graph.
pub(crate) struct Node {
    /// Its id (the table name), what edges name.
    pub(crate) id: String,
    /// The zone it belongs to: `bronze`, `silver` or `gold` (its colour).
    pub(crate) zone: &'static str,
    /// Up to three lines: the name, the plugin, the counts.
    pub(crate) lines: [String; 3],
    /// Whether the counts line warns (rows quarantined).
    pub(crate) warn: bool,
    /// Its column, from 0.
    pub(crate) column: usize,
}

// Colours as attributes (the Content-Security-Policy allows no inline style).
const ACCENT: &str = "#2857b8";
const BAD: &str = "#b3261e";

/// A zone's colour: bronze, silver or gold.
fn zone_colour(zone: &str) -> &'static str {
    match zone {
        "bronze" => "#b07a3c",
        "gold" => "#c9a227",
        _ => "#7d8794",
    }
}

const NODE_W: f64 = 270.0;
const NODE_H: f64 = 58.0;
const GAP_X: f64 = 50.0;
const GAP_Y: f64 = 14.0;
const PAD: f64 = 12.0;

/// The graph: `nodes` in columns, `edges` (from, to) drawn left to right.
pub(crate) fn graph(nodes: &[Node], edges: &[(String, String)]) -> String {
    let columns = nodes.iter().map(|n| n.column + 1).max().unwrap_or(0);
    let per_column: Vec<usize> = (0..columns).map(|c| nodes.iter().filter(|n| n.column == c).count()).collect();
    let tallest = per_column.iter().copied().max().unwrap_or(0) as f64;
    let height = PAD * 2.0 + tallest * (NODE_H + GAP_Y) - GAP_Y;
    let width = PAD * 2.0 + columns as f64 * (NODE_W + GAP_X) - GAP_X;
    // Each column centred on the tallest.
    let mut seen = vec![0usize; columns];
    let place: Vec<(f64, f64)> = nodes
        .iter()
        .map(|n| {
            let index = seen[n.column];
            seen[n.column] += 1;
            let offset = (tallest - per_column[n.column] as f64) * (NODE_H + GAP_Y) / 2.0;
            (PAD + n.column as f64 * (NODE_W + GAP_X), PAD + offset + index as f64 * (NODE_H + GAP_Y))
        })
        .collect();
    let mut out = String::new();
    let _ = write!(
        out,
        "<svg class=\"chart\" role=\"img\" aria-label=\"the pipeline: sources to Bronze, Silver and Gold tables\" \
         width=\"{width:.0}\" height=\"{height:.0}\" viewBox=\"0 0 {width:.0} {height:.0}\" xmlns=\"http://www.w3.org/2000/svg\">"
    );
    let at = |id: &str| nodes.iter().position(|n| n.id == id).map(|i| place[i]);
    for (from, to) in edges {
        let (Some((x1, y1)), Some((x2, y2))) = (at(from), at(to)) else { continue };
        let (x1, y1, x2, y2) = (x1 + NODE_W, y1 + NODE_H / 2.0, x2, y2 + NODE_H / 2.0);
        let bend = (x2 - x1).abs() / 2.0;
        let _ = write!(
            out,
            "<path d=\"M{x1:.1} {y1:.1} C{:.1} {y1:.1} {:.1} {y2:.1} {x2:.1} {y2:.1}\" fill=\"none\" stroke=\"#9aa3b2\" stroke-width=\"1.3\"><title>{} → {}</title></path>",
            x1 + bend,
            x2 - bend,
            E(from),
            E(to)
        );
    }
    for (node, (x, y)) in nodes.iter().zip(&place) {
        let colour = zone_colour(node.zone);
        let _ = write!(
            out,
            "<g><rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{NODE_W}\" height=\"{NODE_H}\" rx=\"6\" fill=\"#fff\" stroke=\"{colour}\" stroke-width=\"2\"/>\
             <rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"6\" height=\"{NODE_H}\" rx=\"2\" fill=\"{colour}\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" class=\"title\">{}</text>\
             <text x=\"{:.1}\" y=\"{:.1}\" class=\"muted\">{}</text>\
             <text x=\"{:.1}\" y=\"{:.1}\"{}>{}</text></g>",
            x + 14.0,
            y + 18.0,
            E(&node.lines[0]),
            x + 14.0,
            y + 34.0,
            E(&node.lines[1]),
            x + 14.0,
            y + 50.0,
            if node.warn { " class=\"warn\"" } else { "" },
            E(&node.lines[2]),
        );
    }
    out.push_str("</svg>");
    out
}

/// One bar of the stage chart: a run and its stages' seconds.
pub(crate) struct StageBar {
    pub(crate) run: String,
    pub(crate) status: String,
    pub(crate) stages: Vec<(String, f64)>,
}

/// Horizontal bars, one per run (as given, newest first), split by stage.
pub(crate) fn stage_bars(bars: &[StageBar]) -> String {
    const LABEL: f64 = 230.0;
    const PLOT: f64 = 560.0;
    const ROW: f64 = 22.0;
    let longest = bars.iter().map(|b| b.stages.iter().map(|(_, s)| s).sum::<f64>()).fold(0.0, f64::max);
    let scale = if longest > 0.0 { PLOT / longest } else { 0.0 };
    let height = 34.0 + bars.len() as f64 * ROW;
    let width = LABEL + PLOT + 110.0;
    let mut out = String::new();
    let _ = write!(
        out,
        "<svg class=\"chart\" role=\"img\" aria-label=\"seconds per stage of each run\" width=\"{width:.0}\" height=\"{height:.0}\" \
         viewBox=\"0 0 {width:.0} {height:.0}\" xmlns=\"http://www.w3.org/2000/svg\">"
    );
    // The legend.
    for (i, stage) in ["bronze", "silver", "gold"].iter().enumerate() {
        let x = LABEL + i as f64 * 90.0;
        let _ = write!(
            out,
            "<rect x=\"{x}\" y=\"6\" width=\"12\" height=\"12\" fill=\"{}\"/><text x=\"{}\" y=\"16\">{stage}</text>",
            zone_colour(stage),
            x + 16.0
        );
    }
    for (i, bar) in bars.iter().enumerate() {
        let y = 28.0 + i as f64 * ROW;
        let class = match bar.status.as_str() {
            "failed" | "abandoned" => " class=\"bad\"",
            _ => "",
        };
        let _ = write!(out, "<text x=\"4\" y=\"{:.1}\"{class}>{}</text>", y + 13.0, E(&bar.run));
        let mut x = LABEL;
        for (stage, s) in &bar.stages {
            let w = (s * scale).max(1.0);
            let _ = write!(
                out,
                "<rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{w:.1}\" height=\"16\" fill=\"{}\"><title>{}: {}</title></rect>",
                zone_colour(stage),
                E(stage),
                seconds(*s)
            );
            x += w;
        }
        let total: f64 = bar.stages.iter().map(|(_, s)| s).sum();
        let _ =
            write!(out, "<text x=\"{:.1}\" y=\"{:.1}\" class=\"muted\">{}</text>", x + 6.0, y + 13.0, seconds(total));
    }
    out.push_str("</svg>");
    out
}

/// How far a table's rows must fall from one run to the next to be marked.
pub(crate) const DROP: f64 = 0.2;

/// A table's rows across runs (oldest first; `None` where a run did not
/// build it), with a fall of more than [`DROP`] marked in red.
pub(crate) fn rows_line(title: &str, points: &[(String, Option<u64>)]) -> String {
    const W: f64 = 300.0;
    const H: f64 = 92.0;
    const TOP: f64 = 24.0;
    const BOTTOM: f64 = 10.0;
    let max = points.iter().filter_map(|(_, n)| *n).max().unwrap_or(0).max(1) as f64;
    let step = if points.len() > 1 { (W - 20.0) / (points.len() - 1) as f64 } else { 0.0 };
    let xy = |i: usize, n: u64| (10.0 + i as f64 * step, TOP + (H - TOP - BOTTOM) * (1.0 - n as f64 / max));
    let last = points.iter().rev().find_map(|(_, n)| *n);
    let mut out = String::new();
    let _ = write!(
        out,
        "<svg class=\"chart\" role=\"img\" aria-label=\"rows of {} across runs\" width=\"{W}\" height=\"{H}\" viewBox=\"0 0 {W} {H}\" \
         xmlns=\"http://www.w3.org/2000/svg\"><text x=\"8\" y=\"15\" class=\"title\">{}</text><text x=\"{}\" y=\"15\" text-anchor=\"end\" class=\"muted\">{}</text>",
        E(title),
        E(title),
        W - 8.0,
        last.map(number).unwrap_or_default()
    );
    // The baseline: zero rows.
    let _ = write!(
        out,
        "<line x1=\"8\" y1=\"{0}\" x2=\"{1}\" y2=\"{0}\" stroke=\"#d9dee6\"/><text x=\"{1}\" y=\"{2}\" text-anchor=\"end\" class=\"muted\">0</text>",
        H - BOTTOM,
        W - 8.0,
        H - 1.0
    );
    // One line per stretch of runs that built the table.
    let mut lines: Vec<String> = vec![String::new()];
    let mut previous: Option<u64> = None;
    let mut marks = String::new();
    for (i, (run, n)) in points.iter().enumerate() {
        let Some(n) = *n else {
            previous = None;
            lines.push(String::new());
            continue;
        };
        let (x, y) = xy(i, n);
        if let Some(line) = lines.last_mut() {
            let _ = write!(line, "{}{x:.1},{y:.1}", if line.is_empty() { "" } else { " " });
        }
        let fell = previous.is_some_and(|p| p > 0 && (n as f64) < p as f64 * (1.0 - DROP));
        let (r, class) = if fell { (4.0, " class=\"bad\"") } else { (2.5, "") };
        let what = match previous {
            Some(p) if fell => format!(" (down {:.0}% from {})", 100.0 * (1.0 - n as f64 / p as f64), number(p)),
            _ => String::new(),
        };
        let _ = write!(
            marks,
            "<circle cx=\"{x:.1}\" cy=\"{y:.1}\" r=\"{r}\"{class} fill=\"{}\"><title>{}: {} rows{}</title></circle>",
            if fell { BAD } else { ACCENT },
            E(run),
            number(n),
            what
        );
        if fell {
            let _ = write!(
                out,
                "<text x=\"{:.1}\" y=\"{:.1}\" class=\"bad\" text-anchor=\"middle\">drop</text>",
                x,
                (y - 7.0).max(TOP)
            );
        }
        previous = Some(n);
    }
    for line in lines.iter().filter(|l| !l.is_empty()) {
        let _ = write!(out, "<polyline points=\"{line}\" fill=\"none\" stroke=\"{ACCENT}\" stroke-width=\"1.5\"/>");
    }
    let _ = write!(out, "{marks}</svg>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sudden_drop_is_marked() {
        let points: Vec<(String, Option<u64>)> =
            [1000, 1010, 990, 400].iter().enumerate().map(|(i, n)| (format!("run{i}"), Some(*n))).collect();
        let svg = rows_line("fact_orders", &points);
        assert_eq!(svg.matches(">drop<").count(), 1, "{svg}");
        assert!(svg.contains("down 60% from 990"), "{svg}");
        let steady: Vec<(String, Option<u64>)> = (0..4).map(|i| (format!("run{i}"), Some(1000 - i))).collect();
        assert!(!rows_line("t", &steady).contains(">drop<"));
        let gap = [("a".to_owned(), Some(10)), ("b".to_owned(), None), ("c".to_owned(), Some(10))];
        assert_eq!(rows_line("t", &gap).matches("<polyline").count(), 2, "no line across a run that did not build it");
    }

    #[test]
    fn names_in_charts_are_escaped() {
        let node = Node {
            id: "<t>".to_owned(),
            zone: "gold",
            lines: ["<script>".to_owned(), String::new(), String::new()],
            warn: false,
            column: 0,
        };
        let svg = graph(&[node], &[]);
        assert!(svg.contains("&lt;script&gt;") && !svg.contains("<script>"), "{svg}");
    }
}
