//! A built OpenClaw Control UI served from a directory (`gateway.controlUi.root`, e.g. the
//! `openclaw` package's `dist/control-ui`) at `gateway.controlUi.basePath`, in place of the
//! built-in web chat.
//!
//! The directory is the operator's, but every request path is the client's: a path is decoded
//! segment by segment, `.`/`..`, hidden names and separators hidden in an escape are refused, and
//! the file it names is resolved (symlinks followed) and served only if it is still below the
//! resolved root. Unknown paths without an extension that a browser navigates to get `index.html`
//! (the UI is a single-page app with its own routes); a missing asset is a 404.
//!
//! Caching follows the build's naming: files below `assets/` carry a content hash in their name
//! and so do URLs the UI versions with `?v=`, so both are immutable; everything else, `index.html`
//! first, is revalidated (`no-cache`, a strong `ETag` from size and modification time). A
//! precompressed sibling (`.br`, `.gz`, shipped by the build) is sent when the browser takes it.

use std::path::{Component, Path, PathBuf};
use std::time::UNIX_EPOCH;

use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use sha2::{Digest, Sha256};

use clawgate_config::LoadedConfig;

/// The config key, named in every message about the directory.
pub const ROOT_KEY: &str = "gateway.controlUi.root";

/// The Control UI directory in force (resolved against the config file's directory), when the UI
/// is enabled and a directory is configured.
#[must_use]
pub fn configured_root(loaded: &LoadedConfig) -> Option<PathBuf> {
    let ui = &loaded.config.gateway.control_ui;
    if !ui.enabled {
        return None;
    }
    ui.root.as_ref().map(|root| clawgate_config::resolve_path(loaded.base_dir(), root))
}

/// Checks the configured Control UI directory at start-up: it must exist, be a directory and
/// hold the build's `index.html`. The error names the key, the path and the fix.
///
/// # Errors
/// A message for the operator when the directory cannot be served.
pub fn check_root(loaded: &LoadedConfig) -> Result<(), String> {
    let Some(root) = configured_root(loaded) else { return Ok(()) };
    let fix = "set it to a built Control UI directory, e.g. the openclaw package's dist/control-ui \
               (`npm root -g`/openclaw/dist/control-ui), or remove the key to serve the built-in web chat";
    let shown = root.display();
    match std::fs::metadata(&root) {
        Err(e) => Err(format!("{ROOT_KEY}: cannot open {shown}: {e}; {fix}")),
        Ok(m) if !m.is_dir() => Err(format!("{ROOT_KEY}: {shown} is not a directory; {fix}")),
        Ok(_) if !root.join("index.html").is_file() => {
            Err(format!("{ROOT_KEY}: {shown} has no index.html, so it is not a built Control UI; {fix}"))
        }
        Ok(_) => Ok(()),
    }
}

/// The decoded, checked segments of a request path below the base, or `None` when a segment is
/// one a file name cannot be: `.`, `..`, a hidden name, an escaped separator or NUL, bad UTF-8.
fn safe_segments(rest: &str) -> Option<Vec<String>> {
    let mut out = Vec::new();
    for raw in rest.split('/').filter(|s| !s.is_empty()) {
        let segment = percent_decode(raw)?;
        if segment.starts_with('.') || segment.contains(['/', '\\', '\0']) {
            return None;
        }
        // A Windows drive or root in a segment is not a normal component either.
        if !matches!(Path::new(&segment).components().next(), Some(Component::Normal(_))) {
            return None;
        }
        out.push(segment);
    }
    Some(out)
}

/// `%XX` decoding; `None` for a malformed escape or a result that is not UTF-8.
fn percent_decode(raw: &str) -> Option<String> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The content type of a file the build ships, by extension.
fn content_type(path: &Path) -> &'static str {
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or_default().to_ascii_lowercase();
    match ext.as_str() {
        "html" | "htm" => "text/html; charset=utf-8",
        "js" | "mjs" => "application/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" | "map" => "application/json; charset=utf-8",
        "webmanifest" => "application/manifest+json; charset=utf-8",
        "txt" => "text/plain; charset=utf-8",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "avif" => "image/avif",
        "ico" => "image/x-icon",
        "woff2" => "font/woff2",
        "woff" => "font/woff",
        "ttf" => "font/ttf",
        "otf" => "font/otf",
        "wasm" => "application/wasm",
        "mp3" => "audio/mpeg",
        "mp4" => "video/mp4",
        "webm" => "video/webm",
        _ => "application/octet-stream",
    }
}

