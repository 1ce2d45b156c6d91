//! Misbehaviour before serving (`--start-mode`): crash, hang, or start slowly.

use std::io::Read;

use crate::cli::{StartMode, Transport};

/// Exit code of `--start-mode crash`.
const CRASH_EXIT_CODE: i32 = 3;

/// Runs the start mode. Returns only when the server should go on to serve.
pub(crate) fn apply(mode: StartMode, transport: Transport) {
    match mode {
        StartMode::Normal => {}
        StartMode::Crash => {
            tracing::warn!(
                code = CRASH_EXIT_CODE,
                "start mode crash: exiting before answering"
            );
            std::process::exit(CRASH_EXIT_CODE);
        }
        StartMode::Slow(delay) => {
            tracing::info!(?delay, "start mode slow: waiting before serving");
            std::thread::sleep(delay);
        }
        StartMode::Hang => hang(transport),
    }
}

/// Never answers, and never returns: a server that is alive but stuck.
fn hang(transport: Transport) -> ! {
    tracing::warn!("start mode hang: never answering");
    match transport {
        Transport::Stdio => {
            // Drain stdin so the client's writes never block; discard everything.
            let mut buffer = [0_u8; 8192];
            let mut stdin = std::io::stdin().lock();
            while matches!(stdin.read(&mut buffer), Ok(read) if read > 0) {}
        }
        Transport::Http(address) => {
            // Bound but never accepted: connections complete in the kernel's backlog and
            // requests wait forever.
            match std::net::TcpListener::bind(address) {
                Ok(listener) => {
                    if let Ok(local) = listener.local_addr() {
                        crate::http::announce(local);
                    }
                    park_forever(Some(listener))
                }
                Err(error) => tracing::warn!(%error, "cannot bind `{address}`"),
            }
        }
    }
    park_forever(None)
}

fn park_forever(listener: Option<std::net::TcpListener>) -> ! {
    // Held so the port stays bound.
    let _listener = listener;
    loop {
        std::thread::park();
    }
}
