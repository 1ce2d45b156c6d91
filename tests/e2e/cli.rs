//! `portcullis check`: says exactly what is wrong and where, and exits non-zero.

use std::process::Command;

use crate::support::{Config, Credential, Scratch, Tool, Upstream, bin, portcullis, repo_root};

fn check(config: &std::path::Path) -> (bool, String, String) {
    portcullis(&["check"], config)
}

#[test]
fn the_shipped_config_checks_clean() {
    let (ok, stdout, stderr) = check(&repo_root().join("config/portcullis.toml"));
    assert!(ok, "stdout: {stdout}\nstderr: {stderr}");
    assert!(
        stdout.contains(": ok (3 upstreams, 6 policies)"),
        "{stdout}"
    );
    // Each stdio upstream's effective sandbox, with the roots config grants it read-write.
    for upstream in ["everything", "files", "fixture"] {
        assert!(
            stdout.contains(&format!(
                "upstream `{upstream}`: contained\n  sandbox: landlock ABI"
            )),
            "{stdout}"
        );
    }
    // And the digest of each profile, as its `sandbox_started` record names it.
    assert_eq!(
        stdout.matches("\n  profile digest: ").count(),
        3,
        "{stdout}"
    );
    let files = stdout
        .split("upstream `files`")
        .nth(1)
        .and_then(|rest| rest.split("upstream `fixture`").next())
        .unwrap_or_default();
    // The paths are sorted, so where the checkout sits decides their order: compare as a set.
    let mut read_write: Vec<&str> = files
        .split("read and write:\n")
        .nth(1)
        .unwrap_or_default()
        .lines()
        .take_while(|line| line.starts_with("    "))
        .map(str::trim)
        .collect();
    read_write.sort_unstable();
    let sandbox = repo_root().join("config/sandbox").display().to_string();
    let mut expected = vec![sandbox.as_str(), "/dev/null (file)"];
    expected.sort_unstable();
    assert_eq!(read_write, expected, "{files}");
    assert!(files.contains("tcp connect: none"), "{files}");
}

#[test]
fn check_shows_an_uncontained_upstream_loudly_and_refuses_an_unenforceable_sandbox() {
    let scratch = Scratch::new();
    let config = scratch.config(
        Config::new()
            .upstream(Upstream::command("open", ["true"]).uncontained())
            .upstream(Upstream::url("remote", "http://127.0.0.1:9/mcp")),
    );
    let (ok, stdout, stderr) = check(&config);
    assert!(ok, "stdout: {stdout}\nstderr: {stderr}");
    assert!(
        stdout.contains("upstream `open`: NOT CONTAINED (contain = false)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("upstream `remote`: streamable HTTP, nothing to contain"),
        "{stdout}"
    );

    // A granted path the sandbox cannot open (a symlink loop) makes the profile unenforceable.
    let scratch = Scratch::new();
    std::os::unix::fs::symlink("loop", scratch.path().join("loop"))
        .unwrap_or_else(|e| panic!("{e}"));
    // Test data: the config `check` is to refuse.
    let config = scratch.config(
        "[[upstream]]\nname = \"looped\"\ncommand = [\"true\"]\nsandbox = { read_only = [\"loop\"] }\n",
    );
    let (ok, _, stderr) = check(&config);
    assert!(!ok);
    let looped = scratch.path().join("loop").display().to_string();
    assert!(
        stderr.contains(&format!(
            "upstream `looped` cannot be contained, so it will not start: cannot open sandbox path `{looped}`: "
        )) && stderr.contains("symbolic links"),
        "{stderr}"
    );
}

#[test]
fn errors_name_file_line_and_column() {
    let scratch = Scratch::new();
    // Test data: malformed on purpose, and the positions of its mistakes are checked.
    let config = scratch.config(
        "[server]\nnamespacing = \"flat\"\n\n[[upstream]]\nname = \"a b\"\ncommand = [\"x\"]\n",
    );
    let (ok, _, stderr) = check(&config);
    assert!(!ok);
    let file = config.display().to_string();
    assert!(
        stderr.contains(&format!("{file}:2:15: unknown namespacing `flat`")),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("{file}:5:8: upstream name `a b` may contain only")),
        "{stderr}"
    );
}

