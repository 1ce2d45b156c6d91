//! The approval page: where a person reads a waiting approval's whole change request and
//! approves it, or denies it. It listens on loopback only, and answers only to its own `Host`
//! names (no DNS rebinding) and, for anything that changes state, only to its own `Origin` and
//! the token of the page it served (no cross-site request).
//!
//! The link alone never approves. Approving takes a WebAuthn assertion (user presence and
//! verification) by a passkey enrolled with `portcullis approver enroll`, or, with
//! `[http.auth.approval]`, a sign-in at the issuer as the call's own user (or, for four eyes,
//! another member of the approvers group; `page/sign_in.rs`): an agent that holds the link and
//! can fetch it, or run a shell, has neither. Denying takes only the page's token: a denial
//! can only stop a call.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use portcullis_approver::{Approvers, Assertion, CEREMONY_JS};

use crate::approval::ledger::{DecidedBy, Ledger, Pending, Standing};
use crate::error::GatewayError;
use crate::gateway::Gateway;
use crate::html::{escape, guarded, html, plain};

mod sign_in;

pub use sign_in::PageSignIn;
use sign_in::SignInState;

/// The header that carries the page's token on the page's own requests.
const TOKEN_HEADER: &str = "x-portcullis-token";

/// The most approval pages served and not yet expired at once (each holds a token).
const MAX_PAGES: usize = 1024;

/// How long a page's token, and a passkey challenge, may be used.
const CHALLENGE_TTL: Duration = Duration::from_secs(300);

/// The page's script: the ceremony, then the glue that runs it when the person presses
/// "Approve".
const PAGE_JS: &str = include_str!("page/approve.js");

/// Why the passkey endpoints refuse when people sign in instead.
const PASSKEYS_OFF: &str = "this page approves by signing in with the issuer, not with a passkey";

/// What the page's handlers share.
struct Page {
    gateway: Arc<Gateway>,
    /// The enrolled approvers, or why they cannot be read (then nothing is approved here).
    approvers: Result<Approvers, String>,
    /// `http://localhost:PORT`: the only origin the page answers changes from.
    origin: String,
    /// The `Host` values the page answers to.
    hosts: Vec<String>,
    /// The token of each page served, and the approval it was served for: each page has its
    /// own, so one reader reloading the page (an agent holding the link) cannot spoil the
    /// person's.
    tokens: Mutex<HashMap<String, (String, Instant)>>,
    /// Passkey challenges handed out, by the token of the page that asked, until answered or
    /// expired.
    challenges: Mutex<HashMap<String, (Assertion, Instant)>>,
    /// With `[http.auth.approval]`: people sign in to approve, and passkeys approve nothing.
    sign_in: Option<SignInState>,
}

fn ledger(page: &Page) -> &Ledger {
    &page.gateway.approvals.ledger
}

