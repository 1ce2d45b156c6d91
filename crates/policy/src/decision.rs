//! What the policies decided, which policies decided it, and how to say so to a person.

use std::fmt;

/// Allow, allow only with a person's approval, or deny.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    ApprovalRequired,
    Deny,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Allow => "allow",
            Verdict::ApprovalRequired => "approval_required",
            Verdict::Deny => "deny",
        }
    }
}

/// A policy that determined a decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyRef {
    /// Its `@id`, else its file-qualified Cedar id.
    pub id: String,
    pub file: String,
    /// 1-based line of its `@id`; 0 when not known.
    pub line: usize,
    /// Its `@reason`, written by the policy's author for people to read.
    pub reason: Option<String>,
}

/// A decision: a value, never an error. A deny with errors was caused by evaluation failing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub verdict: Verdict,
    /// The determining policies: the permits that allowed, or the forbids that denied (none
    /// when nothing permitted the request).
    pub policies: Vec<PolicyRef>,
    pub errors: Vec<String>,
}

impl Decision {
    /// The `@id`s of the determining policies.
    pub fn policy_ids(&self) -> Vec<&str> {
        self.policies.iter().map(|p| p.id.as_str()).collect()
    }

    /// Why a deny happened, in words a client may show: the `@reason` of the forbids that
    /// denied, or a plain statement. Never policy ids, texts or evaluation errors, which are
    /// policy internals (they go to the log and to `explain`).
    pub fn deny_reason(&self) -> String {
        let reasons: Vec<&str> = self
            .policies
            .iter()
            .filter_map(|p| p.reason.as_deref())
            .collect();
        if !self.errors.is_empty() {
            "the policy could not be evaluated for this request, so it was refused".to_owned()
        } else if !reasons.is_empty() {
            reasons.join("; ")
        } else if self.policies.is_empty() {
            "no policy permits it".to_owned()
        } else {
            "a policy forbids it".to_owned()
        }
    }
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ids = self.policy_ids().join(", ");
        match self.verdict {
            Verdict::Allow => write!(f, "allow ({ids})"),
            Verdict::ApprovalRequired => write!(f, "allow with approval ({ids})"),
            Verdict::Deny if self.policies.is_empty() && self.errors.is_empty() => {
                f.write_str("deny (no policy permits this)")
            }
            Verdict::Deny => {
                write!(f, "deny ({ids})")?;
                for error in &self.errors {
                    write!(f, "; evaluation error: {error}")?;
                }
                Ok(())
            }
        }
    }
}
