#!/usr/bin/env bash
# Fuzzes the parsers that take hostile input, each for a bounded time, and fails on any crash,
# hang (a single input over 10 s) or out-of-memory (over 2 GiB).
#
#   scripts/fuzz.sh [TARGET...]          # default: every target in fuzz/Cargo.toml
#   FUZZ_SECONDS=600 scripts/fuzz.sh     # longer (default 60 s per target)
#   FUZZ_BUILD_FLAGS="--dev --sanitizer none" FUZZ_SECONDS=3 scripts/fuzz.sh   # a quick smoke run
#
# Targets: config (the config parser and validator), www_authenticate (an upstream's 401
# challenge), roots (path and file:// arguments against a root, with links), evidence (an
# evidence log's bytes through the verifier and the reader), client_message (a client's
# JSON-RPC line, both eras, and a call's arguments against a schema), upstream_message (an
# upstream's message: lists made a catalog, answers redacted of secrets), request_state (the
# sealed requestState opener), bearer_token (bearer tokens and JWTs against a fixed key set, and
# JWKS), oauth_metadata (RFC 9728 and RFC 8414 metadata as discovery reads them), hygiene
# (cleaning an upstream's texts). Seed corpora are in
# fuzz/corpus/TARGET (read only); what a run finds is kept in fuzz/target/corpus/TARGET, outside
# git, and read again by the next run. A crash leaves its input in fuzz/artifacts/TARGET/: minimise it with
# `cargo +nightly fuzz tmin TARGET fuzz/artifacts/TARGET/crash-…` and add it to the target's
# crate as a regression test. Needs the nightly toolchain (installed here when missing, if
# rustup can download it within five minutes; otherwise the script says so and stops) and
# cargo-fuzz (installed here when missing, from crates.io). scripts/test.sh runs it with
# FUZZ_SECONDS=3 and an unoptimised build without AddressSanitizer (3.5 minutes from cold
# instead of about an hour on two cores), so that every target keeps building and starting.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${FUZZ_SECONDS:-60}
# How the targets are built: optimised with AddressSanitizer by default (what finds bugs);
# `--dev --sanitizer none` builds in a few minutes instead of most of an hour, for a smoke run.
read -r -a build <<<"${FUZZ_BUILD_FLAGS:-}"
if ! rustup toolchain list | grep -q '^nightly'; then
  # Bounded: rustup retries a download it cannot make for a long time, and a script that
  # hangs tells nobody what is missing.
  if ! timeout 300 rustup toolchain install nightly --profile minimal; then
    printf 'fuzz: the nightly toolchain is missing and could not be installed; install it with\n' >&2
    printf '  rustup toolchain install nightly --profile minimal\n' >&2
    exit 2
  fi
fi
cargo +nightly fuzz --version >/dev/null 2>&1 || cargo +nightly install cargo-fuzz --locked

if [ "$#" -gt 0 ]; then
  targets=("$@")
else
  mapfile -t targets < <(cargo +nightly fuzz list)
fi
failed=()
for target in "${targets[@]}"; do
  printf 'fuzz: %s for %s s\n' "$target" "$seconds" >&2
  mkdir -p "fuzz/target/corpus/$target"
  if ! cargo +nightly fuzz run "${build[@]}" "$target" "fuzz/target/corpus/$target" "fuzz/corpus/$target" -- \
      -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1; then
    failed+=("$target")
  fi
done
if [ "${#failed[@]}" -gt 0 ]; then
  printf 'fuzz: FAILED: %s (inputs in fuzz/artifacts/)\n' "${failed[*]}" >&2
  exit 1
fi
printf 'fuzz: every target ran %s s without a crash, hang or out-of-memory\n' "$seconds" >&2
