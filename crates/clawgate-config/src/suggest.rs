//! "Did you mean …?" hints for mistyped keys and values.

/// The candidate closest to `input`, if one is close enough to be a likely typo.
///
/// A candidate that differs only in case, `_` or `-` (`handshake_timeout_ms` for
/// `handshakeTimeoutMs`) always wins; otherwise the nearest by edit distance (counting a swap
/// of neighbours as one edit) within a budget that grows with the word's length.
pub(crate) fn suggest<'a>(input: &str, candidates: &[&'a str]) -> Option<&'a str> {
    let normalized = normalize(input);
    if let Some(hit) = candidates.iter().find(|c| normalize(c) == normalized) {
        return Some(hit);
    }
    let budget = match input.chars().count() {
        0..=2 => 0,
        3..=4 => 1,
        5..=8 => 2,
        _ => 3,
    };
    candidates
        .iter()
        .map(|c| (distance(&normalized, &normalize(c)), *c))
        .filter(|(d, _)| *d <= budget)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

fn normalize(s: &str) -> String {
    s.chars().filter(|c| *c != '_' && *c != '-').flat_map(char::to_lowercase).collect()
}

/// Optimal string alignment distance: insertions, deletions, substitutions and swaps of
/// adjacent characters each cost one.
fn distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let width = b.len() + 1;
    // Row-major (a.len()+1) x (b.len()+1) table.
    let mut table = vec![0usize; (a.len() + 1) * width];
    for (i, cell) in table.iter_mut().step_by(width).enumerate() {
        *cell = i;
    }
    for (j, cell) in table.iter_mut().take(width).enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (table[(i - 1) * width + j] + 1)
                .min(table[i * width + j - 1] + 1)
                .min(table[(i - 1) * width + j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(table[(i - 2) * width + j - 2] + 1);
            }
            table[i * width + j] = best;
        }
    }
    table[a.len() * width + b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distance_counts_edits_and_swaps() {
        assert_eq!(distance("", ""), 0);
        assert_eq!(distance("abc", ""), 3);
        assert_eq!(distance("kitten", "sitting"), 3);
        assert_eq!(distance("prot", "port"), 1);
        assert_eq!(distance("tokn", "token"), 1);
    }

    #[test]
    fn typos_get_the_nearest_known_word() {
        let keys = ["port", "bind", "auth", "controlUi", "handshakeTimeoutMs"];
        assert_eq!(suggest("prot", &keys), Some("port"));
        assert_eq!(suggest("controlUI", &keys), Some("controlUi"));
        assert_eq!(suggest("handshake_timeout_ms", &keys), Some("handshakeTimeoutMs"));
        assert_eq!(suggest("handshakeTimoutMs", &keys), Some("handshakeTimeoutMs"));
        assert_eq!(suggest("tokn", &["none", "token", "password"]), Some("token"));
    }

    #[test]
    fn unrelated_words_get_no_suggestion() {
        let keys = ["port", "bind", "auth"];
        assert_eq!(suggest("colour", &keys), None);
        assert_eq!(suggest("xy", &keys), None);
        assert_eq!(suggest("", &keys), None);
    }
}
