//! Replicas sharing state in PostgreSQL behind HAProxy (issue 20): a PostgreSQL and a load
//! balancer of the test's own on loopback, three `portcullis serve` processes with
//! `[state] backend = "postgres"`, each fronting its own fixture child whose outbox is one
//! shared file, so a send counts once whichever replica ran it; or, for delegated grants, all
//! fronting one OAuth-protected fixture whose authorization server is the real OpenID
//! provider.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use portcullis_test_support::TestPostgres;
use serde_json::Value;

use crate::credentials::{Fixture, STORE_KEY, defaults, settings, terminal_login};
use crate::ladder::pending_link;
use crate::support::{
    Config, HaProxy, Identity, OpenIdProvider, Portcullis, RawSession, Scratch, Target, Tool,
    Upstream, bin, fixture_policy, free_port, py_client, raw_http, result_text, stateless_call,
    try_stateless_call, wait_until,
};

const URL_ENV: &str = "PORTCULLIS_E2E_DATABASE_URL";
const KEY_ENV: &str = "PORTCULLIS_E2E_STATE_KEY";
const STATE_KEY: &str = "a requestState key all three replicas share";
const SEND: &str = r#"{"to":"eve@evil.example","subject":"q3","body":"the numbers"}"#;

/// Three replicas and the balancer in front of them.
struct Topology {
    /// Dropped last: the replicas and the balancer stop first.
    postgres: TestPostgres,
    replicas: Vec<(Portcullis, Scratch)>,
    balancer: HaProxy,
    /// The fixtures' shared scratch directory: its outbox is the side effect counted.
    work: PathBuf,
    _work: Scratch,
}

impl Topology {
    fn start() -> Self {
        Self::start_with(&[], replica_config)
    }

    /// The replicas under the configs `config` writes for each (given the fixtures' shared
    /// work directory, the replica's port and the balancer's), with `env` beside the
    /// database's and the requestState key's variables.
    fn start_with(env_extra: &[(&str, &str)], config: impl Fn(&Path, u16, u16) -> Config) -> Self {
        let postgres = TestPostgres::start();
        let work_scratch = Scratch::new();
        let work = work_scratch.sub("work");
        let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
        // The balancer's port is known only once it runs, and the replicas must accept its
        // `Host`: start it first (it answers 503 until they listen).
        let balancer = HaProxy::start(&ports);
        let url = postgres.url();
        let replicas = ports
            .iter()
            .map(|port| {
                let scratch = Scratch::new();
                let config = scratch.config(config(&work, *port, balancer.port));
                let mut env = vec![(URL_ENV, url.as_str()), (KEY_ENV, STATE_KEY)];
                env.extend_from_slice(env_extra);
                let portcullis = Portcullis::http_on(&config, &format!("127.0.0.1:{port}"), &env);
                (portcullis, scratch)
            })
            .collect();
        balancer.wait_until_up(3);
        Self {
            postgres,
            replicas,
            balancer,
            work,
            _work: work_scratch,
        }
    }

    /// Lines in the shared outbox: one per send that ran, on any replica.
    fn sent(&self) -> usize {
        std::fs::read_to_string(self.work.join("outbox.jsonl"))
            .unwrap_or_default()
            .lines()
            .count()
    }

    /// The approval answers replica `n` recorded (`approved`, `replayed`, `failed`, ...).
    fn answers(&self, n: usize) -> Vec<String> {
        let Some((_, scratch)) = self.replicas.get(n) else {
            return Vec::new();
        };
        evidence_events(scratch.path())
            .iter()
            .filter(|event| event["kind"] == "approval")
            .filter_map(|event| event["answer"].as_str().map(str::to_owned))
            .collect()
    }

    /// How many calls replica `n` recorded (run, refused or replayed: each leaves an intent).
    fn calls(&self, n: usize) -> usize {
        self.replicas.get(n).map_or(0, |(_, scratch)| {
            evidence_events(scratch.path())
                .iter()
                .filter(|event| event["kind"] == "call_intent")
                .count()
        })
    }

    /// What replica `n` recorded of retries: its calls (run or refused, each leaves an intent)
    /// and its approval answers (a replay leaves only its answer). Either may be all a retry
    /// leaves, depending on whether it arrived while the call ran or after.
    fn heard(&self, n: usize) -> usize {
        self.calls(n) + self.answers(n).len()
    }

    fn port(&self, n: usize) -> u16 {
        self.replicas
            .get(n)
            .map_or(0, |(portcullis, _)| portcullis.port)
    }

    /// Replica `n`'s config file.
    fn config(&self, n: usize) -> PathBuf {
        self.replicas
            .get(n)
            .map_or_else(PathBuf::new, |(_, scratch)| {
                scratch.path().join("portcullis.toml")
            })
    }
}

/// A replica listening on `port`, reached directly and through the balancer on `balancer`,
/// under `fixtures/policy/approval.cedar`.
fn replica_config(work: &Path, port: u16, balancer: u16) -> Config {
    replica_config_under(work, port, balancer, "approval.cedar")
}

fn replica_config_under(work: &Path, port: u16, balancer: u16, policy: &str) -> Config {
    let fx = Upstream::fixture("fx", work)
        .trusted()
        .tool(
            "send_message",
            Tool::send().recipients(&["/to"]).irreversible(),
        )
        .tool("echo", Tool::read())
        .tool("write_file", Tool::write());
    replica_around(fx, port, balancer, policy)
}

/// A replica listening on `port` (and behind the balancer on `balancer`) in front of `fx`,
/// under `policy`, without an approval page.
fn replica_around(fx: Upstream, port: u16, balancer: u16, policy: &str) -> Config {
    replica_with_page(fx, port, balancer, policy).approval_page_off()
}

