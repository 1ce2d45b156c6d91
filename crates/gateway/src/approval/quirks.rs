//! Clients whose declared capabilities are not what they do. Each entry is keyed by the
//! `clientInfo` name (and, where a fix is known, the versions before it) and says which rungs
//! of the approval ladder the client only seems to offer, with the public report it rests on.
//! A client not listed is taken at its word.

/// A rung of the approval ladder, in the order they are tried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Rung {
    /// Form elicitation, answered in the client.
    Form,
    /// URL elicitation: the client opens the approval page's link for the person.
    Url,
    /// A tool result that gives the link and asks for the identical call once approved.
    Pending,
}

impl Rung {
    /// The rung as the evidence names it.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Rung::Form => "form",
            Rung::Url => "url",
            Rung::Pending => "pending",
        }
    }
}

/// One client whose declaration is not to be believed.
pub(crate) struct Quirk {
    /// `clientInfo.name`, exactly.
    pub name: &'static str,
    /// The first version that behaves as declared, when one is known (`None`: every version).
    pub fixed_in: Option<&'static str>,
    /// The rungs it declares and does not deliver.
    pub skip: &'static [Rung],
    /// What it does, and where that was reported.
    pub evidence: &'static str,
}

/// The table, documented in README.md ("Approval in every client").
pub(crate) const QUIRKS: &[Quirk] = &[
    Quirk {
        name: "claude-ai",
        fixed_in: None,
        skip: &[Rung::Form],
        evidence: "Claude Desktop and Cowork declare form elicitation but never draw the form; the request is cancelled after 60 s with no answer (anthropics/claude-code#88901; the clientInfo name from heznpc/AirMCP#46)",
    },
    Quirk {
        name: "codex-mcp-client",
        fixed_in: None,
        skip: &[Rung::Form, Rung::Url],
        evidence: "Codex declares elicitation and answers it with a decline nobody gave, without showing it (openai/codex#6992; still so in 0.154.0 under app-server: openai/codex#45621)",
    },
];

/// Whether `version` comes before `fixed` (dotted numbers compared as numbers; anything
/// that does not parse counts as before: the quirk is assumed).
fn before(version: &str, fixed: &str) -> bool {
    let parts = |text: &str| -> Option<Vec<u64>> {
        text.split('.').map(|part| part.parse().ok()).collect()
    };
    match (parts(version), parts(fixed)) {
        (Some(version), Some(fixed)) => version < fixed,
        _ => true,
    }
}

/// The quirk of the client that names itself `name` at `version`, if any.
pub(crate) fn quirk(name: &str, version: &str) -> Option<&'static Quirk> {
    QUIRKS.iter().find(|quirk| {
        quirk.name == name && quirk.fixed_in.is_none_or(|fixed| before(version, fixed))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listed_client_skips_its_rungs_until_the_version_that_fixed_them() {
        assert!(quirk("claude-ai", "0.14.1").is_some_and(|q| q.skip == [Rung::Form]));
        assert!(quirk("codex-mcp-client", "0.154.0").is_some());
        assert!(quirk("claude-code", "2.1.259").is_none());
        assert!(before("1.2.3", "1.10"));
        assert!(!before("1.10", "1.2.3"));
        assert!(before("nightly", "1.0"));
    }
}
