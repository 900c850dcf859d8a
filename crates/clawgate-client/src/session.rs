//! [`SessionHandle`]: one session of one gateway, as a backend relaying it to a user sees it —
//! a bounded stream of that session's events and typed `agent` / `chat.*` calls.
//!
//! Events are filtered on the client from the one connection (the gateway sends every session's
//! `agent` and `chat` events to an `operator.read` client), by the `sessionKey` the gateway puts
//! on them: the full `agent:<agentId>:<rest>` form. A handle made from a bare key such as
//! `compose:doc:abc:ann` listens for `agent:<default agent>:compose:doc:abc:ann`, the key the
//! gateway files it under; name the agent with [`SessionHandle::agent_id`] when it is not the
//! default one.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::stream::BoxStream;
use futures_util::{Stream, StreamExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::sync::mpsc;

use clawgate_protocol::EventFrame;
use clawgate_protocol::methods::agent::{AgentAccepted, AgentParams, AgentResult};
use clawgate_protocol::methods::chat::{
    ChatAbortParams, ChatAbortResult, ChatHistoryParams, ChatHistoryResult, ChatInjectParams, ChatInjectResult,
    ChatSendParams, ChatSendResult,
};
use clawgate_protocol::{events, methods};

use crate::client::Client;
use crate::conn::{ResponseStream, is_final, response_payload};
use crate::error::ClientError;
use crate::hub::Hub;

/// The agent a bare session key belongs to when the gateway does not say.
const DEFAULT_AGENT: &str = "main";
/// Prefix of a full session key.
const AGENT_PREFIX: &str = "agent:";

/// What happens in a conversation: `chat` events (the transcript view), `agent` events (the
/// run's streams), markers for the client's connection, and lag reports.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum SessionEvent {
    /// A `chat` event (`delta`, `final`, `aborted`, `error`, `status`).
    Chat(ChatEvent),
    /// An `agent` event (`assistant` text, `lifecycle`, `tool`, …).
    Agent(AgentEvent),
    /// Any other event carrying this session's key (`session.message`, `sessions.changed`, …).
    Other(EventFrame),
    /// The stream was full and this many events were dropped here: refetch `chat.history`.
    Lagged(u64),
    /// The connection was lost; events until [`SessionEvent::Reconnected`] are lost too.
    Disconnected,
    /// A new connection is up (it comes before that connection's first event; subscriptions
    /// are replayed right after): refetch `chat.history` to catch up on what happened meanwhile.
    Reconnected,
}

impl SessionEvent {
    /// Type an event frame (one routed here has a `sessionKey`).
    pub(crate) fn from_frame(frame: &EventFrame) -> SessionEvent {
        let payload = frame.payload.clone().unwrap_or(Value::Null);
        let run_id = payload.get("runId").and_then(Value::as_str).unwrap_or_default().to_owned();
        let seq = payload.get("seq").and_then(Value::as_u64).unwrap_or(0);
        match frame.event.as_str() {
            events::names::CHAT => {
                let state = ChatState::parse(payload.get("state").and_then(Value::as_str).unwrap_or_default());
                SessionEvent::Chat(ChatEvent { run_id, seq, state, payload })
            }
            events::names::AGENT => {
                let stream = payload.get("stream").and_then(Value::as_str).unwrap_or_default().to_owned();
                let data = payload.get("data").cloned().unwrap_or(Value::Null);
                SessionEvent::Agent(AgentEvent { run_id, seq, stream, data })
            }
            _ => SessionEvent::Other(frame.clone()),
        }
    }

    /// The run this event belongs to, for `chat` and `agent` events.
    pub fn run_id(&self) -> Option<&str> {
        match self {
            SessionEvent::Chat(c) => Some(&c.run_id),
            SessionEvent::Agent(a) => Some(&a.run_id),
            _ => None,
        }
    }
}

