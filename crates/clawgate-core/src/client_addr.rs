//! Who a request comes from when reverse proxies sit in front of the gateway
//! (`gateway.trustedProxies`, `gateway.allowRealIpFallback`).
//!
//! [`client_peer`] is the one place the client address is decided; every per-address decision
//! (handshake lockouts and limiters, "is this client local", the webhook failed-signature
//! limiter, logs) uses its answer. Forwarding headers are believed only when the TCP peer is a
//! listed proxy; the `X-Forwarded-For` / `Forwarded` list is walked from the right, skipping
//! trusted hops, and the first untrusted address is the client. Anything unparsable falls back
//! to the TCP peer. A forwarded request is never local, even through a loopback proxy.

use std::net::{IpAddr, Ipv6Addr};

use clawgate_config::IpCidr;
use http::HeaderMap;

use crate::auth::Peer;

/// At most this many hops are examined from the right of a forwarding list: a header with more
/// (a 10 000-entry `X-Forwarded-For`) costs no more than this, and is treated as garbage when
/// every examined hop is a trusted proxy.
pub const MAX_HOPS: usize = 32;

/// The longest text one hop may have (`[ffff:…:ffff]:65535` with quotes fits).
const MAX_HOP_LEN: usize = 64;

/// Which peers may name the client.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProxyTrust {
    /// `gateway.trustedProxies`.
    pub proxies: Vec<IpCidr>,
    /// `gateway.allowRealIpFallback`: believe `X-Real-IP` when a trusted proxy sends neither
    /// `X-Forwarded-For` nor `Forwarded`.
    pub real_ip_fallback: bool,
}

impl ProxyTrust {
    /// Whether `ip` is a listed proxy.
    pub fn trusts(&self, ip: IpAddr) -> bool {
        self.proxies.iter().any(|range| range.contains(ip))
    }
}

/// The client behind a request from the TCP peer `tcp_peer` carrying `headers`.
///
/// - No forwarding header: the TCP peer, direct.
/// - Forwarding headers from a peer that is not a listed proxy: ignored (the TCP peer is the
///   client), but the request is still marked forwarded, so it gets no local trust.
/// - From a listed proxy: the first untrusted hop of `X-Forwarded-For` (else `Forwarded`, else
///   `X-Real-IP` when allowed), walking from the right; when every hop is trusted, the leftmost.
///   An unparsable hop or list, or a list longer than [`MAX_HOPS`] of trusted hops: the TCP peer.
pub fn client_peer(tcp_peer: IpAddr, headers: &HeaderMap, trust: &ProxyTrust) -> Peer {
    let forwarded = Peer::FORWARDING_HEADERS.iter().any(|h| headers.contains_key(*h));
    if !forwarded || !trust.trusts(tcp_peer) {
        return Peer { ip: tcp_peer, forwarded };
    }
    let client = if headers.contains_key("x-forwarded-for") {
        walk(list(headers, "x-forwarded-for").map(Some), trust)
    } else if headers.contains_key("forwarded") {
        walk(list(headers, "forwarded").map(forwarded_for), trust)
    } else if trust.real_ip_fallback {
        let mut values = headers.get_all("x-real-ip").iter();
        match (values.next(), values.next()) {
            (Some(one), None) => one.to_str().ok().and_then(parse_node),
            _ => None,
        }
    } else {
        None
    };
    Peer { ip: client.unwrap_or(tcp_peer), forwarded: true }
}

/// The comma-separated entries of every `name` header, rightmost first (a later header line
/// continues the list). A value that is not text is one unparsable entry.
fn list<'a>(headers: &'a HeaderMap, name: &'static str) -> impl Iterator<Item = &'a str> {
    headers.get_all(name).iter().rev().flat_map(|v| v.to_str().unwrap_or("").rsplit(','))
}

/// The first untrusted hop from the right; `None` for garbage (an unparsable hop, or more than
/// [`MAX_HOPS`] trusted ones).
fn walk<'a>(hops: impl Iterator<Item = Option<&'a str>>, trust: &ProxyTrust) -> Option<IpAddr> {
    let mut leftmost = None;
    for hop in hops.take(MAX_HOPS + 1).enumerate().map(|(i, hop)| (i < MAX_HOPS).then_some(hop)) {
        let ip = parse_node(hop??)?;
        if !trust.trusts(ip) {
            return Some(ip);
        }
        leftmost = Some(ip);
    }
    leftmost
}

