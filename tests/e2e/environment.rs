//! A stdio upstream sees only the environment its config grants: nothing of Portcullis's own
//! leaks in unless listed.

use std::time::Duration;

use serde_json::{Value, json};

use crate::rust_client::{call, connect, text, wait_for_tools};
use crate::support::{Config, Scratch, Upstream};

#[tokio::test(flavor = "multi_thread")]
async fn only_listed_and_explicit_variables_reach_the_upstream() {
    let scratch = Scratch::new();
    let work = scratch.sub("work");
    let fx = Upstream::fixture("fx", &work)
        .env("FIXTURE_MARKER", "from-config")
        .inherit_env(&["PORTCULLIS_E2E_SHARED"]);
    let config = scratch.config(Config::relay().upstream(fx));
    let client = connect(
        &config,
        &[
            ("PORTCULLIS_E2E_SHARED", "shared"),
            ("PORTCULLIS_E2E_SECRET", "must-not-leak"),
            ("AWS_SECRET_ACCESS_KEY", "must-not-leak"),
        ],
    )
    .await;
    wait_for_tools(&client, Duration::from_secs(20), |n| !n.is_empty()).await;
    let result = call(&client, "fx.whoami", json!({})).await;
    let report: Value = serde_json::from_str(&text(&result))
        .unwrap_or_else(|e| panic!("whoami is not JSON ({e}): {}", text(&result)));
    let names: Vec<&str> = report["env"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    assert!(names.contains(&"PORTCULLIS_E2E_SHARED"), "{report}");
    assert!(names.contains(&"FIXTURE_MARKER"), "{report}");
    assert!(!names.contains(&"PORTCULLIS_E2E_SECRET"), "{report}");
    assert!(!names.contains(&"AWS_SECRET_ACCESS_KEY"), "{report}");
    assert!(
        !names.contains(&"HOME") && !names.contains(&"PATH"),
        "{report}"
    );
    assert_eq!(report["fixture_marker"], "from-config", "{report}");
    client.cancel().await.ok();
}
