//! The config's JSON Schema and the UI hints that go with it (the `config.schema` method).

use schemars::generate::SchemaSettings;
use serde_json::{Map, Value, json};

use crate::model::Config;
use crate::redact::{SECRET_PATHS, is_secret_path};

/// JSON Schema (draft-07) of the config file, generated from the typed config. The sections
/// shared with OpenClaw (`agents`, `models`, …) are open objects: keys clawgate does not read
/// are kept.
#[must_use]
pub fn config_schema() -> Value {
    SchemaSettings::draft07().into_generator().into_root_schema_for::<Config>().to_value()
}

/// One row of the hint table: path, label, help, group. Whether a key is `sensitive` is not
/// written here: it comes from [`crate::SECRET_PATHS`], the table redaction uses.
type Hint = (&'static str, &'static str, &'static str, &'static str);

const HINTS: &[Hint] = &[
    ("gateway", "Gateway", "The WebSocket and HTTP server.", "Gateway"),
    (
        "gateway.port",
        "Port",
        "TCP port for WebSocket and HTTP. 0 picks a free port. CLAWGATE_GATEWAY_PORT overrides it. Changing it restarts the gateway.",
        "Gateway",
    ),
    (
        "gateway.bind",
        "Bind address",
        "\"loopback\" (this machine only), \"lan\" (all interfaces), \"custom\" (use Custom bind host) or an IP address. Anything but loopback requires auth. Changing it restarts the gateway.",
        "Gateway",
    ),
    (
        "gateway.publicUrl",
        "Public URL",
        "The HTTPS address the gateway is reachable at from the internet (through a reverse proxy or tunnel), e.g. \"https://bot.example.com\". Links to images sent to LINE are made under it; LINE requires https://.",
        "Gateway",
    ),
    (
        "gateway.customBindHost",
        "Custom bind host",
        "IP address to listen on when the bind address is \"custom\".",
        "Gateway",
    ),
    ("gateway.auth", "Authentication", "How clients prove who they are.", "Authentication"),
    (
        "gateway.auth.mode",
        "Auth mode",
        "\"token\" (shared token), \"password\" (shared password) or \"none\" (loopback only). Changing it restarts the gateway.",
        "Authentication",
    ),
    (
        "gateway.auth.token",
        "Token",
        "Shared token clients send to connect. A string, {\"env\": \"NAME\"} or {\"file\": \"path\"}. CLAWGATE_GATEWAY_TOKEN overrides it. Applied live; connected clients must reconnect.",
        "Authentication",
    ),
    (
        "gateway.auth.password",
        "Password",
        "Shared password (auth mode \"password\"): plain text or an argon2id hash (\"$argon2id$…\"), or {\"env\": \"NAME\"} / {\"file\": \"path\"}. CLAWGATE_GATEWAY_PASSWORD overrides it.",
        "Authentication",
    ),
    (
        "gateway.auth.rateLimit",
        "Auth rate limit",
        "Locks out a client address after repeated failed logins.",
        "Authentication",
    ),
    (
        "gateway.auth.rateLimit.maxAttempts",
        "Max failed attempts",
        "Failed attempts allowed within the window before a lockout.",
        "Authentication",
    ),
    (
        "gateway.auth.rateLimit.windowMs",
        "Window (ms)",
        "Period over which failed attempts are counted.",
        "Authentication",
    ),
    ("gateway.auth.rateLimit.lockoutMs", "Lockout (ms)", "How long a locked-out address is refused.", "Authentication"),
    (
        "gateway.auth.rateLimit.exemptLoopback",
        "Exempt loopback",
        "Never rate limit clients on this machine.",
        "Authentication",
    ),
    ("gateway.controlUi", "Control UI", "The browser control UI.", "Control UI"),
    ("gateway.controlUi.enabled", "Serve control UI", "Serve the browser control UI from the gateway.", "Control UI"),
    (
        "gateway.controlUi.basePath",
        "Base path",
        "URL path prefix for the UI, e.g. \"/ui\". Empty serves it at /.",
        "Control UI",
    ),
    (
        "gateway.controlUi.root",
        "Control UI directory",
        "A built OpenClaw Control UI (e.g. the openclaw package's dist/control-ui) served at basePath instead of the built-in web chat. Relative to the config file. Changing it restarts the gateway.",
        "Control UI",
    ),
    (
        "gateway.controlUi.allowedOrigins",
        "Allowed origins",
        "Extra browser origins (scheme://host[:port], no path) allowed to connect over WebSocket and to POST to the HTTP API.",
        "Control UI",
    ),
    (
        "gateway.controlUi.dangerouslyAllowHostHeaderOriginFallback",
        "Trust the Host header for origins (dangerous)",
        "Also accept a browser origin equal to the request's Host header. Off: after DNS rebinding any web page matches its own Host.",
        "Control UI",
    ),
    ("gateway.http", "HTTP", "HTTP limits and optional endpoints.", "HTTP API"),
    (
        "gateway.http.headerTimeoutMs",
        "Header timeout (ms)",
        "Time a connection has to send a complete request head (also the keep-alive idle timeout).",
        "HTTP API",
    ),
    (
        "gateway.http.maxConnections",
        "Max connections",
        "Open connections held at once; an eighth is kept for 127.0.0.1/::1 (the local CLI).",
        "HTTP API",
    ),
    ("gateway.http.endpoints", "HTTP endpoints", "OpenAI-compatible endpoints, off by default.", "HTTP API"),
    ("gateway.http.endpoints.chatCompletions", "Chat Completions", "POST /v1/chat/completions.", "HTTP API"),
    (
        "gateway.http.endpoints.chatCompletions.enabled",
        "Enable Chat Completions",
        "Serve the OpenAI-compatible POST /v1/chat/completions endpoint.",
        "HTTP API",
    ),
    ("gateway.http.endpoints.responses", "Responses", "POST /v1/responses.", "HTTP API"),
    (
        "gateway.http.endpoints.responses.enabled",
        "Enable Responses",
        "Serve the OpenAI-compatible POST /v1/responses endpoint.",
        "HTTP API",
    ),
    ("gateway.reload", "Reload", "Reaction to changes of this file.", "Gateway"),
    (
        "gateway.reload.mode",
        "Reload mode",
        "\"hybrid\" applies changes live where possible and restarts for the rest; \"off\" ignores changes until the next start.",
        "Gateway",
    ),
    (
        "gateway.handshakeTimeoutMs",
        "Handshake timeout (ms)",
        "How long a new WebSocket connection may take to send connect.",
        "Gateway",
    ),
    (
        "gateway.tickIntervalMs",
        "Tick interval (ms)",
        "Interval of tick keep-alive events. Clients treat two missed ticks as a dead connection.",
        "Gateway",
    ),
    (
        "gateway.trustedProxies",
        "Trusted proxies",
        "Reverse proxies (IP addresses or CIDR ranges such as 10.0.0.0/8) whose X-Forwarded-For / Forwarded headers name the real client. Headers from other peers are ignored; a forwarded client is never treated as local.",
        "Gateway",
    ),
    (
        "gateway.allowRealIpFallback",
        "Use X-Real-IP",
        "Also take the client address from X-Real-IP when a trusted proxy sends neither X-Forwarded-For nor Forwarded.",
        "Gateway",
    ),
    (
        "gateway.tls",
        "TLS",
        "Serve wss:// and https:// on the gateway port: {certPath, keyPath} (PEM, relative to the config file), re-read when the files change. Changing it restarts the gateway.",
        "Gateway",
    ),
    (
        "gateway.allowInsecureBind",
        "Allow plain text off loopback",
        "Listen on a non-loopback address without TLS and without a trusted proxy. Only on a network you trust.",
        "Gateway",
    ),
    (
        "gateway.metrics",
        "Metrics",
        "The Prometheus endpoint (GET /metrics, on the gateway port behind the token).",
        "Gateway",
    ),
    (
        "gateway.metrics.listen",
        "Metrics listener",
        "A loopback ip:port serving only /metrics without authentication, e.g. 127.0.0.1:9464.",
        "Gateway",
    ),
    ("gateway.rateLimit", "Request rate limits", "Requests clients may make, per connection.", "Gateway"),
    (
        "gateway.rateLimit.perConnection",
        "Per-connection rate",
        "Requests one WebSocket connection may make: a token bucket of `requests`, refilled at `requests` per `per`. Over it a request is answered UNAVAILABLE with retryAfterMs.",
        "Gateway",
    ),
    (
        "gateway.rateLimit.perConnection.requests",
        "Requests",
        "Requests allowed per window (and as a burst). Default 60000.",
        "Gateway",
    ),
    (
        "gateway.rateLimit.perConnection.per",
        "Window",
        "The window, e.g. \"1m\", \"30s\" or \"1h\" (1s to 1d). Default \"1m\".",
        "Gateway",
    ),
    ("gateway.nodes", "Nodes", "Nodes: role \"node\" clients such as openclaw node run.", "Nodes"),
    (
        "gateway.nodes.presenceTimeoutMs",
        "Node presence timeout (ms)",
        "A node silent this long (no frame, no answer to the gateway's pings, sent every half of it) is marked disconnected and the invokes waiting for it fail at once. Default 50000. Changing it restarts the gateway.",
        "Nodes",
    ),
    (
        "discovery",
        "Discovery",
        "Advertising the gateway on the local network. Keep it scoped to networks you expect: it tells everyone there the gateway's host and port.",
        "Discovery",
    ),
    ("discovery.mdns", "mDNS discovery", "mDNS / DNS-SD (Bonjour) advertisement of _openclaw-gw._tcp.", "Discovery"),
    (
        "discovery.mdns.mode",
        "mDNS discovery mode",
        "\"off\", \"minimal\" (port, host, name) or \"full\" (also sshPort and cliPath). Unset: minimal on macOS, off elsewhere (as OpenClaw). Changing it restarts the gateway.",
        "Discovery",
    ),
    ("storage", "Storage", "Where the gateway keeps its state. A change takes effect at the next start.", "Storage"),
    (
        "storage.url",
        "Storage URL",
        "sqlite:<path> or postgres://user:password@host:port/database; unset: clawgate.db in the state directory.",
        "Storage",
    ),
    (
        "cluster",
        "Cluster",
        "Several gateways on one PostgreSQL database: heartbeats and leases. A change takes effect at the next start.",
        "Storage",
    ),
    (
        "cluster.heartbeatMs",
        "Heartbeat",
        "How often the gateway writes its heartbeat and looks for peers that died, in ms (100 to 60000). Default 2000.",
        "Storage",
    ),
    (
        "cluster.leaseTtlMs",
        "Lease ttl",
        "How long a lease (driving a channel account) lasts unrenewed and a silent gateway counts as alive, in ms (500 to 600000; more than heartbeatMs). Peers take over a dead gateway's work after at most this. Default 10000.",
        "Storage",
    ),
    ("logging", "Logging", "Log output.", "Logging"),
    (
        "logging.file",
        "Log file",
        "Also write logs to this file (relative to the config directory). Changing it restarts the gateway.",
        "Logging",
    ),
    (
        "logging.level",
        "Log level",
        "error, warn, info, debug, trace or off; per-target levels like \"info,clawgate_server=debug\". Takes effect after a restart.",
        "Logging",
    ),
    (
        "logging.rotate",
        "Log rotation",
        "Rotate the log file by size: {maxBytes, keep}. Changing it restarts the gateway.",
        "Logging",
    ),
    (
        "logging.rotate.maxBytes",
        "Rotate at (bytes)",
        "The log file becomes <file>.1 when the next line would take it past this size (default 10 MiB; 0 never rotates).",
        "Logging",
    ),
    (
        "logging.rotate.keep",
        "Old log files kept",
        "How many rotated files (<file>.1 … <file>.N) are kept besides the live one (default 5).",
        "Logging",
    ),
    ("channels", "Channels", "Chat channels, one entry per channel id. A change restarts that channel.", "Channels"),
    (
        "channels.telegram",
        "Telegram",
        "Telegram bots: {botToken, dmPolicy?, allowFrom?, groupPolicy?, groups?, webhookUrl?, …}; more bots under accounts.",
        "Channels",
    ),
    (
        "channels.discord",
        "Discord",
        "Discord bots: {token, dmPolicy?, allowFrom?, groupPolicy?, guilds?, …}; more bots under accounts.",
        "Channels",
    ),
    ("channels.webchat", "Web chat", "The gateway's own web chat page.", "Channels"),
    (
        "channels.line",
        "LINE",
        "LINE Official Accounts: {channelAccessToken, channelSecret, webhookPath?, dmPolicy?, allowFrom?, groupPolicy?, groups?}; more accounts under accounts. Needs gateway.publicUrl (HTTPS) for images.",
        "Channels",
    ),
    (
        "channels.whatsapp",
        "WhatsApp",
        "WhatsApp Cloud API numbers: {accessToken, appSecret, verifyToken, phoneNumberId, dmPolicy?, allowFrom?, …}; more numbers under accounts.",
        "Channels",
    ),
    (
        "channels.slack",
        "Slack",
        "Slack apps: {botToken, mode?: \"socket\" (appToken) | \"http\" (signingSecret, webhookPath?, commandsPath?), dmPolicy?, allowFrom?, groupPolicy?, channels?, requireMention?}; more apps under accounts.",
        "Channels",
    ),
    (
        "channels.webhook",
        "Webhook",
        "Backends that chat over signed HTTP: {secret, outboundUrl, path?, maxAttempts?, retryBaseMs?, retryMaxMs?, maxTextChars?, timeoutMs?, dmPolicy?, allowFrom?}; more backends under accounts. See OPERATIONS.md \"Webhook channel\".",
        "Channels",
    ),
    ("agents", "Agents", "Agent defaults and the agent list.", "Agents"),
    ("agents.default", "Default agent", "The id of the agent used when none is named (default \"main\").", "Agents"),
    ("agents.defaults", "Agent defaults", "Settings every agent inherits.", "Agents"),
    (
        "agents.defaults.model",
        "Default model",
        "\"provider/model\" (e.g. \"ollama/llama3.2\") or {\"primary\": \"provider/model\"}. Applied live.",
        "Agents",
    ),
    ("agents.defaults.systemPrompt", "Default system prompt", "The system prompt of agents that set none.", "Agents"),
    (
        "agents.defaults.timeoutSeconds",
        "Run timeout",
        "How long one agent run may take, in seconds (default 600).",
        "Agents",
    ),
    (
        "agents.defaults.contextMaxChars",
        "Client context cap",
        "Characters of the `context` object a client sends with `agent`/`chat.send` that the model reads at most (default 8000; 0 refuses context). Longer context is cut with a notice.",
        "Agents",
    ),
    (
        "agents.list",
        "Agents",
        "The agents: {id, name?, model?, systemPrompt?}; \"main\" exists even when not listed.",
        "Agents",
    ),
    ("models", "Models", "Model providers and aliases.", "Models"),
    (
        "models.providers",
        "Providers",
        "Model providers by id: {baseUrl, api?, apiKey?, headers?, models?}; models[].cost is the price in USD per million tokens {input, output, cacheRead, cacheWrite}. A built-in \"ollama\" is there unless defined here.",
        "Models",
    ),
    ("hooks", "Hooks", "Inbound webhooks.", "Automation"),
    ("hooks.enabled", "Hooks on", "Serve the hooks (they also need a token).", "Automation"),
    ("hooks.path", "Hooks path", "URL path of the hooks (default \"/hooks\").", "Automation"),
    ("hooks.allowedAgentIds", "Allowed agents", "Agents a hook may target; \"*\" or unset: any.", "Automation"),
    ("hooks.defaultSessionKey", "Default session", "The session of hook runs that name none.", "Automation"),
    ("hooks.allowRequestSessionKey", "Request sessions", "Whether a hook request may name its session.", "Automation"),
    (
        "hooks.allowedSessionKeyPrefixes",
        "Session prefixes",
        "Prefixes a requested session key must have; unset: any.",
        "Automation",
    ),
    ("session", "Sessions", "Session behaviour.", "Agents"),
    (
        "session.maxTranscriptEntries",
        "Transcript limit",
        "Transcript entries kept per session before older ones are compacted (default 50000).",
        "Agents",
    ),
    ("cron", "Cron", "Scheduled jobs.", "Automation"),
    (
        "comfy",
        "ComfyUI",
        "ComfyUI workers, templates and delivery limits. A change restarts the ComfyUI subsystem.",
        "ComfyUI",
    ),
    ("tools", "Tools", "Agent tool policy.", "Agents"),
];

