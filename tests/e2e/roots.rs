//! Roots as a boundary, end to end with the official `@modelcontextprotocol/server-filesystem`:
//! path arguments are checked against the effective roots before a call leaves Portcullis, so
//! traversal, absolute paths outside, symlinks out (file, directory, a new file under a
//! symlinked directory), overlong paths and paired arguments never reach the upstream; the
//! upstream itself, started with `/` as its own allowed directory, asks Portcullis for roots
//! and is told the effective roots only; a client's own roots narrow them further.

use std::path::Path;
use std::sync::{Arc, Mutex};

use rmcp::ClientHandler;
use rmcp::ErrorData as McpError;
use rmcp::model::ClientConfig;
#[expect(
    deprecated,
    reason = "roots are deprecated upstream; session-era clients still offer them"
)]
use rmcp::model::{ListRootsResult, Root};
use rmcp::service::{RequestContext, RoleClient, RunningService, ServiceExt};
use rmcp::transport::TokioChildProcess;
use serde_json::{Value, json};

use crate::rust_client::{call, client_info, serve_command, text, wait_until_listed};
use crate::support::{Config, Identity, Scratch, Upstream, filesystem_server};

/// A client that offers `roots` (none: it offers no roots capability at all).
#[derive(Clone)]
struct RootsClient {
    roots: Option<Arc<Mutex<Vec<String>>>>,
}

impl ClientHandler for RootsClient {
    fn get_info(&self) -> ClientConfig {
        let capabilities = if self.roots.is_some() {
            json!({"roots": {"listChanged": false}})
        } else {
            json!({})
        };
        client_info(capabilities, "e2e-roots")
    }

    #[expect(deprecated, reason = "roots are deprecated upstream")]
    async fn list_roots(
        &self,
        _context: RequestContext<RoleClient>,
    ) -> Result<ListRootsResult, McpError> {
        let roots = self
            .roots
            .as_ref()
            .and_then(|roots| roots.lock().ok().map(|r| r.clone()))
            .unwrap_or_default();
        Ok(ListRootsResult::new(
            roots.into_iter().map(Root::new).collect(),
        ))
    }
}

async fn connect(
    config: &Path,
    roots: Option<Arc<Mutex<Vec<String>>>>,
) -> RunningService<RoleClient, RootsClient> {
    let mut command = serve_command(config);
    command.stderr(std::process::Stdio::null());
    let transport = TokioChildProcess::new(command).unwrap_or_else(|e| panic!("{e}"));
    let client = RootsClient { roots }
        .serve(transport)
        .await
        .unwrap_or_else(|e| panic!("cannot connect: {e}"));
    wait_until_listed(&client, std::time::Duration::from_secs(30)).await;
    client
}

fn refused(result: &rmcp::model::CallToolResult, what: &str) {
    let message = text(result);
    assert_eq!(result.is_error, Some(true), "{what}: {message}");
    assert!(
        message.starts_with("portcullis refused"),
        "{what}: {message}"
    );
    assert!(message.contains("did not run"), "{what}: {message}");
}