/// `chat` event `state`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChatState {
    /// New reply text (`deltaText`).
    Delta,
    /// The reply is complete (`message`).
    Final,
    /// The run was aborted.
    Aborted,
    /// The run failed (`errorMessage`, `errorKind`).
    Error,
    /// A progress phase (`phase`).
    Status,
    /// A state this client does not know.
    Other(String),
}

impl ChatState {
    fn parse(state: &str) -> ChatState {
        match state {
            "delta" => ChatState::Delta,
            "final" => ChatState::Final,
            "aborted" => ChatState::Aborted,
            "error" => ChatState::Error,
            "status" => ChatState::Status,
            other => ChatState::Other(other.to_owned()),
        }
    }
}

/// A `chat` event of this session.
#[derive(Debug, Clone)]
pub struct ChatEvent {
    /// The run (`inject-<messageId>` for `chat.inject`).
    pub run_id: String,
    /// The run's event counter.
    pub seq: u64,
    /// What happened.
    pub state: ChatState,
    /// The whole payload (`message`, `usage`, `stopReason`, …).
    pub payload: Value,
}

impl ChatEvent {
    /// `deltaText` of a `delta`.
    pub fn delta_text(&self) -> Option<&str> {
        self.payload.get("deltaText").and_then(Value::as_str)
    }

    /// `errorMessage` of an `error` (or `aborted`).
    pub fn error_message(&self) -> Option<&str> {
        self.payload.get("errorMessage").and_then(Value::as_str)
    }

    /// Whether the run ended with this event (`final`, `aborted`, `error`).
    pub fn is_terminal(&self) -> bool {
        matches!(self.state, ChatState::Final | ChatState::Aborted | ChatState::Error)
    }
}

/// An `agent` event of this session.
#[derive(Debug, Clone)]
pub struct AgentEvent {
    /// The run.
    pub run_id: String,
    /// The run's event counter.
    pub seq: u64,
    /// `assistant`, `lifecycle`, `tool`, `usage`, `run_status`, …
    pub stream: String,
    /// The stream's data.
    pub data: Value,
}

impl AgentEvent {
    /// The new text of an `assistant` event.
    pub fn delta(&self) -> Option<&str> {
        (self.stream == "assistant").then(|| self.data.get("delta").and_then(Value::as_str)).flatten()
    }

    /// `data.phase` (`lifecycle`: `start`, `model`, `end`, `error`; `tool`: `start`, `result`).
    pub fn phase(&self) -> Option<&str> {
        self.data.get("phase").and_then(Value::as_str)
    }

    /// Whether the run ended with this event (`lifecycle` `end` or `error`).
    pub fn is_terminal(&self) -> bool {
        self.stream == "lifecycle" && matches!(self.phase(), Some("end" | "error"))
    }
}

/// The events of one session, bounded (see [`SessionEvent::Lagged`]). Ends when the client is
/// closed for good. Dropping it unregisters it.
pub struct SessionEvents {
    rx: mpsc::Receiver<SessionEvent>,
    hub: Arc<Hub>,
    key: String,
    id: u64,
}

impl std::fmt::Debug for SessionEvents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionEvents").field("key", &self.key).finish_non_exhaustive()
    }
}

impl SessionEvents {
    /// The next event; `None` once the client is closed.
    pub async fn recv(&mut self) -> Option<SessionEvent> {
        self.rx.recv().await
    }

    /// The session key the events are filtered on (the full `agent:<id>:…` form).
    pub fn key(&self) -> &str {
        &self.key
    }
}

impl Stream for SessionEvents {
    type Item = SessionEvent;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<SessionEvent>> {
        self.rx.poll_recv(cx)
    }
}

impl Drop for SessionEvents {
    fn drop(&mut self) {
        self.hub.unroute(&self.key, self.id);
    }
}