/// The base path as configured (`"ui"`, `"/ui/"`, `"/"`, `""`) → `""` or `"/ui"`.
fn normalise_base(base: &str) -> String {
    let trimmed = base.trim().trim_matches('/');
    if trimmed.is_empty() { String::new() } else { format!("/{trimmed}") }
}

/// A file chosen for a request.
struct Found {
    /// The file as resolved (below the root).
    path: PathBuf,
    /// Whether the request named `index.html` (or fell back to it).
    index: bool,
}

/// Resolves `segments` below `root` (both canonical), following symlinks, and keeps the result
/// only if it stays below the root and is a file.
async fn resolve_file(root: &Path, segments: &[String]) -> Option<PathBuf> {
    let mut candidate = root.to_path_buf();
    candidate.extend(segments);
    let resolved = tokio::fs::canonicalize(&candidate).await.ok()?;
    if !resolved.starts_with(root) {
        tracing::warn!(path = %candidate.display(), "control UI: refusing a path that resolves outside {ROOT_KEY}");
        return None;
    }
    let meta = tokio::fs::metadata(&resolved).await.ok()?;
    meta.is_file().then_some(resolved)
}

/// Whether a browser navigates here (the SPA's own routes get `index.html`).
fn wants_page(segments: &[String], headers: &HeaderMap) -> bool {
    let no_extension = segments.last().is_none_or(|s| !s.contains('.'));
    let not_an_asset = segments.first().is_none_or(|s| s != "assets");
    let accepts_html =
        headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).is_none_or(|a| a.contains("text/html"));
    no_extension && not_an_asset && accepts_html
}

/// The page, asset or redirect for a plain (non-upgrade) request below the base path, or `None`
/// when the path is not the UI's (the caller answers 404).
pub(crate) async fn serve(
    root: &Path,
    base: &str,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
) -> Option<Response> {
    if method != Method::GET && method != Method::HEAD {
        return None;
    }
    let base = normalise_base(base);
    let path = uri.path();
    if !base.is_empty() && path == base {
        let last = base.rsplit('/').next().unwrap_or_default();
        let mut r = StatusCode::PERMANENT_REDIRECT.into_response();
        if let Ok(v) = HeaderValue::from_str(&format!("{last}/")) {
            r.headers_mut().insert(header::LOCATION, v);
        }
        return Some(r);
    }
    let rest = path.strip_prefix(base.as_str())?;
    if !rest.starts_with('/') {
        return None;
    }
    let segments = safe_segments(rest)?;
    let root = match tokio::fs::canonicalize(root).await {
        Ok(root) => root,
        Err(e) => {
            tracing::warn!(root = %root.display(), error = %e, "control UI: cannot open {ROOT_KEY}");
            return Some((StatusCode::SERVICE_UNAVAILABLE, "Control UI directory unavailable").into_response());
        }
    };
    let index = vec!["index.html".to_owned()];
    let found = if segments.is_empty() {
        Found { path: resolve_file(&root, &index).await?, index: true }
    } else if let Some(path) = resolve_file(&root, &segments).await {
        let index = path.file_name().is_some_and(|n| n == "index.html");
        Found { path, index }
    } else if wants_page(&segments, headers) {
        Found { path: resolve_file(&root, &index).await?, index: true }
    } else {
        return None;
    };
    let immutable = !found.index && (segments.first().is_some_and(|s| s == "assets") || query_has_version(uri));
    Some(file_response(&root, &base, &found, immutable, headers).await)
}

/// `?v=…`: the UI versions the URLs of its unhashed files with its build id.
fn query_has_version(uri: &Uri) -> bool {
    uri.query().is_some_and(|q| q.split('&').any(|kv| kv.starts_with("v=")))
}

