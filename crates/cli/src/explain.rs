//! `portcullis explain`: the decision for one tool call, where it was made, and the policies
//! that produced it, from the same code `serve` decides with.

use std::collections::BTreeSet;
use std::path::Path;

use anyhow::{Context as _, bail};
use portcullis_config::{Config, Upstream};
use portcullis_core::IdentityEnvelope;
use portcullis_gateway::{Catalogued, Reach};
use portcullis_policy::{ApprovalRule, CallDecision, Decision, Hidden, PolicyEngine, Verdict};

use crate::{
    AsIdentity, Missing, Session, decided_from_config, launched, live_check, load, policy,
};

/// What the upstream's catalog said of the call, when it was asked.
type Looked = Option<Result<Option<String>, Catalogued>>;

pub(crate) fn explain(
    path: &Path,
    identity: &AsIdentity,
    (tool, look): (&str, bool),
    arguments: Option<&str>,
    session: Session,
) -> anyhow::Result<()> {
    // Offline, nothing starts: a launcher upstream need not be prepared.
    let config = if look {
        launched(path, Missing::Fail)?
    } else {
        load(path)?
    };
    let engine = policy(&config)?;
    let envelope = identity.envelope(&config);
    let arguments: Option<serde_json::Map<String, serde_json::Value>> = arguments
        .map(|text| serde_json::from_str(text).context("the arguments are not a JSON object"))
        .transpose()?;
    let catalog: Looked = if look {
        Some(live_check(&config, &envelope, tool, arguments.as_ref())?)
    } else {
        None
    };
    let (upstream, local) = resolve(&config, tool)?;
    if let Some(Err(Catalogued::NotListed)) = catalog {
        bail!(
            "upstream `{}` does not list `{tool}`: there is no such tool, so no call of it can run",
            upstream.name
        );
    }
    let (outcome, reach) = decided_from_config(
        (&config, &engine),
        (identity, &envelope),
        (upstream, local),
        arguments.as_ref(),
        session == Session::Tainted,
    );
    // As in serve: a visible tool's arguments are checked before policy decides.
    if let (Some(Ok(Some(denied))), false) = (&catalog, matches!(outcome, CallDecision::Hidden(_)))
    {
        println!("decision: deny (refused before policy: {denied})");
        println!(
            "  decided at: check (the arguments against the tool's input schema, then paths against the roots)"
        );
        print_acting_as(&envelope);
        return Ok(());
    }
    let Some((step, verdict)) = verdict(&outcome, &envelope) else {
        return Ok(());
    };
    let Some(decision) = outcome.decision() else {
        return Ok(());
    };
    println!("decision: {verdict}");
    println!("  decided at: {step}");
    if let CallDecision::NeedsApproval { rule, .. } = &outcome {
        println!("  approval: {}", approval_rule(*rule));
    }
    if let Reach::Network { why, urls } = &reach {
        println!("  reaches the network: {why}");
        for (url, _) in urls {
            println!("    {url}");
        }
    }
    print_acting_as(&envelope);
    println!("  {}", catalog_note(&catalog, upstream, tool));
    print_identity_and_tool(&envelope, upstream, local);
    print_determined_by(&engine, decision);
    Ok(())
}

/// The upstream and its own tool name that `tool` names.
fn resolve<'c>(config: &'c Config, tool: &'c str) -> anyhow::Result<(&'c Upstream, &'c str)> {
    let names: Vec<_> = config.upstreams.iter().map(|u| u.name.clone()).collect();
    config
        .namespacing
        .resolve(&names, tool)
        .and_then(|n| Some((config.upstreams.get(n.upstream)?, n.local)))
        .with_context(|| format!("`{tool}` names no configured upstream"))
}

