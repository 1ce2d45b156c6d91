//! Containment of stdio upstreams against the real kernel: a hostile fixture tries to escape its
//! sandbox through Portcullis and the official TypeScript client, and fails where the same
//! attempts from an uncontained upstream succeed; the official filesystem server, allowed `/`
//! by its own argument, reaches only what its sandbox grants; every start is recorded; a
//! sandbox that cannot be built stops the start.

use std::io::ErrorKind;
use std::net::{TcpListener, UdpSocket};
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};

use crate::evidence::records;
use crate::support::{
    Config, Portcullis, Scratch, Target, Upstream, filesystem_server, result_text, ts_call,
    wait_until,
};

const EACCES: i64 = 13;
const EPERM: i64 = 1;

/// Connections a listener has been offered so far, taken off its queue.
fn accepted(listener: &TcpListener) -> usize {
    listener
        .set_nonblocking(true)
        .unwrap_or_else(|e| panic!("{e}"));
    std::iter::from_fn(|| match listener.accept() {
        Ok(_) => Some(()),
        Err(error) if error.kind() == ErrorKind::WouldBlock => None,
        Err(error) => panic!("accept: {error}"),
    })
    .count()
}

fn unix_accepted(listener: &UnixListener) -> usize {
    listener
        .set_nonblocking(true)
        .unwrap_or_else(|e| panic!("{e}"));
    std::iter::from_fn(|| listener.accept().ok()).count()
}

fn datagrams(socket: &UdpSocket) -> usize {
    socket
        .set_nonblocking(true)
        .unwrap_or_else(|e| panic!("{e}"));
    let mut buffer = [0_u8; 64];
    std::iter::from_fn(|| socket.recv(&mut buffer).ok()).count()
}

fn loopback_listener() -> (TcpListener, u16) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
    let port = listener
        .local_addr()
        .unwrap_or_else(|e| panic!("{e}"))
        .port();
    (listener, port)
}

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap_or(Path::new("/")))
        .unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

/// Calls `tool` through Portcullis with the official TypeScript client; the result's text.
fn call_text(portcullis: &Portcullis, tool: &str, arguments: &Value) -> (Value, String) {
    let observed = ts_call(&Target::Http(&portcullis.url), tool, &arguments.to_string());
    let text = result_text(&observed["result"]);
    (observed, text)
}

/// The outcomes the `escape` tool reported, one per attempt.
fn escape(portcullis: &Portcullis, upstream: &str, attempts: &[Value]) -> Vec<Value> {
    let (observed, text) = call_text(
        portcullis,
        &format!("{upstream}.escape"),
        &json!({ "attempts": attempts }),
    );
    let outcomes: Vec<Value> = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("escape did not answer JSON ({e}): {observed}"));
    assert_eq!(outcomes.len(), attempts.len(), "{observed}");
    outcomes
}