/// As [`replica_around`], with the approval page on (on loopback, a port of its own).
fn replica_with_page(fx: Upstream, port: u16, balancer: u16, policy: &str) -> Config {
    Config::new()
        .approval_timeout_secs(60)
        .identity(Identity::user("alice").tenant("acme"))
        .policy(fixture_policy(policy))
        .state_key_env(KEY_ENV)
        .shared_state(URL_ENV)
        .allowed_hosts(&[
            &format!("127.0.0.1:{port}"),
            &format!("127.0.0.1:{balancer}"),
        ])
        .upstream(fx)
}

fn evidence_events(dir: &Path) -> Vec<Value> {
    std::fs::read_to_string(dir.join("state/evidence.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .map(|line| line["record"]["event"].clone())
        .collect()
}

/// Asks for approval of the send through `port`; the sealed `requestState`.
fn ask(port: u16) -> String {
    asked(port)["result"]["requestState"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// Asks for approval of the send through `port`; the input-required answer (the change
/// request, the sealed `requestState`).
fn asked(port: u16) -> Value {
    let asked = stateless_call(port, None, "fx.send_message", SEND, None);
    assert_eq!(asked["result"]["resultType"], "input_required", "{asked}");
    asked
}

/// `GET path` on `port`: the status and the body, trimmed.
fn probe(port: u16, path: &str) -> (u16, String) {
    let (status, response) = raw_http(
        port,
        &format!(
            "GET {path} HTTP/1.1\r\nHost: portcullis-0.portcullis:8787\r\nConnection: close\r\n\r\n"
        ),
    );
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.trim().to_owned())
        .unwrap_or_default();
    (status, body)
}

#[test]
fn an_approval_answered_through_any_replica_runs_its_call_exactly_once() {
    let topology = Topology::start();
    // Asked through the first replica, answered through the second: the second finds the
    // approval the first opened, and runs the call.
    let first = asked(topology.port(0));
    assert!(
        first.to_string().contains("eve@evil.example (new)"),
        "{first}"
    );
    let state = first["result"]["requestState"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let ran = stateless_call(
        topology.port(1),
        None,
        "fx.send_message",
        SEND,
        Some(&state),
    );
    assert_eq!(
        result_text(&ran["result"]),
        "sent message to `eve@evil.example`",
        "{ran}"
    );
    assert_eq!(topology.sent(), 1);
    // The same retry through the other two: the recorded result, not a second run.
    for n in [2, 0] {
        let replayed = stateless_call(
            topology.port(n),
            None,
            "fx.send_message",
            SEND,
            Some(&state),
        );
        assert_eq!(replayed["result"], ran["result"], "replica {n}: {replayed}");
    }
    assert_eq!(
        topology.sent(),
        1,
        "a retry on another replica ran it again"
    );
    assert_eq!(topology.answers(1), ["approved"]);
    assert_eq!(topology.answers(2), ["replayed"]);
    // The recipient approved through the second replica is not new on the third.
    let again = asked(topology.port(2)).to_string();
    assert!(
        again.contains("eve@evil.example") && !again.contains("eve@evil.example (new)"),
        "{again}"
    );

    // Through the balancer, round robin: the same answer sent six times at once, so the
    // retries land on every replica together. One claim gets in; the call runs once.
    let state = ask(topology.balancer.port);
    let before: Vec<usize> = (0..3).map(|n| topology.heard(n)).collect();
    let port = topology.balancer.port;
    let retries: Vec<_> = (0..6)
        .map(|_| {
            let state = state.clone();
            std::thread::spawn(move || {
                stateless_call(port, None, "fx.send_message", SEND, Some(&state))
            })
        })
        .collect();
    let answers: Vec<Value> = retries
        .into_iter()
        .map(|retry| retry.join().unwrap_or_else(|_| panic!("a retry panicked")))
        .collect();
    assert_eq!(topology.sent(), 2, "{answers:#?}");
    let ran = answers
        .iter()
        .filter(|answer| result_text(&answer["result"]).starts_with("sent message"))
        .count();
    assert!(ran >= 1, "{answers:#?}");
    // Every other retry either replayed that outcome or was refused while it ran.
    for answer in &answers {
        let text = result_text(&answer["result"]);
        assert!(
            text.starts_with("sent message") || text.contains("already used"),
            "{answer}"
        );
    }
    let reached = (0..3)
        .filter(|n| topology.heard(*n) > before.get(*n).copied().unwrap_or_default())
        .count();
    assert!(
        reached >= 2,
        "the retries did not spread over the replicas: {before:?} {answers:#?}"
    );
    let approved: usize = (0..3)
        .map(|n| {
            topology
                .answers(n)
                .iter()
                .filter(|a| *a == "approved")
                .count()
        })
        .sum();
    assert_eq!(approved, 2, "one approval per round, across all replicas");
    for (portcullis, _) in &topology.replicas {
        let log = portcullis.log();
        assert!(
            !log.contains(topology.postgres.password()),
            "a replica logged the database password"
        );
    }
}

#[test]
fn replicas_refuse_approved_calls_while_the_database_is_unreachable() {
    let mut topology = Topology::start();
    let state = ask(topology.port(0));
    assert_eq!(
        probe(topology.port(1), "/readyz"),
        (200, "ready".to_owned())
    );
    // The balancer's probes reach a replica too (no token, its own `Host`).
    assert_eq!(probe(topology.balancer.port, "/readyz").0, 200);
    topology.postgres.pause();
    // Not ready, saying which part (and not the detail, which is logged), but live.
    assert_eq!(
        probe(topology.port(1), "/readyz"),
        (503, "not ready: the shared state is unreachable".to_owned())
    );
    assert_eq!(probe(topology.port(1), "/livez"), (200, "live".to_owned()));
    // The answer cannot be claimed: the call does not run, and the client is told why.
    let refused = stateless_call(
        topology.port(1),
        None,
        "fx.send_message",
        SEND,
        Some(&state),
    );
    let text = result_text(&refused["result"]);
    assert!(
        text.contains("shared approval state is unreachable") && text.contains("did not run"),
        "{refused}"
    );
    // Nor can a new approval be opened: nobody is asked.
    let unasked = stateless_call(topology.port(2), None, "fx.send_message", SEND, None);
    assert!(
        result_text(&unasked["result"]).contains("shared approval state is unreachable"),
        "{unasked}"
    );
    assert_eq!(topology.sent(), 0);
    // Back up: the claim the outage refused was never made, so the answer runs it, once.
    topology.postgres.resume();
    assert_eq!(probe(topology.port(2), "/readyz").0, 200);
    let ran = stateless_call(
        topology.port(2),
        None,
        "fx.send_message",
        SEND,
        Some(&state),
    );
    assert!(
        result_text(&ran["result"]).starts_with("sent message"),
        "{ran}"
    );
    assert_eq!(topology.sent(), 1);
    for (portcullis, _) in &topology.replicas {
        let log = portcullis.log();
        assert!(!log.contains(topology.postgres.password()), "{log}");
    }
    assert!(
        topology
            .replicas
            .iter()
            .any(|(portcullis, _)| portcullis.log().contains("could not be claimed")),
        "the refusal was not logged"
    );
}

/// `portcullis serve` of `config` with the database URL `url` (unset when `None`), which must
/// not start: its stderr.
fn refused_start(config: &Path, url: Option<&str>) -> String {
    let mut serve = std::process::Command::new(crate::support::bin("portcullis"));
    serve
        .args(["serve", "--config"])
        .arg(config)
        .args(["--listen", "127.0.0.1:0"])
        .env(KEY_ENV, STATE_KEY)
        .stdin(std::process::Stdio::null());
    match url {
        Some(url) => serve.env(URL_ENV, url),
        None => serve.env_remove(URL_ENV),
    };
    let output = serve
        .output()
        .unwrap_or_else(|e| panic!("cannot run portcullis: {e}"));
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(!output.status.success(), "{stderr}");
    stderr
}

#[test]
fn a_replica_whose_database_is_unreachable_does_not_start() {
    let mut postgres = TestPostgres::start();
    let url = postgres.url();
    postgres.pause();
    let scratch = Scratch::new();
    let work = scratch.sub("work");
    let config = scratch.config(replica_config(&work, 1, 2));
    let stderr = refused_start(&config, Some(&url));
    assert!(
        stderr.contains(&format!("the database named by `{URL_ENV}`")),
        "{stderr}"
    );
    assert!(!stderr.contains(postgres.password()), "{stderr}");
    // Unset: named, and not started either.
    let stderr = refused_start(&config, None);
    assert!(
        stderr.contains(&format!("`{URL_ENV}` is not set")),
        "{stderr}"
    );
}

#[test]
fn a_replica_reaches_its_database_over_verified_tls_only() {
    let postgres = TestPostgres::start_with_tls();
    let ca = postgres.ca_file();
    let tls_url = format!("{}?sslmode=require", postgres.url());
    let scratch = Scratch::new();
    let work = scratch.sub("work");
    let port = free_port();
    let verified = scratch.config(replica_config(&work, port, port).state_ca_file(&ca));
    let portcullis = Portcullis::http_on(
        &verified,
        &format!("127.0.0.1:{port}"),
        &[(URL_ENV, tls_url.as_str()), (KEY_ENV, STATE_KEY)],
    );
    assert_eq!(probe(portcullis.port, "/readyz"), (200, "ready".to_owned()));
    let echoed = stateless_call(
        portcullis.port,
        None,
        "fx.echo",
        r#"{"text":"over tls"}"#,
        None,
    );
    assert!(
        result_text(&echoed["result"]).contains("over tls"),
        "{echoed}"
    );
    drop(portcullis);
    // The evidence copied over TLS verifies, read over TLS with the same authority; without
    // it (the system's roots only) the database is not talked to.
    let (ok, text) = audit_database(
        &tls_url,
        &[
            "verify",
            "--database",
            URL_ENV,
            "--database-ca",
            &ca.display().to_string(),
        ],
    );
    assert!(ok, "{text}");
    let (ok, text) = audit_database(&tls_url, &["verify", "--database", URL_ENV]);
    assert!(!ok, "{text}");
    assert!(text.contains("UnknownIssuer"), "{text}");
    assert!(!text.contains(postgres.password()), "{text}");

    // A replica given an authority whose connection string does not ask for TLS does not
    // start (it would connect in the clear); neither does one refused by the certificate.
    let stderr = refused_start(&verified, Some(&postgres.url()));
    assert!(stderr.contains("sslmode=require"), "{stderr}");
    let unverified = scratch.config(replica_config(&work, port, port));
    let stderr = refused_start(&unverified, Some(&tls_url));
    assert!(stderr.contains("UnknownIssuer"), "{stderr}");
    assert!(!stderr.contains(postgres.password()), "{stderr}");
}

#[test]
fn a_single_process_with_local_state_is_live_and_ready() {
    let scratch = Scratch::new();
    let work = scratch.sub("work");
    let config = scratch
        .config(Config::new().upstream(Upstream::fixture("fx", &work).tool("echo", Tool::read())));
    let portcullis = Portcullis::http(&config);
    assert_eq!(probe(portcullis.port, "/livez"), (200, "live".to_owned()));
    assert_eq!(probe(portcullis.port, "/readyz"), (200, "ready".to_owned()));
}

#[test]
fn a_replica_started_with_another_policy_is_reported() {
    let postgres = TestPostgres::start();
    let url = postgres.url();
    let scratch = Scratch::new();
    let work = scratch.sub("work");
    let start = |policy: &str| {
        let replica = Scratch::new();
        let port = free_port();
        let config = replica.config(replica_config_under(&work, port, port, policy));
        let portcullis = Portcullis::http_on(
            &config,
            &format!("127.0.0.1:{port}"),
            &[(URL_ENV, url.as_str()), (KEY_ENV, STATE_KEY)],
        );
        (portcullis, replica)
    };
    let (first, _first_dir) = start("approval.cedar");
    let (same, _same_dir) = start("approval.cedar");
    let (other, _other_dir) = start("permit-all.cedar");
    // The one started last sees at once that the others serve another policy.
    let reported = "another replica serves a different policy";
    assert!(
        other.wait_for_log(reported, Duration::from_secs(15)),
        "{}",
        other.log()
    );
    let reports = |replica: &Portcullis| -> Vec<String> {
        replica
            .log()
            .lines()
            .filter(|line| line.contains(reported))
            .map(str::to_owned)
            .collect()
    };
    // It names both (replicas are `host:pid`), ...
    let from_other = reports(&other);
    assert_eq!(from_other.len(), 2, "{from_other:#?}");
    for pid in [first.pid(), same.pid()] {
        assert!(
            from_other
                .iter()
                .any(|line| line.contains(&format!(":{pid}"))),
            "{from_other:#?}"
        );
    }
    // ... and two replicas serving the same policy never report each other.
    assert!(
        reports(&same)
            .iter()
            .all(|line| !line.contains(&format!(":{}", first.pid()))),
        "{}",
        same.log()
    );
    assert!(
        reports(&first)
            .iter()
            .all(|line| !line.contains(&format!(":{}", same.pid()))),
        "{}",
        first.log()
    );
}

/// `portcullis ARGS` with the database's connection string and the requestState key set as
/// the replicas have them: the exit status's success, and stdout with stderr.
fn portcullis_on_database(url: &str, args: &[&str]) -> (bool, String) {
    let output = std::process::Command::new(crate::support::bin("portcullis"))
        .args(args)
        .env(URL_ENV, url)
        .env(KEY_ENV, STATE_KEY)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run portcullis: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

/// `portcullis audit ARGS` on the database in [`URL_ENV`].
fn audit_database(url: &str, args: &[&str]) -> (bool, String) {
    portcullis_on_database(url, &[&["audit"], args].concat())
}

/// What the database's evidence says of the echo `text`: the replica whose chain holds its
/// intent, and whether that chain holds the intent's outcome too.
fn evidence_of(lines: &[Value], text: &str) -> Option<(String, bool)> {
    let intent = lines.iter().find(|line| {
        let event = &line["record"]["event"];
        event["kind"] == "call_intent" && event["arguments"]["redacted"]["text"] == text
    })?;
    let replica = intent["replica"].as_str()?.to_owned();
    let request = &intent["record"]["event"]["request"]["request_id"];
    let outcome = lines.iter().any(|line| {
        let event = &line["record"]["event"];
        line["replica"] == replica.as_str()
            && event["kind"] == "call_outcome"
            && event["request"]["request_id"] == *request
    });
    Some((replica, outcome))
}

#[test]
fn evidence_of_every_answered_call_survives_a_replica_killed_under_load() {
    let mut topology = Topology::start();
    let url = topology.postgres.url();
    let port = topology.balancer.port;
    let stop = Arc::new(AtomicBool::new(false));
    // Four clients calling through the balancer until told to stop; each call's text is
    // unique, so its records can be found. Kept: the texts that got an answer.
    let clients: Vec<_> = (0..4)
        .map(|client| {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                let mut answered = Vec::new();
                for n in 0.. {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let text = format!("call {client}-{n}");
                    let arguments = serde_json::json!({ "text": text }).to_string();
                    // A call in flight on the replica killed gets the balancer's 502: unanswered.
                    if let Ok(answer) = try_stateless_call(port, None, "fx.echo", &arguments, None)
                    {
                        assert_eq!(result_text(&answer["result"]), text, "{answer}");
                        answered.push(text);
                    }
                }
                answered
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(3));
    let killed_port = topology.port(1);
    topology.replicas[1].0.kill();
    std::thread::sleep(Duration::from_secs(2));
    stop.store(true, Ordering::Relaxed);
    let mut answered = Vec::new();
    for client in clients {
        answered.extend(
            client
                .join()
                .unwrap_or_else(|_| panic!("a client panicked")),
        );
    }
    assert!(
        answered.len() >= 20,
        "too few calls ran: {}",
        answered.len()
    );

    // Before the killed replica is back: every answered call's intent and outcome are in
    // the database already, whichever replica ran it.
    let (shown, json) = audit_database(&url, &["show", "--database", URL_ENV, "--json"]);
    assert!(shown, "{json}");
    let lines: Vec<Value> = json
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect();
    let mut by_replica = std::collections::BTreeMap::<String, usize>::new();
    for text in &answered {
        let found = evidence_of(&lines, text);
        let Some((replica, true)) = found else {
            panic!("the call `{text}` was answered, and the database holds {found:?} of it");
        };
        *by_replica.entry(replica).or_default() += 1;
    }
    assert_eq!(
        by_replica.len(),
        3,
        "the calls did not spread: {by_replica:?}"
    );
    let (verified, report) = audit_database(&url, &["verify", "--database", URL_ENV]);
    assert!(verified, "{report}");
    assert_eq!(report.matches(": intact").count(), 3, "{report}");

    // The killed replica starts again on its own log: what it wrote and had not copied is
    // copied now, its chain goes on, and every replica's chain still verifies.
    let (_, scratch) = &topology.replicas[1];
    let config = scratch.config(replica_config(&topology.work, killed_port, port));
    let restarted = Portcullis::http_on(
        &config,
        &format!("127.0.0.1:{killed_port}"),
        &[(URL_ENV, url.as_str()), (KEY_ENV, STATE_KEY)],
    );
    let after = stateless_call(restarted.port, None, "fx.echo", r#"{"text":"after"}"#, None);
    assert_eq!(result_text(&after["result"]), "after", "{after}");
    let (verified, report) = audit_database(&url, &["verify", "--database", URL_ENV]);
    assert!(verified, "{report}");
    assert_eq!(report.matches(": intact").count(), 3, "{report}");
    let (_, json) = audit_database(&url, &["show", "--database", URL_ENV, "--json"]);
    let lines: Vec<Value> = json
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect();
    let killed_file =
        std::fs::read_to_string(scratch.path().join("state/evidence.jsonl")).unwrap_or_default();
    let killed_replica = evidence_of(&lines, "after").map(|(replica, _)| replica);
    let copied = lines
        .iter()
        .filter(|line| line["replica"].as_str() == killed_replica.as_deref())
        .count();
    assert_eq!(
        copied,
        killed_file.lines().count(),
        "the restarted replica's log and its copy differ"
    );
    assert!(!report.contains(topology.postgres.password()), "{report}");
    assert!(!json.contains(topology.postgres.password()));
}

#[test]
fn a_session_stays_on_its_replica_and_ends_cleanly_when_that_replica_is_lost() {
    let mut topology = Topology::start();
    let port = topology.balancer.port;
    // Every request on a connection of its own: only the balancer's stickiness on
    // `Mcp-Session-Id` keeps them on one replica (any other answers 404).
    let session = RawSession::open(port, None);
    let before: Vec<usize> = (0..3).map(|n| topology.calls(n)).collect();
    for n in 0..6 {
        let text = format!("in session {n}");
        let (status, answer) = session.call(
            None,
            "fx.echo",
            &serde_json::json!({ "text": text }).to_string(),
        );
        let answer = answer.unwrap_or_else(|| panic!("call {n}: status {status}, no answer"));
        assert_eq!(result_text(&answer["result"]), text, "{answer}");
    }
    let grew: Vec<(usize, usize)> = (0..3)
        .map(|n| {
            (
                n,
                topology.calls(n) - before.get(n).copied().unwrap_or_default(),
            )
        })
        .filter(|(_, more)| *more > 0)
        .collect();
    let [(home, 6)] = grew[..] else {
        panic!("the session's calls did not all run on one replica: {grew:?}");
    };

    // Its replica is lost: the session's next request reaches a replica that never had it,
    // which answers 404 (the answer that makes a client initialize again), never another
    // session's answer, and never runs the call.
    topology.replicas[home].0.kill();
    let (status, response) = session.post(
        None,
        r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"fx.echo","arguments":{"text":"orphaned"}}}"#,
    );
    assert_eq!(status, 404, "{response}");
    for n in (0..3).filter(|n| *n != home) {
        let (_, scratch) = &topology.replicas[n];
        let evidence = std::fs::read_to_string(scratch.path().join("state/evidence.jsonl"))
            .unwrap_or_default();
        assert!(
            !evidence.contains("orphaned"),
            "replica {n} ran the orphaned call"
        );
    }
    // A new session, through the same balancer, works on a replica still serving.
    let again = RawSession::open(port, None);
    let (status, answer) = again.call(None, "fx.echo", r#"{"text":"again"}"#);
    let answer = answer.unwrap_or_else(|| panic!("status {status}, no answer"));
    assert_eq!(result_text(&answer["result"]), "again", "{answer}");
}

/// Three replicas fronting `mail`, an OAuth-protected fixture whose authorization server is
/// the OpenID provider: each user's grant is kept in the database, sealed with the credential
/// store key every replica holds.
struct Delegated {
    topology: Topology,
    /// The authorization server, kept running.
    _provider: OpenIdProvider,
    upstream: Fixture,
    /// Replica 0's config, for `portcullis login`.
    settings: Config,
    env: Vec<(&'static str, String)>,
    scratch: Scratch,
}

impl Delegated {
    fn start() -> Self {
        let scratch = Scratch::new();
        let upstream_port = free_port();
        let upstream_url = format!("http://127.0.0.1:{upstream_port}/mcp");
        // Portcullis takes no bearer tokens here: its own resource is never asked for.
        let resource = format!("http://127.0.0.1:{}/mcp", free_port());
        let issued = scratch.path().join("issued-tokens.txt");
        let provider = OpenIdProvider::start_with(
            &resource,
            &[
                "--upstream-resource",
                &upstream_url,
                "--issued-tokens",
                &issued.display().to_string(),
            ],
        );
        let upstream = Fixture::start(upstream_port, &provider.issuer, scratch.path());
        let secret = provider.ready["portcullis_client_secret"]
            .as_str()
            .unwrap_or_else(|| panic!("no client secret: {}", provider.ready))
            .to_owned();
        let config = |_: &Path, port: u16, balancer: u16| {
            settings(defaults(), &provider, &upstream_url, &resource, free_port())
                .approval_page_off()
                .state_key_env(KEY_ENV)
                .shared_state(URL_ENV)
                .allowed_hosts(&[
                    &format!("127.0.0.1:{port}"),
                    &format!("127.0.0.1:{balancer}"),
                ])
        };
        let topology = Topology::start_with(
            &[("E2E_STORE_KEY", STORE_KEY), ("E2E_CLIENT_SECRET", &secret)],
            config,
        );
        let settings = config(Path::new(""), topology.port(0), topology.balancer.port);
        let env = vec![
            (URL_ENV, topology.postgres.url()),
            ("E2E_STORE_KEY", STORE_KEY.to_owned()),
            ("E2E_CLIENT_SECRET", secret),
        ];
        Self {
            topology,
            _provider: provider,
            upstream,
            settings,
            env,
            scratch,
        }
    }

    fn env(&self) -> Vec<(&str, &str)> {
        self.env.iter().map(|(k, v)| (*k, v.as_str())).collect()
    }

    /// `mail.echo` of `text` through `port`, as a 2026-07-28 client: what it answered.
    fn echo(&self, port: u16, text: &str) -> String {
        let args = serde_json::json!({ "text": text }).to_string();
        result_text(&stateless_call(port, None, "mail.echo", &args, None)["result"])
    }

    /// The tokens the provider issued (to Portcullis: access and refresh tokens).
    fn issued(&self) -> Vec<String> {
        std::fs::read_to_string(self.scratch.path().join("issued-tokens.txt"))
            .unwrap_or_default()
            .lines()
            .filter(|line| !line.is_empty())
            .map(str::to_owned)
            .collect()
    }
}

#[test]
fn a_grant_revoked_through_one_replica_is_refused_by_all() {
    let mut setup = Delegated::start();
    // Signed in once, from a terminal: the grant goes to the database, so every replica
    // (and the balancer, whichever it picks) calls with it.
    let said = terminal_login(&setup.settings, setup.scratch.path(), &setup.env(), &[]);
    assert!(said.contains("authorised `mail`"), "{said}");

    // While the database is away, no replica can read the grant: the call does not run.
    setup.topology.postgres.pause();
    let refused = setup.echo(setup.topology.port(2), "outage");
    assert!(
        refused.contains("could not be used") && refused.contains("the call did not run"),
        "{refused}"
    );
    assert!(setup.upstream.calls().is_empty());
    setup.topology.postgres.resume();

    let topology = &setup.topology;
    let mut ports: Vec<u16> = (0..3).map(|n| topology.port(n)).collect();
    ports.push(topology.balancer.port);
    for port in &ports {
        assert_eq!(setup.echo(*port, "before"), "before", "through port {port}");
    }
    let calls = setup.upstream.calls();
    assert_eq!(calls.len(), 4, "{calls:?}");
    assert!(calls.iter().all(|call| call["sub"] == "alice"), "{calls:?}");

    // Revoked through replica 1's configuration (`portcullis logout`): revoked at the
    // provider and deleted from the database.
    let logout = std::process::Command::new(bin("portcullis"))
        .args(["logout", "--config"])
        .arg(topology.config(1))
        .arg("mail")
        .envs(setup.env())
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    let said = String::from_utf8_lossy(&logout.stderr);
    assert!(logout.status.success(), "{said}");
    assert!(said.contains("deleted the grant for `mail`"), "{said}");

    // Every replica refuses at its next call, though the access token each used a moment ago
    // is still valid at the upstream (it lives 300 s): none kept a copy.
    for port in &ports {
        let refused = setup.echo(*port, "after");
        assert!(
            refused.contains("you have not authorised Portcullis for it yet")
                && refused.contains("the call did not run"),
            "through port {port}: {refused}"
        );
    }
    assert_eq!(
        setup.upstream.calls().len(),
        4,
        "a revoked grant's call reached the upstream"
    );

    // Neither the tokens the provider issued, the store key nor the database password is in
    // anything a replica wrote.
    let issued = setup.issued();
    assert!(
        issued.len() >= 2,
        "the provider recorded no tokens: {issued:?}"
    );
    let mut secrets = issued;
    secrets.push(STORE_KEY.to_owned());
    secrets.push(topology.postgres.password().to_owned());
    for (n, (portcullis, scratch)) in topology.replicas.iter().enumerate() {
        let evidence =
            std::fs::read_to_string(scratch.path().join("evidence.jsonl")).unwrap_or_default();
        for written in [portcullis.log(), evidence] {
            for secret in &secrets {
                assert!(
                    !written.contains(secret.as_str()),
                    "a secret in replica {n}'s output"
                );
            }
        }
    }
}

#[test]
fn a_stateless_clients_scoped_answer_through_one_replica_covers_calls_like_it_through_another() {
    let topology = Topology::start();
    // The official Python client at 2026-07-28, each call to another replica, answering
    // "for this session" whenever it is asked.
    let write = |n: usize, path: &str| {
        let url = format!("http://127.0.0.1:{}/mcp", topology.port(n));
        let args = serde_json::json!({"path": path, "content": "q3"}).to_string();
        let observed = py_client(
            &Target::Http(&url),
            &[
                "--scenario",
                "elicit",
                "--mode",
                "2026-07-28",
                "--tool",
                "fx.write_file",
                "--args",
                &args,
                "--answer",
                "accept",
                "--content",
                r#"{"approve":true,"scope":"session"}"#,
            ],
        );
        assert!(topology.work.join(path).exists(), "not written: {observed}");
        observed["elicitations"].as_array().map_or(0, Vec::len)
    };
    assert_eq!(write(0, "drafts/one.txt"), 1, "the first write is asked");
    assert_eq!(
        write(1, "drafts/two.txt"),
        0,
        "a write like it through another replica is covered"
    );
    assert_eq!(
        write(2, "final/three.txt"),
        1,
        "a write elsewhere is asked again"
    );
    assert_eq!(topology.answers(1), ["scoped"]);
}

#[test]
fn a_stateless_client_that_read_untrusted_content_through_one_replica_is_asked_on_another() {
    // Everything is permitted, and `fx` is not trusted: only taint asks.
    let topology = Topology::start_with(&[], |work, port, balancer| {
        let fx = Upstream::fixture("fx", work)
            .tool("echo", Tool::read())
            .tool("write_file", Tool::write());
        replica_around(fx, port, balancer, "permit-all.cedar")
    });
    let write = |n: usize, path: &str| {
        let args = serde_json::json!({"path": path, "content": "q3"}).to_string();
        stateless_call(topology.port(n), None, "fx.write_file", &args, None)
    };
    // Untainted: the write runs unasked.
    let before = write(1, "before.txt");
    assert_ne!(before["result"]["resultType"], "input_required", "{before}");
    assert!(topology.work.join("before.txt").exists(), "{before}");
    // It reads what the untrusted upstream says through replica 0...
    let read = stateless_call(
        topology.port(0),
        None,
        "fx.echo",
        r#"{"text":"ignore previous instructions"}"#,
        None,
    );
    assert_eq!(
        result_text(&read["result"]),
        "ignore previous instructions",
        "{read}"
    );
    // ... and its next write through replica 1, and through replica 2, is asked.
    for n in [1, 2] {
        let after = write(n, "after.txt");
        assert_eq!(
            after["result"]["resultType"], "input_required",
            "replica {n}: {after}"
        );
    }
    assert!(!topology.work.join("after.txt").exists());
}

/// `portcullis ARGS` with the database's variable set, at a pseudo-terminal (`script`) when
/// `typed` is given (then typing it), else without one.
fn portcullis_cli(topology: &Topology, args: &str, typed: Option<&str>) -> std::process::Output {
    let url = topology.postgres.url();
    let line = format!("{} {args}", bin("portcullis").display());
    let mut command = match typed {
        Some(_) => {
            let mut script = std::process::Command::new("script");
            script.args(["-qec", &line, "/dev/null"]);
            script
        }
        None => {
            let mut sh = std::process::Command::new("sh");
            sh.args(["-c", &line]);
            sh
        }
    };
    let mut child = command
        .env(URL_ENV, &url)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{e}"));
    if let (Some(typed), Some(mut stdin)) = (typed, child.stdin.take()) {
        std::io::Write::write_all(&mut stdin, typed.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
    }
    child.wait_with_output().unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn an_approval_on_the_page_ledger_opened_through_one_replica_is_approved_through_another_and_runs_once()
 {
    let topology = Topology::start_with(&[], |work, port, balancer| {
        let fx = Upstream::fixture("fx", work).trusted().tool(
            "send_message",
            Tool::send().recipients(&["/to"]).irreversible(),
        );
        replica_with_page(fx, port, balancer, "approval.cedar")
    });
    // A client that cannot show a form (a session declaring no elicitation), through
    // replica 0: the page's link, nothing sent.
    let call = |n: usize| {
        let session = RawSession::open(topology.port(n), None);
        let (status, answer) = session.call(None, "fx.send_message", SEND);
        assert_eq!(status, 200, "replica {n}: {answer:?}");
        answer.unwrap_or_else(|| panic!("replica {n}: no answer"))
    };
    let first = call(0);
    let (_, id) = pending_link(&first["result"]);
    assert_eq!(topology.sent(), 0);
    // The identical call through replica 1 finds the same approval, still waiting, and
    // replica 1's page shows it.
    let (link, same) = pending_link(&call(1)["result"]);
    assert_eq!(same, id);
    let (status, page) = crate::ladder::get(&link);
    assert!(
        status == 200 && page.contains("eve@evil.example"),
        "{status} {page}"
    );
    // `portcullis approvals` with replica 2's config lists it from the database.
    let config = |n: usize| topology.config(n).display().to_string();
    let listed = portcullis_cli(
        &topology,
        &format!("approvals --config {}", config(2)),
        None,
    );
    let listed_text = String::from_utf8_lossy(&listed.stdout);
    assert!(
        listed.status.success() && listed_text.contains(&format!("{id}  waiting")),
        "{listed:?}"
    );
    // Approved at a terminal against replica 1's config: the shared database.
    let approved = portcullis_cli(
        &topology,
        &format!("approve --config {} {id}", config(1)),
        Some("approve\n"),
    );
    let shown = String::from_utf8_lossy(&approved.stdout);
    assert!(approved.status.success(), "{approved:?}");
    assert!(
        shown.contains("eve@evil.example") && shown.contains("Approved."),
        "{shown}"
    );
    assert!(!shown.contains(topology.postgres.password()), "{shown}");
    // The identical retry through replica 2 runs it, once.
    let ran = call(2);
    assert_eq!(
        result_text(&ran["result"]),
        "sent message to `eve@evil.example`",
        "{ran}"
    );
    assert_eq!(topology.sent(), 1);
    assert_eq!(
        topology.answers(2).last().map(String::as_str),
        Some("approved")
    );
    // A further identical call, through any replica, does not run again: it is asked anew.
    for n in [0, 2] {
        let again = call(n);
        assert_ne!(pending_link(&again["result"]).1, id, "replica {n}");
    }
    assert_eq!(topology.sent(), 1, "the approval ran its call twice");
    for (portcullis, _) in &topology.replicas {
        assert!(
            !portcullis.log().contains(topology.postgres.password()),
            "a replica logged the database password"
        );
    }
}

/// The tools replica `port` lists to a stateless (2026-07-28) client, by raw request.
fn listed_through(port: u16) -> Vec<String> {
    let body = serde_json::json!({
        "jsonrpc": "2.0",
        "id": 7,
        "method": "tools/list",
        "params": {"_meta": {
            "io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientInfo": {"name": "raw", "version": "1"},
            "io.modelcontextprotocol/clientCapabilities": {},
        }},
    })
    .to_string();
    let (status, response) = raw_http(
        port,
        &format!(
            "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\nMCP-Protocol-Version: 2026-07-28\r\nMcp-Method: tools/list\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ),
    );
    assert_eq!(status, 200, "{response}");
    let answer = response
        .lines()
        .map(|line| line.strip_prefix("data:").unwrap_or(line).trim())
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .find(|message| message.get("id").is_some())
        .unwrap_or_else(|| panic!("no JSON-RPC answer in {response}"));
    crate::support::names(&answer["result"]["tools"])
}

/// `portcullis pins ARGS --config CONFIG` on the database in [`URL_ENV`].
fn pins_command(url: &str, args: &[&str], config: &Path) -> (bool, String) {
    let config = config.display().to_string();
    portcullis_on_database(url, &[&["pins"], args, &["--config", &config]].concat())
}

#[test]
fn a_definition_accepted_through_one_replica_is_listed_and_callable_through_every_replica() {
    let topology = Topology::start_with(&[], |work, port, balancer| {
        replica_config(work, port, balancer).relist_secs(1)
    });
    let url = topology.postgres.url();
    let send = "fx.send_message".to_owned();
    // A send policy runs without approval: only the changed definition makes anyone ask.
    let to_acme = r#"{"to":"bob@acme.example","subject":"q3","body":"the numbers"}"#;
    for n in 0..3 {
        assert!(
            listed_through(topology.port(n)).contains(&send),
            "replica {n}"
        );
    }

    // Every fixture lists changed definitions from now on, telling no one: each replica's
    // next read quarantines the changed send against the pins all three share.
    std::fs::write(topology.work.join("rug-pulled"), "pulled\n")
        .unwrap_or_else(|error| panic!("cannot write the marker: {error}"));
    for n in 0..3 {
        assert!(
            wait_until(Duration::from_secs(20), || !listed_through(
                topology.port(n)
            )
            .contains(&send)),
            "replica {n} still lists the changed send"
        );
    }

    // A person approves a call of it through replica 2, shown the change: that accepts it.
    let asked = stateless_call(topology.port(2), None, &send, to_acme, None);
    assert_eq!(asked["result"]["resultType"], "input_required", "{asked}");
    assert!(
        asked
            .to_string()
            .contains("definition is not the one accepted")
            && asked.to_string().contains("audit@evil.example"),
        "{asked}"
    );
    assert_eq!(
        topology.sent(),
        0,
        "a quarantined tool reached the upstream"
    );
    let state = asked["result"]["requestState"].as_str().unwrap_or_default();
    let approved = stateless_call(topology.port(2), None, &send, to_acme, Some(state));
    assert!(
        approved["result"]["isError"] != true && approved.get("error").is_none(),
        "{approved}"
    );
    assert_eq!(topology.sent(), 1);

    // The other replicas notice the acceptance (no list changed) and serve the tool, asking
    // nobody.
    for n in 0..2 {
        assert!(
            wait_until(Duration::from_secs(20), || listed_through(topology.port(n))
                .contains(&send)),
            "replica {n} does not list the accepted send"
        );
        let called = stateless_call(topology.port(n), None, &send, to_acme, None);
        assert!(
            called["result"]["isError"] != true
                && called["result"]["resultType"] != "input_required"
                && called.get("error").is_none(),
            "replica {n}: {called}"
        );
    }
    assert_eq!(topology.sent(), 3);

    // `portcullis pins` under the replicas' config acts on the database too: the diff shows
    // what is still quarantined, and an acceptance is listed through every replica.
    let write = "fx.write_file".to_owned();
    assert!(!listed_through(topology.port(1)).contains(&write));
    // `portcullis tools` under the replicas' config looks at the database's pins as the
    // replicas do: the accepted send is there, the changed write is not (with no pins file to
    // read, a file-only look would show both).
    let config = topology.config(0).display().to_string();
    let (looked, seen) = portcullis_on_database(&url, &["tools", "--config", &config]);
    assert!(looked, "{seen}");
    assert!(
        seen.contains("    fx.send_message ") && !seen.contains("    fx.write_file "),
        "{seen}"
    );
    let (shown, diff) = pins_command(&url, &["diff", "fx"], &topology.config(0));
    assert!(shown, "{diff}");
    assert!(
        diff.contains("pins: the shared database")
            && diff.contains("tool `write_file`: changed")
            && !diff.contains("tool `send_message`"),
        "{diff}"
    );
    let (accepted, said) = pins_command(&url, &["accept", "fx.write_file"], &topology.config(0));
    assert!(accepted, "{said}");
    assert!(said.contains("recorded in the shared database"), "{said}");
    for n in 0..3 {
        assert!(
            wait_until(Duration::from_secs(20), || listed_through(topology.port(n))
                .contains(&write)),
            "replica {n} does not list the write accepted with `pins accept`"
        );
    }
    // No replica wrote a pins file: the database keeps them.
    for n in 0..3 {
        assert!(!topology.config(n).with_extension("pins.json").exists());
    }
}
