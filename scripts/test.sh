#!/usr/bin/env bash
# Runs every clawgate test: unit, integration, end-to-end over real sockets, and conformance
# tests that drive the real `openclaw` CLI and `openclaw-node` against clawgate.
# Installs what it needs on first run (cached outside the repository):
#   - Node 24 + openclaw@2026.9.6 + openclaw-node@0.14.0 from the npm registry (scripts/install-openclaw.sh)
#   - the official `openai` Python package into a venv (scripts/install-python-peers.sh)
#   - telegram-test-api (a third-party Telegram Bot API emulator) from the npm registry
#   - @line/bot-sdk (LINE's official Node SDK, its signature check as an oracle) from the npm registry
#   - whatsapp-api-js (a maintained WhatsApp Cloud API SDK, an independent check of the fake Graph API)
#   - Debian chromium (apt-get) and playwright-core from npm, for the web chat browser test
#   - Debian nginx (apt-get), run unprivileged in front of clawgate by the reverse-proxy test
#   - cargo-nextest, if missing
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*" >&2; }

if ! command -v npm >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1 && [[ "$(id -u)" == 0 ]]; then
    step "installing nodejs and npm (needed to fetch the real OpenClaw clients)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null
  else
    echo "test.sh: npm is required for the conformance tests; install Node.js and npm, then rerun" >&2
    exit 2
  fi
fi

if ! command -v python3 >/dev/null 2>&1 || ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1 && [[ "$(id -u)" == 0 ]]; then
    step "installing python3 and venv (needed for the official openai Python client test)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3 python3-venv >/dev/null
  else
    echo "test.sh: python3 with venv is required for the HTTP API tests; install it, then rerun" >&2
    exit 2
  fi
fi

step "installing the official openai Python package (cached after the first run)"
if ! ./scripts/install-python-peers.sh >/dev/null; then
  echo "test.sh: could not install the openai Python package from PyPI; the HTTP API tests need it" >&2
  exit 3
fi

step "installing the real OpenClaw clients (cached after the first run)"
if ! ./scripts/install-openclaw.sh >/dev/null; then
  echo "test.sh: could not install the OpenClaw clients from the npm registry; the conformance tests need them" >&2
  exit 3
fi

step "installing telegram-test-api, the third-party Telegram Bot API emulator (cached after the first run)"
if ! ./scripts/install-telegram-test-api.sh >/dev/null; then
  echo "test.sh: could not install telegram-test-api from the npm registry; the Telegram peer test needs it" >&2
  exit 3
fi

step "installing @line/bot-sdk, LINE's official SDK (cached after the first run)"
if ! ./scripts/install-line-sdk.sh >/dev/null; then
  echo "test.sh: could not install @line/bot-sdk from the npm registry; the LINE signature oracle test needs it" >&2
  exit 3
fi

step "installing whatsapp-api-js, a WhatsApp Cloud API SDK (cached after the first run)"
if ! ./scripts/install-whatsapp-api-js.sh >/dev/null; then
  echo "test.sh: could not install whatsapp-api-js from the npm registry; the WhatsApp SDK check needs it" >&2
  exit 3
fi

step "installing Chromium and playwright-core for the web chat browser test (cached after the first run)"
if ! ./scripts/install-browser.sh >/dev/null; then
  echo "test.sh: could not install chromium (apt-get) or playwright-core (npm); the web chat browser test needs them" >&2
  exit 3
fi

step "installing nginx for the reverse-proxy test (once)"
if ! ./scripts/install-nginx.sh >/dev/null; then
  echo "test.sh: could not install nginx (apt-get); the reverse-proxy test needs it" >&2
  exit 3
fi

step "installing PostgreSQL for the PostgreSQL store tests (once)"
if ! ./scripts/install-postgres.sh >/dev/null; then
  echo "test.sh: could not install postgresql (apt-get); the PostgreSQL store tests need it" >&2
  exit 3
fi

# Everything the peer tests need is installed now: a missing peer is a failure, not a skip.
export CLAWGATE_REQUIRE_PEERS=1

if ! cargo nextest --version >/dev/null 2>&1; then
  step "installing cargo-nextest"
  cargo install cargo-nextest --locked
fi

step "building the workspace"
cargo build --workspace --all-targets

step "running the tests"
cargo nextest run --workspace --no-fail-fast "$@"
cargo test --workspace --doc --quiet
