//! HAProxy (Debian's package) in front of replicas, on loopback: round robin for stateless
//! traffic, and stickiness on `Mcp-Session-Id` for session-era traffic (a session lives in
//! the replica that started it). Its config is generated; it stops when dropped.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::{free_port, wait_until};

/// A running HAProxy; killed on drop.
pub struct HaProxy {
    child: Child,
    pub port: u16,
    /// Its statistics page (`/stats;csv`), which says which replicas it counts as up.
    stats: u16,
    dir: tempfile::TempDir,
}

impl HaProxy {
    /// Balances `127.0.0.1:<port>` over the replicas listening on `backends`.
    pub fn start(backends: &[u16]) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("portcullis-haproxy-")
            .tempdir()
            .unwrap_or_else(|e| panic!("cannot create a temp dir: {e}"));
        let port = free_port();
        let stats = free_port();
        let config = dir.path().join("haproxy.cfg");
        std::fs::write(&config, balancer_config(port, stats, backends))
            .unwrap_or_else(|e| panic!("write haproxy.cfg: {e}"));
        let log = std::fs::File::create(dir.path().join("haproxy.log"))
            .unwrap_or_else(|e| panic!("create haproxy.log: {e}"));
        let child = Command::new("haproxy")
            .arg("-db") // in the foreground, so that the test owns the process
            .arg("-f")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start haproxy (scripts/setup.sh installs it): {e}"));
        let haproxy = Self {
            child,
            port,
            stats,
            dir,
        };
        let listening = wait_until(Duration::from_secs(20), || {
            TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        assert!(
            listening,
            "haproxy did not listen within 20 s:\n{}",
            haproxy.log()
        );
        haproxy
    }

    /// Waits until its health checks count `replicas` replicas up (within 30 s).
    pub fn wait_until_up(&self, replicas: usize) {
        let up = || {
            stats_csv(self.stats)
                .lines()
                .filter(|line| line.starts_with("replicas,replica"))
                .filter(|line| line.split(',').nth(17) == Some("UP"))
                .count()
        };
        assert!(
            wait_until(Duration::from_secs(30), || up() >= replicas),
            "haproxy did not count {replicas} replicas up within 30 s:\n{}",
            self.log()
        );
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("haproxy.log")).unwrap_or_default()
    }
}

impl Drop for HaProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// HAProxy's statistics as CSV (empty when they cannot be read yet).
fn stats_csv(port: u16) -> String {
    let read = || -> std::io::Result<String> {
        let mut stream = TcpStream::connect(("127.0.0.1", port))?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        write!(
            stream,
            "GET /stats;csv HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
        )?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer)?;
        Ok(answer)
    };
    read().unwrap_or_default()
}

/// The configuration README.md's "Running N replicas" shows, for loopback.
fn balancer_config(port: u16, stats: u16, backends: &[u16]) -> String {
    let servers: String = backends
        .iter()
        .enumerate()
        .map(|(n, backend)| format!("    server replica{n} 127.0.0.1:{backend} check\n"))
        .collect();
    format!(
        "global
    maxconn 512

defaults
    mode http
    timeout connect 5s
    timeout client 120s
    timeout server 120s

frontend mcp
    bind 127.0.0.1:{port}
    default_backend replicas

listen stats
    bind 127.0.0.1:{stats}
    stats enable
    stats uri /stats

backend replicas
    balance roundrobin
    # A replica is out while its /readyz fails; a request whose replica does not answer goes
    # to another (for a session, one that knows no such session: 404, so the client starts a
    # new one).
    option httpchk GET /readyz
    default-server inter 1s fall 2 rise 1
    option redispatch
    retries 2
    # Session-era traffic: the session id the replica answered `initialize` with sends every
    # later request of that session to it. Stateless traffic has none: round robin.
    stick-table type string len 128 size 100k expire 30m
    stick store-response res.hdr(mcp-session-id)
    stick match req.hdr(mcp-session-id)
{servers}"
    )
}
