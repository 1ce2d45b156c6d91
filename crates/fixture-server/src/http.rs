//! Streamable HTTP at `/mcp` on a loopback address, through rmcp's `StreamableHttpService`.
//!
//! Session-era clients (`initialize`) get sessions (`legacy_session_mode`); requests that carry
//! 2026-07-28 `_meta` are served statelessly by rmcp whatever that setting says.
//!
//! The `garbage` tool cannot reach the HTTP body from inside rmcp, so a middleware answers
//! `tools/call` of `garbage` itself with a body that is not JSON.
//!
//! With `--auth-issuer` the endpoint is behind the bearer-token layers of [`crate::bearer`],
//! and the protected resource metadata is served beside it.

use std::{net::SocketAddr, sync::Arc};

use anyhow::Context as _;
use axum::{
    body::Body,
    extract::Request,
    http::{Method, StatusCode, header},
    middleware::Next,
    response::{IntoResponse, Response},
};
use rmcp::transport::streamable_http_server::{
    StreamableHttpServerConfig, StreamableHttpService, session::local::LocalSessionManager,
};
use tokio_util::sync::CancellationToken;

use crate::{
    bearer::{self, Guard},
    cli::{AuthConfig, AuthResource},
    server::FixtureServer,
};

/// Path the MCP endpoint is served at.
const MCP_PATH: &str = "/mcp";
/// Largest request body the garbage check buffers; rmcp's own default limit.
const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;
/// The body of the answer to `garbage`: not JSON, though labelled as JSON.
const GARBAGE_BODY: &str = "this is not json {{{";

/// Binds `address`, discovers the token issuer if there is one, prints the endpoint URL on
/// stdout (so a test that waits for it knows the server is ready), and serves until Ctrl-C.
pub(crate) async fn serve(
    server: FixtureServer,
    address: SocketAddr,
    auth: Option<&AuthConfig>,
) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .with_context(|| format!("cannot listen on `{address}`"))?;
    let local = listener.local_addr()?;
    let guard = match auth {
        Some(auth) => {
            let resource = match &auth.resource {
                AuthResource::Auto => endpoint_url(local),
                AuthResource::Url(url) => url.clone(),
            };
            Some(Guard::start(auth, resource).await?)
        }
        None => None,
    };
    announce(local);

    let shutdown = CancellationToken::new();
    let config = StreamableHttpServerConfig::default()
        .with_legacy_session_mode(true)
        .with_cancellation_token(shutdown.child_token());
    let service = StreamableHttpService::new(
        move || Ok(server.clone()),
        Arc::new(LocalSessionManager::default()),
        config,
    );
    let mut app = axum::Router::new()
        .route_service(MCP_PATH, service)
        .layer(axum::middleware::from_fn(answer_garbage_calls));
    if let Some(guard) = guard {
        // Layers wrap what is already routed: the metadata, merged after, needs no token.
        app = app
            .layer(axum::middleware::from_fn_with_state(
                guard.clone(),
                bearer::after_authentication,
            ))
            .layer(axum::middleware::from_fn_with_state(
                guard.clone(),
                bearer::authenticate,
            ))
            .merge(guard.metadata_router());
    }

    // TCP_NODELAY, as Portcullis sets it: without it a Node client waits for its own delayed
    // ACK on every multi-write answer, and the benchmark's direct route would be the slow one.
    let listener = {
        use axum::serve::ListenerExt as _;
        listener.tap_io(|stream: &mut tokio::net::TcpStream| {
            if let Err(error) = stream.set_nodelay(true) {
                tracing::warn!(%error, "cannot set TCP_NODELAY");
            }
        })
    };
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            if let Err(error) = tokio::signal::ctrl_c().await {
                tracing::warn!(%error, "cannot wait for Ctrl-C");
                std::future::pending::<()>().await;
            }
            shutdown.cancel();
        })
        .await
        .context("HTTP server failed")
}

/// Tells the test harness where to connect: one line on stdout (free in HTTP mode), and a log.
pub(crate) fn announce(local: SocketAddr) {
    let url = endpoint_url(local);
    tracing::info!(%url, "listening");
    println!("{url}");
}

/// The URL of the MCP endpoint on `local`: also the resource of `--auth-resource auto`.
fn endpoint_url(local: SocketAddr) -> String {
    format!("http://{local}{MCP_PATH}")
}

/// Answers `tools/call` of `garbage` with a non-JSON body; passes everything else on.
async fn answer_garbage_calls(request: Request, next: Next) -> Response {
    if request.method() != Method::POST {
        return next.run(request).await;
    }
    let (parts, body) = request.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, MAX_BODY_BYTES).await else {
        return (StatusCode::PAYLOAD_TOO_LARGE, "request body too large").into_response();
    };
    if is_garbage_call(&bytes) {
        tracing::warn!("garbage tool called: answering with a non-JSON body");
        return ([(header::CONTENT_TYPE, "application/json")], GARBAGE_BODY).into_response();
    }
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

fn is_garbage_call(body: &[u8]) -> bool {
    let Ok(message) = serde_json::from_slice::<serde_json::Value>(body) else {
        return false;
    };
    let method = message.get("method").and_then(serde_json::Value::as_str);
    let tool = message
        .get("params")
        .and_then(|params| params.get("name"))
        .and_then(serde_json::Value::as_str);
    method == Some("tools/call") && tool == Some("garbage")
}
