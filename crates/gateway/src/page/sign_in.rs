//! The approval page with `[http.auth.approval]`: the person signs in with the issuer that
//! `[http.auth]` trusts (authorization code with PKCE, `prompt=login`), and the identity the
//! issuer's token stands for, mapped by the same claims as a client's bearer token, approves.
//! The signed-in subject must be the call's own; for a four-eyes call, someone else in the
//! approvers group. The ledger checks that rule (`DecidedBy::SignedIn`); the page only shows it.
//!
//! A sign-in is bound to the browser that started it (a cookie holds a nonce its `state` is
//! kept with) and to one approval; what it yields is a cookie for that approval alone, used
//! once, for a few minutes. Nothing here reaches the token: `SignIn::finish` keeps it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use portcullis_auth::{PendingAuthorization, ResourceServer, Secret, SignIn};
use portcullis_config::ApprovalSignIn;

use super::{CHALLENGE_TTL, MAX_PAGES, Page, decide, find, token, token_matches};
use crate::approval::ledger::{DecidedBy, Pending, SignedIn, Standing};
use crate::credentials::{EnvReader, secret};
use crate::html::{escape, html};

/// The cookie that binds a sign-in under way to the browser that started it.
const STARTED_COOKIE: &str = "portcullis-sign-in";
/// The cookie of a browser signed in for one approval.
const SIGNED_COOKIE: &str = "portcullis-approver";
/// Where the issuer sends the browser back, on the page's own origin.
pub(super) const CALLBACK: &str = "/approvals/signed-in";

/// What the approval page needs to sign people in: the resource server (its issuer and how
/// it maps a token to an identity), the page's client registration there, and the group
/// whose members may approve someone else's call.
pub struct PageSignIn {
    pub server: ResourceServer,
    pub client_id: String,
    /// `None`: a public client (PKCE only).
    pub client_secret: Option<Secret>,
    pub approvers_group: Option<String>,
}

impl PageSignIn {
    /// From `[http.auth.approval]`, for the issuer `server` trusts, with the client secret
    /// read from the environment now (and registered, so that no output shows it).
    pub fn new(
        server: ResourceServer,
        config: &ApprovalSignIn,
        env: EnvReader<'_>,
    ) -> Result<Self, String> {
        let client_secret = match &config.client_secret_env {
            Some(name) => Some(secret(
                env,
                name,
                "the approval page's client secret at the issuer",
            )?),
            None => None,
        };
        Ok(Self {
            server,
            client_id: config.client_id.clone(),
            client_secret,
            approvers_group: config.approvers_group.clone(),
        })
    }
}

/// A sign-in under way, by its `state`.
struct Started {
    pending: PendingAuthorization,
    approval: String,
    binding: String,
    at: Instant,
}

/// A browser signed in for one approval, by its cookie.
struct Session {
    approval: String,
    who: SignedIn,
    at: Instant,
}

/// The page's sign-in: the client, and the sign-ins and sessions it holds.
pub(super) struct SignInState {
    sign_in: SignIn,
    issuer: String,
    approvers_group: Option<String>,
    started: Mutex<HashMap<String, Started>>,
    signed: Mutex<HashMap<String, Session>>,
}

impl SignInState {
    /// Discovers the issuer's endpoints for the page at `origin`.
    pub(super) async fn discover(settings: PageSignIn, origin: &str) -> Result<Self, String> {
        let redirect =
            url::Url::parse(&format!("{origin}{CALLBACK}")).map_err(|error| error.to_string())?;
        let issuer = settings.server.settings().issuer.clone();
        let sign_in = SignIn::discover(
            &settings.server,
            settings.client_id,
            settings.client_secret,
            redirect,
        )
        .await
        .map_err(|error| error.to_string())?;
        Ok(Self {
            sign_in,
            issuer,
            approvers_group: settings.approvers_group,
            started: Mutex::new(HashMap::new()),
            signed: Mutex::new(HashMap::new()),
        })
    }

    /// Who is signed in, in this browser, for approval `id`.
    fn session(&self, headers: &HeaderMap, id: &str) -> Option<SignedIn> {
        let cookie = cookie(headers, SIGNED_COOKIE)?;
        let signed = self.signed.lock().ok()?;
        signed
            .get(cookie)
            .filter(|session| session.approval == id && session.at.elapsed() < CHALLENGE_TTL)
            .map(|session| session.who.clone())
    }
}

