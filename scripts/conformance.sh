#!/usr/bin/env bash
# Runs the official MCP conformance suite's server scenarios against Portcullis in passthrough
# mode in front of the conformance fixture (crates/conformance-fixture), over loopback HTTP:
#   0.1.16 active suite (2025-11-25), 0.2.0-alpha.12 active suite, and 0.2.0-alpha.12's
#   requirements for 2026-07-28 (stateless era, input-required results).
# Expected failures live in tests/conformance/expected-failures-*.yml, each with its reason; the
# suite itself fails on an unlisted failure and on a listed entry that passes (a ratchet).
# Needs scripts/setup.sh and `cargo build --workspace` first (scripts/test.sh does both).
set -euo pipefail
cd "$(dirname "$0")/.."

root=$PWD
node22=$root/tests/node/node_modules/node/bin/node
suite_old=$root/tests/node/node_modules/@modelcontextprotocol/conformance/dist/index.js
suite_new=$root/tests/node/node_modules/conformance-next/dist/index.js
for file in "$node22" "$suite_old" "$suite_new" target/debug/portcullis target/debug/portcullis-conformance-fixture; do
  [ -e "$file" ] || { echo "conformance: $file is missing: run scripts/setup.sh" >&2; exit 1; }
done

work=$(mktemp -d)
log="$work/portcullis.log"
cleanup() {
  [ -n "${pid:-}" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
  [ -n "${CONFORMANCE_KEEP:-}" ] || rm -rf "$work"
}
trap cleanup EXIT

target/debug/portcullis serve --config tests/conformance/portcullis.toml --listen 127.0.0.1:0 2>"$log" &
pid=$!
url=""
for _ in $(seq 1 200); do
  url=$(sed -n 's/^portcullis: serving MCP on //p' "$log" | head -n 1)
  [ -n "$url" ] && break
  kill -0 "$pid" 2>/dev/null || { cat "$log" >&2; echo "conformance: portcullis exited" >&2; exit 1; }
  sleep 0.1
done
[ -n "$url" ] || { cat "$log" >&2; echo "conformance: portcullis did not start within 20s" >&2; exit 1; }

status=0
run() {
  local label=$1; shift
  local out="$work/$label.out"
  # The suite writes its results/ directory into the working directory: keep it out of the tree.
  if (cd "$work" && timeout 600 "$node22" "$@" --url "$url") >"$out" 2>&1; then
    result=ok
  else
    result=FAILED
    status=1
  fi
  local total
  total=$(grep -E '^Total: ' "$out" | tail -n 1 || true)
  echo "conformance $label: ${total:-no summary} (baseline check: $result)"
  if [ "$result" = FAILED ]; then
    sed -n '/Unexpected failures/,$p;/Stale baseline/,$p' "$out" >&2
    grep -E '^✗' "$out" >&2 || tail -n 40 "$out" >&2
  fi
}

run "0.1.16" "$suite_old" server --expected-failures "$root/tests/conformance/expected-failures-0.1.16.yml"
run "0.2.0-alpha.12" "$suite_new" server --expected-failures "$root/tests/conformance/expected-failures-next.yml"
run "0.2.0-alpha.12 (2026-07-28 requirements)" "$suite_new" server --requirements 2026-07-28 \
  --expected-failures "$root/tests/conformance/expected-failures-next.yml"
exit $status
