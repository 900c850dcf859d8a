//! A fake Discord: Gateway v10 (WebSocket) and REST API v10 on one `127.0.0.1:0` port.
//!
//! Faithful to what `twilight-gateway` 0.18 and `twilight-http` 0.18 expect from a server
//! (`shared/contracts/discord.md` §15, §16): Hello first, Identify → READY with `session_id` and a
//! `resume_gateway_url` that points back here (at `/resume`, so tests can see the client used it),
//! Resume → the missed dispatches in order and then RESUMED, heartbeats ACKed, every dispatch with
//! an increasing `s`, and `compress=zlib-stream` answered with one zlib context per connection
//! (binary frames ending in `00 00 ff ff`). `zstd-stream` is answered with plain text frames,
//! which twilight also accepts.
//!
//! The session outlives its connections: events pushed while no connection is bound to the
//! session (after a drop, an op 7, a close) get their sequence numbers at once and wait in the
//! session's buffer until a Resume replays them; events pushed before the first Identify follow
//! READY. Test hooks break the connection in each way Discord does: op 7, op 9, a close code, a
//! TCP drop without a close frame, and a zombie connection that stops ACKing heartbeats.
//!
//! REST checks `Authorization: Bot <token>` (401 `{"message":"401: Unauthorized","code":0}`),
//! enforces the 2000-character content limit with the real 50035 body, takes JSON and multipart
//! (`payload_json` + `files[n]`) bodies, records every create-message call, and answers scripted
//! 429s with `retry_after`, `Retry-After` and the `X-RateLimit-*` headers.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use axum::Router;
use axum::body::Bytes;
use axum::extract::ws::{CloseFrame, Message as WsMessage, WebSocket, WebSocketUpgrade};
use axum::extract::{DefaultBodyLimit, FromRequest, Multipart, Path, RawQuery, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use flate2::{Compress, Compression, FlushCompress};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The token a fake accepts unless the builder sets another.
pub const DEFAULT_TOKEN: &str = "fake-discord-token";
/// Longest `content` Create Message accepts, in characters.
pub const MAX_CONTENT_CHARS: usize = 2000;
/// Largest file Create Message accepts (Discord's default per-file limit).
pub const MAX_FILE_BYTES: usize = 10 * 1024 * 1024;
/// Largest client payload on the gateway; bigger closes with 4002.
const MAX_CLIENT_PAYLOAD: usize = 4096;
/// Discord's snowflake epoch (2015-01-01T00:00:00Z) in Unix ms.
const DISCORD_EPOCH_MS: u64 = 1_420_070_400_000;
/// Every intent bit Discord defines; other bits close with 4013.
const VALID_INTENTS: u64 = 0x0331_FFFF;
/// How long after op 7 the fake closes a connection the client did not close itself.
const RECONNECT_GRACE: Duration = Duration::from_secs(5);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// `2024-05-01T12:00:00.123000+00:00`, the form Discord writes timestamps in.
fn iso8601(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    // Civil-from-days (Howard Hinnant's algorithm), valid for every date after 1970.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}000+00:00",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        ms % 1000
    )
}

/// A Discord user as the fake writes it into messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeUser {
    /// Snowflake id.
    pub id: String,
    /// `username`.
    pub username: String,
    /// `bot: true`.
    pub bot: bool,
}

impl FakeUser {
    /// A human user.
    pub fn new(id: impl Into<String>, username: impl Into<String>) -> Self {
        Self { id: id.into(), username: username.into(), bot: false }
    }

    /// Another bot.
    pub fn bot(id: impl Into<String>, username: impl Into<String>) -> Self {
        Self { id: id.into(), username: username.into(), bot: true }
    }

    /// The user object (with `public_flags`, which twilight needs in `mentions`).
    pub fn to_json(&self) -> Value {
        json!({
            "id": self.id, "username": self.username, "discriminator": "0", "global_name": self.username,
            "avatar": null, "bot": self.bot, "public_flags": 0,
        })
    }
}

/// One Identify the fake received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentifyRecord {
    /// `d.token` as sent (twilight sends `Bot <token>`).
    pub token: String,
    /// `d.intents`.
    pub intents: u64,
    /// `d.shard`, when sent.
    pub shard: Option<(u64, u64)>,
}

/// One WebSocket connection the fake accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionRecord {
    /// `/` for the URL handed out by [`FakeDiscord::gateway_url`], `/resume` for READY's
    /// `resume_gateway_url`.
    pub path: String,
    /// The query string (`v=10&encoding=json&compress=zlib-stream`).
    pub query: String,
}

impl ConnectionRecord {
    /// The `compress` query parameter.
    pub fn compress(&self) -> Option<&str> {
        self.query.split('&').find_map(|kv| kv.strip_prefix("compress="))
    }
}

/// A file part of a multipart Create Message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentFile {
    /// Part name (`files[0]`).
    pub field: String,
    /// `filename` of the part's Content-Disposition.
    pub filename: String,
    /// The part's Content-Type.
    pub content_type: Option<String>,
    /// The bytes.
    pub data: Vec<u8>,
}

/// One `POST /channels/{id}/messages` call, accepted or not.
#[derive(Debug, Clone, PartialEq)]
pub struct SentMessage {
    /// Channel from the path.
    pub channel_id: String,
    /// HTTP status the fake answered.
    pub status: u16,
    /// Id of the message created (accepted calls only).
    pub message_id: Option<String>,
    /// The JSON body, or the `payload_json` part of a multipart body.
    pub payload: Value,
    /// File parts.
    pub files: Vec<SentFile>,
    /// The body was multipart/form-data.
    pub multipart: bool,
}

impl SentMessage {
    /// `payload.content`.
    pub fn content(&self) -> Option<&str> {
        self.payload.get("content").and_then(Value::as_str)
    }
}

/// A scripted rate limit for the next REST calls under `/channels/`.
#[derive(Debug, Clone, Copy, PartialEq)]
struct RateLimit {
    retry_after: Duration,
    global: bool,
}

/// What a test asks one connection to do.
#[derive(Debug)]
enum ConnCmd {
    /// Write this (dispatch) frame.
    Frame(String),
    /// Send op 7, then close with 4000 unless the client closes first.
    Reconnect,
    /// Send op 9 with this `d`.
    InvalidSession(bool),
    /// Send a close frame with this code.
    Close(u16),
    /// Drop the TCP connection without a close frame.
    Drop,
    /// Stop ACKing heartbeats (and so send nothing at all).
    Zombie,
}

#[derive(Debug)]
struct Buffered {
    seq: u64,
    frame: String,
    /// Written to some connection; events never written survive a new Identify.
    sent: bool,
}

#[derive(Debug)]
struct Session {
    id: String,
    seq: u64,
    events: Vec<Buffered>,
    resumable: bool,
}

impl Session {
    fn dispatch(&mut self, t: &str, d: &Value, sent: bool) -> String {
        self.seq += 1;
        let frame = json!({"op": 0, "s": self.seq, "t": t, "d": d}).to_string();
        self.events.push(Buffered { seq: self.seq, frame: frame.clone(), sent });
        frame
    }
}

