//! `file://` URIs to path bytes: the scheme and host checked, the path percent-decoded once.
//!
//! Strict on purpose: URI parsers disagree about the edges (WHATWG reads `\` as `/` in `file:`
//! URIs and strips tabs, newlines and surrounding spaces; some decoders decode twice or keep
//! malformed escapes), so anything a parser could read differently from us is refused instead
//! of guessed.

use crate::error::DenyReason;

/// The decoded path of a `file://` URI: `file:///abs` or `file://localhost/abs`, nothing else.
pub(crate) fn file_uri_path(raw: &str) -> Result<Vec<u8>, DenyReason> {
    let ambiguous = raw.bytes().any(|b| b == b'\\' || b.is_ascii_control())
        || raw.starts_with(char::is_whitespace)
        || raw.ends_with(char::is_whitespace);
    if ambiguous {
        return Err(DenyReason::UriCharacters);
    }
    let rest = match (raw.get(..7), raw.get(7..)) {
        (Some(scheme), Some(rest)) if scheme.eq_ignore_ascii_case("file://") => rest,
        _ => return Err(DenyReason::NotFileUri),
    };
    // A `?` or `#` in a path must be percent-encoded; unencoded, it starts a query or fragment,
    // which no upstream should read as part of a file name.
    if rest.contains(['?', '#']) {
        return Err(DenyReason::UriQuery);
    }
    let (host, path) = match rest.find('/') {
        Some(slash) => rest.split_at(slash),
        None => (rest, ""),
    };
    // Any other host, port or user names a file on another machine, or something we cannot
    // know how the upstream reads.
    if !(host.is_empty() || host.eq_ignore_ascii_case("localhost")) {
        return Err(DenyReason::UriHost);
    }
    if path.is_empty() {
        return Err(DenyReason::Empty);
    }
    percent_decode_once(path)
}

/// Decodes `%XX` exactly once: `%252e` becomes the three bytes `%2e`, a literal name. A `%` not
/// followed by two hex digits is refused rather than kept, which some decoders do.
fn percent_decode_once(text: &str) -> Result<Vec<u8>, DenyReason> {
    let mut out = Vec::with_capacity(text.len());
    let mut bytes = text.bytes();
    while let Some(byte) = bytes.next() {
        if byte != b'%' {
            out.push(byte);
            continue;
        }
        let high = bytes.next().and_then(hex_value);
        let low = bytes.next().and_then(hex_value);
        match (high, low) {
            (Some(high), Some(low)) => out.push(high << 4 | low),
            _ => return Err(DenyReason::UriEncoding),
        }
    }
    Ok(out)
}

fn hex_value(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        b'A'..=b'F' => Some(byte - b'A' + 10),
        _ => None,
    }
}

/// The scheme of a URI (`http` in `http://x`), if the text starts with one. A single letter is
/// a scheme too; on Linux there are no drive letters to mistake it for.
pub(crate) fn scheme(text: &str) -> Option<&str> {
    let colon = text.find(':')?;
    let scheme = text.get(..colon)?;
    let mut chars = scheme.chars();
    let first = chars.next()?;
    let valid = first.is_ascii_alphabetic()
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    valid.then_some(scheme)
}
