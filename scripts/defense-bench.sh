#!/usr/bin/env bash
# Scores Portcullis on the public mcp-defense-bench (PyPI `mcp-defense-bench`, pinned in
# tests/defense/requirements.txt): its development and benign corpora, through the bench's own
# stdio-proxy harness and scorer, at protocol revisions 2025-11-25 and 2026-07-28, each with no
# approver and with a person who approves every form unread (tests/defense/portcullis_adapter.py
# says how Portcullis is configured, tests/defense/run.py what is written).
#
#   scripts/defense-bench.sh [--bin-dir DIR] [--out DIR] [-- run.py options: --limit N --jobs N
#                             --revision R --approver A]
#
# Without --bin-dir it builds the release `portcullis` (cargo build --release). Results go to
# target/defense-bench/ (summary.json, table.md, and the bench's own result documents per
# revision and approver). Everything runs on this machine: the fixture servers are stdio
# children, Portcullis's approval page listens on loopback, nothing reaches the network. The
# whole run is bounded by DEFENSE_BENCH_TIMEOUT seconds (default 5400; each drive by 60 s).
# Exits non-zero when the run fails (a build, a harness error, a timeout), not on a low score.
set -euo pipefail
cd "$(dirname "$0")/.."

fail() {
  echo "defense-bench: $*" >&2
  exit 1
}

bin_dir=""
out="target/defense-bench"
while [ $# -gt 0 ]; do
  case "$1" in
    --bin-dir) bin_dir="${2:?--bin-dir needs a directory}"; shift 2 ;;
    --out) out="${2:?--out needs a directory}"; shift 2 ;;
    --) shift; break ;;
    *) fail "unknown option \`$1\` (see the head of $0)" ;;
  esac
done

scripts/setup.sh python
if [ -z "$bin_dir" ]; then
  cargo build --release --locked --quiet -p portcullis-mcp || fail "cargo build --release failed"
  bin_dir="${CARGO_TARGET_DIR:-target}/release"
fi
[ -x "$bin_dir/portcullis" ] || fail "$bin_dir/portcullis is missing: build it, or name its directory with --bin-dir"

mkdir -p "$out"
timeout --kill-after=30 "${DEFENSE_BENCH_TIMEOUT:-5400}" \
  .venv/bin/python tests/defense/run.py --bin "$bin_dir/portcullis" --out "$out" "$@" \
  || fail "the benchmark run failed or timed out (exit $?)"
cat "$out/table.md"