/// The connection currently bound to the session (it identified or resumed).
#[derive(Debug)]
struct Live {
    conn: u64,
    tx: mpsc::UnboundedSender<ConnCmd>,
}

#[derive(Debug, Default)]
struct Inner {
    session: Option<Session>,
    /// Dispatches pushed before the first Identify: they follow READY.
    pending: Vec<(String, Value)>,
    live: Option<Live>,
    /// Connections that are open, bound or not, by id (for zombie/drop hooks of an unbound one).
    open: HashMap<u64, mpsc::UnboundedSender<ConnCmd>>,
    identifies: Vec<IdentifyRecord>,
    resumes: usize,
    failed_resumes: usize,
    connections: Vec<ConnectionRecord>,
    heartbeats: usize,
    client_closes: Vec<u16>,
    messages: Vec<SentMessage>,
    typing: Vec<String>,
    rate_limits: VecDeque<RateLimit>,
    rate_limited: usize,
    unknown_channels: HashSet<String>,
    forbidden_channels: HashSet<String>,
    /// Guild of each channel a message was pushed into (for the echo of our own sends).
    channel_guilds: HashMap<String, Option<String>>,
    dm_channels: HashMap<String, String>,
    next_conn: u64,
    next_session: u64,
}

#[derive(Debug)]
struct Shared {
    token: String,
    heartbeat_interval: Duration,
    bot: FakeUser,
    base: String,
    inner: Mutex<Inner>,
    snowflake_counter: AtomicU64,
    shutdown: CancellationToken,
}

impl Shared {
    fn snowflake(&self) -> String {
        let n = self.snowflake_counter.fetch_add(1, Ordering::SeqCst) & 0x3f_ffff;
        (((now_ms().saturating_sub(DISCORD_EPOCH_MS)) << 22) | n).to_string()
    }

    fn token_ok(&self, presented: &str) -> bool {
        presented.strip_prefix("Bot ").unwrap_or(presented) == self.token
    }

    /// Push one dispatch: numbered in the session and written to the bound connection, if any.
    fn push(&self, t: &str, d: Value) {
        let mut inner = lock(&self.inner);
        let inner = &mut *inner;
        match inner.session.as_mut() {
            Some(session) => {
                let frame = session.dispatch(t, &d, inner.live.is_some());
                if let Some(live) = &inner.live {
                    // A closed receiver means the connection is going away; the frame stays
                    // buffered for the Resume.
                    let _ = live.tx.send(ConnCmd::Frame(frame));
                }
            }
            None => inner.pending.push((t.to_owned(), d)),
        }
    }

    /// Send a command to the bound connection and unbind it (what follows waits for a Resume).
    fn detach(&self, cmd: ConnCmd) -> bool {
        let mut inner = lock(&self.inner);
        match inner.live.take() {
            Some(live) => live.tx.send(cmd).is_ok(),
            None => false,
        }
    }
}

/// Options of a [`FakeDiscord`].
#[derive(Debug, Clone)]
pub struct FakeDiscordBuilder {
    token: String,
    heartbeat_interval: Duration,
    bot: FakeUser,
}

impl FakeDiscordBuilder {
    /// The bot token REST and Identify accept (default [`DEFAULT_TOKEN`]).
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.token = token.into();
        self
    }

    /// Hello's `heartbeat_interval` (default 10 s; Discord's is 41.25 s).
    pub fn heartbeat_interval(mut self, interval: Duration) -> Self {
        self.heartbeat_interval = interval;
        self
    }

    /// The bot's own user (READY `user`, `/users/@me`, the author of what it sends).
    pub fn bot_user(mut self, user: FakeUser) -> Self {
        self.bot = user;
        self
    }

    /// Bind `127.0.0.1:0` and serve.
    pub async fn start(self) -> anyhow::Result<FakeDiscord> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.context("binding the fake Discord")?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            token: self.token,
            heartbeat_interval: self.heartbeat_interval,
            bot: self.bot,
            base: format!("127.0.0.1:{}", addr.port()),
            inner: Mutex::new(Inner::default()),
            snowflake_counter: AtomicU64::new(0),
            shutdown: CancellationToken::new(),
        });
        let app = Router::new()
            .route("/", get(gateway))
            .route("/resume", get(gateway))
            .route("/resume/", get(gateway))
            .route("/api/v10/gateway", get(get_gateway))
            .route("/api/v10/gateway/bot", get(get_gateway_bot))
            .route("/api/v10/users/@me", get(get_current_user))
            .route("/api/v10/users/@me/channels", post(create_dm))
            .route("/api/v10/channels/{channel_id}/messages", post(create_message))
            .route("/api/v10/channels/{channel_id}/typing", post(trigger_typing))
            // Room for a request over the 10 MiB file limit, so the fake can answer 413 itself.
            .layer(DefaultBodyLimit::max(26 * 1024 * 1024))
            .with_state(Arc::clone(&shared));
        let shutdown = shared.shutdown.clone();
        let task = tokio::spawn(async move {
            let serve = axum::serve(listener, app).with_graceful_shutdown(shutdown.cancelled_owned());
            if let Err(e) = serve.await {
                tracing::warn!(error = %e, "fake Discord stopped");
            }
        });
        Ok(FakeDiscord { addr, shared, task })
    }
}

/// A running fake Discord; stops when dropped.
#[derive(Debug)]
pub struct FakeDiscord {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl Drop for FakeDiscord {
    fn drop(&mut self) {
        self.shared.shutdown.cancel();
        self.task.abort();
    }
}

impl FakeDiscord {
    /// Options: token, heartbeat interval, bot user.
    pub fn builder() -> FakeDiscordBuilder {
        FakeDiscordBuilder {
            token: DEFAULT_TOKEN.to_owned(),
            // Long enough that a loaded test machine never misses an ACK by accident (a missed one
            // makes the client drop the connection as a zombie and identify again); the zombie
            // test sets its own short interval.
            heartbeat_interval: Duration::from_secs(10),
            bot: FakeUser::bot("900000000000000001", "clawbot"),
        }
    }

    /// A fake with the defaults.
    pub async fn start() -> anyhow::Result<FakeDiscord> {
        Self::builder().start().await
    }

    /// The socket address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Gateway base URL (`ws://127.0.0.1:PORT`, no trailing slash): twilight's
    /// `ConfigBuilder::proxy_url`.
    pub fn gateway_url(&self) -> String {
        format!("ws://{}", self.shared.base)
    }

    /// REST root (`http://127.0.0.1:PORT`); the API lives under `/api/v10` like Discord's.
    pub fn api_root(&self) -> String {
        format!("http://{}", self.shared.base)
    }

    /// The accepted token.
    pub fn token(&self) -> &str {
        &self.shared.token
    }

    /// The bot's own user.
    pub fn bot_user(&self) -> &FakeUser {
        &self.shared.bot
    }

    /// A MESSAGE_CREATE `d` object: what [`Self::push_message_create`] sends. Tests add fields
    /// (`message_reference`, `referenced_message`, `attachments`) and push it with
    /// [`Self::push_dispatch`].
    pub fn message_json(
        &self,
        channel_id: &str,
        guild_id: Option<&str>,
        author: &FakeUser,
        content: &str,
        mentions: &[FakeUser],
    ) -> Value {
        lock(&self.shared.inner).channel_guilds.insert(channel_id.to_owned(), guild_id.map(str::to_owned));
        message_object(&self.shared.snowflake(), channel_id, guild_id, author, content, mentions, Vec::new())
    }

