//! How every HTTP listener Portcullis serves on is set up.

/// `listener` with `TCP_NODELAY` set on every connection it accepts. An answer written in
/// several pieces (headers, then a streamed body) otherwise waits for the peer's delayed ACK
/// (Nagle's algorithm): about 40 ms per request for clients that delay their ACKs, Node's
/// among them. Every listener Portcullis serves HTTP on goes through this.
pub(crate) fn no_delay(
    listener: tokio::net::TcpListener,
) -> axum::serve::TapIo<tokio::net::TcpListener, fn(&mut tokio::net::TcpStream)> {
    use axum::serve::ListenerExt as _;
    fn set(stream: &mut tokio::net::TcpStream) {
        if let Err(error) = stream.set_nodelay(true) {
            tracing::warn!(%error, "could not set TCP_NODELAY on an accepted connection");
        }
    }
    listener.tap_io(set as fn(&mut tokio::net::TcpStream))
}
