//! A small incremental Server-Sent Events parser.
//!
//! Both provider APIs stream their answers as `text/event-stream`. The parser follows the WHATWG
//! rules that matter for them: lines end in LF, CR or CRLF (a CRLF split across two chunks is one
//! line end), `:` starts a comment, `field: value` loses one leading space, several `data:` lines
//! join with `\n`, a blank line dispatches the event, and a byte-order mark at the very start is
//! skipped. Bytes are decoded per line, so a multi-byte character split across network chunks is
//! never cut in half.
//!
//! We own this instead of using `eventsource-stream`: it is about a hundred lines, it lets us bound
//! the memory a misbehaving server can make us hold ([`SseParser::with_max_event_size`]), and it is
//! tested (and fuzzable) on its own, independent of any HTTP client.

use std::fmt;

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SseEvent {
    /// The `event:` field, when the server sent one (`None` means the default type, "message").
    pub event: Option<String>,
    /// The `data:` lines, joined with `\n`.
    pub data: String,
    /// The last `id:` field seen so far in the stream, if any.
    pub id: Option<String>,
}

/// The stream broke a limit the parser enforces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseError {
    limit: usize,
}

impl fmt::Display for SseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "server-sent event larger than {} bytes", self.limit)
    }
}

impl std::error::Error for SseError {}

/// Default bound on one line or one event's data: far above any real completion chunk, far below
/// what would hurt the gateway.
pub const DEFAULT_MAX_EVENT_SIZE: usize = 8 * 1024 * 1024;

/// Incremental parser: feed it chunks as they arrive with [`push`](Self::push), then call
/// [`finish`](Self::finish) at end of stream.
#[derive(Debug)]
pub struct SseParser {
    /// Bytes of the line being read; decoded only once the line is complete.
    line: Vec<u8>,
    /// The previous chunk ended in CR, so a leading LF in the next chunk belongs to that line end.
    skip_lf: bool,
    /// No line has been completed yet: the byte-order mark, if any, sits at the start of this one
    /// (checked per line rather than per chunk because the network may split the mark itself).
    first_line: bool,
    event: Option<String>,
    data: String,
    /// At least one `data` field arrived for the pending event (an empty `data:` still counts).
    has_data: bool,
    last_id: Option<String>,
    max_event_size: usize,
}

impl Default for SseParser {
    fn default() -> Self {
        Self::new()
    }
}

impl SseParser {
    /// A parser with the [default size bound](DEFAULT_MAX_EVENT_SIZE).
    pub fn new() -> Self {
        Self::with_max_event_size(DEFAULT_MAX_EVENT_SIZE)
    }

    /// A parser that fails once a single line or one event's data exceeds `max` bytes.
    pub fn with_max_event_size(max: usize) -> Self {
        Self {
            line: Vec::new(),
            skip_lf: false,
            first_line: true,
            event: None,
            data: String::new(),
            has_data: false,
            last_id: None,
            max_event_size: max,
        }
    }

    /// Feeds one chunk of bytes, appending every event it completes to `out`.
    pub fn push(&mut self, mut chunk: &[u8], out: &mut Vec<SseEvent>) -> Result<(), SseError> {
        if self.skip_lf {
            if let Some(rest) = chunk.strip_prefix(b"\n") {
                chunk = rest;
                self.skip_lf = false;
            } else if !chunk.is_empty() {
                self.skip_lf = false;
            }
        }
        while let Some(pos) = chunk.iter().position(|&b| b == b'\n' || b == b'\r') {
            self.line.extend_from_slice(&chunk[..pos]);
            self.check_size(self.line.len())?;
            let was_cr = chunk[pos] == b'\r';
            chunk = &chunk[pos + 1..];
            if was_cr {
                match chunk.first() {
                    Some(b'\n') => chunk = &chunk[1..],
                    Some(_) => {}
                    None => self.skip_lf = true,
                }
            }
            let line = std::mem::take(&mut self.line);
            self.process_line(&line, out)?;
        }
        self.line.extend_from_slice(chunk);
        self.check_size(self.line.len())
    }

