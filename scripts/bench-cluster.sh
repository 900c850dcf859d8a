#!/usr/bin/env bash
# Several gateways on one PostgreSQL database (issue 16), measured beside one gateway on the
# embedded SQLite: `health` req/s, chat turns/s with 100 sessions, Telegram messages/s, and the
# failover time of the Telegram channel (kill -9 of the gateway holding its lease → the first
# reply from the survivor).
#
# Setups, each on fresh state:
#   sqlite  one gateway, embedded SQLite (the default)
#   pg1     one gateway, storage.url = a throwaway PostgreSQL (`clawgate-bench postgres`)
#   pg2     two gateways on that database, the load split over both
# Every external service is this tool's own: the zero-delay model (`clawgate-bench fake-model`)
# and the Bot API the `telegram` scenario serves. Figures go to bench/results/<date>.jsonl
# (label = setup) and a summary is printed.
#
# Usage:  scripts/bench-cluster.sh                 # all setups, then the failover run
# Environment:
#   CLAWGATE_BIN / BENCH_BIN   binaries (default target/release/clawgate, target/release/clawgate-bench)
#   BENCH_NO_BUILD=1           do not run cargo
#   HEALTH_REQUESTS            per connection, 16 connections (default 2000)
#   CHAT_TURNS                 turns per session, 100 sessions (default 10)
#   TG_MESSAGES                Telegram messages over 100 chats (default 1000)
#   FAILOVER_MESSAGES          messages in the failover run (default 3000)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
G="${CLAWGATE_BIN:-target/release/clawgate}"
B="${BENCH_BIN:-target/release/clawgate-bench}"
if [[ "${BENCH_NO_BUILD:-0}" != 1 ]]; then
  cargo build --release -p clawgate -p clawgate-bench
fi
TOKEN="bench-token-0123456789"
BOT_TOKEN="7000000001:AAFakeTelegramSecretForClawgateBench-x1"
MODEL_PORT=28904
TG_PORT=28905
HEALTH_REQUESTS="${HEALTH_REQUESTS:-2000}"
CHAT_TURNS="${CHAT_TURNS:-10}"
TG_MESSAGES="${TG_MESSAGES:-1000}"
FAILOVER_MESSAGES="${FAILOVER_MESSAGES:-3000}"
RUN_ID="cluster-$(date +%Y%m%dT%H%M%S)"
OUT="$ROOT/bench/results/$(date +%F).jsonl"
mkdir -p "$(dirname "$OUT")"
WORK="$(mktemp -d)"
PIDS=()
PG_PIDS=()

