//! The approval stage: a person asked, in their own client, right before a side effect, with a
//! specific change request bound to that exact action.
//!
//! The request says what will happen (tool and arguments, long values abbreviated with their
//! size, secret-named ones hidden), acting as whom, where, to whom it sends, whether it can be
//! undone, and why approval is needed (the policies, and untrusted content the session read).
//! The form has one required yes/no field with no default: only an accept whose content says
//! `approve: true` approves. Declined, cancelled, unanswered within the timeout, a client that
//! cannot be asked, or anything else: the call does not run.
//!
//! An approval is bound to a fingerprint of the action (identity, upstream, tool, pinned
//! definition, arguments, policy version). A stateless client carries a sealed reference to
//! an entry of [`StatelessApprovals`]; each entry runs its call at most once, and a retry of
//! the same request after the call ran gets the recorded outcome instead of a second run.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use portcullis_audit::is_secret_name;
use portcullis_core::{Effect, Hints, IdentityEnvelope, Surface, ToolRules};
use rmcp::model::{
    BooleanSchema, CallToolResult, ElicitRequestParams, ElicitResult, ElicitationAction,
    ElicitationSchema, JsonObject, PrimitiveSchemaDefinition,
};

/// The key of Portcullis's own question in a stateless client's `inputRequests`.
pub(crate) const APPROVAL_KEY: &str = "portcullis.approval";

/// The field of the form that carries the person's answer.
const APPROVE_FIELD: &str = "approve";

/// Longest argument value shown whole; longer ones are cut to `SHOWN_PREFIX` characters.
const SHOWN_WHOLE: usize = 240;
const SHOWN_PREFIX: usize = 160;

/// How long a stateless approval's outcome is kept for a retry of the same request.
const OUTCOME_KEPT: Duration = Duration::from_secs(600);

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

/// How the person answered, or why they could not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Answer {
    Approved,
    /// Accepted the form without saying yes.
    NotConfirmed,
    /// Accepted with content that is not the form asked for (other members, another type).
    Invalid,
    Declined,
    Cancelled,
    TimedOut(Duration),
    /// The client cannot show a form (it did not declare form elicitation on this request).
    Unavailable,
    /// Asking failed (the client went away, or answered with an error).
    Failed(String),
}

impl Answer {
    /// The answer in an `elicitation/create` result (or a stateless retry's response).
    pub(crate) fn from_result(result: &ElicitResult) -> Self {
        match result.action {
            // Exactly the form asked for: one member, `approve`, a boolean. Anything beside it
            // (extra members, a string "true") is not an answer to this form, so it approves
            // nothing: what a person saw and what an agent filled in must not differ.
            ElicitationAction::Accept => match result.content.as_ref() {
                None | Some(serde_json::Value::Null) => Answer::NotConfirmed,
                Some(serde_json::Value::Object(content)) if content.is_empty() => {
                    Answer::NotConfirmed
                }
                Some(serde_json::Value::Object(content)) if content.len() == 1 => {
                    match content.get(APPROVE_FIELD).map(serde_json::Value::as_bool) {
                        Some(Some(true)) => Answer::Approved,
                        Some(Some(false)) => Answer::NotConfirmed,
                        _ => Answer::Invalid,
                    }
                }
                Some(_) => Answer::Invalid,
            },
            ElicitationAction::Decline => Answer::Declined,
            _ => Answer::Cancelled,
        }
    }

    /// Whether this answer approves (only the approval stage turns that into a `Granted`).
    pub(crate) fn approves(&self) -> bool {
        *self == Answer::Approved
    }

