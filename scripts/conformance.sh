#!/usr/bin/env bash
# Runs every server scenario of the official MCP conformance suite, both versions, against
# Portcullis in passthrough mode in front of the conformance fixture (crates/conformance-fixture,
# a stdio upstream; config tests/conformance/portcullis.toml), over loopback HTTP:
#   0.1.16                     every server scenario (protocol 2025-11-25)
#   0.2.0-alpha.12@2025-11-25  every scenario on the 2025-11-25 (session) wire
#   0.2.0-alpha.12@2026-07-28  every scenario on the 2026-07-28 (stateless) wire
#   0.2.0-alpha.12@extension   the extension scenarios (tasks, skills)
# Each scenario runs on its own, bounded by a timeout. Prints one summary line per version and
# compares the failures with tests/conformance/expected-failures.txt (`VERSION SCENARIO  # why
# it does not apply to a mediator`): exits nonzero when a failure is not listed, or a listed
# scenario passes (a ratchet: remove the entry), or an entry is malformed or names nothing run.
#
# Usage: scripts/conformance.sh [--direct | --http-upstream]
#   --direct         run against the fixture itself over HTTP; every failure counts there.
#   --http-upstream  the fixture is an HTTP upstream of Portcullis (tests/conformance/
#                    portcullis-http.toml) instead of a stdio one; same expected failures.
# Environment:
#   CONFORMANCE_NODE_MODULES  node_modules holding both suite versions and the npm package
#                             `node` 22 (default tests/node/node_modules, from scripts/setup.sh)
#   CONFORMANCE_ONLY          extended regex on `VERSION SCENARIO`: run only those that match
#   CONFORMANCE_KEEP          keep the scratch directory (logs, checks.json) and print its path
# Builds nothing: run `cargo build --workspace` first.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$PWD

fail() {
  echo "conformance: $*" >&2
  exit 1
}

# mode: portcullis (stdio upstream), http-upstream, or direct.
mode=portcullis
case "${1:-}" in
  "") ;;
  --direct) mode=direct ;;
  --http-upstream) mode=http-upstream ;;
  *) fail "unknown argument \`$1\` (usage: scripts/conformance.sh [--direct | --http-upstream])" ;;
esac

# Bounds: a scenario that hangs is a failure, not a stuck CI run.
scenario_timeout=120
list_timeout=60
# All scenario runs together (about 2 minutes when nothing hangs); the rest fail once it is spent.
total_timeout=1200
start_timeout_tenths=200

expected_file=$root/tests/conformance/expected-failures.txt
config=$root/tests/conformance/portcullis.toml
portcullis=$root/target/debug/portcullis
fixture=$root/target/debug/portcullis-conformance-fixture
modules=${CONFORMANCE_NODE_MODULES:-$root/tests/node/node_modules}
modules=$(cd "$modules" 2>/dev/null && pwd) || fail "node_modules \`$modules\` is missing: run scripts/setup.sh"
node22=$modules/node/bin/node

[ -x "$node22" ] || fail "$node22 is missing: install the npm package node@22 (scripts/setup.sh does)"
case "$("$node22" --version)" in v22.*) ;; *) fail "$node22 is not Node 22" ;; esac
for binary in "$portcullis" "$fixture"; do
  [ -x "$binary" ] || fail "$binary is missing: run cargo build --workspace"
done

# The suite's entry point for one version, wherever its package sits (the npm alias varies).
suite_for() {
  "$node22" -e '
    const fs = require("fs"), path = require("path");
    const [modules, version] = process.argv.slice(1);
    const dirs = [];
    for (const name of fs.readdirSync(modules)) {
      if (name.startsWith("@")) {
        for (const inner of fs.readdirSync(path.join(modules, name))) dirs.push(path.join(modules, name, inner));
      } else dirs.push(path.join(modules, name));
    }
    for (const dir of dirs) {
      try {
        const pkg = JSON.parse(fs.readFileSync(path.join(dir, "package.json"), "utf8"));
        if (pkg.name === "@modelcontextprotocol/conformance" && pkg.version === version) {
          console.log(path.join(dir, "dist", "index.js"));
          process.exit(0);
        }
      } catch {}
    }
    process.exit(1);
  ' "$modules" "$1" || fail "@modelcontextprotocol/conformance $1 is not in $modules: run scripts/setup.sh"
}
old_version=0.1.16
new_version=0.2.0-alpha.12
suite_old=$(suite_for "$old_version")
suite_new=$(suite_for "$new_version")

