//! Tool search (issue 18): with `tool_search` on, a client lists Portcullis's three search
//! tools; search and describe cover only what the identity may see (two identities, one
//! query, two answers; a hidden tool cannot be found, described or called through them), and
//! `portcullis.call_tool` runs the very pipeline a direct call does: roots, approval and
//! evidence alike, in both eras. The tools stay callable by their own names.

use std::path::PathBuf;
use std::time::Duration;

use rmcp::RoleClient;
use rmcp::model::CallToolResult;
use rmcp::service::Peer;
use serde_json::{Value, json};

use crate::approval::{asked, session};
use crate::rust_client::{request, text, tool_names};
use crate::support::{
    Config, Identity, Portcullis, Scratch, Target, Tool, Upstream, fixture_policy, names,
    py_client, result_text,
};

const SEARCH: &str = "portcullis.search_tools";
const DESCRIBE: &str = "portcullis.describe_tool";
const CALL: &str = "portcullis.call_tool";

/// `fx` (the fixture, in `work`) under `fixtures/policy/identity.cedar`: reads run, writes need
/// approval, deletes are for group `eng` and hidden from tenant `globex`.
struct Setup {
    scratch: Scratch,
    config: PathBuf,
    work: PathBuf,
}

impl Setup {
    fn new(identity: Identity, tool_search: &str) -> Self {
        let scratch = Scratch::new();
        let work = scratch.sub("work");
        let fx = Upstream::fixture("fx", &work)
            .trusted()
            .tool("echo", Tool::read())
            .tool("read_file", Tool::read())
            .tool("write_file", Tool::write())
            .tool("delete_file", Tool::destructive())
            .tool("send_message", Tool::send());
        let config = scratch.config(
            Config::new()
                .tool_search(tool_search)
                .approval_timeout_secs(5)
                .approval_page_off()
                .no_scoped_approvals()
                .identity(identity)
                .policy(fixture_policy("identity.cedar"))
                .upstream(fx),
        );
        Self {
            scratch,
            config,
            work,
        }
    }

    fn events(&self) -> Vec<Value> {
        crate::evidence::records(&self.scratch.path().join("state/evidence.jsonl"))
    }
}

fn acme() -> Identity {
    Identity::user("ann").tenant("acme").groups(&["eng"])
}

fn globex() -> Identity {
    Identity::user("gus").tenant("globex").groups(&["eng"])
}

/// A `tools/call`, its protocol error as its message.
async fn attempt(
    client: &Peer<RoleClient>,
    name: &str,
    arguments: Value,
) -> Result<CallToolResult, String> {
    client
        .call_tool(request(name, arguments))
        .await
        .map_err(|error| match error {
            rmcp::ServiceError::McpError(error) => error.message.to_string(),
            other => panic!("tools/call {name} failed at the transport: {other}"),
        })
}