    /// The answer as recorded in the evidence.
    pub(crate) fn as_str(&self) -> &'static str {
        match self {
            Answer::Approved => "approved",
            Answer::NotConfirmed => "not_confirmed",
            Answer::Invalid => "invalid",
            Answer::Declined => "declined",
            Answer::Cancelled => "cancelled",
            Answer::TimedOut(_) => "timed_out",
            Answer::Unavailable => "unavailable",
            Answer::Failed(_) => "failed",
        }
    }

    /// The tool error the client gets when the answer is not a yes.
    pub(crate) fn refusal(&self, tool: &str) -> String {
        let why = match self {
            Answer::Approved => return format!("`{tool}` was approved"),
            Answer::NotConfirmed => {
                "the approval form was submitted without a yes".to_owned()
            }
            Answer::Invalid => {
                "the approval answer does not match the form it was asked with (only `approve`, a yes or no, may be in it)".to_owned()
            }
            Answer::Declined => "the person declined it".to_owned(),
            Answer::Cancelled => "the person cancelled the approval request".to_owned(),
            Answer::TimedOut(limit) => format!(
                "nobody answered the approval request within {} s",
                limit.as_secs()
            ),
            Answer::Unavailable => "it needs a person's approval and this client cannot show approval requests (it did not declare form elicitation)".to_owned(),
            Answer::Failed(error) => format!("the approval request could not be asked ({error})"),
        };
        format!("portcullis did not run `{tool}`: {why}; the call did not run")
    }
}

/// What a stateless retry's reference to an approval finds.
#[derive(Debug)]
pub(crate) enum Claim {
    /// The approval is waiting for this answer; its call may now run (once).
    Open,
    /// Its call already ran: the recorded result, when the call finished in one answer.
    Ran(Option<Box<CallToolResult>>),
    /// Its call is running now.
    Running,
    /// No such approval (expired, or never issued), or it was for another action.
    Unknown,
}

enum State {
    Waiting,
    Running,
    Ran(Option<Box<CallToolResult>>),
}

struct Entry {
    fingerprint: String,
    expires: Instant,
    state: State,
}

/// Approvals handed to stateless clients, by the id sealed into their `requestState`.
#[derive(Default)]
pub(crate) struct StatelessApprovals {
    next: AtomicU64,
    entries: Mutex<HashMap<u64, Entry>>,
}

impl StatelessApprovals {
    /// Opens an approval for the action `fingerprint`, answerable until `ttl` from now.
    pub(crate) fn open(&self, fingerprint: &str, ttl: Duration) -> u64 {
        let id = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        if let Ok(mut entries) = self.entries.lock() {
            let now = Instant::now();
            entries.retain(|_, entry| entry.expires > now);
            entries.insert(
                id,
                Entry {
                    fingerprint: fingerprint.to_owned(),
                    expires: now + ttl,
                    state: State::Waiting,
                },
            );
        }
        id
    }

    /// Claims approval `id` for the action `fingerprint`. A waiting approval is claimed at
    /// most once: it turns running, and whatever the answer, it cannot be answered again.
    pub(crate) fn claim(&self, id: u64, fingerprint: &str) -> Claim {
        let Ok(mut entries) = self.entries.lock() else {
            return Claim::Unknown;
        };
        let Some(entry) = entries.get_mut(&id) else {
            return Claim::Unknown;
        };
        if entry.fingerprint != fingerprint || entry.expires <= Instant::now() {
            return Claim::Unknown;
        }
        match &entry.state {
            State::Waiting => {
                entry.state = State::Running;
                entry.expires = Instant::now() + OUTCOME_KEPT;
                Claim::Open
            }
            State::Running => Claim::Running,
            State::Ran(result) => Claim::Ran(result.clone()),
        }
    }

    /// Notes how approval `id`'s call ended: its result when it finished in this answer.
    pub(crate) fn finish(&self, id: u64, result: Option<CallToolResult>) {
        if let Ok(mut entries) = self.entries.lock()
            && let Some(entry) = entries.get_mut(&id)
        {
            entry.state = State::Ran(result.map(Box::new));
        }
    }
}

/// The recipients the arguments name at `rules.recipients`, as strings.
fn recipients(rules: &ToolRules, arguments: Option<&JsonObject>) -> Vec<String> {
    let value = serde_json::Value::Object(arguments.cloned().unwrap_or_default());
    let mut found = Vec::new();
    for pointer in &rules.recipients {
        for value in portcullis_audit::values_at(&value, pointer) {
            match value {
                serde_json::Value::String(text) => found.push(text.clone()),
                serde_json::Value::Null => {}
                other => found.push(other.to_string()),
            }
        }
    }
    found.sort();
    found.dedup();
    found
}

/// The tenant or workspace the arguments name at `rules.tenant_argument`, if any.
fn target_tenant(rules: &ToolRules, arguments: Option<&JsonObject>) -> Option<String> {
    let pointer = rules.tenant_argument.as_ref()?;
    let value = serde_json::Value::Object(arguments.cloned().unwrap_or_default());
    portcullis_audit::values_at(&value, pointer)
        .into_iter()
        .find_map(|value| match value {
            serde_json::Value::String(text) => Some(text.clone()),
            serde_json::Value::Null => None,
            other => Some(other.to_string()),
        })
}

