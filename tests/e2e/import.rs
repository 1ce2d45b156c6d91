//! `portcullis import` and `portcullis secret set`, run as a person would: each client's
//! configuration (`fixtures/import/`) in a temporary home, imported, its secrets stored, its
//! packages prepared, and the written config checked. No secret value of the client files
//! may appear in anything Portcullis prints or writes, but sealed in its encrypted store.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::{Value, json};

use crate::rust_client::{call, connect, text, wait_for_tools};
use crate::support::{Config, Scratch, Upstream, bin, repo_root};

/// Every secret in the fixtures carries this marker, and so does every value the tests store.
const MARKER: &str = "FIXTURESECRET";

/// A temporary home with the directories and scripts the fixtures name.
struct Home {
    scratch: Scratch,
    /// Everything Portcullis printed, to be searched for secrets.
    printed: String,
    /// The client files placed here (they hold the secrets, so they are not searched).
    client_files: Vec<PathBuf>,
}

impl Home {
    fn new() -> Self {
        let scratch = Scratch::new();
        let home = Self {
            scratch,
            printed: String::new(),
            client_files: Vec::new(),
        };
        for dir in ["work", "notes", "project/tools", "servers"] {
            home.scratch.sub(dir);
        }
        for script in [
            "servers/local.js",
            "project/server.js",
            "project/tools/server.py",
        ] {
            std::fs::write(home.path().join(script), "")
                .unwrap_or_else(|e| panic!("write {script}: {e}"));
        }
        home
    }

    fn path(&self) -> &Path {
        self.scratch.path()
    }

    fn workspace(&self) -> PathBuf {
        self.path().join("project")
    }

    /// Places a fixture at `to` (relative to the home), its `@HOME@` made this home.
    fn place(&mut self, fixture: &str, to: &str) {
        let text = std::fs::read_to_string(repo_root().join("fixtures/import").join(fixture))
            .unwrap_or_else(|e| panic!("read {fixture}: {e}"))
            .replace("@HOME@", &self.path().display().to_string());
        let path = self.path().join(to);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("mkdir: {e}"));
        }
        std::fs::write(&path, text).unwrap_or_else(|e| panic!("write {to}: {e}"));
        self.client_files.push(path);
    }

    /// Runs `portcullis ARGS` as a person of this home, with `stdin`; what it printed is kept.
    fn run(&mut self, args: &[&str], stdin: &str) -> (bool, String, String) {
        let mut child = Command::new(bin("portcullis"))
            .args(args)
            .current_dir(self.workspace())
            .env("HOME", self.path())
            .env_remove("XDG_CONFIG_HOME")
            .env_remove("XDG_DATA_HOME")
            // As a person who never set the store's key: the store keys itself (a key file
            // beside it), which is how a desktop client's `serve` opens it too.
            .env_remove("PORTCULLIS_CREDENTIAL_KEY")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run portcullis: {e}"));
        if let Some(mut input) = child.stdin.take() {
            std::io::Write::write_all(&mut input, stdin.as_bytes())
                .unwrap_or_else(|e| panic!("stdin: {e}"));
        }
        let Output {
            status,
            stdout,
            stderr,
        } = child
            .wait_with_output()
            .unwrap_or_else(|e| panic!("wait: {e}"));
        let (stdout, stderr) = (
            String::from_utf8_lossy(&stdout).into_owned(),
            String::from_utf8_lossy(&stderr).into_owned(),
        );
        self.printed.push_str(&stdout);
        self.printed.push_str(&stderr);
        (status.success(), stdout, stderr)
    }

    /// Every file under the home that Portcullis wrote (not the client files or their
    /// backups, not the installed packages), with its bytes.
    fn written_files(&self) -> Vec<(PathBuf, Vec<u8>)> {
        let packages = self.path().join(".local/share/portcullis/packages");
        let mut found = Vec::new();
        let mut dirs = vec![self.path().to_path_buf()];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("read_dir: {e}")) {
                let path = entry.unwrap_or_else(|e| panic!("entry: {e}")).path();
                // A client's file, or the backup `install` made of it: the client's own
                // words, secrets included, as they were.
                let backup = path.to_string_lossy().ends_with(".bak");
                if path == packages || self.client_files.contains(&path) || backup {
                    continue;
                }
                if path.is_dir() {
                    dirs.push(path);
                } else if let Ok(bytes) = std::fs::read(&path) {
                    found.push((path, bytes));
                }
            }
        }
        found
    }

    /// INVARIANT: no secret of the client files, nor any value stored, in what Portcullis
    /// printed or wrote (the encrypted store holds them sealed).
    fn assert_no_secret(&self) {
        for needle in [MARKER, "hunter2"] {
            assert!(
                !self.printed.contains(needle),
                "`{needle}` was printed:\n{}",
                self.printed
            );
            for (path, bytes) in self.written_files() {
                assert!(
                    !bytes.windows(needle.len()).any(|w| w == needle.as_bytes()),
                    "`{needle}` is in `{}`",
                    path.display()
                );
            }
        }
    }
}