#[test]
fn a_hostile_upstream_cannot_leave_its_sandbox() {
    let scratch = Scratch::new();
    let work = scratch.sub("work");
    let open_work = scratch.sub("open-work");
    // Targets outside every root: a stand-in for /etc/shadow, a private key in a fake home, a
    // file to overwrite, a directory to create files in, a unix socket (an agent's, say).
    let outside = scratch.sub("outside");
    let shadow = outside.join("shadow");
    write(&shadow, "root:$6$secret:19000:0:99999:7:::\n");
    let home = scratch.sub("home");
    write(
        &home.join(".ssh/id_rsa"),
        "a stand-in for a private key, for the containment test\n",
    );
    let victim = outside.join("victim.txt");
    write(&victim, "original\n");
    let created = outside.join("created.txt");
    let socket_path = outside.join("agent.sock");
    let unix = UnixListener::bind(&socket_path).unwrap_or_else(|e| panic!("{e}"));
    // Controls inside the root.
    write(&work.join("inside.txt"), "inside\n");
    let (denied, denied_port) = loopback_listener();
    let (granted, granted_port) = loopback_listener();
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
    let udp_port = udp.local_addr().unwrap_or_else(|e| panic!("{e}")).port();

    // Portcullis's own argument check is off for both (it would refuse the paths first): the
    // kernel alone must stop the contained one.
    let hostile = Upstream::fixture("hostile", &work)
        .without_path_check()
        .inherit_env(&["HOME", "PORTCULLIS_E2E_GRANTED"])
        .tcp_connect(&[granted_port]);
    // Uncontained on purpose: the same attempts must work without a sandbox, or the contained
    // upstream's failures would prove nothing.
    let open = Upstream::fixture("open", &open_work)
        .without_path_check()
        .inherit_env(&["HOME"])
        .uncontained();
    let config = scratch.config(Config::relay().upstream(hostile).upstream(open));
    let portcullis = Portcullis::http_with_env(
        &config,
        &[
            ("HOME", &home.display().to_string()),
            ("PORTCULLIS_E2E_SECRET", "s3cret"),
            ("PORTCULLIS_E2E_GRANTED", "fine"),
        ],
    );
    let portcullis_pid = i64::from(portcullis.pid());
    let path = |path: &Path| path.display().to_string();
    let evidence_log = scratch.path().join("state/evidence.jsonl");
    let key = home.join(".ssh/id_rsa");
    let modes = |paths: &[&Path]| -> Vec<u32> {
        use std::os::unix::fs::PermissionsExt as _;
        paths
            .iter()
            .map(|p| {
                std::fs::metadata(p)
                    .map(|m| m.permissions().mode() & 0o7777)
                    .unwrap_or_default()
            })
            .collect()
    };
    let state_dir = scratch.path().join("state");
    let modes_before = modes(&[&evidence_log, &key, &state_dir]);

    // (attempt, errno expected; 0: refused without an OS error)
    let escapes = [
        (json!({"kind": "read", "path": path(&shadow)}), EACCES),
        (json!({"kind": "read", "path": "~/.ssh/id_rsa"}), EACCES),
        (json!({"kind": "write", "path": path(&victim)}), EACCES),
        (json!({"kind": "write", "path": path(&created)}), EACCES),
        (json!({"kind": "tcp_connect", "port": denied_port}), EACCES),
        (
            json!({"kind": "mptcp_connect", "port": denied_port}),
            EACCES,
        ),
        // MPTCP is refused even to a port granted to TCP.
        (
            json!({"kind": "mptcp_connect", "port": granted_port}),
            EACCES,
        ),
        (json!({"kind": "udp_send", "port": udp_port}), EACCES),
        (
            json!({"kind": "unix_connect", "path": path(&socket_path)}),
            EACCES,
        ),
        (json!({"kind": "env", "name": "PORTCULLIS_E2E_SECRET"}), 0),
        (
            json!({"kind": "signal", "pid": portcullis_pid, "terminate": true}),
            EPERM,
        ),
        // Metadata, which landlock does not cover: the evidence log made writable, the key
        // made readable, Portcullis's state directory locked (no more calls).
        (
            json!({"kind": "chmod", "path": path(&evidence_log), "mode": "666"}),
            EPERM,
        ),
        (
            json!({"kind": "chmod", "path": path(&key), "mode": "644"}),
            EPERM,
        ),
        (
            json!({"kind": "chmod", "path": path(&state_dir), "mode": "500"}),
            EPERM,
        ),
    ];
    // The same kinds of action inside the grants. (Unix sockets have no control: once granted,
    // this kernel cannot limit their paths; the sandbox crate's own tests cover that grant.)
    let controls = [
        json!({"kind": "read", "path": path(&work.join("inside.txt"))}),
        json!({"kind": "write", "path": path(&work.join("written.txt"))}),
        json!({"kind": "tcp_connect", "port": granted_port}),
        json!({"kind": "env", "name": "PORTCULLIS_E2E_GRANTED"}),
        json!({"kind": "env", "name": "HOME"}),
        json!({"kind": "signal"}),
    ];
    let attempts: Vec<Value> = escapes
        .iter()
        .map(|(attempt, _)| attempt.clone())
        .chain(controls.iter().cloned())
        .collect();
    let outcomes = escape(&portcullis, "hostile", &attempts);
    for ((attempt, errno), outcome) in escapes.iter().zip(&outcomes) {
        assert_eq!(outcome["ok"], false, "escaped: {attempt} -> {outcome}");
        if *errno != 0 {
            assert_eq!(outcome["errno"], *errno, "{attempt} -> {outcome}");
        }
    }
    for (attempt, outcome) in controls.iter().zip(&outcomes[escapes.len()..]) {
        assert_eq!(
            outcome["ok"], true,
            "control failed: {attempt} -> {outcome}"
        );
    }
    // No descriptor of Portcullis's reached the upstream: none of the files Portcullis holds
    // open (its evidence log above all) is open in the contained child. Read from outside, as
    // the kernel sees both processes (the child itself may not read /proc).
    let own = open_files(portcullis.pid());
    assert!(
        own.iter().any(|file| file.contains("evidence.jsonl")),
        "Portcullis holds its evidence log open: {own:?}"
    );
    let children = children_of(portcullis.pid());
    assert!(!children.is_empty(), "no upstream process found");
    for child in children {
        let inherited: Vec<String> = open_files(child)
            .into_iter()
            .filter(|file| own.contains(file) && file != "/dev/null")
            .collect();
        assert!(
            inherited.is_empty(),
            "process {child} holds Portcullis's {inherited:?}"
        );
    }
    assert_eq!(
        modes(&[&evidence_log, &key, &state_dir]),
        modes_before,
        "a mode changed from inside the sandbox"
    );
    // Every target is untouched: the listeners saw only the control, the files are as they were.
    assert_eq!(accepted(&denied), 0, "the denied port was reached");
    assert_eq!(accepted(&granted), 1, "the granted port's control");
    assert_eq!(datagrams(&udp), 0, "a datagram arrived");
    assert_eq!(unix_accepted(&unix), 0, "the unix socket was reached");
    assert_eq!(
        std::fs::read_to_string(&victim).unwrap_or_default(),
        "original\n"
    );
    assert!(!created.exists(), "a file was created outside the roots");
    assert_eq!(
        std::fs::read_to_string(work.join("written.txt")).unwrap_or_default(),
        "escaped\n",
        "the write inside the root"
    );
    // Portcullis survived its SIGTERM and still serves.
    let (_, echoed) = call_text(&portcullis, "hostile.echo", &json!({"text": "alive"}));
    assert_eq!(echoed, "alive");

    // Without a sandbox every one of those escapes works: the failures above are the sandbox's.
    let uncontained: Vec<Value> = escapes
        .iter()
        // Not Portcullis's own state: uncontained, that would work and break the test run.
        .filter(|(attempt, _)| attempt["kind"] != "chmod" || attempt["path"] == json!(path(&key)))
        .map(|(attempt, _)| {
            let mut attempt = attempt.clone();
            attempt["terminate"] = json!(false);
            attempt
        })
        .collect();
    let outcomes = escape(&portcullis, "open", &uncontained);
    for (attempt, outcome) in uncontained.iter().zip(&outcomes) {
        let no_mptcp = attempt["kind"] == "mptcp_connect" && outcome["errno"] == 93;
        if attempt["kind"] == "env" {
            // Not inherited by this upstream either: the environment is scrubbed regardless.
            assert_eq!(outcome["ok"], false, "{attempt} -> {outcome}");
        } else {
            assert!(
                outcome["ok"] == true || no_mptcp,
                "uncontained {attempt} -> {outcome}"
            );
        }
    }
    assert!(accepted(&denied) >= 1);
    assert_eq!(datagrams(&udp), 1);
    assert_eq!(unix_accepted(&unix), 1);
    assert_eq!(
        std::fs::read_to_string(&victim).unwrap_or_default(),
        "escaped\n"
    );

    // The opt-out is loud, and both starts are in the evidence.
    assert!(
        portcullis.log().contains("upstream runs NOT contained")
            && portcullis.log().contains("upstream=open"),
        "{}",
        portcullis.log()
    );
    let sandboxes: Vec<Value> = records(&scratch.path().join("state/evidence.jsonl"))
        .into_iter()
        .filter(|event| event["kind"] == "sandbox_started")
        .collect();
    let hostile: Vec<&Value> = sandboxes
        .iter()
        .filter(|event| event["upstream"] == "hostile")
        .collect();
    assert_eq!(hostile.len(), 1, "{sandboxes:?}");
    assert_eq!(hostile[0]["contained"], true);
    assert!(
        hostile[0]["profile"]
            .as_str()
            .is_some_and(|digest| digest.starts_with("sha256:") && digest.len() == 71),
        "{sandboxes:?}"
    );
    let open: Vec<&Value> = sandboxes
        .iter()
        .filter(|event| event["upstream"] == "open")
        .collect();
    assert_eq!(open.len(), 1, "{sandboxes:?}");
    assert_eq!(open[0]["contained"], false);
    assert_eq!(open[0]["profile"], "none");
}

