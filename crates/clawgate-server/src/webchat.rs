//! The built-in web chat: a static page (`assets/webchat/`) compiled into the binary and served
//! at `gateway.controlUi.basePath` (default `/`).
//!
//! The page talks to the gateway over its own WebSocket as client `webchat-ui`; everything here
//! is about serving it safely. Every URL in the page is relative and the page derives its
//! WebSocket URL from `location`, so it works unchanged behind a reverse proxy that strips a path
//! prefix (`/chat/ → /`). A proxy that keeps the prefix sets `gateway.controlUi.basePath` to it.
//! The settings are read on every request, so a hot reload applies at once.
//!
//! The policy is strict: scripts and styles only from this origin, no inline code, network
//! access only back to this origin (`'self'` covers same-origin `ws:`/`wss:` in CSP 3; the
//! request's own host is listed as well for browsers that predate that), no framing.

use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};

use clawgate_core::config_service::ConfigService;

/// One embedded file.
struct Asset {
    /// Path below the base path, with its leading `/`.
    path: &'static str,
    content_type: &'static str,
    body: &'static [u8],
    /// Strong validator, computed at compile time from the bytes.
    etag: &'static str,
}

/// FNV-1a, 64-bit: a content fingerprint for `ETag` that needs no dependency and runs in `const`.
const fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut i = 0;
    while i < bytes.len() {
        hash ^= bytes[i] as u64;
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        i += 1;
    }
    hash
}

/// `"` + 16 hex digits + `"`.
const fn etag_bytes(bytes: &[u8]) -> [u8; 18] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let hash = fnv1a(bytes);
    let mut out = [b'"'; 18];
    let mut i = 0;
    while i < 16 {
        out[1 + i] = HEX[((hash >> (60 - 4 * i)) & 0xf) as usize];
        i += 1;
    }
    out
}

macro_rules! asset {
    ($path:literal, $file:literal, $content_type:literal) => {{
        const BODY: &[u8] = include_bytes!(concat!("../assets/webchat/", $file));
        const TAG: [u8; 18] = etag_bytes(BODY);
        const ETAG: &str = match std::str::from_utf8(&TAG) {
            Ok(s) => s,
            Err(_) => panic!("etag is ASCII"),
        };
        Asset { path: $path, content_type: $content_type, body: BODY, etag: ETAG }
    }};
}

static INDEX: Asset = asset!("/", "index.html", "text/html; charset=utf-8");
static ASSETS: [Asset; 3] = [
    asset!("/app.js", "app.js", "text/javascript; charset=utf-8"),
    asset!("/app.css", "app.css", "text/css; charset=utf-8"),
    asset!("/favicon.svg", "favicon.svg", "image/svg+xml"),
];

/// What a path below the web chat's base resolves to.
#[derive(Debug, PartialEq, Eq)]
enum Route {
    /// The base path without its trailing slash: relative URLs need the slash.
    AddSlash(String),
    Asset(&'static str),
}

/// `basePath` as configured (`"ui"`, `"/ui/"`, `"/"`, `""`) → `""` or `"/ui"`.
fn normalise_base(base: &str) -> String {
    let trimmed = base.trim().trim_matches('/');
    if trimmed.is_empty() { String::new() } else { format!("/{trimmed}") }
}

fn route(base: &str, path: &str) -> Option<Route> {
    if !base.is_empty() && path == base {
        // Relative, so it stays right behind a prefix-stripping proxy too.
        let last = base.rsplit('/').next().unwrap_or_default();
        return Some(Route::AddSlash(format!("{last}/")));
    }
    let rest = path.strip_prefix(base)?;
    match rest {
        "/" | "/index.html" => Some(Route::Asset(INDEX.path)),
        _ => ASSETS.iter().find(|a| a.path == rest).map(|a| Route::Asset(a.path)),
    }
}

fn asset(path: &str) -> &'static Asset {
    ASSETS.iter().find(|a| a.path == path).unwrap_or(&INDEX)
}

/// The token of `<basePath>/media/<token>` when the web chat is served below a prefix (a proxy
/// that keeps its prefix forwards the page's relative image links there); `None` otherwise —
/// `/media/<token>` at the root has its own route.
pub fn media_token(config: &ConfigService, method: &Method, path: &str) -> Option<String> {
    if method != Method::GET && method != Method::HEAD {
        return None;
    }
    let config = config.current();
    let base = normalise_base(&config.config.gateway.control_ui.base_path);
    if base.is_empty() {
        return None;
    }
    let token = path.strip_prefix(base.as_str())?.strip_prefix("/media/")?;
    (!token.is_empty() && !token.contains('/')).then(|| token.to_owned())
}

