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
use crate::support::{Scratch, bin, toml_array};

/// The server-filesystem version the set-up installs in tests/node (so npm finds it cached).
const FILESYSTEM: &str = "@modelcontextprotocol/server-filesystem@2026.8.31";
const TIME: &str = "mcp-server-time==2026.10.19";

fn portcullis(args: &[&str], config: &Path) -> (bool, String, String) {
    let output = Command::new(bin("portcullis"))
        .args(args)
        .arg("--config")
        .arg(config)
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// A config whose one upstream is `command`, its packages in the scratch directory.
fn launcher_config(scratch: &Scratch, command: &[&str], extra: &str) -> PathBuf {
    let command: Vec<String> = command.iter().map(|part| (*part).to_owned()).collect();
    scratch.relay_config(&format!(
        "[server]\npackages = \"packages\"\n[[upstream]]\nname = \"up\"\ncommand = {}\n{extra}",
        toml_array(&command)
    ))
}

fn lock_of(config: &Path) -> String {
    std::fs::read_to_string(config.with_extension("lock")).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_npx_line_is_prepared_pinned_and_runs_contained_from_its_package() {
    let scratch = Scratch::new();
    let work = scratch.sub("work");
    let work_text = work.display().to_string();
    let config = launcher_config(
        &scratch,
        &["npx", "-y", FILESYSTEM, &work_text],
        &format!("roots = {}\n", toml_array(std::slice::from_ref(&work_text))),
    );
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
    let (ok, stdout, stderr) = portcullis(&["check"], &config);
    assert!(ok, "{stderr}");
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

    let client = connect(&config, &[]).await;
    let names = wait_for_tools(&client, Duration::from_secs(30), |n| !n.is_empty()).await;
    assert!(names.contains(&"up.write_file".to_owned()), "{names:?}");
    let path = work.join("hello.txt").display().to_string();
    let wrote = call(
        &client,
        "up.write_file",
        json!({"path": path, "content": "hi"}),
    )
    .await;
    assert_ne!(wrote.is_error, Some(true), "{}", text(&wrote));
    assert_eq!(
        std::fs::read_to_string(work.join("hello.txt"))
            .ok()
            .as_deref(),
        Some("hi")
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
    let config = launcher_config(
        &scratch,
        &["npx", "-y", FILESYSTEM, &package_text],
        &format!(
            "roots = {}\ncheck_paths = false\n",
            toml_array(&[work.display().to_string()])
        ),
    );
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
    let config = launcher_config(&scratch, &["npx", "-y", FILESYSTEM, "/tmp"], "");
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
async fn a_uvx_line_is_installed_by_serve_and_runs_contained() {
    let scratch = Scratch::new();
    let config = launcher_config(
        &scratch,
        &["uvx", TIME, "--local-timezone", "UTC"],
        "tools.get_current_time = { effect = \"read\" }\n",
    );
    // Not prepared: serve installs it first (saying so), then serves it.
    let client = connect(&config, &[]).await;
    let names = wait_for_tools(&client, Duration::from_secs(60), |n| !n.is_empty()).await;
    assert!(
        names.contains(&"up.get_current_time".to_owned()),
        "{names:?}"
    );
    let now = call(&client, "up.get_current_time", json!({"timezone": "UTC"})).await;
    assert_ne!(now.is_error, Some(true), "{}", text(&now));
    assert!(text(&now).contains("UTC"), "{}", text(&now));
    let _ = client.cancel().await;
    let lock = lock_of(&config);
    assert!(
        lock.contains("registry = \"pypi\"") && lock.contains("integrity = \"sha256:"),
        "{lock}"
    );
    let (ok, stdout, stderr) = portcullis(&["check"], &config);
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains("/packages/pypi/mcp-server-time@2026.10.19/bin/python"),
        "{stdout}"
    );
}

#[test]
fn a_docker_line_runs_with_portcullis_container_options() {
    let on_path = std::env::var("PATH")
        .unwrap_or_default()
        .split(':')
        .any(|dir| Path::new(dir).join("docker").is_file());
    if !on_path {
        eprintln!("skipped: no `docker` client on PATH");
        return;
    }
    let scratch = Scratch::new();
    let work = scratch.sub("work");
    let config = launcher_config(
        &scratch,
        &[
            "docker",
            "run",
            "-i",
            "--rm",
            "-e",
            "GITHUB_TOKEN",
            "ghcr.io/github/github-mcp-server",
            "stdio",
        ],
        &format!("roots = {}\n", toml_array(&[work.display().to_string()])),
    );
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
        "--network none",
        "--read-only",
        "--cap-drop ALL",
        "--security-opt no-new-privileges",
        "--pids-limit",
    ] {
        assert!(runs.contains(option), "{option}: {runs}");
    }
    assert!(
        runs.contains(&format!("--volume {0}:{0}:rw", work.display())),
        "{runs}"
    );
    assert!(
        runs.ends_with("-e GITHUB_TOKEN ghcr.io/github/github-mcp-server stdio"),
        "{runs}"
    );
    // A line that asks for more isolation than Portcullis gives is refused.
    let host = launcher_config(
        &scratch,
        &["docker", "run", "-i", "--network", "host", "img"],
        "",
    );
    let (ok, _, stderr) = portcullis(&["check"], &host);
    assert!(!ok && stderr.contains("--network"), "{stderr}");
    // Running an image needs an engine: where none answers, that much is said and no more.
    let engine = Command::new("docker").arg("info").output();
    if !engine.is_ok_and(|output| output.status.success()) {
        eprintln!("not run: no docker engine answers here (`docker info` fails)");
    }
}