    /// Dispatch MESSAGE_CREATE from `author`; returns the new message id. Buffered while no
    /// connection holds the session, and delivered on Resume (or after READY).
    pub fn push_message_create(
        &self,
        channel_id: &str,
        guild_id: Option<&str>,
        author: &FakeUser,
        content: &str,
        mentions: &[FakeUser],
    ) -> String {
        let d = self.message_json(channel_id, guild_id, author, content, mentions);
        let id = d["id"].as_str().unwrap_or_default().to_owned();
        self.push_dispatch("MESSAGE_CREATE", d);
        id
    }

    /// The DM channel `POST /users/@me/channels` opened for `user`, if the bot opened one.
    pub fn dm_channel_of(&self, user: &str) -> Option<String> {
        lock(&self.shared.inner).dm_channels.get(user).cloned()
    }

    /// Dispatch any event.
    pub fn push_dispatch(&self, event: &str, d: Value) {
        self.shared.push(event, d);
    }

    /// Send op 7 Reconnect to the connection holding the session; it is closed with 4000 after
    /// a grace period if the client does not close it. Returns whether one was connected.
    pub fn send_reconnect(&self) -> bool {
        self.shared.detach(ConnCmd::Reconnect)
    }

    /// Send op 9 Invalid Session. With `resumable: false` the session is gone: the client must
    /// Identify again. Returns whether a connection was bound.
    pub fn invalidate_session(&self, resumable: bool) -> bool {
        let mut inner = lock(&self.shared.inner);
        if !resumable && let Some(s) = inner.session.as_mut() {
            s.resumable = false;
        }
        match inner.live.take() {
            Some(live) => live.tx.send(ConnCmd::InvalidSession(resumable)).is_ok(),
            None => false,
        }
    }

    /// Close the bound connection with `code` (4000: the client resumes; 4004: authentication
    /// failed, the client must stop; 4007/4009 end the session as Discord does).
    pub fn close_with(&self, code: u16) -> bool {
        if matches!(code, 4004 | 4007 | 4009..=4014)
            && let Some(s) = lock(&self.shared.inner).session.as_mut()
        {
            s.resumable = false;
        }
        self.shared.detach(ConnCmd::Close(code))
    }

    /// Drop the bound connection's TCP stream without a close frame. The session stays
    /// resumable.
    pub fn drop_connection(&self) -> bool {
        self.shared.detach(ConnCmd::Drop)
    }

    /// Make the bound connection a zombie: it stops ACKing heartbeats (new connections ACK
    /// again). The session stays bound until the client gives up on the connection.
    pub fn stop_acking_heartbeats(&self) -> bool {
        let inner = lock(&self.shared.inner);
        inner.live.as_ref().is_some_and(|l| l.tx.send(ConnCmd::Zombie).is_ok())
    }

    /// Answer the next `count` REST calls under `/channels/` with 429. `global` sets
    /// `X-RateLimit-Global`/scope `global` (and `retry_after` in the body only, like Discord);
    /// otherwise scope `user` with an exhausted bucket resetting after `retry_after`.
    pub fn rate_limit_next(&self, count: usize, retry_after: Duration, global: bool) {
        let mut inner = lock(&self.shared.inner);
        inner.rate_limits.extend(std::iter::repeat_n(RateLimit { retry_after, global }, count));
    }

    /// How many requests were answered with a scripted 429.
    pub fn rate_limited_count(&self) -> usize {
        lock(&self.shared.inner).rate_limited
    }

    /// Create Message into `channel_id` answers 404 10003 Unknown Channel.
    pub fn unknown_channel(&self, channel_id: &str) {
        lock(&self.shared.inner).unknown_channels.insert(channel_id.to_owned());
    }

    /// Create Message into `channel_id` answers 403 50001 Missing Access.
    pub fn forbid_channel(&self, channel_id: &str) {
        lock(&self.shared.inner).forbidden_channels.insert(channel_id.to_owned());
    }

    /// Identifies received, in order.
    pub fn identifies(&self) -> Vec<IdentifyRecord> {
        lock(&self.shared.inner).identifies.clone()
    }

    /// How many Identify payloads arrived.
    pub fn identify_count(&self) -> usize {
        lock(&self.shared.inner).identifies.len()
    }

    /// How many Resumes succeeded (RESUMED sent).
    pub fn resume_count(&self) -> usize {
        lock(&self.shared.inner).resumes
    }

    /// How many Resumes were refused with op 9.
    pub fn failed_resume_count(&self) -> usize {
        lock(&self.shared.inner).failed_resumes
    }

    /// Every WebSocket connection accepted, in order.
    pub fn connections(&self) -> Vec<ConnectionRecord> {
        lock(&self.shared.inner).connections.clone()
    }

    /// How many WebSocket connections were accepted.
    pub fn connection_count(&self) -> usize {
        lock(&self.shared.inner).connections.len()
    }

    /// A connection currently holds the session.
    pub fn is_session_bound(&self) -> bool {
        lock(&self.shared.inner).live.is_some()
    }

    /// Heartbeats (op 1) received.
    pub fn heartbeat_count(&self) -> usize {
        lock(&self.shared.inner).heartbeats
    }

    /// Close codes the client sent.
    pub fn client_close_codes(&self) -> Vec<u16> {
        lock(&self.shared.inner).client_closes.clone()
    }

    /// Every Create Message call, accepted or refused.
    pub fn message_calls(&self) -> Vec<SentMessage> {
        lock(&self.shared.inner).messages.clone()
    }

    /// The Create Message calls that created a message.
    pub fn sent_messages(&self) -> Vec<SentMessage> {
        lock(&self.shared.inner).messages.iter().filter(|m| m.message_id.is_some()).cloned().collect()
    }

    /// Channels a typing indicator was triggered in.
    pub fn typing_calls(&self) -> Vec<String> {
        lock(&self.shared.inner).typing.clone()
    }