work=$(mktemp -d "${TMPDIR:-/tmp}/conformance.XXXXXX")
server_pid=""
fixture_pid=""
# shellcheck disable=SC2317 # called by the EXIT trap
cleanup() {
  local pid
  for pid in "$server_pid" "$fixture_pid"; do
    if [ -n "$pid" ]; then
      kill "$pid" 2>/dev/null || true
      wait "$pid" 2>/dev/null || true
    fi
  done
  if [ -n "${CONFORMANCE_KEEP:-}" ]; then
    echo "conformance: results kept in $work" >&2
  else
    rm -rf "$work"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Waits until `$1` (a command) prints a URL, while process `$2` lives; prints the URL.
wait_for_url() {
  local url_of=$1 pid=$2 log=$3 url=""
  for _ in $(seq 1 "$start_timeout_tenths"); do
    url=$($url_of)
    if [ -n "$url" ]; then
      case "$url" in http://127.0.0.1:*/mcp) ;; *) fail "not on loopback: \`$url\`" ;; esac
      echo "$url"
      return
    fi
    kill -0 "$pid" 2>/dev/null || { cat "$log" >&2; fail "$(basename "$log" .log) exited at start"; }
    sleep 0.1
  done
  cat "$log" >&2
  fail "$(basename "$log" .log) did not start within $((start_timeout_tenths / 10)) s"
}
# shellcheck disable=SC2317 # called by name from wait_for_url
fixture_url() { head -n 1 "$work/fixture.url"; }
# shellcheck disable=SC2317 # called by name from wait_for_url
portcullis_url() { sed -n 's/^portcullis: serving MCP on //p' "$work/portcullis.log" | head -n 1; }

# Start what is under test on free loopback ports.
if [ "$mode" != portcullis ]; then
  "$fixture" --listen 127.0.0.1:0 >"$work/fixture.url" 2>"$work/fixture.log" &
  fixture_pid=$!
  upstream_url=$(wait_for_url fixture_url "$fixture_pid" "$work/fixture.log")
fi
case "$mode" in
  direct)
    target="the fixture directly"
    url=$upstream_url
    server_log=$work/fixture.log
    ;;
  http-upstream)
    target="Portcullis (passthrough, HTTP upstream)"
    sed "s|FIXTURE_URL|$upstream_url|" "$root/tests/conformance/portcullis-http.toml" >"$work/portcullis.toml"
    config=$work/portcullis.toml
    ;;
  *) target="Portcullis (passthrough, stdio upstream)" ;;
esac
if [ "$mode" != direct ]; then
  "$portcullis" serve --config "$config" --listen 127.0.0.1:0 2>"$work/portcullis.log" &
  server_pid=$!
  server_log=$work/portcullis.log
  url=$(wait_for_url portcullis_url "$server_pid" "$server_log")
fi
echo "conformance: against $target at $url"

# The server scenarios a suite lists, one name per line.
scenarios() {
  local suite=$1
  shift
  (cd "$work" && timeout -k 5 "$list_timeout" "$node22" "$suite" list --server "$@") \
    | sed -n 's/^  - \([^ ]*\).*$/\1/p'
}
scenarios_extension() {
  (cd "$work" && timeout -k 5 "$list_timeout" "$node22" "$suite_new" list --server) \
    | sed -n 's/^  - \([^ ]*\) \[extension\]$/\1/p'
}

# Every run: LABEL|SUITE|SPEC-VERSION (or -)|SCENARIO.
runs=()
add_runs() {
  local label=$1 suite=$2 spec=$3 list=$4 name
  [ -n "$list" ] || fail "the suite at $suite listed no scenarios for $label"
  for name in $list; do
    if [ -z "${CONFORMANCE_ONLY:-}" ] || [[ "$label $name" =~ $CONFORMANCE_ONLY ]]; then
      runs+=("$label|$suite|$spec|$name")
    fi
  done
}
add_runs "$old_version" "$suite_old" - "$(scenarios "$suite_old")"
add_runs "$new_version@2025-11-25" "$suite_new" 2025-11-25 \
  "$(scenarios "$suite_new" --spec-version 2025-11-25)"
add_runs "$new_version@2026-07-28" "$suite_new" 2026-07-28 \
  "$(scenarios "$suite_new" --spec-version 2026-07-28)"
add_runs "$new_version@extension" "$suite_new" - "$(scenarios_extension)"
labels=("$old_version" "$new_version@2025-11-25" "$new_version@2026-07-28" "$new_version@extension")
[ "${#runs[@]}" -gt 0 ] || fail "no scenario matches CONFORMANCE_ONLY=\`${CONFORMANCE_ONLY:-}\`"

