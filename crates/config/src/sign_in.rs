//! `[http.auth.approval]`: the approval page signs a person in with the issuer that
//! `[http.auth]` already trusts, instead of asking for a passkey enrolled on this machine.
//!
//! Config names the client secret only by the environment variable that holds it.

use serde_spanned::Spanned;

use crate::credential::env_name;
use crate::error::Reporter;
use crate::raw::RawApprovalSignIn;

/// How the approval page signs a person in. With it, the signed-in subject must be the
/// call's own subject; for `@approval("other")`, someone else in `approvers_group`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovalSignIn {
    /// The page's client registration at the issuer; its redirect URI is
    /// `http://localhost:PORT/approvals/signed-in` (a native client's loopback redirect,
    /// matched without its port, RFC 8252 §7.3).
    pub client_id: String,
    /// The variable holding the client secret; `None`: a public client (PKCE only).
    pub client_secret_env: Option<String>,
    /// The group (in the token's groups claim) whose members may approve someone else's call
    /// where policy asks for four eyes; `None`: nobody may.
    pub approvers_group: Option<String>,
}

pub(crate) fn approval_sign_in(
    report: &mut Reporter<'_>,
    raw: &Spanned<RawApprovalSignIn>,
) -> Option<ApprovalSignIn> {
    let raw = raw.get_ref();
    let client_id = raw.client_id.get_ref().trim();
    if client_id.is_empty() {
        report.at(Some(raw.client_id.span()), "`client_id` is empty");
    }
    let client_secret_env = raw
        .client_secret_env
        .as_ref()
        .map(|name| env_name(report, name));
    let approvers_group = raw.approvers_group.as_ref().map(|group| {
        let empty = group.get_ref().trim().is_empty();
        if empty {
            report.at(Some(group.span()), "`approvers_group` is empty");
        }
        (!empty).then(|| group.get_ref().clone())
    });
    // Every mistake is reported before any makes the table unusable.
    if client_id.is_empty()
        || client_secret_env.as_ref().is_some_and(Option::is_none)
        || approvers_group.as_ref().is_some_and(Option::is_none)
    {
        return None;
    }
    Some(ApprovalSignIn {
        client_id: client_id.to_owned(),
        client_secret_env: client_secret_env.flatten(),
        approvers_group: approvers_group.flatten(),
    })
}
