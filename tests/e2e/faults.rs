//! One broken upstream does not break the others: failed starts, crashes, hangs, garbage and
//! slow starts, each next to a healthy upstream that must keep working.

use std::time::Duration;

use serde_json::json;

use crate::rust_client::{call, connect, text, tool_names, wait_for_tools};
use crate::support::{Config, Scratch, Upstream};

#[tokio::test(flavor = "multi_thread")]
async fn upstreams_that_fail_to_start_are_hidden_and_the_others_serve() {
    let scratch = Scratch::new();
    let work = scratch.sub("work");
    let config = scratch.config(
        Config::relay()
            .upstream(Upstream::fixture("good", &work))
            .upstream(Upstream::fixture("crashes", &work).args(&["--start-mode", "crash"]))
            .upstream(
                Upstream::fixture("hangs", &work)
                    .args(&["--start-mode", "hang"])
                    .start_timeout_secs(2),
            )
            .upstream(Upstream::fixture("slow", &work).args(&["--start-mode", "slow:1500"])),
    );
    let client = connect(&config, &[]).await;
    let names = wait_for_tools(&client, Duration::from_secs(20), |names| {
        names.iter().any(|n| n.starts_with("good.")) && names.iter().any(|n| n.starts_with("slow."))
    })
    .await;
    assert!(names.contains(&"good.echo".to_owned()), "{names:?}");
    assert!(
        names.contains(&"slow.echo".to_owned()),
        "a slow start still comes up: {names:?}"
    );
    assert!(
        !names
            .iter()
            .any(|n| n.starts_with("crashes.") || n.starts_with("hangs.")),
        "{names:?}"
    );

    let result = call(&client, "crashes.echo", json!({"text": "x"})).await;
    assert_eq!(result.is_error, Some(true));
    assert!(
        text(&result).contains("upstream `crashes` is unavailable"),
        "{}",
        text(&result)
    );
    let result = call(&client, "good.echo", json!({"text": "still here"})).await;
    assert_ne!(result.is_error, Some(true), "{}", text(&result));
    assert!(text(&result).contains("still here"));
    client.cancel().await.ok();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_crash_mid_call_is_an_error_for_that_call_and_the_upstream_comes_back() {
    let scratch = Scratch::new();
    let work = scratch.sub("work");
    let config = scratch.config(
        Config::relay()
            .upstream(Upstream::fixture("flaky", &work))
            .upstream(Upstream::fixture("steady", &work)),
    );
    let client = connect(&config, &[]).await;
    wait_for_tools(&client, Duration::from_secs(20), |n| n.len() > 10).await;

    let result = call(&client, "flaky.crash", json!({})).await;
    assert_eq!(result.is_error, Some(true));
    assert!(
        text(&result).contains("upstream `flaky`"),
        "{}",
        text(&result)
    );

    let result = call(&client, "steady.echo", json!({"text": "ok"})).await;
    assert!(text(&result).contains("ok"));

    // Restarted with backoff: its tools come back and calls work again.
    let names = wait_for_tools(&client, Duration::from_secs(20), |n| {
        n.contains(&"flaky.echo".to_owned())
    })
    .await;
    assert!(names.contains(&"flaky.echo".to_owned()), "{names:?}");
    let result = call(&client, "flaky.echo", json!({"text": "back"})).await;
    assert!(text(&result).contains("back"), "{}", text(&result));
    client.cancel().await.ok();
}

#[tokio::test(flavor = "multi_thread")]
async fn garbage_and_hangs_fail_the_call_not_portcullis() {
    let scratch = Scratch::new();
    let work = scratch.sub("work");
    let config = scratch.config(
        Config::relay()
            .upstream(Upstream::fixture("bad", &work).call_timeout_secs(2))
            .upstream(Upstream::fixture("good", &work)),
    );
    let client = connect(&config, &[]).await;
    wait_for_tools(&client, Duration::from_secs(20), |n| n.len() > 10).await;

    let result = call(&client, "bad.garbage", json!({})).await;
    assert_eq!(result.is_error, Some(true), "{}", text(&result));
    let result = call(&client, "bad.slow", json!({"ms": 10_000})).await;
    assert_eq!(result.is_error, Some(true));
    assert!(
        text(&result).contains("did not answer within 2s"),
        "{}",
        text(&result)
    );

    let result = call(&client, "good.echo", json!({"text": "fine"})).await;
    assert!(text(&result).contains("fine"));
    // Portcullis itself still answers lists.
    assert!(
        tool_names(&client)
            .await
            .iter()
            .any(|n| n.starts_with("good."))
    );
    client.cancel().await.ok();
}

#[tokio::test(flavor = "multi_thread")]
async fn huge_results_pass_through_intact() {
    let scratch = Scratch::new();
    let work = scratch.sub("work");
    let config = scratch.config(Config::relay().upstream(Upstream::fixture("big", &work)));
    let client = connect(&config, &[]).await;
    wait_for_tools(&client, Duration::from_secs(20), |n| !n.is_empty()).await;
    let size = 8 * 1024 * 1024;
    let result = call(&client, "big.huge", json!({"bytes": size})).await;
    assert_ne!(result.is_error, Some(true));
    assert_eq!(text(&result).len(), size);
    client.cancel().await.ok();
}
