//! One broken upstream does not break the others: failed starts, crashes, hangs, garbage and
//! slow starts, each next to a healthy upstream that must keep working.

use std::time::{Duration, Instant};

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
async fn an_upstreams_concurrency_limit_queues_calls_and_refuses_what_waits_too_long() {
    let scratch = Scratch::new();
    let work = scratch.sub("work");
    let config = scratch.config(
        Config::relay().upstream(
            Upstream::fixture("one", &work)
                .max_concurrent_calls(1)
                .call_timeout_secs(2),
        ),
    );
    let client = connect(&config, &[]).await;
    wait_for_tools(&client, Duration::from_secs(20), |n| !n.is_empty()).await;

    // Three calls of 400 ms at once take turns: together at least 1.2 s, and all answer.
    let started = Instant::now();
    let slow = || call(&client, "one.slow", json!({"ms": 400, "steps": 1}));
    let (a, b, c) = tokio::join!(slow(), slow(), slow());
    for result in [a, b, c] {
        assert!(text(&result).contains("slept 400 ms"), "{}", text(&result));
    }
    assert!(
        started.elapsed() >= Duration::from_millis(1200),
        "the calls overlapped: {:?}",
        started.elapsed()
    );

    // Two calls that outlast the call timeout hold the one place for 2 s each; an `echo`
    // started behind them waits 2 s for it, is refused unsent, and the upstream never sees it.
    // The second starts 500 ms after the first, so that its own 2 s wait for the place surely
    // outlasts the first's hold (a wait ending as the place frees is a race either way); the
    // echo's wait ends at 2.8 s, long before the second lets go at about 4 s.
    let first = call(&client, "one.slow", json!({"ms": 10_000, "steps": 1}));
    let second = async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        call(&client, "one.slow", json!({"ms": 10_000, "steps": 1})).await
    };
    let third = async {
        tokio::time::sleep(Duration::from_millis(800)).await;
        call(&client, "one.echo", json!({"text": "queued"})).await
    };
    let (first, second, third) = tokio::join!(first, second, third);
    for result in [&first, &second] {
        assert!(
            text(result).contains("did not answer within 2s"),
            "{}",
            text(result)
        );
    }
    assert_eq!(third.is_error, Some(true), "{}", text(&third));
    assert!(
        text(&third).contains(
            "had 1 calls in flight (its `max_concurrent_calls`) for 2s; the request was not sent"
        ),
        "{}",
        text(&third)
    );
    let result = call(&client, "one.echo", json!({"text": "free again"})).await;
    assert!(text(&result).contains("free again"), "{}", text(&result));
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