    /// Ends the stream. Unlike a browser, this dispatches an event whose final blank line never
    /// came: several OpenAI-compatible servers close the connection right after `data: [DONE]`.
    pub fn finish(&mut self, out: &mut Vec<SseEvent>) -> Result<(), SseError> {
        if !self.line.is_empty() {
            let line = std::mem::take(&mut self.line);
            self.process_line(&line, out)?;
        }
        self.dispatch(out);
        Ok(())
    }

    fn check_size(&self, len: usize) -> Result<(), SseError> {
        if len > self.max_event_size { Err(SseError { limit: self.max_event_size }) } else { Ok(()) }
    }

    fn process_line(&mut self, line: &[u8], out: &mut Vec<SseEvent>) -> Result<(), SseError> {
        let line = if std::mem::take(&mut self.first_line) {
            line.strip_prefix(&[0xEF, 0xBB, 0xBF]).unwrap_or(line)
        } else {
            line
        };
        if line.is_empty() {
            self.dispatch(out);
            return Ok(());
        }
        if line[0] == b':' {
            return Ok(());
        }
        let (field, value) = match line.iter().position(|&b| b == b':') {
            Some(colon) => {
                let value = &line[colon + 1..];
                (&line[..colon], value.strip_prefix(b" ").unwrap_or(value))
            }
            None => (line, &[][..]),
        };
        let value = String::from_utf8_lossy(value);
        match field {
            b"data" => {
                self.check_size(self.data.len() + value.len() + 1)?;
                self.data.push_str(&value);
                self.data.push('\n');
                self.has_data = true;
            }
            b"event" => self.event = Some(value.into_owned()),
            b"id" if !value.contains('\0') => self.last_id = Some(value.into_owned()),
            // `retry` only matters to reconnecting browsers; unknown fields are ignored by spec.
            _ => {}
        }
        Ok(())
    }