/// The page or asset for a plain (non-upgrade) request, or `None` when the path is not the web
/// chat's (the caller answers 404) or the web chat is switched off (`gateway.controlUi.enabled`).
pub fn serve(config: &ConfigService, method: &Method, path: &str, headers: &HeaderMap) -> Option<Response> {
    if method != Method::GET && method != Method::HEAD {
        return None;
    }
    let config = config.current();
    let ui = &config.config.gateway.control_ui;
    if !ui.enabled {
        return None;
    }
    let response = match route(&normalise_base(&ui.base_path), path)? {
        Route::AddSlash(location) => {
            let mut r = StatusCode::PERMANENT_REDIRECT.into_response();
            if let Ok(v) = HeaderValue::from_str(&location) {
                r.headers_mut().insert(header::LOCATION, v);
            }
            r
        }
        Route::Asset(path) => {
            let asset = asset(path);
            let not_modified = headers
                .get(header::IF_NONE_MATCH)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.split(',').any(|tag| tag.trim() == asset.etag || tag.trim() == "*"));
            let mut r = if not_modified {
                StatusCode::NOT_MODIFIED.into_response()
            } else {
                let mut r = (StatusCode::OK, asset.body).into_response();
                r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(asset.content_type));
                r
            };
            let h = r.headers_mut();
            h.insert(header::ETAG, HeaderValue::from_static(asset.etag));
            // Revalidate every time (cheap: a 304 by ETag); a new binary ships new assets under
            // the same names.
            h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
            r
        }
    };
    Some(with_security_headers(response, headers))
}

/// The page's Content-Security-Policy for a request with this `Host`.
fn content_security_policy(host: Option<&str>) -> String {
    let mut connect = String::from("'self'");
    // Only a plain host[:port] may be echoed into the policy; anything else gets `'self'` alone.
    if let Some(host) = host.filter(|h| {
        !h.is_empty() && h.len() <= 255 && h.bytes().all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
    }) {
        connect.push_str(&format!(" ws://{host} wss://{host}"));
    }
    format!(
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src {connect}; \
         base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )
}

fn with_security_headers(mut response: Response, request: &HeaderMap) -> Response {
    let host = request.get(header::HOST).and_then(|h| h.to_str().ok());
    let h = response.headers_mut();
    if let Ok(csp) = HeaderValue::from_str(&content_security_policy(host)) {
        h.insert(header::CONTENT_SECURITY_POLICY, csp);
    }
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    // The token arrives in the URL fragment; no referrer keeps even the path to ourselves.
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(
        header::HeaderName::from_static("permissions-policy"),
        HeaderValue::from_static("camera=(), microphone=(), geolocation=(), payment=()"),
    );
    h.insert(header::HeaderName::from_static("cross-origin-opener-policy"), HeaderValue::from_static("same-origin"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_path_is_normalised() {
        assert_eq!(normalise_base(""), "");
        assert_eq!(normalise_base("/"), "");
        assert_eq!(normalise_base("ui"), "/ui");
        assert_eq!(normalise_base(" /a/ui/ "), "/a/ui");
    }

    #[test]
    fn routes_at_the_root() {
        assert_eq!(route("", "/"), Some(Route::Asset("/")));
        assert_eq!(route("", "/index.html"), Some(Route::Asset("/")));
        assert_eq!(route("", "/app.js"), Some(Route::Asset("/app.js")));
        assert_eq!(route("", "/app.css"), Some(Route::Asset("/app.css")));
        assert_eq!(route("", "/nope"), None);
        assert_eq!(route("", "/chat/"), None, "no prefix guessing without basePath");
    }

    #[test]
    fn routes_below_a_base_path() {
        assert_eq!(route("/a/ui", "/a/ui"), Some(Route::AddSlash("ui/".into())));
        assert_eq!(route("/a/ui", "/a/ui/"), Some(Route::Asset("/")));
        assert_eq!(route("/a/ui", "/a/ui/app.js"), Some(Route::Asset("/app.js")));
        assert_eq!(route("/a/ui", "/"), None);
        assert_eq!(route("/a/ui", "/app.js"), None);
        assert_eq!(route("/a/ui", "/a/uix/"), None);
    }

    #[test]
    fn etags_differ_by_content_and_are_quoted_hex() {
        assert_ne!(INDEX.etag, ASSETS[0].etag);
        assert_eq!(INDEX.etag.len(), 18);
        assert!(INDEX.etag.starts_with('"') && INDEX.etag.ends_with('"'));
        assert!(INDEX.etag[1..17].bytes().all(|b| b.is_ascii_hexdigit()));
        // FNV-1a test vector: "a" → af63dc4c8601ec8c.
        assert_eq!(&etag_bytes(b"a"), b"\"af63dc4c8601ec8c\"");
    }

    #[test]
    fn csp_echoes_only_a_plain_host() {
        let csp = content_security_policy(Some("127.0.0.1:18789"));
        assert!(csp.contains("connect-src 'self' ws://127.0.0.1:18789 wss://127.0.0.1:18789;"), "{csp}");
        assert!(csp.contains("script-src 'self';") && csp.contains("default-src 'none'"), "{csp}");
        let hostile = content_security_policy(Some("x; script-src *"));
        assert!(hostile.contains("connect-src 'self';") && !hostile.contains('*'), "{hostile}");
        assert!(content_security_policy(None).contains("connect-src 'self';"));
    }
}
