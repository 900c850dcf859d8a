// clawgate web chat: a small client of the gateway's own WebSocket protocol (client id
// `webchat-ui`, mode `webchat`). No framework, no build step, nothing from other origins.
//
// Identity: the gateway grants no scopes to a browser that shows only the shared token, so the
// page keeps an Ed25519 key pair (WebCrypto, private key non-extractable, kept in IndexedDB) and
// signs the connect challenge the way the upstream Control UI does: the v2 payload
// `v2|deviceId|clientId|mode|role|scopes|signedAt|token|nonce` with `signedAt` = the challenge's
// `ts`. On loopback with a valid token the gateway pairs the key silently; elsewhere an operator
// approves it once (`clawgate devices approve <requestId>`).
//
// Model output is only ever put into the page as text (textContent), never as markup. The one
// thing shown besides text: image (and file) blocks whose url is this gateway's own signed
// `/media/<token>` path (ComfyUI results), as <img> (or a download link); no other URL is used.
(() => {
  'use strict';

  const CLIENT = { id: 'webchat-ui', mode: 'webchat', version: '1.0.0', displayName: 'clawgate web chat' };
  const ROLE = 'operator';
  const SCOPES = ['operator.read', 'operator.write'];
  const PROTOCOL = 4;
  const STORE = {
    token: 'clawgate.webchat.token',
    deviceToken: 'clawgate.webchat.deviceToken',
    session: 'clawgate.webchat.session',
  };
  const CHALLENGE_TIMEOUT_MS = 10000;
  const REQUEST_TIMEOUT_MS = 30000;
  const PAIRING_POLL_MS = 5000;
  const BACKOFF_MAX_MS = 30000;

  const $ = (id) => document.getElementById(id);
  const ui = {
    conn: $('conn'),
    banner: $('banner'),
    bannerText: $('banner-text'),
    retry: $('retry'),
    tokenForm: $('token-form'),
    tokenLabel: $('token-label'),
    tokenInput: $('token-input'),
    sessions: $('sessions'),
    title: $('session-title'),
    version: $('server-version'),
    messages: $('messages'),
    empty: $('empty'),
    composer: $('composer'),
    input: $('input'),
    send: $('send'),
    stop: $('stop'),
    newChat: $('new-chat'),
    forget: $('forget'),
  };

  // ---------------------------------------------------------------- storage

  function load(key) {
    try { return localStorage.getItem(key); } catch { return null; }
  }
  function save(key, value) {
    try {
      if (value == null || value === '') localStorage.removeItem(key);
      else localStorage.setItem(key, value);
    } catch { /* storage disabled: the value lives for this page only */ }
  }

  /** `#token=…` (as the upstream Control UI takes it): keep it, then drop it from the URL. */
  function takeTokenFromFragment() {
    const hash = location.hash.replace(/^#/, '');
    if (!hash) return;
    const params = new URLSearchParams(hash);
    const token = params.get('token');
    if (token === null) return;
    params.delete('token');
    const rest = params.toString();
    history.replaceState(history.state, '', location.pathname + location.search + (rest ? '#' + rest : ''));
    if (token.trim()) {
      save(STORE.token, token.trim());
      // A new token is a fresh start: a device token from another gateway would only confuse it.
      save(STORE.deviceToken, null);
    }
  }

  // ---------------------------------------------------------------- encoding helpers

  function hex(bytes) {
    return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
  }
  function base64url(bytes) {
    let bin = '';
    for (const b of bytes) bin += String.fromCharCode(b);
    return btoa(bin).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
  }
  function randomId() {
    if (crypto.randomUUID) return crypto.randomUUID();
    const b = crypto.getRandomValues(new Uint8Array(16));
    return hex(b);
  }

  // ---------------------------------------------------------------- device identity

  const DB_NAME = 'clawgate-webchat';
  const DB_STORE = 'identity';
  const DB_KEY = 'device';

  function openDb() {
    return new Promise((resolve, reject) => {
      const req = indexedDB.open(DB_NAME, 1);
      req.onupgradeneeded = () => req.result.createObjectStore(DB_STORE);
      req.onsuccess = () => resolve(req.result);
      req.onerror = () => reject(req.error);
    });
  }
  async function dbCall(mode, op) {
    const db = await openDb();
    try {
      return await new Promise((resolve, reject) => {
        const tx = db.transaction(DB_STORE, mode);
        const req = op(tx.objectStore(DB_STORE));
        tx.oncomplete = () => resolve(req.result);
        tx.onerror = () => reject(tx.error);
        tx.onabort = () => reject(tx.error);
      });
    } finally {
      db.close();
    }
  }

  /**
   * The browser's device key: loaded from IndexedDB, or made and stored on first use. Returns
   * null where WebCrypto has no Ed25519 or the page is not a secure context (plain http on a
   * non-localhost address): the gateway then says what it needs.
   */
  async function loadIdentity() {
    if (!window.isSecureContext || !crypto.subtle) return null;
    let record = null;
    try { record = await dbCall('readonly', (s) => s.get(DB_KEY)); } catch { record = null; }
    if (!record || !record.privateKey || !record.publicKeyRaw) {
      let pair;
      try {
        pair = await crypto.subtle.generateKey({ name: 'Ed25519' }, false, ['sign', 'verify']);
      } catch {
        return null;
      }
      const raw = new Uint8Array(await crypto.subtle.exportKey('raw', pair.publicKey));
      record = { privateKey: pair.privateKey, publicKeyRaw: raw, createdAt: Date.now() };
      try {
        await dbCall('readwrite', (s) => s.put(record, DB_KEY));
      } catch { /* not persisted: this page keeps it, a reload makes a new one */ }
    }
    const raw = new Uint8Array(record.publicKeyRaw);
    const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', raw));
    return { id: hex(digest), publicKey: base64url(raw), privateKey: record.privateKey };
  }

  async function signChallenge(identity, challenge, signedToken) {
    const signedAt = challenge.ts;
    const payload = [
      'v2', identity.id, CLIENT.id, CLIENT.mode, ROLE, SCOPES.join(','), String(signedAt), signedToken, challenge.nonce,
    ].join('|');
    const signature = await crypto.subtle.sign({ name: 'Ed25519' }, identity.privateKey, new TextEncoder().encode(payload));
    return {
      id: identity.id,
      publicKey: identity.publicKey,
      signature: base64url(new Uint8Array(signature)),
      signedAt,
      nonce: challenge.nonce,
    };
  }

  // ---------------------------------------------------------------- connection

  const conn = {
    ws: null,
    connected: false,
    hello: null,
    nextId: 1,
    pending: new Map(),
    attempt: 0,
    reconnectTimer: null,
    countdownTimer: null,
    // Set by a refused connect: what to tell the user and whether (and when) to try again.
    refusal: null,
    lastFrameAt: 0,
    tickMs: 30000,
  };
  let identity = null;
  let identityLoaded = false;

  function wsUrl() {
    // Same origin and the same directory as the page: right behind a proxy and a path prefix.
    const url = new URL('./', location.href);
    url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
    url.search = '';
    url.hash = '';
    return url.href;
  }

  function setConn(state, text) {
    document.body.dataset.conn = state;
    ui.conn.textContent = text;
    updateComposer();
  }

  function showBanner(text, { bad = false, retry = false } = {}) {
    ui.bannerText.textContent = text;
    ui.banner.classList.toggle('bad', bad);
    ui.retry.hidden = !retry;
    ui.banner.hidden = false;
  }
  function hideBanner() {
    ui.banner.hidden = true;
  }

  function showTokenForm(kind, lead) {
    if (kind === 'password') {
      ui.tokenLabel.textContent = (lead ? lead + ' ' : '') +
        'Enter the gateway password (gateway.auth.password in the gateway\u2019s config).';
      ui.tokenInput.autocomplete = 'current-password';
    } else if (lead) {
      ui.tokenLabel.textContent = lead + ' Paste the gateway token (printed by \u201cclawgate gateway\u201d on first ' +
        'start, also in ~/.clawgate/gateway-token).';
      ui.tokenInput.autocomplete = 'off';
    }
    ui.tokenForm.hidden = false;
    ui.tokenInput.focus();
  }

  function clearTimers() {
    clearTimeout(conn.reconnectTimer);
    clearInterval(conn.countdownTimer);
    conn.reconnectTimer = null;
    conn.countdownTimer = null;
  }

  async function connect() {
    clearTimers();
    if (conn.ws) return;
    if (!identityLoaded) {
      identity = await loadIdentity();
      identityLoaded = true;
    }
    conn.refusal = null;
    if (!conn.hello) setConn('connecting', 'Connecting\u2026');
    else setConn('connecting', 'Reconnecting\u2026');
    let sock;
    try {
      sock = new WebSocket(wsUrl());
    } catch (e) {
      onClosed(null);
      return;
    }
    conn.ws = sock;
    let challenged = false;
    const challengeTimer = setTimeout(() => {
      if (!challenged) sock.close(4000, 'connect challenge timeout');
    }, CHALLENGE_TIMEOUT_MS);
    sock.onmessage = (ev) => {
      if (conn.ws !== sock) return;
      conn.lastFrameAt = Date.now();
      let frame;
      try { frame = JSON.parse(ev.data); } catch { return; }
      if (frame.type === 'event' && frame.event === 'connect.challenge' && !challenged) {
        challenged = true;
        clearTimeout(challengeTimer);
        handshake(sock, frame.payload || {});
      } else if (frame.type === 'res') {
        const waiter = conn.pending.get(frame.id);
        if (!waiter) return;
        conn.pending.delete(frame.id);
        clearTimeout(waiter.timer);
        if (frame.ok) waiter.resolve(frame.payload);
        else waiter.reject(requestError(frame.error));
      } else if (frame.type === 'event' && conn.connected) {
        onEvent(frame.event, frame.payload || {});
      }
    };
    sock.onclose = (ev) => {
      clearTimeout(challengeTimer);
      if (conn.ws !== sock) return;
      onClosed(ev);
    };
  }

  function requestError(error) {
    const e = new Error((error && error.message) || 'request failed');
    e.shape = error || {};
    return e;
  }

  function request(method, params, sock = conn.ws) {
    return new Promise((resolve, reject) => {
      if (!sock || sock.readyState !== WebSocket.OPEN) {
        reject(new Error('not connected'));
        return;
      }
      const id = 'w' + conn.nextId++;
      const timer = setTimeout(() => {
        conn.pending.delete(id);
        reject(new Error(method + ' timed out'));
      }, REQUEST_TIMEOUT_MS);
      conn.pending.set(id, { resolve, reject, timer });
      sock.send(JSON.stringify({ type: 'req', id, method, params }));
    });
  }

  async function handshake(sock, challenge) {
    const secret = load(STORE.token);
    const deviceToken = load(STORE.deviceToken);
    // As the upstream Control UI: the one secret goes as both token and password, so the page
    // works whichever of the two the gateway is configured for.
    const auth = secret ? { token: secret, password: secret } : deviceToken ? { deviceToken } : null;
    const signedToken = auth ? (auth.token ?? auth.deviceToken ?? '') : '';
    const params = {
      minProtocol: PROTOCOL,
      maxProtocol: PROTOCOL,
      client: {
        id: CLIENT.id,
        displayName: CLIENT.displayName,
        version: CLIENT.version,
        platform: navigator.platform || 'web',
        mode: CLIENT.mode,
      },
      role: ROLE,
      scopes: SCOPES,
      locale: navigator.language || 'en',
      userAgent: navigator.userAgent,
    };
    if (auth) params.auth = auth;
    try {
      if (identity && typeof challenge.nonce === 'string' && Number.isInteger(challenge.ts)) {
        params.device = await signChallenge(identity, challenge, signedToken);
      }
    } catch {
      identity = null; // a broken stored key: go on without, the gateway will say what it needs
    }
    if (conn.ws !== sock) return;
    try {
      const hello = await request('connect', params, sock);
      if (conn.ws === sock) onHello(hello);
    } catch (e) {
      if (conn.ws === sock) onRefused(e.shape || { message: e.message });
    }
  }

  function onHello(hello) {
    conn.connected = true;
    conn.hello = hello;
    conn.attempt = 0;
    conn.refusal = null;
    conn.lastFrameAt = Date.now();
    conn.tickMs = (hello.policy && hello.policy.tickIntervalMs) || 30000;
    const auth = hello.auth || {};
    if (auth.deviceToken) save(STORE.deviceToken, auth.deviceToken);
    ui.tokenForm.hidden = true;
    hideBanner();
    ui.version.textContent = hello.server && hello.server.version ? 'v' + hello.server.version : '';
    setConn('connected', 'Connected');
    const scopes = auth.scopes || [];
    if (!scopes.includes('operator.write') && !scopes.includes('operator.admin')) {
      showBanner('Connected, but this browser may not chat (granted scopes: ' + (scopes.join(', ') || 'none') +
        '). Approve it for operator.read and operator.write.', { bad: true });
    }
    const defaults = (hello.snapshot && hello.snapshot.sessionDefaults) || {};
    state.mainKey = defaults.mainSessionKey || state.mainKey;
    state.agentId = defaults.defaultAgentId || state.agentId;
    if (!state.current) selectSession(load(STORE.session) || state.mainKey, { fetch: false });
    request('sessions.subscribe', {}).catch(() => {});
    refreshSessions();
    loadHistory(state.current);
  }

  /** A refused connect: decide what the user sees and whether to try again. */
  function onRefused(error) {
    const details = error.details || {};
    const code = details.code || '';
    const message = error.message || 'connection refused';
    const secret = load(STORE.token);
    switch (code) {
      case 'PAIRING_REQUIRED': {
        const id = details.requestId || '<requestId>';
        conn.refusal = {
          state: 'blocked', label: 'Pairing required',
          text: 'Pairing required \u2014 approve this browser with \u201cclawgate devices approve ' + id +
            '\u201d. This page connects by itself once it is approved.',
          retryMs: PAIRING_POLL_MS,
        };
        if (!secret) showTokenForm('token', 'Or sign in right away.');
        break;
      }
      case 'AUTH_TOKEN_MISMATCH':
        save(STORE.token, null);
        conn.refusal = { state: 'blocked', label: 'Wrong token', text: 'Wrong token \u2014 the gateway did not accept it.', retryMs: null };
        showTokenForm('token', 'Wrong token.');
        break;
      case 'AUTH_TOKEN_MISSING':
      case 'AUTH_REQUIRED':
        conn.refusal = { state: 'blocked', label: 'Signed out', text: 'This gateway needs its token.', retryMs: null };
        showTokenForm('token', 'This gateway needs its token.');
        break;
      case 'AUTH_PASSWORD_MISMATCH':
        save(STORE.token, null);
        conn.refusal = { state: 'blocked', label: 'Wrong password', text: 'Wrong password \u2014 the gateway did not accept it.', retryMs: null };
        showTokenForm('password', 'Wrong password.');
        break;
      case 'AUTH_PASSWORD_MISSING':
        conn.refusal = { state: 'blocked', label: 'Signed out', text: 'This gateway uses a password.', retryMs: null };
        showTokenForm('password', 'This gateway uses a password.');
        break;
      case 'AUTH_DEVICE_TOKEN_MISMATCH':
      case 'AUTH_SCOPE_MISMATCH':
        // The stored device token is stale: drop it and sign in with the shared secret, if any.
        save(STORE.deviceToken, null);
        conn.refusal = secret
          ? { state: 'connecting', label: 'Reconnecting\u2026', text: 'Renewing this browser\u2019s access\u2026', retryMs: 0 }
          : { state: 'blocked', label: 'Signed out', text: 'This browser\u2019s access expired.', retryMs: null };
        if (!secret) showTokenForm('token', 'This browser\u2019s access expired.');
        break;
      case 'AUTH_RATE_LIMITED':
        conn.refusal = {
          state: 'blocked', label: 'Locked out', text: 'Too many failed sign-ins from this address.',
          retryMs: Math.max(1000, error.retryAfterMs || 60000), countdown: true,
        };
        break;
      case 'AUTH_TOKEN_NOT_CONFIGURED':
      case 'AUTH_PASSWORD_NOT_CONFIGURED':
        conn.refusal = { state: 'blocked', label: 'Not configured', text: message, retryMs: null };
        break;
      case 'CONTROL_UI_DEVICE_IDENTITY_REQUIRED':
        conn.refusal = {
          state: 'blocked', label: 'Not supported here',
          text: 'This browser cannot keep a device key on this page: open it over HTTPS or from http://localhost ' +
            '(and use a browser with Ed25519 in WebCrypto).',
          retryMs: null,
        };
        break;
      case 'CONTROL_UI_ORIGIN_NOT_ALLOWED':
        conn.refusal = {
          state: 'blocked', label: 'Origin not allowed',
          text: 'The gateway refuses this page\u2019s origin (' + location.origin +
            '): add it to gateway.controlUi.allowedOrigins.',
          retryMs: null,
        };
        break;
      case 'PROTOCOL_MISMATCH':
        conn.refusal = { state: 'blocked', label: 'Out of date', text: 'This page and the gateway speak different protocol versions: reload the page.', retryMs: null };
        break;
      default:
        conn.refusal = { state: 'disconnected', label: 'Refused', text: 'The gateway refused the connection: ' + message, backoff: true };
    }
  }

  function onClosed(ev) {
    conn.ws = null;
    conn.connected = false;
    for (const [, waiter] of conn.pending) {
      clearTimeout(waiter.timer);
      waiter.reject(new Error('disconnected'));
    }
    conn.pending.clear();
    markRunsInterrupted();
    const refusal = conn.refusal;
    if (refusal && !refusal.backoff) {
      setConn(refusal.state, refusal.label);
      if (refusal.retryMs == null) {
        showBanner(refusal.text, { bad: true, retry: true });
        return;
      }
      if (refusal.countdown) scheduleReconnect(refusal.retryMs, refusal.text + ' Retrying');
      else {
        if (refusal.state === 'blocked') showBanner(refusal.text, { bad: true, retry: true });
        conn.reconnectTimer = setTimeout(connect, refusal.retryMs);
      }
      return;
    }
    const base = Math.min(BACKOFF_MAX_MS, 1000 * 2 ** conn.attempt);
    conn.attempt += 1;
    const delay = Math.round(base * (0.8 + Math.random() * 0.4));
    let lead = refusal ? refusal.text + ' Retrying' : 'Disconnected \u2014 reconnecting';
    if (!refusal && ev && ev.code === 1012) lead = 'The gateway is restarting \u2014 reconnecting';
    setConn('disconnected', 'Disconnected');
    scheduleReconnect(delay, lead);
  }

  function scheduleReconnect(delayMs, lead) {
    clearTimers();
    const until = Date.now() + delayMs;
    const paint = () => {
      const seconds = Math.max(0, Math.ceil((until - Date.now()) / 1000));
      showBanner(lead + ' in ' + seconds + 's', { bad: true, retry: true });
    };
    paint();
    conn.countdownTimer = setInterval(paint, 1000);
    conn.reconnectTimer = setTimeout(connect, delayMs);
  }

  function reconnectNow() {
    if (conn.ws) return;
    conn.attempt = 0;
    connect();
  }

  /** New credentials: drop the current socket (if any) and connect again at once. */
  function useNewCredentials() {
    ui.tokenForm.hidden = true;
    hideBanner();
    if (conn.ws) {
      conn.refusal = { state: 'connecting', label: 'Connecting\u2026', text: '', retryMs: 0 };
      conn.ws.close(1000, 'new credentials');
    } else {
      reconnectNow();
    }
  }

  // Upstream clients give up on a silent socket after two tick intervals; so does this page.
  setInterval(() => {
    if (conn.connected && conn.ws && Date.now() - conn.lastFrameAt > 2 * conn.tickMs) {
      conn.ws.close(4000, 'tick timeout');
    }
  }, 5000);
  window.addEventListener('online', reconnectNow);
  document.addEventListener('visibilitychange', () => {
    if (document.visibilityState === 'visible' && !conn.ws && conn.reconnectTimer && !conn.refusal) reconnectNow();
  });

  // ---------------------------------------------------------------- chat state

  const state = {
    mainKey: 'agent:main:main',
    agentId: 'main',
    current: null,
    sessions: [],
    // runId → {el, sessionKey}: replies being streamed into the open session.
    runs: new Map(),
    // runIds this page started (their user message is already shown).
    ownRuns: new Set(),
    refreshTimer: null,
    // The history request in flight, if any (a newer one supersedes it).
    historyTicket: 0,
    loading: false,
  };

  function sessionTitle(key, info) {
    if (info && info.label) return info.label;
    if (key === state.mainKey) return 'Main session';
    const parts = key.split(':');
    if (parts[2] === 'webchat' && parts[3]) return 'Chat ' + parts[3].slice(0, 8);
    return parts.slice(2).join(':') || key;
  }

  function relativeTime(ms) {
    if (!ms) return '';
    const s = Math.round((Date.now() - ms) / 1000);
    if (s < 60) return 'just now';
    if (s < 3600) return Math.floor(s / 60) + ' min ago';
    if (s < 86400) return Math.floor(s / 3600) + ' h ago';
    return new Date(ms).toLocaleDateString();
  }

  function renderSessions() {
    const rows = state.sessions.slice();
    const keys = new Set(rows.map((s) => s.key));
    // The open session and the main session are listed even before their first message.
    for (const key of [state.current, state.mainKey]) {
      if (key && !keys.has(key)) {
        rows.unshift({ key, messageCount: 0 });
        keys.add(key);
      }
    }
    ui.sessions.replaceChildren(...rows.map((s) => {
      const li = document.createElement('li');
      const button = document.createElement('button');
      button.type = 'button';
      button.dataset.key = s.key;
      if (s.key === state.current) button.setAttribute('aria-current', 'true');
      const title = document.createElement('span');
      title.className = 'title';
      title.textContent = sessionTitle(s.key, s);
      const meta = document.createElement('span');
      meta.className = 'meta';
      const count = s.messageCount || 0;
      meta.textContent = [count + (count === 1 ? ' message' : ' messages'), relativeTime(s.updatedAt)].filter(Boolean).join(' \u00b7 ');
      button.append(title, meta);
      button.addEventListener('click', () => selectSession(s.key));
      li.append(button);
      return li;
    }));
  }

  async function refreshSessions() {
    try {
      const res = await request('sessions.list', { limit: 100 });
      state.sessions = Array.isArray(res.sessions) ? res.sessions : [];
    } catch { /* keep the last list */ }
    renderSessions();
  }
  function refreshSessionsSoon() {
    clearTimeout(state.refreshTimer);
    state.refreshTimer = setTimeout(refreshSessions, 300);
  }

  function selectSession(key, { fetch = true } = {}) {
    state.current = key;
    save(STORE.session, key);
    const info = state.sessions.find((s) => s.key === key);
    ui.title.textContent = sessionTitle(key, info);
    document.title = sessionTitle(key, info) + ' \u2014 clawgate chat';
    state.runs.clear();
    clearMessages();
    renderSessions();
    updateComposer();
    if (fetch && conn.connected) loadHistory(key);
  }

  function newChat() {
    const rand = randomId().replace(/-/g, '').slice(0, 12);
    selectSession('agent:' + state.agentId + ':webchat:' + rand);
    ui.input.focus();
  }

  // ---------------------------------------------------------------- messages

  function textOf(message) {
    if (!message) return '';
    const c = message.content;
    if (typeof c === 'string') return c;
    if (Array.isArray(c)) {
      return c.filter((p) => p && p.type === 'text' && typeof p.text === 'string').map((p) => p.text).join('');
    }
    if (typeof message.text === 'string') return message.text;
    return '';
  }

  // `/media/<token>`, the token being base64url "." base64url: nothing else is ever loaded.
  const MEDIA_PATH = /^\/media\/([A-Za-z0-9_-]{1,8192}\.[A-Za-z0-9_-]{1,512})$/;

  /**
   * The gateway media a message shows: `{kind: 'image'|'file', href, name}` for each image or
   * file block whose url is a `/media/<token>` path. The path is resolved against the page's own
   * directory, as the WebSocket URL is, so it works behind a proxy that adds a path prefix.
   */
  function mediaOf(message) {
    const c = message && message.content;
    if (!Array.isArray(c)) return [];
    const base = new URL('./', location.href);
    const out = [];
    for (const p of c) {
      if (!p || (p.type !== 'image' && p.type !== 'file') || typeof p.url !== 'string') continue;
      const m = MEDIA_PATH.exec(p.url);
      if (!m) continue;
      const href = new URL('media/' + m[1], base).href;
      out.push({ kind: p.type, href, name: typeof p.filename === 'string' ? p.filename : '' });
    }
    return out;
  }

  function mediaElement(el, item) {
    const link = document.createElement('a');
    link.href = item.href;
    link.target = '_blank';
    link.rel = 'noopener noreferrer';
    if (item.kind !== 'image') {
      link.className = 'file';
      link.download = item.name || '';
      link.textContent = item.name || 'download';
      return link;
    }
    const img = document.createElement('img');
    img.alt = item.name || 'image';
    img.loading = 'lazy';
    img.decoding = 'async';
    // A result announced the moment its job finished may still be a moment from being served.
    let tries = 0;
    img.addEventListener('error', () => {
      if (++tries <= 2) setTimeout(() => { img.src = item.href; }, 1000 * tries);
    });
    img.addEventListener('load', () => {
      if (el === ui.messages.lastElementChild) scrollDown(true);
    });
    img.src = item.href;
    link.append(img);
    return link;
  }

  function setMedia(el, media) {
    let box = el.querySelector('.media');
    if (!media || media.length === 0) {
      if (box) box.remove();
      return;
    }
    if (!box) {
      box = document.createElement('div');
      box.className = 'media';
      el.querySelector('.body').after(box);
    }
    box.replaceChildren(...media.map((item) => mediaElement(el, item)));
  }

  function clearMessages() {
    ui.messages.replaceChildren(ui.empty);
    ui.empty.hidden = false;
  }

  function nearBottom() {
    const m = ui.messages;
    return m.scrollHeight - m.scrollTop - m.clientHeight < 80;
  }
  function scrollDown(force) {
    if (force || nearBottom()) ui.messages.scrollTop = ui.messages.scrollHeight;
  }

  function addMessage(role, text, { state: msgState = 'final', runId = null, note = '', media = [] } = {}) {
    const stick = nearBottom();
    ui.empty.hidden = true;
    const el = document.createElement('article');
    el.className = 'msg ' + role;
    el.dataset.state = msgState;
    if (runId) el.dataset.runId = runId;
    const who = document.createElement('span');
    who.className = 'who';
    who.textContent = role === 'user' ? 'You' : 'Assistant';
    const body = document.createElement('span');
    body.className = 'body';
    body.textContent = text;
    el.append(who, body);
    setMedia(el, media);
    setNote(el, note);
    if (msgState === 'streaming' || msgState === 'pending') el.setAttribute('aria-busy', 'true');
    ui.messages.append(el);
    scrollDown(stick);
    return el;
  }

  function setNote(el, note) {
    let n = el.querySelector('.note');
    if (!note) {
      if (n) n.remove();
      return;
    }
    if (!n) {
      n = document.createElement('span');
      n.className = 'note';
      el.append(n);
    }
    n.textContent = note;
  }

  function updateReply(el, text, msgState, note, media) {
    const stick = nearBottom();
    el.querySelector('.body').textContent = text;
    if (media !== undefined) setMedia(el, media);
    el.dataset.state = msgState;
    if (msgState === 'streaming' || msgState === 'pending') el.setAttribute('aria-busy', 'true');
    else el.removeAttribute('aria-busy');
    if (note !== undefined) setNote(el, note);
    scrollDown(stick);
  }

  async function loadHistory(key) {
    if (!key || !conn.connected) return;
    // Sending waits for the history: a reply must not land in a list about to be replaced.
    const ticket = ++state.historyTicket;
    state.loading = true;
    ui.messages.setAttribute('aria-busy', 'true');
    updateComposer();
    let res = null;
    try {
      res = await request('chat.history', { sessionKey: key, limit: 200 });
    } catch (e) {
      if (key === state.current) showBanner('Could not load the history: ' + e.message, { bad: true });
    }
    if (ticket !== state.historyTicket) return;
    state.loading = false;
    ui.messages.removeAttribute('aria-busy');
    updateComposer();
    if (!res || key !== state.current) return;
    // Replies still streaming keep their bubbles; everything else comes from the transcript.
    const live = new Map([...state.runs].filter(([, r]) => r.el.dataset.state === 'streaming' || r.el.dataset.state === 'pending'));
    clearMessages();
    for (const m of res.messages || []) {
      if (m.role !== 'user' && m.role !== 'assistant') continue;
      const text = textOf(m);
      const media = m.role === 'assistant' ? mediaOf(m) : [];
      const status = m.__openclaw && m.__openclaw.status;
      if (!text && !status && media.length === 0) continue;
      const note = status === 'aborted' ? 'Stopped' : status === 'error' ? 'Failed' : '';
      addMessage(m.role, text, { note, media });
    }
    state.runs = new Map();
    for (const [runId, r] of live) {
      ui.messages.append(r.el);
      ui.empty.hidden = true;
      state.runs.set(runId, r);
    }
    const inFlight = res.inFlightRun && res.inFlightRun.runId;
    if (inFlight && !state.runs.has(inFlight)) {
      state.runs.set(inFlight, { el: addMessage('assistant', '', { state: 'pending', runId: inFlight }), sessionKey: key });
    }
    scrollDown(true);
    updateComposer();
  }

  function onEvent(name, payload) {
    if (name === 'chat') onChat(payload);
    else if (name === 'sessions.changed') refreshSessionsSoon();
    else if (name === 'tick') { /* keeps the watchdog fed */ }
  }

  function onChat(p) {
    const runId = p.runId;
    if (!runId) return;
    if (p.sessionKey !== state.current) {
      if (p.state === 'final' || p.state === 'aborted' || p.state === 'error') refreshSessionsSoon();
      return;
    }
    let run = state.runs.get(runId);
    if (!run) {
      if (p.state === 'status') return;
      // A run another client started in this session: show it, its user message comes with the
      // history reload at its end.
      run = { el: addMessage('assistant', '', { state: 'pending', runId }), sessionKey: p.sessionKey };
      state.runs.set(runId, run);
    }
    switch (p.state) {
      case 'delta':
        // `message` carries the whole text so far: a dropped delta cannot garble the reply.
        updateReply(run.el, textOf(p.message) || run.el.querySelector('.body').textContent + (p.deltaText || ''), 'streaming');
        break;
      case 'final':
        updateReply(run.el, textOf(p.message), 'final', '', mediaOf(p.message));
        finishRun(runId);
        break;
      case 'aborted':
        updateReply(run.el, textOf(p.message), 'final', 'Stopped');
        finishRun(runId);
        break;
      case 'error':
        updateReply(run.el, run.el.querySelector('.body').textContent, 'error', 'Failed: ' + (p.errorMessage || 'unknown error'));
        finishRun(runId);
        break;
      default:
        break;
    }
  }

  function finishRun(runId) {
    state.runs.delete(runId);
    const own = state.ownRuns.delete(runId);
    refreshSessionsSoon();
    if (!own) loadHistory(state.current);
    updateComposer();
  }

  function markRunsInterrupted() {
    for (const [, run] of state.runs) {
      if (run.el.dataset.state === 'streaming' || run.el.dataset.state === 'pending') {
        updateReply(run.el, run.el.querySelector('.body').textContent, 'error', 'Connection lost \u2014 the reply continues on the gateway; it shows here after reconnecting.');
      }
    }
    state.runs.clear();
    state.ownRuns.clear();
    updateComposer();
  }

  function updateComposer() {
    const ready = conn.connected;
    const busy = state.runs.size > 0 || state.loading;
    ui.input.disabled = !ready;
    ui.send.disabled = !ready || busy;
    ui.stop.hidden = state.runs.size === 0;
    ui.stop.disabled = !ready;
  }

  async function send(text) {
    const key = state.current;
    const runId = randomId();
    addMessage('user', text);
    const el = addMessage('assistant', '', { state: 'pending', runId });
    state.runs.set(runId, { el, sessionKey: key });
    state.ownRuns.add(runId);
    updateComposer();
    scrollDown(true);
    try {
      await request('chat.send', { sessionKey: key, message: text, idempotencyKey: runId });
      refreshSessionsSoon();
    } catch (e) {
      if (state.runs.has(runId)) {
        updateReply(el, '', 'error', 'Not sent: ' + e.message);
        state.runs.delete(runId);
        state.ownRuns.delete(runId);
        if (!ui.input.value) ui.input.value = text;
        updateComposer();
      }
    }
  }

  async function stop() {
    const runIds = [...state.runs.keys()];
    for (const runId of runIds) {
      try { await request('chat.abort', { sessionKey: state.current, runId }); } catch { /* it ended anyway */ }
    }
  }

  // ---------------------------------------------------------------- wiring

  ui.composer.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const text = ui.input.value.trim();
    if (!text || ui.send.disabled) return;
    ui.input.value = '';
    send(text);
  });
  ui.input.addEventListener('keydown', (ev) => {
    if (ev.key === 'Enter' && !ev.shiftKey && !ev.isComposing) {
      ev.preventDefault();
      ui.composer.requestSubmit();
    }
  });
  ui.stop.addEventListener('click', stop);
  ui.newChat.addEventListener('click', newChat);
  ui.retry.addEventListener('click', reconnectNow);
  ui.tokenForm.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const token = ui.tokenInput.value.trim();
    if (!token) return;
    save(STORE.token, token);
    save(STORE.deviceToken, null);
    ui.tokenInput.value = '';
    useNewCredentials();
  });
  ui.forget.addEventListener('click', () => {
    save(STORE.token, null);
    save(STORE.deviceToken, null);
    conn.refusal = { state: 'blocked', label: 'Signed out', text: 'Signed out on this browser.', retryMs: null };
    showTokenForm('token', 'Signed out.');
    if (conn.ws) conn.ws.close(1000, 'signed out');
    else onClosed(null);
  });

  // A `#token=` link opened on a page that is already loaded changes only the fragment.
  window.addEventListener('hashchange', () => {
    const before = load(STORE.token);
    takeTokenFromFragment();
    if (load(STORE.token) === before) return;
    useNewCredentials();
  });

  takeTokenFromFragment();
  selectSession(load(STORE.session) || state.mainKey, { fetch: false });
  if (!load(STORE.token) && !load(STORE.deviceToken)) {
    // Nothing to sign in with yet: still try (auth may be off, or this browser already paired),
    // and offer the form meanwhile.
    ui.tokenForm.hidden = false;
  }
  connect();
})();