/// An `agent` call: the protocol's [`AgentParams`] with a fresh idempotency key; the session
/// key comes from the [`SessionHandle`].
///
/// ```
/// use clawgate_client::AgentRequest;
/// let req = AgentRequest::new("Summarise the selected section").timeout_secs(120);
/// assert_eq!(req.params().message, "Summarise the selected section");
/// assert!(!req.params().idempotency_key.is_empty());
/// ```
#[derive(Debug, Clone)]
pub struct AgentRequest {
    params: AgentParams,
}

impl AgentRequest {
    /// A turn with this user message.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            params: AgentParams {
                message: message.into(),
                idempotency_key: uuid::Uuid::new_v4().to_string(),
                ..AgentParams::default()
            },
        }
    }

    /// The idempotency key (= the run id); re-sending a turn with the same key after
    /// [`ClientError::ConnectionLost`] never runs it twice.
    pub fn idempotency_key(mut self, key: impl Into<String>) -> Self {
        self.params.idempotency_key = key.into();
        self
    }

    /// Run timeout in seconds.
    pub fn timeout_secs(mut self, secs: u64) -> Self {
        self.params.timeout = Some(secs);
        self
    }

    /// Extra system prompt text for this run.
    pub fn extra_system_prompt(mut self, text: impl Into<String>) -> Self {
        self.params.extra_system_prompt = Some(text.into());
        self
    }

    /// The params as they will be sent (without the session key).
    pub fn params(&self) -> &AgentParams {
        &self.params
    }

    /// The params, to set fields this builder has no setter for.
    pub fn params_mut(&mut self) -> &mut AgentParams {
        &mut self.params
    }
}

impl From<AgentParams> for AgentRequest {
    fn from(params: AgentParams) -> Self {
        Self { params }
    }
}

/// A running `agent` turn: accepted by the gateway; its text streams through
/// [`deltas`](Self::deltas) and its result comes from [`wait`](Self::wait).
pub struct AgentRun {
    accepted: AgentAccepted,
    events: SessionEvents,
    response: ResponseStream,
    /// The run's event stream has ended (terminal event, lost connection or closed client).
    events_done: bool,
}

impl std::fmt::Debug for AgentRun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentRun").field("accepted", &self.accepted).finish_non_exhaustive()
    }
}

impl AgentRun {
    /// The run id (= the idempotency key).
    pub fn run_id(&self) -> &str {
        &self.accepted.run_id
    }

    /// The gateway's `accepted` answer (full session key, agent, time).
    pub fn accepted(&self) -> &AgentAccepted {
        &self.accepted
    }

    /// The reply text as it streams (`assistant` deltas of this run), ending when the run ends.
    /// A lost connection ends it with [`ClientError::ConnectionLost`] (the run may go on at the
    /// gateway; its result is then in `chat.history`); a full buffer yields
    /// [`ClientError::Lagged`] and goes on.
    pub fn deltas(&mut self) -> BoxStream<'_, Result<String, ClientError>> {
        Box::pin(futures_util::stream::unfold(self, |run| async move {
            if run.events_done {
                return None;
            }
            loop {
                let Some(event) = run.events.recv().await else {
                    run.events_done = true;
                    return None;
                };
                match event {
                    SessionEvent::Agent(a) if a.run_id == run.accepted.run_id => {
                        if a.is_terminal() {
                            run.events_done = true;
                            return None;
                        }
                        if let Some(delta) = a.delta() {
                            return Some((Ok(delta.to_owned()), run));
                        }
                    }
                    SessionEvent::Chat(c) if c.run_id == run.accepted.run_id && c.is_terminal() => {
                        run.events_done = true;
                        return None;
                    }
                    SessionEvent::Lagged(skipped) => return Some((Err(ClientError::Lagged { skipped }), run)),
                    SessionEvent::Disconnected => {
                        run.events_done = true;
                        let err = ClientError::ConnectionLost {
                            method: methods::names::AGENT.to_owned(),
                            code: None,
                            reason: "connection lost during the run".to_owned(),
                        };
                        return Some((Err(err), run));
                    }
                    _ => {}
                }
            }
        }))
    }

    /// Wait for the final answer: [`AgentResult::Ok`] with the reply, or
    /// [`AgentResult::Timeout`] for an aborted or timed-out run; a failed run is
    /// [`ClientError::Rpc`], a lost connection [`ClientError::ConnectionLost`]. Unbounded: wrap
    /// it in a timeout when that matters.
    ///
    /// ```no_run
    /// # async fn run(client: clawgate_client::Client) -> Result<(), clawgate_client::ClientError> {
    /// use clawgate_client::{AgentRequest, AgentResult};
    /// let run = client.session("compose:doc:abc:ann").agent(AgentRequest::new("Outline this")).await?;
    /// match tokio::time::timeout(std::time::Duration::from_secs(300), run.wait()).await {
    ///     Ok(Ok(AgentResult::Ok { result, .. })) => println!("{}", result.payloads[0].text),
    ///     Ok(Ok(other)) => println!("cut short: {other:?}"),
    ///     Ok(Err(e)) if e.is_transient() => println!("assistant unavailable: {e}"),
    ///     Ok(Err(e)) => return Err(e),
    ///     Err(_) => println!("still running after 5 minutes"),
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn wait(mut self) -> Result<AgentResult, ClientError> {
        while let Some(frame) = self.response.next().await {
            let frame = frame?;
            if is_final(&frame) {
                return decode(methods::names::AGENT, response_payload(frame)?);
            }
        }
        Err(ClientError::ConnectionLost {
            method: methods::names::AGENT.to_owned(),
            code: None,
            reason: "response stream ended".to_owned(),
        })
    }
}

