//! A small identity provider on loopback for the tests: discovery documents and a JWKS that a
//! test can change, counting what is fetched, and the fixture keys to sign tokens with.
#![expect(clippy::unwrap_used, reason = "tests")]

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use axum::http::header::{CONTENT_TYPE, LOCATION};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

macro_rules! fixture {
    ($name:literal) => {
        include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../fixtures/auth/",
            $name
        ))
    };
}

/// The public key PEM, as an attacker would use it for an HMAC "signature".
pub(crate) const RSA_PUBLIC_PEM: &[u8] = fixture!("rsa-2048.pub.pem");

/// The test CA, which signed the certificate the https provider serves (for 127.0.0.1).
pub(crate) fn test_ca() -> Vec<CertificateDer<'static>> {
    CertificateDer::pem_slice_iter(fixture!("tls-ca.pem"))
        .collect::<Result<_, _>>()
        .unwrap()
}

/// A fixture key: its kid, its algorithm, the private half, the public half as a JWK.
pub(crate) struct TestKey {
    pub(crate) kid: &'static str,
    pub(crate) alg: Algorithm,
    encoding: EncodingKey,
    pub(crate) jwk: Value,
}

impl TestKey {
    fn load(kid: &'static str, alg: Algorithm, pem: &[u8]) -> Self {
        let encoding = match alg {
            Algorithm::ES256 | Algorithm::ES384 => EncodingKey::from_ec_pem(pem),
            Algorithm::EdDSA => EncodingKey::from_ed_pem(pem),
            _ => EncodingKey::from_rsa_pem(pem),
        }
        .unwrap();
        let mut jwk = Jwk::from_encoding_key(&encoding, alg).unwrap();
        jwk.common.key_id = Some(kid.to_owned());
        // The RSA key is published without `alg`, so it verifies RS* and PS* alike.
        if matches!(alg, Algorithm::RS256) {
            jwk.common.key_algorithm = None;
        }
        let jwk = serde_json::to_value(jwk).unwrap();
        Self {
            kid,
            alg,
            encoding,
            jwk,
        }
    }

    pub(crate) fn ec() -> Self {
        Self::load("ec-1", Algorithm::ES256, fixture!("ec-p256.pem"))
    }

    pub(crate) fn rsa() -> Self {
        Self::load("rsa-1", Algorithm::RS256, fixture!("rsa-2048.pem"))
    }

    pub(crate) fn ed() -> Self {
        Self::load("ed-1", Algorithm::EdDSA, fixture!("ed25519.pem"))
    }

    /// A key the provider does not publish at first.
    pub(crate) fn other() -> Self {
        Self::load("ec-2", Algorithm::ES256, fixture!("other-ec-p256.pem"))
    }

    pub(crate) fn sign(&self, claims: &Value) -> String {
        self.sign_as(self.kid, self.alg, claims)
    }

    pub(crate) fn sign_without_kid(&self, claims: &Value) -> String {
        jsonwebtoken::encode(&Header::new(self.alg), claims, &self.encoding).unwrap()
    }

    /// Signs with this key but names `kid` and `alg` in the header, as a forger would.
    pub(crate) fn sign_as(&self, kid: &str, alg: Algorithm, claims: &Value) -> String {
        let mut header = Header::new(alg);
        header.kid = Some(kid.to_owned());
        jsonwebtoken::encode(&header, claims, &self.encoding).unwrap()
    }
}

/// An HMAC token keyed with `secret`, whatever key its `kid` names.
pub(crate) fn sign_hmac(secret: &[u8], kid: &str, claims: &Value) -> String {
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some(kid.to_owned());
    jsonwebtoken::encode(&header, claims, &EncodingKey::from_secret(secret).unwrap()).unwrap()
}

/// What the provider serves, changeable by the test, and what it was asked for.
#[derive(Default)]
pub(crate) struct IdpState {
    pub(crate) jwks: Mutex<Vec<Value>>,
    /// The `issuer` its metadata names; the real one when `None`.
    pub(crate) advertised_issuer: Mutex<Option<String>>,
    /// Whether OpenID Connect discovery answers; RFC 8414 always does.
    pub(crate) no_oidc: AtomicBool,
    pub(crate) oidc_fetches: AtomicUsize,
    pub(crate) oauth_fetches: AtomicUsize,
    pub(crate) jwks_fetches: AtomicUsize,
}

impl IdpState {
    pub(crate) fn publish(&self, keys: &[&TestKey]) {
        *self.jwks.lock().unwrap() = keys.iter().map(|key| key.jwk.clone()).collect();
    }

    pub(crate) fn jwks_fetches(&self) -> usize {
        self.jwks_fetches.load(Ordering::SeqCst)
    }
}

pub(crate) struct Idp {
    /// `http://127.0.0.1:<port>`
    pub(crate) issuer: String,
    pub(crate) state: Arc<IdpState>,
    _server: Serving,
}

impl Idp {
    pub(crate) async fn start(keys: &[&TestKey]) -> Self {
        let (listener, issuer) = bind_loopback().await;
        Self::serve(listener, issuer, keys)
    }

