#!/usr/bin/env bash
# Installs Debian's `postgresql` (apt-get) for the PostgreSQL store tests
# (crates/clawgate-store/tests/postgres_conformance.rs, crates/clawgate/tests/postgres_gateway.rs).
# Only the binaries are used: the tests `initdb` their own cluster in a temporary directory, start it
# on a free loopback port and stop it at the end (crates/clawgate-testkit/src/postgres.rs). The
# system service is never needed.
#
#   scripts/install-postgres.sh          install if needed; print the binaries' directory last
#   scripts/install-postgres.sh --check  install nothing; print the directory and exit 0 when
#                                        installed, exit 1 otherwise
#
# Idempotent and quiet when PostgreSQL is present. Exits non-zero with a clear message when apt-get
# is missing, not permitted or cannot reach the Debian mirrors.
set -euo pipefail

# The directory holding initdb and pg_ctl: PATH first, then Debian's versioned directories.
find_bin() {
  local initdb
  if initdb="$(command -v initdb 2>/dev/null)" && command -v pg_ctl >/dev/null 2>&1; then
    dirname "$(readlink -f "$initdb")"
    return 0
  fi
  local dir
  for dir in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
    if [[ -x "$dir/initdb" && -x "$dir/pg_ctl" ]]; then
      echo "$dir"
      return 0
    fi
  done
  return 1
}

if [[ "${1:-}" == "--check" ]]; then
  if find_bin; then
    exit 0
  fi
  echo "install-postgres: initdb/pg_ctl not found; run scripts/install-postgres.sh" >&2
  exit 1
fi

if ! find_bin >/dev/null; then
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-postgres: PostgreSQL is missing and apt-get is not available; install postgresql and retry" >&2
    exit 2
  fi
  SUDO=()
  if [[ "$(id -u)" != 0 ]]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
      SUDO=(sudo -n)
    else
      echo "install-postgres: PostgreSQL is missing; run as root (or with passwordless sudo): apt-get install postgresql" >&2
      exit 2
    fi
  fi
  echo "install-postgres: installing Debian's postgresql with apt-get" >&2
  # Containers without an init system may fail to start the packaged cluster; the tests never use
  # it, so that is not an install failure as long as the binaries are there.
  if ! "${SUDO[@]}" apt-get update -qq >&2 \
    || ! DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y -qq --no-install-recommends postgresql >&2; then
    find_bin >/dev/null || {
      echo "install-postgres: apt-get could not install postgresql (are the Debian package mirrors reachable?)" >&2
      exit 3
    }
  fi
  if ! find_bin >/dev/null; then
    echo "install-postgres: apt-get installed postgresql but initdb/pg_ctl are still missing" >&2
    exit 3
  fi
fi
find_bin
