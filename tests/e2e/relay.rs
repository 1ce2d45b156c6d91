//! Relaying with rmcp's own client (the official Rust SDK): pagination across upstream and
//! downstream pages, passthrough names, an HTTP upstream, and a stateless (2026-07-28) client.

use std::time::Duration;

use rmcp::model::{PaginatedRequestParams, ProtocolVersion};
use rmcp::service::{ClientLifecycleMode, ClientServiceExt};
use rmcp::transport::TokioChildProcess;
use serde_json::json;

use crate::rust_client::{call, connect, serve_command, text, tool_names, wait_for_tools};
use crate::support::{Config, Scratch, Upstream, bin};

#[tokio::test(flavor = "multi_thread")]
async fn lists_are_merged_and_paginated_across_upstream_pages() {
    let scratch = Scratch::new();
    let work = scratch.sub("work");
    let many =
        Upstream::fixture("many", &work).args(&["--extra-tools", "250", "--page-size", "40"]);
    let config = scratch.config(
        Config::relay()
            .page_size(100)
            .upstream(many)
            .upstream(Upstream::fixture("few", &work)),
    );
    let client = connect(&config, &[]).await;
    let all = wait_for_tools(&client, Duration::from_secs(20), |n| {
        n.iter().any(|n| n.starts_with("few.")) && n.iter().any(|n| n.starts_with("many."))
    })
    .await;
    let n_few = all.iter().filter(|n| n.starts_with("few.")).count();
    let n_many = all.iter().filter(|n| n.starts_with("many.")).count();
    assert_eq!(n_many, n_few + 250, "every upstream page was read");
    assert!(all.contains(&"many.extra_249".to_owned()));

    let mut pages = 0;
    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let mut params = PaginatedRequestParams::default();
        params.cursor = cursor;
        let page = client
            .list_tools(Some(params))
            .await
            .unwrap_or_else(|e| panic!("tools/list: {e}"));
        pages += 1;
        assert!(page.tools.len() <= 100);
        seen.extend(page.tools.into_iter().map(|t| t.name.to_string()));
        cursor = page.next_cursor;
        if cursor.is_none() {
            break;
        }
    }
    assert_eq!(
        seen, all,
        "pages concatenate to the full list, in order, without repeats"
    );
    assert_eq!(pages, all.len().div_ceil(100));
    client.cancel().await.ok();
}

#[tokio::test(flavor = "multi_thread")]
async fn passthrough_keeps_names_and_an_http_upstream_works() {
    let scratch = Scratch::new();
    let work = scratch.sub("work");
    // The fixture served over streamable HTTP on a free loopback port.
    let port = crate::support::free_port();
    let mut upstream = std::process::Command::new(bin("portcullis-fixture"))
        .arg("--scratch")
        .arg(&work)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start the fixture: {e}"));
    let web = Upstream::url("web", &format!("http://127.0.0.1:{port}/mcp"));
    let config = scratch.config(Config::relay().passthrough_names().upstream(web));
    let client = connect(&config, &[]).await;
    let names = wait_for_tools(&client, Duration::from_secs(20), |n| !n.is_empty()).await;
    assert!(names.contains(&"write_file".to_owned()), "{names:?}");
    assert!(!names.iter().any(|n| n.contains('.')), "{names:?}");
    let result = call(
        &client,
        "write_file",
        json!({"path": "note.txt", "content": "over http"}),
    )
    .await;
    assert_ne!(result.is_error, Some(true), "{}", text(&result));
    let content = std::fs::read_to_string(work.join("note.txt")).unwrap_or_default();
    assert_eq!(content, "over http");
    client.cancel().await.ok();
    let _ = upstream.kill();
    let _ = upstream.wait();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stateless_client_lists_and_calls() {
    let scratch = Scratch::new();
    let work = scratch.sub("work");
    let config = scratch.config(Config::relay().upstream(Upstream::fixture("fx", &work)));
    let transport =
        TokioChildProcess::new(serve_command(&config)).unwrap_or_else(|e| panic!("{e}"));
    let client = ()
        .serve_with_lifecycle(
            transport,
            ClientLifecycleMode::Discover {
                preferred_versions: vec![ProtocolVersion::V_2026_07_28],
            },
        )
        .await
        .unwrap_or_else(|e| panic!("discover failed: {e}"));
    let version = client
        .peer()
        .peer_info()
        .map(|i| i.protocol_version.clone());
    assert_eq!(version, Some(ProtocolVersion::V_2026_07_28));
    let names = wait_for_tools(&client, Duration::from_secs(20), |n| !n.is_empty()).await;
    assert!(names.contains(&"fx.send_message".to_owned()), "{names:?}");
    let result = call(
        &client,
        "fx.send_message",
        json!({"to": "bob@example.com", "subject": "hi", "body": "stateless"}),
    )
    .await;
    assert_ne!(result.is_error, Some(true), "{}", text(&result));
    let outbox = std::fs::read_to_string(work.join("outbox.jsonl")).unwrap_or_default();
    assert!(outbox.contains("stateless"), "{outbox}");
    assert!(tool_names(&client).await.len() == names.len());
    client.cancel().await.ok();
}