/// One session of a [`Client`]: its events and typed `agent` / `chat.*` calls.
///
/// ```no_run
/// use clawgate_client::{AgentRequest, Client, ClientOptions};
/// use futures_util::StreamExt;
/// # async fn run() -> Result<(), clawgate_client::ClientError> {
/// let client = Client::connect(ClientOptions::new("ws://127.0.0.1:18789").token("t").scopes(["operator.write"])).await?;
/// let session = client.session("compose:doc:abc:ann");
/// let mut run = session.agent(AgentRequest::new("Tighten this paragraph")).await?;
/// let mut deltas = run.deltas();
/// while let Some(delta) = deltas.next().await {
///     print!("{}", delta?);
/// }
/// drop(deltas);
/// let result = run.wait().await?;
/// println!("\n{result:?}");
/// let history = session.chat_history(Some(50)).await?;
/// println!("{} messages", history.messages.len());
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct SessionHandle {
    client: Client,
    key: String,
    agent_id: Option<String>,
}

impl SessionHandle {
    pub(crate) fn new(client: Client, key: String) -> Self {
        Self { client, key: key.trim().to_owned(), agent_id: None }
    }

    /// The session key as given.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The agent a bare key belongs to (default: the gateway's default agent).
    pub fn agent_id(mut self, agent_id: impl Into<String>) -> Self {
        self.agent_id = Some(agent_id.into());
        self
    }

    /// The client this handle uses.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The key the gateway puts on this session's events: `agent:<agentId>:<key>` for a bare
    /// key (the handle's agent, else the gateway's default agent from `hello-ok`), a full key
    /// as is.
    pub fn event_key(&self) -> String {
        if self.key.starts_with(AGENT_PREFIX) {
            return self.key.clone();
        }
        let agent = match &self.agent_id {
            Some(id) => id.clone(),
            None => default_agent(&self.client),
        };
        format!("{AGENT_PREFIX}{agent}:{}", self.key)
    }

