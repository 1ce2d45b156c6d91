//! The streamable HTTP listener refuses requests whose `Host` or `Origin` is not its own (DNS
//! rebinding), and accepts its own.

use crate::support::{Config, Portcullis, Scratch, Upstream, raw_http_status};

fn initialize(host: &str, origin: Option<&str>) -> String {
    let body = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}"#;
    let origin = origin
        .map(|o| format!("Origin: {o}\r\n"))
        .unwrap_or_default();
    format!(
        "POST /mcp HTTP/1.1\r\nHost: {host}\r\n{origin}Content-Type: application/json\r\nAccept: application/json, text/event-stream\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

#[test]
fn host_and_origin_are_checked() {
    let scratch = Scratch::new();
    let work = scratch.sub("work");
    let config = scratch.config(Config::relay().upstream(Upstream::fixture("fx", &work)));
    let portcullis = Portcullis::http(&config);
    let port = portcullis.port;
    let own = format!("127.0.0.1:{port}");
    assert_eq!(raw_http_status(port, &initialize(&own, None)), 200);
    assert_eq!(
        raw_http_status(
            port,
            &initialize(&own, Some(&format!("http://localhost:{port}")))
        ),
        200
    );
    assert_eq!(
        raw_http_status(port, &initialize(&format!("localhost:{port}"), None)),
        200
    );
    // A rebound DNS name pointing at loopback.
    let refused = raw_http_status(port, &initialize(&format!("attacker.example:{port}"), None));
    assert!(
        (400..500).contains(&refused),
        "Host attacker.example answered {refused}"
    );
    // A page from another origin.
    let refused = raw_http_status(port, &initialize(&own, Some("http://attacker.example")));
    assert!(
        (400..500).contains(&refused),
        "Origin attacker.example answered {refused}"
    );
}
