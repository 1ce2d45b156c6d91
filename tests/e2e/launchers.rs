//! The lines MCP servers are published with, behind Portcullis: `npx -y PACKAGE` and
//! `uvx PACKAGE` are installed by `portcullis prepare` (or by `serve`, for what is missing) at
//! a version recorded in the lock file, then run directly and contained, with read-only access
//! to their own package; `docker run` gets Portcullis's container options. Real packages from
//! the npm registry and PyPI (the same versions the set-up installs or the registry serves).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::json;

use crate::rust_client::{call, connect, text, wait_for_tools};
use crate::support::{Config, Scratch, Upstream, bin, portcullis};

/// The server-filesystem version the set-up installs in tests/node (so npm finds it cached).
const FILESYSTEM: &str = "@modelcontextprotocol/server-filesystem@2026.8.31";

/// A config whose one upstream `up` is `command`, as `configure` sets it up, its packages in
/// the scratch directory.
fn launcher_config(
    scratch: &Scratch,
    command: &[&str],
    configure: impl FnOnce(Upstream) -> Upstream,
) -> PathBuf {
    let upstream = configure(Upstream::command("up", command.iter().copied()));
    scratch.config(Config::relay().packages("packages").upstream(upstream))
}

/// The shipped example `name` (config/examples/NAME.toml, and its lock), copied into the scratch directory
/// at the same depth, so that its `../../state/...` paths land in the scratch's `state/`.
fn example(scratch: &Scratch, name: &str) -> PathBuf {
    let source = crate::support::repo_root().join(format!("config/examples/{name}.toml"));
    let text = std::fs::read_to_string(&source).unwrap_or_else(|e| panic!("{e}"));
    let dir = scratch.path().join("config/examples");
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
    std::fs::create_dir_all(scratch.path().join("state/work")).unwrap_or_else(|e| panic!("{e}"));
    let target = dir.join(format!("{name}.toml"));
    std::fs::write(&target, text).unwrap_or_else(|e| panic!("{e}"));
    // Its lock file too, where it ships one: what the registry serves must still match it.
    if let Ok(lock) = std::fs::read_to_string(source.with_extension("lock")) {
        std::fs::write(target.with_extension("lock"), lock).unwrap_or_else(|e| panic!("{e}"));
    }
    target
}

