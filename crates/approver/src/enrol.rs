//! The one-time enrolment page of `portcullis approver enroll`: served on a loopback listener
//! until one passkey is enrolled through it, or a deadline passes.
//!
//! `GET /enrol/{token}` is a small page whose button runs the ceremony: its script
//! (`/enrol/{token}/enrol.js`, [`crate::CEREMONY_JS`] and the button's handler) POSTs to
//! `/enrol/{token}/options` for the options and to `/enrol/{token}/finish` with the browser's
//! answer. Every route answers 404 for a wrong token and for every token once a passkey is
//! enrolled. Every request must name the page's own host (`Host`), so a page of another site
//! that rebinds its DNS name to loopback reaches nothing; every POST must come from the page's
//! own origin (`Origin`) with a JSON body, so another site cannot drive the ceremony (CSRF).

use std::future::IntoFuture as _;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::approvers::check_name;
use crate::{ApproverError, Approvers, CEREMONY_JS, Enrolment};

/// The largest body a POST may have: a registration response is a few kilobytes.
const MAX_BODY_BYTES: usize = 64 * 1024;

/// How long the last answer (the one confirming the enrolment) may take to leave once a
/// passkey is enrolled, before the listener is closed regardless.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// The page's button handler; the ceremony itself is [`CEREMONY_JS`].
const PAGE_JS: &str = include_str!("enrol.js");

/// Bytes of randomness in a one-time token: 256 bits, far beyond guessing.
const TOKEN_BYTES: usize = 32;

/// The shortest token `serve` accepts: 128 bits in base64url.
const MIN_TOKEN_CHARS: usize = 22;

