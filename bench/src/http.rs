//! Just enough HTTP/1.1 for the fake model server and the direct-to-model client: request and
//! response heads, `Content-Length` and `chunked` bodies, keep-alive. No dependency beyond
//! tokio, so both ends stay raw and cheap (the point is to measure the gateway, not a stack).

use std::net::{IpAddr, SocketAddr};

use anyhow::{Context, Result, anyhow, bail};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// Heads bigger than this are refused (a real client sends well under 8 KiB).
pub const MAX_HEAD: usize = 64 * 1024;
/// Bodies bigger than this are refused (the real gateway's biggest request was ~57 KB).
pub const MAX_BODY: usize = 16 * 1024 * 1024;

/// A parsed request or response head.
#[derive(Debug, Default)]
pub struct Head {
    /// Request: method. Response: the HTTP version.
    pub first: String,
    /// Request: path. Response: status code.
    pub second: String,
    /// Header names lower-cased.
    pub headers: Vec<(String, String)>,
}

impl Head {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    pub fn chunked(&self) -> bool {
        self.header("transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked"))
    }

    pub fn content_length(&self) -> Option<usize> {
        self.header("content-length").and_then(|v| v.trim().parse().ok())
    }

    pub fn wants_close(&self) -> bool {
        self.header("connection").is_some_and(|v| v.eq_ignore_ascii_case("close"))
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Parses a head (`buf[..end]`, without the blank line).
fn parse_head(bytes: &[u8]) -> Result<Head> {
    let text = std::str::from_utf8(bytes).context("head is not UTF-8")?;
    let mut lines = text.split("\r\n");
    let start = lines.next().unwrap_or_default();
    let mut parts = start.splitn(3, ' ');
    let first = parts.next().unwrap_or_default().to_owned();
    let second = parts.next().unwrap_or_default().to_owned();
    if first.is_empty() || second.is_empty() {
        bail!("bad start line {start:?}");
    }
    let headers = lines
        .filter(|l| !l.is_empty())
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Ok(Head { first, second, headers })
}

/// A connection's read side with its leftover bytes.
pub struct Reader {
    pub buf: Vec<u8>,
}

impl Reader {
    pub fn new() -> Self {
        Self { buf: Vec::with_capacity(16 * 1024) }
    }

    /// Reads more bytes; `Ok(false)` at EOF.
    pub async fn fill(&mut self, tcp: &mut TcpStream) -> Result<bool> {
        let mut chunk = [0u8; 16 * 1024];
        let n = tcp.read(&mut chunk).await.context("reading")?;
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(n > 0)
    }

    /// Reads one head; `Ok(None)` on a clean EOF before any byte of it.
    pub async fn head(&mut self, tcp: &mut TcpStream) -> Result<Option<Head>> {
        loop {
            if let Some(end) = find(&self.buf, b"\r\n\r\n") {
                let head = parse_head(&self.buf[..end])?;
                self.buf.drain(..end + 4);
                return Ok(Some(head));
            }
            if self.buf.len() > MAX_HEAD {
                bail!("head larger than {MAX_HEAD} bytes");
            }
            if !self.fill(tcp).await? {
                if self.buf.is_empty() {
                    return Ok(None);
                }
                bail!("connection closed inside a head");
            }
        }
    }

    /// Reads a whole body (Content-Length or chunked; no length and not chunked = empty).
    pub async fn body(&mut self, tcp: &mut TcpStream, head: &Head) -> Result<Vec<u8>> {
        if head.chunked() {
            let mut dec = Chunked::default();
            let mut body = Vec::new();
            loop {
                if dec.feed(&mut self.buf, &mut body)? {
                    return Ok(body);
                }
                if body.len() > MAX_BODY {
                    bail!("body larger than {MAX_BODY} bytes");
                }
                if !self.fill(tcp).await? {
                    bail!("connection closed inside a chunked body");
                }
            }
        }
        let len = head.content_length().unwrap_or(0);
        if len > MAX_BODY {
            bail!("body of {len} bytes is larger than {MAX_BODY}");
        }
        while self.buf.len() < len {
            if !self.fill(tcp).await? {
                bail!("connection closed inside a body");
            }
        }
        Ok(self.buf.drain(..len).collect())
    }
}

/// Incremental `Transfer-Encoding: chunked` decoder.
#[derive(Default)]
pub struct Chunked {
    /// Bytes still to copy from the current chunk (plus its trailing CRLF).
    left: usize,
    in_chunk: bool,
}

impl Chunked {
    /// Moves decoded bytes from `raw` to `out`. `Ok(true)` once the last (empty) chunk and
    /// its blank line are consumed.
    pub fn feed(&mut self, raw: &mut Vec<u8>, out: &mut Vec<u8>) -> Result<bool> {
        let mut pos = 0;
        let done = loop {
            if self.in_chunk {
                // `left` counts data bytes plus the CRLF after them.
                let avail = raw.len() - pos;
                if avail < self.left {
                    let data = avail.min(self.left.saturating_sub(2));
                    out.extend_from_slice(&raw[pos..pos + data]);
                    self.left -= data;
                    pos += data;
                    break false;
                }
                let data = self.left.saturating_sub(2);
                out.extend_from_slice(&raw[pos..pos + data]);
                pos += self.left;
                self.left = 0;
                self.in_chunk = false;
                continue;
            }
            let Some(eol) = find(&raw[pos..], b"\r\n") else { break false };
            let line = std::str::from_utf8(&raw[pos..pos + eol]).context("chunk size line")?;
            let size_hex = line.split(';').next().unwrap_or_default().trim();
            let size = usize::from_str_radix(size_hex, 16).with_context(|| format!("bad chunk size {line:?}"))?;
            if size == 0 {
                // Last chunk: no trailers expected, just the blank line.
                if raw.len() - pos < eol + 4 {
                    break false;
                }
                pos += eol + 4;
                break true;
            }
            pos += eol + 2;
            self.left = size + 2;
            self.in_chunk = true;
        };
        raw.drain(..pos);
        Ok(done)
    }
}

/// Frames one piece of a chunked body.
pub fn chunk(data: &[u8]) -> Vec<u8> {
    let mut out = format!("{:x}\r\n", data.len()).into_bytes();
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
    out
}

/// A checked loopback `http://` base URL such as `http://127.0.0.1:28804/v1`.
#[derive(Clone, Debug)]
pub struct HttpTarget {
    pub addr: SocketAddr,
    /// `host:port` for the Host header.
    pub host: String,
    /// Path prefix without a trailing slash (e.g. `/v1`).
    pub base_path: String,
}

impl HttpTarget {
    pub fn parse(url: &str) -> Result<Self> {
        let rest =
            url.strip_prefix("http://").ok_or_else(|| anyhow!("model url must start with http:// (got {url:?})"))?;
        let (authority, path) = rest.split_once('/').map_or((rest, ""), |(a, p)| (a, p));
        let (host, port) =
            authority.rsplit_once(':').ok_or_else(|| anyhow!("model url must carry an explicit port (got {url:?})"))?;
        let port: u16 = port.parse().with_context(|| format!("bad port in {url:?}"))?;
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let ip: IpAddr = if bare.eq_ignore_ascii_case("localhost") {
            IpAddr::from([127, 0, 0, 1])
        } else {
            bare.parse().with_context(|| format!("host in {url:?} must be a loopback IP or localhost"))?
        };
        if !ip.is_loopback() {
            bail!("refusing to load {ip}: this tool only targets loopback addresses");
        }
        let base_path = format!("/{}", path.trim_end_matches('/')).replace("//", "/");
        let base_path = if base_path == "/" { String::new() } else { base_path };
        Ok(Self { addr: SocketAddr::new(ip, port), host: authority.to_owned(), base_path })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunked_decodes_across_splits() {
        let whole = [chunk(b"hello "), chunk(b"world"), b"0\r\n\r\n".to_vec()].concat();
        for split in 0..whole.len() {
            let mut dec = Chunked::default();
            let mut out = Vec::new();
            let mut raw = whole[..split].to_vec();
            let first = dec.feed(&mut raw, &mut out).expect("decodes");
            assert!(!first || split == whole.len());
            raw.extend_from_slice(&whole[split..]);
            assert!(dec.feed(&mut raw, &mut out).expect("decodes"), "split {split}");
            assert_eq!(out, b"hello world", "split {split}");
            assert!(raw.is_empty());
        }
    }

    #[test]
    fn model_urls_are_loopback_only() {
        let t = HttpTarget::parse("http://127.0.0.1:9/v1").expect("ok");
        assert_eq!(t.base_path, "/v1");
        assert_eq!(HttpTarget::parse("http://localhost:9").expect("ok").base_path, "");
        assert!(HttpTarget::parse("http://10.1.1.1:9/v1").is_err());
        assert!(HttpTarget::parse("https://127.0.0.1:9/v1").is_err());
    }
}
