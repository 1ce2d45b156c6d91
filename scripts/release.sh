#!/usr/bin/env bash
# Builds the release binary: `portcullis`, static (musl, x86_64 Linux), and its SHA-256.
#
#   scripts/release.sh [OUT_DIR]        # default: dist/
#
# Writes OUT_DIR/portcullis-VERSION-x86_64-linux-musl and OUT_DIR/portcullis-VERSION-x86_64-linux-musl.sha256
# (the `sha256sum` line: check it with `sha256sum -c`), and OUT_DIR/image/, the file tree of the
# container image (`Containerfile`, which expects the default OUT_DIR). It installs what it needs when missing:
# rustup's x86_64-unknown-linux-musl standard library, and Debian's musl-tools (musl-gcc, for
# the C in ring and in the OpenSSL that webauthn-rs links, which the `static` feature builds
# from source: perl and make are needed too). The binary is checked to be static (no program
# interpreter, no shared library) and to run.
set -euo pipefail
cd "$(dirname "$0")/.."

target=x86_64-unknown-linux-musl
out=${1:-dist}
note() { printf 'release: %s\n' "$*" >&2; }
fail() { printf 'release: %s\n' "$*" >&2; exit 1; }

if ! rustup target list --installed | grep -qx "$target"; then
  note "adding the $target standard library (rustup)"
  rustup target add "$target"
fi
if ! command -v musl-gcc >/dev/null 2>&1; then
  [ "$(id -u)" = 0 ] || fail "musl-gcc is missing and installing it needs root: run 'apt-get install musl-tools' as root"
  command -v apt-get >/dev/null || fail "musl-gcc is missing and there is no apt-get: install musl's gcc wrapper"
  note "installing Debian's musl-tools (apt-get)"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq musl-tools >/dev/null 2>&1 \
    || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq musl-tools; } \
    || fail "apt-get install musl-tools failed"
fi
for tool in perl make; do
  command -v "$tool" >/dev/null || fail "$tool is missing: the vendored OpenSSL build needs it"
done

export CC_x86_64_unknown_linux_musl=musl-gcc
# Symbols stripped: a third of the size; panics still name their place.
export CARGO_PROFILE_RELEASE_STRIP=symbols
cargo build --release --locked --target "$target" -p portcullis-mcp --features static

bin="target/$target/release/portcullis"
# Static: no PT_INTERP (no dynamic loader) and no NEEDED library.
if readelf -lW "$bin" | grep -q 'INTERP'; then fail "$bin asks for a dynamic loader: not static"; fi
if readelf -dW "$bin" | grep -q '(NEEDED)'; then fail "$bin needs shared libraries: not static"; fi
version=$("$bin" --version | awk '{print $2}')
[ -n "$version" ] || fail "$bin --version printed no version"

mkdir -p "$out"
name="portcullis-$version-x86_64-linux-musl"
cp "$bin" "$out/$name"
(cd "$out" && sha256sum "$name" >"$name.sha256")

# The container image's whole file tree (Containerfile copies OUT_DIR/image/ onto an empty
# image): the binary, the system's CA certificates for https upstreams and issuers, and the
# directory the configuration volume is mounted on.
ca=/etc/ssl/certs/ca-certificates.crt
[ -f "$ca" ] || fail "$ca is missing: install Debian's ca-certificates"
image="$out/image"
rm -rf "$image"
mkdir -p "$image/usr/local/bin" "$image/etc/ssl/certs" "$image/portcullis" "$image/tmp"
chmod 1777 "$image/tmp"
cp "$bin" "$image/usr/local/bin/portcullis"
cp "$ca" "$image/etc/ssl/certs/ca-certificates.crt"

note "$(du -h "$out/$name" | cut -f1) $out/$name; the image's files in $image"
cat "$out/$name.sha256"
