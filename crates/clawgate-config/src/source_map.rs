//! Where each key of a JSON5 document sits in its source text.
//!
//! `json5` gives us a `serde_json::Value` but forgets positions, and validation happens on that
//! value. To point an error at `clawgate.json5:7:13` we scan the text a second time with a small
//! JSON5-aware scanner and record, for every key path, the position of the key and of its
//! value.
//!
//! The scanner never fails loudly: on text it does not understand it stops and keeps what it
//! has recorded so far. That is what we want for syntax errors too, where the recorded
//! containers tell which object the parser was inside when it gave up.
//!
//! Positions count lines and columns from 1; columns count Unicode scalar values (as the `json5`
//! crate does), and `\r\n`, `\r`, `\n`, U+2028 and U+2029 each end a line.

use std::collections::HashMap;
use std::fmt;

use json5::char::{is_json5_line_terminator, is_json5_whitespace};

use crate::path::KeyPath;

/// A line and column in the config source, both 1-based.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Position {
    /// Line number, starting at 1.
    pub line: usize,
    /// Column number in characters, starting at 1.
    pub column: usize,
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

/// Where one key path appears in the source.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Location {
    /// The key token (the opening quote for quoted keys); `None` for array elements and the root.
    pub key: Option<Position>,
    /// The first character of the value.
    pub value: Position,
}

/// An object or array seen while scanning, used to name the place of a syntax error.
#[derive(Clone, Debug)]
struct Container {
    path: KeyPath,
    open: Position,
    /// `None` when the scan stopped before the closing bracket.
    close: Option<Position>,
}

/// Key path → source position index of one JSON5 document.
#[derive(Clone, Debug, Default)]
pub struct SourceMap {
    locations: HashMap<KeyPath, Location>,
    containers: Vec<Container>,
    blank: bool,
}

/// Deeper nesting than this is not indexed; no real config comes close.
const MAX_DEPTH: usize = 256;

impl SourceMap {
    /// Scans `text`. Never fails: unreadable text yields a partial (possibly empty) map.
    #[must_use]
    pub fn new(text: &str) -> Self {
        let mut scanner = Scanner { cursor: Cursor::new(text), map: SourceMap::default() };
        scanner.document();
        scanner.map
    }

    /// Position of the key token of `path`, or `None` if the path is not in the source or is
    /// an array element or the root.
    #[must_use]
    pub fn key_position(&self, path: &KeyPath) -> Option<Position> {
        self.locations.get(path).and_then(|loc| loc.key)
    }

    /// Position of the first character of the value at `path`.
    #[must_use]
    pub fn value_position(&self, path: &KeyPath) -> Option<Position> {
        self.locations.get(path).map(|loc| loc.value)
    }

    /// Both positions of `path`, if it appears in the source.
    #[must_use]
    pub fn location(&self, path: &KeyPath) -> Option<Location> {
        self.locations.get(path).copied()
    }

    /// Whether the text holds no value at all (only whitespace and comments).
    #[must_use]
    pub fn is_blank(&self) -> bool {
        self.blank
    }

    /// The innermost object or array that contains `pos`, e.g. the object the parser was
    /// inside when it reported a syntax error at `pos`.
    #[must_use]
    pub fn enclosing_container(&self, pos: Position) -> Option<&KeyPath> {
        self.containers
            .iter()
            .filter(|c| c.open <= pos && c.close.is_none_or(|close| pos <= close))
            // Containers are recorded in document order, so among those that contain `pos`
            // the last opened is the innermost.
            .max_by_key(|c| c.open)
            .map(|c| &c.path)
    }
}

/// The scanner stopped: the text is not JSON5 the scanner understands from here on.
struct Stop;

struct Scanner<'a> {
    cursor: Cursor<'a>,
    map: SourceMap,
}

