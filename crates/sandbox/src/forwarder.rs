//! The forwarder: serves the sockets listening inside an upstream's own network (one per granted
//! name and port), connecting each connection to what the name resolves to outside, when it
//! connects, on that port only.
//!
//! It fails closed: a name that does not resolve, an address that does not answer, too many
//! connections at once, or a forwarder that is not running, and the upstream's connection is
//! reset (or, with no one listening, refused). Nothing is ever sent anywhere but to an address
//! of the granted name, on the granted port.
//!
//! It runs on a thread of its own with its own runtime, so it does not depend on the caller's,
//! and it stops by itself: once every child that joined the network has exited and nothing can
//! spawn another (the hook is dropped), its listeners close and the namespace goes with them.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsFd as _, OwnedFd};
use std::sync::Arc;
use std::time::Duration;

use portcullis_core::HostName;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tracing::Instrument as _;

use crate::child::netns::{self, Received};
use crate::error::SandboxError;

/// How long a name may take to resolve before the connection is refused.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long each resolved address may take to accept the connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections forwarded at once for one upstream. Each costs Portcullis two descriptors, so an
/// upstream opening connections in a loop must not exhaust Portcullis's own.
pub(crate) const MAX_CONNECTIONS: usize = 256;
/// Threads that may resolve names at once (`getaddrinfo` blocks).
const RESOLVERS: usize = 4;
/// The pause after a failed `accept` (out of descriptors, say), so the loop does not spin.
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);

/// One listener inside the namespace and the name and port it stands for.
#[derive(Debug)]
pub(crate) struct Route {
    pub(crate) host: HostName,
    pub(crate) port: u16,
    pub(crate) listener: OwnedFd,
}

/// Starts the forwarder's thread. `children` receives a pidfd from each child as it joins the
/// network; the forwarder serves until its other end is closed and every such child has exited.
pub(crate) fn start(routes: Vec<Route>, children: OwnedFd) -> Result<(), SandboxError> {
    let failed = |source| SandboxError::Forwarder { source };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .max_blocking_threads(RESOLVERS)
        .build()
        .map_err(failed)?;
    // The caller's span (the upstream being started) stays on every line the forwarder logs.
    let span = tracing::Span::current();
    std::thread::Builder::new()
        .name("portcullis-forwarder".to_owned())
        .spawn(move || {
            runtime.block_on(serve(routes, children).instrument(span));
            // A resolution still running is not waited for; its connection is gone anyway.
            runtime.shutdown_background();
        })
        .map_err(failed)?;
    Ok(())
}

async fn serve(routes: Vec<Route>, children: OwnedFd) {
    let limit = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut accepting = JoinSet::new();
    for route in routes {
        let listener = std::net::TcpListener::from(route.listener);
        let listener = match listener
            .set_nonblocking(true)
            .and_then(|()| TcpListener::from_std(listener))
        {
            Ok(listener) => listener,
            Err(error) => {
                // Returning drops every listener: the upstream's connections are refused.
                tracing::error!(%error, "the forwarder cannot serve the upstream's network; its connections are refused");
                return;
            }
        };
        let target = Arc::new(Target {
            host: route.host,
            port: route.port,
        });
        accepting.spawn(accept(target, listener, Arc::clone(&limit)));
    }
    if let Err(error) = watch(children).await {
        tracing::error!(%error, "the forwarder cannot follow its upstream; it stops, and the upstream's connections are refused");
    }
    tracing::debug!("the upstream's network is gone; the forwarder stops");
    // Dropping the tasks (and, after this returns, the runtime) closes every listener and
    // connection.
}

