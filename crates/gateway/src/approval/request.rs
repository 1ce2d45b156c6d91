//! The change request a person is asked to approve, and the fingerprint the approval is bound
//! to: built from plain values (the envelope, the tool's rules, the arguments as JSON), so that
//! what the person reads is tested as data (`tests.rs`), apart from any protocol type but the
//! one form it is sent as.

use std::collections::BTreeMap;

use portcullis_audit::is_secret_name;
use portcullis_core::{Effect, IdentityEnvelope, ToolRules};
use rmcp::model::{
    BooleanSchema, ConstTitle, ElicitRequestParams, ElicitationSchema, EnumSchema, JsonObject,
    PrimitiveSchemaDefinition, SingleSelectEnumSchema, TitledSingleSelectEnumSchema,
};

use super::scope::{SESSION, THIS_CALL};
use super::{Offer, Reach, addresses_in, urls_in};

/// The field of the form that carries the person's answer.
pub(super) const APPROVE_FIELD: &str = "approve";
/// The field of the form that says what the answer covers, present only when a session scope
/// is offered (`approval/scope.rs`).
pub(super) const SCOPE_FIELD: &str = "scope";

/// Longest argument value shown whole; a longer one shows its first and its last
/// `SHOWN_END` characters, with the size and digest of what is between.
const SHOWN_WHOLE: usize = 240;
const SHOWN_END: usize = 100;

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
    /// The files and directories its arguments name, resolved as the upstream will see them.
    pub paths: &'a [NamedPath],
    /// What the answer may cover besides this call (scoped answers).
    pub offer: &'a Offer,
    /// When the tool's definition is not the one pinned for it (`pins.rs`): why, and the
    /// lines that differ. Approving accepts it.
    pub definition_change: Option<&'a str>,
}

/// A path argument as the person is shown it.
pub(crate) struct NamedPath {
    /// The JSON pointer of the argument.
    pub pointer: String,
    /// Where it resolved: absolute, links followed.
    pub resolved: std::path::PathBuf,
    /// Whether something is there now.
    pub exists: bool,
    /// Whether what is there is a directory.
    pub is_directory: bool,
}