/// The variables `import` said to set (the lines after its "secrets were not copied").
fn variables(stderr: &str) -> Vec<String> {
    stderr
        .split("secrets were not copied")
        .nth(1)
        .unwrap_or_default()
        .lines()
        .skip(1)
        .take_while(|line| line.starts_with("  "))
        .filter_map(|line| line.split_whitespace().next().map(str::to_owned))
        .collect()
}

/// (client, fixtures placed: (fixture, where in the home), upstreams expected, variables
/// expected, an entry expected to be reported as not imported)
type Case = (
    &'static str,
    &'static [(&'static str, &'static str)],
    &'static [&'static str],
    &'static [&'static str],
    Option<&'static str>,
);

const CASES: &[Case] = &[
    (
        "claude-desktop",
        &[(
            "claude_desktop_config.json",
            ".config/Claude/claude_desktop_config.json",
        )],
        &["filesystem", "github", "local", "search"],
        &[
            "DB_PASSWORD",
            "GITHUB_PERSONAL_ACCESS_TOKEN",
            "SEARCH_TOKEN",
            "SEARCH_X_TEAM",
        ],
        Some("mcpServers.from-git: `github:someone/mcp-server` is not an npm registry package"),
    ),
    (
        "claude-code",
        &[
            ("claude.json", ".claude.json"),
            ("mcp.json", "project/.mcp.json"),
        ],
        &["time", "linear", "project-files", "docs", "scripts"],
        &["API_TOKEN", "DOCS_X_API_KEY", "LINEAR_API_KEY"],
        None,
    ),
    (
        "cursor",
        &[("cursor-mcp.json", ".cursor/mcp.json")],
        &["notes", "web"],
        &["NOTES_TOKEN", "WEB_TOKEN"],
        Some("mcpServers.insecure: `http://mcp.example.com/mcp` is plain http"),
    ),
    (
        "vscode",
        &[
            ("vscode-mcp.json", "project/.vscode/mcp.json"),
            ("vscode-settings.json", ".config/Code/User/settings.json"),
        ],
        &["files", "github", "workspace-files", "search"],
        &["GITHUB_TOKEN", "INDEX_API_KEY", "SEARCH_X_API_KEY"],
        Some("servers.asks-in-args: it uses VS Code input `github-token`"),
    ),
    (
        "windsurf",
        &[(
            "windsurf-mcp_config.json",
            ".codeium/windsurf/mcp_config.json",
        )],
        &["local", "remote"],
        &["REMOTE_TOKEN"],
        Some("mcpServers.off: it is disabled in the client"),
    ),
    (
        "codex",
        &[("codex-config.toml", ".codex/config.toml")],
        &["local", "remote"],
        &["CODEX_REMOTE_TOKEN", "REMOTE_X_ORG", "SLACK_BOT_TOKEN"],
        Some("mcp_servers.wheel: `./local-wheel` is not a PyPI package"),
    ),
];