# Expected failures: `LABEL SCENARIO  # reason`, the reason required.
declare -A expected=()
if [ "$mode" != direct ]; then
  [ -f "$expected_file" ] || fail "$expected_file is missing"
  line_number=0
  while IFS= read -r line || [ -n "$line" ]; do
    line_number=$((line_number + 1))
    [[ "$line" =~ ^[[:space:]]*(#|$) ]] && continue
    [[ "$line" == *"#"* ]] || fail "expected-failures.txt:$line_number: no \`# reason\`: say why it does not apply to a mediator"
    reason=${line#*#}
    [[ "$reason" =~ [^[:space:]] ]] || fail "expected-failures.txt:$line_number: the reason is empty"
    read -r label name extra <<<"${line%%#*}"
    if [ -z "${name:-}" ] || [ -n "${extra:-}" ]; then
      fail "expected-failures.txt:$line_number: want \`VERSION SCENARIO  # reason\`"
    fi
    expected["$label $name"]=$reason
  done <"$expected_file"
fi

declare -A passed_scenarios=() total_scenarios=() passed_checks=() total_checks=() expected_count=()
declare -A warnings=()
declare -A ran=()
unexpected=()
stale=()
started=$SECONDS
for run in "${runs[@]}"; do
  IFS='|' read -r label suite spec name <<<"$run"
  ran["$label $name"]=1
  out=$work/results/$label/$name
  mkdir -p "$out"
  if [ $((SECONDS - started)) -ge "$total_timeout" ]; then
    total_scenarios[$label]=$((${total_scenarios[$label]:-0} + 1))
    unexpected+=("$label $name"$'\n'"  not run: the runs took more than ${total_timeout}s in all")
    continue
  fi
  args=(server --url "$url" --scenario "$name" -o "$out")
  [ "$spec" = - ] || args+=(--spec-version "$spec")
  # The suite writes into its working directory: keep that out of the tree.
  if (cd "$work" && timeout -k 5 "$scenario_timeout" "$node22" "$suite" "${args[@]}") >"$out.log" 2>&1; then
    status=0
  else
    status=$?
  fi
  if grep -q "^SKIPPED: scenario" "$out.log"; then
    echo "conformance: $label $name was skipped by the suite" >&2
    continue
  fi
  summary=$("$node22" "$root/tests/conformance/checks.mjs" "$out" 2>/dev/null) || summary="0 0 0"
  read -r n_passed n_failed n_warnings <<<"$(head -n 1 <<<"$summary")"
  details=$(tail -n +2 <<<"$summary")
  if [ "$status" = 124 ] || [ "$status" = 137 ]; then
    details="  timed out after ${scenario_timeout}s"$'\n'"$details"
  elif [ "$status" != 0 ] && [ "$n_failed" = 0 ]; then
    details="  the suite exited with status $status:"$'\n'"$(tail -n 15 "$out.log" | sed 's/^/    /')"
  fi
  total_scenarios[$label]=$((${total_scenarios[$label]:-0} + 1))
  passed_checks[$label]=$((${passed_checks[$label]:-0} + n_passed))
  total_checks[$label]=$((${total_checks[$label]:-0} + n_passed + n_failed))
  warnings[$label]=$((${warnings[$label]:-0} + n_warnings))
  key="$label $name"
  if [ "$status" = 0 ] && [ "$n_failed" = 0 ]; then
    passed_scenarios[$label]=$((${passed_scenarios[$label]:-0} + 1))
    if [ -n "${expected[$key]+listed}" ]; then
      stale+=("$key  (listed in expected-failures.txt but passes: remove it)")
    fi
  elif [ -n "${expected[$key]+listed}" ]; then
    expected_count[$label]=$((${expected_count[$label]:-0} + 1))
  else
    unexpected+=("$key"$'\n'"$details")
  fi
done

# Entries naming a scenario that was not run are stale too (unless a filter left it out).
if [ -z "${CONFORMANCE_ONLY:-}" ]; then
  for key in "${!expected[@]}"; do
    if [ -z "${ran[$key]+yes}" ]; then
      stale+=("$key  (listed in expected-failures.txt but no such scenario ran)")
    fi
  done
fi

for label in "${labels[@]}"; do
  [ -n "${total_scenarios[$label]+set}" ] || continue
  line="conformance $label: ${passed_scenarios[$label]:-0}/${total_scenarios[$label]} passed"
  line+=" (checks ${passed_checks[$label]:-0}/${total_checks[$label]:-0}"
  if [ "${warnings[$label]:-0}" != 0 ]; then
    line+=", ${warnings[$label]} warnings"
  fi
  if [ -n "${expected_count[$label]+set}" ]; then
    line+=", ${expected_count[$label]} expected failures"
  fi
  echo "$line)"
done
echo "conformance: ${#runs[@]} scenario runs against $target in $((SECONDS - started)) s"

status=0
if [ "${#unexpected[@]}" -gt 0 ]; then
  echo "conformance: failures not in tests/conformance/expected-failures.txt:" >&2
  printf '%s\n' "${unexpected[@]}" >&2
  status=1
fi
if [ "${#stale[@]}" -gt 0 ]; then
  echo "conformance: stale entries in tests/conformance/expected-failures.txt:" >&2
  printf '  %s\n' "${stale[@]}" >&2
  status=1
fi
if [ "$status" != 0 ]; then
  echo "conformance: the server's log ends:" >&2
  tail -n 20 "$server_log" | sed 's/^/  /' >&2
fi
exit "$status"
