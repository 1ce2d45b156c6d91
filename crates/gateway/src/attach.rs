//! Attaching a credential to the one HTTP request that carries a call, as it is sent.
//!
//! One connection per upstream is shared by every session, so a user's token can never be a
//! header of the connection. Instead the tool call's JSON-RPC request carries an
//! [`Attachment`] in its (never serialised) extensions, and [`AttachingClient`], the HTTP
//! client of that connection, looks the token up at the moment it POSTs that message: after
//! the decision, after the approval, and fresh (refreshed if it is about to expire). A 401
//! from the upstream gets one refresh and one retry; the reason a credential could not be
//! attached is kept in the attachment for the call to report.
//!
//! INVARIANT: a token reaches only the request whose attachment named it; requests without
//! one (lists, pings, notifications, the event stream) go out with the upstream's service
//! credential or none.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use http::{HeaderName, HeaderValue};
use rmcp::model::{ClientJsonRpcMessage, GetExtensions};
use rmcp::transport::streamable_http_client::{
    SseError, StreamableHttpClient, StreamableHttpError, StreamableHttpPostResponse,
    StreamableHttpResponseLimits,
};

use portcullis_credentials::Secret as SecretValue;

/// Why no credential went with a request; the call reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttachFailure {
    /// The grant is gone, revoked or expired beyond refresh: the person must authorise again
    /// (why, in a few words).
    Reauthorise(String),
    /// The upstream refused the token for lack of scopes (403 `insufficient_scope`).
    InsufficientScope(Vec<String>),
    /// Something else failed (the store, the authorization server); retrying may help.
    Failed(String),
}

impl AttachFailure {
    /// The message for the client: what to do, never a secret.
    pub fn describe(&self, upstream: &str) -> String {
        match self {
            Self::Reauthorise(why) => format!(
                "re-authorise `{upstream}`: {why}; call again to be asked to sign in, or run `portcullis login {upstream}`; the call did not run"
            ),
            Self::InsufficientScope(scopes) if scopes.is_empty() => format!(
                "upstream `{upstream}` refused the call for lack of scopes; the call did not run"
            ),
            Self::InsufficientScope(scopes) => format!(
                "upstream `{upstream}` refused the call: your grant lacks {}; call again to be asked to grant it; the call did not run",
                scopes.join(" ")
            ),
            Self::Failed(why) => format!("no credential for upstream `{upstream}`: {why}"),
        }
    }
}

/// How a header value for a request is obtained, at send time.
pub trait CredentialSource: Send + Sync {
    /// The header to send now (refreshed if it is about to expire).
    fn header(&self) -> BoxFuture<'_, Result<(HeaderName, SecretValue), AttachFailure>>;
    /// The upstream answered 401 to `sent`: refresh once if nothing newer is held, and give
    /// the header to retry with; `None` when there is nothing better to retry with.
    fn rejected<'a>(
        &'a self,
        sent: &'a SecretValue,
    ) -> BoxFuture<'a, Result<Option<(HeaderName, SecretValue)>, AttachFailure>>;
}

pub(crate) type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The credential of one call's request, carried in the request's extensions.
#[derive(Clone)]
pub struct Attachment {
    source: Arc<dyn CredentialSource>,
    failure: Arc<Mutex<Option<AttachFailure>>>,
}

impl fmt::Debug for Attachment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Attachment(..)")
    }
}

impl Attachment {
    pub fn new(source: Arc<dyn CredentialSource>) -> Self {
        Self {
            source,
            failure: Arc::new(Mutex::new(None)),
        }
    }

    /// Why the credential could not be attached, if it could not.
    pub fn failure(&self) -> Option<AttachFailure> {
        self.failure.lock().ok().and_then(|slot| slot.clone())
    }

    fn fail(&self, failure: AttachFailure) {
        if let Ok(mut slot) = self.failure.lock() {
            *slot = Some(failure);
        }
    }
}

/// The HTTP client of an upstream connection: reqwest, plus the credential of each request
/// that carries an [`Attachment`], and the upstream's service credential (if it has one) on
/// every other request.
#[derive(Clone)]
pub(crate) struct AttachingClient {
    inner: reqwest::Client,
    service: Option<Arc<dyn CredentialSource>>,
    /// Why the last request could not be sent, in plain words (rmcp's own error keeps only
    /// "error sending request"): a certificate that is not trusted, or is for another name.
    unsent: Arc<Mutex<Option<String>>>,
}

impl AttachingClient {
    pub(crate) fn new(inner: reqwest::Client, service: Option<Arc<dyn CredentialSource>>) -> Self {
        Self {
            inner,
            service,
            unsent: Arc::default(),
        }
    }

