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
# Exits non-zero with a clear message when npm cannot reach the registry (see scripts/lib/npm-peer.sh).
set -euo pipefail
# shellcheck source=lib/npm-peer.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/npm-peer.sh"
npm_peer_install install-line-sdk "@line/bot-sdk" "11.2.0" "line-bot-sdk" "module" "$@"