impl Scanner<'_> {
    fn document(&mut self) {
        self.cursor.skip_trivia();
        if self.cursor.peek().is_none() {
            self.map.blank = true;
            return;
        }
        let value = self.cursor.position();
        self.map.locations.insert(KeyPath::root(), Location { key: None, value });
        // A Stop just ends the scan; what was recorded stays.
        let _ = self.value(&KeyPath::root(), 0);
    }

    fn value(&mut self, path: &KeyPath, depth: usize) -> Result<(), Stop> {
        match self.cursor.peek() {
            Some('{') => self.object(path, depth + 1),
            Some('[') => self.array(path, depth + 1),
            Some(quote @ ('"' | '\'')) => self.cursor.string(quote).map(drop),
            Some(_) => self.cursor.scalar(),
            None => Err(Stop),
        }
    }

    fn object(&mut self, path: &KeyPath, depth: usize) -> Result<(), Stop> {
        if depth > MAX_DEPTH {
            return Err(Stop);
        }
        let container = self.open_container(path);
        loop {
            self.cursor.skip_trivia();
            let key_pos = self.cursor.position();
            let key = match self.cursor.peek() {
                Some('}') => return self.close_container(container),
                Some(quote @ ('"' | '\'')) => self.cursor.string(quote)?,
                Some(_) => self.cursor.identifier()?,
                None => return Err(Stop),
            };
            self.cursor.skip_trivia();
            self.cursor.expect(':')?;
            self.cursor.skip_trivia();
            let value_pos = self.cursor.position();
            let child = path.child(&key);
            self.map.locations.insert(child.clone(), Location { key: Some(key_pos), value: value_pos });
            self.value(&child, depth)?;
            self.cursor.skip_trivia();
            match self.cursor.peek() {
                Some(',') => self.cursor.bump(),
                Some('}') => return self.close_container(container),
                _ => return Err(Stop),
            };
        }
    }

    fn array(&mut self, path: &KeyPath, depth: usize) -> Result<(), Stop> {
        if depth > MAX_DEPTH {
            return Err(Stop);
        }
        let container = self.open_container(path);
        let mut index = 0;
        loop {
            self.cursor.skip_trivia();
            if self.cursor.peek() == Some(']') {
                return self.close_container(container);
            }
            let value_pos = self.cursor.position();
            let child = path.index(index);
            self.map.locations.insert(child.clone(), Location { key: None, value: value_pos });
            self.value(&child, depth)?;
            index += 1;
            self.cursor.skip_trivia();
            match self.cursor.peek() {
                Some(',') => self.cursor.bump(),
                Some(']') => return self.close_container(container),
                _ => return Err(Stop),
            };
        }
    }

    /// Consumes the opening bracket and records the container; returns its index.
    fn open_container(&mut self, path: &KeyPath) -> usize {
        let open = self.cursor.position();
        self.cursor.bump();
        self.map.containers.push(Container { path: path.clone(), open, close: None });
        self.map.containers.len() - 1
    }

    /// Consumes the closing bracket (already peeked) and records where it was.
    fn close_container(&mut self, index: usize) -> Result<(), Stop> {
        let close = self.cursor.position();
        self.cursor.bump();
        if let Some(container) = self.map.containers.get_mut(index) {
            container.close = Some(close);
        }
        Ok(())
    }
}

/// A character cursor that tracks line and column.
struct Cursor<'a> {
    text: &'a str,
    offset: usize,
    line: usize,
    column: usize,
}

impl<'a> Cursor<'a> {
    fn new(text: &'a str) -> Self {
        Self { text, offset: 0, line: 1, column: 1 }
    }

    fn position(&self) -> Position {
        Position { line: self.line, column: self.column }
    }