cleanup() {
  for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  for p in "${PG_PIDS[@]}"; do kill -INT "$p" 2>/dev/null && wait "$p" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

say() { printf '\n== %s\n' "$*" >&2; }

"$B" fake-model --port "$MODEL_PORT" --chunks 8 --delay-ms 0 >"$WORK/model.log" 2>&1 &
PIDS+=($!)
# start_pg NAME → a fresh throwaway PostgreSQL, its URL in $PG_URL. Each setup gets its own: a
# database keeps the Telegram offset of the previous setup's fake Bot API, whose update ids
# start again at 1.
start_pg() {
  "$B" postgres >"$WORK/$1.pg.url" 2>"$WORK/$1.pg.log" &
  PG_PIDS+=($!)
  for _ in $(seq 1 300); do [[ -s "$WORK/$1.pg.url" ]] && break; sleep 0.1; done
  [[ -s "$WORK/$1.pg.url" ]] || { cat "$WORK/$1.pg.log" >&2; echo "PostgreSQL did not start (scripts/install-postgres.sh installs it)" >&2; exit 1; }
  PG_URL="$(cat "$WORK/$1.pg.url")"
}

# start_gateway NAME PORT STORAGE_URL → the pid in $GW_PID once it listens.
start_gateway() {
  local name="$1" port="$2" storage="$3" dir="$WORK/$1"
  mkdir -p "$dir"
  cat >"$dir/clawgate.json" <<EOF
{
  "models": {"providers": {"fake": {"baseUrl": "http://127.0.0.1:$MODEL_PORT/v1", "apiKey": "k",
    "api": "openai-completions", "models": [{"id": "fake-model"}]}}},
  "agents": {"defaults": {"model": {"primary": "fake/fake-model"}}},
  "storage": {"url": "$storage"},
  "cluster": {"leaseTtlMs": 3000, "heartbeatMs": 500},
  "channels": {"telegram": {"botToken": "$BOT_TOKEN", "apiRoot": "http://127.0.0.1:$TG_PORT",
    "dmPolicy": "open", "pollTimeoutSeconds": 10,
    "rateLimit": {"perSenderPerMinute": 0, "perChatPerMinute": 0}}}
}
EOF
  "$G" gateway --port "$port" --state-dir "$dir" --config "$dir/clawgate.json" --token "$TOKEN" \
    >"$dir/stdout" 2>"$dir/stderr" &
  GW_PID=$!
  PIDS+=("$GW_PID")
  for _ in $(seq 1 300); do grep -q "listening on" "$dir/stdout" 2>/dev/null && return 0; sleep 0.1; done
  cat "$dir/stdout" "$dir/stderr" >&2
  echo "gateway $name did not start" >&2
  exit 1
}

stop_all_gateways() {
  for p in "${GATEWAYS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${GATEWAYS[@]}"; do wait "$p" 2>/dev/null || true; done
  GATEWAYS=()
}

# bench LABEL ARGS… → one JSON line appended to $OUT, the summary on stderr.
bench() {
  local label="$1"
  shift
  "$B" "$@" --json --label "$label" --run-id "$RUN_ID" | tee -a "$OUT"
}

GATEWAYS=()
for setup in sqlite pg1 pg2; do
  say "setup $setup"
  case "$setup" in
    sqlite) start_gateway "$setup-a" 28911 "sqlite:$WORK/$setup-a/state.db"; GATEWAYS=("$GW_PID") ;;
    pg1) start_pg "$setup"; start_gateway "$setup-a" 28911 "$PG_URL"; GATEWAYS=("$GW_PID") ;;
    pg2)
      start_pg "$setup"
      start_gateway "$setup-a" 28911 "$PG_URL"; GATEWAYS=("$GW_PID")
      start_gateway "$setup-b" 28912 "$PG_URL"; GATEWAYS+=("$GW_PID") ;;
  esac
  ports=(28911); [[ "$setup" == pg2 ]] && ports=(28911 28912)
  n=${#ports[@]}

  say "$setup: health, 16 connections per gateway"
  loads=()
  for i in "${!ports[@]}"; do
    bench "$setup-gw$i" rpc --url "ws://127.0.0.1:${ports[$i]}" --token "$TOKEN" --connections 16 \
      --requests "$HEALTH_REQUESTS" --depth 1 --method health --pid "${GATEWAYS[$i]}" &
    loads+=($!)
  done
  for j in "${loads[@]}"; do wait "$j"; done

  say "$setup: chat, 100 sessions x $CHAT_TURNS turns (split over the gateways)"
  loads=()
  for i in "${!ports[@]}"; do
    bench "$setup-gw$i" chat --url "ws://127.0.0.1:${ports[$i]}" --token "$TOKEN" --sessions $((100 / n)) \
      --turns "$CHAT_TURNS" --session-prefix "bench-$setup-$i" --pid "${GATEWAYS[$i]}" &
    loads+=($!)
  done
  for j in "${loads[@]}"; do wait "$j"; done

  say "$setup: Telegram, $TG_MESSAGES messages over 100 chats (one gateway holds the bot)"
  bench "$setup" telegram --api-root "http://127.0.0.1:$TG_PORT" --pid "${GATEWAYS[0]}" --chats 100 \
    --messages "$TG_MESSAGES"
  stop_all_gateways
done

say "failover: two gateways on PostgreSQL, kill -9 of the Telegram lease holder mid-run"
start_pg failover
start_gateway failover-a 28911 "$PG_URL"; A=$GW_PID
start_gateway failover-b 28912 "$PG_URL"; B_PID=$GW_PID
GATEWAYS=("$A" "$B_PID")
# a started first and holds the bot's lease; it dies a few seconds into the run. The
# scenario fails on any missing reply; doubled replies are counted (a sendMessage in flight when
# the holder dies is sent again by the survivor: docs/SCALING.md); its max latency is the
# failover time.
(sleep 5; kill -9 "$A"; date +%s%3N >"$WORK/killed_at") &
bench failover telegram --api-root "http://127.0.0.1:$TG_PORT" --pid "$B_PID" --chats 100 \
  --messages "$FAILOVER_MESSAGES" --concurrency 10 --reply-timeout-ms 60000 --allow-duplicates 10
stop_all_gateways
say "done: figures in $OUT (run id $RUN_ID)"
