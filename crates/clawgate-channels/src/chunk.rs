//! Splitting long replies into platform-sized messages.
//!
//! A reply is cut at the last paragraph break that fits, else the last line break, else the
//! last space, else hard at the limit (never inside a character). Open ``` code fences are
//! closed at the end of a chunk and reopened at the start of the next, so each chunk renders
//! on its own.

use crate::channel::TextMeasure;

fn measure(s: &str, m: TextMeasure) -> usize {
    match m {
        TextMeasure::Utf16 => s.encode_utf16().count(),
        TextMeasure::Chars => s.chars().count(),
    }
}

/// Byte index of the longest prefix of `s` whose length (in `m` units) is at most `max`.
fn fit(s: &str, max: usize, m: TextMeasure) -> usize {
    let mut used = 0;
    for (i, c) in s.char_indices() {
        let w = match m {
            TextMeasure::Utf16 => c.len_utf16(),
            TextMeasure::Chars => 1,
        };
        if used + w > max {
            return i;
        }
        used += w;
    }
    s.len()
}

/// Split `text` into chunks of at most `max` units each. Empty or whitespace-only text gives no
/// chunks. `max` below 16 is raised to 16 (room for fence markers).
pub fn chunk_text(text: &str, max: usize, m: TextMeasure) -> Vec<String> {
    let max = max.max(16);
    let text = text.trim_end();
    if text.trim().is_empty() {
        return Vec::new();
    }
    if measure(text, m) <= max {
        return vec![text.to_owned()];
    }
    let mut out = Vec::new();
    let mut rest = text;
    let mut reopen: Option<String> = None;
    while !rest.is_empty() {
        let prefix = reopen.take().unwrap_or_default();
        // Leave room for the reopened fence and a closing "\n```".
        let budget = max.saturating_sub(measure(&prefix, m) + 4).max(8);
        let cut = if measure(rest, m) <= budget { rest.len() } else { split_point(rest, budget, m) };
        let (head, tail) = rest.split_at(cut);
        let mut chunk = format!("{prefix}{}", head.trim_end());
        if let Some(lang) = open_fence(&chunk) {
            chunk.push_str("\n```");
            reopen = Some(format!("```{lang}\n"));
        }
        if !chunk.trim().is_empty() {
            out.push(chunk);
        }
        rest = tail.trim_start_matches(['\n', ' ']);
    }
    out
}

fn split_point(s: &str, budget: usize, m: TextMeasure) -> usize {
    let hard = fit(s, budget, m);
    let window = &s[..hard];
    // Prefer a break in the second half of the window so chunks are not tiny.
    let min = hard / 2;
    for sep in ["\n\n", "\n", ". ", " "] {
        if let Some(i) = window.rfind(sep)
            && i >= min
            && i > 0
        {
            return i + sep.len();
        }
    }
    if hard == 0 {
        // A single character wider than the budget cannot happen with budget >= 8; still,
        // always make progress.
        s.char_indices().nth(1).map_or(s.len(), |(i, _)| i)
    } else {
        hard
    }
}

/// If `s` leaves a ``` fence open, the language tag of that fence.
fn open_fence(s: &str) -> Option<String> {
    let mut open: Option<String> = None;
    for line in s.lines() {
        let t = line.trim_start();
        if let Some(after) = t.strip_prefix("```") {
            open = match open {
                Some(_) => None,
                None => Some(after.trim().to_owned()),
            };
        }
    }
    open
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_text_is_one_chunk_and_blank_is_none() {
        assert_eq!(chunk_text("hello", 4096, TextMeasure::Utf16), vec!["hello"]);
        assert!(chunk_text("  \n ", 4096, TextMeasure::Utf16).is_empty());
    }

    #[test]
    fn splits_at_4096_utf16_units_and_loses_nothing() {
        let word = "lorem ipsum dolor sit amet ";
        let text = word.repeat(400); // 10 800 chars
        let chunks = chunk_text(&text, 4096, TextMeasure::Utf16);
        assert_eq!(chunks.len(), 3);
        for c in &chunks {
            assert!(c.encode_utf16().count() <= 4096, "{}", c.len());
        }
        let joined: Vec<&str> = chunks.iter().flat_map(|c| c.split_whitespace()).collect();
        assert_eq!(joined, text.split_whitespace().collect::<Vec<_>>());
    }

    #[test]
    fn counts_astral_characters_as_two_utf16_units() {
        let text = "😀".repeat(3000); // 6000 UTF-16 units, 3000 chars
        let tg = chunk_text(&text, 4096, TextMeasure::Utf16);
        assert_eq!(tg.len(), 2);
        assert!(tg.iter().all(|c| c.encode_utf16().count() <= 4096));
        let dc = chunk_text(&text, 2000, TextMeasure::Chars);
        assert_eq!(dc.len(), 2);
        assert!(dc.iter().all(|c| c.chars().count() <= 2000));
        assert_eq!(dc.concat(), text);
    }

    #[test]
    fn prefers_paragraph_breaks() {
        let a = "a".repeat(1200);
        let b = "b".repeat(1200);
        let text = format!("{a}\n\n{b}");
        let chunks = chunk_text(&text, 2000, TextMeasure::Chars);
        assert_eq!(chunks, vec![a, b]);
    }

    #[test]
    fn code_fences_are_closed_and_reopened() {
        let body = "let x = 1;\n".repeat(300);
        let text = format!("intro\n```rust\n{body}```\nend");
        let chunks = chunk_text(&text, 2000, TextMeasure::Chars);
        assert!(chunks.len() >= 2);
        for c in &chunks {
            assert!(c.chars().count() <= 2000);
            assert_eq!(c.matches("```").count() % 2, 0, "unbalanced fence in {c:?}");
        }
        assert!(chunks[1].starts_with("```rust\n"));
    }

    #[test]
    fn never_panics_on_odd_input() {
        for s in ["\n\n\n\nx", "x\u{301}".repeat(5000).as_str(), "a b".repeat(10_000).as_str(), "```"] {
            for max in [1, 16, 17, 100, 4096] {
                for c in chunk_text(s, max, TextMeasure::Utf16) {
                    assert!(c.encode_utf16().count() <= max.max(16));
                }
            }
        }
    }
}