    fn rest(&self) -> &'a str {
        &self.text[self.offset..]
    }

    fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }

    fn peek_second(&self) -> Option<char> {
        self.rest().chars().nth(1)
    }

    /// Consumes one character, if any, and returns it.
    fn next(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.offset += c.len_utf8();
        if c == '\r' && self.peek() == Some('\n') {
            // `\r\n` is one line terminator: the `\n` that follows ends the line.
            return Some(c);
        }
        if is_json5_line_terminator(c) {
            self.line += 1;
            self.column = 1;
        } else {
            self.column += 1;
        }
        Some(c)
    }

    fn bump(&mut self) {
        self.next();
    }

    fn expect(&mut self, want: char) -> Result<(), Stop> {
        if self.peek() == Some(want) {
            self.bump();
            Ok(())
        } else {
            Err(Stop)
        }
    }

    /// Skips whitespace and comments.
    fn skip_trivia(&mut self) {
        loop {
            match (self.peek(), self.peek_second()) {
                (Some(c), _) if is_json5_whitespace(c) => self.bump(),
                (Some('/'), Some('/')) => {
                    while let Some(c) = self.peek() {
                        if is_json5_line_terminator(c) {
                            break;
                        }
                        self.bump();
                    }
                }
                (Some('/'), Some('*')) => {
                    self.bump();
                    self.bump();
                    loop {
                        match (self.peek(), self.peek_second()) {
                            (Some('*'), Some('/')) => {
                                self.bump();
                                self.bump();
                                break;
                            }
                            (Some(_), _) => self.bump(),
                            // Unterminated comment: nothing more to scan.
                            (None, _) => return,
                        }
                    }
                }
                _ => return,
            }
        }
    }

    /// Reads a quoted string starting at the opening `quote` and returns its decoded text.
    fn string(&mut self, quote: char) -> Result<String, Stop> {
        self.bump();
        let mut out = Utf16Builder::default();
        loop {
            let c = self.next().ok_or(Stop)?;
            if c == quote {
                return Ok(out.finish());
            }
            if c != '\\' {
                if matches!(c, '\n' | '\r') {
                    // A raw newline cannot appear in a JSON5 string (U+2028/9 can).
                    return Err(Stop);
                }
                out.push_char(c);
                continue;
            }
            match self.next().ok_or(Stop)? {
                'b' => out.push_char('\u{8}'),
                'f' => out.push_char('\u{c}'),
                'n' => out.push_char('\n'),
                'r' => out.push_char('\r'),
                't' => out.push_char('\t'),
                'v' => out.push_char('\u{b}'),
                '0' => out.push_char('\0'),
                'x' => {
                    let code = self.hex(2)?;
                    out.push_char(char::from_u32(code).ok_or(Stop)?);
                }
                'u' => {
                    let unit = u16::try_from(self.hex(4)?).map_err(|_| Stop)?;
                    out.push_unit(unit);
                }
                // Line continuation: the escaped terminator is dropped (`\r\n` counts as one).
                '\r' => {
                    if self.peek() == Some('\n') {
                        self.bump();
                    }
                }
                c if is_json5_line_terminator(c) => {}
                other => out.push_char(other),
            }
        }
    }

    /// Reads an unquoted (ECMAScript identifier) key, decoding `\uXXXX` escapes.
    fn identifier(&mut self) -> Result<String, Stop> {
        let mut out = Utf16Builder::default();
        while let Some(c) = self.peek() {
            if c == ':' || is_json5_whitespace(c) || matches!(c, '{' | '}' | '[' | ']' | ',' | '"' | '\'' | '/') {
                break;
            }
            self.bump();
            if c == '\\' {
                self.expect('u')?;
                let unit = u16::try_from(self.hex(4)?).map_err(|_| Stop)?;
                out.push_unit(unit);
            } else {
                out.push_char(c);
            }
        }
        let key = out.finish();
        if key.is_empty() { Err(Stop) } else { Ok(key) }
    }

    /// Skips a number, `true`, `false`, `null`, `Infinity` or `NaN`.
    fn scalar(&mut self) -> Result<(), Stop> {
        let start = self.offset;
        while let Some(c) = self.peek() {
            let comment = c == '/' && matches!(self.peek_second(), Some('/' | '*'));
            if comment || is_json5_whitespace(c) || matches!(c, ',' | ']' | '}' | ':' | '{' | '[' | '"' | '\'') {
                break;
            }
            self.bump();
        }
        // No progress means an unexpected character where a value should be.
        if self.offset == start { Err(Stop) } else { Ok(()) }
    }

    fn hex(&mut self, digits: usize) -> Result<u32, Stop> {
        let mut value = 0u32;
        for _ in 0..digits {
            let digit = self.next().and_then(|c| c.to_digit(16)).ok_or(Stop)?;
            value = value * 16 + digit;
        }
        Ok(value)
    }
}

/// Builds a string from chars and UTF-16 code units, so `\uD83D\uDE00` escape pairs combine
/// into one character. Unpaired surrogates become U+FFFD.
#[derive(Default)]
struct Utf16Builder {
    text: String,
    pending: Vec<u16>,
}

