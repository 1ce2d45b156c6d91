//! The change request a person is asked to approve, and the fingerprint the approval is bound
//! to: built from plain values (the envelope, the tool's rules, the arguments as JSON), so that
//! what the person reads is tested as data (`tests.rs`), apart from any protocol type but the
//! one form it is sent as.

use std::collections::BTreeMap;

use portcullis_audit::is_secret_name;
use portcullis_core::{Effect, IdentityEnvelope, ToolRules};
use rmcp::model::{
    BooleanSchema, ElicitRequestParams, ElicitationSchema, JsonObject, PrimitiveSchemaDefinition,
};

use super::Reach;

/// The field of the form that carries the person's answer.
pub(super) const APPROVE_FIELD: &str = "approve";

/// Longest argument value shown whole; longer ones are cut to `SHOWN_PREFIX` characters.
const SHOWN_WHOLE: usize = 240;
const SHOWN_PREFIX: usize = 160;

/// Everything the change request shows.
pub(crate) struct ChangeRequest<'a> {
    pub envelope: &'a IdentityEnvelope,
    pub upstream: &'a str,
    pub surface: &'a str,
    /// The tool as the client names it.
    pub exposed: &'a str,
    pub effect: Effect,
    pub rules: &'a ToolRules,
    pub arguments: Option<&'a JsonObject>,
    /// Recipients or destinations the arguments name, and which of them are new.
    pub recipients: &'a [(String, bool)],
    /// The tenant or workspace the call acts in, when config names the argument.
    pub target_tenant: Option<&'a str>,
    /// Why approval is asked: the determining policies, in order.
    pub policies: &'a [String],
    /// Untrusted upstreams whose content this session received, if any.
    pub tainted_by: &'a [String],
    /// Where the call can reach the network, when that is why it is asked (see [`Reach`]).
    pub reach: &'a Reach,
}

