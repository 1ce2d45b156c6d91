//! Import cases as data: each client file in `fixtures/import/` with the report it gives
//! beside it (`*.expected`: the config written, the variables to set, what was left out and
//! why), and the properties every case keeps: no secret value anywhere in the report, and a
//! config that this crate accepts.
#![expect(clippy::panic, reason = "tests")]

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use expect_test::{ExpectFile, expect_file};

use super::*;

const HOME: &str = "/home/person";

fn fixture(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/import")
        .join(name);
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .replace("@HOME@", HOME)
}

/// The directories of the test machine.
fn is_dir(path: &Path) -> bool {
    [
        "/home/person/work",
        "/home/person/notes",
        "/home/person/project",
    ]
    .iter()
    .any(|dir| Path::new(dir) == path)
}

fn env(name: &str) -> Option<String> {
    match name {
        "LANG" => Some("C.UTF-8".to_owned()),
        "NOTES_TOKEN" | "API_TOKEN" => Some("env-FIXTURESECRET-never-read".to_owned()),
        _ => None,
    }
}

fn run(sources: &[(&str, &str, Option<&str>)]) -> Imported {
    let sources: Vec<ImportSource> = sources
        .iter()
        .map(|(client, file, workspace)| ImportSource {
            client: (*client).to_owned(),
            path: PathBuf::from(format!("/fixtures/{file}")),
            text: fixture(file),
            workspace: workspace.map(PathBuf::from),
        })
        .collect();
    import(
        &sources,
        &Machine {
            home: Path::new(HOME),
            env: &env,
            is_dir: &is_dir,
        },
    )
}

fn report(imported: &Imported) -> String {
    let mut text = imported.config.clone();
    text.push_str("\n---- variables\n");
    for variable in &imported.variables {
        let _ = writeln!(
            text,
            "{} (for {}; {})",
            variable.name,
            variable.upstreams.join(", "),
            variable.origins.join("; ")
        );
    }
    text.push_str("---- skipped\n");
    for skipped in &imported.skipped {
        let _ = writeln!(text, "{}: {}", skipped.entry, skipped.reason);
    }
    text.push_str("---- notes\n");
    for note in &imported.notes {
        let _ = writeln!(text, "{note}");
    }
    text
}

fn check(sources: &[(&str, &str, Option<&str>)], expected: ExpectFile) {
    let imported = run(sources);
    let text = report(&imported);
    // INVARIANT: every secret in the fixtures carries this marker; none may come out.
    assert!(!text.contains("FIXTURESECRET"), "a secret leaked:\n{text}");
    assert!(!text.contains("hunter2"), "a secret leaked:\n{text}");
    if let Err(errors) = crate::parse(Path::new("/out/portcullis.toml"), &imported.config) {
        panic!(
            "the imported config is refused: {errors}\n{}",
            imported.config
        );
    }
    expected.assert_eq(&text);
}

#[test]
fn claude_desktop() {
    check(
        &[("claude-desktop", "claude_desktop_config.json", None)],
        expect_file!["../../../../fixtures/import/claude_desktop_config.expected"],
    );
}

#[test]
fn claude_code_user_and_project() {
    check(
        &[
            ("claude-code", "claude.json", None),
            ("claude-code", "mcp.json", Some("/home/person/project")),
        ],
        expect_file!["../../../../fixtures/import/claude.expected"],
    );
}

#[test]
fn cursor() {
    check(
        &[("cursor", "cursor-mcp.json", None)],
        expect_file!["../../../../fixtures/import/cursor-mcp.expected"],
    );
}

#[test]
fn vscode_workspace_and_user_settings() {
    check(
        &[
            ("vscode", "vscode-mcp.json", Some("/home/person/project")),
            ("vscode", "vscode-settings.json", None),
        ],
        expect_file!["../../../../fixtures/import/vscode.expected"],
    );
}

#[test]
fn windsurf() {
    check(
        &[("windsurf", "windsurf-mcp_config.json", None)],
        expect_file!["../../../../fixtures/import/windsurf-mcp_config.expected"],
    );
}

#[test]
fn codex() {
    check(
        &[("codex", "codex-config.toml", None)],
        expect_file!["../../../../fixtures/import/codex-config.expected"],
    );
}

#[test]
fn a_file_that_does_not_parse_is_reported_without_quoting_it() {
    let imported = import(
        &[
            ImportSource {
                client: "file".to_owned(),
                path: PathBuf::from("/x/broken.json"),
                text: r#"{"mcpServers": {"a": {"env": {"K": "sk-FIXTURESECRET"}}"#.to_owned(),
                workspace: None,
            },
            ImportSource {
                client: "codex".to_owned(),
                path: PathBuf::from("/x/config.toml"),
                text: "[mcp_servers.a]\nenv = { K = \"sk-FIXTURESECRET\" \n".to_owned(),
                workspace: None,
            },
        ],
        &Machine {
            home: Path::new(HOME),
            env: &env,
            is_dir: &is_dir,
        },
    );
    let text = report(&imported);
    assert!(!text.contains("FIXTURESECRET"), "{text}");
    assert_eq!(imported.skipped.len(), 2, "{text}");
    assert!(imported.upstreams.is_empty());
}

