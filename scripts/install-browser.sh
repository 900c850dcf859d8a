#!/usr/bin/env bash
# Installs what the web chat browser test (crates/clawgate/tests/webchat.rs) drives: Debian's
# `chromium` (apt-get, when /usr/bin/chromium is missing) and `playwright-core@1.64.1` from the npm
# registry. playwright-core is only the driver: it never downloads a browser of its own, the test
# points it at /usr/bin/chromium. The npm package goes to a cache directory outside the repository
# (next to the OpenClaw peers of scripts/install-openclaw.sh), so reruns are instant.
#
#   scripts/install-browser.sh          install if needed; print the playwright-core directory last
#   scripts/install-browser.sh --check  install nothing; print the directory and exit 0 when both
#                                       are there, exit 1 otherwise (what the Rust test calls)
#
# Exits non-zero with a clear message when apt-get or npm cannot install.
set -euo pipefail

PLAYWRIGHT_CORE_VERSION="1.64.1"
CHROMIUM="${CLAWGATE_CHROMIUM:-/usr/bin/chromium}"
CACHE_ROOT="${CLAWGATE_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/clawgate}"
DIR="$CACHE_ROOT/playwright-core-$PLAYWRIGHT_CORE_VERSION"
MARKER="$DIR/.installed-$PLAYWRIGHT_CORE_VERSION"

if [[ "${1:-}" == "--check" ]]; then
  if [[ -x "$CHROMIUM" && -f "$MARKER" ]]; then
    echo "$DIR"
    exit 0
  fi
  [[ -x "$CHROMIUM" ]] || echo "install-browser: $CHROMIUM is missing" >&2
  [[ -f "$MARKER" ]] || echo "install-browser: playwright-core@$PLAYWRIGHT_CORE_VERSION is not installed in $DIR" >&2
  echo "install-browser: run scripts/install-browser.sh" >&2
  exit 1
fi

if [[ ! -x "$CHROMIUM" ]]; then
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-browser: $CHROMIUM is missing and apt-get is not available; install Chromium and retry" >&2
    exit 2
  fi
  SUDO=()
  if [[ "$(id -u)" != 0 ]]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
      SUDO=(sudo -n)
    else
      echo "install-browser: $CHROMIUM is missing; run as root (or with passwordless sudo): apt-get install chromium" >&2
      exit 2
    fi
  fi
  echo "install-browser: installing Debian's chromium with apt-get (a minute or two)" >&2
  if ! "${SUDO[@]}" apt-get update -qq >&2 \
    || ! DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y -qq --no-install-recommends chromium >&2; then
    echo "install-browser: apt-get could not install chromium (are the Debian package mirrors reachable?)" >&2
    exit 3
  fi
  if [[ ! -x "$CHROMIUM" ]]; then
    echo "install-browser: apt-get installed chromium but $CHROMIUM is still missing" >&2
    exit 3
  fi
fi

if [[ ! -f "$MARKER" ]]; then
  if ! command -v npm >/dev/null 2>&1; then
    echo "install-browser: npm is not installed; install Node.js/npm (apt-get install nodejs npm) and retry" >&2
    exit 2
  fi
  mkdir -p "$DIR"
  if [[ ! -f "$DIR/package.json" ]]; then
    echo '{"name":"clawgate-browser-test","private":true}' > "$DIR/package.json"
  fi
  echo "install-browser: installing playwright-core@$PLAYWRIGHT_CORE_VERSION into $DIR" >&2
  # The driver alone: no browser download (there is none in playwright-core, and the variable
  # keeps it that way should a postinstall ever try).
  if ! (cd "$DIR" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm install --no-audit --no-fund --loglevel=error \
    "playwright-core@$PLAYWRIGHT_CORE_VERSION" >&2); then
    echo "install-browser: npm could not install playwright-core@$PLAYWRIGHT_CORE_VERSION (is the npm registry reachable?)" >&2
    exit 3
  fi
  touch "$MARKER"
fi
echo "$DIR"