/// The encodings the browser takes, best first, with the sibling file's suffix.
fn accepted_encodings(headers: &HeaderMap) -> Vec<(&'static str, &'static str)> {
    let accept = headers.get(header::ACCEPT_ENCODING).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let takes = |name: &str| {
        accept.split(',').any(|part| {
            let mut it = part.split(';');
            let coding = it.next().unwrap_or_default().trim();
            let refused = it.any(|p| matches!(p.trim(), "q=0" | "q=0.0" | "q=0.00" | "q=0.000"));
            coding.eq_ignore_ascii_case(name) && !refused
        })
    };
    [("br", ".br"), ("gzip", ".gz")].into_iter().filter(|(name, _)| takes(name)).collect()
}

async fn file_response(root: &Path, base: &str, found: &Found, immutable: bool, headers: &HeaderMap) -> Response {
    // index.html is read whole (its inline scripts are hashed into the policy); other files may
    // come precompressed.
    let mut chosen = (found.path.clone(), None);
    if !found.index {
        for (encoding, suffix) in accepted_encodings(headers) {
            let mut name = found.path.clone().into_os_string();
            name.push(suffix);
            let sibling = PathBuf::from(name);
            if let Ok(resolved) = tokio::fs::canonicalize(&sibling).await
                && resolved.starts_with(root)
                && tokio::fs::metadata(&resolved).await.is_ok_and(|m| m.is_file())
            {
                chosen = (resolved, Some(encoding));
                break;
            }
        }
    }
    let (file, encoding) = chosen;
    let meta = match tokio::fs::metadata(&file).await {
        Ok(m) => m,
        Err(_) => return (StatusCode::NOT_FOUND, "Not Found").into_response(),
    };
    let modified = meta.modified().ok().and_then(|t| t.duration_since(UNIX_EPOCH).ok()).unwrap_or_default();
    let etag = format!(
        "\"{:x}-{:x}{}\"",
        meta.len(),
        modified.as_nanos(),
        encoding.map(|e| format!("-{e}")).unwrap_or_default()
    );
    let not_modified = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|tag| tag.trim() == etag || tag.trim() == "*"));
    let mut response = if not_modified {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        match tokio::fs::read(&file).await {
            Ok(body) => {
                let body = if found.index { page_for_base(body, base) } else { body };
                let csp = content_security_policy(found.index.then_some(body.as_slice()));
                let mut r = (StatusCode::OK, body).into_response();
                let h = r.headers_mut();
                h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type(&found.path)));
                if let Some(encoding) = encoding {
                    h.insert(header::CONTENT_ENCODING, HeaderValue::from_static(encoding));
                }
                if let Ok(csp) = HeaderValue::from_str(&csp) {
                    h.insert(header::CONTENT_SECURITY_POLICY, csp);
                }
                r
            }
            Err(e) => {
                tracing::warn!(file = %file.display(), error = %e, "control UI: cannot read a file");
                return (StatusCode::NOT_FOUND, "Not Found").into_response();
            }
        }
    };
    let h = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(if immutable { "public, max-age=31536000, immutable" } else { "no-cache" }),
    );
    h.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    // The token arrives in the URL fragment; no referrer keeps even the path to ourselves.
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    response
}

/// The attribute on `<html>` that tells the UI the path it is served below (upstream's
/// `CONTROL_UI_BASE_PATH_ATTRIBUTE`).
const BASE_PATH_ATTRIBUTE: &str = "data-openclaw-control-ui-base-path";

/// `index.html` as served below `base`: its relative `./` links made absolute and the base path
/// named on `<html>`, as upstream's gateway does. The page is also the answer to every route of
/// the single-page app (`/settings/general`, `/chat/…`), where a relative `./assets/…` would
/// resolve below the route and fail to load.
fn page_for_base(body: Vec<u8>, base: &str) -> Vec<u8> {
    let Ok(text) = String::from_utf8(body.clone()) else { return body };
    let escaped = base.replace('&', "&amp;").replace('"', "&quot;").replace('<', "&lt;");
    let text =
        text.replace("src=\"./", &format!("src=\"{escaped}/")).replace("href=\"./", &format!("href=\"{escaped}/"));
    let text = match text.find("<html") {
        Some(at) if !text.contains(BASE_PATH_ATTRIBUTE) => {
            let insert = at + "<html".len();
            format!("{} {BASE_PATH_ATTRIBUTE}=\"{escaped}\"{}", &text[..insert], &text[insert..])
        }
        _ => text,
    };
    text.into_bytes()
}

