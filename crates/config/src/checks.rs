//! Checks that several parts of the config share: environment variable names, loopback
//! authorities, scope lists and socket addresses. Pure, and below every other module here.

use std::collections::BTreeSet;
use std::net::SocketAddr;

use serde_spanned::Spanned;

use crate::error::Reporter;

/// Whether `name` can name an environment variable: letters, digits and `_`, not starting
/// with a digit.
pub fn is_env_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

pub(crate) fn is_loopback_authority(rest: &str) -> bool {
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => authority
            .rsplit_once(':')
            .map_or(authority, |(host, _)| host),
    };
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Scope names: non-empty, no spaces (scopes travel space-separated).
pub(crate) fn scope_list(
    report: &mut Reporter<'_>,
    scopes: &[Spanned<String>],
) -> BTreeSet<String> {
    let mut valid = BTreeSet::new();
    for scope in scopes {
        let value = scope.get_ref();
        if value.is_empty() || value.contains(char::is_whitespace) {
            report.at(
                Some(scope.span()),
                format!("scope `{value}` is empty or contains spaces"),
            );
        } else {
            valid.insert(value.clone());
        }
    }
    valid
}

/// A `host:port` address that `allowed` accepts. Anything else is reported, with `refused`
/// saying why such an address is not taken, and is `None`.
pub(crate) fn address(
    report: &mut Reporter<'_>,
    value: &Spanned<String>,
    example: &str,
    allowed: impl Fn(SocketAddr) -> bool,
    refused: &str,
) -> Option<SocketAddr> {
    let Ok(addr) = value.get_ref().parse::<SocketAddr>() else {
        report.at(
            Some(value.span()),
            format!(
                "`{}` is not an address with a port, e.g. `{example}`",
                value.get_ref()
            ),
        );
        return None;
    };
    if !allowed(addr) {
        report.at(Some(value.span()), format!("`{addr}` {refused}"));
        return None;
    }
    Some(addr)
}