    fn dispatch(&mut self, out: &mut Vec<SseEvent>) {
        let event = self.event.take();
        if !std::mem::take(&mut self.has_data) {
            return;
        }
        let mut data = std::mem::take(&mut self.data);
        if data.ends_with('\n') {
            data.pop();
        }
        out.push(SseEvent { event, data, id: self.last_id.clone() });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    fn parse_whole(input: &[u8]) -> Vec<SseEvent> {
        let mut parser = SseParser::new();
        let mut out = Vec::new();
        parser.push(input, &mut out).expect("within limits");
        parser.finish(&mut out).expect("within limits");
        out
    }

    fn data(events: &[SseEvent]) -> Vec<&str> {
        events.iter().map(|e| e.data.as_str()).collect()
    }

    #[test]
    fn data_lines_and_done_marker_are_events() {
        let events = parse_whole(b"data: {\"a\":1}\n\ndata: [DONE]\n\n");
        assert_eq!(data(&events), ["{\"a\":1}", "[DONE]"]);
        assert_eq!(events[0].event, None);
    }

    #[test]
    fn multi_line_data_joins_with_newline() {
        let events = parse_whole(b"data: first\ndata:second\ndata:  third\n\n");
        assert_eq!(data(&events), ["first\nsecond\n third"]);
    }

    #[test]
    fn comments_and_unknown_fields_are_ignored() {
        let events = parse_whole(b": keep-alive\nretry: 10\nfoo: bar\ndata: x\n\n: OPENROUTER PROCESSING\n\n");
        assert_eq!(data(&events), ["x"]);
    }

    #[test]
    fn crlf_cr_and_lf_all_end_lines() {
        let events = parse_whole(b"event: a\r\ndata: 1\r\n\r\nevent: b\rdata: 2\r\rdata: 3\n\n");
        assert_eq!(data(&events), ["1", "2", "3"]);
        assert_eq!(events[0].event.as_deref(), Some("a"));
        assert_eq!(events[1].event.as_deref(), Some("b"));
        assert_eq!(events[2].event, None, "event type resets after dispatch");
    }

    #[test]
    fn blank_lines_without_data_dispatch_nothing() {
        let events = parse_whole(b"\n\n\nevent: ping\n\n");
        assert!(events.is_empty());
    }

    #[test]
    fn empty_data_field_is_an_event() {
        let events = parse_whole(b"data:\n\n");
        assert_eq!(data(&events), [""]);
    }

    #[test]
    fn field_without_colon_has_empty_value() {
        let events = parse_whole(b"data\ndata\n\n");
        assert_eq!(data(&events), ["\n"]);
    }

    #[test]
    fn id_is_carried_on_later_events() {
        let events = parse_whole(b"id: 7\ndata: a\n\ndata: b\n\n");
        assert_eq!(events[1].id.as_deref(), Some("7"));
    }

    #[test]
    fn bom_is_skipped() {
        let events = parse_whole(b"\xEF\xBB\xBFdata: x\n\n");
        assert_eq!(data(&events), ["x"]);
    }

    #[test]
    fn trailing_event_without_blank_line_is_dispatched_at_end() {
        let events = parse_whole(b"data: a\n\ndata: [DONE]");
        assert_eq!(data(&events), ["a", "[DONE]"]);
    }

    #[test]
    fn oversized_line_is_an_error_not_unbounded_memory() {
        let mut parser = SseParser::with_max_event_size(16);
        let mut out = Vec::new();
        assert!(parser.push(b"data: 0123456789", &mut out).is_ok());
        assert!(parser.push(b"0123456789", &mut out).is_err());
    }

    #[test]
    fn oversized_event_data_is_an_error() {
        let mut parser = SseParser::with_max_event_size(16);
        let mut out = Vec::new();
        let result = parser.push(b"data: 0123456789\ndata: 0123456789\n", &mut out);
        assert!(result.is_err());
    }

    /// The property the network forces on us: however the bytes are split into chunks, the same
    /// events come out. Random splits over a corpus covering every line ending and multi-byte text.
    #[test]
    fn random_chunk_splits_yield_the_same_events() {
        let corpus: &[&[u8]] = &[
            b"data: {\"choices\":[{\"delta\":{\"content\":\"h\xC3\xA9llo \xF0\x9F\xA6\x80\"}}]}\r\n\r\n",
            b"event: content_block_delta\ndata: {\"type\":\"x\"}\n\n",
            b": comment\r\rdata: a\rdata: b\r\r",
            b"\xEF\xBB\xBFid: 1\ndata: one\n\ndata:two\n\ndata: [DONE]\n\n",
            b"data: line1\r\ndata: line2\r\n\r\n: trailing\r\n",
            b"data: tail without newline",
        ];
        let mut rng = StdRng::seed_from_u64(0x5EED);
        for input in corpus {
            let expected = parse_whole(input);
            for _ in 0..500 {
                let mut parser = SseParser::new();
                let mut out = Vec::new();
                let mut rest = *input;
                while !rest.is_empty() {
                    let n = rng.gen_range(0..=rest.len().min(7));
                    let (head, tail) = rest.split_at(n);
                    parser.push(head, &mut out).expect("within limits");
                    rest = tail;
                }
                parser.finish(&mut out).expect("within limits");
                assert_eq!(out, expected, "input {:?}", String::from_utf8_lossy(input));
            }
        }
    }

    /// Fuzz-style: arbitrary bytes never panic and never exceed the bound.
    #[test]
    fn arbitrary_bytes_never_panic() {
        let alphabet: &[u8] = b"data:event id\r\n: [DONE]{}\xC3\xA9\xFF\x00";
        let mut rng = StdRng::seed_from_u64(42);
        for _ in 0..2_000 {
            let len = rng.gen_range(0..200);
            let input: Vec<u8> = (0..len).map(|_| alphabet[rng.gen_range(0..alphabet.len())]).collect();
            let mut parser = SseParser::with_max_event_size(64);
            let mut out = Vec::new();
            for chunk in input.chunks(rng.gen_range(1..16)) {
                if parser.push(chunk, &mut out).is_err() {
                    break;
                }
            }
            let _ = parser.finish(&mut out);
            assert!(out.iter().all(|e| e.data.len() <= 64));
        }
    }
}
