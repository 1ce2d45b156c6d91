//! Per-identity upstreams (`instance = "per_user"`) end to end, with real tokens from a real
//! OpenID provider and the official TypeScript client: each user gets a contained process of
//! their own, whose home is their own state directory; neither can reach the other's state or
//! the other's roots, with Portcullis's own path check off so that the kernel alone must stop
//! it; `portcullis logout` deletes the local identity's state.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};

use crate::evidence::records;
use crate::support::{
    Auth, Config, OpenIdProvider, Portcullis, Scratch, Target, Tool, Upstream, fixture_policy,
    free_port, portcullis, result_text, ts_call, ts_client, wait_until,
};

const EACCES: i64 = 13;
const ENOENT: i64 = 2;

/// Calls `tool` as the bearer of `token`; the result's text.
fn call_as(portcullis: &Portcullis, token: &str, tool: &str, arguments: &Value) -> String {
    let header = format!("Authorization: Bearer {token}");
    let arguments = arguments.to_string();
    let observed = ts_client(
        &Target::Http(&portcullis.url),
        &[
            "--scenario",
            "call",
            "--tool",
            tool,
            "--args",
            &arguments,
            "--header",
            &header,
        ],
    );
    assert_ne!(
        observed["result"]["isError"],
        Value::Bool(true),
        "{tool}: {observed}"
    );
    result_text(&observed["result"])
}

/// The outcomes of the `escape` tool's attempts, made by `token`'s own instance.
fn attempts_as(portcullis: &Portcullis, token: &str, attempts: &[Value]) -> Vec<Value> {
    let text = call_as(
        portcullis,
        token,
        "fx.escape",
        &json!({ "attempts": attempts }),
    );
    serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("escape did not answer JSON ({e}): {text}"))
}

/// The process id of `token`'s instance.
fn pid_as(portcullis: &Portcullis, token: &str) -> u64 {
    let text = call_as(portcullis, token, "fx.whoami", &json!({}));
    let report: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    report["pid"]
        .as_u64()
        .unwrap_or_else(|| panic!("no pid: {report}"))
}

/// The identities' state directories of `fx`, as they are on disk now.
fn state_dirs(state: &Path) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(state)
        .map(|entries| entries.flatten().map(|entry| entry.path()).collect())
        .unwrap_or_default();
    dirs.sort();
    dirs
}

fn path(path: &Path) -> String {
    path.display().to_string()
}