#[test]
fn every_start_records_its_sandbox_and_a_restart_prepares_it_again() {
    let scratch = Scratch::new();
    let work = scratch.sub("work");
    let config = scratch.config(Config::relay().upstream(Upstream::fixture("fx", &work)));
    let portcullis = Portcullis::http(&config);
    let ready = "upstream is ready upstream=fx";
    assert!(portcullis.wait_for_log(ready, Duration::from_secs(20)));
    let (crashed, _) = call_text(&portcullis, "fx.crash", &json!({}));
    assert!(
        crashed.get("error").is_some() || crashed["result"]["isError"] == true,
        "{crashed}"
    );
    let restarted = wait_until(Duration::from_secs(20), || {
        portcullis.log().matches(ready).count() >= 2
    });
    assert!(restarted, "{}", portcullis.log());
    let (_, echoed) = call_text(&portcullis, "fx.echo", &json!({"text": "again"}));
    assert_eq!(echoed, "again");
    let starts: Vec<Value> = records(&scratch.path().join("state/evidence.jsonl"))
        .into_iter()
        .filter(|event| event["kind"] == "sandbox_started" && event["upstream"] == "fx")
        .collect();
    assert_eq!(starts.len(), 2, "{starts:?}");
    assert_eq!(
        starts[0]["profile"], starts[1]["profile"],
        "the same grants, the same digest"
    );
    assert_eq!(starts[1]["contained"], true);
}

