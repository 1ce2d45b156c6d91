//! Host names a contained upstream may connect to, as config grants them: `api.github.com:443`.
//!
//! A name, not an address: the sandbox gives the upstream a hosts file listing the granted names
//! alone, and Portcullis looks each name up outside the sandbox when the upstream connects. So a
//! grant is a plain DNS host name (RFC 1123 letters, digits and hyphens), lower-cased since
//! names are compared without case. Wildcards are refused: a hosts file cannot list
//! `*.github.com`, and a wildcard would let the upstream choose where it connects. Addresses are
//! refused too: an address is not looked up, and the sandbox can only forward names.

use std::fmt;

/// The longest host name DNS carries (253 characters, written without the final dot).
pub const MAX_HOST_NAME_LEN: usize = 253;

/// The longest label of a host name.
pub const MAX_LABEL_LEN: usize = 63;

/// Why a text is not a host-name grant.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HostError {
    #[error("the host name is empty; write `host:port`, for example `api.github.com:443`")]
    Empty,
    #[error(
        "`{0}` is a wildcard; name each host (`api.github.com:443`): the upstream can resolve only the names its hosts file lists, and a wildcard would let it choose where to connect"
    )]
    Wildcard(String),
    #[error(
        "`{0}` is an address, not a host name; name the host, whose addresses Portcullis looks up when the upstream connects"
    )]
    Address(String),
    #[error("`{0}` has no port; write it as `{0}:443`, with the port it connects to")]
    MissingPort(String),
    #[error("the port in `{0}` must be a number between 1 and 65535")]
    Port(String),
    #[error("host name `{0}` ends with a dot; write it without the dot")]
    TrailingDot(String),
    #[error("host name `{0}` is longer than {MAX_HOST_NAME_LEN} characters")]
    TooLong(String),
    #[error("host name `{0}` has an empty label (two dots in a row, or a leading dot)")]
    EmptyLabel(String),
    #[error("host name `{0}` has a label longer than {MAX_LABEL_LEN} characters")]
    LabelTooLong(String),
    #[error(
        "host name `{0}` may contain only ASCII letters, digits, `-` and `.` (write an internationalised name in its `xn--` form)"
    )]
    Characters(String),
    #[error("host name `{0}` has a label that starts or ends with `-`")]
    Hyphen(String),
}

/// A validated DNS host name, lower-cased: `api.github.com`, `localhost`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HostName(String);

impl HostName {
    /// Validates a host name (without a port).
    pub fn new(name: &str) -> Result<Self, HostError> {
        if name.is_empty() {
            return Err(HostError::Empty);
        }
        let owned = || name.to_owned();
        if name.contains('*') {
            return Err(HostError::Wildcard(owned()));
        }
        if name.contains(':') || name.starts_with('[') {
            return Err(HostError::Address(owned()));
        }
        if name.len() > 1 && name.ends_with('.') {
            return Err(HostError::TrailingDot(owned()));
        }
        if name.len() > MAX_HOST_NAME_LEN {
            return Err(HostError::TooLong(owned()));
        }
        if !name
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'.')
        {
            return Err(HostError::Characters(owned()));
        }
        let labels: Vec<&str> = name.split('.').collect();
        if labels.iter().any(|label| label.is_empty()) {
            return Err(HostError::EmptyLabel(owned()));
        }
        if labels.iter().any(|label| label.len() > MAX_LABEL_LEN) {
            return Err(HostError::LabelTooLong(owned()));
        }
        if labels
            .iter()
            .any(|label| label.starts_with('-') || label.ends_with('-'))
        {
            return Err(HostError::Hyphen(owned()));
        }
        // No top-level domain is all digits (RFC 3696, 2), so such a name is an IPv4 address
        // or a mistyped one: `10.0.0.5`, `10.0.5`, `167772165`.
        if labels
            .last()
            .is_some_and(|last| last.bytes().all(|byte| byte.is_ascii_digit()))
        {
            return Err(HostError::Address(owned()));
        }
        Ok(HostName(name.to_ascii_lowercase()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for HostName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A host name and one TCP port on it: `api.github.com:443`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HostPort {
    host: HostName,
    port: u16,
}

impl HostPort {
    /// A grant of `port` (1 to 65535; 0 connects nowhere) on `host`.
    pub fn new(host: HostName, port: u16) -> Result<Self, HostError> {
        if port == 0 {
            return Err(HostError::Port(format!("{host}:0")));
        }
        Ok(HostPort { host, port })
    }

    /// Parses `host:port`.
    pub fn parse(text: &str) -> Result<Self, HostError> {
        let Some((host, port)) = text.rsplit_once(':') else {
            // Validate the name first, so that `*.example.com` says wildcard, not port.
            HostName::new(text)?;
            return Err(HostError::MissingPort(text.to_owned()));
        };
        let host = HostName::new(host).map_err(|error| match error {
            // `::1:443`, `[::1]:443`: what is left of the last colon still has one.
            HostError::Address(_) => HostError::Address(text.to_owned()),
            other => other,
        })?;
        // Digits only: `u16::from_str` would take `+443` too.
        let digits = !port.is_empty() && port.bytes().all(|byte| byte.is_ascii_digit());
        match port.parse::<u16>() {
            Ok(port) if digits && port > 0 => Ok(HostPort { host, port }),
            _ => Err(HostError::Port(text.to_owned())),
        }
    }

    pub fn host(&self) -> &HostName {
        &self.host
    }

    pub fn port(&self) -> u16 {
        self.port
    }
}

impl fmt::Display for HostPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

#[cfg(test)]
mod tests;