/// Labels and help for the config editor, keyed by key path:
/// `{"gateway.port": {"label": …, "help": …, "group": …}, "gateway.auth.token": {…, "sensitive": true}}`.
#[must_use]
pub fn ui_hints() -> Value {
    let mut hints: Map<String, Value> = HINTS
        .iter()
        .map(|(path, label, help, group)| ((*path).to_owned(), json!({"label": label, "help": help, "group": group})))
        .collect();
    // The secrets of the sections the core decodes get a hint of their own, so an editor
    // masks them too.
    for pattern in SECRET_PATHS {
        hints.entry((*pattern).to_owned()).or_insert_with(|| {
            let key = pattern.rsplit('.').next().unwrap_or(pattern);
            let label = if key == "*" { "Header value" } else { key };
            json!({"label": label, "help": "A secret: a string, {\"env\": \"NAME\"} or {\"file\": \"path\"}. Shown redacted."})
        });
    }
    for (path, hint) in &mut hints {
        if is_secret_path(path)
            && let Some(obj) = hint.as_object_mut()
        {
            obj.insert("sensitive".to_owned(), Value::Bool(true));
        }
    }
    Value::Object(hints)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::decode::{
        AUTH_KEYS, CLUSTER_KEYS, CONFIG_KEYS, CONTROL_UI_KEYS, ENDPOINT_KEYS, ENDPOINTS_KEYS, GATEWAY_KEYS, HTTP_KEYS,
        LOG_ROTATE_KEYS, LOGGING_KEYS, RATE_LIMIT_KEYS, RELOAD_KEYS, STORAGE_KEYS,
    };

    /// Follows `$ref`s into `definitions` (draft-07 output wraps them as `allOf: [{$ref}]`
    /// when the property has a description or default next to it).
    fn resolve<'a>(root: &'a Value, schema: &'a Value) -> &'a Value {
        if let Some(reference) = schema.get("$ref").and_then(Value::as_str) {
            let name = reference.trim_start_matches("#/definitions/");
            return resolve(root, &root["definitions"][name]);
        }
        match schema.get("allOf").and_then(Value::as_array).map(Vec::as_slice) {
            Some([only]) => resolve(root, only),
            _ => schema,
        }
    }

    /// Every key path the schema describes as an object property.
    fn schema_paths(root: &Value, schema: &Value, prefix: &str, out: &mut BTreeSet<String>) {
        let schema = resolve(root, schema);
        let Some(props) = schema.get("properties").and_then(Value::as_object) else {
            return;
        };
        for (key, sub) in props {
            let path = if prefix.is_empty() { key.clone() } else { format!("{prefix}.{key}") };
            out.insert(path.clone());
            // Secrets' object forms are not config keys of their own.
            if key != "token" && key != "password" {
                schema_paths(root, sub, &path, out);
            }
        }
    }

    fn property_names(root: &Value, path: &[&str]) -> BTreeSet<String> {
        let mut schema = resolve(root, root);
        for key in path {
            schema = resolve(root, &schema["properties"][*key]);
        }
        schema["properties"].as_object().map(|p| p.keys().cloned().collect()).unwrap_or_default()
    }

    #[test]
    fn schema_is_draft_07_and_closed() {
        let schema = config_schema();
        assert_eq!(schema["$schema"], "http://json-schema.org/draft-07/schema#");
        assert_eq!(schema["type"], "object");
        assert_eq!(schema["additionalProperties"], false);
        let gateway = resolve(&schema, &schema["properties"]["gateway"]);
        assert_eq!(gateway["additionalProperties"], false);
        assert_eq!(gateway["properties"]["port"]["default"], 18789);
    }

    #[test]
    fn schema_properties_match_the_keys_the_decoder_accepts() {
        let schema = config_schema();
        let cases: [(&[&str], &[&str]); 13] = [
            (&[], CONFIG_KEYS),
            (&["gateway"], GATEWAY_KEYS),
            (&["gateway", "auth"], AUTH_KEYS),
            (&["gateway", "auth", "rateLimit"], RATE_LIMIT_KEYS),
            (&["gateway", "controlUi"], CONTROL_UI_KEYS),
            (&["gateway", "http"], HTTP_KEYS),
            (&["gateway", "http", "endpoints"], ENDPOINTS_KEYS),
            (&["gateway", "http", "endpoints", "responses"], ENDPOINT_KEYS),
            (&["gateway", "reload"], RELOAD_KEYS),
            (&["logging"], LOGGING_KEYS),
            (&["logging", "rotate"], LOG_ROTATE_KEYS),
            (&["storage"], STORAGE_KEYS),
            (&["cluster"], CLUSTER_KEYS),
        ];
        for (path, keys) in cases {
            let want: BTreeSet<String> = keys.iter().map(|k| (*k).to_owned()).collect();
            assert_eq!(property_names(&schema, path), want, "at {path:?}");
        }
    }

    #[test]
    fn secrets_are_string_env_or_file_in_the_schema() {
        let schema = config_schema();
        let auth = resolve(&schema, &resolve(&schema, &schema["properties"]["gateway"])["properties"]["auth"]);
        let secret = resolve(&schema, &schema["definitions"]["Secret"]);
        assert_eq!(auth["properties"]["token"]["anyOf"][0]["$ref"], "#/definitions/Secret");
        let text = secret.to_string();
        assert!(text.contains("\"env\"") && text.contains("\"file\""), "{text}");
    }

    #[test]
    fn every_typed_key_has_a_ui_hint_and_every_hint_a_key() {
        let schema = config_schema();
        let mut paths = BTreeSet::new();
        schema_paths(&schema, &schema, "", &mut paths);
        paths.remove("$schema");
        let hints = ui_hints();
        let hinted: BTreeSet<String> = hints
            .as_object()
            .unwrap()
            .keys()
            .filter(|k| paths.contains(*k) || !SECRET_PATHS.contains(&k.as_str()))
            .cloned()
            .collect();
        assert_eq!(hinted, paths);
    }

    #[test]
    fn secret_keys_are_marked_sensitive() {
        let hints = ui_hints();
        assert_eq!(hints["gateway.auth.token"]["sensitive"], true);
        assert_eq!(hints["gateway.auth.password"]["sensitive"], true);
        assert!(hints["gateway.port"].get("sensitive").is_none());
        for pattern in SECRET_PATHS {
            assert_eq!(hints[*pattern]["sensitive"], true, "{pattern}");
        }
        let marked = hints.as_object().unwrap().iter().filter(|(_, h)| h.get("sensitive").is_some()).count();
        assert_eq!(marked, SECRET_PATHS.len(), "every sensitive hint comes from SECRET_PATHS");
        assert_eq!(hints["gateway.port"]["label"], "Port");
    }
}
