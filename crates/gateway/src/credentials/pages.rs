//! The pages a person's browser sees: Portcullis's own consent page, which names the MCP
//! client asking (the authorization server only ever sees Portcullis's one registration, so
//! without it one client could ride on the consent another was given), and the OAuth
//! callback.
//!
//! Every page is `no-store`, cannot be framed, and sends no referrer; every value shown is
//! HTML-escaped. No page shows a token, a code or a `state`.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;

use super::Credentials;
use crate::html::escape;

/// The routes of the callback listener.
pub fn router(credentials: Arc<Credentials>) -> Router {
    Router::new()
        .route("/oauth/start/{id}", get(consent).post(decide))
        .route("/oauth/callback", get(callback))
        .with_state(credentials)
}

fn page(status: StatusCode, title: &str, body: &str) -> Response {
    let html = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{title}</title></head>\
         <body><h1>{title}</h1>{body}</body></html>",
        title = escape(title)
    );
    let mut response = (status, html).into_response();
    let headers = response.headers_mut();
    for (name, value) in [
        (header::CONTENT_TYPE, "text/html; charset=utf-8"),
        (header::CACHE_CONTROL, "no-store"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; form-action 'self'; frame-ancestors 'none'",
        ),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

fn gone() -> Response {
    page(
        StatusCode::NOT_FOUND,
        "This sign-in link is not valid",
        "<p>It is unknown, expired or already used. Call the tool again from your client to get a new one.</p>",
    )
}

async fn consent(State(credentials): State<Arc<Credentials>>, Path(id): Path<String>) -> Response {
    let Some(flow) = credentials.flows().get(&id) else {
        return gone();
    };
    if flow.outcome().is_some() {
        return gone();
    }
    let request = &flow.request;
    let scopes = if request.scopes.is_empty() {
        "no particular scopes".to_owned()
    } else {
        request.scopes.join(" ")
    };
    let host = request
        .authorization_url
        .host_str()
        .unwrap_or("the authorization server");
    let body = format!(
        "<p>The MCP client <strong>{client}</strong>, acting as <strong>{user}</strong> \
         (issuer {issuer}), asks Portcullis to act on your behalf at the upstream \
         <strong>{upstream}</strong> with the scopes <code>{scopes}</code>.</p>\
         <p>If you continue, you sign in at <strong>{host}</strong>; Portcullis keeps the \
         grant for this client and this upstream only, and never shows it to the client.</p>\
         <form method=\"post\" action=\"/oauth/start/{id}\">\
         <button type=\"submit\" name=\"allow\" value=\"yes\">Continue to sign in</button> \
         <button type=\"submit\" name=\"deny\" value=\"yes\">Deny</button></form>",
        client = escape(&request.client),
        user = escape(&request.key.subject),
        issuer = escape(&request.key.issuer),
        upstream = escape(&request.key.upstream),
        scopes = escape(&scopes),
        host = escape(host),
        id = escape(&id),
    );
    page(
        StatusCode::OK,
        "Authorise an upstream for your MCP client",
        &body,
    )
}

/// The button pressed: only `allow` alone continues.
#[derive(Deserialize)]
struct Decision {
    allow: Option<String>,
    deny: Option<String>,
}

async fn decide(
    State(credentials): State<Arc<Credentials>>,
    Path(id): Path<String>,
    Form(decision): Form<Decision>,
) -> Response {
    let Some(flow) = credentials.flows().get(&id) else {
        return gone();
    };
    if flow.outcome().is_some() {
        return gone();
    }
    if decision.allow.is_none() || decision.deny.is_some() {
        flow.finish(Err("you denied the authorisation".to_owned()));
        tracing::info!(user = %flow.request.key.subject, upstream = %flow.request.key.upstream, client = %flow.request.client, "delegation denied on the consent page");
        return page(
            StatusCode::OK,
            "Nothing was authorised",
            "<p>You can close this page.</p>",
        );
    }
    let mut response = StatusCode::SEE_OTHER.into_response();
    match HeaderValue::from_str(flow.request.authorization_url.as_str()) {
        Ok(location) => {
            response.headers_mut().insert(header::LOCATION, location);
            response
                .headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            response
        }
        Err(_) => page(
            StatusCode::INTERNAL_SERVER_ERROR,
            "The authorization server's address is unusable",
            "",
        ),
    }
}

#[derive(Deserialize)]
struct Callback {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
}

async fn callback(
    State(credentials): State<Arc<Credentials>>,
    Query(callback): Query<Callback>,
) -> Response {
    let Some(state) = callback.state else {
        return gone();
    };
    let (Some(code), None) = (callback.code, callback.error.as_ref()) else {
        // The server refused (the person denied there, or the request was bad): the flow
        // ends, once, with its error code (a token word, never a secret).
        if let Some(flow) = credentials.flows().take_by_state(&state) {
            let _ = flow.take_pending();
            let error: String = callback
                .error
                .unwrap_or_default()
                .chars()
                .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
                .take(64)
                .collect();
            flow.finish(Err(format!(
                "the authorization server did not authorise ({error})"
            )));
            return page(
                StatusCode::OK,
                "Nothing was authorised",
                &format!(
                    "<p>The authorization server answered <code>{}</code>. You can close this page.</p>",
                    escape(&error)
                ),
            );
        }
        return gone();
    };
    match credentials.complete(&state, &code).await {
        Ok(done) => page(
            StatusCode::OK,
            "Authorised",
            &format!(
                "<p>{}. You can close this page and return to your client.</p>",
                escape(&done)
            ),
        ),
        Err(message) => page(
            StatusCode::BAD_REQUEST,
            "Authorisation failed",
            &format!("<p>{}</p>", escape(&message)),
        ),
    }
}
