//! Upstream names and the namespaced names under which their tools, prompts and resources appear.
//!
//! A tool `send` of upstream `mail` is exposed as `mail.send`. Upstream names may not contain the
//! separator, so splitting at the first `.` is unambiguous. Resource URIs are namespaced by
//! prefixing the scheme: `demo://x` of upstream `everything` becomes `everything+demo://x`, which is
//! still a valid URI (RFC 3986 allows `+` in a scheme) and keeps templates working unchanged.

use std::fmt;

use serde::Serialize;

/// The separator between an upstream name and the upstream's own tool or prompt name.
pub const SEPARATOR: char = '.';

/// The separator between an upstream name and a resource URI's own scheme.
pub const URI_SEPARATOR: char = '+';

/// The namespace of Portcullis's own tools (`portcullis.search_tools`, …): no upstream may be
/// named so, and no upstream tool is exposed under it, so an upstream can never stand in for
/// one of them.
pub const RESERVED_NAMESPACE: &str = "portcullis";

/// The longest tool name the MCP specification allows.
pub const MAX_TOOL_NAME_LEN: usize = 128;

/// The longest upstream name; short so that namespaced names keep room for the tool's own name.
pub const MAX_UPSTREAM_NAME_LEN: usize = 32;

/// Why a name cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("upstream name is empty")]
    EmptyUpstream,
    #[error(
        "upstream name `{0}` is longer than {MAX_UPSTREAM_NAME_LEN} characters; choose a shorter name"
    )]
    UpstreamTooLong(String),
    #[error(
        "upstream name `{0}` may contain only ASCII letters, digits, `_` and `-`, and must start with a letter"
    )]
    UpstreamCharacters(String),
    #[error(
        "tool name `{0}` is empty or contains characters other than ASCII letters, digits, `_`, `-` and `.`"
    )]
    ToolCharacters(String),
    #[error("namespaced name `{0}` would be longer than {MAX_TOOL_NAME_LEN} characters")]
    TooLong(String),
    #[error(
        "name `{0}` is in the namespace `portcullis`, which is reserved for portcullis's own tools"
    )]
    Reserved(String),
}

/// A validated upstream name: `[A-Za-z][A-Za-z0-9_-]{0,31}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct UpstreamName(String);

impl UpstreamName {
    /// Validates an upstream name.
    pub fn new(name: &str) -> Result<Self, NameError> {
        let mut chars = name.chars();
        let Some(first) = chars.next() else {
            return Err(NameError::EmptyUpstream);
        };
        if name.len() > MAX_UPSTREAM_NAME_LEN {
            return Err(NameError::UpstreamTooLong(name.to_owned()));
        }
        if !first.is_ascii_alphabetic()
            || !chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err(NameError::UpstreamCharacters(name.to_owned()));
        }
        Ok(Self(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for UpstreamName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// How upstream capabilities are named towards the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Namespacing {
    /// `upstream.tool`, `upstream.prompt`, `upstream+scheme://...`.
    Prefixed,
    /// One upstream, names unchanged.
    Passthrough,
}

/// A name as the client sees it, resolved back to the upstream that owns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExposedName<'a> {
    /// Index of the owning upstream in configuration order.
    pub upstream: usize,
    /// The upstream's own name for the tool, prompt or resource URI.
    pub local: &'a str,
}

/// True when `name` is a valid MCP tool name: 1 to 128 of `A-Za-z0-9_-.`.
pub fn is_valid_tool_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_TOOL_NAME_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
}

/// True when `name` is in Portcullis's own namespace (`portcullis.…`, in any letter case).
pub fn is_reserved(name: &str) -> bool {
    name.split_once(SEPARATOR)
        .is_some_and(|(prefix, _)| prefix.eq_ignore_ascii_case(RESERVED_NAMESPACE))
}

impl Namespacing {
    /// The name under which upstream `upstream`'s tool or prompt `local` is exposed.
    ///
    /// Names that are not valid MCP tool names, or that would exceed 128 characters once
    /// namespaced, are refused rather than truncated: a truncated name could collide with another
    /// tool and route a call to the wrong place. A name in the reserved namespace (a
    /// passthrough upstream's `portcullis.call_tool`, say) is refused: it would shadow one of
    /// Portcullis's own tools.
    pub fn expose(self, upstream: &UpstreamName, local: &str) -> Result<String, NameError> {
        if !is_valid_tool_name(local) {
            return Err(NameError::ToolCharacters(local.to_owned()));
        }
        let exposed = match self {
            Namespacing::Passthrough => local.to_owned(),
            Namespacing::Prefixed => format!("{upstream}{SEPARATOR}{local}"),
        };
        if exposed.len() > MAX_TOOL_NAME_LEN {
            Err(NameError::TooLong(exposed))
        } else if is_reserved(&exposed) {
            Err(NameError::Reserved(exposed))
        } else {
            Ok(exposed)
        }
    }

    /// Resolves an exposed tool or prompt name to its upstream among `upstreams`.
    pub fn resolve<'a>(
        self,
        upstreams: &[UpstreamName],
        exposed: &'a str,
    ) -> Option<ExposedName<'a>> {
        self.resolve_at(upstreams, exposed, SEPARATOR)
    }

    /// The URI (or URI template) under which upstream `upstream`'s resource `local` is exposed.
    pub fn expose_uri(self, upstream: &UpstreamName, local: &str) -> String {
        match self {
            Namespacing::Passthrough => local.to_owned(),
            Namespacing::Prefixed => format!("{upstream}{URI_SEPARATOR}{local}"),
        }
    }

    /// Resolves an exposed resource URI (or template) to its upstream among `upstreams`.
    pub fn resolve_uri<'a>(
        self,
        upstreams: &[UpstreamName],
        exposed: &'a str,
    ) -> Option<ExposedName<'a>> {
        self.resolve_at(upstreams, exposed, URI_SEPARATOR)
    }

    fn resolve_at<'a>(
        self,
        upstreams: &[UpstreamName],
        exposed: &'a str,
        separator: char,
    ) -> Option<ExposedName<'a>> {
        match self {
            Namespacing::Passthrough => (upstreams.len() == 1).then_some(ExposedName {
                upstream: 0,
                local: exposed,
            }),
            Namespacing::Prefixed => {
                let (prefix, local) = exposed.split_once(separator)?;
                let upstream = upstreams.iter().position(|u| u.as_str() == prefix)?;
                Some(ExposedName { upstream, local })
            }
        }
    }
}

#[cfg(test)]
mod tests;