    /// The same provider over https, with the certificate the test CA signed.
    pub(crate) async fn start_tls(keys: &[&TestKey]) -> Self {
        let (listener, issuer) = TlsListener::bind().await;
        Self::serve(listener, issuer, keys)
    }

    fn serve<L>(listener: L, issuer: String, keys: &[&TestKey]) -> Self
    where
        L: axum::serve::Listener<Addr = SocketAddr>,
    {
        let state = Arc::new(IdpState::default());
        state.publish(keys);
        let router = router(issuer.clone(), Arc::clone(&state));
        Self {
            issuer,
            state,
            _server: Serving::spawn(listener, router),
        }
    }
}

/// A plain-http listener on 127.0.0.1 and its base URL, `http://127.0.0.1:<port>`.
pub(crate) async fn bind_loopback() -> (TcpListener, String) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    (listener, base)
}

/// A test server answering in the background until this is dropped, so that no test leaves
/// one running.
pub(crate) struct Serving(JoinHandle<()>);

impl Serving {
    pub(crate) fn spawn<L>(listener: L, router: Router) -> Self
    where
        L: axum::serve::Listener<Addr = SocketAddr>,
    {
        Self(tokio::spawn(async move {
            axum::serve(listener, router).await.unwrap();
        }))
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A listener on 127.0.0.1 that speaks TLS with the certificate the test CA signed (for
/// `127.0.0.1` and `localhost`).
pub(crate) struct TlsListener {
    tcp: TcpListener,
    acceptor: TlsAcceptor,
}

impl TlsListener {
    /// The listener and its base URL, `https://127.0.0.1:<port>`.
    pub(crate) async fn bind() -> (Self, String) {
        let certificates = CertificateDer::pem_slice_iter(fixture!("tls-localhost.pem"))
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        let key = PrivateKeyDer::from_pem_slice(fixture!("tls-localhost.key")).unwrap();
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certificates, key)
        .unwrap();
        let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("https://{}", tcp.local_addr().unwrap());
        let listener = Self {
            tcp,
            acceptor: TlsAcceptor::from(Arc::new(config)),
        };
        (listener, base)
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let Ok((stream, address)) = self.tcp.accept().await else {
                continue;
            };
            // A client that refuses the certificate fails the handshake; wait for the next.
            if let Ok(tls) = self.acceptor.accept(stream).await {
                return (tls, address);
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}

fn json_response(value: &Value) -> Response {
    ([(CONTENT_TYPE, "application/json")], value.to_string()).into_response()
}

fn router(issuer: String, state: Arc<IdpState>) -> Router {
    let metadata = {
        let issuer = issuer.clone();
        let state = Arc::clone(&state);
        move || {
            let advertised = state.advertised_issuer.lock().unwrap().clone();
            json!({
                "issuer": advertised.unwrap_or_else(|| issuer.clone()),
                "jwks_uri": format!("{issuer}/jwks"),
                "authorization_endpoint": format!("{issuer}/authorize"),
                "token_endpoint": format!("{issuer}/token"),
            })
        }
    };
    let oidc = {
        let state = Arc::clone(&state);
        let metadata = metadata.clone();
        move || {
            state.oidc_fetches.fetch_add(1, Ordering::SeqCst);
            let response = if state.no_oidc.load(Ordering::SeqCst) {
                StatusCode::NOT_FOUND.into_response()
            } else {
                json_response(&metadata())
            };
            async move { response }
        }
    };
    let oauth = {
        let state = Arc::clone(&state);
        let metadata = metadata.clone();
        move || {
            state.oauth_fetches.fetch_add(1, Ordering::SeqCst);
            let response = json_response(&metadata());
            async move { response }
        }
    };
    let jwks = {
        let state = Arc::clone(&state);
        move || {
            state.jwks_fetches.fetch_add(1, Ordering::SeqCst);
            let keys = state.jwks.lock().unwrap().clone();
            async move { json_response(&json!({ "keys": keys })) }
        }
    };
    let redirect = |to: String| {
        move || {
            let to = to.clone();
            async move { (StatusCode::FOUND, [(LOCATION, to)]).into_response() }
        }
    };
    Router::new()
        .route("/.well-known/openid-configuration", get(oidc))
        .route("/.well-known/oauth-authorization-server", get(oauth))
        .route("/jwks", get(jwks))
        // Misbehaving issuers, each under its own path.
        .route(
            "/moved/.well-known/openid-configuration",
            get(redirect("/.well-known/openid-configuration".to_owned())),
        )
        .route(
            "/upgraded/.well-known/openid-configuration",
            get(redirect(
                "https://127.0.0.1:9/.well-known/openid-configuration".to_owned(),
            )),
        )
        .route(
            "/looping/.well-known/openid-configuration",
            get(redirect(
                "/looping/.well-known/openid-configuration".to_owned(),
            )),
        )
        .route(
            "/huge/.well-known/openid-configuration",
            get(|| async { json_response(&json!({ "padding": "x".repeat(200 * 1024) })) }),
        )
        .route(
            "/slow/.well-known/openid-configuration",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(30)).await;
                StatusCode::NOT_FOUND
            }),
        )
        .route(
            "/garbage/.well-known/openid-configuration",
            get(|| async { "<html>not json</html>" }),
        )
}