    /// Poll `cond` every 10 ms until it holds; an error naming `what` after `timeout`.
    pub async fn wait_for(
        &self,
        what: &str,
        timeout: Duration,
        cond: impl Fn(&FakeDiscord) -> bool,
    ) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if cond(self) {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                anyhow::bail!("fake Discord: timed out after {timeout:?} waiting for {what}");
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

fn message_object(
    id: &str,
    channel_id: &str,
    guild_id: Option<&str>,
    author: &FakeUser,
    content: &str,
    mentions: &[FakeUser],
    attachments: Vec<Value>,
) -> Value {
    let mut d = json!({
        "id": id, "channel_id": channel_id, "author": author.to_json(), "content": content,
        "timestamp": iso8601(now_ms()), "edited_timestamp": null, "tts": false, "mention_everyone": false,
        "mention_roles": [], "mentions": mentions.iter().map(FakeUser::to_json).collect::<Vec<_>>(),
        "attachments": attachments, "embeds": [], "pinned": false, "type": 0, "flags": 0,
    });
    if let Some(g) = guild_id {
        d["guild_id"] = json!(g);
    }
    d
}

// ---------------------------------------------------------------------------------------------
// Gateway

/// `GET /` and `GET /resume/`: the gateway WebSocket (`?v=10&encoding=json[&compress=…]`).
async fn gateway(
    State(shared): State<Arc<Shared>>,
    uri: axum::http::Uri,
    RawQuery(query): RawQuery,
    ws: WebSocketUpgrade,
) -> Response {
    let path = uri.path().trim_end_matches('/');
    let record = ConnectionRecord {
        path: if path.is_empty() { "/".to_owned() } else { path.to_owned() },
        query: query.unwrap_or_default(),
    };
    ws.on_upgrade(move |socket| async move {
        let conn = GatewayConn::new(shared, socket, record);
        conn.run().await;
    })
}

/// Why a connection's loop ended.
enum End {
    /// Close frame sent or received; flush and stop.
    Closed,
    /// Drop the TCP stream without a close frame.
    Dropped,
}

struct GatewayConn {
    shared: Arc<Shared>,
    socket: WebSocket,
    id: u64,
    rx: mpsc::UnboundedReceiver<ConnCmd>,
    zlib: Option<Compress>,
    identified: bool,
    acking: bool,
    /// After op 7: close with 4000 at this point unless the client has.
    reconnect_deadline: Option<tokio::time::Instant>,
}

impl GatewayConn {
    fn new(shared: Arc<Shared>, socket: WebSocket, record: ConnectionRecord) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let zlib = (record.compress() == Some("zlib-stream")).then(|| Compress::new(Compression::default(), true));
        let id = {
            let mut inner = lock(&shared.inner);
            inner.next_conn += 1;
            let id = inner.next_conn;
            inner.connections.push(record);
            inner.open.insert(id, tx);
            id
        };
        Self { shared, socket, id, rx, zlib, identified: false, acking: true, reconnect_deadline: None }
    }

    async fn run(mut self) {
        let hello = json!({"op": 10, "d": {"heartbeat_interval": self.shared.heartbeat_interval.as_millis() as u64}});
        let end = match self.write(&hello.to_string()).await {
            Ok(()) => self.serve().await,
            Err(()) => End::Dropped,
        };
        {
            let mut inner = lock(&self.shared.inner);
            inner.open.remove(&self.id);
            if inner.live.as_ref().is_some_and(|l| l.conn == self.id) {
                inner.live = None;
            }
        }
        if let End::Closed = end {
            // Let the close handshake finish; a client that never answers is not waited for.
            let _ = tokio::time::timeout(Duration::from_secs(2), async {
                while let Some(Ok(_)) = self.socket.recv().await {}
            })
            .await;
        }
        // Dropping the socket here without a close frame is the TCP drop of `End::Dropped`.
    }

    async fn serve(&mut self) -> End {
        let shutdown = self.shared.shutdown.clone();
        loop {
            let deadline = self.reconnect_deadline;
            tokio::select! {
                () = shutdown.cancelled() => return End::Dropped,
                () = async { tokio::time::sleep_until(deadline.unwrap_or_else(tokio::time::Instant::now)).await },
                    if deadline.is_some() => {
                    return self.close(4000, "reconnect requested").await;
                }
                cmd = self.rx.recv() => {
                    let Some(cmd) = cmd else { return End::Dropped };
                    if let Some(end) = self.command(cmd).await {
                        return end;
                    }
                }
                msg = self.socket.recv() => {
                    let Some(Ok(msg)) = msg else { return End::Dropped };
                    match msg {
                        WsMessage::Text(text) => {
                            if let Some(end) = self.client_payload(text.as_str()).await {
                                return end;
                            }
                        }
                        WsMessage::Binary(_) => return self.close(4002, "decode error").await,
                        WsMessage::Close(frame) => {
                            let code = frame.as_ref().map_or(1005, |f| f.code);
                            let mut inner = lock(&self.shared.inner);
                            inner.client_closes.push(code);
                            // 1000/1001 end the session (the bot shows offline); other codes
                            // keep it resumable.
                            if matches!(code, 1000 | 1001)
                                && inner.live.as_ref().is_some_and(|l| l.conn == self.id)
                                && let Some(s) = inner.session.as_mut()
                            {
                                s.resumable = false;
                            }
                            return End::Closed;
                        }
                        WsMessage::Ping(_) | WsMessage::Pong(_) => {}
                    }
                }
            }
        }
    }

    async fn command(&mut self, cmd: ConnCmd) -> Option<End> {
        let result = match cmd {
            ConnCmd::Frame(frame) => self.write(&frame).await,
            ConnCmd::Reconnect => {
                self.reconnect_deadline = Some(tokio::time::Instant::now() + RECONNECT_GRACE);
                self.write(r#"{"op":7,"d":null,"s":null,"t":null}"#).await
            }
            ConnCmd::InvalidSession(resumable) => {
                self.write(&json!({"op": 9, "d": resumable, "s": null, "t": null}).to_string()).await
            }
            ConnCmd::Close(code) => return Some(self.close(code, "closed by the test").await),
            ConnCmd::Drop => return Some(End::Dropped),
            ConnCmd::Zombie => {
                self.acking = false;
                Ok(())
            }
        };
        result.err().map(|()| End::Dropped)
    }

    async fn client_payload(&mut self, text: &str) -> Option<End> {
        if text.len() > MAX_CLIENT_PAYLOAD {
            return Some(self.close(4002, "payload too large").await);
        }
        let Ok(payload) = serde_json::from_str::<Value>(text) else {
            return Some(self.close(4002, "decode error").await);
        };
        let op = payload.get("op").and_then(Value::as_u64);
        let d = payload.get("d").cloned().unwrap_or(Value::Null);
        let result = match op {
            Some(1) => {
                lock(&self.shared.inner).heartbeats += 1;
                if self.acking { self.write(r#"{"op":11,"d":null,"s":null,"t":null}"#).await } else { Ok(()) }
            }
            Some(2) if self.identified => return Some(self.close(4005, "already authenticated").await),
            Some(2) => return self.identify(&d).await,
            Some(6) if self.identified => return Some(self.close(4005, "already authenticated").await),
            Some(6) => return self.resume(&d).await,
            Some(3 | 4 | 8 | 31 | 43) if self.identified => Ok(()),
            Some(3 | 4 | 8 | 31 | 43) => return Some(self.close(4003, "not authenticated").await),
            _ => return Some(self.close(4001, "unknown opcode").await),
        };
        result.err().map(|()| End::Dropped)
    }

    async fn identify(&mut self, d: &Value) -> Option<End> {
        let token = d.get("token").and_then(Value::as_str).unwrap_or_default().to_owned();
        let intents = d.get("intents").and_then(Value::as_u64).unwrap_or(0);
        let shard =
            d.get("shard").and_then(Value::as_array).and_then(|a| Some((a.first()?.as_u64()?, a.get(1)?.as_u64()?)));
        lock(&self.shared.inner).identifies.push(IdentifyRecord { token: token.clone(), intents, shard });
        if !self.shared.token_ok(&token) {
            return Some(self.close(4004, "Authentication failed.").await);
        }
        if intents & !VALID_INTENTS != 0 {
            return Some(self.close(4013, "Invalid intent(s).").await);
        }
        self.identified = true;
        let frames = {
            let mut inner = lock(&self.shared.inner);
            let inner = &mut *inner;
            inner.next_session += 1;
            let session_id = format!("fake-session-{}", inner.next_session);
            // Events the old session never wrote anywhere are not lost with it.
            let carried: Vec<Buffered> =
                inner.session.take().map(|s| s.events.into_iter().filter(|e| !e.sent).collect()).unwrap_or_default();
            let mut session = Session { id: session_id.clone(), seq: 0, events: Vec::new(), resumable: true };
            let ready = json!({
                "v": 10, "user": current_user_json(&self.shared.bot), "guilds": [], "session_id": session_id,
                "resume_gateway_url": format!("ws://{}/resume", self.shared.base),
                "shard": shard.map(|(a, b)| json!([a, b])).unwrap_or(json!([0, 1])),
                "application": {"id": self.shared.bot.id, "flags": 0},
            });
            let mut frames = vec![session.dispatch("READY", &ready, true)];
            for old in carried {
                let v: Value = serde_json::from_str(&old.frame).unwrap_or(Value::Null);
                let t = v["t"].as_str().unwrap_or("MESSAGE_CREATE").to_owned();
                frames.push(session.dispatch(&t, &v["d"], true));
            }
            for (t, d) in std::mem::take(&mut inner.pending) {
                frames.push(session.dispatch(&t, &d, true));
            }
            inner.session = Some(session);
            self.bind(inner);
            frames
        };
        self.write_all(frames).await
    }

    async fn resume(&mut self, d: &Value) -> Option<End> {
        let token = d.get("token").and_then(Value::as_str).unwrap_or_default();
        if !self.shared.token_ok(token) {
            return Some(self.close(4004, "Authentication failed.").await);
        }
        let session_id = d.get("session_id").and_then(Value::as_str).unwrap_or_default();
        let seq = d.get("seq").and_then(Value::as_u64);
        let frames = {
            let mut inner = lock(&self.shared.inner);
            let inner = &mut *inner;
            let ok = inner
                .session
                .as_ref()
                .is_some_and(|s| s.resumable && s.id == session_id && seq.is_some_and(|n| n <= s.seq));
            match (ok, inner.session.as_mut(), seq) {
                (true, Some(session), Some(seq)) => {
                    let mut frames: Vec<String> = session
                        .events
                        .iter_mut()
                        .filter(|e| e.seq > seq)
                        .map(|e| {
                            e.sent = true;
                            e.frame.clone()
                        })
                        .collect();
                    frames.push(session.dispatch("RESUMED", &json!({}), true));
                    inner.resumes += 1;
                    self.identified = true;
                    self.bind(inner);
                    frames
                }
                _ => {
                    inner.failed_resumes += 1;
                    vec![r#"{"op":9,"d":false,"s":null,"t":null}"#.to_owned()]
                }
            }
        };
        self.write_all(frames).await
    }

    /// Make this the connection that receives the session's dispatches.
    fn bind(&self, inner: &mut Inner) {
        if let Some(tx) = inner.open.get(&self.id) {
            inner.live = Some(Live { conn: self.id, tx: tx.clone() });
        }
    }

    async fn write_all(&mut self, frames: Vec<String>) -> Option<End> {
        for frame in frames {
            if self.write(&frame).await.is_err() {
                return Some(End::Dropped);
            }
        }
        None
    }

    async fn write(&mut self, text: &str) -> Result<(), ()> {
        let msg = match self.zlib.as_mut() {
            Some(z) => WsMessage::Binary(Bytes::from(deflate_sync(z, text.as_bytes()))),
            None => WsMessage::Text(text.into()),
        };
        self.socket.send(msg).await.map_err(|_| ())
    }

    async fn close(&mut self, code: u16, reason: &str) -> End {
        let frame = CloseFrame { code, reason: reason.into() };
        let _ = self.socket.send(WsMessage::Close(Some(frame))).await;
        End::Closed
    }
}

/// Compress one gateway message into the connection's zlib stream, ending with a sync flush
/// (`00 00 ff ff`) as Discord's `zlib-stream` does.
fn deflate_sync(z: &mut Compress, input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len() / 2 + 64);
    let start = z.total_in();
    loop {
        if out.len() == out.capacity() {
            out.reserve(out.capacity().max(64));
        }
        let consumed = (z.total_in() - start) as usize;
        if z.compress_vec(&input[consumed..], &mut out, FlushCompress::Sync).is_err() {
            // Compressing into a Vec with spare room does not fail; an empty frame makes the
            // client's decompressor complain loudly if it ever does.
            return Vec::new();
        }
        // The flush is complete once all input is taken and the output was not filled.
        if (z.total_in() - start) as usize == input.len() && out.len() < out.capacity() {
            return out;
        }
    }
}

fn current_user_json(bot: &FakeUser) -> Value {
    json!({
        "id": bot.id, "username": bot.username, "discriminator": "0", "global_name": null, "avatar": null,
        "bot": true, "mfa_enabled": false, "verified": true, "flags": 0, "public_flags": 0,
    })
}

// ---------------------------------------------------------------------------------------------
// REST

/// A Discord JSON error response.
fn api_error(status: StatusCode, code: u64, message: &str, errors: Option<Value>) -> Response {
    let mut body = json!({"code": code, "message": message});
    if let Some(e) = errors {
        body["errors"] = e;
    }
    with_bucket_headers((status, axum::Json(body)).into_response(), 5, 4, 1.0)
}

fn with_bucket_headers(mut response: Response, limit: u32, remaining: u32, reset_after: f64) -> Response {
    let reset_at = now_ms() as f64 / 1000.0 + reset_after;
    let h = response.headers_mut();
    let mut put = |name: &'static str, value: String| {
        if let Ok(v) = HeaderValue::from_str(&value) {
            h.insert(name, v);
        }
    };
    put("x-ratelimit-limit", limit.to_string());
    put("x-ratelimit-remaining", remaining.to_string());
    put("x-ratelimit-reset", format!("{reset_at:.3}"));
    put("x-ratelimit-reset-after", format!("{reset_after:.3}"));
    put("x-ratelimit-bucket", "fake0bucket".to_owned());
    response
}

fn ok_json(status: StatusCode, body: Value) -> Response {
    with_bucket_headers((status, axum::Json(body)).into_response(), 5, 4, 1.0)
}

/// Authorization first: `Bot <token>`, else 401 as Discord answers it.
fn authorize(shared: &Shared, headers: &HeaderMap) -> Result<(), Response> {
    let ok = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bot "))
        .is_some_and(|t| t == shared.token);
    if ok { Ok(()) } else { Err(api_error(StatusCode::UNAUTHORIZED, 0, "401: Unauthorized", None)) }
}

/// A scripted 429, if one is queued.
fn scripted_rate_limit(shared: &Shared) -> Option<Response> {
    let rl = {
        let mut inner = lock(&shared.inner);
        let rl = inner.rate_limits.pop_front()?;
        inner.rate_limited += 1;
        rl
    };
    let secs = rl.retry_after.as_secs_f64();
    let (message, scope) =
        if rl.global { ("You are being rate limited.", "global") } else { ("You are being rate limited.", "user") };
    let body = json!({"message": message, "retry_after": secs, "global": rl.global});
    let mut response =
        with_bucket_headers((StatusCode::TOO_MANY_REQUESTS, axum::Json(body)).into_response(), 5, 0, secs);
    let h = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&(secs.ceil() as u64).to_string()) {
        h.insert(header::RETRY_AFTER, v);
    }
    h.insert("x-ratelimit-scope", HeaderValue::from_static(scope));
    if rl.global {
        h.insert("x-ratelimit-global", HeaderValue::from_static("true"));
    }
    Some(response)
}

/// `GET /api/v10/gateway`.
async fn get_gateway(State(shared): State<Arc<Shared>>) -> Response {
    ok_json(StatusCode::OK, json!({"url": format!("ws://{}", shared.base)}))
}

/// `GET /api/v10/gateway/bot`.
async fn get_gateway_bot(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    if let Err(r) = authorize(&shared, &headers) {
        return r;
    }
    ok_json(
        StatusCode::OK,
        json!({"url": format!("ws://{}", shared.base), "shards": 1,
               "session_start_limit": {"total": 1000, "remaining": 999, "reset_after": 14_400_000, "max_concurrency": 1}}),
    )
}

/// `GET /api/v10/users/@me`.
async fn get_current_user(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    if let Err(r) = authorize(&shared, &headers) {
        return r;
    }
    ok_json(StatusCode::OK, current_user_json(&shared.bot))
}

/// `POST /api/v10/users/@me/channels` `{recipient_id}`: the DM channel, one per recipient.
async fn create_dm(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(r) = authorize(&shared, &headers) {
        return r;
    }
    let recipient = serde_json::from_slice::<Value>(&body).ok().and_then(|v| {
        v.get("recipient_id").and_then(|r| r.as_str().map(str::to_owned).or_else(|| r.as_u64().map(|n| n.to_string())))
    });
    let Some(recipient) = recipient else {
        let errors =
            json!({"recipient_id": {"_errors": [{"code": "BASE_TYPE_REQUIRED", "message": "This field is required"}]}});
        return api_error(StatusCode::BAD_REQUEST, 50035, "Invalid Form Body", Some(errors));
    };
    let channel_id = {
        let existing = lock(&shared.inner).dm_channels.get(&recipient).cloned();
        match existing {
            Some(id) => id,
            None => {
                let id = shared.snowflake();
                let mut inner = lock(&shared.inner);
                inner.dm_channels.insert(recipient.clone(), id.clone());
                inner.channel_guilds.insert(id.clone(), None);
                id
            }
        }
    };
    let recipient_user = FakeUser::new(recipient.clone(), format!("user{recipient}"));
    ok_json(
        StatusCode::OK,
        json!({"id": channel_id, "type": 1, "last_message_id": null, "recipients": [recipient_user.to_json()]}),
    )
}

/// `POST /api/v10/channels/{channel_id}/typing`: 204.
async fn trigger_typing(
    State(shared): State<Arc<Shared>>,
    Path(channel_id): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = authorize(&shared, &headers) {
        return r;
    }
    if let Some(r) = scripted_rate_limit(&shared) {
        return r;
    }
    lock(&shared.inner).typing.push(channel_id);
    with_bucket_headers(StatusCode::NO_CONTENT.into_response(), 5, 4, 1.0)
}

/// `POST /api/v10/channels/{channel_id}/messages`, JSON or multipart (`payload_json` +
/// `files[n]`). Creates the message and echoes it as MESSAGE_CREATE with the bot as author.
async fn create_message(
    State(shared): State<Arc<Shared>>,
    Path(channel_id): Path<String>,
    request: Request,
) -> Response {
    if let Err(r) = authorize(&shared, request.headers()) {
        return r;
    }
    if let Some(r) = scripted_rate_limit(&shared) {
        return r;
    }
    let content_type =
        request.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    let multipart = content_type.starts_with("multipart/form-data");
    let parsed = if multipart {
        read_multipart(request).await
    } else if content_type.starts_with("application/json") {
        match Bytes::from_request(request, &()).await {
            Ok(body) => serde_json::from_slice::<Value>(&body).map(|v| (v, Vec::new())).map_err(|_| ()),
            Err(_) => Err(()),
        }
    } else {
        Err(())
    };
    let (payload, files) = match parsed {
        Ok(p) => p,
        Err(()) => {
            let response = api_error(StatusCode::BAD_REQUEST, 50109, "The request body contains invalid JSON.", None);
            record_call(&shared, &channel_id, 400, None, Value::Null, Vec::new(), multipart);
            return response;
        }
    };
    let refuse = |status: StatusCode, code: u64, message: &str, errors: Option<Value>| {
        record_call(&shared, &channel_id, status.as_u16(), None, payload.clone(), files.clone(), multipart);
        api_error(status, code, message, errors)
    };
    {
        let inner = lock(&shared.inner);
        if inner.unknown_channels.contains(&channel_id) {
            drop(inner);
            return refuse(StatusCode::NOT_FOUND, 10003, "Unknown Channel", None);
        }
        if inner.forbidden_channels.contains(&channel_id) {
            drop(inner);
            return refuse(StatusCode::FORBIDDEN, 50001, "Missing Access", None);
        }
    }
    let content = payload.get("content").and_then(Value::as_str).unwrap_or_default().to_owned();
    if content.chars().count() > MAX_CONTENT_CHARS {
        let errors = json!({"content": {"_errors": [{"code": "BASE_TYPE_MAX_LENGTH", "message": "Must be 2000 or fewer in length."}]}});
        return refuse(StatusCode::BAD_REQUEST, 50035, "Invalid Form Body", Some(errors));
    }
    if files.iter().any(|f| f.data.len() > MAX_FILE_BYTES) {
        return refuse(StatusCode::PAYLOAD_TOO_LARGE, 40005, "Request entity too large", None);
    }
    if content.trim().is_empty() && files.is_empty() {
        return refuse(StatusCode::BAD_REQUEST, 50006, "Cannot send an empty message", None);
    }
    let id = shared.snowflake();
    let attachments: Vec<Value> = files
        .iter()
        .map(|f| {
            let aid = shared.snowflake();
            json!({"id": aid, "filename": f.filename, "size": f.data.len(), "content_type": f.content_type,
                   "url": format!("http://{}/attachments/{channel_id}/{aid}/{}", shared.base, f.filename),
                   "proxy_url": format!("http://{}/attachments/{channel_id}/{aid}/{}", shared.base, f.filename)})
        })
        .collect();
    let guild_id = lock(&shared.inner).channel_guilds.get(&channel_id).cloned().flatten();
    let mut message = message_object(&id, &channel_id, guild_id.as_deref(), &shared.bot, &content, &[], attachments);
    if let Some(reference) = payload.get("message_reference").filter(|r| !r.is_null()) {
        message["message_reference"] = reference.clone();
        message["type"] = json!(19);
    }
    record_call(&shared, &channel_id, 200, Some(id), payload, files, multipart);
    shared.push("MESSAGE_CREATE", message.clone());
    ok_json(StatusCode::OK, message)
}

fn record_call(
    shared: &Shared,
    channel_id: &str,
    status: u16,
    message_id: Option<String>,
    payload: Value,
    files: Vec<SentFile>,
    multipart: bool,
) {
    lock(&shared.inner).messages.push(SentMessage {
        channel_id: channel_id.to_owned(),
        status,
        message_id,
        payload,
        files,
        multipart,
    });
}

async fn read_multipart(request: Request) -> Result<(Value, Vec<SentFile>), ()> {
    let mut form = Multipart::from_request(request, &()).await.map_err(|_| ())?;
    let mut payload = Value::Null;
    let mut files = Vec::new();
    while let Some(field) = form.next_field().await.map_err(|_| ())? {
        let name = field.name().unwrap_or_default().to_owned();
        let filename = field.file_name().map(str::to_owned);
        let content_type = field.content_type().map(str::to_owned);
        let data = field.bytes().await.map_err(|_| ())?;
        if name == "payload_json" {
            payload = serde_json::from_slice(&data).map_err(|_| ())?;
        } else if name.starts_with("files[") {
            // Discord requires a filename on every file part.
            let filename = filename.ok_or(())?;
            files.push(SentFile { field: name, filename, content_type, data: data.to_vec() });
        }
    }
    Ok((payload, files))
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::{Decompress, FlushDecompress};
    use futures_util::{SinkExt, StreamExt};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_tungstenite::tungstenite::Message as TMessage;

    type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

    const WAIT: Duration = Duration::from_secs(5);

    async fn connect(url: &str) -> Ws {
        tokio_tungstenite::connect_async(url).await.expect("connect").0
    }

    async fn next_json(ws: &mut Ws) -> Value {
        loop {
            let msg = tokio::time::timeout(WAIT, ws.next()).await.expect("frame in time").expect("open").expect("ok");
            match msg {
                TMessage::Text(t) => return serde_json::from_str(t.as_str()).expect("json"),
                TMessage::Close(f) => panic!("closed: {f:?}"),
                _ => {}
            }
        }
    }

    async fn next_close(ws: &mut Ws) -> Option<u16> {
        loop {
            match tokio::time::timeout(WAIT, ws.next()).await.expect("close in time") {
                Some(Ok(TMessage::Close(f))) => return f.map(|f| u16::from(f.code)),
                Some(Ok(_)) => {}
                Some(Err(_)) | None => return None,
            }
        }
    }

    async fn send(ws: &mut Ws, v: Value) {
        ws.send(TMessage::Text(v.to_string().into())).await.expect("send");
    }

    fn identify(token: &str) -> Value {
        json!({"op": 2, "d": {"token": format!("Bot {token}"), "intents": 37376, "shard": [0, 1],
               "properties": {"os": "linux", "browser": "t", "device": "t"}}})
    }

    /// A minimal HTTP/1.1 client: enough for the fake's REST routes.
    async fn http(
        fake: &FakeDiscord,
        method: &str,
        path: &str,
        auth: Option<&str>,
        ctype: &str,
        body: &[u8],
    ) -> (u16, String, Value) {
        let mut s = tokio::net::TcpStream::connect(fake.addr()).await.expect("tcp");
        let mut req =
            format!("{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n", body.len());
        if let Some(a) = auth {
            req.push_str(&format!("Authorization: {a}\r\n"));
        }
        if !ctype.is_empty() {
            req.push_str(&format!("Content-Type: {ctype}\r\n"));
        }
        req.push_str("\r\n");
        s.write_all(req.as_bytes()).await.expect("write");
        s.write_all(body).await.expect("write body");
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).await.expect("read");
        let text = String::from_utf8_lossy(&raw).into_owned();
        let (head, rest) = text.split_once("\r\n\r\n").expect("head");
        let status = head[9..12].parse().expect("status");
        (status, head.to_ascii_lowercase(), serde_json::from_str(rest).unwrap_or(Value::Null))
    }

    #[test]
    fn timestamps_are_iso8601() {
        assert_eq!(iso8601(0), "1970-01-01T00:00:00.000000+00:00");
        assert_eq!(iso8601(1_714_564_800_123), "2024-05-01T12:00:00.123000+00:00");
        assert_eq!(iso8601(951_782_400_000), "2000-02-29T00:00:00.000000+00:00");
    }

    #[tokio::test]
    async fn identify_gets_ready_then_buffered_and_live_dispatches_in_sequence() {
        let fake = FakeDiscord::start().await.unwrap();
        let alice = FakeUser::new("1", "alice");
        let early = fake.push_message_create("10", Some("20"), &alice, "before identify", &[]);
        let mut ws = connect(&format!("{}/?v=10&encoding=json", fake.gateway_url())).await;
        let hello = next_json(&mut ws).await;
        assert_eq!(hello["op"], 10);
        assert_eq!(hello["d"]["heartbeat_interval"], 10_000);
        send(&mut ws, identify(fake.token())).await;
        let ready = next_json(&mut ws).await;
        assert_eq!((ready["t"].as_str(), ready["s"].as_u64()), (Some("READY"), Some(1)));
        assert_eq!(ready["d"]["resume_gateway_url"], format!("{}/resume", fake.gateway_url()));
        let first = next_json(&mut ws).await;
        assert_eq!((first["s"].as_u64(), first["d"]["id"].as_str()), (Some(2), Some(early.as_str())));
        fake.push_message_create("10", None, &alice, "live", &[]);
        let live = next_json(&mut ws).await;
        assert_eq!((live["s"].as_u64(), live["d"]["content"].as_str()), (Some(3), Some("live")));
        assert!(live["d"].get("guild_id").is_none(), "a DM has no guild_id");
        send(&mut ws, json!({"op": 1, "d": 3})).await;
        assert_eq!(next_json(&mut ws).await["op"], 11);
        assert_eq!(
            fake.identifies(),
            vec![IdentifyRecord { token: format!("Bot {DEFAULT_TOKEN}"), intents: 37376, shard: Some((0, 1)) }]
        );
    }

    #[tokio::test]
    async fn resume_after_a_drop_replays_missed_events_then_resumed() {
        let fake = FakeDiscord::start().await.unwrap();
        let mut ws = connect(&fake.gateway_url()).await;
        next_json(&mut ws).await;
        send(&mut ws, identify(fake.token())).await;
        let ready = next_json(&mut ws).await;
        let session = ready["d"]["session_id"].as_str().unwrap().to_owned();
        assert!(fake.drop_connection());
        assert!(next_close(&mut ws).await.is_none(), "a TCP drop has no close frame");
        let bob = FakeUser::new("2", "bob");
        fake.push_message_create("10", Some("20"), &bob, "missed one", &[]);
        fake.push_message_create("10", Some("20"), &bob, "missed two", &[]);
        let mut ws = connect(&format!("{}/resume/?v=10&encoding=json", fake.gateway_url())).await;
        next_json(&mut ws).await;
        send(&mut ws, json!({"op": 6, "d": {"token": fake.token(), "session_id": session, "seq": 1}})).await;
        let contents: Vec<(u64, String)> =
            [next_json(&mut ws).await, next_json(&mut ws).await, next_json(&mut ws).await]
                .iter()
                .map(|f| {
                    (
                        f["s"].as_u64().unwrap(),
                        f["t"].as_str().unwrap().to_owned() + ":" + f["d"]["content"].as_str().unwrap_or(""),
                    )
                })
                .collect();
        assert_eq!(
            contents,
            vec![
                (2, "MESSAGE_CREATE:missed one".into()),
                (3, "MESSAGE_CREATE:missed two".into()),
                (4, "RESUMED:".into())
            ]
        );
        assert_eq!((fake.identify_count(), fake.resume_count()), (1, 1));
        assert_eq!(fake.connections()[1].path, "/resume");
    }

    #[tokio::test]
    async fn a_stale_resume_gets_invalid_session_and_a_bad_token_closes_4004() {
        let fake = FakeDiscord::start().await.unwrap();
        let mut ws = connect(&fake.gateway_url()).await;
        next_json(&mut ws).await;
        send(&mut ws, json!({"op": 6, "d": {"token": fake.token(), "session_id": "nope", "seq": 3}})).await;
        let nine = next_json(&mut ws).await;
        assert_eq!((nine["op"].as_u64(), nine["d"].as_bool()), (Some(9), Some(false)));
        assert_eq!(fake.failed_resume_count(), 1);
        let mut ws = connect(&fake.gateway_url()).await;
        next_json(&mut ws).await;
        send(&mut ws, identify("wrong")).await;
        assert_eq!(next_close(&mut ws).await, Some(4004));
    }

    #[tokio::test]
    async fn zlib_stream_frames_inflate_with_one_context_per_connection() {
        let fake = FakeDiscord::start().await.unwrap();
        let mut ws = connect(&format!("{}/?v=10&encoding=json&compress=zlib-stream", fake.gateway_url())).await;
        let mut inflate = Decompress::new(true);
        let mut read = async |ws: &mut Ws| -> Value {
            let msg = tokio::time::timeout(WAIT, ws.next()).await.unwrap().unwrap().unwrap();
            let TMessage::Binary(data) = msg else { panic!("expected binary, got {msg:?}") };
            assert!(data.ends_with(&[0, 0, 0xff, 0xff]), "sync flush marker");
            let mut out = Vec::with_capacity(64 * 1024);
            inflate.decompress_vec(&data, &mut out, FlushDecompress::Sync).unwrap();
            serde_json::from_slice(&out).unwrap()
        };
        assert_eq!(read(&mut ws).await["op"], 10);
        send(&mut ws, identify(fake.token())).await;
        assert_eq!(read(&mut ws).await["t"], "READY");
        assert_eq!(fake.connections()[0].compress(), Some("zlib-stream"));
    }

    #[tokio::test]
    async fn op7_detaches_the_session_and_closes_4000_if_the_client_stays() {
        let fake = FakeDiscord::start().await.unwrap();
        let mut ws = connect(&fake.gateway_url()).await;
        next_json(&mut ws).await;
        send(&mut ws, identify(fake.token())).await;
        next_json(&mut ws).await;
        assert!(fake.send_reconnect());
        assert_eq!(next_json(&mut ws).await["op"], 7);
        assert!(!fake.is_session_bound());
        fake.push_message_create("10", None, &FakeUser::new("3", "carol"), "held", &[]);
        let frame = tokio::time::timeout(Duration::from_millis(300), ws.next()).await;
        assert!(frame.is_err(), "nothing is sent to a connection that lost the session: {frame:?}");
    }

    #[tokio::test]
    async fn rest_checks_auth_content_length_and_scripted_rate_limits() {
        let fake = FakeDiscord::start().await.unwrap();
        let auth = format!("Bot {}", fake.token());
        let (status, _, body) = http(&fake, "GET", "/api/v10/users/@me", None, "", b"").await;
        assert_eq!((status, body["code"].as_u64()), (401, Some(0)));
        let (status, _, body) = http(&fake, "GET", "/api/v10/gateway/bot", Some(&auth), "", b"").await;
        assert_eq!((status, body["url"].as_str()), (200, Some(fake.gateway_url().as_str())));

        let long = json!({"content": "x".repeat(2001)}).to_string();
        let (status, _, body) =
            http(&fake, "POST", "/api/v10/channels/10/messages", Some(&auth), "application/json", long.as_bytes())
                .await;
        assert_eq!((status, body["code"].as_u64()), (400, Some(50035)));
        assert_eq!(body["errors"]["content"]["_errors"][0]["code"], "BASE_TYPE_MAX_LENGTH");

        fake.rate_limit_next(1, Duration::from_millis(1500), true);
        let ok = json!({"content": "hi"}).to_string();
        let (status, head, body) =
            http(&fake, "POST", "/api/v10/channels/10/messages", Some(&auth), "application/json", ok.as_bytes()).await;
        assert_eq!(status, 429);
        assert_eq!((body["retry_after"].as_f64(), body["global"].as_bool()), (Some(1.5), Some(true)));
        for h in ["retry-after: 2", "x-ratelimit-global: true", "x-ratelimit-scope: global", "x-ratelimit-remaining: 0"]
        {
            assert!(head.contains(h), "{h} in {head}");
        }
        let (status, head, body) =
            http(&fake, "POST", "/api/v10/channels/10/messages", Some(&auth), "application/json", ok.as_bytes()).await;
        assert_eq!((status, body["content"].as_str()), (200, Some("hi")));
        assert!(head.contains("x-ratelimit-bucket"));
        assert_eq!(fake.sent_messages().len(), 1);
        assert_eq!(fake.message_calls().len(), 2, "the refused 2001-char call is recorded too");
    }

    #[tokio::test]
    async fn multipart_upload_is_recorded_with_its_payload_json() {
        let fake = FakeDiscord::start().await.unwrap();
        let auth = format!("Bot {}", fake.token());
        let body = b"--XYZ\r\nContent-Disposition: form-data; name=\"payload_json\"\r\nContent-Type: application/json\r\n\r\n{\"content\":\"see file\",\"attachments\":[{\"id\":0,\"filename\":\"a.png\"}]}\r\n--XYZ\r\nContent-Disposition: form-data; name=\"files[0]\"; filename=\"a.png\"\r\nContent-Type: image/png\r\n\r\nPNGDATA\r\n--XYZ--\r\n";
        let (status, _, msg) = http(
            &fake,
            "POST",
            "/api/v10/channels/10/messages",
            Some(&auth),
            "multipart/form-data; boundary=XYZ",
            body,
        )
        .await;
        assert_eq!(status, 200);
        assert_eq!(msg["attachments"][0]["filename"], "a.png");
        let sent = fake.sent_messages();
        assert!(sent[0].multipart);
        assert_eq!(sent[0].content(), Some("see file"));
        assert_eq!(
            sent[0].files,
            vec![SentFile {
                field: "files[0]".into(),
                filename: "a.png".into(),
                content_type: Some("image/png".into()),
                data: b"PNGDATA".to_vec()
            }]
        );
    }
}