    /// Why the last request could not be sent, if it could not.
    pub(crate) fn unsent(&self) -> Option<String> {
        self.unsent.lock().ok().and_then(|unsent| unsent.clone())
    }

    fn note_unsent<T>(&self, outcome: &Result<T, StreamableHttpError<reqwest::Error>>) {
        if let Err(StreamableHttpError::Client(error)) = outcome
            && let Ok(mut unsent) = self.unsent.lock()
        {
            *unsent = Some(crate::remote::unsent_reason(error));
        }
    }

    fn attachment_of(message: &ClientJsonRpcMessage) -> Option<Attachment> {
        match message {
            ClientJsonRpcMessage::Request(request) => {
                request.request.extensions().get::<Attachment>().cloned()
            }
            // A call's cancellation carries the call's credential.
            ClientJsonRpcMessage::Notification(notification) => notification
                .notification
                .extensions()
                .get::<Attachment>()
                .cloned(),
            _ => None,
        }
    }

    /// Sends through `send` with the credential `message` (or the connection) calls for.
    async fn with_credential<T, F, Fut>(
        &self,
        attachment: Option<Attachment>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
        send: F,
    ) -> Result<T, StreamableHttpError<reqwest::Error>>
    where
        F: Fn(Option<String>, HashMap<HeaderName, HeaderValue>) -> Fut,
        Fut: Future<Output = Result<T, StreamableHttpError<reqwest::Error>>>,
    {
        let source = match (&attachment, &self.service) {
            (Some(attachment), _) => attachment.source.clone(),
            (None, Some(service)) => service.clone(),
            (None, None) => {
                let outcome = send(None, custom_headers).await;
                self.note_unsent(&outcome);
                return outcome;
            }
        };
        let note = |failure: AttachFailure| {
            if let Some(attachment) = &attachment {
                attachment.fail(failure);
            }
        };
        // The message names no secret; the call reports the attachment's own reason.
        let unattached = || {
            StreamableHttpError::UnexpectedServerResponse(
                "portcullis could not attach the upstream credential".into(),
            )
        };
        let (name, value) = match source.header().await {
            Ok(header) => header,
            Err(failure) => {
                note(failure);
                return Err(unattached());
            }
        };
        let mut outcome = send_with(&send, &custom_headers, &name, &value).await;
        if matches!(outcome, Err(StreamableHttpError::AuthRequired(_))) {
            match source.rejected(&value).await {
                Ok(Some((name, fresh))) => {
                    outcome = send_with(&send, &custom_headers, &name, &fresh).await;
                }
                Ok(None) => {}
                Err(failure) => {
                    note(failure);
                    return Err(unattached());
                }
            }
        }
        match &outcome {
            Err(StreamableHttpError::AuthRequired(_)) => note(AttachFailure::Reauthorise(
                "the upstream refused the credential, and again after a refresh".to_owned(),
            )),
            Err(StreamableHttpError::InsufficientScope(scope)) => {
                note(AttachFailure::InsufficientScope(
                    scope
                        .required_scope
                        .as_deref()
                        .unwrap_or_default()
                        .split(' ')
                        .filter(|s| !s.is_empty())
                        .map(str::to_owned)
                        .collect(),
                ));
            }
            _ => {}
        }
        self.note_unsent(&outcome);
        outcome
    }
}

/// Sends with the header: the `authorization` header through rmcp's own bearer parameter,
/// any other (an API key's own header) among the custom headers.
async fn send_with<T, F, Fut>(
    send: &F,
    custom_headers: &HashMap<HeaderName, HeaderValue>,
    name: &HeaderName,
    value: &SecretValue,
) -> Result<T, StreamableHttpError<reqwest::Error>>
where
    F: Fn(Option<String>, HashMap<HeaderName, HeaderValue>) -> Fut,
    Fut: Future<Output = Result<T, StreamableHttpError<reqwest::Error>>>,
{
    // Whatever leaves for an upstream may come back in what it answers: known from now on.
    crate::secrets::Secrets::global()
        .register(&format!("a credential sent in `{name}`"), value.expose());
    if name == http::header::AUTHORIZATION {
        return send(Some(value.expose().to_owned()), custom_headers.clone()).await;
    }
    let mut headers = custom_headers.clone();
    match HeaderValue::from_str(value.expose()) {
        Ok(mut header) => {
            header.set_sensitive(true);
            headers.insert(name.clone(), header);
            send(None, headers).await
        }
        Err(_) => Err(StreamableHttpError::UnexpectedServerResponse(
            "the upstream credential is not a valid header value".into(),
        )),
    }
}

impl StreamableHttpClient for AttachingClient {
    type Error = reqwest::Error;