fn lock_of(config: &Path) -> String {
    std::fs::read_to_string(config.with_extension("lock")).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_npx_example_is_prepared_pinned_and_runs_contained_from_its_package() {
    let scratch = Scratch::new();
    let config = example(&scratch, "npx");
    let work = scratch.path().join("state/work");
    // Before it is prepared, nothing starts, and the message says what to do.
    let (ok, _, stderr) = portcullis(&["check"], &config);
    assert!(!ok && stderr.contains("portcullis prepare"), "{stderr}");

    let (ok, stdout, stderr) = portcullis(&["prepare"], &config);
    assert!(ok, "{stdout}{stderr}");
    let lock = lock_of(&config);
    assert!(lock.contains("version = \"2026.8.31\""), "{lock}");
    assert!(lock.contains("integrity = \"sha512-"), "{lock}");
    // Prepared again: nothing changes, nothing is installed.
    let (ok, stdout, _) = portcullis(&["prepare"], &config);
    assert!(ok && stdout.contains("already prepared"), "{stdout}");
    assert_eq!(lock_of(&config), lock);

    // It runs its entry point by node, not npx: no registry at run time, and no network.
    let (ok, stdout, stderr) = portcullis(&["check", "--start"], &config);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("files: started ("), "{stdout}");
    let runs = stdout
        .lines()
        .find(|line| line.trim_start().starts_with("runs: "))
        .unwrap_or_else(|| panic!("{stdout}"));
    assert!(
        runs.contains("/packages/npm/@modelcontextprotocol+server-filesystem@2026.8.31/")
            && runs.contains("dist/index.js")
            && !runs.contains("npx"),
        "{runs}"
    );
    assert!(stdout.contains("tcp connect: none"), "{stdout}");

    // The example's policy is the shipped one: reads run; writes would ask the person.
    std::fs::write(work.join("hello.txt"), "hi from the scratch").unwrap_or_else(|e| panic!("{e}"));
    let client = connect(&config, &[]).await;
    let names = wait_for_tools(&client, Duration::from_secs(30), |n| !n.is_empty()).await;
    assert!(
        names.contains(&"files.read_text_file".to_owned()),
        "{names:?}"
    );
    let path = work.join("hello.txt").display().to_string();
    let read = call(&client, "files.read_text_file", json!({"path": path})).await;
    assert_ne!(read.is_error, Some(true), "{}", text(&read));
    assert!(
        text(&read).contains("hi from the scratch"),
        "{}",
        text(&read)
    );
    let _ = client.cancel().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_prepared_package_is_read_only_to_its_upstream() {
    let scratch = Scratch::new();
    let work = scratch.sub("work");
    let package = scratch
        .path()
        .join("packages/npm/@modelcontextprotocol+server-filesystem@2026.8.31");
    let package_text = package.display().to_string();
    // The server itself is told it may write in its own package directory, and Portcullis's
    // path check is off: the kernel alone must refuse.
    let config = launcher_config(&scratch, &["npx", "-y", FILESYSTEM, &package_text], |up| {
        up.roots(&[&work]).without_path_check()
    });
    let (ok, stdout, stderr) = portcullis(&["prepare"], &config);
    assert!(ok, "{stdout}{stderr}");
    let client = connect(&config, &[]).await;
    let names = wait_for_tools(&client, Duration::from_secs(30), |n| !n.is_empty()).await;
    assert!(names.contains(&"up.write_file".to_owned()), "{names:?}");
    let target = package.join("planted.js");
    let wrote = call(
        &client,
        "up.write_file",
        json!({"path": target.display().to_string(), "content": "module.exports = 1"}),
    )
    .await;
    assert_eq!(wrote.is_error, Some(true), "{}", text(&wrote));
    let said = text(&wrote).to_ascii_lowercase();
    assert!(
        said.contains("eacces") || said.contains("permission denied"),
        "the kernel's refusal, not another error: {said}"
    );
    assert!(!target.exists(), "the package directory was written");
    let _ = client.cancel().await;
}

#[test]
fn a_lock_that_the_registry_no_longer_matches_fails_closed() {
    let scratch = Scratch::new();
    let config = launcher_config(&scratch, &["npx", "-y", FILESYSTEM, "/tmp"], |up| up);
    let (ok, stdout, stderr) = portcullis(&["prepare"], &config);
    assert!(ok, "{stdout}{stderr}");
    // The lock says another integrity, and the install is gone: preparing again must not
    // install what the registry serves now.
    let lock = lock_of(&config);
    let forged = lock.replace("integrity = \"sha512-", "integrity = \"sha512-0000");
    std::fs::write(config.with_extension("lock"), &forged).unwrap_or_else(|e| panic!("{e}"));
    std::fs::remove_dir_all(scratch.path().join("packages/npm")).unwrap_or_else(|e| panic!("{e}"));
    let (ok, _, stderr) = portcullis(&["prepare"], &config);
    assert!(
        !ok && stderr.contains("not what the lock file recorded"),
        "{stderr}"
    );
    assert_eq!(lock_of(&config), forged, "the lock is not rewritten");
    let installed = std::fs::read_dir(scratch.path().join("packages/npm"))
        .map(|entries| {
            entries
                .flatten()
                .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
                .count()
        })
        .unwrap_or(0);
    assert_eq!(installed, 0, "nothing was installed");
    // A corrupt lock is refused, not taken for an empty one.
    std::fs::write(config.with_extension("lock"), "version = 1\n[[package]]\n")
        .unwrap_or_else(|e| panic!("{e}"));
    let (ok, _, stderr) = portcullis(&["check"], &config);
    assert!(!ok && stderr.contains("lock file"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_uvx_example_is_installed_by_serve_and_runs_contained() {
    let scratch = Scratch::new();
    let config = example(&scratch, "uvx");
    // Not prepared: serve installs it first (saying so), then serves it.
    let client = connect(&config, &[]).await;
    let names = wait_for_tools(&client, Duration::from_secs(60), |n| !n.is_empty()).await;
    assert!(
        names.contains(&"time.get_current_time".to_owned()),
        "{names:?}"
    );
    let now = call(&client, "time.get_current_time", json!({"timezone": "UTC"})).await;
    assert_ne!(now.is_error, Some(true), "{}", text(&now));
    assert!(text(&now).contains("UTC"), "{}", text(&now));
    let _ = client.cancel().await;
    let lock = lock_of(&config);
    assert!(
        lock.contains("registry = \"pypi\"") && lock.contains("integrity = \"sha256:"),
        "{lock}"
    );
    let (ok, stdout, stderr) = portcullis(&["check", "--start"], &config);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("time: started ("), "{stdout}");
    assert!(
        stdout.contains("/packages/pypi/mcp-server-time@2026.10.19/bin/python"),
        "{stdout}"
    );
}

#[test]
fn the_docker_example_runs_with_portcullis_container_options() {
    let on_path = std::env::var("PATH")
        .unwrap_or_default()
        .split(':')
        .any(|dir| Path::new(dir).join("docker").is_file());
    if !on_path {
        eprintln!("skipped: no `docker` client on PATH");
        return;
    }
    let scratch = Scratch::new();
    let config = example(&scratch, "docker");
    let (ok, stdout, stderr) = portcullis(&["check"], &config);
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains("contained by its container engine"),
        "{stdout}"
    );
    let runs = stdout
        .lines()
        .find(|line| line.contains(" run --rm -i "))
        .unwrap_or_else(|| panic!("{stdout}"));
    for option in [
        "--read-only",
        "--cap-drop ALL",
        "--security-opt no-new-privileges",
        "--pids-limit",
        // The example grants connect, so the container gets the engine's network.
        "--network bridge",
    ] {
        assert!(runs.contains(option), "{option}: {runs}");
    }
    assert!(!runs.contains("--volume"), "no roots, no mounts: {runs}");
    assert!(
        runs.ends_with("-e GITHUB_PERSONAL_ACCESS_TOKEN ghcr.io/github/github-mcp-server stdio"),
        "{runs}"
    );
    // With roots and no network grant: mounted at the same path, and no network.
    let work = scratch.sub("work");
    let rooted = launcher_config(&scratch, &["docker", "run", "-i", "--rm", "img"], |up| {
        up.roots(&[&work])
    });
    let (ok, stdout, stderr) = portcullis(&["check"], &rooted);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("--network none"), "{stdout}");
    assert!(
        stdout.contains(&format!("--volume {0}:{0}:rw", work.display())),
        "{stdout}"
    );
    // A line that asks for less isolation than Portcullis gives is refused.
    let host = launcher_config(
        &scratch,
        &["docker", "run", "-i", "--network", "host", "img"],
        |up| up,
    );
    let (ok, _, stderr) = portcullis(&["check"], &host);
    assert!(!ok && stderr.contains("--network"), "{stderr}");
    // Running the image needs an engine: where none answers, that is said and no more.
    let engine = Command::new("docker").arg("info").output();
    if !engine.is_ok_and(|output| output.status.success()) {
        eprintln!("not started: no docker engine answers here (`docker info` fails)");
    }
}

#[test]
fn prepare_says_plainly_when_the_registry_is_unreachable_or_has_no_such_package() {
    let scratch = Scratch::new();
    let config = launcher_config(&scratch, &["npx", "-y", FILESYSTEM, "/tmp"], |up| up);
    // No network: the registry is a closed loopback port, and the cache is empty.
    let output = Command::new(bin("portcullis"))
        .args(["prepare", "--config"])
        .arg(&config)
        .env("npm_config_registry", "http://127.0.0.1:9/")
        .env("npm_config_cache", scratch.path().join("empty-cache"))
        .env("npm_config_fetch_retries", "0")
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    let said = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{said}");
    assert!(
        said.contains("upstream `up`") && said.contains("could not be reached"),
        "{said}"
    );
    assert!(lock_of(&config).is_empty(), "nothing was locked");

    let missing = launcher_config(
        &scratch,
        &[
            "npx",
            "-y",
            "@modelcontextprotocol/server-that-does-not-exist-e2e",
        ],
        |up| up,
    );
    let (ok, _, stderr) = portcullis(&["prepare"], &missing);
    assert!(!ok && stderr.contains("no such package"), "{stderr}");
}
