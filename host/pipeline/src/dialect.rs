//! One dialect for two engines: what a `sql:` block says that polars (the
//! host) and Spark (`host spark-submit`) read differently, or that only one
//! of them reads. `host validate` warns on each; the shipped pipeline has
//! none. A heuristic on the text, not a parser: it knows the cases that
//! change results silently, which matter most.

/// A token of SQL text: a word, a number, a quoted string, or one
/// punctuation character (`::` as one); comments are skipped.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Word(String),
    Number(String),
    Text(String),
    Punct(String),
}

fn tokens(sql: &str) -> Vec<Token> {
    let chars: Vec<char> = sql.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let rest = |n: usize| chars.get(i + n).copied();
        if c.is_whitespace() {
            i += 1;
        } else if c == '-' && rest(1) == Some('-') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && rest(1) == Some('*') {
            i += 2;
            while i < chars.len() && !(chars[i] == '*' && chars.get(i + 1) == Some(&'/')) {
                i += 1;
            }
            i += 2;
        } else if c == '\'' || c == '"' || c == '`' {
            let mut text = String::new();
            i += 1;
            while i < chars.len() {
                if chars[i] == c {
                    if chars.get(i + 1) == Some(&c) {
                        text.push(c);
                        i += 2;
                        continue;
                    }
                    break;
                }
                text.push(chars[i]);
                i += 1;
            }
            i += 1;
            // Quoted names are words; quoted text is text.
            out.push(if c == '\'' { Token::Text(text) } else { Token::Word(text.to_lowercase()) });
        } else if c.is_ascii_digit() || (c == '.' && rest(1).is_some_and(|d| d.is_ascii_digit())) {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                i += 1;
            }
            out.push(Token::Number(chars[start..i].iter().collect()));
        } else if c.is_alphanumeric() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            out.push(Token::Word(chars[start..i].iter().collect::<String>().to_lowercase()));
        } else if c == ':' && rest(1) == Some(':') {
            out.push(Token::Punct("::".to_owned()));
            i += 2;
        } else {
            out.push(Token::Punct(c.to_string()));
            i += 1;
        }
    }
    out
}

/// Date parts one engine knows and the other does not (or reads otherwise),
/// with what to write instead.
const DATE_PARTS: [(&str, &str); 6] = [
    ("isoweek", "'week' (ISO weeks in both engines)"),
    ("isoyear", "an expression over 'year' and 'week'"),
    ("isodow", "'dow' with the days renumbered"),
    ("millennium", "'year' divided by 1000"),
    ("century", "'year' divided by 100"),
    ("decade", "'year' divided by 10"),
];

/// Functions polars' SQL has and Spark's lacks.
const POLARS_ONLY: [(&str, &str); 3] =
    [("strftime", "DATE_FORMAT in Spark"), ("strptime", "TO_DATE or TO_TIMESTAMP in Spark"), ("regexp_like", "RLIKE")];

/// What in `sql` the two engines read differently, one sentence each with
/// what to write instead; empty when nothing is known to differ.
pub fn portability(sql: &str) -> Vec<String> {
    let tokens = tokens(sql);
    let mut found = Vec::new();
    let word = |i: usize| match tokens.get(i) {
        Some(Token::Word(w)) => Some(w.as_str()),
        _ => None,
    };
    let punct = |i: usize, p: &str| matches!(tokens.get(i), Some(Token::Punct(q)) if q == p);
    for (i, token) in tokens.iter().enumerate() {
        match token {
            Token::Punct(p) if p == "::" => {
                found.push("`x::TYPE` is a cast Spark 3 does not read: write CAST(x AS TYPE)".to_owned())
            }
            Token::Text(part)
                if i >= 2 && punct(i - 1, "(") && matches!(word(i - 2), Some("date_part" | "date_trunc")) =>
            {
                let part = part.to_lowercase();
                if let Some((_, instead)) = DATE_PARTS.iter().find(|(p, _)| *p == part) {
                    found.push(format!("date part '{part}' is not one Spark knows: write {instead}"));
                }
            }
            Token::Word(w) if punct(i + 1, "(") => {
                if let Some((_, instead)) = POLARS_ONLY.iter().find(|(f, _)| f == w) {
                    found.push(format!("{} is polars SQL's, not Spark's: write {instead}", w.to_uppercase()));
                }
            }
            Token::Number(n) if n.contains('.') && !n.contains(['e', 'E']) => {
                let operand =
                    (i >= 1 && (punct(i - 1, "*") || punct(i - 1, "/"))) || punct(i + 1, "*") || punct(i + 1, "/");
                // `CAST(x AS DOUBLE) * 0.01` is a DOUBLE in both.
                let double = |at: usize| {
                    at >= 3 && punct(at, ")") && word(at - 1) == Some("double") && word(at - 2) == Some("as")
                };
                let beside_double = (i >= 2 && double(i - 2)) || (punct(i + 1, "*") && word(i + 2) == Some("cast"));
                if operand && !beside_double {
                    found.push(format!(
                        "Spark reads `{n}` as a DECIMAL, so arithmetic with it gives a DECIMAL there and a DOUBLE in polars, with other last digits: write CAST(x AS DOUBLE) * {n}, or an integer"
                    ));
                }
            }
            _ => {}
        }
    }
    found.dedup();
    found
}

#[cfg(test)]
mod tests {
    use super::portability;

    #[test]
    fn what_the_engines_read_differently_is_named() {
        let cases = [
            ("SELECT DATE_PART('isoweek', d) FROM t", "'week'"),
            ("SELECT x::DOUBLE FROM t", "CAST(x AS TYPE)"),
            ("SELECT SUM(cents) / 100.0 FROM t", "DECIMAL"),
            ("SELECT 100.0 * COUNT(*) FROM t", "DECIMAL"),
            ("SELECT STRFTIME(d, '%Y') FROM t", "DATE_FORMAT"),
        ];
        for (sql, says) in cases {
            let found = portability(sql);
            assert!(found.len() == 1 && found[0].contains(says), "{sql}: {found:?}");
        }
    }

    #[test]
    fn portable_sql_passes() {
        for sql in [
            "SELECT CAST(SUM(cents) AS DOUBLE) * 0.01, COALESCE(x, 0.0) FROM t -- 100.0 / 3 in a comment",
            "SELECT DATE_PART('week', d), 'isoweek' AS label, x / (100 * COUNT(y)) FROM t",
            "SELECT CAST(ROUND(a * 100) AS BIGINT), 1e2 / x FROM t /* strftime(x) */",
        ] {
            assert!(portability(sql).is_empty(), "{sql}: {:?}", portability(sql));
        }
        let shipped = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../pipeline.yaml"))
            .unwrap_or_else(|e| panic!("{e}"));
        let spec: serde_yaml_ng::Value = serde_yaml_ng::from_str(&shipped).unwrap_or_else(|e| panic!("{e}"));
        let mut checked = 0;
        for zone in ["silver", "gold"] {
            let tables = spec[zone]["tables"].as_mapping().cloned().unwrap_or_default();
            for (name, table) in tables {
                if let Some(sql) = table["sql"].as_str() {
                    assert!(portability(sql).is_empty(), "{name:?}: {:?}", portability(sql));
                    checked += 1;
                }
            }
        }
        assert_eq!(checked, 6);
    }
}