/// The value of cookie `name` in the request.
fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find_map(|(key, value)| (key == name).then_some(value))
}

fn set_cookie(name: &str, value: &str, max_age: u64) -> Option<HeaderValue> {
    HeaderValue::from_str(&format!(
        "{name}={value}; HttpOnly; SameSite=Lax; Path=/approvals; Max-Age={max_age}"
    ))
    .ok()
}

fn see_other(location: &str, cookies: &[Option<HeaderValue>]) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    if let Ok(location) = HeaderValue::from_str(location) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    for cookie in cookies.iter().flatten() {
        response
            .headers_mut()
            .append(header::SET_COOKIE, cookie.clone());
    }
    response
}

/// The approve part of a waiting approval's page: the button for whoever is signed in and may
/// approve it, else why not, and the way to sign in.
pub(super) fn approve_section(
    state: &SignInState,
    headers: &HeaderMap,
    approval: &Pending,
    token: &str,
) -> String {
    let id = escape(&approval.id);
    let sign_in = |text: &str| {
        format!(
            "<p><a id=\"sign-in\" href=\"/approvals/{id}/sign-in\">{text}</a> (at {issuer})</p>",
            issuer = escape(&state.issuer)
        )
    };
    let Some(who) = state.session(headers, &approval.id) else {
        return sign_in("Sign in to approve");
    };
    let subject = escape(&who.subject);
    match DecidedBy::SignedIn(who).may_not_approve(approval) {
        None => format!(
            "<p>Signed in as <strong>{subject}</strong>.</p><form method=\"post\" action=\"/approvals/{id}/confirm\">\
             <input type=\"hidden\" name=\"token\" value=\"{token}\"><button id=\"confirm\" type=\"submit\">Approve as {subject}</button></form>",
            token = escape(token),
        ),
        Some(why) => format!(
            "<p>Signed in as <strong>{subject}</strong>, who cannot approve this: {}.</p>{}",
            escape(&why.to_string()),
            sign_in("Sign in as someone else")
        ),
    }
}

/// GET: starts the sign-in for approval `id` at the issuer.
pub(super) async fn start(State(page): State<Arc<Page>>, Path(id): Path<String>) -> Response {
    let Some(state) = &page.sign_in else {
        return not_here();
    };
    if !matches!(find(&page, &id).await, Ok(Some(found)) if found.standing == Standing::Waiting) {
        return html(
            StatusCode::NOT_FOUND,
            "No such approval",
            "<p>This approval is unknown, expired, or no longer waiting.</p>",
        );
    }
    let (Some(binding), Ok((url, pending))) = (token(), state.sign_in.begin()) else {
        return html(
            StatusCode::SERVICE_UNAVAILABLE,
            "Sign-in unavailable",
            "<p>The sign-in cannot be started; nothing was approved.</p>",
        );
    };
    let Ok(mut started) = state.started.lock() else {
        return not_here();
    };
    started.retain(|_, started| started.at.elapsed() < CHALLENGE_TTL);
    if started.len() >= MAX_PAGES {
        return html(
            StatusCode::SERVICE_UNAVAILABLE,
            "Too many sign-ins",
            "<p>Too many sign-ins were started in the last minutes; try again shortly.</p>",
        );
    }
    started.insert(
        pending.state.clone(),
        Started {
            pending,
            approval: id,
            binding: binding.clone(),
            at: Instant::now(),
        },
    );
    see_other(
        url.as_str(),
        &[set_cookie(
            STARTED_COOKIE,
            &binding,
            CHALLENGE_TTL.as_secs(),
        )],
    )
}

