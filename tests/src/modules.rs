//! The module graph of a crate's source folder, read from its `use` paths,
//! for the tidy test that refuses modules using each other in a cycle.
//!
//! Two sibling modules are linked when code in one names the other through
//! `crate::...` or `super::...` (also inside `{...}` lists). A module naming
//! an item of its parent, or a parent naming its child, is not a link.
//! Comment lines are skipped. Paths through re-exports are not followed.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// A cycle among sibling modules of the crate whose sources are in `src`, as
/// module paths (`silver::rules -> silver::write -> silver::rules`), or `None`.
pub fn cycle(src: &Path) -> Option<Vec<String>> {
    let mut files = Vec::new();
    collect(src, src, &mut files);
    let modules: BTreeSet<Vec<String>> = files.iter().map(|(module, _)| module.clone()).collect();
    let mut edges: BTreeMap<Vec<String>, BTreeSet<Vec<String>>> = BTreeMap::new();
    for (module, text) in &files {
        for target in references(module, text) {
            if let Some((from, to)) = sibling_link(module, &target, &modules) {
                edges.entry(from).or_default().insert(to);
            }
        }
    }
    find_cycle(&edges).map(|path| path.iter().map(|m| m.join("::")).collect())
}

/// Every `.rs` file under `dir` with its module path.
fn collect(root: &Path, dir: &Path, out: &mut Vec<(Vec<String>, String)>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for path in entries.filter_map(Result::ok).map(|e| e.path()) {
        if path.is_dir() {
            collect(root, &path, out);
            continue;
        }
        if path.extension().is_none_or(|x| x != "rs") {
            continue;
        }
        let relative = path.strip_prefix(root).unwrap_or(&path).with_extension("");
        let mut module: Vec<String> = relative.iter().map(|s| s.to_string_lossy().into_owned()).collect();
        if matches!(module.last().map(String::as_str), Some("mod" | "lib" | "main")) {
            module.pop();
        }
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        out.push((module, text));
    }
}

/// The absolute paths that `text`, the code of `module`, names through
/// `crate::`, `super::` and `self::`.
fn references(module: &[String], text: &str) -> Vec<Vec<String>> {
    let code: String = text.lines().filter(|line| !line.trim_start().starts_with("//")).collect::<Vec<_>>().join("\n");
    let mut found = Vec::new();
    let bytes = code.as_bytes();
    let mut at = 0;
    while at < code.len() {
        let rest = &code[at..];
        let starts_word = at == 0 || !(bytes[at - 1].is_ascii_alphanumeric() || bytes[at - 1] == b'_');
        let base = if !starts_word {
            None
        } else if rest.starts_with("crate::") {
            Some((Vec::new(), "crate::".len()))
        } else if rest.starts_with("self::") {
            Some((module.to_vec(), "self::".len()))
        } else if rest.starts_with("super::") {
            let mut base = module.to_vec();
            let mut length = 0;
            while code[at + length..].starts_with("super::") {
                base.pop();
                length += "super::".len();
            }
            Some((base, length))
        } else {
            None
        };
        match base {
            Some((base, length)) => {
                let end = paths(&code[at + length..], &base, &mut found);
                at += length + end;
            }
            None => at += rest.chars().next().map_or(1, char::len_utf8),
        }
    }
    found
}

/// Reads one path (or a `{...}` list of them) at the start of `text`,
/// appending each to `found` after `base`; returns the bytes read.
fn paths(text: &str, base: &[String], found: &mut Vec<Vec<String>>) -> usize {
    let mut path = base.to_vec();
    let mut at = 0;
    loop {
        let rest = &text[at..];
        if let Some(inner) = rest.strip_prefix('{') {
            let mut depth = 1;
            let mut end = 0;
            for (i, c) in inner.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    _ => {}
                }
                if depth == 0 {
                    end = i;
                    break;
                }
            }
            let list = &inner[..end];
            let mut depth = 0;
            let mut start = 0;
            for (i, c) in list.char_indices().chain(std::iter::once((list.len(), ','))) {
                match c {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        let entry = list[start..i.min(list.len())].trim_start();
                        paths(entry, &path, found);
                        start = i + 1;
                    }
                    _ => {}
                }
            }
            return at + end + 2;
        }
        let word: String = rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
        if word.is_empty() || word == "self" {
            break;
        }
        at += word.len();
        path.push(word);
        if text[at..].starts_with("::") {
            at += 2;
        } else {
            break;
        }
    }
    if path.len() > base.len() {
        found.push(path);
    }
    at
}

