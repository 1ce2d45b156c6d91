//! What the policies decided, which policies decided it, and how to say so to a person.

use std::fmt;

/// Allow, allow only with a person's approval (under the strictest rule of the permits that
/// ask for it), or deny.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    ApprovalRequired(ApprovalRule),
    Deny,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Allow => "allow",
            Verdict::ApprovalRequired(_) => "approval_required",
            Verdict::Deny => "deny",
        }
    }
}

/// What a permit's `@approval("…")` asks of the person's answer. Ordered from the least to the
/// most strict: when several determining permits ask, the strictest wins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ApprovalRule {
    /// `required`: a person approves; Portcullis may offer to let the answer cover calls like
    /// this one for the rest of the session.
    Required,
    /// `once`: a person approves, and the answer covers this one call only.
    Once,
    /// `other`: someone other than the call's subject approves (four eyes), this one call only.
    Other,
}

impl ApprovalRule {
    /// The annotation values, as policy authors write them.
    pub const VALUES: [&'static str; 3] = ["required", "once", "other"];

    /// The rule an annotation value names; `None` for any other text (a load error: an
    /// approval rule nobody enforces must not pass for one).
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "required" => Some(ApprovalRule::Required),
            "once" => Some(ApprovalRule::Once),
            "other" => Some(ApprovalRule::Other),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ApprovalRule::Required => "required",
            ApprovalRule::Once => "once",
            ApprovalRule::Other => "other",
        }
    }

    /// Whether an answer may cover more than the one call it was asked for.
    pub fn allows_scope(self) -> bool {
        self == ApprovalRule::Required
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
            Verdict::ApprovalRequired(ApprovalRule::Required) => {
                write!(f, "allow with approval ({ids})")
            }
            Verdict::ApprovalRequired(ApprovalRule::Once) => {
                write!(f, "allow with approval of this call only ({ids})")
            }
            Verdict::ApprovalRequired(ApprovalRule::Other) => {
                write!(f, "allow with approval by another person ({ids})")
            }
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
