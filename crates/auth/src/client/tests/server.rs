//! A scripted upstream and authorization server on loopback for the client's tests: a canned
//! answer per path (anything else is a 404), and every request it received, form fields and
//! `Authorization` header included, for the tests to assert on.
#![expect(clippy::unwrap_used, clippy::panic, reason = "tests")]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE, LOCATION, WWW_AUTHENTICATE};
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use url::{Url, form_urlencoded};

use crate::tests::idp::{Serving, TlsListener, bind_loopback};

/// A canned answer.
#[derive(Debug, Clone)]
pub(crate) struct Reply {
    status: StatusCode,
    content_type: Option<&'static str>,
    location: Option<String>,
    body: String,
    www_authenticate: Option<String>,
}

impl Reply {
    pub(crate) fn json(value: &Value) -> Self {
        Self::json_status(StatusCode::OK, value)
    }

    pub(crate) fn json_status(status: StatusCode, value: &Value) -> Self {
        Self {
            status,
            content_type: Some("application/json"),
            location: None,
            body: value.to_string(),
            www_authenticate: None,
        }
    }

    pub(crate) fn text(status: StatusCode, body: &str) -> Self {
        Self {
            status,
            content_type: Some("text/html"),
            location: None,
            body: body.to_owned(),
            www_authenticate: None,
        }
    }

    pub(crate) fn status(status: StatusCode) -> Self {
        Self {
            status,
            content_type: None,
            location: None,
            body: String::new(),
            www_authenticate: None,
        }
    }

    /// A status with a `WWW-Authenticate` challenge.
    pub(crate) fn challenge(status: StatusCode, header: &str) -> Self {
        Self {
            status,
            content_type: None,
            location: None,
            body: String::new(),
            www_authenticate: Some(header.to_owned()),
        }
    }

    pub(crate) fn redirect(status: StatusCode, location: &str) -> Self {
        Self {
            status,
            content_type: None,
            location: Some(location.to_owned()),
            body: String::new(),
            www_authenticate: None,
        }
    }
}

impl IntoResponse for Reply {
    fn into_response(self) -> Response {
        let mut response = (self.status, self.body).into_response();
        if let Some(content_type) = self.content_type {
            response
                .headers_mut()
                .insert(CONTENT_TYPE, content_type.parse().unwrap());
        }
        if let Some(header) = self.www_authenticate {
            response
                .headers_mut()
                .insert(WWW_AUTHENTICATE, header.parse().unwrap());
        }
        if let Some(location) = self.location {
            response
                .headers_mut()
                .insert(LOCATION, location.parse().unwrap());
        }
        response
    }
}

/// One request as the server saw it.
#[derive(Debug, Clone)]
pub(crate) struct Received {
    pub(crate) method: String,
    pub(crate) path: String,
    pub(crate) authorization: Option<String>,
    pub(crate) form: Vec<(String, String)>,
}

impl Received {
    /// The one value of a form field; `None` when absent, a failure when repeated.
    pub(crate) fn field(&self, name: &str) -> Option<&str> {
        let mut values = self.form.iter().filter(|(key, _)| key == name);
        let value = values.next().map(|(_, value)| value.as_str());
        assert!(values.next().is_none(), "`{name}` sent twice");
        value
    }
}

#[derive(Default)]
pub(crate) struct Script {
    replies: Mutex<HashMap<String, Reply>>,
    received: Mutex<Vec<Received>>,
}

pub(crate) struct Scripted {
    /// `http://127.0.0.1:<port>` or `https://127.0.0.1:<port>`.
    pub(crate) base: String,
    script: Arc<Script>,
    _server: Serving,
}

impl Scripted {
    pub(crate) async fn start() -> Self {
        let (listener, base) = bind_loopback().await;
        Self::serve(listener, base)
    }

    /// The same over https, with the certificate the crate's test CA signed.
    pub(crate) async fn start_tls() -> Self {
        let (listener, base) = TlsListener::bind().await;
        Self::serve(listener, base)
    }

    fn serve<L>(listener: L, base: String) -> Self
    where
        L: axum::serve::Listener<Addr = SocketAddr>,
    {
        let script = Arc::new(Script::default());
        let router = Router::new()
            .fallback(answer)
            .with_state(Arc::clone(&script));
        Self {
            base,
            script,
            _server: Serving::spawn(listener, router),
        }
    }

    pub(crate) fn url(&self, path: &str) -> Url {
        Url::parse(&format!("{}{path}", self.base)).unwrap()
    }

    pub(crate) fn reply(&self, path: &str, reply: Reply) {
        self.script
            .replies
            .lock()
            .unwrap()
            .insert(path.to_owned(), reply);
    }

    pub(crate) fn received(&self) -> Vec<Received> {
        self.script.received.lock().unwrap().clone()
    }

    /// The paths asked for, in order.
    pub(crate) fn paths(&self) -> Vec<String> {
        self.received()
            .into_iter()
            .map(|received| received.path)
            .collect()
    }

    /// The last request to `path`.
    pub(crate) fn last(&self, path: &str) -> Received {
        self.received()
            .into_iter()
            .rev()
            .find(|received| received.path == path)
            .unwrap_or_else(|| panic!("nothing was sent to `{path}`"))
    }
}

async fn answer(State(script): State<Arc<Script>>, request: Request<Body>) -> Response {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, 1 << 20).await.unwrap();
    let received = Received {
        method: parts.method.to_string(),
        path: parts.uri.path().to_owned(),
        authorization: parts
            .headers
            .get(AUTHORIZATION)
            .map(|value| value.to_str().unwrap().to_owned()),
        form: form_urlencoded::parse(&body).into_owned().collect(),
    };
    let reply = script.replies.lock().unwrap().get(&received.path).cloned();
    script.received.lock().unwrap().push(received);
    match reply {
        Some(reply) => reply.into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}
