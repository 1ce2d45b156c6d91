//! What a tool does (its effect) and where it acts (its upstream's execution surface).
//!
//! Both come from config; a tool config does not classify has the effect [`Effect::Unknown`],
//! which every check treats as side-effecting (fail closed: a tool nobody described may delete
//! or send).

use std::collections::BTreeSet;
use std::fmt;

use serde::Serialize;

use crate::pointer::ArgumentPointer;

/// What one tool does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Effect {
    Read,
    Write,
    Destructive,
    /// Externally visible: mail, messages, payments, posts.
    Send,
    Physical,
    /// Not described by config: treated as side-effecting.
    Unknown,
}

impl Effect {
    /// The effects config may name (`unknown` is what it gets when config names none).
    pub const NAMED: [Effect; 5] = [
        Effect::Read,
        Effect::Write,
        Effect::Destructive,
        Effect::Send,
        Effect::Physical,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Effect::Read => "read",
            Effect::Write => "write",
            Effect::Destructive => "destructive",
            Effect::Send => "send",
            Effect::Physical => "physical",
            Effect::Unknown => "unknown",
        }
    }

    /// Parses a name config may use; `unknown` is not one of them.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::NAMED.into_iter().find(|e| e.as_str() == name)
    }

    pub fn is_side_effecting(self) -> bool {
        self != Effect::Read
    }
}

impl fmt::Display for Effect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where an upstream's tools act.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Surface {
    Filesystem,
    Shell,
    Code,
    Browser,
    HttpApi,
    Database,
    Device,
    Remote,
    /// Config names none.
    Unspecified,
}

impl Surface {
    /// The surfaces config may name.
    pub const NAMED: [Surface; 8] = [
        Surface::Filesystem,
        Surface::Shell,
        Surface::Code,
        Surface::Browser,
        Surface::HttpApi,
        Surface::Database,
        Surface::Device,
        Surface::Remote,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Surface::Filesystem => "filesystem",
            Surface::Shell => "shell",
            Surface::Code => "code",
            Surface::Browser => "browser",
            Surface::HttpApi => "http_api",
            Surface::Database => "database",
            Surface::Device => "device",
            Surface::Remote => "remote",
            Surface::Unspecified => "unspecified",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::NAMED.into_iter().find(|s| s.as_str() == name)
    }
}

impl fmt::Display for Surface {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What config says about one tool of an upstream.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ToolRules {
    /// `None` when config does not classify the tool: the effect is then [`Effect::Unknown`].
    pub effect: Option<Effect>,
    /// Scopes an identity needs to call the tool.
    pub scopes: BTreeSet<String>,
    /// Arguments replaced by `[redacted]` in the evidence (besides the secret-named keys
    /// redacted everywhere).
    pub redact: Vec<ArgumentPointer>,
    /// Arguments holding recipients or destinations (addresses, channels, accounts, URLs): a
    /// value this user has not had approved before makes the call a `new_recipient`.
    pub recipients: Vec<ArgumentPointer>,
    /// The argument naming the tenant or workspace the call acts in: a value other than the
    /// session's tenant makes the call `crosses_tenant`.
    pub tenant_argument: Option<ArgumentPointer>,
    /// The tool changes privileges (roles, permissions, keys).
    pub escalates: bool,
    /// Whether the effect can be undone, for the approval request (`None`: not known).
    pub reversible: Option<bool>,
}

impl ToolRules {
    pub fn effect(&self) -> Effect {
        self.effect.unwrap_or(Effect::Unknown)
    }
}
