//! What stops Portcullis from serving.

/// Errors that stop Portcullis from serving.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("could not set up the requestState key: {0}")]
    Random(String),
    #[error("could not listen on `{address}`: {source}")]
    Listen {
        address: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("client authentication cannot start: {0}")]
    Auth(String),
    #[error("the client connection failed: {0}")]
    Client(String),
    #[error("shared state: {0}")]
    State(String),
    #[error("serving failed: {0}")]
    Serve(std::io::Error),
}
