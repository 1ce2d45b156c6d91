//! The rmcp plumbing of Portcullis: the downstream server (both protocol eras, stdio and
//! streamable HTTP), the upstream pool, and the request path between them.
//!
//! Key design decision: each upstream is supervised on its own and published through an
//! `ArcSwap`, so a request reads which upstreams are ready, and their catalogs, without locks;
//! an upstream that fails to start, crashes or hangs drops out of the lists and is restarted with
//! backoff while the others keep serving.
#![forbid(unsafe_code)]

mod approval;
mod arguments;
mod ask;
mod attach;
mod authorize;
mod catalog;
mod console;
pub mod credentials;
mod error;
mod evidence;
mod forms;
#[doc(hidden)]
pub mod fuzzing;
mod gateway;
mod html;
mod http;
mod hygiene;
mod instances;
mod listener;
mod listing;
mod metrics;
mod page;
mod paths;
mod pending;
pub mod pins;
mod pipeline;
mod policy;
mod progress;
mod recorder;
mod remote;
mod sandbox;
pub mod secrets;
mod server;
mod sessions;
mod state;
mod stdio;
mod tool_search;
mod upstream;
mod upstreams;

pub use approval::ledger::{DecidedBy, Ledger, LedgerError, Pending, SignedIn, Standing};
pub use approval::{Reach, call_facts, reach};
// The proofs the request path is built on, public so that their documentation tests show from
// outside that none can be forged (see ARCHITECTURE.md, "The request path").
pub use credentials::Credentials;
pub use error::GatewayError;
pub use evidence::DurableIntent;
pub use gateway::{Gateway, GatewayParts, Visible};
pub use http::{discover_issuer, serve_http, serve_metrics};
pub use instances::{instance_state_dir, remove_instance_state};
pub use page::{PageSignIn, serve_page};
pub use pipeline::{
    CallAction, CallParts, CallPermit, Catalogued, Granted, ToolCall, UpstreamCall,
};
pub use policy::load_policy;
pub use recorder::Recorder;
pub use remote::tls_client;
pub use sandbox::{ContainmentReport, containment_reports};
pub use server::{PortcullisServer, serve_stdio};
pub use upstreams::UpstreamStatus;

/// A replica's connection to the test's database (in the clear, as the tests' server is
/// reached), its schema brought up to date.
/// A client session to a server that answers nothing, over an in-memory pipe, for unit tests
/// that need a `Peer<RoleServer>`; `client` hears what the server side sends. Keep the returned
/// services alive for as long as the peer is used.
#[cfg(test)]
#[expect(clippy::panic, reason = "a test without its session fails")]
pub(crate) async fn test_peer<C: rmcp::ClientHandler>(
    client: C,
) -> (rmcp::service::Peer<rmcp::service::RoleServer>, impl Send) {
    use rmcp::ServiceExt as _;
    struct Quiet;
    impl rmcp::ServerHandler for Quiet {}
    let (ours, theirs) = tokio::io::duplex(1 << 12);
    let (server, client) = tokio::join!(Quiet.serve(ours), client.serve(theirs));
    let server = server.unwrap_or_else(|e| panic!("server: {e}"));
    let client = client.unwrap_or_else(|e| panic!("client: {e}"));
    (server.peer().clone(), (server, client))
}

#[cfg(test)]
#[expect(clippy::panic, reason = "a test without its database fails")]
pub(crate) async fn test_store(url: &str, replica: &str) -> portcullis_state::Store {
    let tls = portcullis_state::Tls::new(portcullis_test_support::tls_client(None), false);
    portcullis_state::Store::connect(url, replica, tls)
        .await
        .unwrap_or_else(|error| panic!("connect: {error}"))
}
