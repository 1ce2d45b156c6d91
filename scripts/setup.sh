#!/usr/bin/env bash
# Installs everything Portcullis's tests and the shipped config need, from the package
# registries only:
#   - tests/node/node_modules (npm ci, pinned by tests/node/package-lock.json): the official
#     TypeScript SDK, server-everything, server-filesystem, the conformance suite 0.1.16
#     (@modelcontextprotocol/conformance) and 0.2.0-alpha.12 (alias conformance-next), and
#     Node 22 (npm package `node`: tests/node/node_modules/node/bin/node) which the suite needs;
#   - .venv (pinned by tests/py/requirements.txt): the official Python SDK `mcp` and its deps;
#     and (tests/defense/requirements.txt) mcp-defense-bench with FastMCP, for
#     scripts/defense-bench.sh;
#   - Debian's `chromium` and `chromium-driver` (apt-get, as root, only when /usr/bin/chromium
#     is missing): the real browser tests/node/passkey.mjs drives for the passkey tests
#     (playwright-core downloads no browser of its own); `postgresql` and `haproxy` (likewise)
#     for the replica tests (tests/e2e/replicas.rs);
#   - the workspace binaries (cargo build).
# `scripts/setup.sh python` does the venv alone (what scripts/defense-bench.sh needs).
# Idempotent: each part is redone only when its pins (or the tool that installs it) change, as
# recorded in a stamp; a run with nothing to do takes well under a second plus a no-op cargo
# build. Prints nothing on success unless it installs something; fails loudly otherwise.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

fail() {
  echo "setup: $*" >&2
  exit 1
}
note() { echo "setup: $*" >&2; }

case "${1:-all}" in
  all) only_python=false ;;
  python) only_python=true ;;
  *) fail "unknown part \`$1\`: run scripts/setup.sh, or scripts/setup.sh python for the venv alone" ;;
esac

command -v python3 >/dev/null || fail "python3 is missing: install Python 3.10 or later"
python3 -c 'import sys; sys.exit(sys.version_info < (3, 10))' \
  || fail "$(python3 --version 2>&1) is too old: the Python SDK needs 3.10 or later"
python3 -c 'import venv, ensurepip' 2>/dev/null \
  || fail "python3 cannot create venvs: install the venv module (Debian: apt-get install python3-venv)"

# A digest of the given files plus extra words (tool versions), to decide whether to redo a part.
stamp() {
  local files=("$@")
  { sha256sum "${files[@]}"; echo "$EXTRA"; } | sha256sum | cut -d' ' -f1
}

if ! $only_python; then
command -v cargo >/dev/null || fail "cargo is missing: install Rust stable with rustup"
command -v node >/dev/null || fail "node is missing: install Node.js 20 or later"
command -v npm >/dev/null || fail "npm is missing: it comes with Node.js"
node_major=$(node -p 'process.versions.node.split(".")[0]')
[ "$node_major" -ge 20 ] || fail "node $(node --version) is too old: the tests need Node.js 20 or later"

# Node packages: `npm ci` (which wipes node_modules, stamp included) only when the pins change.
node_stamp=tests/node/node_modules/.portcullis-stamp
[ -f tests/node/package-lock.json ] || fail "tests/node/package-lock.json is missing: run 'npm install' in tests/node and commit the lockfile"
EXTRA="node $(node --version) npm $(npm --version) $(uname -sm)"
want=$(stamp tests/node/package.json tests/node/package-lock.json)
if [ ! -f "$node_stamp" ] || [ "$(cat "$node_stamp")" != "$want" ]; then
  note "installing the Node packages in tests/node (npm ci)"
  log=$(mktemp)
  if ! (cd tests/node && npm ci --no-audit --no-fund --loglevel=error) >"$log" 2>&1; then
    cat "$log" >&2
    rm -f "$log"
    fail "npm ci in tests/node failed (output above)"
  fi
  rm -f "$log"
  node22=tests/node/node_modules/node/bin/node
  version=$("$node22" --version 2>/dev/null) || fail "Node 22 from the npm package \`node\` did not install ($node22)"
  case "$version" in v22.*) ;; *) fail "$node22 is $version, expected v22" ;; esac
  for suite in @modelcontextprotocol/conformance conformance-next; do
    "$node22" "tests/node/node_modules/$suite/dist/index.js" --version >/dev/null 2>&1 \
      || fail "the conformance suite $suite does not run under $node22"
  done
  echo "$want" >"$node_stamp"
fi
fi

# Python venv with the official SDK (and the defence benchmark's scorer): rebuilt from scratch
# only when the pins change.
py_stamp=.venv/.portcullis-stamp
EXTRA="$(python3 --version 2>&1) $(uname -sm)"
want=$(stamp tests/py/requirements.txt tests/defense/requirements.txt)
if [ ! -f "$py_stamp" ] || [ "$(cat "$py_stamp")" != "$want" ] || [ ! -x .venv/bin/python ]; then
  note "creating the Python venv .venv (tests/py/requirements.txt, tests/defense/requirements.txt)"
  python3 -m venv --clear .venv || fail "python3 -m venv .venv failed"
  log=$(mktemp)
  if ! .venv/bin/python -m pip install --disable-pip-version-check --no-input --quiet \
    -r tests/py/requirements.txt -r tests/defense/requirements.txt >"$log" 2>&1; then
    cat "$log" >&2
    rm -f "$log"
    fail "pip install -r tests/py/requirements.txt -r tests/defense/requirements.txt failed (output above)"
  fi
  rm -f "$log"
  .venv/bin/python -c 'import mcp, mcp.client, mcp.server.mcpserver' \
    || fail "the Python SDK does not import in .venv"
  .venv/bin/python -c 'import mcp_defense_bench.adapters.stdio' \
    || fail "mcp-defense-bench's stdio harness does not import in .venv"
  echo "$want" >"$py_stamp"
fi
$only_python && exit 0

# Debian packages the tests run, each installed only when the program it brings is missing.
# The package list is refreshed only when the install fails, since an old or empty list is the
# usual cause and an update is slow.
debian_packages() {
  local program=$1 # a path, or a glob of paths, of which one must exist
  shift
  compgen -G "$program" >/dev/null && return 0
  [ "$(id -u)" -eq 0 ] \
    || fail "$program is missing and installing it needs root: run 'apt-get install $*' as root"
  command -v apt-get >/dev/null \
    || fail "$program is missing and there is no apt-get: install Debian's $*"
  note "installing Debian's $* (apt-get)"
  local log
  log=$(mktemp)
  apt_install() { DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@"; }
  if ! apt_install "$@" >"$log" 2>&1 && ! { apt-get update -qq && apt_install "$@"; } >"$log" 2>&1; then
    cat "$log" >&2
    rm -f "$log"
    fail "apt-get install $* failed (output above)"
  fi
  rm -f "$log"
  compgen -G "$program" >/dev/null || fail "apt-get installed $* but $program is missing"
}
# Chromium: the real browser of the passkey tests.
debian_packages /usr/bin/chromium chromium chromium-driver
# PostgreSQL and HAProxy: the replica tests start a database (initdb and pg_ctl into a
# temporary directory) and a load balancer of their own on loopback. The package's own cluster
# service is not used.
debian_packages '/usr/lib/postgresql/*/bin/pg_ctl' postgresql
debian_packages /usr/sbin/haproxy haproxy

# The workspace binaries the shipped config and the tests start.
cargo build --workspace --quiet || fail "cargo build --workspace failed"
# The shipped config's fixture works in state/fixture-scratch, its only root: contained, it could
# not create that directory itself.
mkdir -p state/fixture-scratch