/// The two sibling modules that `module` naming `target` links, if any.
fn sibling_link(
    module: &[String],
    target: &[String],
    modules: &BTreeSet<Vec<String>>,
) -> Option<(Vec<String>, Vec<String>)> {
    let common = module.iter().zip(target).take_while(|(a, b)| a == b).count();
    let (Some(from), Some(to)) = (module.get(common), target.get(common)) else { return None };
    let parent = &module[..common];
    let sibling = |name: &String| [parent, std::slice::from_ref(name)].concat();
    let to = sibling(to);
    modules.contains(&to).then(|| (sibling(from), to))
}

fn find_cycle(edges: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>) -> Option<Vec<Vec<String>>> {
    fn visit(
        node: &Vec<String>,
        edges: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>,
        stack: &mut Vec<Vec<String>>,
        done: &mut BTreeSet<Vec<String>>,
    ) -> Option<Vec<Vec<String>>> {
        if let Some(start) = stack.iter().position(|n| n == node) {
            let mut cycle = stack[start..].to_vec();
            cycle.push(node.clone());
            return Some(cycle);
        }
        if !done.insert(node.clone()) {
            return None;
        }
        stack.push(node.clone());
        for next in edges.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, edges, stack, done) {
                return Some(cycle);
            }
        }
        stack.pop();
        None
    }
    let mut done = BTreeSet::new();
    edges.keys().find_map(|node| visit(node, edges, &mut Vec::new(), &mut done))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn crate_with(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        for (path, text) in files {
            let path = dir.path().join(path);
            std::fs::create_dir_all(path.parent().unwrap_or(dir.path())).unwrap_or_else(|e| panic!("{e}"));
            std::fs::write(path, text).unwrap_or_else(|e| panic!("{e}"));
        }
        dir
    }

    #[test]
    fn siblings_that_use_each_other_are_a_cycle() {
        let dir = crate_with(&[
            ("lib.rs", "mod a;\nmod b;\n"),
            ("a.rs", "use super::b::Thing;\n"),
            ("b.rs", "use crate::{x, a::Other};\n"),
        ]);
        assert_eq!(cycle(dir.path()), Some(vec!["a".to_owned(), "b".to_owned(), "a".to_owned()]));
    }

    #[test]
    fn parents_and_children_and_comments_are_not_links() {
        let dir = crate_with(&[
            ("lib.rs", "mod a;\nmod b;\npub use a::Thing;\nfn f() { b::g() }\n"),
            ("a.rs", "use super::Thing;\n// use crate::b::X;\n"),
            ("b.rs", "use crate::a::Thing;\n"),
            ("b/c.rs", "use super::super::b::X;\nuse crate::b::d;\n"),
            ("b/d.rs", "use super::Y;\n"),
        ]);
        assert_eq!(cycle(dir.path()), None);
    }

    #[test]
    fn cycles_between_nested_modules_are_found() {
        let dir = crate_with(&[
            ("lib.rs", "mod s;\n"),
            ("s/mod.rs", "mod r;\nmod w;\n"),
            ("s/r.rs", "use super::w::write;\n"),
            ("s/w.rs", "use crate::s::r::Rules;\n"),
        ]);
        assert_eq!(cycle(dir.path()), Some(vec!["s::r".to_owned(), "s::w".to_owned(), "s::r".to_owned()]));
    }
}
