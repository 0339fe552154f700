//! "Did you mean" suggestions by edit distance.

/// The candidate closest to `word` within a distance that scales with its length, if any.
#[must_use]
pub fn did_you_mean<'a, I>(word: &str, candidates: I) -> Option<&'a str>
where
    I: IntoIterator<Item = &'a str>,
{
    let limit = (word.chars().count() / 3).clamp(1, 3);
    candidates
        .into_iter()
        .map(|c| {
            (
                distance(&word.to_ascii_lowercase(), &c.to_ascii_lowercase()),
                c,
            )
        })
        .filter(|&(d, _)| d <= limit)
        .min_by_key(|&(d, _)| d)
        .map(|(_, c)| c)
}

/// Levenshtein distance over characters, with `-`/`_` treated as equal.
#[must_use]
pub fn distance(a: &str, b: &str) -> usize {
    let norm = |c: char| if c == '-' { '_' } else { c };
    let a: Vec<char> = a.chars().map(norm).collect();
    let b: Vec<char> = b.chars().map(norm).collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, ca) in a.iter().enumerate() {
        cur[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_close_names_only() {
        let names = ["expressions", "actions", "name"];
        assert_eq!(did_you_mean("expresions", names), Some("expressions"));
        assert_eq!(did_you_mean("action", names), Some("actions"));
        assert_eq!(did_you_mean("zzzzzz", names), None);
        assert_eq!(distance("status-code", "status_code"), 0);
    }
}