fn catalog_note(catalog: &Looked, upstream: &Upstream, tool: &str) -> String {
    match catalog {
        Some(Ok(_)) => format!(
            "catalog: upstream `{}` lists `{tool}`; its arguments pass the check stage (schema, and paths against config's roots)",
            upstream.name
        ),
        Some(Err(Catalogued::Unavailable(reason))) => format!(
            "catalog: could not look (upstream `{}`: {reason}); decided from config alone, arguments unchecked",
            upstream.name
        ),
        Some(Err(Catalogued::NotListed)) | None => {
            "catalog: not consulted (--offline); decided from config alone, arguments unchecked"
                .to_owned()
        }
    }
}

fn print_acting_as(envelope: &IdentityEnvelope) {
    let user = envelope.user();
    println!("  acting as: {} ({})", user.subject, user.issuer);
}

/// Where the decision was made and what it is; `None` when it was already printed whole (a
/// tool this identity cannot be listed, for lack of scopes).
fn verdict(
    outcome: &CallDecision,
    envelope: &IdentityEnvelope,
) -> Option<(&'static str, &'static str)> {
    const WITH_APPROVAL: &str = "allow with approval (the person is asked in their client or on the approval page; the call runs only on a yes)";
    Some(match outcome {
        CallDecision::Hidden(Hidden::MissingScopes(missing)) => {
            println!("decision: deny (the tool is not listed, so it cannot be called)");
            println!(
                "  decided at: required scopes (missing `{}`; this identity cannot step up to them)",
                missing.join("`, `")
            );
            print_acting_as(envelope);
            return None;
        }
        CallDecision::Hidden(Hidden::ByPolicy(_)) => (
            "list_tool (the tool is hidden, so it cannot be called)",
            "deny",
        ),
        CallDecision::Denied { .. } => ("call_tool", "deny"),
        CallDecision::Allowed(_) => ("call_tool", "allow"),
        CallDecision::NeedsApproval {
            because_tainted: true,
            ..
        } => (
            "call_tool, then the taint rule (the session read untrusted content)",
            WITH_APPROVAL,
        ),
        CallDecision::NeedsApproval { .. } => ("call_tool", WITH_APPROVAL),
    })
}

/// What the approval rule lets the answer be.
fn approval_rule(rule: ApprovalRule) -> &'static str {
    match rule {
        ApprovalRule::Required => {
            "required (the person may be offered to answer for calls like it in this session)"
        }
        ApprovalRule::Once => "once (the answer covers this one call only)",
        ApprovalRule::Other => {
            "other (four eyes: another enrolled approver's passkey, on the approval page; the caller's client is not asked)"
        }
    }
}

fn print_identity_and_tool(envelope: &IdentityEnvelope, upstream: &Upstream, local: &str) {
    let list = |values: &BTreeSet<String>| {
        if values.is_empty() {
            "none".to_owned()
        } else {
            values.iter().cloned().collect::<Vec<_>>().join(", ")
        }
    };
    let rules = upstream.tool_rules(local);
    println!(
        "  groups: {}; tenant: {}; scopes: {}",
        list(envelope.groups()),
        envelope.tenant().unwrap_or("none"),
        list(envelope.scopes())
    );
    println!(
        "  tool: {local} of upstream {} (surface {}, effect {})",
        upstream.name,
        upstream.surface,
        rules.effect()
    );
    println!("  required scopes: {}", list(&rules.scopes));
}

fn print_determined_by(engine: &PolicyEngine, decision: &Decision) {
    if decision.verdict == Verdict::Deny {
        println!("  told to the client: {}", decision.deny_reason());
    }
    for error in &decision.errors {
        println!("  evaluation error: {error}");
    }
    if decision.policies.is_empty() {
        println!("determined by: no policy (Cedar denies what no policy permits)");
        return;
    }
    println!("determined by:");
    for reference in &decision.policies {
        let place = if reference.line > 0 {
            format!("{}:{}", reference.file, reference.line)
        } else {
            reference.file.clone()
        };
        println!("  {} ({place})", reference.id);
        if let Some(text) = engine.policy_text(reference) {
            for line in text.lines() {
                println!("    {line}");
            }
        }
    }
}
