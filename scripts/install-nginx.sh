#!/usr/bin/env bash
# Installs Debian's `nginx` (apt-get) for the reverse-proxy test (crates/clawgate/tests/nginx_proxy.rs),
# which runs it unprivileged in front of clawgate with the configuration documented in
# docs/OPERATIONS.md. Only the binary is used: the test starts its own nginx with `-p <tmp>` and never
# touches the system service or /etc/nginx.
#
#   scripts/install-nginx.sh          install if needed; print the nginx binary last
#   scripts/install-nginx.sh --check  install nothing; print the binary and exit 0 when installed,
#                                     exit 1 otherwise (what the Rust test calls)
#
# Idempotent and quiet when nginx is present. Exits non-zero with a clear message when apt-get is
# missing, not permitted or cannot reach the Debian mirrors.
set -euo pipefail

NGINX="${CLAWGATE_NGINX:-/usr/sbin/nginx}"

if [[ "${1:-}" == "--check" ]]; then
  if [[ -x "$NGINX" ]]; then
    echo "$NGINX"
    exit 0
  fi
  echo "install-nginx: $NGINX is missing; run scripts/install-nginx.sh" >&2
  exit 1
fi

if [[ ! -x "$NGINX" ]]; then
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-nginx: $NGINX is missing and apt-get is not available; install nginx and retry" >&2
    exit 2
  fi
  SUDO=()
  if [[ "$(id -u)" != 0 ]]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
      SUDO=(sudo -n)
    else
      echo "install-nginx: $NGINX is missing; run as root (or with passwordless sudo): apt-get install nginx" >&2
      exit 2
    fi
  fi
  echo "install-nginx: installing Debian's nginx with apt-get" >&2
  # policy-rc.d-free containers may try to start the service on install; the test never needs it
  # running, so a failed service start is not an install failure as long as the binary is there.
  if ! "${SUDO[@]}" apt-get update -qq >&2 \
    || ! DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y -qq --no-install-recommends nginx >&2; then
    [[ -x "$NGINX" ]] || {
      echo "install-nginx: apt-get could not install nginx (are the Debian package mirrors reachable?)" >&2
      exit 3
    }
  fi
  if [[ ! -x "$NGINX" ]]; then
    echo "install-nginx: apt-get installed nginx but $NGINX is still missing" >&2
    exit 3
  fi
fi
echo "$NGINX"