/// What a call's configured arguments say about it: the policy facts (all but `tainted`),
/// its recipients with whether each is new (`known` says which were approved before), and
/// the tenant or workspace it names.
pub fn call_facts(
    rules: &ToolRules,
    envelope: &IdentityEnvelope,
    arguments: Option<&JsonObject>,
    known: impl Fn(&str) -> bool,
) -> (
    portcullis_policy::Facts,
    Vec<(String, bool)>,
    Option<String>,
) {
    let recipients: Vec<(String, bool)> = recipients(rules, arguments)
        .into_iter()
        .map(|recipient| {
            let new = !known(&recipient);
            (recipient, new)
        })
        .collect();
    let target = target_tenant(rules, arguments);
    let facts = portcullis_policy::Facts {
        crosses_tenant: target
            .as_deref()
            .is_some_and(|target| Some(target) != envelope.tenant()),
        new_recipient: recipients.iter().any(|(_, new)| *new),
        escalates: rules.escalates,
        tainted: false,
    };
    (facts, recipients, target)
}

/// Whether a call can carry data out over the network, and why: what makes a read from the
/// open world need approval once a session has read untrusted content (its URL can hold
/// whatever that content asked for).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reach {
    /// Nothing says it reaches the network.
    Local,
    /// It can: the reason, and the URLs its arguments hold with whether each names a host this
    /// session has not read.
    Network {
        why: String,
        urls: Vec<(String, bool)>,
    },
}

/// Whether a call of a tool of an upstream on `surface`, with the upstream's `hints` and these
/// `arguments`, can reach the network; `has_read` says which hosts this session reached before.
pub fn reach(
    surface: Surface,
    hints: Hints,
    arguments: Option<&JsonObject>,
    has_read: impl Fn(&str) -> bool,
) -> Reach {
    let value = serde_json::Value::Object(arguments.cloned().unwrap_or_default());
    let urls: Vec<(String, bool)> = urls_in(&value)
        .into_iter()
        .map(|(url, host)| {
            let new = !has_read(&host);
            (url, new)
        })
        .collect();
    let why = match surface {
        Surface::HttpApi | Surface::Browser | Surface::Remote => {
            Some(format!("its upstream's surface is {}", surface.as_str()))
        }
        // Programs run there can open connections of their own.
        Surface::Shell | Surface::Code => Some(format!(
            "its upstream's surface is {}, which runs programs",
            surface.as_str()
        )),
        _ if hints.open_world == Some(true) => {
            Some("its upstream marks it as reaching the open world".to_owned())
        }
        _ if urls.iter().any(|(_, new)| *new) => {
            Some("its arguments name a host this session has not read".to_owned())
        }
        _ => None,
    };
    match why {
        Some(why) => Reach::Network { why, urls },
        None => Reach::Local,
    }
}

/// URL schemes whose URLs reach another host (`file:` and the like do not).
const NETWORK_SCHEMES: &[&str] = &[
    "http", "https", "ws", "wss", "ftp", "ftps", "sftp", "ssh", "git", "smtp", "imap", "ldap",
    "ldaps", "mailto", "gopher", "rtsp", "s3", "gs",
];

/// Every URL-shaped substring (`scheme://authority…` with a network scheme) of every string in
/// `value`, at any depth, whole, each with its host (lowercase, without user, port or
/// brackets).
pub(crate) fn urls_in(value: &serde_json::Value) -> Vec<(String, String)> {
    let mut found = Vec::new();
    let mut stack = vec![value];
    while let Some(value) = stack.pop() {
        match value {
            serde_json::Value::String(text) => found.extend(urls_in_text(text)),
            serde_json::Value::Array(items) => stack.extend(items),
            serde_json::Value::Object(members) => stack.extend(members.values()),
            _ => {}
        }
    }
    found
}