/// Binds the approval page on `address` (loopback) and returns the page's base URL
/// (`http://localhost:PORT`, which the links name) and the future that serves it until
/// shutdown.
/// With `sign_in`, people sign in with the issuer to approve; a sign-in that cannot be set up
/// (the issuer's endpoints cannot be discovered) stops the page from starting.
pub async fn serve_page(
    gateway: Arc<Gateway>,
    address: std::net::SocketAddr,
    sign_in: Option<PageSignIn>,
) -> Result<(String, impl Future<Output = Result<(), GatewayError>>), GatewayError> {
    let listen = |source| GatewayError::Listen { address, source };
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .map_err(listen)?;
    let port = listener.local_addr().map_err(listen)?.port();
    let origin = format!("http://localhost:{port}");
    let approvers = url::Url::parse(&origin)
        .map_err(|error| error.to_string())
        .and_then(|url| {
            Approvers::open(gateway.approvals.approvers_file.clone(), &url)
                .map_err(|error| error.to_string())
        });
    if let Err(error) = &approvers {
        tracing::error!(%error, "the enrolled approvers cannot be read; nothing can be approved on the page");
    }
    let sign_in = match sign_in {
        None => None,
        Some(settings) => Some(SignInState::discover(settings, &origin).await.map_err(
            |error| GatewayError::Auth(format!("the approval page's sign-in: {error}")),
        )?),
    };
    let page = Arc::new(Page {
        sign_in,
        approvers,
        hosts: vec![
            format!("localhost:{port}"),
            format!("127.0.0.1:{port}"),
            format!("[::1]:{port}"),
        ],
        origin: origin.clone(),
        tokens: Mutex::new(HashMap::new()),
        challenges: Mutex::new(HashMap::new()),
        gateway: gateway.clone(),
    });
    let _ = gateway.approvals.page.set(origin.clone());
    let app = Router::new()
        .route("/approvals/{id}", get(show))
        .route("/approvals/{id}/challenge", post(challenge))
        .route("/approvals/{id}/approve", post(approve))
        .route("/approvals/{id}/deny", post(deny))
        .route("/approvals/{id}/sign-in", get(sign_in::start))
        .route(sign_in::CALLBACK, get(sign_in::finish))
        .route("/approvals/{id}/confirm", post(sign_in::confirm))
        .route("/approve.js", get(script))
        .merge(crate::console::routes(gateway.clone()))
        .layer(middleware::from_fn_with_state(page.clone(), own_host))
        .with_state(page);
    let shutdown = gateway.shutdown.child_token();
    let serving = async move {
        axum::serve(crate::listener::no_delay(listener), app)
            .with_graceful_shutdown(shutdown.cancelled_owned())
            .await
            .map_err(GatewayError::Serve)
    };
    Ok((origin, serving))
}

/// Answers only requests for the page's own host names, and takes changes only from its own
/// origin.
async fn own_host(State(page): State<Arc<Page>>, request: Request, next: Next) -> Response {
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|value| value.to_str().ok());
    if !host.is_some_and(|host| page.hosts.iter().any(|own| own == host)) {
        return plain(StatusCode::MISDIRECTED_REQUEST, "not this page's host");
    }
    if request.method() == axum::http::Method::POST {
        let origin = request
            .headers()
            .get(header::ORIGIN)
            .and_then(|value| value.to_str().ok());
        if origin != Some(page.origin.as_str()) {
            return plain(StatusCode::FORBIDDEN, "not from the approval page");
        }
    }
    next.run(request).await
}