#[tokio::test(flavor = "multi_thread")]
async fn paths_outside_the_roots_never_reach_the_filesystem_server() {
    let scratch = Scratch::new();
    let root = scratch.sub("root");
    let outside = scratch.sub("outside");
    std::fs::write(outside.join("secret.txt"), "outside secret").unwrap_or_else(|e| panic!("{e}"));
    std::fs::create_dir(root.join("sub")).unwrap_or_else(|e| panic!("{e}"));
    std::os::unix::fs::symlink(outside.join("secret.txt"), root.join("link.txt"))
        .unwrap_or_else(|e| panic!("{e}"));
    std::os::unix::fs::symlink(&outside, root.join("outdir")).unwrap_or_else(|e| panic!("{e}"));
    // A sibling whose name shares the root's as a prefix.
    let sibling = scratch.path().join("root_secret");
    std::fs::create_dir(&sibling).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(sibling.join("x.txt"), "sibling").unwrap_or_else(|e| panic!("{e}"));
    let nfc = scratch.sub("caf\u{e9}");
    let nfd = scratch.sub("cafe\u{301}");
    std::fs::write(nfd.join("secret.txt"), "outside secret").unwrap_or_else(|e| panic!("{e}"));
    // Its own allowed directory is `/`: only Portcullis stands between it and the disk.
    let files = Upstream::command("files", filesystem_server(Path::new("/"))).roots(&[&root, &nfc]);
    let config = scratch.config(Config::relay().upstream(files));

    let client = connect(&config, None).await;
    let inside = root.join("notes.txt").display().to_string();
    let wrote = call(
        &client,
        "files.write_file",
        json!({"path": inside, "content": "inside"}),
    )
    .await;
    assert_ne!(wrote.is_error, Some(true), "{}", text(&wrote));
    let read = call(&client, "files.read_text_file", json!({"path": inside})).await;
    assert_eq!(text(&read), "inside");
    // The upstream asked for roots and was told the effective ones only.
    let allowed = call(&client, "files.list_allowed_directories", json!({})).await;
    let allowed = text(&allowed);
    assert!(allowed.contains(&root.display().to_string()), "{allowed}");
    assert!(!allowed.lines().any(|line| line.trim() == "/"), "{allowed}");

    let secret = outside.join("secret.txt").display().to_string();
    let cases: Vec<(&str, &str, Value)> = vec![
        (
            "traversal",
            "files.read_text_file",
            json!({"path": format!("{}/../outside/secret.txt", root.display())}),
        ),
        (
            "relative traversal",
            "files.read_text_file",
            json!({"path": "../../../../../../etc/passwd"}),
        ),
        (
            "absolute outside",
            "files.read_text_file",
            json!({"path": "/etc/passwd"}),
        ),
        (
            "sibling with the root as a prefix",
            "files.read_text_file",
            json!({"path": sibling.join("x.txt").display().to_string()}),
        ),
        (
            "symlink to a file outside",
            "files.read_text_file",
            json!({"path": root.join("link.txt").display().to_string()}),
        ),
        (
            "file under a symlinked directory",
            "files.read_text_file",
            json!({"path": root.join("outdir/secret.txt").display().to_string()}),
        ),
        (
            "new file under a symlinked directory",
            "files.write_file",
            json!({"path": root.join("outdir/new.txt").display().to_string(), "content": "x"}),
        ),
        (
            "one bad element of several",
            "files.read_multiple_files",
            json!({"paths": [inside, secret]}),
        ),
        (
            "a move out of the root",
            "files.move_file",
            json!({"source": inside, "destination": outside.join("moved.txt").display().to_string()}),
        ),
        (
            "an overlong path",
            "files.read_text_file",
            json!({"path": format!("{}/{}", root.display(), "a/".repeat(3000))}),
        ),
        (
            "a NUL byte",
            "files.read_text_file",
            json!({"path": format!("{}/a\u{0}b", root.display())}),
        ),
        (
            "a magic link",
            "files.read_text_file",
            json!({"path": "/proc/self/root/etc/passwd"}),
        ),
        (
            "a file:// URI with %2e%2e",
            "files.read_text_file",
            json!({"path": format!("file://{}/%2e%2e/outside/secret.txt", root.display())}),
        ),
        (
            // `caf\u{e9}` (NFC) is a root; `cafe\u{301}` (NFD) looks the same and is another
            // name to Linux: no Unicode normalisation may let it in.
            "the other Unicode form of a root's name",
            "files.read_text_file",
            json!({"path": nfd.join("secret.txt").display().to_string()}),
        ),
    ];
    for (what, tool, arguments) in cases {
        let result = call(&client, tool, arguments).await;
        refused(&result, what);
        assert!(
            !text(&result).contains("outside secret"),
            "{what}: the content leaked"
        );
    }
    assert!(!outside.join("new.txt").exists() && !outside.join("moved.txt").exists());
    assert!(
        root.join("notes.txt").exists(),
        "the refused move moved the file"
    );
    let _ = client.cancel().await;

    // A client's own roots narrow the boundary: only `sub` now.
    let sub = root.join("sub");
    let offered = Arc::new(Mutex::new(vec![format!("file://{}", sub.display())]));
    let client = connect(&config, Some(offered.clone())).await;
    let denied = call(
        &client,
        "files.write_file",
        json!({"path": root.join("other.txt").display().to_string(), "content": "x"}),
    )
    .await;
    refused(&denied, "outside the client's roots");
    let allowed = call(
        &client,
        "files.write_file",
        json!({"path": sub.join("ok.txt").display().to_string(), "content": "ok"}),
    )
    .await;
    assert_ne!(allowed.is_error, Some(true), "{}", text(&allowed));
    assert!(sub.join("ok.txt").exists() && !root.join("other.txt").exists());
    // The client widens its roots to the whole root and says so: later calls follow.
    if let Ok(mut roots) = offered.lock() {
        *roots = vec![format!("file://{}", root.display())];
    }
    client
        .notify_roots_list_changed()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let widened = call(
            &client,
            "files.write_file",
            json!({"path": root.join("other.txt").display().to_string(), "content": "x"}),
        )
        .await;
        if widened.is_error != Some(true) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the new roots never took effect: {}",
            text(&widened)
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(root.join("other.txt").exists());
    let _ = client.cancel().await;

    // Every refusal is in the evidence, not run.
    let events: Vec<Value> = std::fs::read_to_string(scratch.path().join("state/evidence.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .map(|line| line["record"]["event"].clone())
        .collect();
    let outside_roots = events
        .iter()
        .filter(|e| {
            e["kind"] == "call_outcome"
                && e["outcome"]["reason"]
                    .as_str()
                    .is_some_and(|r| r.starts_with("outside the roots"))
        })
        .count();
    assert!(outside_roots >= 13, "{events:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn roots_for_an_identity_narrow_the_upstreams_roots() {
    let scratch = Scratch::new();
    let root = scratch.sub("root");
    for dir in ["eng", "carol", "ops"] {
        std::fs::create_dir(root.join(dir)).unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(root.join(dir).join("notes.txt"), dir).unwrap_or_else(|e| panic!("{e}"));
    }
    std::fs::write(root.join("top.txt"), "top").unwrap_or_else(|e| panic!("{e}"));
    // The upstream may reach `root`; carol (group eng) only `root/eng` and `root/carol`.
    let files = Upstream::command("files", filesystem_server(Path::new("/")))
        .roots(&[&root])
        .roots_for_group("eng", &[&root.join("eng")])
        .roots_for_user("carol", &[&root.join("carol")])
        .roots_for_group("ops", &[&root.join("ops")]);
    let config = scratch.config(
        Config::relay()
            .identity(Identity::user("carol").groups(&["eng"]))
            .upstream(files),
    );
    let client = connect(&config, None).await;
    for dir in ["eng", "carol"] {
        let path = root.join(dir).join("notes.txt").display().to_string();
        let read = call(&client, "files.read_text_file", json!({ "path": path })).await;
        assert_eq!(text(&read), dir, "{dir}");
    }
    for path in [root.join("ops/notes.txt"), root.join("top.txt")] {
        let path = path.display().to_string();
        let read = call(&client, "files.read_text_file", json!({ "path": path })).await;
        refused(&read, &path);
    }
    // The server asked for roots when it started, outside any call: one process serves every
    // identity, so it was told the upstream's roots (its sandbox's bound), never its own `/`.
    let allowed = call(&client, "files.list_allowed_directories", json!({})).await;
    let allowed = text(&allowed);
    assert!(
        allowed
            .lines()
            .any(|line| line.trim() == root.display().to_string()),
        "{allowed}"
    );
    assert!(!allowed.lines().any(|line| line.trim() == "/"), "{allowed}");
    let _ = client.cancel().await;
}