    /// This session's events from now on (bounded; see [`SessionEvent`]). Open it before
    /// sending, so nothing of the reply is missed.
    ///
    /// ```no_run
    /// # async fn run(client: clawgate_client::Client) -> Result<(), clawgate_client::ClientError> {
    /// use clawgate_client::{ChatState, SessionEvent};
    /// let session = client.session("compose:doc:abc:ann");
    /// let mut events = session.events();
    /// session.chat_send("What changed in section 2?").await?;
    /// while let Some(event) = events.recv().await {
    ///     match event {
    ///         SessionEvent::Chat(c) if c.state == ChatState::Delta => print!("{}", c.delta_text().unwrap_or("")),
    ///         SessionEvent::Chat(c) if c.is_terminal() => break,
    ///         SessionEvent::Lagged(_) | SessionEvent::Reconnected => { /* refetch chat_history */ }
    ///         _ => {}
    ///     }
    /// }
    /// # Ok(()) }
    /// ```
    pub fn events(&self) -> SessionEvents {
        let key = self.event_key();
        let hub = self.client.hub().clone();
        let (id, rx) = hub.route(&key);
        SessionEvents { rx, hub, key, id }
    }

    /// Start an `agent` turn in this session; returns once the gateway accepted it.
    pub async fn agent(&self, request: AgentRequest) -> Result<AgentRun, ClientError> {
        let mut params = request.params;
        params.session_key = Some(self.key.clone());
        if params.agent_id.is_none() {
            params.agent_id = self.agent_id.clone();
        }
        // Listen before sending: the first deltas can arrive right after the acknowledgement.
        let events = self.events();
        let stream = self.client.request_stream(methods::names::AGENT, encode(&params)?).await?;
        let mut response: ResponseStream = Box::pin(stream);
        let Some(first) = response.next().await else {
            return Err(ClientError::ConnectionLost {
                method: methods::names::AGENT.to_owned(),
                code: None,
                reason: "response stream ended".to_owned(),
            });
        };
        let first = first?;
        if is_final(&first) {
            // Refused (bad params, missing scope) or answered at once without a run.
            response_payload(first)?;
            return Err(ClientError::Protocol("agent answered without accepting a run".to_owned()));
        }
        let accepted: AgentAccepted = decode(methods::names::AGENT, response_payload(first)?)?;
        Ok(AgentRun { accepted, events, response, events_done: false })
    }

    /// `chat.send` this message (fresh idempotency key); the reply streams as this session's
    /// `chat` / `agent` events.
    ///
    /// ```no_run
    /// # async fn run(client: clawgate_client::Client) -> Result<(), clawgate_client::ClientError> {
    /// let ack = client.session("compose:doc:abc:ann").chat_send("Hello").await?;
    /// println!("run {} {:?}", ack.run_id, ack.status);
    /// # Ok(()) }
    /// ```
    pub async fn chat_send(&self, message: impl Into<String>) -> Result<ChatSendResult, ClientError> {
        self.chat_send_with(ChatSendParams {
            message: Some(message.into()),
            idempotency_key: Some(uuid::Uuid::new_v4().to_string()),
            ..ChatSendParams::default()
        })
        .await
    }

    /// `chat.send` with every param under the caller's control (the session key, and the
    /// agent when unset, come from the handle).
    pub async fn chat_send_with(&self, mut params: ChatSendParams) -> Result<ChatSendResult, ClientError> {
        params.session_key = Some(self.key.clone());
        if params.agent_id.is_none() {
            params.agent_id = self.agent_id.clone();
        }
        self.call(methods::names::CHAT_SEND, &params).await
    }

    /// `chat.history`: the newest `limit` messages (gateway default when `None`), oldest first.
    ///
    /// ```no_run
    /// # async fn run(client: clawgate_client::Client) -> Result<(), clawgate_client::ClientError> {
    /// let history = client.session("compose:doc:abc:ann").chat_history(Some(100)).await?;
    /// for message in &history.messages {
    ///     println!("{}: {}", message["role"], message["content"]);
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn chat_history(&self, limit: Option<usize>) -> Result<ChatHistoryResult, ClientError> {
        let params = ChatHistoryParams {
            session_key: self.key.clone(),
            agent_id: self.agent_id.clone(),
            limit,
            pending_before: None,
        };
        self.call(methods::names::CHAT_HISTORY, &params).await
    }

