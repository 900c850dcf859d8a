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
# Exits non-zero with a clear message when npm cannot reach the registry (see scripts/lib/npm-peer.sh).
set -euo pipefail
# shellcheck source=lib/npm-peer.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/npm-peer.sh"
npm_peer_install install-whatsapp-api-js "whatsapp-api-js" "6.3.0" "whatsapp-api-js" "commonjs" "$@"
