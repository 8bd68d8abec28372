//! The pages' HTML: escaping, the layout every page shares, and how numbers
//! and times are written.
//!
//! Every value that comes from data or the run log goes through [`E`], so a
//! product called `<script>` shows as text. The pages carry no script at
//! all, and the Content-Security-Policy the server sends forbids one.

use std::fmt::{self, Display, Write as _};

/// Text escaped for HTML and SVG (text and attribute values).
pub(crate) struct E<'a>(pub(crate) &'a str);

impl Display for E<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut rest = self.0;
        while let Some(i) = rest.find(['&', '<', '>', '"', '\'']) {
            f.write_str(&rest[..i])?;
            f.write_str(match rest.as_bytes()[i] {
                b'&' => "&amp;",
                b'<' => "&lt;",
                b'>' => "&gt;",
                b'"' => "&quot;",
                _ => "&#39;",
            })?;
            rest = &rest[i + 1..];
        }
        f.write_str(rest)
    }
}

/// A query string value, percent-encoded (for links).
pub(crate) fn url_value(text: &str) -> String {
    form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

/// The pages, for the navigation bar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Nav {
    Pipeline,
    Runs,
    Quarantine,
    Gold,
}

impl Nav {
    const ALL: [(Nav, &'static str, &'static str); 4] = [
        (Nav::Pipeline, "/ui", "Pipeline"),
        (Nav::Runs, "/ui/runs", "Runs"),
        (Nav::Quarantine, "/ui/quarantine", "Quarantine"),
        (Nav::Gold, "/ui/gold", "Gold tables"),
    ];
}

/// A whole page: `title`, the navigation with `current` marked, a line on
/// the Gold run being served, and `body`.
pub(crate) fn page(title: &str, current: Nav, served: Option<&str>, body: &str) -> String {
    let mut out = String::with_capacity(body.len() + 1024);
    let _ = write!(
        out,
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{} · medallion</title><link rel=\"stylesheet\" href=\"/ui/style.css\">\
         <link rel=\"icon\" href=\"/ui/icon.svg\" type=\"image/svg+xml\"></head>\n<body><header>\
         <a class=\"brand\" href=\"/ui\">medallion</a><nav>",
        E(title)
    );
    for (nav, href, label) in Nav::ALL {
        let mark = if nav == current { " aria-current=\"page\"" } else { "" };
        let _ = write!(out, "<a href=\"{href}\"{mark}>{label}</a>");
    }
    let served = match served {
        Some(run) => format!("Gold of run <code>{}</code>", E(run)),
        None => "no Gold published yet".to_owned(),
    };
    let _ = write!(out, "</nav><span class=\"served\">{served}</span></header>\n<main>\n{body}</main></body></html>\n");
    out
}

/// `n` with thousands separated by commas.
pub(crate) fn number(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A duration for people: `0.42 s`, `12.3 s`, `4 min 05 s`.
pub(crate) fn seconds(s: f64) -> String {
    match s {
        s if s < 10.0 => format!("{s:.2} s"),
        s if s < 60.0 => format!("{s:.1} s"),
        s => {
            let whole = s.round() as u64;
            format!("{} min {:02} s", whole / 60, whole % 60)
        }
    }
}

/// The pages' icon: three stacked bars, bronze, silver and gold.
pub(crate) const ICON: &str = "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 16 16\">\
<rect x=\"1\" y=\"11\" width=\"14\" height=\"4\" rx=\"1\" fill=\"#b07a3c\"/>\
<rect x=\"3\" y=\"6\" width=\"10\" height=\"4\" rx=\"1\" fill=\"#7d8794\"/>\
<rect x=\"5\" y=\"1\" width=\"6\" height=\"4\" rx=\"1\" fill=\"#c9a227\"/></svg>";

/// The style sheet every page links to (a file of its own: the
/// Content-Security-Policy allows no inline style).
pub(crate) const STYLE: &str = r#"
:root { --ink: #1d2430; --muted: #5b6473; --line: #d9dee6; --bg: #f6f7f9; --accent: #2857b8;
        --ok: #1d7a46; --bad: #b3261e; --warn: #a05a00; --bronze: #b07a3c; --silver: #7d8794; --gold: #c9a227; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--ink); background: var(--bg); }
header { display: flex; align-items: center; gap: 24px; padding: 10px 24px; background: #fff; border-bottom: 1px solid var(--line); }
header .brand { font-weight: 700; font-size: 16px; color: var(--ink); text-decoration: none; }
header nav a { margin-right: 16px; color: var(--muted); text-decoration: none; }
header nav a[aria-current=page] { color: var(--accent); font-weight: 600; }
header .served { margin-left: auto; color: var(--muted); }
main { padding: 16px 24px 48px; max-width: 1280px; }
h1 { font-size: 20px; margin: 8px 0 12px; } h2 { font-size: 16px; margin: 24px 0 8px; } h3 { font-size: 14px; margin: 16px 0 6px; }
p.note { color: var(--muted); }
table { border-collapse: collapse; background: #fff; margin: 4px 0 12px; }
th, td { border: 1px solid var(--line); padding: 3px 8px; text-align: left; vertical-align: top; }
th { background: #eef1f5; font-weight: 600; }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
code { font: 12px ui-monospace, SFMono-Regular, Menlo, monospace; }
.status-succeeded { color: var(--ok); } .status-failed, .status-abandoned { color: var(--bad); } .status-running { color: var(--accent); }
.warn { color: var(--warn); } .bad { color: var(--bad); }
.runs a { margin-right: 8px; } .runs a[aria-current] { font-weight: 700; text-decoration: none; border-bottom: 2px solid currentColor; }
.chart { background: #fff; border: 1px solid var(--line); margin: 4px 0 12px; }
.grid { display: flex; flex-wrap: wrap; gap: 8px; }
.links a { margin-right: 12px; }
section.table { background: #fff; border: 1px solid var(--line); padding: 8px 16px; margin: 12px 0; }
svg text { font: 12px system-ui, sans-serif; fill: var(--ink); }
svg .muted { fill: var(--muted); } svg .bad { fill: var(--bad); } svg .warn { fill: var(--warn); }
svg .title { font-weight: 700; }
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn everything_that_could_be_markup_is_escaped() {
        assert_eq!(
            E("<script>alert('x')</script> & \"q\"").to_string(),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;q&quot;"
        );
        assert_eq!(E("plain é").to_string(), "plain é");
    }

    #[test]
    fn numbers_and_times_read_well() {
        assert_eq!(number(0), "0");
        assert_eq!(number(999), "999");
        assert_eq!(number(1_000), "1,000");
        assert_eq!(number(18_040_123), "18,040,123");
        assert_eq!(seconds(0.4234), "0.42 s");
        assert_eq!(seconds(12.34), "12.3 s");
        assert_eq!(seconds(245.0), "4 min 05 s");
        assert_eq!(seconds(119.6), "2 min 00 s");
    }
}