/// A fresh one-time token for an enrolment link: 256 random bits, unpadded base64url (so it
/// can stand in a URL path as it is).
pub fn one_time_token() -> Result<String, ApproverError> {
    let mut bytes = [0u8; TOKEN_BYTES];
    getrandom::fill(&mut bytes).map_err(|error| ApproverError::Random {
        reason: error.to_string(),
    })?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

/// Serves the enrolment page for `name` on `listener` (which must be bound to a loopback
/// address) at `/enrol/{token}`, and returns `name` once one passkey is enrolled through it,
/// or an error when `until` has passed first. The link to print is
/// `{origin}/enrol/{token}`, where `origin` is `approvers.origin_on(port)`.
pub async fn serve(
    listener: TcpListener,
    approvers: Approvers,
    name: String,
    token: String,
    until: Duration,
) -> Result<String, ApproverError> {
    let address = listener
        .local_addr()
        .map_err(|source| ApproverError::Serve { source })?;
    check_start(&name, &token, address)?;
    let (enrolled, enrolled_rx) = oneshot::channel();
    let page = EnrolPage::new(approvers, name, token, address.port(), enrolled);
    let (stop, stopped) = oneshot::channel::<()>();
    let server = axum::serve(listener, routes(page)).with_graceful_shutdown(async {
        let _ = stopped.await;
    });
    let mut server = tokio::spawn(server.into_future());
    let outcome = first_outcome(enrolled_rx, until, &mut server).await;
    let _ = stop.send(());
    if tokio::time::timeout(SHUTDOWN_GRACE, &mut server)
        .await
        .is_err()
    {
        server.abort();
    }
    outcome
}

/// Whichever comes first: the enrolled name, the deadline, or the listener failing.
async fn first_outcome(
    enrolled: oneshot::Receiver<String>,
    until: Duration,
    server: &mut JoinHandle<std::io::Result<()>>,
) -> Result<String, ApproverError> {
    tokio::select! {
        enrolled = enrolled => enrolled.map_err(|_| ApproverError::Serve {
            source: std::io::Error::other("the page stopped before a passkey was enrolled"),
        }),
        () = tokio::time::sleep(until) => Err(ApproverError::Deadline { seconds: until.as_secs() }),
        ended = server => Err(ApproverError::Serve {
            source: match ended {
                Ok(Err(error)) => error,
                _ => std::io::Error::other("the listener stopped"),
            },
        }),
    }
}

fn check_start(name: &str, token: &str, address: SocketAddr) -> Result<(), ApproverError> {
    check_name(name)?;
    if token.len() < MIN_TOKEN_CHARS {
        return Err(ApproverError::Serve {
            source: std::io::Error::other("the enrolment token is too short to be unguessable"),
        });
    }
    check_loopback(address)
}

/// INVARIANT: the page is reachable from this machine only; anyone who reaches it with the
/// token can enrol a passkey that approves everything.
fn check_loopback(address: SocketAddr) -> Result<(), ApproverError> {
    if address.ip().is_loopback() {
        return Ok(());
    }
    Err(ApproverError::Serve {
        source: std::io::Error::other(format!(
            "the enrolment page must listen on a loopback address, not `{address}`"
        )),
    })
}

/// Why a request is turned away, and the status that says so.
type Refusal = (StatusCode, &'static str);

struct EnrolPage {
    approvers: Approvers,
    name: String,
    token: String,
    /// `Host` every request must carry, for example `localhost:41234`.
    host: String,
    /// `Origin` every POST must carry, for example `http://localhost:41234`.
    origin: String,
    progress: Mutex<Progress>,
}

struct Progress {
    /// The ceremony begun last; a new one replaces it, and finishing consumes it.
    pending: Option<Enrolment>,
    /// Taken when a passkey is enrolled, which closes every route.
    enrolled: Option<oneshot::Sender<String>>,
}

fn routes(page: Arc<EnrolPage>) -> Router {
    Router::new()
        .route("/enrol/{token}", get(show_page))
        .route("/enrol/{token}/enrol.js", get(show_script))
        .route("/enrol/{token}/options", post(begin))
        .route("/enrol/{token}/finish", post(finish))
        .fallback(|| async { not_found() })
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(page)
}

impl EnrolPage {
    fn new(
        approvers: Approvers,
        name: String,
        token: String,
        port: u16,
        enrolled: oneshot::Sender<String>,
    ) -> Arc<Self> {
        Arc::new(Self {
            host: approvers.host_on(port),
            origin: approvers.origin_on(port),
            approvers,
            name,
            token,
            progress: Mutex::new(Progress {
                pending: None,
                enrolled: Some(enrolled),
            }),
        })
    }

    /// Whether a request for `token` with `headers` may reach the page: the right host, the
    /// right token, and no passkey enrolled yet.
    fn admit(&self, token: &str, headers: &HeaderMap) -> Result<(), Refusal> {
        if header_text(headers, &header::HOST) != Some(self.host.as_str()) {
            return Err((
                StatusCode::MISDIRECTED_REQUEST,
                "this page is served for another host name",
            ));
        }
        let open = self.progress().enrolled.is_some();
        if !open || !same_secret(token, &self.token) {
            return Err((StatusCode::NOT_FOUND, "not found"));
        }
        Ok(())
    }

    /// As `admit`, for a POST: also from this page's origin and with a JSON body, which a
    /// form on another site cannot send without the browser asking this page first.
    fn admit_post(&self, token: &str, headers: &HeaderMap) -> Result<(), Refusal> {
        self.admit(token, headers)?;
        if header_text(headers, &header::ORIGIN) != Some(self.origin.as_str()) {
            return Err((
                StatusCode::FORBIDDEN,
                "this request did not come from the enrolment page",
            ));
        }
        let json = header_text(headers, &header::CONTENT_TYPE).is_some_and(|value| {
            value
                .split(';')
                .next()
                .is_some_and(|kind| kind.trim() == "application/json")
        });
        if !json {
            return Err((StatusCode::UNSUPPORTED_MEDIA_TYPE, "the body must be JSON"));
        }
        Ok(())
    }

    fn progress(&self) -> std::sync::MutexGuard<'_, Progress> {
        // Poisoning only means a handler panicked holding it; what it guards stays coherent
        // (a pending state, a sender), and the token check still closes the page after use.
        self.progress.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

async fn show_page(
    State(page): State<Arc<EnrolPage>>,
    Path(token): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Err((status, message)) = page.admit(&token, &headers) {
        return refuse(status, message);
    }
    let html = render_page(&page.name, &token);
    with_page_headers("text/html; charset=utf-8", html)
}

async fn show_script(
    State(page): State<Arc<EnrolPage>>,
    Path(token): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Err((status, message)) = page.admit(&token, &headers) {
        return refuse(status, message);
    }
    with_page_headers(
        "text/javascript; charset=utf-8",
        format!("{CEREMONY_JS}\n{PAGE_JS}"),
    )
}

async fn begin(
    State(page): State<Arc<EnrolPage>>,
    Path(token): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Err((status, message)) = page.admit_post(&token, &headers) {
        return refuse(status, message);
    }
    match page.approvers.begin_enrolment(&page.name) {
        Ok((options, enrolment)) => {
            page.progress().pending = Some(enrolment);
            json_answer(StatusCode::OK, &options)
        }
        Err(error) => refuse(StatusCode::INTERNAL_SERVER_ERROR, &error.to_string()),
    }
}

async fn finish(
    State(page): State<Arc<EnrolPage>>,
    Path(token): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err((status, message)) = page.admit_post(&token, &headers) {
        return refuse(status, message);
    }
    let Ok(response) = serde_json::from_slice::<Value>(&body) else {
        return refuse(StatusCode::BAD_REQUEST, "the body is not JSON");
    };
    // Taken out before it is checked, so each ceremony is finished at most once.
    let Some(enrolment) = page.progress().pending.take() else {
        return refuse(
            StatusCode::CONFLICT,
            "no enrolment was begun: press the button again",
        );
    };
    if let Err(error) = page.approvers.finish_enrolment(enrolment, &response) {
        return refuse(StatusCode::FORBIDDEN, &error.to_string());
    }
    tracing::info!(name = %page.name, "a passkey was enrolled as an approver");
    if let Some(enrolled) = page.progress().enrolled.take() {
        let _ = enrolled.send(page.name.clone());
    }
    json_answer(
        StatusCode::OK,
        &json!({ "enrolled": true, "name": page.name }),
    )
}

fn render_page(name: &str, token: &str) -> String {
    let name = escape_html(name);
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>Portcullis: enrol a passkey</title>\
         <script src=\"/enrol/{token}/enrol.js\" defer></script></head>\n\
         <body style=\"font-family: sans-serif; max-width: 36em; margin: 2em auto\">\
         <h1>Enrol a passkey</h1>\
         <p>This enrols a passkey for <strong>{name}</strong> as an approver of this \
         machine's Portcullis: approving a tool call will need it, and you present at the \
         device.</p>\
         <p><button id=\"enrol\" type=\"button\">Enrol passkey</button></p>\
         <p id=\"status\" role=\"status\"></p></body></html>\n"
    )
}

fn escape_html(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            c => escaped.push(c),
        }
    }
    escaped
}