#[test]
fn missing_programs_are_reported_by_upstream() {
    let scratch = Scratch::new();
    // Test data: the config `check` is to refuse.
    let config =
        scratch.config("[[upstream]]\nname = \"ghost\"\ncommand = [\"./no/such/server\"]\n");
    let (ok, _, stderr) = check(&config);
    assert!(!ok);
    assert!(
        stderr.contains("upstream `ghost`: program") && stderr.contains("was not found"),
        "{stderr}"
    );
}

#[test]
fn serve_refuses_a_non_loopback_listener() {
    let scratch = Scratch::new();
    let config = scratch.config(Config::new().upstream(Upstream::command("a", ["true"])));
    let output = Command::new(bin("portcullis"))
        .args(["serve", "--config"])
        .arg(&config)
        .args(["--listen", "0.0.0.0:0"])
        .output()
        .unwrap_or_else(|e| panic!("cannot run portcullis: {e}"));
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("is not a loopback address"));
}

/// A config whose policy directory holds `text`, with one fixture upstream.
fn with_policy(scratch: &Scratch, text: &str) -> std::path::PathBuf {
    let policies = scratch.sub("policies");
    std::fs::write(policies.join("local.cedar"), text).unwrap_or_else(|e| panic!("{e}"));
    let fx = Upstream::fixture("fx", &scratch.sub("work"))
        .tool("echo", Tool::read())
        .tool("delete_file", Tool::destructive().scopes(&["files.write"]));
    scratch.config(Config::new().policy("policies").upstream(fx))
}

const HIDE_DELETES_FROM_SALES: &str = r#"@id("all")
permit (principal, action, resource);

@id("sales-never-deletes")
@reason("sales may not delete files")
forbid (principal in Portcullis::Group::"sales", action, resource)
when { resource has effect && resource.effect == "destructive" };
"#;

#[test]
fn a_broken_policy_fails_check_and_serve_with_its_line() {
    let scratch = Scratch::new();
    let config = with_policy(
        &scratch,
        "@id(\"x\")\npermit (principal, action, resource)\nwhen { resource.colour == \"red\" };\n",
    );
    let (ok, _, stderr) = check(&config);
    assert!(!ok);
    assert!(
        stderr.contains("local.cedar:3:8:") && stderr.contains("colour"),
        "{stderr}"
    );
    // `serve` refuses to start on it (fail closed), with the same message.
    let (ok, _, stderr) = portcullis(&["serve"], &config);
    assert!(!ok);
    assert!(stderr.contains("local.cedar:3:8:"), "{stderr}");
}

#[test]
fn tools_shows_what_an_identity_would_see() {
    let scratch = Scratch::new();
    let config = with_policy(&scratch, HIDE_DELETES_FROM_SALES);
    let (ok, eng, stderr) = portcullis(
        &[
            "tools",
            "--as",
            "alice",
            "--group",
            "eng",
            "--scope",
            "files.write",
        ],
        &config,
    );
    assert!(ok, "{stderr}");
    assert!(
        eng.contains("fx.delete_file") && eng.contains("fx.echo"),
        "{eng}"
    );
    // Each with its classification and what a call of it comes to.
    assert!(eng.contains("    fx.echo  read; runs\n"), "{eng}");
    assert!(
        eng.contains("    fx.delete_file  destructive; runs\n"),
        "{eng}"
    );
    let (ok, sales, stderr) = portcullis(
        &[
            "tools",
            "--as",
            "bob",
            "--group",
            "sales",
            "--scope",
            "files.write",
        ],
        &config,
    );
    assert!(ok, "{stderr}");
    assert!(
        !sales.contains("fx.delete_file") && sales.contains("fx.echo"),
        "{sales}"
    );
}