#[test]
fn a_sandbox_that_cannot_be_built_stops_the_start_and_is_retried() {
    let scratch = Scratch::new();
    let work = scratch.sub("work");
    // A granted path the sandbox cannot open: a symlink loop. (An old kernel cannot be faked;
    // its refusal takes the same path with the sandbox crate's message naming the missing ABI.)
    let looped = scratch.path().join("loop");
    std::os::unix::fs::symlink("loop", &looped).unwrap_or_else(|e| panic!("{e}"));
    let config = scratch.config(
        Config::relay()
            .upstream(Upstream::fixture("broken", &work).read_only(&["loop"]))
            .upstream(Upstream::fixture("fine", &work)),
    );
    let portcullis = Portcullis::http(&config);
    let reason = format!(
        "it cannot be contained: cannot open sandbox path `{}`",
        looped.display()
    );
    assert!(
        portcullis.wait_for_log(&reason, Duration::from_secs(10)),
        "{}",
        portcullis.log()
    );
    // The other upstream serves; this one's calls name why it is down.
    let (_, echoed) = call_text(&portcullis, "fine.echo", &json!({"text": "ok"}));
    assert_eq!(echoed, "ok");
    // Between two tries it is down for that reason (during a try it is "starting").
    let mut last = String::new();
    let down = wait_until(Duration::from_secs(20), || {
        last = call_text(&portcullis, "broken.echo", &json!({"text": "x"})).1;
        last.contains("cannot be contained")
    });
    assert!(down, "{last}");
    // Retried with backoff, never started uncontained, every failure recorded.
    let log = scratch.path().join("state/evidence.jsonl");
    let failures = || {
        records(&log)
            .into_iter()
            .filter(|event| {
                event["kind"] == "upstream_crashed"
                    && event["upstream"] == "broken"
                    && event["detail"]
                        .as_str()
                        .is_some_and(|detail| detail.contains(&reason))
            })
            .count()
    };
    wait_until(Duration::from_secs(10), || failures() >= 2);
    assert!(failures() >= 2, "{:?}", records(&log));
    assert!(
        !records(&log)
            .iter()
            .any(|event| event["kind"] == "sandbox_started" && event["upstream"] == "broken"),
        "a start was recorded"
    );
}

