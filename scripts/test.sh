#!/usr/bin/env bash
# Runs every test: installs what the tests need (scripts/setup.sh), builds the workspace, runs the
# unit and end-to-end tests, then the MCP conformance suite against Portcullis, the benchmark's
# harness on three inputs, and each fuzz target briefly.
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
# mcp-defense-bench's harness still drives Portcullis, in both revisions (three inputs each,
# about 20 s; the full run, 40 minutes or so, is scripts/defense-bench.sh): a description with
# hidden characters is cleaned (the bench scores that "enforce"), and two benign ones, one of
# them a docstring indented with runs of spaces, are passed unchanged.
smoke="${CARGO_TARGET_DIR:-target}/defense-bench-smoke"
scripts/defense-bench.sh --bin-dir "${CARGO_TARGET_DIR:-target}/debug" --out "$smoke" -- \
  --only tool-poisoning/002 --only benign/tool-definition/036- --only benign/tool-definition/001- \
  --approver none >/dev/null
.venv/bin/python - "$smoke/summary.json" <<'PY'
import json, sys
runs = json.load(open(sys.argv[1]))["runs"]
assert [run["revision"] for run in runs] == ["2025-11-25", "2026-07-28"], runs
for run in runs:
    cases = {c["id"]: c for c in run["cases"]}
    assert cases["tool-poisoning/002-hidden-char-evasion"]["level"] == "enforce", run["cases"]
    flagged = [fp["id"] for fp in run["benignFalsePositives"]]
    assert run["benign"]["items"] == 2, run["benign"]
    assert flagged == [], flagged
PY
# Every fuzz target still builds, starts and survives its seeds and a few seconds of fuzzing
# (nightly; unoptimised and without AddressSanitizer, which builds in minutes: the runs that
# look for findings are scripts/fuzz.sh's, optimised, sanitized, 60 s per target).
FUZZ_BUILD_FLAGS="--dev --sanitizer none" FUZZ_SECONDS=3 scripts/fuzz.sh
