//! Delegated credentials end to end: a real OpenID provider (npm `oidc-provider`, through
//! `tests/node/oidc.mjs`) is the authorization server of an HTTP MCP upstream of ours (the
//! fixture with `--auth-issuer`), which validates each token (issuer, audience = itself,
//! scopes) and records what it received. The person signs in headless (`tests/node/browser.mjs`,
//! driven by the official TypeScript client when Portcullis sends it a URL elicitation).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::support::{
    Auth, Config, Credential, OpenIdProvider, Portcullis, Scratch, Target, Tool, Upstream, bin,
    free_port, node_module, repo_root, result_text, ts_client, wait_until,
};

/// The store's key in every test (the grep test looks for it in every output).
pub(crate) const STORE_KEY: &str = "credential-store-key-for-the-e2e-tests-0123456789";

/// The fixture upstream, validating tokens of `issuer`; killed on drop.
pub(crate) struct Fixture {
    child: Child,
    url: String,
    record: PathBuf,
    scratch: PathBuf,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Fixture {
    pub(crate) fn start(port: u16, issuer: &str, scratch: &Path) -> Self {
        Self::start_for(port, issuer, scratch, "auto")
    }

    /// The upstream validating tokens for `resource` (`auto`: its own URL); `initialize` and
    /// the lists need no token.
    fn start_for(port: u16, issuer: &str, scratch: &Path, resource: &str) -> Self {
        Self::launch(port, issuer, scratch, resource, true)
    }

    /// The upstream refusing every request without a token, `initialize` and lists included,
    /// as most hosted MCP servers do.
    fn start_private(port: u16, issuer: &str, scratch: &Path) -> Self {
        Self::launch(port, issuer, scratch, "auto", false)
    }

    fn launch(port: u16, issuer: &str, scratch: &Path, resource: &str, public: bool) -> Self {
        let record = scratch.join("received.jsonl");
        let work = scratch.join("mail");
        let child = Command::new(bin("portcullis-fixture"))
            .arg("--scratch")
            .arg(&work)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--auth-issuer", issuer, "--auth-resource", resource])
            .args(["--auth-tool-scope", "send_message=mail.send"])
            .arg("--auth-record")
            .arg(&record)
            .args(public.then_some("--public-lists"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start the fixture: {e}"));
        let url = format!("http://127.0.0.1:{port}/mcp");
        let ready = wait_until(Duration::from_secs(30), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        assert!(ready, "the fixture upstream did not listen on {url}");
        Self {
            child,
            url,
            record,
            scratch: work,
        }
    }

    /// What the upstream received: one JSON object per authenticated request.
    fn received(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.record)
            .unwrap_or_default()
            .lines()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect()
    }

    pub(crate) fn calls(&self) -> Vec<Value> {
        self.received()
            .into_iter()
            .filter(|r| r["method"] == "tools/call" && r["outcome"] == "accepted")
            .collect()
    }
}

/// A provider in upstream mode, the upstream, and Portcullis (HTTP, so its log is kept).
struct Delegation {
    provider: OpenIdProvider,
    upstream: Fixture,
    portcullis: Portcullis,
    /// Portcullis's config, and the file it was written to.
    settings: Config,
    config: PathBuf,
    scratch: Scratch,
    callback: u16,
}

pub(crate) struct Options {
    /// Access-token lifetime at the upstream.
    token_ttl: &'static str,
    /// The rules of `mail`'s tools.
    tools: Vec<(&'static str, Tool)>,
    /// Portcullis as a resource server of the same provider (two users with their tokens).
    authenticated: bool,
    /// `mail`'s credential; `delegation` adds the provider, Portcullis's client there and the
    /// scope every grant asks for.
    credential: Credential,
    /// `mail` runs per user (`instance = "per_user"`) and refuses every request without a
    /// token, `initialize` and lists included.
    per_user: bool,
}

pub(crate) fn defaults() -> Options {
    Options {
        token_ttl: "300",
        tools: vec![("echo", Tool::read()), ("send_message", Tool::send())],
        authenticated: false,
        credential: Credential::oauth(),
        per_user: false,
    }
}

/// `mail`'s tools when its send needs the `mail.send` scope at the upstream.
fn scoped_send() -> Vec<(&'static str, Tool)> {
    let send = Tool::send().upstream_scopes(&["mail.send"]);
    vec![("echo", Tool::read()), ("send_message", send)]
}

/// Portcullis's config: `mail` at `upstream_url` with the credential of `options`, the
/// credential store, its callback on `callback`, and bearer tokens when `authenticated`.
pub(crate) fn settings(
    options: Options,
    provider: &OpenIdProvider,
    upstream_url: &str,
    resource: &str,
    callback: u16,
) -> Config {
    let credential = options
        .credential
        .issuer(&provider.issuer)
        .client_id("portcullis")
        .client_secret_env("E2E_CLIENT_SECRET")
        .scopes(&["mail.read"])
        .loopback();
    let mail = options.tools.into_iter().fold(
        Upstream::url("mail", upstream_url).trusted(),
        |mail, (name, rules)| mail.tool(name, rules),
    );
    let mail = if options.per_user {
        mail.per_user()
    } else {
        mail
    };
    let settings = Config::new()
        .evidence("evidence.jsonl")
        .credential_store("credentials.enc", "E2E_STORE_KEY")
        .credential_callback(&format!("127.0.0.1:{callback}"))
        .upstream(mail.credential(credential));
    if options.authenticated {
        settings.http_auth(Auth::new(&provider.issuer, resource).leeway_secs(0))
    } else {
        settings
    }
}

fn delegation(options: Options) -> Delegation {
    let scratch = Scratch::new();
    let upstream_port = free_port();
    let portcullis_port = free_port();
    let callback = free_port();
    let upstream_url = format!("http://127.0.0.1:{upstream_port}/mcp");
    let resource = format!("http://127.0.0.1:{portcullis_port}/mcp");
    let issued = scratch.path().join("issued-tokens.txt");
    let provider = OpenIdProvider::start_with(
        &resource,
        &[
            "--upstream-resource",
            &upstream_url,
            "--upstream-token-ttl",
            options.token_ttl,
            "--issued-tokens",
            &issued.display().to_string(),
        ],
    );
    let upstream = if options.per_user {
        Fixture::start_private(upstream_port, &provider.issuer, scratch.path())
    } else {
        Fixture::start(upstream_port, &provider.issuer, scratch.path())
    };
    let settings = settings(options, &provider, &upstream_url, &resource, callback);
    let config = scratch.config(&settings);
    let secret = provider.ready["portcullis_client_secret"]
        .as_str()
        .unwrap_or_else(|| panic!("no client secret: {}", provider.ready))
        .to_owned();
    let portcullis = Portcullis::http_on(
        &config,
        &format!("127.0.0.1:{portcullis_port}"),
        &[("E2E_STORE_KEY", STORE_KEY), ("E2E_CLIENT_SECRET", &secret)],
    );
    Delegation {
        provider,
        upstream,
        portcullis,
        settings,
        config,
        scratch,
        callback,
    }
}

impl Delegation {
    fn target(&self) -> Target<'_> {
        Target::Http(&self.portcullis.url)
    }

    /// One client session calling `tool` `calls` times; `account` signs in when asked.
    fn call(&self, tool: &str, args: &str, extra: &[&str]) -> Value {
        let mut argv = vec!["--scenario", "call", "--tool", tool, "--args", args];
        argv.extend_from_slice(extra);
        ts_client(&self.target(), &argv)
    }

    /// The environment Portcullis commands need.
    fn env(&self) -> Vec<(&'static str, String)> {
        let secret = self.provider.ready["portcullis_client_secret"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        vec![
            ("E2E_STORE_KEY", STORE_KEY.to_owned()),
            ("E2E_CLIENT_SECRET", secret),
        ]
    }

    /// `portcullis login mail` from a terminal as the local identity, the link followed by
    /// alice's browser; returns what it said. `login` needs the callback address, which
    /// `serve` holds (the person stops serve, or uses the client): here a second config on
    /// another callback port shares the store.
    fn login(&self, extra: &[&str]) -> String {
        let env = self.env();
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        terminal_login(&self.settings, self.scratch.path(), &env, extra)
    }

    /// A first call that sends `account` through the sign-in, and must then run.
    fn sign_in(&self, account: &str) -> Value {
        let first = self.call(
            "mail.echo",
            r#"{"text":"signed in"}"#,
            &["--follow-url", account],
        );
        assert_eq!(texts(&first), vec!["signed in"], "{first}");
        first
    }

    fn listed(&self) -> Vec<String> {
        crate::support::names(&ts_client(&self.target(), &["--scenario", "list"])["tools"])
    }

    /// Every secret of the run: the store's key, Portcullis's client secret, the users'
    /// inbound tokens, and every token the provider issued (to Portcullis above all).
    fn secrets(&self) -> Vec<String> {
        let mut secrets = vec![STORE_KEY.to_owned()];
        if let Some(value) = self.provider.ready["portcullis_client_secret"].as_str() {
            secrets.push(value.to_owned());
        }
        for user in ["alice", "bob"] {
            secrets.push(self.provider.token(user));
        }
        let issued = std::fs::read_to_string(self.scratch.path().join("issued-tokens.txt"))
            .unwrap_or_default();
        secrets.extend(issued.lines().filter(|l| !l.is_empty()).map(str::to_owned));
        secrets
    }

    /// Looks for every secret of the run in every byte Portcullis wrote: its log (stdout is
    /// not used in HTTP mode, stderr is kept), the evidence log, the credential store (it is
    /// encrypted), and what the clients received (`observed`).
    fn assert_no_secret_written(&self, observed: &[&Value]) {
        let read = |name: &str| {
            std::fs::read(self.scratch.path().join(name))
                .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
                .unwrap_or_default()
        };
        let mut outputs = vec![
            ("portcullis log".to_owned(), self.portcullis.log()),
            ("evidence".to_owned(), read("evidence.jsonl")),
            ("credential store".to_owned(), read("credentials.enc")),
        ];
        for (n, value) in observed.iter().enumerate() {
            outputs.push((format!("client output {n}"), value.to_string()));
        }
        let secrets = self.secrets();
        // The store key, the client secret, two inbound tokens: then what was issued to us.
        assert!(
            secrets.len() > 4,
            "the provider recorded no tokens it issued"
        );
        for (name, text) in &outputs {
            assert!(!text.contains(JWT_PREFIX), "a token in the {name}: {text}");
            for secret in &secrets {
                assert!(!text.contains(secret.as_str()), "a secret in the {name}");
            }
        }
    }
}

/// `portcullis login mail` from a terminal as the local identity of `settings`, on a callback
/// port of its own (config written into `dir`), with `env`; alice's browser follows the link.
/// What it said.
pub(crate) fn terminal_login(
    settings: &Config,
    dir: &Path,
    env: &[(&str, &str)],
    extra: &[&str],
) -> String {
    let other = free_port();
    let login_config = dir.join("login.toml");
    let settings = settings
        .clone()
        .credential_callback(&format!("127.0.0.1:{other}"));
    std::fs::write(&login_config, settings.to_string()).unwrap_or_else(|e| panic!("{e}"));
    let mut login = Command::new(bin("portcullis"))
        .args(["login", "--config"])
        .arg(&login_config)
        .arg("mail")
        .args(extra)
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start login: {e}"));
    let mut link = String::new();
    {
        use std::io::BufRead;
        let stdout = login.stdout.take().unwrap_or_else(|| panic!("no stdout"));
        let _ = std::io::BufReader::new(stdout).read_line(&mut link);
    }
    assert!(
        link.starts_with(&format!("http://127.0.0.1:{other}/oauth/start/")),
        "{link}"
    );
    let browser = Command::new(node_module("node/bin/node"))
        .arg(repo_root().join("tests/node/browser.mjs"))
        .arg(link.trim())
        .args(["--account", "alice"])
        .output()
        .unwrap_or_else(|e| panic!("browser: {e}"));
    assert!(browser.status.success(), "{browser:?}");
    let done = login.wait_with_output().unwrap_or_else(|e| panic!("{e}"));
    let said = String::from_utf8_lossy(&done.stderr).into_owned();
    assert!(done.status.success(), "{said}");
    said
}

fn texts(observed: &Value) -> Vec<String> {
    observed["results"]
        .as_array()
        .map(|results| results.iter().map(result_text).collect())
        .unwrap_or_default()
}

fn is_error(result: &Value) -> bool {
    result["isError"] == Value::Bool(true) || result.get("error").is_some()
}

/// The parts of a JWT that identify it: a delegated token's header and payload. A byte
/// string holding one would hold these.
const JWT_PREFIX: &str = "eyJhbGciOi";

#[test]
fn the_first_call_sends_the_person_to_sign_in_and_the_upstream_gets_their_own_token() {
    let setup = delegation(defaults());
    let observed = setup.call(
        "mail.echo",
        r#"{"text":"hello"}"#,
        &["--follow-url", "alice", "--calls", "2"],
    );
    // One sign-in, through a URL elicitation naming the upstream, then both calls ran.
    let elicitations = observed["elicitations"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(elicitations.len(), 1, "{observed}");
    assert_eq!(elicitations[0]["mode"], "url", "{observed}");
    let message = elicitations[0]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("`mail`") && message.contains("mail.read"),
        "{message}"
    );
    let link = elicitations[0]["url"].as_str().unwrap_or_default();
    assert!(
        link.starts_with(&format!("http://127.0.0.1:{}/oauth/start/", setup.callback)),
        "the link is Portcullis's own consent page: {link}"
    );
    let browser = &observed["browsers"][0];
    assert_eq!(
        browser["final_url"],
        format!("http://127.0.0.1:{}/oauth/callback", setup.callback),
        "{browser}"
    );
    assert_eq!(browser["status"], 200, "{browser}");
    assert_eq!(texts(&observed), vec!["hello", "hello"], "{observed}");

    // The upstream got alice's token, for itself, with the scopes asked for; the same token
    // both times (no second sign-in, no refresh needed).
    let calls = setup.upstream.calls();
    assert_eq!(calls.len(), 2, "{calls:?}");
    for call in &calls {
        assert_eq!(call["sub"], "alice", "{call}");
        assert_eq!(call["tool"], "echo", "{call}");
        assert!(
            call["aud"]
                .as_array()
                .is_some_and(|aud| aud.iter().any(|a| a == &setup.upstream.url)),
            "{call}"
        );
        assert!(
            call["scope"]
                .as_array()
                .is_some_and(|s| s.iter().any(|s| s == "mail.read")),
            "{call}"
        );
        assert_eq!(call["client_id"], "portcullis", "{call}");
    }
    assert_eq!(calls[0]["token_sha256"], calls[1]["token_sha256"]);

    // The evidence names the credential by fingerprint and scopes; no output holds a token
    // or a secret.
    let evidence =
        std::fs::read_to_string(setup.scratch.path().join("evidence.jsonl")).unwrap_or_default();
    assert!(evidence.contains("delegated sha256:"), "{evidence}");
    assert!(evidence.contains("scopes mail.read"), "{evidence}");
    let store = std::fs::read(setup.scratch.path().join("credentials.enc"))
        .unwrap_or_else(|e| panic!("no credential store: {e}"));
    let mode = std::fs::metadata(setup.scratch.path().join("credentials.enc"))
        .map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o777)
        .unwrap_or_default();
    assert_eq!(mode, 0o600);
    assert!(!store.is_empty());
    setup.assert_no_secret_written(&[&observed]);
}

#[test]
fn two_users_each_reach_the_upstream_with_their_own_token_never_the_clients() {
    let setup = delegation(Options {
        authenticated: true,
        ..defaults()
    });
    let mut inbound = Vec::new();
    for user in ["alice", "bob"] {
        let token = setup.provider.token(user);
        let header = format!("Authorization: Bearer {token}");
        let observed = setup.call(
            "mail.echo",
            &format!(r#"{{"text":"from {user}"}}"#),
            &["--follow-url", user, "--header", &header],
        );
        assert_eq!(texts(&observed), vec![format!("from {user}")], "{observed}");
        inbound.push(sha256_hex(&token));
    }
    let calls = setup.upstream.calls();
    assert_eq!(calls.len(), 2, "{calls:?}");
    assert_eq!(calls[0]["sub"], "alice");
    assert_eq!(calls[1]["sub"], "bob");
    assert_ne!(calls[0]["token_sha256"], calls[1]["token_sha256"]);
    for call in &calls {
        assert!(
            !inbound
                .iter()
                .any(|hash| call["token_sha256"] == hash.as_str()),
            "a client's own token reached the upstream: {call}"
        );
    }
    // Bob's call after alice's: still his own token (a grant is per user).
    let token = setup.provider.token("bob");
    let again = setup.call(
        "mail.echo",
        r#"{"text":"bob again"}"#,
        &["--header", &format!("Authorization: Bearer {token}")],
    );
    assert_eq!(texts(&again), vec!["bob again"], "{again}");
    let calls = setup.upstream.calls();
    assert_eq!(calls[2]["sub"], "bob");
    assert_eq!(calls[2]["token_sha256"], calls[1]["token_sha256"]);
}

fn sha256_hex(text: &str) -> String {
    let output = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            if let Some(mut stdin) = child.stdin.take() {
                stdin.write_all(text.as_bytes())?;
            }
            child.wait_with_output()
        })
        .unwrap_or_else(|e| panic!("sha256sum: {e}"));
    String::from_utf8_lossy(&output.stdout)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_owned()
}

#[test]
fn a_denied_or_impossible_sign_in_runs_nothing() {
    let setup = delegation(defaults());
    // Denied on Portcullis's consent page.
    let denied = setup.call(
        "mail.echo",
        r#"{"text":"x"}"#,
        &["--follow-url", "alice", "--deny-url"],
    );
    let text = texts(&denied).join("\n");
    assert!(text.contains("you denied"), "{denied}");
    // A client that cannot open links is told how else to authorise.
    let unable = setup.call("mail.echo", r#"{"text":"x"}"#, &[]);
    let text = texts(&unable).join("\n");
    assert!(
        text.contains("portcullis login mail") && text.contains("did not run"),
        "{unable}"
    );
    assert!(
        setup.upstream.calls().is_empty(),
        "{:?}",
        setup.upstream.received()
    );
    // Both are in the evidence as calls that did not run, with the reason.
    let evidence =
        std::fs::read_to_string(setup.scratch.path().join("evidence.jsonl")).unwrap_or_default();
    let not_run: Vec<String> = evidence
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .map(|line| line["record"]["event"].clone())
        .filter(|event| event["kind"] == "call_outcome" && event["outcome"]["status"] == "not_run")
        .map(|event| {
            event["outcome"]["reason"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    assert_eq!(not_run.len(), 2, "{evidence}");
    assert!(not_run[0].contains("you denied"), "{not_run:?}");
    assert!(not_run[1].contains("portcullis login mail"), "{not_run:?}");
}

#[test]
fn an_expiring_token_is_refreshed_and_a_revoked_grant_asks_again() {
    // Tokens live 4 s: each call after the first needs a refresh. (2 s was too short on a
    // loaded machine: a refreshed token could expire between the refresh and the upstream.)
    let setup = delegation(Options {
        token_ttl: "4",
        ..defaults()
    });
    let first = setup.sign_in("alice");
    std::thread::sleep(Duration::from_secs(5));
    let second = setup.call("mail.echo", r#"{"text":"two"}"#, &[]);
    assert_eq!(texts(&second), vec!["two"], "{second}");
    let calls = setup.upstream.calls();
    assert_eq!(calls.len(), 2, "{calls:?}");
    assert_ne!(
        calls[0]["token_sha256"], calls[1]["token_sha256"],
        "the second call needed a refreshed token"
    );
    assert!(setup.portcullis.log().contains("delegated grant refreshed"));

    // The person revokes the app at the provider: the refresh fails, the call does not run,
    // and the message says to re-authorise; the next call asks for a sign-in again.
    let revoke = format!(
        "{}?account=alice",
        setup.provider.ready["revoke_grants_url"]
            .as_str()
            .unwrap_or_default()
    );
    let status = Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-X",
            "POST",
            &revoke,
        ])
        .output()
        .unwrap_or_else(|e| panic!("curl: {e}"));
    assert_eq!(String::from_utf8_lossy(&status.stdout), "200");
    std::thread::sleep(Duration::from_secs(5));
    let refused = setup.call("mail.echo", r#"{"text":"three"}"#, &[]);
    let text = texts(&refused).join("\n");
    assert!(text.contains("re-authorise `mail`"), "{refused}");
    let asked = setup.call(
        "mail.echo",
        r#"{"text":"four"}"#,
        &["--follow-url", "alice"],
    );
    assert_eq!(texts(&asked), vec!["four"], "{asked}");
    assert_eq!(asked["elicitations"].as_array().map(Vec::len), Some(1));
    let calls = setup.upstream.calls();
    assert_eq!(
        calls.len(),
        3,
        "`three` must not have reached the upstream: {calls:?}"
    );
    // Rotated refresh tokens included: none of them in anything Portcullis wrote.
    setup.assert_no_secret_written(&[&first, &second, &refused, &asked]);
}

#[test]
fn a_scope_the_upstream_demands_is_asked_for_before_the_next_call() {
    let setup = delegation(defaults());
    let approve = r#"{"approve":true}"#;
    let args = r#"{"to":"bob@example.com","subject":"s","body":"b"}"#;
    // The grant has mail.read only: the upstream answers 403 insufficient_scope, and
    // nothing is sent.
    let first = setup.call(
        "mail.send_message",
        args,
        &["--follow-url", "alice", "--form", "--content", approve],
    );
    let text = texts(&first).join("\n");
    assert!(text.contains("lacks mail.send"), "{first}");
    let outbox = setup.upstream.scratch.join("outbox.jsonl");
    assert!(!outbox.exists());
    // The next call asks for mail.send as well (incremental), then the approval, then runs.
    let second = setup.call(
        "mail.send_message",
        args,
        &["--follow-url", "alice", "--form", "--content", approve],
    );
    let elicitations = second["elicitations"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(
        elicitations.len(),
        2,
        "a sign-in, then the approval: {second}"
    );
    assert_eq!(elicitations[0]["mode"], "url");
    let message = elicitations[0]["message"].as_str().unwrap_or_default();
    assert!(message.contains("mail.read mail.send"), "{message}");
    assert_eq!(elicitations[1]["mode"], "form");
    assert!(!is_error(&second["results"][0]), "{second}");
    assert!(outbox.exists(), "the approved send ran");
    let calls = setup.upstream.calls();
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert!(
        calls[0]["scope"]
            .as_array()
            .is_some_and(|s| s.iter().any(|s| s == "mail.send")),
        "{calls:?}"
    );
}

#[test]
fn a_per_user_upstream_that_refuses_anonymous_lists_is_reached_with_the_users_own_token() {
    let setup = delegation(Options {
        per_user: true,
        ..defaults()
    });
    // Nobody authorised it yet: none of `mail`'s tools is listed (only Portcullis's own
    // sign-in tool), and Portcullis sent it nothing (a request without a token would have
    // been refused, and recorded as such).
    assert_eq!(setup.listed(), vec!["mail.portcullis_sign_in".to_owned()]);
    let anonymous = raw_initialize(&setup.upstream.url);
    assert_eq!(
        anonymous, 401,
        "the fixture must refuse an initialize without a token"
    );
    assert!(
        setup.upstream.received().is_empty(),
        "{:?}",
        setup.upstream.received()
    );

    // Once the person authorised it, their own instance initializes and lists with their
    // token, and calls run.
    let said = setup.login(&[]);
    assert!(said.contains("authorised `mail`"), "{said}");
    let listed = setup.listed();
    assert!(listed.contains(&"mail.echo".to_owned()), "{listed:?}");
    assert!(
        !listed.contains(&"mail.portcullis_sign_in".to_owned()),
        "{listed:?}"
    );
    let call = setup.call("mail.echo", r#"{"text":"per user"}"#, &[]);
    assert_eq!(texts(&call), vec!["per user"], "{call}");
    let received = setup.upstream.received();
    let accepted = |method: &str| {
        received
            .iter()
            .any(|r| r["method"] == method && r["outcome"] == "accepted" && r["sub"] == "alice")
    };
    // The handshake is `server/discover` in the stateless era, `initialize` before it.
    assert!(
        accepted("server/discover") || accepted("initialize"),
        "no handshake with alice's token: {received:?}"
    );
    for method in ["tools/list", "tools/call"] {
        assert!(
            accepted(method),
            "no {method} with alice's token: {received:?}"
        );
    }
    setup.assert_no_secret_written(&[&call]);
}

#[test]
fn a_per_user_upstream_is_signed_in_to_from_the_client_in_either_era() {
    let setup = delegation(Options {
        per_user: true,
        ..defaults()
    });
    // Before: Portcullis's own sign-in tool in place of the upstream's catalog.
    let before = setup.listed();
    assert_eq!(
        before,
        vec!["mail.portcullis_sign_in".to_owned()],
        "{before:?}"
    );

    // A stateless client is sent to sign in through an input-required result; its retry
    // answers, and the tool says so. Nothing reached the upstream but the new instance's own
    // requests, each with the user's token.
    let observed = crate::support::py_client(
        &setup.target(),
        &[
            "--scenario",
            "call",
            "--mode",
            "2026-07-28",
            "--tool",
            "mail.portcullis_sign_in",
            "--args",
            "{}",
            "--follow-url",
            "alice",
        ],
    );
    assert_eq!(
        observed["elicitations"][0]["via"], "input_required",
        "{observed}"
    );
    assert!(
        result_text(&observed["result"]).contains("signed in"),
        "{observed}"
    );
    let after = setup.listed();
    assert!(after.contains(&"mail.echo".to_owned()), "{after:?}");
    assert!(
        !after.contains(&"mail.portcullis_sign_in".to_owned()),
        "{after:?}"
    );
    let call = setup.call("mail.echo", r#"{"text":"signed in from the client"}"#, &[]);
    assert_eq!(texts(&call), vec!["signed in from the client"], "{call}");
    let received = setup.upstream.received();
    assert!(
        received.iter().all(|r| r["outcome"] == "accepted"
            && r["sub"] == "alice"
            && r["tool"] != "portcullis_sign_in"),
        "{received:?}"
    );
    // The sign-in is in the evidence, as a call that was never sent upstream.
    let evidence =
        std::fs::read_to_string(setup.scratch.path().join("evidence.jsonl")).unwrap_or_default();
    assert!(
        evidence.contains("portcullis's own sign-in tool, never sent upstream: signed in"),
        "{evidence}"
    );
    setup.assert_no_secret_written(&[&observed, &call]);
}

#[test]
fn a_session_client_signs_in_to_a_per_user_upstream_with_a_url_elicitation() {
    let setup = delegation(Options {
        per_user: true,
        ..defaults()
    });
    let signed = setup.call("mail.portcullis_sign_in", "{}", &["--follow-url", "alice"]);
    assert!(texts(&signed).join("\n").contains("signed in"), "{signed}");
    assert!(setup.listed().contains(&"mail.echo".to_owned()));
    // Without a way to open links, the person is told how else to authorise it.
    let other = delegation(Options {
        per_user: true,
        ..defaults()
    });
    let refused = other.call("mail.portcullis_sign_in", "{}", &[]);
    assert!(
        texts(&refused).join("\n").contains("portcullis login mail"),
        "{refused}"
    );
    assert_eq!(other.listed(), vec!["mail.portcullis_sign_in".to_owned()]);
}

#[test]
fn two_users_each_sign_in_to_their_own_instance_of_a_per_user_upstream() {
    let setup = delegation(Options {
        per_user: true,
        authenticated: true,
        ..defaults()
    });
    let header = |user: &str| format!("Authorization: Bearer {}", setup.provider.token(user));
    let listed = |user: &str| {
        crate::support::names(
            &ts_client(
                &setup.target(),
                &["--scenario", "list", "--header", &header(user)],
            )["tools"],
        )
    };
    let signed = setup.call(
        "mail.portcullis_sign_in",
        "{}",
        &["--follow-url", "alice", "--header", &header("alice")],
    );
    assert!(texts(&signed).join("\n").contains("signed in"), "{signed}");
    // Alice's grant is hers: bob still sees only the sign-in tool, and a call of one of
    // alice's tools does not run for him; it says how he may authorise it.
    assert!(listed("alice").contains(&"mail.echo".to_owned()));
    assert_eq!(listed("bob"), vec!["mail.portcullis_sign_in".to_owned()]);
    let refused = setup.call(
        "mail.echo",
        r#"{"text":"x"}"#,
        &["--header", &header("bob")],
    );
    let said = texts(&refused).join("\n");
    assert!(
        said.contains("call its `portcullis_sign_in` tool") && !said.contains("restarted"),
        "{refused}"
    );
    let signed = setup.call(
        "mail.portcullis_sign_in",
        "{}",
        &["--follow-url", "bob", "--header", &header("bob")],
    );
    assert!(texts(&signed).join("\n").contains("signed in"), "{signed}");
    for user in ["alice", "bob"] {
        let echoed = setup.call(
            "mail.echo",
            &format!(r#"{{"text":"from {user}"}}"#),
            &["--header", &header(user)],
        );
        assert_eq!(texts(&echoed), vec![format!("from {user}")], "{echoed}");
    }
    // Each instance listed and called with its own user's token, never the other's.
    let received = setup.upstream.received();
    for user in ["alice", "bob"] {
        for method in ["tools/list", "tools/call"] {
            assert!(
                received
                    .iter()
                    .any(|r| r["method"] == method && r["sub"] == user),
                "no {method} as {user}: {received:?}"
            );
        }
    }
    let tokens = |user: &str| -> std::collections::BTreeSet<String> {
        received
            .iter()
            .filter(|r| r["sub"] == user)
            .filter_map(|r| r["token_sha256"].as_str().map(str::to_owned))
            .collect()
    };
    assert!(tokens("alice").is_disjoint(&tokens("bob")));
}

/// The status of an `initialize` POSTed to `url` without a token.
fn raw_initialize(url: &str) -> u16 {
    let port: u16 = url
        .trim_end_matches("/mcp")
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no port in {url}"));
    let body = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}"#;
    crate::support::raw_http_status(
        port,
        &format!(
            "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ),
    )
}

#[test]
fn login_and_logout_from_a_terminal() {
    let setup = delegation(defaults());
    let said = setup.login(&[]);
    assert!(said.contains("authorised `mail`"), "{said}");
    let env = setup.env();

    // The running serve uses the grant login stored: no sign-in asked.
    let call = setup.call("mail.echo", r#"{"text":"after login"}"#, &[]);
    assert_eq!(texts(&call), vec!["after login"], "{call}");

    // Logout revokes at the provider and deletes: the next call must ask again.
    let logout = Command::new(bin("portcullis"))
        .args(["logout", "--config"])
        .arg(&setup.config)
        .arg("mail")
        .envs(env.iter().map(|(k, v)| (k, v.as_str())))
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    let said = String::from_utf8_lossy(&logout.stderr);
    assert!(logout.status.success(), "{said}");
    assert!(
        said.contains("revoked at the authorization server"),
        "{said}"
    );
    let after = setup.call("mail.echo", r#"{"text":"x"}"#, &[]);
    assert!(
        texts(&after).join("\n").contains("portcullis login mail"),
        "{after}"
    );
    assert_eq!(setup.upstream.calls().len(), 1);
}

#[test]
fn a_stateless_client_is_sent_to_sign_in_through_an_input_required_result() {
    let setup = delegation(defaults());
    let observed = crate::support::py_client(
        &setup.target(),
        &[
            "--scenario",
            "call",
            "--mode",
            "2026-07-28",
            "--tool",
            "mail.echo",
            "--args",
            r#"{"text":"stateless"}"#,
            "--follow-url",
            "bob",
        ],
    );
    let elicitations = observed["elicitations"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(elicitations.len(), 1, "{observed}");
    assert_eq!(elicitations[0]["mode"], "url", "{observed}");
    assert_eq!(elicitations[0]["via"], "input_required", "{observed}");
    assert_eq!(result_text(&observed["result"]), "stateless", "{observed}");
    let calls = setup.upstream.calls();
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(
        calls[0]["sub"], "bob",
        "the local user signed in as bob at the provider"
    );
}

#[test]
fn the_clients_token_is_exchanged_for_one_narrowed_to_the_upstream_and_the_tool() {
    let setup = delegation(Options {
        authenticated: true,
        credential: Credential::oauth().exchange(),
        tools: scoped_send(),
        ..defaults()
    });
    let token = setup.provider.token("alice");
    let header = format!("Authorization: Bearer {token}");
    let echo = setup.call(
        "mail.echo",
        r#"{"text":"exchanged"}"#,
        &["--header", &header],
    );
    assert_eq!(texts(&echo), vec!["exchanged"], "{echo}");
    assert_eq!(
        echo["elicitations"].as_array().map(Vec::len),
        Some(0),
        "no sign-in: {echo}"
    );
    let send = setup.call(
        "mail.send_message",
        r#"{"to":"bob@example.com","subject":"s","body":"b"}"#,
        &[
            "--header",
            &header,
            "--form",
            "--content",
            r#"{"approve":true}"#,
        ],
    );
    assert!(!is_error(&send["results"][0]), "{send}");
    let calls = setup.upstream.calls();
    assert_eq!(calls.len(), 2, "{calls:?}");
    let scopes = |call: &Value| -> Vec<String> {
        let mut scopes: Vec<String> = call["scope"]
            .as_array()
            .map(|s| {
                s.iter()
                    .filter_map(|s| s.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        scopes.sort();
        scopes
    };
    // Audience the upstream, scopes exactly what each tool needs, subject alice; never the
    // inbound token itself.
    assert_eq!(scopes(&calls[0]), vec!["mail.read"], "{calls:?}");
    assert_eq!(
        scopes(&calls[1]),
        vec!["mail.read", "mail.send"],
        "{calls:?}"
    );
    let inbound = sha256_hex(&token);
    for call in &calls {
        assert_eq!(call["sub"], "alice", "{call}");
        assert!(
            call["aud"]
                .as_array()
                .is_some_and(|aud| aud.iter().any(|a| a == &setup.upstream.url)),
            "{call}"
        );
        assert_ne!(call["token_sha256"], inbound.as_str(), "{call}");
    }
    let evidence =
        std::fs::read_to_string(setup.scratch.path().join("evidence.jsonl")).unwrap_or_default();
    assert!(evidence.contains("exchanged sha256:"), "{evidence}");
    setup.assert_no_secret_written(&[&echo, &send]);
}

#[test]
fn a_service_credential_acts_for_everyone_and_every_record_says_service() {
    let setup = delegation(Options {
        credential: Credential::client_credentials(),
        ..defaults()
    });
    let observed = setup.call("mail.echo", r#"{"text":"as the service"}"#, &[]);
    assert_eq!(texts(&observed), vec!["as the service"], "{observed}");
    assert_eq!(observed["elicitations"].as_array().map(Vec::len), Some(0));
    let calls = setup.upstream.calls();
    assert_eq!(calls.len(), 1, "{calls:?}");
    // The client credentials grant: the token's subject is Portcullis's client, not a user.
    assert_eq!(calls[0]["sub"], "portcullis", "{calls:?}");
    assert!(
        calls[0]["aud"]
            .as_array()
            .is_some_and(|aud| aud.iter().any(|a| a == &setup.upstream.url)),
        "{calls:?}"
    );
    let evidence =
        std::fs::read_to_string(setup.scratch.path().join("evidence.jsonl")).unwrap_or_default();
    let records: Vec<Value> = evidence
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .map(|line| line["record"]["event"].clone())
        .filter(|event| event["kind"] == "call_intent" || event["kind"] == "call_outcome")
        .collect();
    assert_eq!(records.len(), 2, "{evidence}");
    for record in &records {
        assert_eq!(record["request"]["identity"]["mode"], "service", "{record}");
    }
    assert!(
        evidence.contains("service credential of `mail`"),
        "{evidence}"
    );
    assert!(!evidence.contains(JWT_PREFIX));
    assert!(!setup.portcullis.log().contains(JWT_PREFIX));
}

#[test]
fn tools_the_grant_cannot_call_are_hidden_until_it_can() {
    let setup = delegation(Options {
        credential: Credential::oauth().hide_tools(),
        tools: scoped_send(),
        ..defaults()
    });
    let before = setup.listed();
    assert!(before.contains(&"mail.echo".to_owned()), "{before:?}");
    assert!(
        !before.contains(&"mail.send_message".to_owned()),
        "{before:?}"
    );
    // Hidden is hidden: a call of it is an unknown tool, and nothing is asked.
    let call = setup.call(
        "mail.send_message",
        r#"{"to":"bob@example.com","subject":"s","body":"b"}"#,
        &["--follow-url", "alice"],
    );
    assert!(
        call["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("unknown tool")),
        "{call}"
    );
    assert_eq!(call["elicitations"].as_array().map(Vec::len), Some(0));
    // A grant of mail.read does not show it; one with mail.send does.
    setup.login(&[]);
    assert!(!setup.listed().contains(&"mail.send_message".to_owned()));
    setup.login(&["--scope", "mail.send"]);
    let after = setup.listed();
    assert!(after.contains(&"mail.send_message".to_owned()), "{after:?}");
}

#[test]
fn an_upstream_that_refuses_the_token_gets_one_refresh_and_one_retry() {
    let mut setup = delegation(defaults());
    setup.sign_in("alice");
    // The upstream comes back as the resource server of another audience: it refuses every
    // token Portcullis holds for it (401 invalid_token), the refreshed one too.
    let port: u16 = setup
        .upstream
        .url
        .trim_end_matches("/mcp")
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no port in {}", setup.upstream.url));
    let _ = setup.upstream.child.kill();
    let _ = setup.upstream.child.wait();
    let elsewhere = format!("http://127.0.0.1:{port}/elsewhere");
    setup.upstream = Fixture::start_for(
        port,
        &setup.provider.issuer,
        setup.scratch.path(),
        &elsewhere,
    );
    let mut text = String::new();
    for _ in 0..20 {
        let refused = setup.call("mail.echo", r#"{"text":"two"}"#, &[]);
        text = texts(&refused).join("\n");
        if text.contains("re-authorise") {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(
        text.contains("re-authorise `mail`") && text.contains("again after a refresh"),
        "{text}"
    );
    assert_eq!(setup.upstream.calls().len(), 1, "only the first call ran");
    assert!(setup.portcullis.log().contains("delegated grant refreshed"));
}

#[test]
fn an_api_key_goes_in_its_own_header_to_its_own_upstream_only() {
    let scratch = Scratch::new();
    let keyed_port = free_port();
    let plain_port = free_port();
    let bearer_port = free_port();
    let fixture = |port: u16, name: &str| {
        Command::new(bin("portcullis-fixture"))
            .arg("--scratch")
            .arg(scratch.sub(name))
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start the fixture: {e}"))
    };
    let mut upstreams = [
        fixture(keyed_port, "keyed"),
        fixture(plain_port, "plain"),
        fixture(bearer_port, "bearer"),
    ];
    for port in [keyed_port, plain_port, bearer_port] {
        assert!(wait_until(Duration::from_secs(30), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        }));
    }
    let key = "the-service-api-key-0123456789";
    // Three fixtures, each echoing the headers it received: one with a key in its own header,
    // one with none, and one with a key as a bearer token.
    let upstream = |name: &str, port: u16| {
        Upstream::url(name, &format!("http://127.0.0.1:{port}/mcp"))
            .trusted()
            .tool("headers", Tool::read())
    };
    let keyed = Credential::api_key("E2E_API_KEY").header("X-Api-Key");
    let config = scratch.config(
        Config::new()
            .evidence("evidence.jsonl")
            .upstream(upstream("keyed", keyed_port).credential(keyed))
            .upstream(upstream("plain", plain_port))
            .upstream(
                upstream("bearer", bearer_port).credential(Credential::api_key("E2E_API_KEY")),
            ),
    );
    let portcullis = Portcullis::http_with_env(&config, &[("E2E_API_KEY", key)]);
    let target = Target::Http(&portcullis.url);
    let answers = std::cell::RefCell::new(String::new());
    let headers = |tool: &str| -> Value {
        let observed = ts_client(&target, &["--scenario", "call", "--tool", tool]);
        answers.borrow_mut().push_str(&observed.to_string());
        let text = result_text(&observed["result"]);
        serde_json::from_str::<Value>(&text)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {observed}"))["headers"]
            .clone()
    };
    // This fixture echoes what it received, key included. The key arrived, in its header, on
    // the call; what comes back has it redacted: no secret Portcullis holds reaches the client.
    let keyed = headers("keyed.headers");
    assert_eq!(keyed["x-api-key"], "[redacted]", "{keyed}");
    assert!(keyed.get("authorization").is_none(), "{keyed}");
    // Without `header`: the standard bearer header.
    let bearer = headers("bearer.headers");
    assert_eq!(bearer["authorization"], "Bearer [redacted]", "{bearer}");
    let plain = headers("plain.headers");
    assert!(
        plain.get("x-api-key").is_none(),
        "the key went to another upstream: {plain}"
    );
    use base64::Engine as _;
    let answers = answers.borrow();
    for form in [
        key.to_owned(),
        base64::engine::general_purpose::STANDARD.encode(key),
        key.bytes().map(|b| format!("{b:02x}")).collect::<String>(),
    ] {
        assert!(
            !answers.contains(&form),
            "`{form}` reached the client: {answers}"
        );
    }
    let evidence =
        std::fs::read_to_string(scratch.path().join("evidence.jsonl")).unwrap_or_default();
    assert!(
        evidence.contains("service credential of `keyed`"),
        "{evidence}"
    );
    assert!(!evidence.contains(key));
    assert!(!portcullis.log().contains(key));
    // The redaction is recorded, by what the secret is, never its value.
    assert!(
        evidence
            .lines()
            .any(|line| line.contains("\"call_outcome\"")
                && line.contains("\"redacted\":[")
                && line.contains("the API key for upstream")),
        "{evidence}"
    );
    for upstream in &mut upstreams {
        let _ = upstream.kill();
        let _ = upstream.wait();
    }
}

#[test]
fn a_cancelled_delegated_call_is_cancelled_upstream() {
    let setup = delegation(Options {
        tools: vec![("echo", Tool::read()), ("slow", Tool::read())],
        ..defaults()
    });
    // Sign in first, so that the cancellation below is the slow call's alone.
    setup.sign_in("alice");
    let cancelled = setup.call(
        "mail.slow",
        r#"{"ms":20000,"steps":20}"#,
        &["--cancel-after-ms", "1500"],
    );
    assert_eq!(cancelled["cancelled"], true, "{cancelled}");
    let upstream_saw_it = wait_until(Duration::from_secs(10), || {
        setup.upstream.scratch.join("cancelled.log").exists()
    });
    assert!(
        upstream_saw_it,
        "the cancellation did not reach the upstream"
    );
    // A 2026-07-28 upstream hears of it as its call's stream closing (rmcp posts no
    // notification then); a session-era one gets `notifications/cancelled`, which carries the
    // call's credential (the gateway's attach tests). Any that was posted carried alice's.
    let received = setup.upstream.received();
    let call = received
        .iter()
        .find(|r| r["method"] == "tools/call" && r["tool"] == "slow")
        .unwrap_or_else(|| panic!("{received:?}"));
    assert_eq!(call["sub"], "alice");
    for cancel in received
        .iter()
        .filter(|r| r["method"] == "notifications/cancelled")
    {
        assert_eq!(cancel["token_sha256"], call["token_sha256"], "{cancel}");
    }
}