async fn ok(client: &Peer<RoleClient>, name: &str, arguments: Value) -> CallToolResult {
    attempt(client, name, arguments)
        .await
        .unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// The names `portcullis.search_tools` finds for `query`.
async fn search(client: &Peer<RoleClient>, query: &str) -> Vec<String> {
    let found = ok(client, SEARCH, json!({"query": query, "limit": 5})).await;
    let found: Value = serde_json::from_str(&text(&found)).unwrap_or_default();
    names(&found["tools"])
}

/// Waits (up to 30 s) until the upstream has started and search finds its `echo`.
async fn wait_searchable(client: &Peer<RoleClient>) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !search(client, "echo").await.contains(&"fx.echo".to_owned()) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "fx never became searchable"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn each_identity_finds_describes_and_calls_only_what_it_may_see() {
    let acme = Setup::new(acme(), "on");
    let globex = Setup::new(globex(), "on");
    std::fs::write(globex.work.join("keep.txt"), "keep").unwrap_or_else(|e| panic!("{e}"));
    let (ann, _) = session(&acme.config, true).await;
    let (gus, _) = session(&globex.config, true).await;
    for client in [&ann, &gus] {
        assert_eq!(tool_names(client).await, [SEARCH, DESCRIBE, CALL]);
        wait_searchable(client).await;
    }

    // One query, two answers: only ann may see deletes.
    let query = "delete a file from the scratch directory";
    let ann_found = search(&ann, query).await;
    let gus_found = search(&gus, query).await;
    assert_eq!(
        ann_found.first().map(String::as_str),
        Some("fx.delete_file"),
        "{ann_found:?}"
    );
    assert!(
        !gus_found.contains(&"fx.delete_file".to_owned()),
        "{gus_found:?}"
    );
    assert_ne!(ann_found, gus_found);

    // For gus the hidden tool is unknown, however it is asked for: described, called through
    // `call_tool` or called by name, with the answer a tool that does not exist gets.
    let unknown = |name: &str| format!("unknown tool `{name}`");
    assert_eq!(
        attempt(&gus, DESCRIBE, json!({"name": "fx.delete_file"}))
            .await
            .err(),
        Some(unknown("fx.delete_file"))
    );
    assert_eq!(
        attempt(&gus, DESCRIBE, json!({"name": "fx.no_such_tool"}))
            .await
            .err(),
        Some(unknown("fx.no_such_tool"))
    );
    let delete = json!({"path": "keep.txt"});
    assert_eq!(
        attempt(
            &gus,
            CALL,
            json!({"name": "fx.delete_file", "arguments": delete})
        )
        .await
        .err(),
        Some(unknown("fx.delete_file"))
    );
    assert_eq!(
        attempt(&gus, "fx.delete_file", delete.clone()).await.err(),
        Some(unknown("fx.delete_file"))
    );
    assert!(globex.work.join("keep.txt").exists(), "a hidden delete ran");

    // Ann may see it: described as it would be listed.
    let described = ok(&ann, DESCRIBE, json!({"name": "fx.delete_file"})).await;
    let described: Value = serde_json::from_str(&text(&described)).unwrap_or_default();
    assert_eq!(described["name"], "fx.delete_file", "{described}");
    assert!(
        described["inputSchema"]["properties"]["path"].is_object(),
        "{described}"
    );

    // Through `call_tool` and by name (the list changed, not what may be called).
    let through = ok(
        &ann,
        CALL,
        json!({"name": "fx.echo", "arguments": {"text": "via search"}}),
    )
    .await;
    assert_eq!(text(&through), "via search");
    let direct = ok(&ann, "fx.echo", json!({"text": "by name"})).await;
    assert_eq!(text(&direct), "by name");
    // `call_tool` cannot name itself, nor go without a name.
    assert_eq!(
        attempt(
            &ann,
            CALL,
            json!({"name": CALL, "arguments": {"name": "fx.echo"}})
        )
        .await
        .err(),
        Some(unknown(CALL))
    );
    assert!(attempt(&ann, CALL, json!({})).await.is_err());
    let _ = ann.cancel().await;
    let _ = gus.cancel().await;

    // The evidence: the call through `call_tool` is recorded as `echo`, saying how it came;
    // the direct one says nothing of it; searches and descriptions are recorded as lists.
    let events = acme.events();
    let echoes: Vec<&Value> = events
        .iter()
        .filter(|e| e["kind"] == "call_intent" && e["tool"]["tool"] == "echo")
        .collect();
    assert!(
        echoes
            .iter()
            .any(|e| e["request"]["via"] == CALL
                && e["arguments"]["redacted"]["text"] == "via search"),
        "{echoes:?}"
    );
    assert!(
        echoes.iter().any(|e| e["request"].get("via").is_none()
            && e["arguments"]["redacted"]["text"] == "by name"),
        "{echoes:?}"
    );
    for list in [SEARCH, DESCRIBE] {
        assert!(
            events
                .iter()
                .any(|e| e["kind"] == "list" && e["list"] == list),
            "{list}: {events:?}"
        );
    }
    assert!(
        globex.events().iter().any(|e| e["kind"] == "refused"
            && e["method"] == DESCRIBE
            && e["name"] == "fx.delete_file"),
        "{:?}",
        globex.events()
    );
}

/// The text of a call made by name and the same call through `call_tool`.
async fn both_ways(client: &Peer<RoleClient>, tool: &str, arguments: Value) -> (String, String) {
    let direct = ok(client, tool, arguments.clone()).await;
    let through = ok(client, CALL, json!({"name": tool, "arguments": arguments})).await;
    (text(&direct), text(&through))
}

#[tokio::test(flavor = "multi_thread")]
async fn roots_and_approval_hold_through_call_tool_as_for_a_direct_call() {
    let setup = Setup::new(acme(), "on");
    let outside = setup.scratch.path().join("outside.txt");
    std::fs::write(&outside, "outside secret").unwrap_or_else(|e| panic!("{e}"));

    // A person who declines.
    let (client, questions) = session(&setup.config, false).await;
    wait_searchable(&client).await;
    // Roots: an escape is refused before anything else, the same way both ways.
    for path in ["../outside.txt".to_owned(), outside.display().to_string()] {
        let (direct, through) = both_ways(&client, "fx.read_file", json!({"path": path})).await;
        assert!(direct.starts_with("portcullis refused"), "{direct}");
        assert!(!through.contains("outside secret"), "{through}");
        assert_eq!(direct, through);
    }
    assert!(
        asked(&questions).is_empty(),
        "a roots escape was offered for approval"
    );
    // Approval: the write is asked for both ways, with the same request, and declined.
    let write = json!({"path": "note.txt", "content": "hello"});
    let (direct, through) = both_ways(&client, "fx.write_file", write.clone()).await;
    assert!(
        direct.contains("declined") && direct.contains("did not run"),
        "{direct}"
    );
    assert_eq!(direct, through);
    let questions = asked(&questions);
    assert_eq!(questions.len(), 2, "{questions:?}");
    assert_eq!(questions[0], questions[1]);
    assert!(
        !setup.work.join("note.txt").exists(),
        "a declined write ran"
    );
    let _ = client.cancel().await;

    // A person who approves: the write runs through `call_tool`, once, after being asked.
    let (client, questions) = session(&setup.config, true).await;
    wait_searchable(&client).await;
    let wrote = ok(
        &client,
        CALL,
        json!({"name": "fx.write_file", "arguments": write}),
    )
    .await;
    assert_ne!(wrote.is_error, Some(true), "{}", text(&wrote));
    assert_eq!(asked(&questions).len(), 1);
    assert_eq!(
        std::fs::read_to_string(setup.work.join("note.txt")).unwrap_or_default(),
        "hello"
    );
    let _ = client.cancel().await;
    let approvals: Vec<Value> = setup
        .events()
        .into_iter()
        .filter(|e| e["kind"] == "approval" && e["tool"]["tool"] == "write_file")
        .collect();
    assert!(
        approvals
            .iter()
            .any(|e| e["answer"] == "approved" && e["request"]["via"] == CALL),
        "{approvals:?}"
    );
}

fn py_call(target: &Target<'_>, tool: &str, args: &Value, answer: &[&str]) -> Value {
    let args = args.to_string();
    let mut argv = vec![
        "--scenario",
        "elicit",
        "--mode",
        "2026-07-28",
        "--tool",
        tool,
        "--args",
        &args,
    ];
    argv.extend(answer);
    py_client(target, &argv)
}

#[test]
fn the_stateless_era_searches_and_approves_through_call_tool() {
    let setup = Setup::new(acme(), "on");
    let portcullis = Portcullis::http(&setup.config);
    let target = Target::Http(&portcullis.url);
    let listed = py_client(&target, &["--scenario", "list", "--mode", "2026-07-28"]);
    assert_eq!(
        names(&listed["tools"]),
        [SEARCH, DESCRIBE, CALL],
        "{listed}"
    );
    // The server's instructions (given at `initialize`, so to a session-era client) tell the
    // model how to use them.
    let legacy = py_client(&target, &["--scenario", "list", "--mode", "legacy"]);
    let instructions = legacy["instructions"].as_str().unwrap_or_default();
    assert!(instructions.contains(CALL), "{legacy}");

    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let found = py_call(&target, SEARCH, &json!({"query": "send a message"}), &[]);
        if result_text(&found["result"]).contains("fx.send_message") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{found}");
        std::thread::sleep(Duration::from_millis(300));
    }

    // A roots escape through `call_tool` is refused in this era too.
    let escape = py_call(
        &target,
        CALL,
        &json!({"name": "fx.read_file", "arguments": {"path": "../../etc/passwd"}}),
        &[],
    );
    assert!(
        result_text(&escape["result"]).starts_with("portcullis refused"),
        "{escape}"
    );

    // The write needs approval: an input-required round, retried through `call_tool` with its
    // `requestState`, and only the yes runs it.
    let write =
        json!({"name": "fx.write_file", "arguments": {"path": "s.txt", "content": "stateless"}});
    let declined = py_call(&target, CALL, &write, &["--answer", "decline"]);
    assert!(
        result_text(&declined["result"]).contains("declined"),
        "{declined}"
    );
    assert!(!setup.work.join("s.txt").exists());
    let approved = py_call(
        &target,
        CALL,
        &write,
        &["--answer", "accept", "--content", r#"{"approve":true}"#],
    );
    assert_ne!(approved["result"]["isError"], true, "{approved}");
    assert_eq!(
        approved["elicitations"][0]["via"], "input_required",
        "{approved}"
    );
    assert_eq!(
        std::fs::read_to_string(setup.work.join("s.txt")).unwrap_or_default(),
        "stateless"
    );

    // For gus of globex deletes are hidden in this era too: not found, not described, not
    // called through `call_tool`, each answered as a tool that does not exist.
    let globex = Setup::new(globex(), "on");
    std::fs::write(globex.work.join("keep.txt"), "keep").unwrap_or_else(|e| panic!("{e}"));
    let portcullis = Portcullis::http(&globex.config);
    let target = Target::Http(&portcullis.url);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let found = loop {
        let found = py_call(&target, SEARCH, &json!({"query": "delete a file"}), &[]);
        if result_text(&found["result"]).contains("fx.") {
            break found;
        }
        assert!(std::time::Instant::now() < deadline, "{found}");
        std::thread::sleep(Duration::from_millis(300));
    };
    assert!(
        !result_text(&found["result"]).contains("fx.delete_file"),
        "{found}"
    );
    let unknown = |observed: &Value, name: &str| {
        let message = observed["error"]["message"].as_str().unwrap_or_default();
        assert!(
            message.contains(&format!("unknown tool `{name}`")),
            "{observed}"
        );
    };
    for name in ["fx.delete_file", "fx.nothing"] {
        unknown(
            &py_call(&target, DESCRIBE, &json!({"name": name}), &[]),
            name,
        );
    }
    let delete = json!({"name": "fx.delete_file", "arguments": {"path": "keep.txt"}});
    unknown(&py_call(&target, CALL, &delete, &[]), "fx.delete_file");
    assert!(globex.work.join("keep.txt").exists(), "a hidden delete ran");
}

#[tokio::test(flavor = "multi_thread")]
async fn auto_lists_the_tools_themselves_below_the_threshold() {
    let scratch = Scratch::new();
    let work = scratch.sub("work");
    let config = |threshold: u64| {
        Config::relay()
            .tool_search("auto")
            .tool_search_threshold(threshold)
            .upstream(Upstream::fixture("fx", &work))
    };
    let few = scratch.config(config(1000));
    let (client, _) = session(&few, true).await;
    let listed = crate::rust_client::wait_for_tools(&client, Duration::from_secs(30), |names| {
        names.iter().any(|name| name == "fx.echo")
    })
    .await;
    assert!(
        !listed.iter().any(|name| name.starts_with("portcullis.")),
        "{listed:?}"
    );
    // A client that kept the search tools from an earlier list can still use them.
    assert_eq!(
        search(&client, "echo").await.first().map(String::as_str),
        Some("fx.echo")
    );
    let _ = client.cancel().await;

    let many = scratch.config(config(1));
    let (client, _) = session(&many, true).await;
    wait_searchable(&client).await;
    assert_eq!(tool_names(&client).await, [SEARCH, DESCRIBE, CALL]);
    let _ = client.cancel().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_upstream_tool_in_the_reserved_namespace_never_stands_in_for_a_search_tool() {
    let scratch = Scratch::new();
    let work = scratch.sub("work");
    // Passthrough keeps the upstream's own names: it could name a tool `portcullis.call_tool`.
    let config = scratch.config(
        Config::relay()
            .passthrough_names()
            .tool_search("on")
            // Not pinned, so the tool it adds is listed at once (pins would quarantine it).
            .upstream(Upstream::fixture("fx", &work).pinning("off")),
    );
    let (client, _) = session(&config, true).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !search(&client, "echo").await.contains(&"echo".to_owned()) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "fx never became searchable"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for name in [SEARCH, CALL, "Portcullis.describe_tool", "helper"] {
        let added = ok(
            &client,
            CALL,
            json!({"name": "add_tool", "arguments": {"name": name}}),
        )
        .await;
        assert_eq!(text(&added), format!("added tool `{name}`"));
    }
    // The upstream lists them; Portcullis exposes none, and its own tools still answer.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let found = search(&client, "added at run time").await;
    assert!(found.contains(&"helper".to_owned()), "{found:?}");
    assert!(
        found
            .iter()
            .all(|name| !name.to_lowercase().starts_with("portcullis.")),
        "{found:?}"
    );
    let echoed = ok(
        &client,
        CALL,
        json!({"name": "echo", "arguments": {"text": "still ours"}}),
    )
    .await;
    assert_eq!(text(&echoed), "still ours");
    assert_eq!(
        attempt(&client, "Portcullis.describe_tool", json!({}))
            .await
            .err(),
        Some("unknown tool `Portcullis.describe_tool`".to_owned())
    );
    let _ = client.cancel().await;
}