/// Waits until the sending end of `children` is closed and every child that sent a pidfd has
/// exited.
async fn watch(children: OwnedFd) -> io::Result<()> {
    let children = netns::readable(children)?;
    let mut running = JoinSet::new();
    let mut spawning = true;
    while spawning || !running.is_empty() {
        tokio::select! {
            ready = children.readable(), if spawning => {
                let mut ready = ready?;
                match ready.try_io(|socket| netns::receive(socket.get_ref().as_fd())) {
                    Ok(Ok(Received::Fd(pidfd))) => {
                        running.spawn(exited(pidfd));
                    }
                    Ok(Ok(Received::Closed)) => spawning = false,
                    Ok(Ok(Received::Failed(_))) => {}
                    Ok(Err(error)) => return Err(error),
                    Err(_would_block) => {}
                }
            }
            Some(_) = running.join_next(), if !running.is_empty() => {}
        }
    }
    Ok(())
}

/// Resolves when the process behind `pidfd` has exited (a pidfd reads ready then).
async fn exited(pidfd: OwnedFd) {
    match netns::readable(pidfd) {
        Ok(pidfd) => {
            let _ = pidfd.readable().await;
        }
        Err(error) => {
            tracing::error!(%error, "the forwarder cannot watch its upstream's process");
        }
    }
}

/// What a listener stands for.
struct Target {
    host: HostName,
    port: u16,
}

async fn accept(target: Arc<Target>, listener: TcpListener, limit: Arc<Semaphore>) {
    loop {
        match listener.accept().await {
            Ok((inside, _)) => {
                let permit = Arc::clone(&limit).try_acquire_owned().ok();
                tokio::spawn(forward(Arc::clone(&target), inside, permit));
            }
            Err(error) => {
                tracing::warn!(host = %target.host, port = target.port, %error, "the forwarder cannot accept a connection of the contained upstream");
                tokio::time::sleep(ACCEPT_PAUSE).await;
            }
        }
    }
}

/// Forwards one connection to the first address of the name that accepts it, or resets it.
async fn forward(target: Arc<Target>, mut inside: TcpStream, permit: Option<OwnedSemaphorePermit>) {
    let host = target.host.as_str();
    let port = target.port;
    let Some(_permit) = permit else {
        tracing::warn!(
            host,
            port,
            "refused a connection of the contained upstream: it has {MAX_CONNECTIONS} open already"
        );
        return refuse(inside);
    };
    let addresses: Vec<SocketAddr> = match tokio::time::timeout(
        RESOLVE_TIMEOUT,
        tokio::net::lookup_host((host, port)),
    )
    .await
    {
        Ok(Ok(addresses)) => addresses.collect(),
        Ok(Err(error)) => {
            tracing::warn!(host, port, %error, "refused a connection of the contained upstream: the name does not resolve");
            return refuse(inside);
        }
        Err(_) => {
            tracing::warn!(
                host,
                port,
                "refused a connection of the contained upstream: the name did not resolve within {}s",
                RESOLVE_TIMEOUT.as_secs()
            );
            return refuse(inside);
        }
    };
    for address in &addresses {
        // INVARIANT: only an address the granted name resolves to, on the granted port.
        match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(address)).await {
            Ok(Ok(mut outside)) => {
                tracing::info!(host, port, %address, "forwarding a connection of the contained upstream");
                match tokio::io::copy_bidirectional(&mut inside, &mut outside).await {
                    Ok((sent, received)) => {
                        tracing::debug!(host, port, %address, sent, received, "forwarded connection closed");
                    }
                    Err(error) => {
                        tracing::debug!(host, port, %address, %error, "forwarded connection ended");
                    }
                }
                return;
            }
            Ok(Err(error)) => {
                tracing::debug!(host, port, %address, %error, "an address of the name refused the connection");
            }
            Err(_) => {
                tracing::debug!(host, port, %address, "an address of the name did not answer");
            }
        }
    }
    tracing::warn!(
        host,
        port,
        ?addresses,
        "refused a connection of the contained upstream: no address of the name accepted it"
    );
    refuse(inside);
}

/// Resets the upstream's connection (`SO_LINGER` 0: an RST, not an orderly close).
fn refuse(inside: TcpStream) {
    let _ = inside.set_zero_linger();
    drop(inside);
}