#[test]
fn the_filesystem_server_allowed_everything_reaches_only_its_root() {
    let scratch = Scratch::new();
    let work = scratch.sub("work");
    let outside = scratch.sub("outside");
    write(&work.join("inside.txt"), "inside\n");
    write(&outside.join("secret.txt"), "secret\n");
    // Inside the root, links that lead out: to a file, and to a directory.
    std::os::unix::fs::symlink(outside.join("secret.txt"), work.join("link.txt"))
        .unwrap_or_else(|e| panic!("{e}"));
    std::os::unix::fs::symlink(&outside, work.join("linked-dir")).unwrap_or_else(|e| panic!("{e}"));
    // `files` is allowed `/` by its own argument, and Portcullis's argument check is off (so it
    // is told no roots either): its own checks pass everything, and only the sandbox, granting
    // one root, stands between it and the rest of the machine. `rooted` is configured as usual
    // (its root as its argument, the argument check on), for what `files` cannot do.
    let files = Upstream::command("files", filesystem_server(Path::new("/")))
        .roots(&[&work])
        .without_path_check();
    let rooted = Upstream::command("rooted", filesystem_server(&work)).roots(&[&work]);
    let config = scratch.config(Config::relay().upstream(files).upstream(rooted));
    let portcullis = Portcullis::http(&config);
    let path = |path: &Path| path.display().to_string();
    let read = |file: &Path| {
        call_text(
            &portcullis,
            "files.read_text_file",
            &json!({ "path": path(file) }),
        )
    };
    let write_file = |upstream: &str, file: &Path| {
        call_text(
            &portcullis,
            &format!("{upstream}.write_file"),
            &json!({ "path": path(file), "content": "overwritten\n" }),
        )
    };
    let stopped_by_the_kernel = |(observed, text): (Value, String)| {
        assert_eq!(observed["result"]["isError"], true, "{observed}");
        assert!(text.contains("EACCES"), "not the kernel: {observed}");
    };

    let (_, allowed) = call_text(&portcullis, "files.list_allowed_directories", &json!({}));
    assert!(allowed.lines().any(|line| line.trim() == "/"), "{allowed}");
    let (_, text) = read(&work.join("inside.txt"));
    assert_eq!(text, "inside\n");
    let (observed, _) = write_file("files", &work.join("inside.txt"));
    assert_ne!(observed["result"]["isError"], true, "{observed}");
    assert_eq!(
        std::fs::read_to_string(work.join("inside.txt")).unwrap_or_default(),
        "overwritten\n"
    );
    // Today's behaviour, not a gap in the sandbox: to create a file the server lists every
    // directory from its allowed one down to the file's parent (looking for Unicode variants
    // of each name), and listing `/` is outside the root. Configured as usual, it can.
    let (observed, text) = write_file("files", &work.join("new.txt"));
    assert_eq!(observed["result"]["isError"], true, "{observed}");
    assert!(
        text.contains("EACCES") && text.contains("scandir '/'"),
        "{observed}"
    );
    let (observed, _) = write_file("rooted", &work.join("new.txt"));
    assert_ne!(observed["result"]["isError"], true, "{observed}");
    assert_eq!(
        std::fs::read_to_string(work.join("new.txt")).unwrap_or_default(),
        "overwritten\n"
    );

    stopped_by_the_kernel(read(&outside.join("secret.txt")));
    stopped_by_the_kernel(write_file("files", &outside.join("secret.txt")));
    stopped_by_the_kernel(write_file("files", &outside.join("new.txt")));
    stopped_by_the_kernel(read(&work.join("link.txt")));
    stopped_by_the_kernel(write_file("files", &work.join("link.txt")));
    stopped_by_the_kernel(read(&work.join("linked-dir/secret.txt")));
    stopped_by_the_kernel(write_file("files", &work.join("linked-dir/new.txt")));
    // Traversal, and the other Unicode form of a name inside the root (`caf\u{e9}` is in
    // `work`; `cafe\u{301}`, outside, looks the same and is another name to the kernel).
    stopped_by_the_kernel(read(&work.join("../outside/secret.txt")));
    std::fs::create_dir(work.join("caf\u{e9}")).unwrap_or_else(|e| panic!("{e}"));
    let nfd = scratch.sub("cafe\u{301}");
    write(&nfd.join("secret.txt"), "secret\n");
    stopped_by_the_kernel(read(&nfd.join("secret.txt")));
    assert_eq!(
        std::fs::read_to_string(outside.join("secret.txt")).unwrap_or_default(),
        "secret\n"
    );
    assert!(!outside.join("new.txt").exists());
}