#[test]
fn each_user_gets_an_instance_whose_state_and_roots_no_other_user_reaches() {
    let scratch = Scratch::new();
    let work = scratch.sub("work");
    let alice_root = work.join("alice");
    let bob_root = work.join("bob");
    for root in [&alice_root, &bob_root] {
        std::fs::create_dir_all(root).unwrap_or_else(|e| panic!("{e}"));
    }
    std::fs::write(alice_root.join("notes.txt"), "alice's notes\n")
        .unwrap_or_else(|e| panic!("{e}"));
    let port = free_port();
    let resource = format!("http://127.0.0.1:{port}/mcp");
    let provider = OpenIdProvider::start(&resource);
    let fx = Upstream::fixture("fx", &work)
        .without_path_check()
        .trusted()
        .roots_for_user("alice", &[&alice_root])
        .roots_for_user("bob", &[&bob_root])
        .tool("escape", Tool::read())
        .tool("whoami", Tool::read())
        .per_user();
    let config = scratch.config(
        Config::new()
            .policy(fixture_policy("permit-all.cedar"))
            .upstream(fx)
            .http_auth(Auth::new(&provider.issuer, &resource).leeway_secs(0)),
    );
    let portcullis = Portcullis::http_on(&config, &format!("127.0.0.1:{port}"), &[]);
    let alice = provider.token("alice");
    let bob = provider.token("bob");
    let state = scratch.path().join("state/instances/fx");

    // Alice's first request starts her instance, with a state directory of its own that only
    // Portcullis's user may enter.
    let alice_pid = pid_as(&portcullis, &alice);
    let dirs = state_dirs(&state);
    assert_eq!(dirs.len(), 1, "{dirs:?}");
    let alice_state = dirs.first().cloned().unwrap_or_default();
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&alice_state).map(|m| m.permissions().mode() & 0o777);
        assert_eq!(mode.ok(), Some(0o700), "{}", alice_state.display());
    }
    // Her instance keeps state in its home (her state directory) and reads her roots.
    let cookie = alice_state.join("cookie");
    let outcomes = attempts_as(
        &portcullis,
        &alice,
        &[
            json!({"kind": "write", "path": path(&cookie)}),
            json!({"kind": "read", "path": "~/cookie"}),
            json!({"kind": "read", "path": path(&alice_root.join("notes.txt"))}),
        ],
    );
    for outcome in &outcomes {
        assert_eq!(outcome["ok"], true, "alice's own: {outcome}");
    }
    assert!(
        cookie.exists(),
        "alice's instance did not write in her home"
    );

    // Bob gets a process of his own, and a state directory of his own.
    let bob_pid = pid_as(&portcullis, &bob);
    assert_ne!(alice_pid, bob_pid, "alice and bob share a process");
    let dirs = state_dirs(&state);
    assert_eq!(dirs.len(), 2, "{dirs:?}");
    // His instance reaches neither alice's state nor her roots, though nothing but the kernel
    // stands in its way (the path check is off); his home is his own, without her cookie.
    let outcomes = attempts_as(
        &portcullis,
        &bob,
        &[
            json!({"kind": "read", "path": path(&cookie)}),
            json!({"kind": "write", "path": path(&alice_state.join("planted"))}),
            json!({"kind": "read", "path": path(&alice_root.join("notes.txt"))}),
            json!({"kind": "write", "path": path(&alice_root.join("planted"))}),
            json!({"kind": "read", "path": "~/cookie"}),
        ],
    );
    let errnos: Vec<&Value> = outcomes.iter().map(|outcome| &outcome["errno"]).collect();
    assert_eq!(
        errnos,
        [
            &json!(EACCES),
            &json!(EACCES),
            &json!(EACCES),
            &json!(EACCES),
            &json!(ENOENT)
        ],
        "{outcomes:?}"
    );
    assert!(!alice_state.join("planted").exists());
    assert!(!alice_root.join("planted").exists());
    // Alice's instance is still hers: the same process as before.
    assert_eq!(pid_as(&portcullis, &alice), alice_pid);
    assert!(
        portcullis
            .log()
            .contains("started this identity's own instance"),
        "{}",
        portcullis.log()
    );
}

#[test]
fn an_idle_instance_stops_and_its_state_stays_for_the_next_one() {
    let scratch = Scratch::new();
    let work = scratch.sub("work");
    let fx = Upstream::fixture("fx", &work)
        .tool("whoami", Tool::read())
        .per_user()
        .instance_idle_secs(1);
    let config = scratch.config(Config::relay().upstream(fx));
    let portcullis = Portcullis::http(&config);
    let whoami = |portcullis: &Portcullis| -> u64 {
        let observed = ts_call(&Target::Http(&portcullis.url), "fx.whoami", "{}");
        let report: Value = serde_json::from_str(&result_text(&observed["result"]))
            .unwrap_or_else(|e| panic!("{e}: {observed}"));
        report["pid"]
            .as_u64()
            .unwrap_or_else(|| panic!("no pid: {report}"))
    };
    let first = whoami(&portcullis);
    let dirs = state_dirs(&scratch.path().join("state/instances/fx"));
    assert_eq!(dirs.len(), 1, "{dirs:?}");
    let kept = dirs.first().map(|dir| dir.join("kept")).unwrap_or_default();
    std::fs::write(&kept, "what the upstream keeps").unwrap_or_else(|e| panic!("{e}"));

    // Unused for its idle time, the process is stopped, and the stop is recorded with why.
    let process = PathBuf::from(format!("/proc/{first}"));
    assert!(
        wait_until(Duration::from_secs(15), || !process.exists()),
        "the idle instance {first} still runs"
    );
    let events = records(&scratch.path().join("state/evidence.jsonl"));
    assert!(
        events.iter().any(|e| e["kind"] == "upstream_stopped"
            && e["detail"].as_str().is_some_and(|d| d.contains("idle"))),
        "{events:?}"
    );
    // The next request starts a new one, with the same state.
    let second = whoami(&portcullis);
    assert_ne!(first, second);
    assert!(kept.exists(), "an idle stop deleted the state");
}