#[test]
fn each_client_is_imported_from_its_usual_place_into_a_config_that_checks_without_its_secrets() {
    for (client, fixtures, upstreams, expected_variables, skipped) in CASES {
        let mut home = Home::new();
        for (fixture, to) in *fixtures {
            home.place(fixture, to);
        }
        let workspace = home.workspace().display().to_string();
        let written = home.path().join(".config/portcullis/portcullis.toml");

        // A dry run prints the config and writes nothing.
        let (ok, stdout, stderr) =
            home.run(&["import", "--from", client, "--workspace", &workspace], "");
        assert!(ok, "{client}: {stderr}");
        assert!(stdout.contains("[[upstream]]"), "{client}: {stdout}");
        assert!(
            stderr.contains("dry run: nothing was written"),
            "{client}: {stderr}"
        );
        assert!(!written.exists(), "{client}: a dry run wrote the config");

        let (ok, _, stderr) = home.run(
            &[
                "import",
                "--from",
                client,
                "--workspace",
                &workspace,
                "--write",
            ],
            "",
        );
        assert!(ok, "{client}: {stderr}");
        let config = std::fs::read_to_string(&written).unwrap_or_else(|e| panic!("{client}: {e}"));
        for upstream in *upstreams {
            assert!(
                config.contains(&format!("name = \"{upstream}\"")),
                "{client}: `{upstream}` missing:\n{config}"
            );
        }
        if let Some(skipped) = skipped {
            assert!(
                stderr.contains(skipped),
                "{client}: not reported as skipped:\n{stderr}"
            );
        }
        let mut named = variables(&stderr);
        named.sort();
        assert_eq!(named, *expected_variables, "{client}: {stderr}");

        // Before the secrets are stored, check names what is missing (for a header).
        let config_arg = written.display().to_string();
        for variable in &named {
            let (ok, _, stderr) = home.run(
                &["secret", "set", "--config", &config_arg, variable],
                &format!("stored-{MARKER}-{variable}\n"),
            );
            assert!(ok, "{client}: {variable}: {stderr}");
        }
        if config.contains("\"npx\"") || config.contains("\"uvx\"") {
            let (ok, _, stderr) = home.run(&["prepare", "--config", &config_arg], "");
            assert!(ok, "{client}: prepare: {stderr}");
        }
        let (ok, stdout, stderr) = home.run(&["check", "--config", &config_arg], "");
        assert!(
            ok,
            "{client}: the imported config does not check:\n{stdout}\n{stderr}\n{config}"
        );
        // It is never written over unless asked.
        let (ok, _, stderr) = home.run(
            &[
                "import",
                "--from",
                client,
                "--workspace",
                &workspace,
                "--write",
            ],
            "",
        );
        assert!(
            !ok && stderr.contains("exists; `--force` replaces it"),
            "{client}: {stderr}"
        );
        let (ok, _, stderr) = home.run(
            &[
                "import",
                "--from",
                client,
                "--workspace",
                &workspace,
                "--write",
                "--force",
            ],
            "",
        );
        assert!(ok, "{client}: {stderr}");
        // Last: installing puts Portcullis's own entry in the client's file, which a later
        // import refuses (the name `portcullis` is reserved for its own tools).
        if *client == "claude-desktop" {
            lists_through_the_installed_entry(&mut home);
        }

        home.assert_no_secret();
    }
}

/// A client file's server entry as the command line the client runs.
fn entry_argv(entry: &Value) -> Vec<String> {
    std::iter::once(entry["command"].as_str().unwrap_or_default().to_owned())
        .chain(
            entry["args"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|arg| arg.as_str().map(str::to_owned)),
        )
        .collect()
}

/// `install --client claude-desktop`, then the entry started as Claude Desktop starts a
/// server: its own environment (the home, no key variable), the command and arguments from
/// its file. The filesystem server (npx, prepared) is listed through Portcullis, namespaced;
/// the others (a docker engine, a remote host, a script this machine lacks) may be down.
fn lists_through_the_installed_entry(home: &mut Home) {
    let (ok, _, stderr) = home.run(&["install", "--client", "claude-desktop", "--replace"], "");
    assert!(ok, "{stderr}");
    let file = home
        .path()
        .join(".config/Claude/claude_desktop_config.json");
    let client: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap_or_default())
        .unwrap_or_else(|e| panic!("the client's file is not JSON: {e}"));
    let mut argv = vec![
        "/usr/bin/env".to_owned(),
        "-u".to_owned(),
        "PORTCULLIS_CREDENTIAL_KEY".to_owned(),
        format!("HOME={}", home.path().display()),
    ];
    argv.extend(entry_argv(&client["mcpServers"]["portcullis"]));
    let listed = crate::support::ts_client(
        &crate::support::Target::Stdio(&argv),
        &["--scenario", "list"],
    );
    let names = crate::support::names(&listed["tools"]);
    assert!(
        names.iter().any(|name| name == "filesystem.list_directory"),
        "{listed}"
    );
    assert!(
        names.iter().all(|name| name.contains('.')),
        "a tool not namespaced: {names:?}"
    );
}