/// The headers of the page and its script: no framing (a framed button can be clicked by
/// trickery), no script or connection but this page's own, no referrer (the URL holds the
/// token), no caching.
fn with_page_headers(content_type: &'static str, body: String) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    let fixed: [(HeaderName, &'static str); 6] = [
        (header::CONTENT_TYPE, content_type),
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; script-src 'self'; connect-src 'self'; \
             style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'; \
             frame-ancestors 'none'",
        ),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::CACHE_CONTROL, "no-store"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    ];
    for (name, value) in fixed {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

fn json_answer(status: StatusCode, body: &Value) -> Response {
    let mut response = (status, body.to_string()).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn refuse(status: StatusCode, message: &str) -> Response {
    json_answer(status, &json!({ "error": message }))
}

fn not_found() -> Response {
    refuse(StatusCode::NOT_FOUND, "not found")
}

fn header_text<'a>(headers: &'a HeaderMap, name: &HeaderName) -> Option<&'a str> {
    headers.get(name).and_then(|value| value.to_str().ok())
}

/// Compares a presented token with the real one in time that does not depend on where they
/// first differ, so the token cannot be found a byte at a time.
fn same_secret(presented: &str, secret: &str) -> bool {
    let (presented, secret) = (presented.as_bytes(), secret.as_bytes());
    presented.len() == secret.len()
        && presented
            .iter()
            .zip(secret)
            .fold(0u8, |difference, (a, b)| difference | (a ^ b))
            == 0
}