#[test]
fn an_identitys_state_unused_past_its_expiry_is_deleted() {
    let scratch = Scratch::new();
    let work = scratch.sub("work");
    let state = scratch.path().join("state/instances/fx");
    let old = state.join("0123456789abcdef0123456789abcdef");
    let recent = state.join("fedcba9876543210fedcba9876543210");
    for dir in [&old, &recent] {
        std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(dir.join("cookie"), "kept").unwrap_or_else(|e| panic!("{e}"));
    }
    let two_days_ago = std::time::SystemTime::now() - Duration::from_secs(2 * 86_400);
    std::fs::File::open(&old)
        .and_then(|dir| dir.set_modified(two_days_ago))
        .unwrap_or_else(|e| panic!("{e}"));
    let fx = Upstream::fixture("fx", &work)
        .per_user()
        .instance_state_days(1);
    let config = scratch.config(Config::relay().upstream(fx));
    let portcullis = Portcullis::http(&config);
    assert!(
        wait_until(Duration::from_secs(10), || !old.exists()),
        "the expired state is still there"
    );
    assert!(recent.join("cookie").exists(), "a recent state was deleted");
    assert!(
        portcullis.wait_for_log("expired; deleted", Duration::from_secs(5)),
        "{}",
        portcullis.log()
    );
}

#[test]
fn logout_deletes_the_local_identitys_state_and_a_url_needs_a_delegated_credential() {
    let scratch = Scratch::new();
    let work = scratch.sub("work");
    let fx = Upstream::fixture("fx", &work).per_user();
    let config = scratch.config(Config::relay().upstream(fx));
    let state = scratch.path().join("state/instances/fx");

    // The local identity's first request makes its state; `check --start` starts its instance.
    let (started, stdout, stderr) = portcullis(&["check", "--start"], &config);
    assert!(started, "{stdout}{stderr}");
    assert!(stdout.contains("fx: started"), "{stdout}");
    let dirs = state_dirs(&state);
    assert_eq!(dirs.len(), 1, "{dirs:?}");
    let local_state = dirs.first().cloned().unwrap_or_default();
    std::fs::write(local_state.join("session"), "kept by the upstream")
        .unwrap_or_else(|e| panic!("{e}"));

    let (done, _, said) = portcullis(&["logout", "fx"], &config);
    assert!(done, "{said}");
    assert!(
        said.contains("deleted your state directory at `fx`"),
        "{said}"
    );
    assert!(!local_state.exists(), "logout left the state behind");
    let (again, _, said) = portcullis(&["logout", "fx"], &config);
    assert!(!again, "a second logout found something to delete: {said}");
    assert!(
        said.contains("keeps no grant and no state of yours"),
        "{said}"
    );

    // Per user on a url without a delegated credential: refused, saying why.
    let remote = scratch.config(
        Config::relay().upstream(Upstream::url("remote", "http://127.0.0.1:9/mcp").per_user()),
    );
    let (valid, _, said) = portcullis(&["check"], &remote);
    assert!(!valid);
    assert!(
        said.contains("needs `[upstream.credential] kind = \"oauth\"`"),
        "{said}"
    );
}