impl ChangeRequest<'_> {
    /// The text shown to the person: what, as whom, what follows from it, and why it is asked.
    pub(crate) fn message(&self) -> String {
        self.message_with(Values::Abbreviated)
    }

    /// The same request with every value whole (but those named like secrets), as the
    /// approval page shows it: nothing that decides the approval is left out there.
    pub(crate) fn full_message(&self) -> String {
        self.message_with(Values::Whole)
    }

    fn message_with(&self, values: Values) -> String {
        let mut text =
            String::from("Portcullis asks you to approve one action before it runs.\n\n");
        self.what(&mut text, values);
        self.who(&mut text);
        self.consequences(&mut text);
        self.why(&mut text);
        // The page approves this call only: the offer is the form's.
        if let Some(offer) = self
            .offer
            .explained()
            .filter(|_| values == Values::Abbreviated)
        {
            text.push_str(&offer);
        }
        text.push_str(
            "\nApprove only if you want exactly this to happen. Anything but an explicit yes leaves it undone.",
        );
        text
    }

    /// The tool, where it runs, and its arguments: exact, or marked abbreviated where a long
    /// value shows only its two ends (a secret-named one only its size).
    fn what(&self, text: &mut String, values: Values) {
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
            return;
        }
        let shown: Vec<(&String, Shown)> = arguments
            .iter()
            .map(|(name, value)| (name, shown(name, value, values)))
            .collect();
        if shown.iter().all(|(_, value)| !value.cut) {
            text.push_str(", with these exact arguments:\n");
        } else {
            text.push_str(
                ", with these arguments, abbreviated where marked (a long value shows its beginning and its end, with the size and digest of what is between):\n",
            );
        }
        for (name, value) in shown {
            text.push_str(&format!("  {name}: {}\n", value.text));
        }
        self.named(text);
    }

    /// Every address and link the arguments hold, whole, however long the value that holds
    /// it (those already listed as recipients or network reach are not repeated).
    fn named(&self, text: &mut String) {
        let arguments = serde_json::Value::Object(self.arguments.cloned().unwrap_or_default());
        let listed_elsewhere = |candidate: &str| {
            self.recipients
                .iter()
                .any(|(recipient, _)| recipient == candidate)
                || matches!(self.reach, Reach::Network { urls, .. } if urls.iter().any(|(url, _)| url == candidate))
        };
        let mut named: Vec<String> = addresses_in(&arguments);
        for (url, _) in urls_in(&arguments) {
            if !named.contains(&url) {
                named.push(url);
            }
        }
        named.retain(|candidate| !listed_elsewhere(candidate));
        if named.is_empty() {
            return;
        }
        text.push_str(&format!(
            "Addresses and links in the arguments ({}, every one in full):\n",
            named.len()
        ));
        for candidate in named {
            if candidate.contains("://") {
                text.push_str(&format!("  {candidate} (host {})\n", host(&candidate)));
            } else {
                text.push_str(&format!("  {candidate}\n"));
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

    /// Tenant crossing, the files it touches, recipients, network reach, privileges, and
    /// whether it can be undone.
    fn consequences(&self, text: &mut String) {
        if let Some(target) = self.target_tenant {
            let session = self.envelope.tenant().unwrap_or("none");
            if Some(target) != self.envelope.tenant() {
                text.push_str(&format!(
                    "Crosses into tenant or workspace `{target}` (this session's: {session})\n"
                ));
            }
        }
        if !self.paths.is_empty() {
            text.push_str("Files it names, resolved as the upstream will see them:\n");
            for path in self.paths {
                text.push_str(&format!(
                    "  {} ({}): {}\n",
                    path.resolved.display(),
                    path.pointer,
                    path_state(self.effect, path.exists)
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
                    ", a host this session has not read"
                } else {
                    ""
                };
                text.push_str(&format!("  {url} (host {}{note})\n", host(url)));
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
        if let Some(change) = self.definition_change {
            text.push_str(&format!(
                "Caution: the tool's definition is not the one accepted for it: {change}\nApproving also accepts this definition: it is pinned as the tool lists it now, and listed again.\n"
            ));
        }
        if !self.tainted_by.is_empty() {
            text.push_str(&format!(
                "Caution: asked because this session read content from untrusted upstream{} {} before this request; that content may have asked for this action.\n",
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

    /// The form-mode elicitation: one required boolean, no default; and, when a session scope
    /// is offered, what the answer covers (this call unless the person chooses the session).
    pub(crate) fn params(&self) -> ElicitRequestParams {
        ElicitRequestParams::FormElicitationParams {
            meta: None,
            message: self.message(),
            requested_schema: approval_schema(self.offer),
        }
    }
}

fn approval_schema(offer: &Offer) -> ElicitationSchema {
    let approve = BooleanSchema::new()
        .title("Run exactly this action")
        .description("Yes runs it once, as shown. No, or no answer, leaves it undone.");
    let mut fields = BTreeMap::from([(
        APPROVE_FIELD.to_owned(),
        PrimitiveSchemaDefinition::Boolean(approve),
    )]);
    if let Some(session) = offer.session_title() {
        let mut scope = TitledSingleSelectEnumSchema::new(vec![
            ConstTitle::new(THIS_CALL, "Only this call"),
            ConstTitle::new(SESSION, session),
        ]);
        scope.title = Some("What your yes covers".into());
        // The narrower choice is the default: a wider one is only ever chosen.
        scope.default = Some(THIS_CALL.to_owned());
        fields.insert(
            SCOPE_FIELD.to_owned(),
            PrimitiveSchemaDefinition::Enum(EnumSchema::Single(SingleSelectEnumSchema::Titled(
                scope,
            ))),
        );
    }
    ElicitationSchema::new(fields).with_required(vec![APPROVE_FIELD.to_owned()])
}

/// The host a URL reaches, as the request goes (user info, port and brackets dropped:
/// `https://bank.example@evil.example/` reaches `evil.example`).
fn host(url: &str) -> String {
    urls_in(&serde_json::Value::String(url.to_owned()))
        .into_iter()
        .next()
        .map_or_else(|| "unknown".to_owned(), |(_, host)| host)
}

/// What a call of `effect` does to a path where something `exists` or not.
fn path_state(effect: Effect, exists: bool) -> &'static str {
    match (effect, exists) {
        (Effect::Write, true) => "exists; it is overwritten or changed",
        (Effect::Write, false) => "new; it is created",
        (Effect::Destructive, true) => "exists; it is deleted or overwritten",
        (Effect::Unknown, true) => "exists; it may be changed or deleted",
        (_, true) => "exists",
        (_, false) => "does not exist yet",
    }
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

/// How long argument values are shown.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Values {
    /// A long value as its two ends (the client's form).
    Abbreviated,
    /// Every value whole (the approval page).
    Whole,
}

/// An argument value as shown, and whether anything of it was left out.
struct Shown {
    text: String,
    cut: bool,
}

/// An argument value as shown: JSON; a long one as its first and last characters with the
/// size and digest of what is between (an instruction at the end of a long text is what the
/// person must see); a secret-named one hidden (the person approves that a secret is passed,
/// not its text).
fn shown(name: &str, value: &serde_json::Value, values: Values) -> Shown {
    let text = value.to_string();
    if is_secret_name(name) {
        return Shown {
            text: format!("[hidden: {} bytes]", text.len()),
            cut: true,
        };
    }
    let chars: Vec<char> = text.chars().collect();
    if chars.len() <= SHOWN_WHOLE || values == Values::Whole {
        return Shown { text, cut: false };
    }
    let head: String = chars.iter().take(SHOWN_END).collect();
    let middle: String = chars
        .iter()
        .skip(SHOWN_END)
        .take(chars.len() - 2 * SHOWN_END)
        .collect();
    let tail: String = chars.iter().skip(chars.len() - SHOWN_END).collect();
    let digest = portcullis_audit::digest_bytes(middle.as_bytes());
    Shown {
        text: format!(
            "{head} …[abbreviated: {} bytes in all; the {} bytes between not shown, {digest}]… {tail}",
            text.len(),
            middle.len()
        ),
        cut: true,
    }
}

/// What an approval is bound to: identity, upstream, tool, the pinned definition, the
/// arguments (by their keyed digest) and the policy in force, by the digest of its text
/// (`PolicyEngine::digest`): replicas serving the same policy compute the same fingerprint, and
/// a reload that changes the policy changes every fingerprint (an approval given under the old
/// text approves nothing under the new one).
pub(crate) struct Fingerprinted<'a> {
    pub issuer: &'a str,
    pub subject: &'a str,
    pub upstream: &'a str,
    pub tool: &'a str,
    pub definition: &'a str,
    pub arguments: &'a str,
    pub policy: &'a str,
}

/// The fingerprint of an action: a digest of every part, as a JSON array, so that no part can
/// slide into the next one whatever it holds (a subject or a tool name with a newline in it).
pub(crate) fn fingerprint(action: &Fingerprinted<'_>) -> String {
    let parts = serde_json::json!([
        action.issuer,
        action.subject,
        action.upstream,
        action.tool,
        action.definition,
        action.arguments,
        action.policy,
    ]);
    portcullis_audit::digest_bytes(parts.to_string().as_bytes())
}
