//! `${VAR}` and `${VAR:-default}` in pipeline.yaml, replaced from the
//! environment before the YAML is parsed, so that no secret needs to sit in
//! the file. An unset variable without a default is an error at its line and
//! column; `$${` writes a literal `${`.

/// A variable that is not set and has no default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unset {
    /// The variable's name.
    pub name: String,
    /// 1-based line of the `${`.
    pub line: usize,
    /// 1-based column of the `${`.
    pub column: usize,
}

/// Replaces every `${NAME}` and `${NAME:-default}` in `text` with the value
/// `lookup` gives; comments are left as they are.
pub fn interpolate(text: &str, lookup: impl Fn(&str) -> Option<String>) -> Result<String, Unset> {
    let mut out = String::with_capacity(text.len());
    for (index, line) in text.split_inclusive('\n').enumerate() {
        let (code, comment) = line.split_at(comment_start(line));
        let replaced = interpolate_line(code, &lookup).map_err(|mut unset| {
            unset.line = index + 1;
            unset
        })?;
        out.push_str(&replaced);
        out.push_str(comment);
    }
    Ok(out)
}

/// Where a YAML comment starts on this line: a `#` at the start or after a
/// blank, outside quotes; the line's length when there is none.
fn comment_start(line: &str) -> usize {
    let mut quote = None;
    let mut previous = ' ';
    for (at, c) in line.char_indices() {
        match (quote, c) {
            (None, '\'' | '"') => quote = Some(c),
            (Some(open), c) if c == open => quote = None,
            (None, '#') if previous == ' ' || previous == '\t' => return at,
            _ => {}
        }
        previous = c;
    }
    line.len()
}

fn interpolate_line(text: &str, lookup: &impl Fn(&str) -> Option<String>) -> Result<String, Unset> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    let mut consumed = 0;
    while let Some(at) = rest.find("${") {
        if rest[..at].ends_with('$') {
            out.push_str(&rest[..at - 1]);
            out.push_str("${");
            consumed += at + 2;
            rest = &rest[at + 2..];
            continue;
        }
        out.push_str(&rest[..at]);
        let Some(end) = rest[at..].find('}') else {
            out.push_str(&rest[at..]);
            return Ok(out);
        };
        let inner = &rest[at + 2..at + end];
        let (name, default) = match inner.split_once(":-") {
            Some((name, default)) => (name, Some(default)),
            None => (inner, None),
        };
        match lookup(name).filter(|v| !v.is_empty()).or_else(|| default.map(str::to_owned)) {
            Some(value) => out.push_str(&value),
            None => {
                let (line, column) = position(text, consumed + at);
                return Err(Unset { name: name.to_owned(), line, column });
            }
        }
        consumed += at + end + 1;
        rest = &rest[at + end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

fn position(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let column = before.rfind('\n').map_or(offset, |nl| offset - nl - 1) + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        (name == "SET").then(|| "value".to_owned())
    }

    #[test]
    fn comments_are_left_alone() {
        assert_eq!(
            interpolate("# write ${VAR}\na: ${SET} # or ${VAR}\n", env),
            Ok("# write ${VAR}\na: value # or ${VAR}\n".to_owned())
        );
    }

    #[test]
    fn variables_defaults_and_escapes() {
        assert_eq!(interpolate("a: ${SET}", env), Ok("a: value".to_owned()));
        assert_eq!(interpolate("a: ${UNSET:-fallback}", env), Ok("a: fallback".to_owned()));
        assert_eq!(interpolate("a: ${SET:-fallback}", env), Ok("a: value".to_owned()));
        assert_eq!(interpolate("a: $${SET}", env), Ok("a: ${SET}".to_owned()));
        assert_eq!(
            interpolate("a: 1\nbb: x ${UNSET}", env),
            Err(Unset { name: "UNSET".to_owned(), line: 2, column: 7 })
        );
    }
}