/// The `for=` node of one `Forwarded` element (RFC 7239: `for=…;proto=…;by=…`).
fn forwarded_for(element: &str) -> Option<&str> {
    element.split(';').find_map(|pair| {
        let (key, value) = pair.split_once('=')?;
        key.trim().eq_ignore_ascii_case("for").then_some(value)
    })
}

/// An address as proxies write it: `203.0.113.7`, `203.0.113.7:4711`, `2001:db8::1`,
/// `[2001:db8::1]:4711`, optionally quoted. `unknown` and obfuscated names are not addresses.
fn parse_node(text: &str) -> Option<IpAddr> {
    let text = text.trim();
    if text.len() > MAX_HOP_LEN {
        return None;
    }
    let text = text.strip_prefix('"').and_then(|t| t.strip_suffix('"')).unwrap_or(text);
    if let Some(rest) = text.strip_prefix('[') {
        let (inside, after) = rest.split_once(']')?;
        if !(after.is_empty() || after.strip_prefix(':').is_some_and(|port| port.parse::<u16>().is_ok())) {
            return None;
        }
        return inside.parse::<Ipv6Addr>().ok().map(IpAddr::V6);
    }
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Some(ip);
    }
    let (host, port) = text.split_once(':')?;
    port.parse::<u16>().ok()?;
    host.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn trust(proxies: &[&str]) -> ProxyTrust {
        ProxyTrust { proxies: proxies.iter().map(|p| IpCidr::parse(p).unwrap()).collect(), real_ip_fallback: false }
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, value.parse().unwrap());
        }
        map
    }

    fn client(peer: &str, pairs: &[(&'static str, &str)], trust: &ProxyTrust) -> Peer {
        client_peer(ip(peer), &headers(pairs), trust)
    }

    #[test]
    fn without_forwarding_headers_the_peer_is_the_client_and_direct() {
        let t = trust(&["127.0.0.1"]);
        assert_eq!(client("127.0.0.1", &[], &t), Peer { ip: ip("127.0.0.1"), forwarded: false });
        assert!(client("127.0.0.1", &[], &t).is_direct_loopback());
        assert_eq!(client("198.51.100.4", &[("host", "x")], &t), Peer { ip: ip("198.51.100.4"), forwarded: false });
    }

    #[test]
    fn spoofed_headers_from_an_untrusted_peer_are_ignored() {
        let t = trust(&["10.0.0.0/8"]);
        for pairs in
            [&[("x-forwarded-for", "127.0.0.1")][..], &[("forwarded", "for=127.0.0.1")], &[("x-real-ip", "127.0.0.1")]]
        {
            let peer = client("203.0.113.9", pairs, &t);
            assert_eq!(peer, Peer { ip: ip("203.0.113.9"), forwarded: true }, "{pairs:?}");
        }
        // Nothing is trusted by default, loopback included; the request still is not local.
        let peer = client("127.0.0.1", &[("x-forwarded-for", "198.51.100.1")], &ProxyTrust::default());
        assert_eq!(peer.ip, ip("127.0.0.1"));
        assert!(!peer.is_direct_loopback(), "a same-host proxy's client is not local");
    }

    #[test]
    fn the_first_untrusted_hop_from_the_right_is_the_client() {
        let t = trust(&["127.0.0.1", "10.0.0.0/8"]);
        // The client put a fake entry first; the proxies appended the real one and themselves.
        let xff = [("x-forwarded-for", "1.2.3.4, 198.51.100.7, 10.0.0.5")];
        assert_eq!(client("127.0.0.1", &xff, &t), Peer { ip: ip("198.51.100.7"), forwarded: true });
        // Several header lines are one list, the last line rightmost.
        let lines = [("x-forwarded-for", "1.2.3.4"), ("x-forwarded-for", "198.51.100.8,10.1.1.1")];
        assert_eq!(client("10.9.9.9", &lines, &t).ip, ip("198.51.100.8"));
        // Every hop trusted: the leftmost is the client (and a forwarded one is never local).
        let all = client("127.0.0.1", &[("x-forwarded-for", "10.0.0.1, 127.0.0.1")], &t);
        assert_eq!(all, Peer { ip: ip("10.0.0.1"), forwarded: true });
        let local = client("127.0.0.1", &[("x-forwarded-for", "127.0.0.1")], &t);
        assert!(local.ip.is_loopback() && !local.is_direct_loopback(), "forwarded from loopback is not local");
    }

    #[test]
    fn forwarded_and_real_ip_are_read_in_order() {
        let mut t = trust(&["127.0.0.1"]);
        let fwd = [("forwarded", "for=1.1.1.1;proto=https, For=\"[2001:db8::7]:4711\";by=127.0.0.1")];
        assert_eq!(client("127.0.0.1", &fwd, &t).ip, ip("2001:db8::7"));
        // X-Forwarded-For wins over Forwarded when both are present.
        let both = [("forwarded", "for=1.1.1.1"), ("x-forwarded-for", "198.51.100.2")];
        assert_eq!(client("127.0.0.1", &both, &t).ip, ip("198.51.100.2"));
        // X-Real-IP only with the fallback on.
        let real = [("x-real-ip", "198.51.100.3")];
        assert_eq!(client("127.0.0.1", &real, &t).ip, ip("127.0.0.1"));
        t.real_ip_fallback = true;
        assert_eq!(client("127.0.0.1", &real, &t), Peer { ip: ip("198.51.100.3"), forwarded: true });
        let two = [("x-real-ip", "198.51.100.3"), ("x-real-ip", "198.51.100.4")];
        assert_eq!(client("127.0.0.1", &two, &t).ip, ip("127.0.0.1"), "two X-Real-IP lines are garbage");
    }

    #[test]
    fn ipv6_and_port_forms_parse() {
        let t = trust(&["::1", "127.0.0.1"]);
        for (value, want) in [
            ("2001:db8::1", "2001:db8::1"),
            ("[2001:db8::1]:443", "2001:db8::1"),
            ("[2001:db8::1]", "2001:db8::1"),
            ("198.51.100.1:5000", "198.51.100.1"),
            ("\"198.51.100.1\"", "198.51.100.1"),
            (" 198.51.100.1 ", "198.51.100.1"),
            ("::ffff:198.51.100.1", "::ffff:198.51.100.1"),
        ] {
            assert_eq!(client("::1", &[("x-forwarded-for", value)], &t).ip, ip(want), "{value}");
        }
        // A trusted IPv4 proxy seen as an IPv4-mapped IPv6 peer (a dual-stack socket).
        let mapped = client("::ffff:127.0.0.1", &[("x-forwarded-for", "198.51.100.5")], &t);
        assert_eq!(mapped.ip, ip("198.51.100.5"));
    }

    #[test]
    fn garbage_falls_back_to_the_peer() {
        let t = trust(&["127.0.0.1"]);
        for value in [
            "",
            "unknown",
            "_hidden",
            "not an ip",
            "198.51.100.1, garbage",
            "[2001:db8::1",
            "[2001:db8::1]:port",
            "198.51.100.1:99999",
            "1.2.3.4:5:6",
            ",",
        ] {
            let peer = client("127.0.0.1", &[("x-forwarded-for", value)], &t);
            assert_eq!(peer, Peer { ip: ip("127.0.0.1"), forwarded: true }, "{value:?}");
            assert!(!peer.is_direct_loopback());
        }
        // Non-UTF-8 bytes in the header.
        let mut map = HeaderMap::new();
        map.insert("x-forwarded-for", http::HeaderValue::from_bytes(b"\xff\xfe").unwrap());
        assert_eq!(client_peer(ip("127.0.0.1"), &map, &t).ip, ip("127.0.0.1"));
        // A Forwarded element without `for=`.
        assert_eq!(client("127.0.0.1", &[("forwarded", "proto=https")], &t).ip, ip("127.0.0.1"));
    }

    #[test]
    fn a_ten_thousand_entry_header_is_bounded() {
        let t = trust(&["127.0.0.1", "10.0.0.0/8"]);
        // 10 000 trusted hops: more than MAX_HOPS, so garbage — the peer.
        let long = vec!["10.0.0.1"; 10_000].join(",");
        assert_eq!(client("127.0.0.1", &[("x-forwarded-for", &long)], &t).ip, ip("127.0.0.1"));
        // The real client right of a long spoofed prefix is found without reading the prefix.
        let spoofed = format!("{},198.51.100.9,10.0.0.2", vec!["1.1.1.1"; 10_000].join(","));
        assert_eq!(client("127.0.0.1", &[("x-forwarded-for", &spoofed)], &t).ip, ip("198.51.100.9"));
        // Exactly MAX_HOPS trusted hops is still a list: the leftmost is the client.
        let max = vec!["10.0.0.3"; MAX_HOPS].join(",");
        assert_eq!(client("127.0.0.1", &[("x-forwarded-for", &max)], &t).ip, ip("10.0.0.3"));
        let over = vec!["10.0.0.3"; MAX_HOPS + 1].join(",");
        assert_eq!(client("127.0.0.1", &[("x-forwarded-for", &over)], &t).ip, ip("127.0.0.1"));
    }
}