impl Utf16Builder {
    fn push_unit(&mut self, unit: u16) {
        self.pending.push(unit);
    }

    fn push_char(&mut self, c: char) {
        self.flush();
        self.text.push(c);
    }

    fn flush(&mut self) {
        if !self.pending.is_empty() {
            self.text.push_str(&String::from_utf16_lossy(&self.pending));
            self.pending.clear();
        }
    }

    fn finish(mut self) -> String {
        self.flush();
        self.text
    }
}

/// Converts a 0-based position reported by the `json5` crate into ours.
pub(crate) fn from_json5(pos: json5::Position) -> Position {
    Position { line: pos.line + 1, column: pos.column + 1 }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pos(line: usize, column: usize) -> Position {
        Position { line, column }
    }

    fn path(text: &str) -> KeyPath {
        KeyPath::parse(text).unwrap()
    }

    /// Position of the first occurrence of `needle` in `text`, computed independently of the
    /// scanner (only `\n` line breaks; used for the plain-ASCII fixtures).
    fn find(text: &str, needle: &str) -> Position {
        let offset = text.find(needle).unwrap();
        let before = &text[..offset];
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().unwrap().chars().count() + 1;
        pos(line, column)
    }

    const SAMPLE: &str = r#"// clawgate config
{
  /* block
     comment { with [ brackets ] and "quotes" */
  gateway: {
    port: 18789, // trailing comment
    'bind': 'lan',
    "auth": {
      mode: "tokn",
      token: "a \"quoted\" // not a comment",
    },
  },
  agents: {
    list: [
      { id: 'main', tags: ['x', [1, 2, {deep: true}]] },
      { id: "second", },
    ],
  },
  numbers: [0x1F, +1, -Infinity, NaN, .5, 5., 1e-3,],
  after: null,
}
"#;

    #[test]
    fn records_key_and_value_positions_of_nested_keys() {
        let map = SourceMap::new(SAMPLE);
        assert_eq!(map.key_position(&path("gateway.port")), Some(find(SAMPLE, "port:")));
        assert_eq!(map.value_position(&path("gateway.port")), Some(find(SAMPLE, "18789")));
        assert_eq!(map.key_position(&path("gateway.auth.mode")), Some(find(SAMPLE, "mode:")));
        assert_eq!(map.value_position(&path("gateway.auth.mode")), Some(find(SAMPLE, "\"tokn\"")));
        assert_eq!(map.value_position(&path("gateway.auth.mode")), Some(pos(9, 13)));
    }

    #[test]
    fn quoted_keys_point_at_the_opening_quote() {
        let map = SourceMap::new(SAMPLE);
        assert_eq!(map.key_position(&path("gateway.bind")), Some(find(SAMPLE, "'bind'")));
        assert_eq!(map.key_position(&path("gateway.auth")), Some(find(SAMPLE, "\"auth\"")));
    }

    #[test]
    fn comments_and_strings_do_not_confuse_the_scanner() {
        let map = SourceMap::new(SAMPLE);
        // The block comment mentions `{` and `"`, the token string contains `//` and escaped
        // quotes; keys after them must still be found.
        assert_eq!(map.value_position(&path("gateway.auth.token")), Some(find(SAMPLE, "\"a \\\"")));
        assert_eq!(map.key_position(&path("agents")), Some(find(SAMPLE, "agents:")));
        assert_eq!(map.key_position(&path("after")), Some(find(SAMPLE, "after:")));
    }

    #[test]
    fn array_elements_are_indexed_including_nested_arrays() {
        let map = SourceMap::new(SAMPLE);
        assert_eq!(map.value_position(&path("agents.list[1]")), Some(find(SAMPLE, "{ id: \"second\"")));
        assert_eq!(map.key_position(&path("agents.list[1].id")), Some(find(SAMPLE, "id: \"second\"")));
        assert_eq!(map.value_position(&path("agents.list[0].tags[1][2].deep")), Some(find(SAMPLE, "true}")));
        assert_eq!(map.key_position(&path("agents.list[0]")), None);
        assert_eq!(map.location(&path("agents.list[2]")), None);
    }

    #[test]
    fn json5_number_forms_and_trailing_commas_are_skipped() {
        let map = SourceMap::new(SAMPLE);
        assert_eq!(map.value_position(&path("numbers[2]")), Some(find(SAMPLE, "-Infinity")));
        assert_eq!(map.value_position(&path("numbers[6]")), Some(find(SAMPLE, "1e-3")));
        assert_eq!(map.location(&path("numbers[7]")), None);
    }

    #[test]
    fn escaped_keys_are_decoded() {
        let text = r#"{ "a\"b": 1, 'c\'d': 2, "\u0041x": 3, \u0062y: 4, "\uD83D\uDE00": 5, "e\
f": 6, "\x41": 7 }"#;
        let map = SourceMap::new(text);
        for key in ["a\"b", "c'd", "Ax", "by", "😀", "ef", "A"] {
            assert!(map.location(&KeyPath::root().child(key)).is_some(), "key {key:?} not found");
        }
        assert_eq!(map.key_position(&KeyPath::root().child("ef")), Some(find(text, "\"e\\")));
        // After the line continuation the scanner is on line 2.
        assert_eq!(map.key_position(&KeyPath::root().child("A")), Some(find(text, "\"\\x41\"")));
    }

    #[test]
    fn columns_count_characters_not_bytes() {
        let text = "{ \"ünïcødé\": 1, k: 2 }";
        let map = SourceMap::new(text);
        assert_eq!(map.key_position(&path("k")), Some(pos(1, 17)));
    }

    #[test]
    fn crlf_and_cr_and_unicode_separators_end_lines() {
        let text = "{\r\n  a: 1,\r  b: 2,\u{2028}  c: 3,\n  d: 4\r\n}";
        let map = SourceMap::new(text);
        assert_eq!(map.key_position(&path("a")), Some(pos(2, 3)));
        assert_eq!(map.key_position(&path("b")), Some(pos(3, 3)));
        assert_eq!(map.key_position(&path("c")), Some(pos(4, 3)));
        assert_eq!(map.key_position(&path("d")), Some(pos(5, 3)));
    }

    #[test]
    fn positions_agree_with_the_json5_parser() {
        // A deliberately broken value at a known place: the json5 crate's error position must
        // land where our scanner says the value starts.
        let text = "{\r\n  // c\r\n  a: { b: [1, 'x\\\r\ny', {c: @}] }\r\n}";
        let err = json5::from_str::<serde_json::Value>(text).unwrap_err();
        let parser = from_json5(err.position().unwrap());
        let map = SourceMap::new(text);
        assert_eq!(map.value_position(&path("a.b[2].c")), Some(parser));
    }

    /// Byte offset of a position in LF-only text (independent of the scanner's own counting).
    fn offset_of(text: &str, at: Position) -> usize {
        let line_start: usize = text.split_inclusive('\n').take(at.line - 1).map(str::len).sum();
        let column_bytes: usize = text[line_start..].chars().take(at.column - 1).map(char::len_utf8).sum();
        line_start + column_bytes
    }

    #[test]
    fn every_value_position_matches_where_the_parser_reports_an_error() {
        // Oracle test: put an invalid character right where the scanner says a value starts;
        // the real parser must complain at exactly that position. Covers every key and array
        // element of the sample, including those after comments and tricky strings.
        let map = SourceMap::new(SAMPLE);
        assert!(map.locations.len() > 25, "sample too small: {}", map.locations.len());
        for (path, location) in &map.locations {
            let offset = offset_of(SAMPLE, location.value);
            let broken = format!("{}@{}", &SAMPLE[..offset], &SAMPLE[offset..]);
            let err = json5::from_str::<serde_json::Value>(&broken).expect_err("inserting @ must break the document");
            let parser = err.position().map(from_json5);
            assert_eq!(parser, Some(location.value), "value of {path}: {err}");
        }
    }

    #[test]
    fn blank_documents_are_detected() {
        assert!(SourceMap::new("").is_blank());
        assert!(SourceMap::new("  // nothing\n/* here */\n").is_blank());
        assert!(!SourceMap::new("{}").is_blank());
    }

    #[test]
    fn root_value_is_recorded() {
        let map = SourceMap::new("\n\n  {a: 1}");
        assert_eq!(map.value_position(&KeyPath::root()), Some(pos(3, 3)));
        assert_eq!(map.key_position(&KeyPath::root()), None);
    }

    #[test]
    fn duplicate_keys_resolve_to_the_last_occurrence_like_the_parser() {
        let text = "{a: 1,\n a: 2}";
        let map = SourceMap::new(text);
        assert_eq!(map.key_position(&path("a")), Some(pos(2, 2)));
        let value: serde_json::Value = json5::from_str(text).unwrap();
        assert_eq!(value["a"], 2);
    }

    #[test]
    fn broken_text_keeps_what_was_scanned_and_never_panics() {
        let map = SourceMap::new("{ a: 1, b: { c: 2 d: 3 } }");
        assert_eq!(map.value_position(&path("b.c")), Some(pos(1, 17)));
        assert_eq!(map.location(&path("b.d")), None);
        for text in [
            "{",
            "}",
            "[",
            "{a",
            "{a:",
            "{'a",
            "{\"a\\",
            "{a: /* x",
            "{a: 'x\\u12",
            "[1,,2]",
            "{a:1}}",
            ":",
            "\\",
            "{\\u12",
            "'",
            "\u{FEFF}{a: 1}",
        ] {
            let _ = SourceMap::new(text);
        }
    }

    #[test]
    fn byte_order_mark_is_whitespace() {
        let map = SourceMap::new("\u{FEFF}{a: 1}");
        assert_eq!(map.key_position(&path("a")), Some(pos(1, 3)));
    }

    #[test]
    fn deep_nesting_stops_without_overflowing_the_stack() {
        let text = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        let map = SourceMap::new(&text);
        assert!(map.value_position(&KeyPath::root()).is_some());
    }

    #[test]
    fn enclosing_container_names_the_object_being_parsed() {
        let text = "{\n  gateway: {\n    port: 1\n    bind: 'lan'\n  },\n}";
        let map = SourceMap::new(text);
        // The parser stops at `bind` (missing comma) — inside `gateway`.
        assert_eq!(map.enclosing_container(pos(4, 5)), Some(&path("gateway")));
        let closed = "{ a: { b: 1 }, c: 2 }";
        let map = SourceMap::new(closed);
        assert_eq!(map.enclosing_container(pos(1, 16)), Some(&KeyPath::root()));
        assert_eq!(map.enclosing_container(pos(1, 9)), Some(&path("a")));
        assert_eq!(map.enclosing_container(pos(1, 1)), Some(&KeyPath::root()));
        assert_eq!(map.enclosing_container(pos(1, 22)), None);
    }

    #[test]
    fn every_key_of_a_generated_document_is_found_at_its_true_position() {
        // Property-style check: build a document with many shapes of keys and values, note
        // where each key was written, and compare with the scanner.
        let mut text = String::from("{\n");
        let mut expected = Vec::new();
        let keys = ["plain", "'single'", "\"double\"", "$dollar", "_under", "\"sp ace\""];
        let values = ["1", "'s'", "\"d\"", "[1, [2]]", "{x: 1}", "true", "null", "-0x10"];
        for (i, value) in values.iter().enumerate() {
            for (j, key) in keys.iter().enumerate() {
                let indent = " ".repeat(1 + (i + j) % 4);
                let line = text.matches('\n').count() + 1;
                let name = format!("{}{i}", key.trim_matches(['\'', '"']));
                let quote = key.chars().next().filter(|c| *c == '\'' || *c == '"');
                let written = match quote {
                    Some(q) => format!("{q}{name}{q}"),
                    None => name.clone(),
                };
                text.push_str(&format!("{indent}{written} :{indent}{value}, // {j}\n"));
                expected.push((name, pos(line, indent.len() + 1)));
            }
        }
        text.push('}');
        let parsed: serde_json::Value = json5::from_str(&text).unwrap();
        let map = SourceMap::new(&text);
        for (name, at) in expected {
            assert!(parsed.get(&name).is_some(), "fixture key {name} missing");
            assert_eq!(map.key_position(&KeyPath::root().child(&name)), Some(at), "{name}");
        }
    }
}
