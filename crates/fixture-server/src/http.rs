//! Streamable HTTP at `/mcp` on a loopback address, through rmcp's `StreamableHttpService`.
//!
//! Session-era clients (`initialize`) get sessions (`legacy_session_mode`); requests that carry
//! 2026-07-28 `_meta` are served statelessly by rmcp whatever that setting says.
//!
//! The `garbage` tool cannot reach the HTTP body from inside rmcp, so a middleware answers
//! `tools/call` of `garbage` itself with a body that is not JSON.

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

use crate::server::FixtureServer;

/// Path the MCP endpoint is served at.
const MCP_PATH: &str = "/mcp";
/// Largest request body the garbage check buffers; rmcp's own default limit.
const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;
/// The body of the answer to `garbage`: not JSON, though labelled as JSON.
const GARBAGE_BODY: &str = "this is not json {{{";

/// Binds `address`, prints the endpoint URL on stdout, and serves until Ctrl-C.
pub async fn serve(server: FixtureServer, address: SocketAddr) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .with_context(|| format!("cannot listen on `{address}`"))?;
    let local = listener.local_addr()?;
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
    let app = axum::Router::new()
        .route_service(MCP_PATH, service)
        .layer(axum::middleware::from_fn(answer_garbage_calls));

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
pub fn announce(local: SocketAddr) {
    let url = format!("http://{local}{MCP_PATH}");
    tracing::info!(%url, "listening");
    println!("{url}");
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
