//! What a call's arguments and its upstream say about it before it is decided: recipients and
//! tenant (from config's argument pointers), whether it can reach the network, and the URLs it
//! names. Pure: plain values in, plain values out.

use portcullis_core::{Hints, IdentityEnvelope, Surface, ToolRules};
use rmcp::model::JsonObject;

/// The recipients the arguments name at `rules.recipients`, as strings.
pub(super) fn recipients(rules: &ToolRules, arguments: Option<&JsonObject>) -> Vec<String> {
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
pub(super) fn target_tenant(rules: &ToolRules, arguments: Option<&JsonObject>) -> Option<String> {
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

/// Every e-mail-shaped address (`local@domain`) in every string of `value`, at any depth,
/// whole, in the order found, each once.
pub(crate) fn addresses_in(value: &serde_json::Value) -> Vec<String> {
    let mut found: Vec<String> = Vec::new();
    let mut stack = vec![value];
    while let Some(value) = stack.pop() {
        match value {
            serde_json::Value::String(text) => {
                let tokens = text.split(|c: char| {
                    !(c.is_alphanumeric() || matches!(c, '.' | '_' | '%' | '+' | '-' | '@'))
                });
                for token in tokens {
                    let token = token.trim_matches('.');
                    let is_address = token.split_once('@').is_some_and(|(local, domain)| {
                        !local.is_empty() && !domain.is_empty() && !domain.contains('@')
                    });
                    if is_address && !found.iter().any(|seen| seen == token) {
                        found.push(token.to_owned());
                    }
                }
            }
            // In order: the array's items as they come.
            serde_json::Value::Array(items) => stack.extend(items.iter().rev()),
            serde_json::Value::Object(members) => stack.extend(members.values().rev()),
            _ => {}
        }
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
