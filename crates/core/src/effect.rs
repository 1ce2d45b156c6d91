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

    /// How restricted the effect is, for "only more restricted" comparisons: read, then
    /// write, then destructive and send (equal: neither is narrower), then physical, then
    /// unknown (anything at all).
    fn restriction(self) -> u8 {
        match self {
            Effect::Read => 0,
            Effect::Write => 1,
            Effect::Destructive | Effect::Send => 2,
            Effect::Physical => 3,
            Effect::Unknown => 4,
        }
    }

    /// The effect a server's explicit annotations claim (absent hints claim nothing; the
    /// spec's defaults for absent hints are not claims): `destructiveHint: true` is
    /// destructive; `readOnlyHint: true` is read; `readOnlyHint: false` is a write, or a send
    /// with `openWorldHint: true`.
    pub fn from_hints(hints: Hints) -> Option<Self> {
        match (hints.destructive, hints.read_only, hints.open_world) {
            (Some(true), _, _) => Some(Effect::Destructive),
            (_, Some(true), _) => Some(Effect::Read),
            (_, Some(false), Some(true)) => Some(Effect::Send),
            (_, Some(false), _) => Some(Effect::Write),
            _ => None,
        }
    }

    /// The effect a tool is treated as: config's, unless the server's hints are more
    /// restricted. The hints come from an untrusted party, so they can only narrow what a
    /// tool may do unaided; with `trust_hints` they also classify a tool config leaves
    /// unclassified (which is otherwise `Unknown`).
    pub fn effective(configured: Option<Effect>, hints: Hints, trust_hints: bool) -> Effect {
        let hinted = Effect::from_hints(hints);
        match (configured, hinted) {
            (Some(configured), Some(hinted)) if hinted.restriction() > configured.restriction() => {
                hinted
            }
            (Some(configured), _) => configured,
            (None, Some(hinted)) if trust_hints => hinted,
            (None, _) => Effect::Unknown,
        }
    }
}

/// A tool's annotations as its server sent them; `None` where it sent none.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Hints {
    pub read_only: Option<bool>,
    pub destructive: Option<bool>,
    pub open_world: Option<bool>,
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
    /// Arguments holding filesystem paths, besides those found from the input schema.
    pub paths: Vec<ArgumentPointer>,
    /// Scopes the user's delegated grant for the upstream needs for this tool (requested
    /// incrementally when the grant lacks them).
    pub upstream_scopes: BTreeSet<String>,
}

impl ToolRules {
    pub fn effect(&self) -> Effect {
        self.effect.unwrap_or(Effect::Unknown)
    }
}

#[cfg(test)]
mod tests {
    use super::{Effect, Hints};

    fn hints(
        read_only: Option<bool>,
        destructive: Option<bool>,
        open_world: Option<bool>,
    ) -> Hints {
        Hints {
            read_only,
            destructive,
            open_world,
        }
    }

    #[test]
    fn untrusted_hints_only_make_a_tool_more_restricted() {
        let read_only = hints(Some(true), None, None);
        let destructive = hints(None, Some(true), None);
        let none = Hints::default();
        // A server claiming "read-only" cannot make an unclassified or a write tool a read.
        assert_eq!(Effect::effective(None, read_only, false), Effect::Unknown);
        assert_eq!(
            Effect::effective(Some(Effect::Write), read_only, false),
            Effect::Write
        );
        // A server admitting more is believed.
        assert_eq!(
            Effect::effective(Some(Effect::Read), destructive, false),
            Effect::Destructive
        );
        assert_eq!(
            Effect::effective(
                Some(Effect::Read),
                hints(Some(false), None, Some(true)),
                false
            ),
            Effect::Send
        );
        assert_eq!(
            Effect::effective(Some(Effect::Read), none, false),
            Effect::Read
        );
        // Destructive and send are equally restricted: config's stands.
        assert_eq!(
            Effect::effective(Some(Effect::Send), destructive, false),
            Effect::Send
        );
        // Unknown stays unknown whatever the hints.
        assert_eq!(Effect::effective(None, destructive, false), Effect::Unknown);
    }

    #[test]
    fn trusted_hints_classify_what_config_leaves_open() {
        assert_eq!(
            Effect::effective(None, hints(Some(true), None, Some(true)), true),
            Effect::Read
        );
        assert_eq!(
            Effect::effective(None, hints(Some(false), None, None), true),
            Effect::Write
        );
        assert_eq!(
            Effect::effective(None, Hints::default(), true),
            Effect::Unknown
        );
        // Config still wins over a trusted hint that claims less.
        assert_eq!(
            Effect::effective(Some(Effect::Write), hints(Some(true), None, None), true),
            Effect::Write
        );
        // A contradiction (read-only and destructive) counts as destructive.
        assert_eq!(
            Effect::from_hints(hints(Some(true), Some(true), None)),
            Some(Effect::Destructive)
        );
    }
}
