//! Pages Portcullis serves on loopback (the approval page, the console): their frame and
//! headers, and text in them (also the sign-in pages').

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// `text` with every character that means something in HTML (`&`, `<`, `>`, quotes) written
/// as an entity, so that a value (an upstream's tool name, a user, an argument) is shown as
/// text in an element or an attribute and never read as markup.
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

pub(crate) fn plain(status: StatusCode, text: &str) -> Response {
    guarded(
        (status, text.to_owned()).into_response(),
        "text/plain; charset=utf-8",
    )
}

/// Never cached, never framed, no referrer to another site (the link names the approval),
/// scripts only from the page itself. The referrer policy is `same-origin`, not
/// `no-referrer`: under `no-referrer` a browser sends `Origin: null` with a form's POST, and
/// the page's own forms (deny, approve as the signed-in person) would be refused as
/// cross-site.
pub(crate) fn guarded(mut response: Response, content_type: &'static str) -> Response {
    let headers = response.headers_mut();
    for (name, value) in [
        (header::CONTENT_TYPE, content_type),
        (header::CACHE_CONTROL, "no-store"),
        (header::REFERRER_POLICY, "same-origin"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'",
        ),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

pub(crate) fn html(status: StatusCode, title: &str, body: &str) -> Response {
    let page = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{title}</title>\
         <script src=\"/approve.js\" defer></script></head>\
         <body style=\"font-family: sans-serif; max-width: 60em; margin: 2em auto\"><h1>{title}</h1>{body}</body></html>",
        title = escape(title)
    );
    guarded((status, page).into_response(), "text/html; charset=utf-8")
}