#[test]
fn a_client_without_a_configuration_is_an_error_naming_where_it_looked() {
    let mut home = Home::new();
    let (ok, _, stderr) = home.run(&["import", "--from", "cursor"], "");
    assert!(!ok);
    assert!(
        stderr.contains("no cursor configuration was found; looked in ~/.cursor/mcp.json"),
        "{stderr}"
    );
    let (ok, _, stderr) = home.run(&["import", "--from", "nonesuch"], "");
    assert!(!ok && stderr.contains("is neither a client"), "{stderr}");
}

#[test]
fn a_secret_on_the_command_line_is_refused_without_echoing_it_and_nothing_is_stored() {
    let mut home = Home::new();
    let config = home
        .scratch
        .config("[[upstream]]\nname = \"a\"\ncommand = [\"true\"]\n");
    let config_arg = config.display().to_string();
    let store = home.path().join("state/credentials.enc");
    let value = format!("sk-{MARKER}-argv");
    for args in [
        vec!["secret", "set", "--config", &config_arg, "TOKEN", &value],
        vec![
            "secret",
            "set",
            "--config",
            &config_arg,
            "TOKEN",
            "--value",
            &value,
        ],
        vec![
            "secret",
            "set",
            "--config",
            &config_arg,
            "TOKEN",
            &format!("--value={value}"),
        ],
    ] {
        let (ok, stdout, stderr) = home.run(&args, "");
        assert!(!ok, "{args:?}: {stdout}");
        assert!(stderr.contains("never from the command line"), "{stderr}");
        assert!(!store.exists(), "{args:?} stored something");
    }
    // Nor an empty value, nor a name that is no variable.
    let (ok, _, stderr) = home.run(&["secret", "set", "--config", &config_arg, "TOKEN"], "");
    assert!(!ok && stderr.contains("no value was given"), "{stderr}");
    let (ok, _, stderr) = home.run(
        &["secret", "set", "--config", &config_arg, "NOT-A-NAME"],
        "x\n",
    );
    assert!(
        !ok && stderr.contains("is not an environment variable name"),
        "{stderr}"
    );
    let (ok, _, stderr) = home.run(
        &[
            "secret",
            "set",
            "--config",
            &config_arg,
            &format!("TOKEN={value}"),
        ],
        "x\n",
    );
    assert!(
        !ok && stderr.contains("give only the variable's name"),
        "{stderr}"
    );
    assert!(!store.exists());
    home.assert_no_secret();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stored_secret_reaches_its_upstream_and_is_redacted_from_what_comes_back() {
    let mut home = Home::new();
    let work = home.scratch.sub("fixture-work");
    let config = home.scratch.config(
        Config::relay().upstream(Upstream::fixture("fx", &work).inherit_env(&["FIXTURE_MARKER"])),
    );
    let config_arg = config.display().to_string();
    let value = format!("stored-{MARKER}-marker");
    let (ok, _, stderr) = home.run(
        &["secret", "set", "--config", &config_arg, "FIXTURE_MARKER"],
        &format!("{value}\n"),
    );
    assert!(ok, "{stderr}");
    let client = connect(&config, &[]).await;
    wait_for_tools(&client, std::time::Duration::from_secs(20), |n| {
        !n.is_empty()
    })
    .await;
    let result = call(&client, "fx.whoami", json!({})).await;
    let answer = text(&result);
    client.cancel().await.ok();
    let report: Value = serde_json::from_str(&answer).unwrap_or_else(|e| panic!("{e}: {answer}"));
    // The upstream had it (and said so), and its answer reached the client redacted.
    assert_eq!(report["fixture_marker"], "[redacted]", "{report}");
    assert!(!answer.contains(&value), "{answer}");
    home.assert_no_secret();
}

#[test]
fn a_client_is_moved_behind_portcullis_by_import_and_install_and_lists_through_it() {
    let mut home = Home::new();
    let fixture = bin("portcullis-fixture");
    let work = home.path().join("work");
    let client_file = home
        .path()
        .join(".config/Claude/claude_desktop_config.json");
    let client_dir = home.path().join(".config/Claude");
    std::fs::create_dir_all(&client_dir).unwrap_or_else(|e| panic!("{e}"));
    let original = json!({
        "globalShortcut": "Ctrl+Space",
        "mcpServers": {
            "files": {"command": fixture.display().to_string(), "args": ["--scratch", work.display().to_string()]},
            "from-git": {"command": "npx", "args": ["-y", "github:someone/server"]},
        },
    });
    let original = serde_json::to_string_pretty(&original).unwrap_or_default();
    std::fs::write(&client_file, &original).unwrap_or_else(|e| panic!("{e}"));
    let read_client = || -> Value {
        serde_json::from_str(&std::fs::read_to_string(&client_file).unwrap_or_default())
            .unwrap_or_else(|e| panic!("the client's file is not JSON: {e}"))
    };
    let backups = || -> usize {
        std::fs::read_dir(&client_dir)
            .map(|entries| {
                entries
                    .flatten()
                    .filter(|entry| entry.file_name().to_string_lossy().ends_with(".bak"))
                    .count()
            })
            .unwrap_or_default()
    };

    let (imported, _, said) = home.run(&["import", "--from", "claude-desktop", "--write"], "");
    assert!(imported, "{said}");
    let config = home.path().join(".config/portcullis/portcullis.toml");
    let (installed, _, said) =
        home.run(&["install", "--client", "claude-desktop", "--replace"], "");
    assert!(installed, "{said}");
    assert!(said.contains("moved out of the client"), "{said}");

    // One entry that starts this portcullis on that config; every other key kept; the
    // imported server moved out, the one import refused left where it was.
    let client = read_client();
    let program = std::fs::canonicalize(bin("portcullis")).unwrap_or_default();
    let config = std::fs::canonicalize(&config).unwrap_or_default();
    assert_eq!(
        client["mcpServers"]["portcullis"],
        json!({"command": program.display().to_string(), "args": ["serve", "--config", config.display().to_string()]}),
        "{client}"
    );
    assert_eq!(client["globalShortcut"], "Ctrl+Space");
    assert!(client["mcpServers"].get("files").is_none(), "{client}");
    assert!(client["mcpServers"].get("from-git").is_some(), "{client}");
    assert_eq!(backups(), 1);
    // Again: nothing changes, nothing is written.
    let (again, _, said) = home.run(&["install", "--client", "claude-desktop", "--replace"], "");
    assert!(again && said.contains("nothing written"), "{said}");
    assert_eq!(backups(), 1);

    // The client starts the entry as it starts any server: the imported server's tools are
    // listed through Portcullis, namespaced.
    let argv = entry_argv(&client["mcpServers"]["portcullis"]);
    let listed = crate::support::ts_client(
        &crate::support::Target::Stdio(&argv),
        &["--scenario", "list"],
    );
    let names = crate::support::names(&listed["tools"]);
    assert!(names.contains(&"files.echo".to_owned()), "{listed}");

    // Uninstall takes the entry out and keeps the rest.
    let (removed, _, said) = home.run(&["uninstall", "--client", "claude-desktop"], "");
    assert!(removed, "{said}");
    let client = read_client();
    assert!(client["mcpServers"].get("portcullis").is_none(), "{client}");
    assert_eq!(client["globalShortcut"], "Ctrl+Space");
    assert_eq!(backups(), 2);
    let (again, _, said) = home.run(&["uninstall", "--client", "claude-desktop"], "");
    assert!(again && said.contains("nothing written"), "{said}");
    // One of the backups is the client's file as it was (each change keeps its own, even
    // two within one second).
    let kept: Vec<String> = std::fs::read_dir(&client_dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| path.to_string_lossy().ends_with(".bak"))
        .map(|path| std::fs::read_to_string(path).unwrap_or_default())
        .collect();
    assert!(kept.contains(&original), "{kept:?}");
}
