#!/usr/bin/env bash
# Runs every test: installs what the tests need (scripts/setup.sh), builds the workspace, runs the
# unit and end-to-end tests, then the MCP conformance suite against Portcullis.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
cargo build --workspace --all-targets --locked
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --locked --no-fail-fast
  # nextest runs no documentation tests; these include the compile-fail proofs that nothing
  # outside the request path can forge a permit, an approval or a durable intent.
  cargo test --workspace --locked --doc
else
  cargo test --workspace --locked --no-fail-fast
fi
scripts/conformance.sh
