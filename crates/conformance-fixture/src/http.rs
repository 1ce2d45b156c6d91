//! Streamable HTTP at `/mcp` on a loopback address, through rmcp's `StreamableHttpService`.
//!
//! Session-era clients (`initialize`) get sessions (`legacy_session_mode`); requests that carry
//! 2026-07-28 `_meta` are served statelessly by rmcp whatever that setting says. Every session
//! shares one `Conformance`, so a list change made in one is heard by listeners in another.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context as _, bail};
use rmcp::transport::streamable_http_server::{
    StreamableHttpServerConfig, StreamableHttpService, session::local::LocalSessionManager,
};
use tokio_util::sync::CancellationToken;

use crate::handler::Conformance;

/// Path the MCP endpoint is served at.
const MCP_PATH: &str = "/mcp";

/// Binds `address`, prints the endpoint URL on stdout, and serves until Ctrl-C.
pub(crate) async fn serve(fixture: Conformance, address: SocketAddr) -> anyhow::Result<()> {
    // The fixture does whatever a caller asks; keep it off every network but this machine's.
    if !address.ip().is_loopback() {
        bail!("`{address}` is not a loopback address: the fixture listens on loopback only");
    }
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .with_context(|| format!("cannot listen on `{address}`"))?;
    let local = listener.local_addr()?;
    let port = local.port();

    let shutdown = CancellationToken::new();
    // Hosts and origins of this machine only: the suite's DNS-rebinding scenario sends others.
    let config = StreamableHttpServerConfig::default()
        .with_legacy_session_mode(true)
        .with_allowed_hosts([
            format!("127.0.0.1:{port}"),
            format!("localhost:{port}"),
            format!("[::1]:{port}"),
            "127.0.0.1".to_owned(),
            "localhost".to_owned(),
            "::1".to_owned(),
        ])
        .with_allowed_origins([
            format!("http://127.0.0.1:{port}"),
            format!("http://localhost:{port}"),
            format!("http://[::1]:{port}"),
        ])
        .with_cancellation_token(shutdown.child_token());
    let service = StreamableHttpService::new(
        move || Ok(fixture.clone()),
        Arc::new(LocalSessionManager::default()),
        config,
    );
    let app = axum::Router::new().route_service(MCP_PATH, service);

    println!("http://{local}{MCP_PATH}");
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            if tokio::signal::ctrl_c().await.is_err() {
                // Without a signal handler, run until killed.
                std::future::pending::<()>().await;
            }
            shutdown.cancel();
        })
        .await
        .context("the HTTP server failed")
}