/// The policy for the UI: its own scripts and the inline ones of `index.html` by hash (given the
/// page's bytes), WebSockets to any gateway (the UI can be pointed at another), no framing.
fn content_security_policy(page: Option<&[u8]>) -> String {
    let hashes: String = page.map(inline_script_hashes).unwrap_or_default().iter().map(|h| format!(" '{h}'")).collect();
    format!(
        "default-src 'self'; base-uri 'none'; object-src 'none'; frame-ancestors 'none'; \
         script-src 'self'{hashes} 'wasm-unsafe-eval'; style-src 'self' 'unsafe-inline'; \
         img-src 'self' data: blob: https:; media-src 'self' data: blob:; font-src 'self'; worker-src 'self'; \
         connect-src 'self' ws: wss: data:"
    )
}

/// `sha256-…` of every inline `<script>` body in a page (scripts with `src` are covered by
/// `'self'`).
fn inline_script_hashes(page: &[u8]) -> Vec<String> {
    let Ok(text) = std::str::from_utf8(page) else { return Vec::new() };
    let lower = text.to_ascii_lowercase();
    let mut out = Vec::new();
    let mut at = 0;
    while let Some(start) = lower[at..].find("<script").map(|i| at + i) {
        let Some(tag_end) = lower[start..].find('>').map(|i| start + i) else { break };
        let Some(close) = lower[tag_end..].find("</script").map(|i| tag_end + i) else { break };
        let tag = &lower[start..tag_end];
        if !tag.contains(" src=") {
            let body = &text[tag_end + 1..close];
            let digest = Sha256::digest(body.as_bytes());
            out.push(format!("sha256-{}", base64::engine::general_purpose::STANDARD.encode(digest)));
        }
        at = close;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_refuse_traversal_hidden_names_and_escaped_separators() {
        assert_eq!(safe_segments("/assets/a.js"), Some(vec!["assets".into(), "a.js".into()]));
        assert_eq!(safe_segments("/"), Some(vec![]));
        assert_eq!(safe_segments("/a%20b.png"), Some(vec!["a b.png".into()]));
        for hostile in [
            "/../etc/passwd",
            "/assets/../../x",
            "/%2e%2e/x",
            "/%2E%2E/x",
            "/.%2e/x",
            "/a%2f..%2fb",
            "/a%5c..%5cb",
            "/.git/config",
            "/a%00b",
            "/%zz",
            "/%c3",
        ] {
            assert_eq!(safe_segments(hostile), None, "{hostile}");
        }
    }

    #[test]
    fn content_types_by_extension() {
        assert_eq!(content_type(Path::new("a/index.html")), "text/html; charset=utf-8");
        assert_eq!(content_type(Path::new("x.JS")), "application/javascript; charset=utf-8");
        assert_eq!(content_type(Path::new("m.webmanifest")), "application/manifest+json; charset=utf-8");
        assert_eq!(content_type(Path::new("f.woff2")), "font/woff2");
        assert_eq!(content_type(Path::new("noext")), "application/octet-stream");
    }

    #[test]
    fn inline_scripts_are_hashed_and_sourced_ones_are_not() {
        let page = b"<html><script>a()</script><script type=module src=\"./x.js\"></script><SCRIPT data-x>b()</SCRIPT>";
        let hashes = inline_script_hashes(page);
        let expect =
            |s: &str| format!("sha256-{}", base64::engine::general_purpose::STANDARD.encode(Sha256::digest(s)));
        assert_eq!(hashes, vec![expect("a()"), expect("b()")]);
        let csp = content_security_policy(Some(page));
        assert!(
            csp.contains(&format!("script-src 'self' '{}' '{}' 'wasm-unsafe-eval';", expect("a()"), expect("b()"))),
            "{csp}"
        );
    }

    #[test]
    fn brotli_and_gzip_only_when_accepted() {
        let mut h = HeaderMap::new();
        assert!(accepted_encodings(&h).is_empty());
        h.insert(header::ACCEPT_ENCODING, HeaderValue::from_static("gzip, deflate, br, zstd"));
        assert_eq!(accepted_encodings(&h), vec![("br", ".br"), ("gzip", ".gz")]);
        h.insert(header::ACCEPT_ENCODING, HeaderValue::from_static("br;q=0, gzip"));
        assert_eq!(accepted_encodings(&h), vec![("gzip", ".gz")]);
    }
}