fn urls_in_text(text: &str) -> Vec<(String, String)> {
    let mut found = Vec::new();
    let mut searched = 0;
    while let Some(at) = text.get(searched..).and_then(|rest| rest.find("://")) {
        let separator = searched + at;
        searched = separator + 3;
        let before = text.get(..separator).unwrap_or_default();
        let scheme_start = before
            .rfind(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')))
            .map_or(0, |i| i + 1);
        let scheme = before.get(scheme_start..).unwrap_or_default();
        if !NETWORK_SCHEMES
            .iter()
            .any(|known| scheme.eq_ignore_ascii_case(known))
        {
            continue;
        }
        let rest = text.get(searched..).unwrap_or_default();
        let end = rest
            .find(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | '<' | '>' | '`'))
            .unwrap_or(rest.len());
        let Some(host) = host_of(rest.get(..end).unwrap_or_default()) else {
            continue;
        };
        let url = text
            .get(scheme_start..searched + end)
            .unwrap_or_default()
            .to_owned();
        found.push((url, host));
        searched += end;
    }
    found
}

/// The host of an authority-and-path, lowercase, without user info, port or IPv6 brackets.
fn host_of(after_scheme: &str) -> Option<String> {
    let authority_end = after_scheme
        .find(['/', '?', '#', '\\'])
        .unwrap_or(after_scheme.len());
    let authority = after_scheme.get(..authority_end)?;
    let host_port = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    let host = if let Some(bracketed) = host_port.strip_prefix('[') {
        bracketed.split_once(']')?.0
    } else {
        host_port
            .split_once(':')
            .map_or(host_port, |(host, _)| host)
    };
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    (!host.is_empty()).then_some(host)
}

/// The untrusted upstreams whose content each session has received, by a key the caller
/// makes: a session-era session's id, or a stateless client's user and client (stateless
/// requests share no session, so their taint is kept per user and client, which can only
/// over-taint).
#[derive(Default)]
pub(crate) struct Taints {
    by_key: Mutex<HashMap<String, BTreeSet<String>>>,
    /// The hosts each key's calls reached (allowed, or approved by the person), by the same key.
    hosts_read: Mutex<HashMap<String, BTreeSet<String>>>,
}

impl Taints {
    pub(crate) fn mark(&self, key: &str, upstream: &str) {
        if let Ok(mut keys) = self.by_key.lock() {
            let new = keys
                .entry(key.to_owned())
                .or_default()
                .insert(upstream.to_owned());
            if new {
                tracing::info!(
                    upstream,
                    "the session received content from an untrusted upstream; its side effects now need approval"
                );
            }
        }
    }

    /// Notes that a call of `key` that reaches `hosts` was let run.
    pub(crate) fn remember_hosts(&self, key: &str, hosts: impl IntoIterator<Item = String>) {
        if let Ok(mut keys) = self.hosts_read.lock() {
            keys.entry(key.to_owned()).or_default().extend(hosts);
        }
    }

    /// Whether a call of `key` reached `host` before. A poisoned table knows none (fail
    /// closed: every host is new).
    pub(crate) fn has_read(&self, key: &str, host: &str) -> bool {
        self.hosts_read
            .lock()
            .ok()
            .and_then(|keys| keys.get(key).map(|hosts| hosts.contains(host)))
            .unwrap_or(false)
    }

    /// The untrusted upstreams `key` has read, in name order. A poisoned table counts as
    /// tainted by everything unknown (fail closed).
    pub(crate) fn of(&self, key: &str) -> Vec<String> {
        match self.by_key.lock() {
            Ok(keys) => keys
                .get(key)
                .map(|set| set.iter().cloned().collect())
                .unwrap_or_default(),
            Err(_) => vec!["(unknown)".to_owned()],
        }
    }
}

/// Recipients approved before, per user: a recipient is new until a call naming it was
/// approved.
#[derive(Default)]
pub(crate) struct KnownRecipients {
    by_user: Mutex<HashMap<String, BTreeSet<String>>>,
}

impl KnownRecipients {
    pub(crate) fn is_known(&self, user: &str, recipient: &str) -> bool {
        self.by_user
            .lock()
            .ok()
            .and_then(|users| users.get(user).map(|known| known.contains(recipient)))
            .unwrap_or(false)
    }

    pub(crate) fn remember(&self, user: &str, recipients: &[String]) {
        if let Ok(mut users) = self.by_user.lock() {
            let known = users.entry(user.to_owned()).or_default();
            for recipient in recipients {
                known.insert(recipient.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests;
