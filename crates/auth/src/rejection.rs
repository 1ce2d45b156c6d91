//! A refused request: why, as the client learns it (RFC 6750 §3), and the `WWW-Authenticate`
//! challenge that tells an MCP client where to find the authorization server (RFC 9728 §5.1).
//!
//! A rejection is built from fixed reasons and the configured scopes only. It never holds the
//! token or anything read out of it, so it can be shown, logged and sent as it is.

use std::fmt;

use axum::http::StatusCode;

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RejectReason {
    /// No `Authorization` header.
    MissingToken,
    /// An `Authorization` header with another scheme than `Bearer`.
    NotBearer,
    /// Not a compact signed JWT we can read, or several `Authorization` headers.
    Malformed,
    /// `none`, HMAC or an algorithm we do not know: only asymmetric signatures are accepted.
    DisallowedAlgorithm,
    /// The header names no key (`kid`).
    MissingKeyId,
    /// The issuer does not publish the named key, even after a refresh.
    UnknownKey,
    /// The header's algorithm is not one the named key may be used with.
    KeyMismatch,
    BadSignature,
    WrongIssuer,
    WrongAudience,
    Expired,
    NotYetValid,
    /// A claim that must be present is not.
    MissingClaim(&'static str),
    /// A claim has a type other than the one we read it as.
    InvalidClaim(String),
    /// The token is valid but lacks scopes every request needs.
    InsufficientScope,
}

impl fmt::Display for RejectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::MissingToken => f.write_str("this resource needs a bearer token"),
            Self::NotBearer => {
                f.write_str("the authorization header does not use the bearer scheme")
            }
            Self::Malformed => f.write_str("the token is not a well-formed signed jwt"),
            Self::DisallowedAlgorithm => {
                f.write_str("the token's signing algorithm is not accepted")
            }
            Self::MissingKeyId => f.write_str("the token does not name its signing key (`kid`)"),
            Self::UnknownKey => {
                f.write_str("the token is signed with a key the issuer does not publish")
            }
            Self::KeyMismatch => f.write_str("the token's algorithm does not match its key"),
            Self::BadSignature => f.write_str("the token's signature is invalid"),
            Self::WrongIssuer => f.write_str("the token comes from another issuer"),
            Self::WrongAudience => f.write_str("the token is not meant for this resource"),
            Self::Expired => f.write_str("the token has expired"),
            Self::NotYetValid => f.write_str("the token is not valid yet"),
            Self::MissingClaim(claim) => write!(f, "the token has no `{claim}` claim"),
            Self::InvalidClaim(claim) => {
                write!(f, "the token's `{claim}` claim has the wrong type")
            }
            Self::InsufficientScope => f.write_str("the token lacks a scope this resource needs"),
        }
    }
}

/// The OAuth error code of a rejection (RFC 6750 §3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BearerError {
    InvalidToken,
    InsufficientScope,
}

impl BearerError {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidToken => "invalid_token",
            Self::InsufficientScope => "insufficient_scope",
        }
    }
}

/// A refused request: 401 (no usable token) or 403 (a valid token without the scopes needed).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct Rejection {
    reason: RejectReason,
    /// The scopes a request needs, for `insufficient_scope`; empty otherwise.
    required_scopes: Vec<String>,
}

impl Rejection {
    pub(crate) fn new(reason: RejectReason) -> Self {
        Self {
            reason,
            required_scopes: Vec::new(),
        }
    }

    pub(crate) fn insufficient_scope(required_scopes: Vec<String>) -> Self {
        Self {
            reason: RejectReason::InsufficientScope,
            required_scopes,
        }
    }

    pub fn reason(&self) -> &RejectReason {
        &self.reason
    }

    pub fn status(&self) -> StatusCode {
        match self.reason {
            RejectReason::InsufficientScope => StatusCode::FORBIDDEN,
            _ => StatusCode::UNAUTHORIZED,
        }
    }

    /// The error code; none when the request carried no bearer token at all, which RFC 6750
    /// §3.1 says should get no error information, only the challenge.
    pub fn error(&self) -> Option<BearerError> {
        match self.reason {
            RejectReason::MissingToken | RejectReason::NotBearer => None,
            RejectReason::InsufficientScope => Some(BearerError::InsufficientScope),
            _ => Some(BearerError::InvalidToken),
        }
    }

    /// A short description for a person; never token content.
    pub fn description(&self) -> String {
        self.reason.to_string()
    }

    /// The scopes a request needs, when the rejection is `insufficient_scope`.
    pub fn required_scopes(&self) -> &[String] {
        &self.required_scopes
    }

    /// The `WWW-Authenticate` value: the challenge with the metadata URL (RFC 9728 §5.1), the
    /// error code and description (RFC 6750 §3), and for 403 the scopes needed.
    pub fn www_authenticate(&self, resource_metadata_url: &str) -> String {
        let mut value = format!(
            "Bearer resource_metadata=\"{}\"",
            quotable(resource_metadata_url)
        );
        match self.error() {
            None => {}
            Some(BearerError::InvalidToken) => {
                value.push_str(&format!(
                    ", error=\"invalid_token\", error_description=\"{}\"",
                    quotable(&self.description())
                ));
            }
            Some(BearerError::InsufficientScope) => {
                let scope = self
                    .required_scopes
                    .iter()
                    .map(|scope| quotable(scope))
                    .collect::<Vec<_>>()
                    .join(" ");
                value.push_str(&format!(
                    ", error=\"insufficient_scope\", scope=\"{scope}\""
                ));
            }
        }
        value
    }
}

/// Keeps the characters RFC 6750 allows inside a quoted attribute (printable ASCII except `"`
/// and `\`), so that a configured claim name or scope cannot break the header or smuggle in
/// another attribute.
fn quotable(text: &str) -> String {
    text.chars()
        .filter(|c| matches!(c, ' '..='~') && *c != '"' && *c != '\\')
        .collect()
}

#[cfg(test)]
mod tests;