#[test]
fn two_upstreams_with_different_grants_cannot_see_each_others_files_or_secrets() {
    let scratch = Scratch::new();
    let a = scratch.sub("a");
    let b = scratch.sub("b");
    write(&a.join("mine.txt"), "a's file\n");
    write(&b.join("mine.txt"), "b's file\n");
    // Each gets its own secret in its own environment; the argument check is off, so only the
    // kernel and the scrubbed environment stand between them.
    let a_upstream = Upstream::fixture("a", &a)
        .without_path_check()
        .env("A_SECRET", "secret-of-a");
    let b_upstream = Upstream::fixture("b", &b)
        .without_path_check()
        .env("B_SECRET", "secret-of-b");
    let config = scratch.config(Config::relay().upstream(a_upstream).upstream(b_upstream));
    let portcullis = Portcullis::http(&config);
    let path = |path: &Path| path.display().to_string();
    for (me, other, my_secret, their_secret) in [
        (&a, &b, "A_SECRET", "B_SECRET"),
        (&b, &a, "B_SECRET", "A_SECRET"),
    ] {
        let name = if me == &a { "a" } else { "b" };
        let attempts = [
            json!({"kind": "read", "path": path(&other.join("mine.txt"))}),
            json!({"kind": "write", "path": path(&other.join("planted.txt"))}),
            json!({"kind": "env", "name": their_secret}),
            // Controls: its own file and its own secret.
            json!({"kind": "read", "path": path(&me.join("mine.txt"))}),
            json!({"kind": "env", "name": my_secret}),
        ];
        let outcomes = escape(&portcullis, name, &attempts);
        for (attempt, outcome) in attempts.iter().zip(&outcomes).take(3) {
            assert_eq!(
                outcome["ok"], false,
                "{name} reached the other: {attempt} -> {outcome}"
            );
        }
        for (attempt, outcome) in attempts.iter().zip(&outcomes).skip(3) {
            assert_eq!(
                outcome["ok"], true,
                "{name}'s control failed: {attempt} -> {outcome}"
            );
        }
        assert!(!other.join("planted.txt").exists(), "{name} planted a file");
    }
}

/// The files (paths, not sockets, pipes or anonymous inodes) `pid` has open on descriptors 3
/// and up.
fn open_files(pid: u32) -> std::collections::BTreeSet<String> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap_or_else(|e| panic!("cannot list the descriptors of {pid}: {e}"))
        .filter_map(Result::ok)
        .filter(|entry| {
            entry
                .file_name()
                .to_string_lossy()
                .parse::<u32>()
                .is_ok_and(|fd| fd >= 3)
        })
        .filter_map(|entry| std::fs::read_link(entry.path()).ok())
        .map(|target| target.display().to_string())
        .filter(|target| target.starts_with('/'))
        .collect()
}

/// The processes `pid` started (every thread's children).
fn children_of(pid: u32) -> Vec<u32> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|tasks| {
            tasks
                .filter_map(Result::ok)
                .filter_map(|task| std::fs::read_to_string(task.path().join("children")).ok())
                .flat_map(|list| {
                    list.split_whitespace()
                        .filter_map(|p| p.parse().ok())
                        .collect::<Vec<u32>>()
                })
                .collect()
        })
        .unwrap_or_default()
}
