//! The parent side: re-executes this test binary as a probe child, sandboxed or not, with a
//! deadline, and reads back one outcome per operation.

use std::io::Read as _;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use portcullis_sandbox::{Profile, prepare};

use crate::probe::{Op, Outcome, PROBE_ENV, RESULT_PREFIX};

/// A probe child that has not finished by then is killed and the test fails.
const DEADLINE: Duration = Duration::from_secs(30);
/// The same for a world (`world.rs`), which runs a few probe children of its own.
const WORLD_DEADLINE: Duration = Duration::from_secs(120);

/// The test binary itself, the C library and the loader: what the probe needs to start at all.
/// Paths a system lacks are only warnings.
pub(crate) fn base_profile() -> Profile {
    let exe = std::env::current_exe().unwrap();
    Profile {
        read_only: vec![
            exe,
            "/lib".into(),
            "/lib64".into(),
            "/usr/lib".into(),
            "/usr/lib64".into(),
        ],
        ..Profile::default()
    }
}

/// Runs `ops` in a child sandboxed with `profile`.
pub(crate) fn sandboxed(profile: &Profile, ops: &[Op]) -> Vec<Outcome> {
    sandboxed_with(profile, ops, |_| {})
}

/// Like [`sandboxed`], with `setup` applied to the command before the sandbox is installed (its
/// own `pre_exec` hooks then run first).
pub(crate) fn sandboxed_with(
    profile: &Profile,
    ops: &[Op],
    setup: impl FnOnce(&mut Command),
) -> Vec<Outcome> {
    let prepared = prepare(profile).unwrap();
    let mut command = probe_command(ops);
    setup(&mut command);
    prepared.install(&mut command);
    run(command, ops.len())
}

/// Runs `ops` in a child without a sandbox: the control that shows each action works at all.
pub(crate) fn unsandboxed(ops: &[Op]) -> Vec<Outcome> {
    unsandboxed_with(ops, |_| {})
}

pub(crate) fn unsandboxed_with(ops: &[Op], setup: impl FnOnce(&mut Command)) -> Vec<Outcome> {
    let mut command = probe_command(ops);
    setup(&mut command);
    run(command, ops.len())
}

/// The test binary, asked to run only the probe entry.
pub(crate) fn probe_command(ops: &[Op]) -> Command {
    let encoded: Vec<String> = ops.iter().map(Op::encode).collect();
    let mut command = Command::new(std::env::current_exe().unwrap());
    command
        .args([
            "--exact",
            "probe_child",
            "--nocapture",
            "--test-threads=1",
            "-q",
        ])
        .env(PROBE_ENV, encoded.join("\n"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

/// Spawns, waits up to the deadline, and parses the result lines.
pub(crate) fn run(command: Command, expected: usize) -> Vec<Outcome> {
    parse(&run_until(command, DEADLINE), expected)
}

/// Spawns, and waits up to the deadline of a world (a test with several probe children).
pub(crate) fn run_to_end(command: Command) -> Output {
    run_until(command, WORLD_DEADLINE)
}

/// Spawns with stdout and stderr piped, and waits up to `deadline` (then kills it and fails).
fn run_until(mut command: Command, deadline: Duration) -> Output {
    command.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = command.spawn().unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out = thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = stdout.read_to_end(&mut bytes);
        bytes
    });
    let err = thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = stderr.read_to_end(&mut bytes);
        bytes
    });
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("child ran past {deadline:?}");
        }
        thread::sleep(Duration::from_millis(10));
    };
    Output {
        status,
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    }
}

/// The outcomes a finished probe child printed, one per operation.
pub(crate) fn parse(output: &Output, expected: usize) -> Vec<Outcome> {
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let mut outcomes = vec![None; expected];
    for line in stdout.lines() {
        let Some(at) = line.find(RESULT_PREFIX) else {
            continue;
        };
        let mut fields = line[at + RESULT_PREFIX.len()..].splitn(2, '\t');
        let index: usize = fields.next().unwrap().parse().unwrap();
        outcomes[index] = Outcome::parse(fields.next().unwrap());
    }
    assert!(
        output.status.success() && outcomes.iter().all(Option::is_some),
        "probe child failed ({}):\nstdout:\n{stdout}\nstderr:\n{stderr}",
        output.status
    );
    outcomes.into_iter().map(Option::unwrap).collect()
}

/// Asserts each outcome against its expectation, reporting every mismatch at once.
pub(crate) fn check(label: &str, ops: &[Op], outcomes: &[Outcome], expected: &[Expect]) {
    let mut problems = Vec::new();
    for ((op, outcome), expect) in ops.iter().zip(outcomes).zip(expected) {
        if !expect.matches(outcome) {
            problems.push(format!("  {op:?}: got {outcome}, expected {expect:?}"));
        }
    }
    assert!(problems.is_empty(), "{label}:\n{}", problems.join("\n"));
}

/// What an outcome should be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Expect {
    Ok,
    Errno(i32),
    /// Anything but this errno: a control whose only job is to show the sandbox's errno did not
    /// come from somewhere else (a family the kernel lacks, a missing capability).
    Not(i32),
    Value(String),
}

impl Expect {
    /// Whether `outcome` is what this expects.
    pub(crate) fn matches_outcome(&self, outcome: &Outcome) -> bool {
        self.matches(outcome)
    }

    fn matches(&self, outcome: &Outcome) -> bool {
        match (self, outcome) {
            (Expect::Ok, Outcome::Ok) => true,
            (Expect::Errno(want), Outcome::Errno(got)) => want == got,
            (Expect::Not(errno), outcome) => *outcome != Outcome::Errno(*errno),
            (Expect::Value(want), Outcome::Value(got)) => want == got,
            _ => false,
        }
    }
}

/// A temp dir laid out like a home with secrets, a read-only tree and a read-write tree.
pub(crate) struct Layout {
    _dir: tempfile::TempDir,
    pub root: PathBuf,
}

impl Layout {
    pub(crate) fn new() -> Layout {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        for sub in ["outside", "home/.ssh", "ro", "rw"] {
            std::fs::create_dir_all(root.join(sub)).unwrap();
        }
        std::fs::write(root.join("outside/shadow"), "root:$6$secret\n").unwrap();
        std::fs::write(root.join("outside/victim"), "keep me\n").unwrap();
        std::fs::write(
            root.join("home/.ssh/id_rsa"),
            "a stand-in for a private key, for the containment test\n",
        )
        .unwrap();
        std::fs::write(root.join("ro/readable.txt"), "hello\n").unwrap();
        std::fs::write(root.join("rw/existing.txt"), "hello\n").unwrap();
        std::os::unix::fs::symlink(root.join("outside"), root.join("rw/link-out")).unwrap();
        Layout { _dir: dir, root }
    }

    pub(crate) fn path(&self, relative: &str) -> PathBuf {
        self.root.join(relative)
    }

    /// The base profile with `ro/` read-only and `rw/` read-write.
    pub(crate) fn profile(&self) -> Profile {
        let mut profile = base_profile();
        profile.read_only.push(self.path("ro"));
        profile.read_write.push(self.path("rw"));
        profile
    }
}

/// A loopback TCP port nothing listens on (bound and released).
pub(crate) fn free_tcp_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
