//! The streamable HTTP downstream transport: loopback by default, `Host` and `Origin` checked
//! against DNS rebinding, both protocol eras served by rmcp's streamable HTTP service, and with
//! `[http.auth]` every request authenticated by its bearer token before rmcp sees it.

use std::sync::Arc;

use portcullis_auth::{ResourceServer, require_bearer};
use portcullis_config::HttpSettings;
use rmcp::transport::streamable_http_server::{
    StreamableHttpServerConfig, StreamableHttpService, session::local::LocalSessionManager,
};

use crate::server::PortcullisServer;
use crate::{Gateway, GatewayError};

/// The path of the MCP endpoint.
pub const MCP_PATH: &str = "/mcp";

/// Binds the listener; returns the bound address and a future that serves until shutdown.
pub async fn serve_http(
    gateway: Arc<Gateway>,
    settings: &HttpSettings,
) -> Result<
    (
        std::net::SocketAddr,
        impl Future<Output = Result<(), GatewayError>>,
    ),
    GatewayError,
> {
    // Discovery first: a resource server that cannot fetch its issuer's keys accepts no token,
    // so it does not start (fail closed) rather than serve requests it must refuse.
    let resource_server = match &settings.auth {
        None => None,
        Some(auth) => Some(
            ResourceServer::discover(auth.clone())
                .await
                .map_err(|e| GatewayError::Auth(e.to_string()))?,
        ),
    };
    let listener = tokio::net::TcpListener::bind(settings.listen)
        .await
        .map_err(|source| GatewayError::Listen {
            address: settings.listen,
            source,
        })?;
    let address = listener.local_addr().map_err(GatewayError::Serve)?;
    let port = address.port();

    // Without a configured list, only the names of this loopback listener are accepted: a
    // browser page served from elsewhere cannot reach it through a rebound DNS name.
    let allowed_hosts = if settings.allowed_hosts.is_empty() {
        vec![
            format!("127.0.0.1:{port}"),
            format!("localhost:{port}"),
            format!("[::1]:{port}"),
            "127.0.0.1".to_owned(),
            "localhost".to_owned(),
            "::1".to_owned(),
        ]
    } else {
        settings.allowed_hosts.clone()
    };
    let allowed_origins = if settings.allowed_origins.is_empty() {
        vec![
            format!("http://127.0.0.1:{port}"),
            format!("http://localhost:{port}"),
            format!("http://[::1]:{port}"),
        ]
    } else {
        settings.allowed_origins.clone()
    };
    let shutdown = gateway.shutdown.child_token();
    let mut config =
        StreamableHttpServerConfig::default().with_cancellation_token(shutdown.clone());
    config.legacy_session_mode = true;
    config.allowed_hosts = allowed_hosts;
    config.allowed_origins = allowed_origins;
    let factory_gateway = gateway.clone();
    let service = StreamableHttpService::new(
        move || Ok(PortcullisServer::new(factory_gateway.clone())),
        LocalSessionManager::default().into(),
        config,
    );
    let mcp = axum::Router::new().nest_service(MCP_PATH, service);
    let router = match resource_server {
        None => mcp,
        Some(server) => {
            tracing::info!(
                issuer = %server.settings().issuer,
                resource = %server.settings().resource,
                metadata = %server.metadata_url(),
                "clients authenticate with bearer tokens"
            );
            let metadata = server.metadata_router();
            // The token is checked, and stripped, before rmcp sees the request: handlers read
            // the identity envelope from the request's extensions and never the token.
            mcp.layer(axum::middleware::from_fn_with_state(server, require_bearer))
                .merge(metadata)
        }
    };
    let serving = async move {
        axum::serve(listener, router)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await
            .map_err(GatewayError::Serve)
    };
    Ok((address, serving))
}