    /// `chat.inject`: append an assistant message without running the model (needs
    /// `operator.admin`).
    ///
    /// ```no_run
    /// # async fn run(client: clawgate_client::Client) -> Result<(), clawgate_client::ClientError> {
    /// let injected = client.session("compose:doc:abc:shared").chat_inject("Ann joined the document.", Some("system")).await?;
    /// println!("message {}", injected.message_id);
    /// # Ok(()) }
    /// ```
    pub async fn chat_inject(
        &self,
        message: impl Into<String>,
        label: Option<&str>,
    ) -> Result<ChatInjectResult, ClientError> {
        let params = ChatInjectParams {
            session_key: self.key.clone(),
            agent_id: self.agent_id.clone(),
            message: message.into(),
            label: label.map(str::to_owned),
        };
        self.call(methods::names::CHAT_INJECT, &params).await
    }

    /// `chat.abort`: cancel `run_id`, or every run of the session when `None`.
    ///
    /// ```no_run
    /// # async fn run(client: clawgate_client::Client) -> Result<(), clawgate_client::ClientError> {
    /// let aborted = client.session("compose:doc:abc:ann").chat_abort(None).await?;
    /// println!("aborted {:?}", aborted.run_ids);
    /// # Ok(()) }
    /// ```
    pub async fn chat_abort(&self, run_id: Option<&str>) -> Result<ChatAbortResult, ClientError> {
        let params = ChatAbortParams {
            session_key: self.key.clone(),
            agent_id: self.agent_id.clone(),
            run_id: run_id.map(str::to_owned),
            preserve_side_runs: None,
        };
        self.call(methods::names::CHAT_ABORT, &params).await
    }

    /// `sessions.messages.subscribe` for this session (`session.message` events), replayed
    /// after every reconnect.
    pub async fn subscribe_messages(&self) -> Result<(), ClientError> {
        self.client
            .subscribe(methods::names::SESSIONS_MESSAGES_SUBSCRIBE, serde_json::json!({"key": self.key}))
            .await
            .map(drop)
    }

    /// `sessions.messages.unsubscribe`, and no more replays.
    pub async fn unsubscribe_messages(&self) -> Result<(), ClientError> {
        self.client
            .unsubscribe(
                methods::names::SESSIONS_MESSAGES_UNSUBSCRIBE,
                methods::names::SESSIONS_MESSAGES_SUBSCRIBE,
                serde_json::json!({"key": self.key}),
            )
            .await
            .map(drop)
    }

    async fn call<P: Serialize, R: DeserializeOwned>(&self, method: &str, params: &P) -> Result<R, ClientError> {
        decode(method, self.client.request(method, encode(params)?).await?)
    }
}

/// The gateway's default agent, from `hello-ok.snapshot.sessionDefaults.defaultAgentId`.
fn default_agent(client: &Client) -> String {
    client
        .hello()
        .snapshot
        .session_defaults
        .as_ref()
        .and_then(|d| d.get("defaultAgentId"))
        .and_then(Value::as_str)
        .filter(|id| !id.is_empty())
        .unwrap_or(DEFAULT_AGENT)
        .to_owned()
}

/// Params as JSON, without the `null`s of unset optional fields (OpenClaw's schemas are closed
/// and typed: an absent field is fine, a `null` one is not).
pub(crate) fn encode<P: Serialize>(params: &P) -> Result<Value, ClientError> {
    let mut value =
        serde_json::to_value(params).map_err(|e| ClientError::Protocol(format!("cannot encode params: {e}")))?;
    if let Some(map) = value.as_object_mut() {
        map.retain(|_, v| !v.is_null());
    }
    Ok(value)
}

