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
# Exits non-zero with a clear message when npm cannot reach the registry (see scripts/lib/npm-peer.sh).
set -euo pipefail
# shellcheck source=lib/npm-peer.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/npm-peer.sh"
npm_peer_install install-telegram-test-api "telegram-test-api" "4.2.1" "telegram-test-api" "commonjs" "$@"