impl ChangeRequest<'_> {
    /// The text shown to the person: what, as whom, what follows from it, and why it is asked.
    pub(crate) fn message(&self) -> String {
        let mut text =
            String::from("Portcullis asks you to approve one action before it runs.\n\n");
        self.what(&mut text);
        self.who(&mut text);
        self.consequences(&mut text);
        self.why(&mut text);
        text.push_str(
            "\nApprove only if you want exactly this to happen. Anything but an explicit yes leaves it undone.",
        );
        text
    }

    /// The tool, where it runs, and its exact arguments.
    fn what(&self, text: &mut String) {
        text.push_str(&format!(
            "What: `{}` ({}) on upstream `{}`, surface {}",
            self.exposed,
            describe_effect(self.effect),
            self.upstream,
            self.surface
        ));
        let arguments = self.arguments.cloned().unwrap_or_default();
        if arguments.is_empty() {
            text.push_str(", with no arguments\n");
        } else {
            text.push_str(", with these exact arguments:\n");
            for (name, value) in &arguments {
                text.push_str(&format!("  {name}: {}\n", shown(name, value)));
            }
        }
    }

    /// Who the call acts as.
    fn who(&self, text: &mut String) {
        let user = self.envelope.user();
        text.push_str(&format!("As: {} (issuer {})", user.subject, user.issuer));
        if let Some(tenant) = self.envelope.tenant() {
            text.push_str(&format!(", tenant {tenant}"));
        }
        if let Some(client) = self.envelope.client() {
            text.push_str(&format!(", through client {client}"));
        }
        text.push('\n');
    }

    /// Tenant crossing, recipients, network reach, privileges, and whether it can be undone.
    fn consequences(&self, text: &mut String) {
        if let Some(target) = self.target_tenant {
            let session = self.envelope.tenant().unwrap_or("none");
            if Some(target) != self.envelope.tenant() {
                text.push_str(&format!(
                    "Crosses into tenant or workspace `{target}` (this session's: {session})\n"
                ));
            }
        }
        if !self.recipients.is_empty() {
            let listed: Vec<String> = self
                .recipients
                .iter()
                .map(|(recipient, new)| {
                    if *new {
                        format!("{recipient} (new)")
                    } else {
                        recipient.clone()
                    }
                })
                .collect();
            text.push_str(&format!("Sends to or acts on: {}\n", listed.join(", ")));
        }
        if let Reach::Network { why, urls } = self.reach {
            text.push_str(&format!("Reaches the network: {why}\n"));
            // Whole, never abbreviated: data carried out travels in the URL itself.
            for (url, new) in urls {
                let note = if *new {
                    " (a host this session has not read)"
                } else {
                    ""
                };
                text.push_str(&format!("  {url}{note}\n"));
            }
        }
        if self.rules.escalates {
            text.push_str("Changes privileges (roles, permissions or keys)\n");
        }
        text.push_str(match self.rules.reversible {
            Some(true) => "Can be undone: yes\n",
            Some(false) => "Can be undone: no\n",
            None => "Can be undone: not known\n",
        });
    }

    /// Untrusted content the session read, and the policies that ask.
    fn why(&self, text: &mut String) {
        let quoted = |names: &[String]| {
            names
                .iter()
                .map(|name| format!("`{name}`"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        if !self.tainted_by.is_empty() {
            text.push_str(&format!(
                "Caution: this session has received content from untrusted upstream{} {} before this request; that content may have asked for this action.\n",
                if self.tainted_by.len() == 1 { "" } else { "s" },
                quoted(self.tainted_by)
            ));
        }
        if !self.policies.is_empty() {
            text.push_str(&format!(
                "Asked because of policy {}\n",
                quoted(self.policies)
            ));
        }
    }

    /// The form-mode elicitation: one required boolean, no default.
    pub(crate) fn params(&self) -> ElicitRequestParams {
        ElicitRequestParams::FormElicitationParams {
            meta: None,
            message: self.message(),
            requested_schema: approval_schema(),
        }
    }
}

fn approval_schema() -> ElicitationSchema {
    let approve = BooleanSchema::new()
        .title("Run exactly this action")
        .description("Yes runs it once, as shown. No, or no answer, leaves it undone.");
    ElicitationSchema::new(BTreeMap::from([(
        APPROVE_FIELD.to_owned(),
        PrimitiveSchemaDefinition::Boolean(approve),
    )]))
    .with_required(vec![APPROVE_FIELD.to_owned()])
}

fn describe_effect(effect: Effect) -> &'static str {
    match effect {
        Effect::Read => "reads",
        Effect::Write => "writes",
        Effect::Destructive => "destroys or overwrites",
        Effect::Send => "sends outside: visible to others",
        Effect::Physical => "acts in the physical world",
        Effect::Unknown => "effect not described by config: may do anything",
    }
}

/// An argument value as shown: JSON, long ones abbreviated with their size, secret-named
/// ones hidden (the person approves that a secret is passed, not its text).
fn shown(name: &str, value: &serde_json::Value) -> String {
    let text = value.to_string();
    if is_secret_name(name) {
        return format!("[hidden: {} bytes]", text.len());
    }
    if text.chars().count() <= SHOWN_WHOLE {
        return text;
    }
    let prefix: String = text.chars().take(SHOWN_PREFIX).collect();
    format!("{prefix}… [{} bytes in all]", text.len())
}

/// What an approval is bound to: identity, upstream, tool, the pinned definition, the
/// arguments (by their keyed digest) and the policy version.
pub(crate) struct Fingerprinted<'a> {
    pub issuer: &'a str,
    pub subject: &'a str,
    pub upstream: &'a str,
    pub tool: &'a str,
    pub definition: &'a str,
    pub arguments: &'a str,
    pub policy_version: u64,
}

/// The fingerprint of an action: a digest of every part, one per line.
pub(crate) fn fingerprint(action: &Fingerprinted<'_>) -> String {
    portcullis_audit::digest_bytes(
        format!(
            "{}\n{}\n{}\n{}\n{}\n{}\n{}",
            action.issuer,
            action.subject,
            action.upstream,
            action.tool,
            action.definition,
            action.arguments,
            action.policy_version
        )
        .as_bytes(),
    )
}
