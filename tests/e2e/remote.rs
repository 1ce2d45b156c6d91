//! An https upstream: the fixture's real MCP server behind a TLS front on loopback, whose
//! certificate comes from a certificate authority made for this run. Portcullis reaches it when
//! the upstream's `ca_file` names that authority, sends the header config names with its value
//! from the environment, and refuses a certificate it cannot trust or one for another name,
//! saying which.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use serde_json::json;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

use crate::rust_client::{call, connect, text, wait_for_tools};
use crate::support::{Config, Scratch, Tool, Upstream, bin, free_port, portcullis, wait_until};

const SECRET: &str = "e2e-header-value-7f3a9c";

/// A certificate authority and one server certificate it signed for `names`.
struct Pki {
    ca_pem: String,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

fn pki(names: &[&str]) -> Pki {
    let mut ca_params =
        CertificateParams::new(Vec::<String>::new()).unwrap_or_else(|e| panic!("{e}"));
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_key = KeyPair::generate().unwrap_or_else(|e| panic!("{e}"));
    let ca = CertifiedIssuer::self_signed(ca_params, ca_key).unwrap_or_else(|e| panic!("{e}"));
    let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
    let leaf_key = KeyPair::generate().unwrap_or_else(|e| panic!("{e}"));
    let leaf = CertificateParams::new(names)
        .and_then(|params| params.signed_by(&leaf_key, &ca))
        .unwrap_or_else(|e| panic!("{e}"));
    Pki {
        ca_pem: ca.pem(),
        chain: vec![leaf.der().clone(), ca.der().clone()],
        key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der())),
    }
}

/// The TLS front: accepts on a loopback port, and relays each decrypted connection to the
/// fixture's plain HTTP port, keeping what the client sent.
struct TlsFront {
    port: u16,
    seen: Arc<Mutex<Vec<u8>>>,
    task: tokio::task::JoinHandle<()>,
}

impl TlsFront {
    async fn start(pki: &Pki, backend: SocketAddr) -> Self {
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .and_then(|builder| {
            builder
                .with_no_client_auth()
                .with_single_cert(pki.chain.clone(), pki.key.clone_key())
        })
        .unwrap_or_else(|e| panic!("{e}"));
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let port = listener.local_addr().map(|a| a.port()).unwrap_or_default();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let kept = seen.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (acceptor, kept) = (acceptor.clone(), kept.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(stream).await else {
                        return;
                    };
                    let Ok(plain) = TcpStream::connect(backend).await else {
                        return;
                    };
                    relay(tls, plain, kept).await;
                });
            }
        });
        TlsFront { port, seen, task }
    }

    fn seen(&self) -> String {
        let bytes = self.seen.lock().map(|b| b.clone()).unwrap_or_default();
        String::from_utf8_lossy(&bytes).to_ascii_lowercase()
    }
}