#[test]
fn values_are_written_only_when_plainly_no_secret() {
    // (name, value, written into the config)
    let cases = [
        ("LOG_LEVEL", "debug", true),
        ("READ_ONLY", "true", true),
        ("PORT", "8080", true),
        ("DATA_DIR", "/srv/data", true),
        ("MODE", "", true),
        ("API_KEY", "debug", false),
        ("DB_PASSWORD", "x", false),
        ("GITHUB_PAT", "abc", false),
        ("SLACK_TEAM", "T0123ABC", false),
        ("DATABASE_URL", "postgres://u:p@h/db", false),
        ("ENDPOINT", "https://x.example/?key=abc", false),
        ("NAME", "MixedCase", false),
        ("OPTS", "a b", false),
    ];
    for (name, value, written) in cases {
        let text = format!(
            r#"{{"mcpServers": {{"s": {{"command": "node", "args": ["/s.js"], "env": {{"{name}": "{value}"}}}}}}}}"#
        );
        let imported = import(
            &[ImportSource {
                client: "file".to_owned(),
                path: PathBuf::from("/x/c.json"),
                text,
                workspace: None,
            }],
            &Machine {
                home: Path::new(HOME),
                env: &env,
                is_dir: &is_dir,
            },
        );
        let in_env = imported.config.contains(&format!("{name} = "));
        let as_variable = imported.variables.iter().any(|v| v.name == name);
        assert_eq!(
            (in_env, as_variable),
            (written, !written),
            "{name}={value}:\n{}",
            imported.config
        );
    }
}

#[test]
fn what_may_hold_a_secret_is_refused_without_being_quoted() {
    let servers = [
        r#""unclosed": {"command": "node", "args": ["/s.js"], "env": {"K": "sk-FIXTURESECRET${x"}}"#,
        r#""query": {"url": "https://x.example/mcp?api_key=FIXTURESECRET"}"#,
        r#""user": {"url": "https://me:FIXTURESECRET@x.example/mcp"}"#,
        r#""header": {"url": "https://x.example/mcp", "headers": {"X-Key": "FIXTURESECRET${"}}"#,
        r#""arg": {"command": "node", "args": ["/s.js", "${API_KEY}"]}"#,
        r#""option": {"command": "node", "args": ["/s.js", "--api-key", "FIXTURESECRET"]}"#,
        r#""inline": {"command": "node", "args": ["/s.js", "--token=FIXTURESECRET"]}"#,
        r#""shaped": {"command": "node", "args": ["/s.js", "ghp_FIXTURESECRET"]}"#,
        r#""assigned": {"command": "node", "args": ["/s.js", "API_TOKEN=FIXTURESECRET"]}"#,
        r#""docker": {"command": "docker", "args": ["run", "-i", "-e", "GITHUB_TOKEN=FIXTURESECRET", "--env=MODE=ro", "--env=KEY=FIXTURESECRET", "img"]}"#,
    ];
    let text = format!(r#"{{"mcpServers": {{{}}}}}"#, servers.join(", "));
    let imported = import(
        &[ImportSource {
            client: "file".to_owned(),
            path: PathBuf::from("/x/c.json"),
            text,
            workspace: None,
        }],
        &Machine {
            home: Path::new(HOME),
            env: &|_| Some("env-FIXTURESECRET".to_owned()),
            is_dir: &is_dir,
        },
    );
    let text = report(&imported);
    assert!(!text.contains("FIXTURESECRET"), "{text}");
    let skipped: Vec<&str> = imported
        .skipped
        .iter()
        .map(|s| s.entry.rsplit('.').next().unwrap_or(""))
        .collect();
    assert_eq!(
        skipped,
        [
            "arg", "assigned", "header", "inline", "option", "query", "shaped", "unclosed", "user"
        ],
        "{text}"
    );
    // A container's `-e NAME=value` becomes `-e NAME` and a variable to set.
    assert!(
        imported.config.contains(
            r#"command = ["docker", "run", "-i", "-e", "GITHUB_TOKEN", "--env=MODE=ro", "--env=KEY", "img"]"#
        ),
        "{text}"
    );
    let names: Vec<&str> = imported.variables.iter().map(|v| v.name.as_str()).collect();
    assert_eq!(names, ["GITHUB_TOKEN", "KEY"], "{text}");
}

#[test]
fn one_variable_with_two_values_is_pointed_out_without_either() {
    let server = |name: &str, value: &str| {
        format!(
            r#""{name}": {{"command": "node", "args": ["/s.js"], "env": {{"GITHUB_TOKEN": "{value}"}}}}"#
        )
    };
    let run = |servers: [String; 2]| {
        import(
            &[ImportSource {
                client: "file".to_owned(),
                path: PathBuf::from("/x/c.json"),
                text: format!(r#"{{"mcpServers": {{{}}}}}"#, servers.join(", ")),
                workspace: None,
            }],
            &Machine {
                home: Path::new(HOME),
                env: &env,
                is_dir: &is_dir,
            },
        )
    };
    let differing = run([
        server("a", "ghp_FIXTURESECRET_one"),
        server("b", "ghp_FIXTURESECRET_two"),
    ]);
    let text = report(&differing);
    assert!(!text.contains("FIXTURESECRET"), "{text}");
    assert!(
        text.contains("`GITHUB_TOKEN` has different values in the client's files (for a, b)"),
        "{text}"
    );
    let same = run([
        server("a", "ghp_FIXTURESECRET_one"),
        server("b", "ghp_FIXTURESECRET_one"),
    ]);
    assert!(same.notes.is_empty(), "{}", report(&same));
    assert_eq!(same.variables.len(), 1);
}