    async fn post_message(
        &self,
        uri: Arc<str>,
        message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        _auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<StreamableHttpPostResponse, StreamableHttpError<Self::Error>> {
        let attachment = Self::attachment_of(&message);
        self.with_credential(attachment, custom_headers, |token, headers| {
            self.inner.post_message(
                uri.clone(),
                message.clone(),
                session_id.clone(),
                token,
                headers,
            )
        })
        .await
    }

    async fn post_message_with_response_limits(
        &self,
        uri: Arc<str>,
        message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        _auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
        limits: StreamableHttpResponseLimits,
    ) -> Result<StreamableHttpPostResponse, StreamableHttpError<Self::Error>> {
        let attachment = Self::attachment_of(&message);
        self.with_credential(attachment, custom_headers, |token, headers| {
            self.inner.post_message_with_response_limits(
                uri.clone(),
                message.clone(),
                session_id.clone(),
                token,
                headers,
                limits,
            )
        })
        .await
    }

    async fn delete_session(
        &self,
        uri: Arc<str>,
        session_id: Arc<str>,
        _auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<(), StreamableHttpError<Self::Error>> {
        self.with_credential(None, custom_headers, |token, headers| {
            self.inner
                .delete_session(uri.clone(), session_id.clone(), token, headers)
        })
        .await
    }

    async fn get_stream(
        &self,
        uri: Arc<str>,
        session_id: Option<Arc<str>>,
        last_event_id: Option<String>,
        _auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<
        futures::stream::BoxStream<'static, Result<sse_stream::Sse, SseError>>,
        StreamableHttpError<Self::Error>,
    > {
        self.with_credential(None, custom_headers, |token, headers| {
            self.inner.get_stream(
                uri.clone(),
                session_id.clone(),
                last_event_id.clone(),
                token,
                headers,
            )
        })
        .await
    }

    async fn get_stream_with_max_sse_event_size(
        &self,
        uri: Arc<str>,
        session_id: Option<Arc<str>>,
        last_event_id: Option<String>,
        _auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
        max_sse_event_size: usize,
    ) -> Result<
        futures::stream::BoxStream<'static, Result<sse_stream::Sse, SseError>>,
        StreamableHttpError<Self::Error>,
    > {
        self.with_credential(None, custom_headers, |token, headers| {
            self.inner.get_stream_with_max_sse_event_size(
                uri.clone(),
                session_id.clone(),
                last_event_id.clone(),
                token,
                headers,
                max_sse_event_size,
            )
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use rmcp::model::{
        CallToolRequest, CallToolRequestParams, CancelledNotification, CancelledNotificationParam,
        ClientJsonRpcMessage, ClientNotification, ClientRequest, InitializedNotification,
        NumberOrString, RequestId,
    };

    use super::*;

    struct Fixed;

    impl CredentialSource for Fixed {
        fn header(&self) -> BoxFuture<'_, Result<(HeaderName, SecretValue), AttachFailure>> {
            Box::pin(async { Ok((http::header::AUTHORIZATION, SecretValue::new("t"))) })
        }
        fn rejected<'a>(
            &'a self,
            _sent: &'a SecretValue,
        ) -> BoxFuture<'a, Result<Option<(HeaderName, SecretValue)>, AttachFailure>> {
            Box::pin(async { Ok(None) })
        }
    }

    fn id() -> RequestId {
        NumberOrString::Number(7)
    }

    #[test]
    fn a_call_and_its_cancellation_carry_the_attachment_and_nothing_else_does() {
        let attachment = Attachment::new(Arc::new(Fixed));
        let mut call = CallToolRequest::new(CallToolRequestParams::new("send"));
        call.extensions.insert(attachment.clone());
        let message = ClientJsonRpcMessage::request(ClientRequest::CallToolRequest(call), id());
        assert!(AttachingClient::attachment_of(&message).is_some());

        let mut cancelled =
            CancelledNotification::new(CancelledNotificationParam::new(Some(id()), None));
        cancelled.extensions.insert(attachment);
        let message = ClientJsonRpcMessage::notification(
            ClientNotification::CancelledNotification(cancelled),
        );
        assert!(AttachingClient::attachment_of(&message).is_some());

        let plain = CallToolRequest::new(CallToolRequestParams::new("send"));
        let message = ClientJsonRpcMessage::request(ClientRequest::CallToolRequest(plain), id());
        assert!(AttachingClient::attachment_of(&message).is_none());
        let message = ClientJsonRpcMessage::notification(
            ClientNotification::InitializedNotification(InitializedNotification::default()),
        );
        assert!(AttachingClient::attachment_of(&message).is_none());
    }
}
