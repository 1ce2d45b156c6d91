#!/usr/bin/env bash
# Installs everything Portcullis's tests and the shipped config need, from the package
# registries only: the workspace binaries, the official MCP servers, clients and conformance suite
# (npm, pinned by tests/node/package-lock.json, with Node 22 for the suite), and a Python venv
# with the official Python SDK (pinned by tests/py/requirements.txt). Idempotent and quick when
# nothing changed.
set -euo pipefail
cd "$(dirname "$0")/.."

fail() { echo "setup: $*" >&2; exit 1; }
command -v cargo >/dev/null || fail "cargo is missing: install Rust stable with rustup"
command -v node >/dev/null || fail "node is missing: install Node.js 20 or later"
command -v npm >/dev/null || fail "npm is missing"
command -v python3 >/dev/null || fail "python3 is missing: install Python 3.11 or later"

stamp() { sha256sum "$@" | sha256sum | cut -d' ' -f1; }

# Node packages: reinstalled only when the lockfile changes.
node_stamp=tests/node/node_modules/.portcullis-stamp
want=$(stamp tests/node/package.json tests/node/package-lock.json)
if [ ! -f "$node_stamp" ] || [ "$(cat "$node_stamp")" != "$want" ]; then
  echo "setup: installing Node packages (tests/node)" >&2
  (cd tests/node && npm ci --no-audit --no-fund --loglevel=error >/dev/null) \
    || fail "npm ci in tests/node failed"
  tests/node/node_modules/node/bin/node --version >/dev/null 2>&1 \
    || fail "Node 22 from the npm package \`node\` did not install"
  echo "$want" > "$node_stamp"
fi

# Python venv with the official SDK: rebuilt only when the requirements change.
py_stamp=.venv/.portcullis-stamp
want=$(stamp tests/py/requirements.txt)
if [ ! -f "$py_stamp" ] || [ "$(cat "$py_stamp")" != "$want" ]; then
  echo "setup: creating the Python venv (.venv)" >&2
  python3 -m venv .venv || fail "python3 -m venv failed"
  .venv/bin/pip install --quiet --disable-pip-version-check -r tests/py/requirements.txt \
    || fail "pip install -r tests/py/requirements.txt failed"
  echo "$want" > "$py_stamp"
fi

# The workspace binaries the shipped config and the tests start.
cargo build --workspace --quiet || fail "cargo build failed"
mkdir -p state