fn decode<R: DeserializeOwned>(method: &str, payload: Value) -> Result<R, ClientError> {
    serde_json::from_value(payload).map_err(|e| ClientError::Protocol(format!("unexpected {method} result: {e}")))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn frame(event: &str, payload: Value) -> EventFrame {
        EventFrame {
            kind: "event".to_owned(),
            event: event.to_owned(),
            payload: Some(payload),
            seq: Some(3),
            state_version: None,
        }
    }

    #[test]
    fn chat_and_agent_frames_become_typed_events() {
        let delta = SessionEvent::from_frame(&frame(
            "chat",
            json!({"runId": "r", "sessionKey": "agent:main:k", "state": "delta", "deltaText": "hi", "seq": 2}),
        ));
        let SessionEvent::Chat(c) = &delta else { panic!("{delta:?}") };
        assert_eq!((c.state.clone(), c.delta_text(), c.seq, c.is_terminal()), (ChatState::Delta, Some("hi"), 2, false));
        assert_eq!(delta.run_id(), Some("r"));

        let fin = SessionEvent::from_frame(&frame("chat", json!({"runId": "r", "state": "final"})));
        assert!(matches!(&fin, SessionEvent::Chat(c) if c.is_terminal()));

        let text = SessionEvent::from_frame(&frame(
            "agent",
            json!({"runId": "r", "seq": 4, "stream": "assistant", "data": {"text": "hi there", "delta": " there"}}),
        ));
        let SessionEvent::Agent(a) = &text else { panic!("{text:?}") };
        assert_eq!((a.delta(), a.is_terminal()), (Some(" there"), false));
        let end = SessionEvent::from_frame(&frame(
            "agent",
            json!({"runId": "r", "stream": "lifecycle", "data": {"phase": "end"}}),
        ));
        assert!(matches!(&end, SessionEvent::Agent(a) if a.is_terminal() && a.delta().is_none()));

        let other = SessionEvent::from_frame(&frame("session.message", json!({"sessionKey": "agent:main:k"})));
        assert!(matches!(other, SessionEvent::Other(f) if f.event == "session.message"));
    }

    #[test]
    fn encoded_params_omit_unset_fields_and_use_wire_names() {
        let mut req = AgentRequest::new("hello").idempotency_key("k1").timeout_secs(5);
        req.params_mut().session_key = Some("compose:doc:a:u".into());
        assert_eq!(
            encode(req.params()).unwrap(),
            json!({"message": "hello", "idempotencyKey": "k1", "sessionKey": "compose:doc:a:u", "timeout": 5})
        );
        let send = ChatSendParams { session_key: Some("s".into()), message: Some("m".into()), ..Default::default() };
        assert_eq!(encode(&send).unwrap(), json!({"sessionKey": "s", "message": "m"}));
        let abort = ChatAbortParams {
            session_key: "s".into(),
            agent_id: None,
            run_id: Some("r".into()),
            preserve_side_runs: None,
        };
        assert_eq!(encode(&abort).unwrap(), json!({"sessionKey": "s", "runId": "r"}));
    }

    #[test]
    fn typed_results_decode_what_the_gateway_sends() {
        let accepted: AgentAccepted = decode(
            "agent",
            json!({"runId": "r", "sessionKey": "agent:main:k", "agentId": "main", "status": "accepted", "acceptedAt": 5}),
        )
        .unwrap();
        assert_eq!(accepted.session_key, "agent:main:k");
        let result: AgentResult = decode(
            "agent",
            json!({"runId": "r", "status": "ok", "summary": "completed", "result": {
                "payloads": [{"text": "hi", "mediaUrl": null}],
                "meta": {"durationMs": 3, "agentMeta": {"sessionId": "s", "provider": "p", "model": "m", "usage": null}}}}),
        )
        .unwrap();
        assert!(matches!(result, AgentResult::Ok { result, .. } if result.payloads[0].text == "hi"));
        let send: ChatSendResult = decode("chat.send", json!({"runId": "r", "status": "in_flight"})).unwrap();
        assert_eq!(send.run_id, "r");
        let err = decode::<ChatAbortResult>("chat.abort", json!({"nope": 1})).unwrap_err();
        assert!(matches!(err, ClientError::Protocol(m) if m.contains("chat.abort")));
    }
}