#[test]
fn explain_names_the_decision_and_the_policies_behind_it() {
    let scratch = Scratch::new();
    let config = with_policy(&scratch, HIDE_DELETES_FROM_SALES);
    let (ok, out, stderr) = portcullis(
        &[
            "explain",
            "--as",
            "bob",
            "--group",
            "sales",
            "--scope",
            "files.write",
            "fx.delete_file",
            r#"{"path":"a"}"#,
        ],
        &config,
    );
    assert!(ok, "{stderr}");
    assert!(out.starts_with("decision: deny\n"), "{out}");
    assert!(
        out.contains("decided at: list_tool (the tool is hidden"),
        "{out}"
    );
    assert!(out.contains("sales-never-deletes ("), "{out}");
    assert!(out.contains("local.cedar:4)"), "{out}");
    let (ok, out, stderr) = portcullis(
        &[
            "explain",
            "--as",
            "alice",
            "--scope",
            "files.write",
            "fx.delete_file",
            r#"{"path":"a"}"#,
        ],
        &config,
    );
    assert!(ok, "{stderr}");
    assert!(out.starts_with("decision: allow\n"), "{out}");
    assert!(out.contains("determined by:\n  all ("), "{out}");
}

#[test]
fn explain_looks_the_tool_up_in_the_live_catalog() {
    let scratch = Scratch::new();
    let config = with_policy(&scratch, HIDE_DELETES_FROM_SALES);
    let (ok, out, stderr) = portcullis(&["explain", "fx.echo", r#"{"text":"hi"}"#], &config);
    assert!(ok, "{stderr}");
    assert!(
        out.contains("catalog: upstream `fx` lists `fx.echo`"),
        "{out}"
    );
    // A name its upstream does not list is no tool: nothing to decide.
    let (ok, out, stderr) = portcullis(&["explain", "fx.no_such_tool"], &config);
    assert!(!ok, "{out}");
    assert!(
        stderr.contains("does not list `fx.no_such_tool`: there is no such tool"),
        "{stderr}"
    );
    // As serve would, the check stage refuses a path outside the roots and arguments the
    // schema rejects, before policy is asked.
    let (ok, out, stderr) = portcullis(
        &[
            "explain",
            "--scope",
            "files.write",
            "fx.delete_file",
            r#"{"path":"/etc/passwd"}"#,
        ],
        &config,
    );
    assert!(ok, "{stderr}");
    assert!(
        out.starts_with("decision: deny (refused before policy: "),
        "{out}"
    );
    assert!(out.contains("decided at: check"), "{out}");
    let (ok, out, stderr) = portcullis(&["explain", "fx.echo", r#"{"text":5}"#], &config);
    assert!(ok, "{stderr}");
    assert!(
        out.starts_with("decision: deny (refused before policy: "),
        "{out}"
    );
    // Offline, config alone decides, and says so.
    let (ok, out, stderr) = portcullis(&["explain", "--offline", "fx.no_such_tool"], &config);
    assert!(ok, "{stderr}");
    assert!(out.contains("catalog: not consulted (--offline)"), "{out}");
}

#[test]
fn explain_acts_as_the_local_identity_and_knows_scopes_and_taint() {
    let scratch = Scratch::new();
    let config = with_policy(&scratch, HIDE_DELETES_FROM_SALES);
    // No `--as`: `[identity.local]` (here the default user `local`, with no scopes). Over stdio
    // it cannot step up to the scope the delete needs, so the tool is not even listed.
    let (ok, out, stderr) = portcullis(&["explain", "fx.delete_file"], &config);
    assert!(ok, "{stderr}");
    assert!(
        out.starts_with("decision: deny (the tool is not listed"),
        "{out}"
    );
    assert!(out.contains("missing `files.write`"), "{out}");
    assert!(out.contains("acting as: local (portcullis:local)"), "{out}");
    // A read with a URL runs in a fresh session; after untrusted content it is asked first.
    let args = r#"{"text":"https://collect.example/?d=1"}"#;
    let (ok, out, stderr) = portcullis(&["explain", "fx.echo", args], &config);
    assert!(ok, "{stderr}");
    assert!(out.starts_with("decision: allow\n"), "{out}");
    let (ok, out, stderr) = portcullis(&["explain", "--tainted", "fx.echo", args], &config);
    assert!(ok, "{stderr}");
    assert!(out.starts_with("decision: allow with approval"), "{out}");
    assert!(out.contains("the taint rule"), "{out}");
    assert!(out.contains("  approval: required"), "{out}");
    assert!(out.contains("    https://collect.example/?d=1"), "{out}");
}

#[test]
fn serve_refuses_a_missing_or_short_request_state_key() {
    let scratch = Scratch::new();
    let config = scratch.config(
        Config::new()
            .state_key_env("PORTCULLIS_E2E_STATE_KEY")
            .upstream(Upstream::command("a", ["true"])),
    );
    for (value, expected) in [
        (
            None,
            "`PORTCULLIS_E2E_STATE_KEY` as the requestState key, but it is not set",
        ),
        (Some("too-short"), "must be at least 32 bytes"),
    ] {
        let mut command = Command::new(bin("portcullis"));
        command.args(["serve", "--config"]).arg(&config);
        command.env_remove("PORTCULLIS_E2E_STATE_KEY");
        if let Some(value) = value {
            command.env("PORTCULLIS_E2E_STATE_KEY", value);
        }
        let output = command
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run portcullis: {e}"));
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{stderr}");
        assert!(stderr.contains(expected), "{stderr}");
    }
}

#[test]
fn check_describes_credentials_and_needs_their_variables() {
    let scratch = Scratch::new();
    let mail = Upstream::url("mail", "https://mail.example/mcp").credential(
        Credential::oauth()
            .issuer("https://login.example")
            .client_id("portcullis")
            .client_secret_env("E2E_MAIL_SECRET")
            .scopes(&["mail.read"]),
    );
    let search = Upstream::url("search", "https://search.example/mcp")
        .credential(Credential::api_key("E2E_SEARCH_KEY").header("X-Api-Key"));
    let config = scratch.config(Config::new().upstream(mail).upstream(search));
    let run = |env: &[(&str, &str)]| {
        let output = Command::new(bin("portcullis"))
            .args(["check", "--config"])
            .arg(&config)
            .env_remove("PORTCULLIS_CREDENTIAL_KEY")
            .envs(env.iter().copied())
            .output()
            .unwrap_or_else(|e| panic!("cannot run portcullis check: {e}"));
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let (ok, _, stderr) = run(&[]);
    assert!(!ok);
    for variable in ["E2E_MAIL_SECRET", "E2E_SEARCH_KEY"] {
        assert!(
            stderr.contains(&format!("`{variable}` is not set")),
            "{stderr}"
        );
    }
    // A fresh store needs no key variable: it gets its own key file. An existing store
    // without either cannot be opened.
    assert!(!stderr.contains("PORTCULLIS_CREDENTIAL_KEY"), "{stderr}");
    let store = scratch.path().join("state/credentials.enc");
    std::fs::create_dir_all(scratch.path().join("state")).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(&store, "PCRED1").unwrap_or_else(|e| panic!("{e}"));
    let (ok, _, stderr) = run(&[]);
    assert!(!ok);
    assert!(
        stderr.contains("its key is neither in `PORTCULLIS_CREDENTIAL_KEY` nor in"),
        "{stderr}"
    );
    std::fs::remove_file(&store).unwrap_or_else(|e| panic!("{e}"));
    let secret = "a-secret-that-check-must-not-print";
    let (ok, stdout, stderr) = run(&[
        ("E2E_MAIL_SECRET", secret),
        ("E2E_SEARCH_KEY", secret),
        ("PORTCULLIS_CREDENTIAL_KEY", secret),
    ]);
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains(
            "credential: each user's own grant at `https://login.example` (client `portcullis`, secret from `E2E_MAIL_SECRET`; asks mail.read)"
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains(
            "credential: service authority: an API key from `E2E_SEARCH_KEY`, sent as `x-api-key`"
        ),
        "{stdout}"
    );
    assert!(!stdout.contains(secret) && !stderr.contains(secret));
}

/// What used to pass `check` and then fail at `serve`: each is now a problem `check` names
/// (or, for a root of `/`, a warning).
#[test]
fn check_finds_what_would_fail_at_serve() {
    let scratch = Scratch::new();
    let missing_root = scratch.path().join("no-such-dir");
    let script = scratch.path().join("servers/missing.js");
    // Test data: each upstream has one thing wrong that only the machine can tell.
    let config = scratch.config(format!(
        "[[upstream]]\nname = \"rootless\"\ncommand = [\"true\"]\nroots = [\"{}\"]\n\n\
         [[upstream]]\nname = \"scriptless\"\ncommand = [\"node\", \"--no-warnings\", \"{}\"]\n\n\
         [[upstream]]\nname = \"unfound\"\ncommand = [\"portcullis-no-such-program\"]\n\n\
         [[upstream]]\nname = \"offpath\"\ncommand = [\"cargo\"]\n",
        missing_root.display(),
        script.display(),
    ));
    let (ok, _, stderr) = check(&config);
    assert!(!ok);
    for expected in [
        format!(
            "upstream `rootless`: root `{}` does not exist or is not a directory",
            missing_root.display()
        ),
        format!(
            "upstream `scriptless`: `node` is to run the script `{}`, which does not exist",
            script.display()
        ),
        "upstream `unfound`: program `portcullis-no-such-program` was not found on the upstream's PATH `/bin:/usr/bin` (the default: it neither sets nor inherits `PATH`); install it, or write its absolute path in `command`".to_owned(),
    ] {
        assert!(stderr.contains(&expected), "missing `{expected}` in:\n{stderr}");
    }
    // Found on Portcullis's PATH but not on the upstream's own: the absolute path is offered.
    let cargo = std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .map(|dir| dir.join("cargo"))
        .find(|path| path.is_file())
        .unwrap_or_else(|| panic!("cargo is on the test's PATH"));
    if !["/bin", "/usr/bin"]
        .iter()
        .any(|dir| cargo.parent() == Some(std::path::Path::new(dir)))
    {
        assert!(
            stderr.contains(
                "upstream `offpath`: program `cargo` was not found on the upstream's PATH `/bin:/usr/bin`"
            ) && stderr.contains(&format!("it is `{}` on your PATH", cargo.display())),
            "{stderr}"
        );
    }

    // The whole disk as a root: a warning, and refused, since it holds Portcullis's own state.
    let scratch = Scratch::new();
    let config = scratch
        .config("[[upstream]]\nname = \"everywhere\"\ncommand = [\"true\"]\nroots = [\"/\"]\n");
    let (ok, stdout, stderr) = check(&config);
    assert!(!ok, "{stdout}\n{stderr}");
    assert!(
        stderr.contains("warning")
            && stderr.contains("upstream `everywhere`: root `/` grants it every file")
            && stderr.contains("upstream `everywhere`: `/` holds Portcullis's state directory"),
        "{stderr}"
    );

    // An untrusted upstream that taints nothing: allowed, with a warning; a trusted one not.
    let config = scratch.config(
        "[[upstream]]\nname = \"web\"\ncommand = [\"true\"]\ntaint = \"none\"\n\n[[upstream]]\nname = \"docs\"\ncommand = [\"true\"]\ntrusted = true\n",
    );
    let (ok, stdout, stderr) = check(&config);
    assert!(ok, "{stdout}\n{stderr}");
    assert!(
        stderr.contains("upstream `web`: it is not trusted, yet `taint = \"none\"`"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("upstream `docs`: it is not trusted"),
        "{stderr}"
    );

    // `[upstream]` for `[[upstream]]`, said plainly.
    let config = scratch.config("[upstream]\nname = \"single\"\ncommand = [\"true\"]\n");
    let (ok, _, stderr) = check(&config);
    assert!(!ok);
    assert!(
        stderr.contains("`[upstream]` is a single table") && stderr.contains("`[[upstream]]`"),
        "{stderr}"
    );
    assert!(!stderr.contains("invalid type"), "{stderr}");
}

/// `portcullis doctor` in a home of its own, with `config`; whether it passed, and its lines.
fn doctor(home: &std::path::Path, config: &std::path::Path) -> (bool, String) {
    let output = Command::new(bin("portcullis"))
        .args(["doctor", "--config"])
        .arg(config)
        .env("HOME", home)
        .output()
        .unwrap_or_else(|e| panic!("cannot run portcullis: {e}"));
    let lines: String = String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter(|line| {
            ["OK  ", "WARN", "FAIL"]
                .iter()
                .any(|tag| line.starts_with(tag))
        })
        .map(|line| format!("{line}\n"))
        .collect();
    (output.status.success(), lines)
}

#[test]
fn doctor_says_what_the_machine_gives_and_what_to_fix() {
    use std::os::unix::fs::PermissionsExt as _;
    let scratch = Scratch::new();
    let home = scratch.sub("home");
    let config =
        scratch.config(Config::relay().upstream(Upstream::fixture("fx", &scratch.sub("work"))));
    // A client that starts Portcullis, and one that does not.
    let claude = home.join(".config/Claude");
    std::fs::create_dir_all(&claude).unwrap_or_else(|e| panic!("{e}"));
    let entry = serde_json::json!({"mcpServers": {"portcullis": {
        "command": bin("portcullis").display().to_string(),
        "args": ["serve", "--config", config.display().to_string()],
    }}});
    std::fs::write(claude.join("claude_desktop_config.json"), entry.to_string())
        .unwrap_or_else(|e| panic!("{e}"));
    std::fs::create_dir_all(home.join(".cursor")).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(
        home.join(".cursor/mcp.json"),
        r#"{"mcpServers": {"files": {"command": "npx", "args": ["-y", "@modelcontextprotocol/server-filesystem", "/tmp"]}}}"#,
    )
    .unwrap_or_else(|e| panic!("{e}"));

    let (passed, lines) = doctor(&home, &config);
    assert!(passed, "{lines}");
    for expected in [
        "OK    kernel: landlock ABI",
        "OK    kernel: seccomp filters",
        "claude_desktop_config.json` starts Portcullis",
        "WARN  cursor: ",
        "does not start Portcullis; fix: `portcullis import --from cursor --write`, then `portcullis install --client cursor --replace`",
        "checks, and every upstream started",
    ] {
        assert!(
            lines.contains(expected),
            "missing `{expected}` in:\n{lines}"
        );
    }
    assert!(!lines.contains("FAIL"), "{lines}");

    // State others may write to fails, saying how to fix it.
    let state = scratch.path().join("state");
    std::fs::create_dir_all(&state).unwrap_or_else(|e| panic!("{e}"));
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o777))
        .unwrap_or_else(|e| panic!("{e}"));
    let (passed, lines) = doctor(&home, &config);
    assert!(!passed, "{lines}");
    assert!(
        lines.contains(&format!(
            "FAIL  state `{}` is writable by others (mode 777)",
            state.display()
        )),
        "{lines}"
    );
    assert!(lines.contains("fix: `chmod go-w"), "{lines}");
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o755))
        .unwrap_or_else(|e| panic!("{e}"));
    // A configuration that does not check fails too.
    let broken = scratch.path().join("broken.toml");
    std::fs::write(&broken, "[[upstream]]\nname = \"x\"\n").unwrap_or_else(|e| panic!("{e}"));
    let (passed, lines) = doctor(&home, &broken);
    assert!(!passed, "{lines}");
    assert!(lines.contains("FAIL  `"), "{lines}");
}

#[test]
fn no_upstream_is_granted_portcullis_state() {
    let scratch = Scratch::new();
    let state = scratch.sub("state");
    let work = scratch.sub("work");
    let link = scratch.path().join("through-a-link");
    std::os::unix::fs::symlink(scratch.path(), &link).unwrap_or_else(|e| panic!("{e}"));
    // The scratch directory holds `state/` (the evidence, the pending approvals, the
    // passkeys): granting it, as a root, a per-identity root, a read-only path, or through a
    // link, would let the upstream approve its own calls.
    for grant in [
        Upstream::fixture("fx", &work).roots(&[scratch.path()]),
        Upstream::fixture("fx", &work).roots(&[&link]),
        Upstream::fixture("fx", &work).roots(&[&state]),
        Upstream::fixture("fx", &work).read_only(&[&scratch.path().display().to_string()]),
    ] {
        let config = scratch.config(Config::new().upstream(grant));
        let (ok, _, stderr) = check(&config);
        assert!(!ok, "{stderr}");
        assert!(
            stderr.contains("holds Portcullis's state directory"),
            "{stderr}"
        );
        let (served, _, said) = portcullis(&["serve"], &config);
        assert!(!served, "{said}");
        assert!(
            said.contains("holds Portcullis's state directory"),
            "{said}"
        );
    }
    // A root beside the state directory is fine.
    let config =
        scratch.config(Config::new().upstream(Upstream::fixture("fx", &work).roots(&[&work])));
    let (ok, _, stderr) = check(&config);
    assert!(ok, "{stderr}");
}