impl Drop for TlsFront {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn relay(
    tls: tokio_rustls::server::TlsStream<TcpStream>,
    plain: TcpStream,
    seen: Arc<Mutex<Vec<u8>>>,
) {
    let (mut tls_read, mut tls_write) = tokio::io::split(tls);
    let (mut plain_read, mut plain_write) = plain.into_split();
    let upward = async move {
        let mut buffer = vec![0u8; 16 * 1024];
        while let Ok(n @ 1..) = tls_read.read(&mut buffer).await {
            if let Ok(mut seen) = seen.lock() {
                seen.extend_from_slice(&buffer[..n]);
            }
            if plain_write.write_all(&buffer[..n]).await.is_err() {
                break;
            }
        }
    };
    let downward = async move {
        let _ = tokio::io::copy(&mut plain_read, &mut tls_write).await;
        let _ = tls_write.shutdown().await;
    };
    tokio::join!(upward, downward);
}

/// The fixture's MCP server over plain HTTP on a free loopback port; killed on drop.
struct Fixture {
    child: std::process::Child,
    address: SocketAddr,
}

impl Fixture {
    fn start(work: &Path) -> Self {
        let port = free_port();
        let child = std::process::Command::new(bin("portcullis-fixture"))
            .arg("--scratch")
            .arg(work)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start the fixture: {e}"));
        let address = SocketAddr::from(([127, 0, 0, 1], port));
        let ready = wait_until(Duration::from_secs(30), || {
            std::net::TcpStream::connect(address).is_ok()
        });
        assert!(ready, "the fixture did not listen on {address}");
        Fixture { child, address }
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn https_config(
    scratch: &Scratch,
    host: &str,
    port: u16,
    ca_file: Option<&Path>,
) -> std::path::PathBuf {
    let mut upstream = Upstream::url("remote", &format!("https://{host}:{port}/mcp"))
        .tool("echo", Tool::read())
        .header_from_env("X-Test-Key", "E2E_REMOTE_KEY");
    if let Some(file) = ca_file {
        upstream = upstream.ca_file(file);
    }
    scratch.config(Config::relay().upstream(upstream))
}

/// What `portcullis tools` says of the upstream (it starts it and reports it): its report
/// line, not the log lines around it.
fn tools_report(config: &Path) -> String {
    let output = std::process::Command::new(bin("portcullis"))
        .args(["tools", "--config"])
        .arg(config)
        .env("E2E_REMOTE_KEY", SECRET)
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter(|line| line.trim_start().starts_with("remote"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The shipped https example, copied into the scratch directory at the same depth (its
/// `../../state/tls/ca.pem` lands in the scratch's `state/`), pointed at `port`.
fn https_example(scratch: &Scratch, port: u16, ca_pem: &str) -> std::path::PathBuf {
    let source = crate::support::repo_root().join("config/examples/https.toml");
    let text = std::fs::read_to_string(&source).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        text.contains("localhost:8443"),
        "the example names its port"
    );
    let dir = scratch.path().join("config/examples");
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
    std::fs::create_dir_all(scratch.path().join("state/tls")).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(scratch.path().join("state/tls/ca.pem"), ca_pem)
        .unwrap_or_else(|e| panic!("{e}"));
    let target = dir.join("https.toml");
    std::fs::write(
        &target,
        text.replace("localhost:8443", &format!("localhost:{port}")),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    target
}

#[tokio::test(flavor = "multi_thread")]
async fn the_https_example_is_reached_with_its_ca_file_and_its_header_from_the_environment() {
    let scratch = Scratch::new();
    let fixture = Fixture::start(&scratch.sub("work"));
    let pki = pki(&["localhost"]);
    let front = TlsFront::start(&pki, fixture.address).await;
    let config = https_example(&scratch, front.port, &pki.ca_pem);

    let client = connect(&config, &[("SEARCH_API_KEY", SECRET)]).await;
    let names = wait_for_tools(&client, Duration::from_secs(20), |n| !n.is_empty()).await;
    assert!(names.contains(&"search.echo".to_owned()), "{names:?}");
    let answer = call(&client, "search.echo", json!({"text": "over tls"})).await;
    assert!(text(&answer).contains("over tls"), "{}", text(&answer));
    let _ = client.cancel().await;

    // The header reached the upstream, inside TLS, with the value from the environment.
    let seen = front.seen();
    assert!(
        seen.contains(&format!("x-api-key: {SECRET}")),
        "headers seen: {seen:.400}"
    );
    // Nothing Portcullis writes holds the value.
    let evidence = std::fs::read_to_string(scratch.path().join("state/evidence-https.jsonl"))
        .unwrap_or_default();
    assert!(evidence.contains("search"), "the evidence log was written");
    assert!(!evidence.contains(SECRET));
}

#[tokio::test(flavor = "multi_thread")]
async fn an_https_upstream_whose_certificate_cannot_be_trusted_is_not_reached_and_says_why() {
    let scratch = Scratch::new();
    let fixture = Fixture::start(&scratch.sub("work"));
    let pki = pki(&["localhost"]);
    let front = TlsFront::start(&pki, fixture.address).await;

    // No `ca_file`: the system's roots do not know this authority.
    let unknown = tools_report(&https_config(&scratch, "localhost", front.port, None));
    assert!(
        unknown.contains("an authority this machine does not trust") && unknown.contains("ca_file"),
        "{unknown}"
    );

    // The authority is trusted, but the certificate is for another name than the URL's.
    let ca_file = scratch.path().join("ca.pem");
    std::fs::write(&ca_file, &pki.ca_pem).unwrap_or_else(|e| panic!("{e}"));
    let wrong_name = tools_report(&https_config(
        &scratch,
        "127.0.0.1",
        front.port,
        Some(&ca_file),
    ));
    assert!(
        wrong_name.contains("not valid for the host name") && wrong_name.contains("127.0.0.1"),
        "{wrong_name}"
    );

    // Neither attempt sent a request: no header crossed.
    assert!(!front.seen().contains("x-test-key"), "{}", front.seen());
}

#[test]
fn plain_http_to_a_remote_host_and_header_values_in_the_file_are_refused() {
    let scratch = Scratch::new();
    // Test data: configs `check` must refuse (and one it must take), written as a person would.
    let check = |body: &str| {
        let (ok, _, stderr) = portcullis(&["check"], &scratch.config(body));
        (ok, stderr)
    };
    let (ok, message) = check("[[upstream]]\nname = \"r\"\nurl = \"http://mcp.example.com/mcp\"\n");
    assert!(!ok && message.contains("insecure_http"), "{message}");
    let (ok, message) = check(
        "[[upstream]]\nname = \"r\"\nurl = \"http://mcp.example.com/mcp\"\ninsecure_http = true\n",
    );
    assert!(ok, "{message}");
    let (ok, message) = check(
        "[[upstream]]\nname = \"r\"\nurl = \"https://mcp.example.com/mcp\"\nheaders = { X-Key = \"sk-live-in-the-file\" }\n",
    );
    assert!(!ok && message.contains("environment variable"), "{message}");
    assert!(!message.contains("sk-live-in-the-file"), "{message}");
}