/// GET: where the issuer sends the browser back. A `state` this browser started, and a code
/// the issuer exchanges for a token of Portcullis's own resource, sign the person in for the
/// approval they started from.
pub(super) async fn finish(
    State(page): State<Arc<Page>>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let Some(state) = &page.sign_in else {
        return not_here();
    };
    let started = query.get("state").and_then(|returned| {
        let mut started = state.started.lock().ok()?;
        let entry = started.remove(returned)?;
        let bound = cookie(&headers, STARTED_COOKIE) == Some(entry.binding.as_str());
        (bound && entry.pending.matches_state(returned) && entry.at.elapsed() < CHALLENGE_TTL)
            .then_some(entry)
    });
    let Some(started) = started else {
        tracing::warn!(
            "a sign-in came back to the approval page that this browser did not start (or too late); nobody was signed in"
        );
        return html(
            StatusCode::BAD_REQUEST,
            "Not signed in",
            "<p>This sign-in is unknown, expired, or was started in another browser. Open the approval's link again.</p>",
        );
    };
    let back = format!("/approvals/{}", started.approval);
    if let Some(error) = query.get("error") {
        return html(
            StatusCode::FORBIDDEN,
            "Not signed in",
            &format!(
                "<p>The issuer did not sign you in ({}). Nothing was approved. <a href=\"{}\">Back to the approval</a></p>",
                escape(&error.chars().take(80).collect::<String>()),
                escape(&back)
            ),
        );
    }
    let Some(code) = query.get("code") else {
        return html(
            StatusCode::BAD_REQUEST,
            "Not signed in",
            "<p>The issuer sent no code back. Nothing was approved.</p>",
        );
    };
    let envelope = match state
        .sign_in
        .finish(
            started.pending,
            code,
            query.get("iss").map(String::as_str),
            page.gateway.decider.clock.unix_secs(),
        )
        .await
    {
        Ok(envelope) => envelope,
        Err(error) => {
            tracing::warn!(approval = %started.approval, %error, "a sign-in on the approval page failed; nobody was signed in");
            return html(
                StatusCode::FORBIDDEN,
                "Not signed in",
                &format!(
                    "<p>The sign-in failed: {}. Nothing was approved.</p>",
                    escape(&error.to_string())
                ),
            );
        }
    };
    let who = SignedIn {
        user: envelope.user().to_string(),
        subject: envelope.user().subject.clone(),
        approver: state
            .approvers_group
            .as_ref()
            .is_some_and(|group| envelope.groups().contains(group)),
    };
    let Some(session) = token() else {
        return not_here();
    };
    tracing::info!(approval = %started.approval, user = ?who.user, approver = who.approver, "signed in on the approval page");
    if let Ok(mut signed) = state.signed.lock() {
        signed.retain(|_, session| session.at.elapsed() < CHALLENGE_TTL);
        if signed.len() >= MAX_PAGES {
            return not_here();
        }
        signed.insert(
            session.clone(),
            Session {
                approval: started.approval,
                who,
                at: Instant::now(),
            },
        );
    }
    see_other(
        &back,
        &[
            set_cookie(SIGNED_COOKIE, &session, CHALLENGE_TTL.as_secs()),
            set_cookie(STARTED_COOKIE, "", 0),
        ],
    )
}

/// POST (a form): approves `id` as the person signed in for it, with the page's token.
pub(super) async fn confirm(
    State(page): State<Arc<Page>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    axum::Form(form): axum::Form<HashMap<String, String>>,
) -> Response {
    let Some(state) = &page.sign_in else {
        return not_here();
    };
    if !token_matches(&page, &id, form.get("token").map(String::as_str)) {
        return html(
            StatusCode::FORBIDDEN,
            "Not approved",
            "<p>This page is stale: reload it.</p>",
        );
    }
    let who = cookie(&headers, SIGNED_COOKIE).and_then(|cookie| {
        let mut signed = state.signed.lock().ok()?;
        let session = signed.remove(cookie)?;
        (session.approval == id && session.at.elapsed() < CHALLENGE_TTL).then_some(session.who)
    });
    let Some(who) = who else {
        return html(
            StatusCode::FORBIDDEN,
            "Not approved",
            &format!(
                "<p>Nobody is signed in for this approval here. <a href=\"/approvals/{}/sign-in\">Sign in to approve</a></p>",
                escape(&id)
            ),
        );
    };
    let (status, text) = decide(&page, id, true, DecidedBy::SignedIn(who)).await;
    let title = if status == StatusCode::OK {
        "Approved"
    } else {
        "Not approved"
    };
    html(
        status,
        title,
        &format!("<p id=\"status\">{}</p>", escape(&text)),
    )
}

fn not_here() -> Response {
    html(
        StatusCode::NOT_FOUND,
        "Not here",
        "<p>This page does not sign anyone in.</p>",
    )
}
