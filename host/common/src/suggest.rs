//! "Did you mean": the nearest of some names to a misspelt one.

/// The candidate closest to `name` by edit distance, if it is close enough
/// to be a likely typo (at most 2 edits, or a third of the name).
pub fn nearest<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (strsim::levenshtein(name, c), c))
        .min()
        .filter(|(distance, _)| *distance <= 2.max(name.len() / 3))
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typos_find_their_name_and_strangers_find_none() {
        assert_eq!(nearest("sourcse", ["lake", "sources", "silver"]), Some("sources"));
        assert_eq!(nearest("stock-staus", ["rfm", "stock-status"]), Some("stock-status"));
        assert_eq!(nearest("zzz", ["lake", "sources"]), None);
    }
}