/// 128 random bits, base64url.
fn token() -> Option<String> {
    use base64::Engine as _;
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).ok()?;
    Some(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

/// The live approval `id`, off the async threads.
async fn find(page: &Arc<Page>, id: &str) -> Result<Option<Pending>, String> {
    let (page, id) = (page.clone(), id.to_owned());
    tokio::task::spawn_blocking(move || ledger(&page).get(&id))
        .await
        .map_err(|error| error.to_string())?
        .map_err(|error| error.to_string())
}

/// GET: the whole change request, and the buttons while it waits.
async fn show(
    State(page): State<Arc<Page>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let approval = match find(&page, &id).await {
        Ok(Some(approval)) => approval,
        Ok(None) => {
            return html(
                StatusCode::NOT_FOUND,
                "No such approval",
                "<p>This approval is unknown, expired, or was already used.</p>",
            );
        }
        Err(error) => {
            return html(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Approvals unreadable",
                &format!("<p>{}</p>", escape(&error)),
            );
        }
    };
    let request = format!(
        "<pre style=\"white-space: pre-wrap\">{}</pre>",
        escape(&approval.request)
    );
    let decided = match &approval.standing {
        Standing::Waiting => None,
        Standing::Approved { by, .. } => Some(format!("Approved by {by}.")),
        Standing::Declined { by, .. } => Some(format!("Denied by {by}.")),
        Standing::Used { .. } => Some("Approved, and the call ran.".to_owned()),
    };
    if let Some(decided) = decided {
        return html(
            StatusCode::OK,
            &format!("Approval of {}", approval.tool),
            &format!("<p id=\"status\">{}</p>{request}", escape(&decided)),
        );
    }
    let Some(token) = token() else {
        return html(
            StatusCode::INTERNAL_SERVER_ERROR,
            "No randomness",
            "<p>The page cannot be served safely.</p>",
        );
    };
    if let Ok(mut tokens) = page.tokens.lock() {
        tokens.retain(|_, (_, at)| at.elapsed() < CHALLENGE_TTL);
        if tokens.len() >= MAX_PAGES {
            return html(
                StatusCode::SERVICE_UNAVAILABLE,
                "Too many pages open",
                "<p>Too many approval pages were opened in the last minutes; try again shortly.</p>",
            );
        }
        tokens.insert(token.clone(), (id.clone(), Instant::now()));
    }
    let approve = match (&page.sign_in, &page.approvers) {
        (Some(sign_in), _) => sign_in::approve_section(sign_in, &headers, &approval, &token),
        (None, Ok(approvers)) if approvers.is_empty().unwrap_or(true) => format!(
            "<p>No approver has enrolled a passkey on this machine yet. In a terminal, run <code>portcullis approver enroll --config CONFIG</code> once, then reload this page; or approve there with <code>portcullis approve --config CONFIG {}</code>.</p>",
            escape(&id)
        ),
        (None, Ok(_)) => format!(
            "<p><button id=\"approve\" data-token=\"{}\">Approve with your passkey</button></p>",
            escape(&token)
        ),
        (None, Err(error)) => {
            format!("<p>Passkeys cannot be read here ({}).</p>", escape(error))
        }
    };
    let body = format!(
        "<p>Asked for <strong>{tool}</strong> as {user}. Read all of it: approving runs exactly this call, once.</p>{request}\
         {approve}<form method=\"post\" action=\"/approvals/{id}/deny\"><input type=\"hidden\" name=\"token\" value=\"{token}\">\
         <button id=\"deny\" type=\"submit\">Deny</button></form><p id=\"status\" role=\"status\"></p>",
        tool = escape(&approval.tool),
        user = escape(&approval.user),
        id = escape(&id),
        token = escape(&token),
    );
    html(
        StatusCode::OK,
        &format!("Approve {}?", approval.tool),
        &body,
    )
}

/// Whether `presented` is the token of a page served for approval `id`, still fresh.
fn token_matches(page: &Page, id: &str, presented: Option<&str>) -> bool {
    let Some(presented) = presented else {
        return false;
    };
    page.tokens
        .lock()
        .ok()
        .and_then(|tokens| {
            tokens
                .get(presented)
                .map(|(for_id, at)| for_id == id && at.elapsed() < CHALLENGE_TTL)
        })
        .unwrap_or(false)
}

fn header_token(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(TOKEN_HEADER)
        .and_then(|value| value.to_str().ok())
}

/// POST: a passkey challenge for approval `id` (its options for `navigator.credentials.get`).
async fn challenge(
    State(page): State<Arc<Page>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    if page.sign_in.is_some() {
        return plain(StatusCode::FORBIDDEN, PASSKEYS_OFF);
    }
    let Some(token) = header_token(&headers).filter(|token| token_matches(&page, &id, Some(token)))
    else {
        return plain(StatusCode::FORBIDDEN, "this page is stale: reload it");
    };
    let token = token.to_owned();
    if !matches!(find(&page, &id).await, Ok(Some(found)) if found.standing == Standing::Waiting) {
        return plain(StatusCode::NOT_FOUND, "this approval is no longer waiting");
    }
    let approvers = match &page.approvers {
        Ok(approvers) => approvers,
        Err(error) => return plain(StatusCode::SERVICE_UNAVAILABLE, error),
    };
    match approvers.begin_assertion() {
        Ok((options, state)) => {
            if let Ok(mut challenges) = page.challenges.lock() {
                challenges.retain(|_, (_, at)| at.elapsed() < CHALLENGE_TTL);
                challenges.insert(token, (state, Instant::now()));
            }
            guarded(options.to_string().into_response(), "application/json")
        }
        Err(error) => plain(StatusCode::SERVICE_UNAVAILABLE, &error.to_string()),
    }
}

/// POST: the passkey's answer to approval `id`'s challenge; approves it when the assertion
/// verifies.
async fn approve(
    State(page): State<Arc<Page>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if page.sign_in.is_some() {
        return plain(StatusCode::FORBIDDEN, PASSKEYS_OFF);
    }
    let Some(token) = header_token(&headers).filter(|token| token_matches(&page, &id, Some(token)))
    else {
        return plain(StatusCode::FORBIDDEN, "this page is stale: reload it");
    };
    let state = page
        .challenges
        .lock()
        .ok()
        .and_then(|mut challenges| challenges.remove(token))
        .filter(|(_, at)| at.elapsed() < CHALLENGE_TTL);
    let (Some((state, _)), Ok(approvers)) = (state, &page.approvers) else {
        return plain(
            StatusCode::FORBIDDEN,
            "no passkey challenge is open for this approval: press Approve again",
        );
    };
    let Ok(response) = serde_json::from_slice::<serde_json::Value>(&body) else {
        return plain(StatusCode::BAD_REQUEST, "the answer is not JSON");
    };
    let name = match approvers.finish_assertion(state, &response) {
        Ok(name) => name,
        Err(error) => {
            tracing::warn!(approval = %id, %error, "a passkey answer on the approval page did not verify; nothing was approved");
            return plain(
                StatusCode::FORBIDDEN,
                "the passkey's answer did not verify: not approved",
            );
        }
    };
    let (status, text) = decide(&page, id, true, DecidedBy::Passkey(name)).await;
    plain(status, &text)
}

/// POST (a form): denies approval `id`.
async fn deny(
    State(page): State<Arc<Page>>,
    Path(id): Path<String>,
    axum::Form(form): axum::Form<HashMap<String, String>>,
) -> Response {
    if !token_matches(&page, &id, form.get("token").map(String::as_str)) {
        return plain(StatusCode::FORBIDDEN, "this page is stale: reload it");
    }
    let (status, text) = decide(&page, id, false, DecidedBy::Other("the approval page")).await;
    let title = if status == StatusCode::OK {
        "Denied"
    } else {
        "Not denied"
    };
    html(
        status,
        title,
        &format!("<p id=\"status\">{}</p>", escape(&text)),
    )
}

/// Writes the decision into the ledger, where the waiting call or its identical retry finds
/// it; what the person is told.
async fn decide(
    page: &Arc<Page>,
    id: String,
    approve: bool,
    decider: DecidedBy,
) -> (StatusCode, String) {
    let shared = page.clone();
    let decided =
        tokio::task::spawn_blocking(move || ledger(&shared).decide(&id, approve, decider))
            .await
            .map_err(|error| error.to_string())
            .and_then(|decided| decided.map_err(|error| error.to_string()));
    match decided {
        Ok(approval) => {
            if let Ok(mut tokens) = page.tokens.lock() {
                tokens.retain(|_, (for_id, _)| *for_id != approval.id);
            }
            tracing::info!(approval = %approval.id, tool = %approval.tool, approved = approve, by = %standing_by(&approval.standing), "decided on the approval page");
            let text = if approve {
                "Approved. The call runs once, when the client makes it again (or now, if it is waiting)."
            } else {
                "Denied. The call does not run."
            };
            (StatusCode::OK, text.to_owned())
        }
        Err(error) => (StatusCode::CONFLICT, error),
    }
}

fn standing_by(standing: &Standing) -> &str {
    match standing {
        Standing::Approved { by, .. } | Standing::Declined { by, .. } => by,
        Standing::Waiting | Standing::Used { .. } => "",
    }
}

/// GET: the ceremony and the page's glue.
async fn script() -> Response {
    guarded(
        format!("{CEREMONY_JS}\n{PAGE_JS}").into_response(),
        "text/javascript; charset=utf-8",
    )
}
