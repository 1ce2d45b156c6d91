//! A PostgreSQL server of the tests' own: Debian's `initdb` and `pg_ctl` into a temporary
//! directory, listening on 127.0.0.1 at a free port (its unix socket in that directory too),
//! password-authenticated over TCP, stopped and removed when dropped.
//!
//! Under root it runs as the `postgres` system user the Debian package creates, because the
//! server refuses to run as root. Every step is bounded in time.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How long `initdb` and a start or stop may take before the test fails.
const STEP_LIMIT: Duration = Duration::from_secs(60);

/// A running PostgreSQL server in a temporary directory; stopped and removed on drop.
pub struct TestPostgres {
    /// Removed after the server has stopped (fields drop in order, after `Drop::drop`).
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
    password: String,
    /// The user the server runs as, when not this process's own (under root).
    run_as: Option<&'static str>,
    running: bool,
    /// Whether it speaks TLS, with the certificate `ca.pem` in its directory signed.
    tls: bool,
}

impl TestPostgres {
    /// Makes a cluster and starts it; panics (the test fails) saying which step did not work.
    pub fn start() -> Self {
        Self::make(false)
    }

    /// Like [`Self::start`], speaking TLS too (`ssl = on`) with a certificate for `localhost`
    /// and `127.0.0.1` signed by a certificate authority of its own ([`Self::ca_file`]).
    pub fn start_with_tls() -> Self {
        Self::make(true)
    }

    /// The PEM file of the certificate authority that signed a TLS server's certificate.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    fn make(tls: bool) -> Self {
        let bin = server_bin();
        let dir = tempfile::Builder::new()
            .prefix("portcullis-pg-")
            .tempdir()
            .unwrap_or_else(|e| panic!("cannot create a temporary directory: {e}"));
        let run_as = is_root().then_some("postgres");
        if let Some(user) = run_as {
            bounded(
                Command::new("chown").arg(user).arg(dir.path()),
                "chown the cluster directory",
            );
        }
        let password = random_password();
        let pwfile = dir.path().join("password");
        std::fs::write(&pwfile, &password).unwrap_or_else(|e| panic!("write password: {e}"));
        if let Some(user) = run_as {
            bounded(
                Command::new("chown").arg(user).arg(&pwfile),
                "chown the password file",
            );
        }
        let mut postgres = Self {
            port: 0,
            password,
            run_as,
            running: false,
            tls,
            bin,
            dir,
        };
        let mut initdb = postgres.command("initdb");
        bounded(
            initdb
                .arg("-D")
                .arg(postgres.data())
                .args(["-U", "portcullis", "-E", "UTF8", "--no-sync"])
                .args(["--auth-local=trust", "--auth-host=scram-sha-256"])
                .arg(format!("--pwfile={}", pwfile.display())),
            "initdb",
        );
        if tls {
            postgres.write_certificates();
        }
        postgres.resume();
        postgres
    }

    /// The connection string: TCP on loopback, with the password (a secret, as in production).
    pub fn url(&self) -> String {
        format!(
            "postgres://portcullis:{}@127.0.0.1:{}/postgres",
            self.password, self.port
        )
    }

    /// The password in [`Self::url`], for tests that search output for it.
    pub fn password(&self) -> &str {
        &self.password
    }

    /// Stops the server (the data stays), as an outage would.
    pub fn pause(&mut self) {
        if self.running {
            let mut stop = self.command("pg_ctl");
            bounded(
                stop.arg("-D")
                    .arg(self.data())
                    .args(["-m", "immediate", "-w", "-t", "30", "stop"]),
                "pg_ctl stop",
            );
            self.running = false;
        }
    }

    /// Starts the server (again), on a new free port the first time and on the same port
    /// after [`Self::pause`].
    pub fn resume(&mut self) {
        let first = self.port == 0;
        for _ in 0..3 {
            if first {
                self.port = crate::free_port();
            }
            // `fsync=off` only skips flushing to the disk, which a test's machine does not
            // lose; an acknowledged commit still survives `pause` (an immediate stop).
            let mut options = format!(
                "-c listen_addresses=127.0.0.1 -p {} -k {} -c fsync=off -c full_page_writes=off",
                self.port,
                self.dir.path().display()
            );
            if self.tls {
                options
                    .push_str(" -c ssl=on -c ssl_cert_file=server.crt -c ssl_key_file=server.key");
            }
            let mut start = self.command("pg_ctl");
            start
                .arg("-D")
                .arg(self.data())
                .arg("-l")
                .arg(self.dir.path().join("server.log"))
                .args(["-w", "-t", "30", "-o", &options, "start"]);
            if run(&mut start).is_ok() {
                self.running = true;
                return;
            }
            if !first {
                break;
            }
        }
        let log = std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default();
        panic!("postgres did not start; its log:\n{log}");
    }

    /// A certificate authority (`ca.pem`) and the server's certificate and key it signed, in
    /// the data directory, the key readable by the server's user alone (the server refuses
    /// another).
    fn write_certificates(&self) {
        use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
        let mut ca_params = CertificateParams::new(Vec::<String>::new())
            .unwrap_or_else(|e| panic!("certificate authority: {e}"));
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = KeyPair::generate()
            .and_then(|key| CertifiedIssuer::self_signed(ca_params, key))
            .unwrap_or_else(|e| panic!("certificate authority: {e}"));
        let key = KeyPair::generate().unwrap_or_else(|e| panic!("server key: {e}"));
        let names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
        let server = CertificateParams::new(names)
            .and_then(|params| params.signed_by(&key, &ca))
            .unwrap_or_else(|e| panic!("server certificate: {e}"));
        std::fs::write(self.ca_file(), ca.pem()).unwrap_or_else(|e| panic!("ca.pem: {e}"));
        for (name, text) in [
            ("server.crt", server.pem()),
            ("server.key", key.serialize_pem()),
        ] {
            let path = self.data().join(name);
            std::fs::write(&path, text).unwrap_or_else(|e| panic!("{name}: {e}"));
            std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600))
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            if let Some(user) = self.run_as {
                bounded(
                    Command::new("chown").arg(user).arg(&path),
                    "chown the server's certificate",
                );
            }
        }
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn command(&self, program: &str) -> Command {
        let program = self.bin.join(program);
        let mut command = match self.run_as {
            Some(user) => {
                let mut command = Command::new("runuser");
                command.args(["-u", user, "--"]).arg(program);
                command
            }
            None => Command::new(program),
        };
        command.current_dir(self.dir.path());
        command
    }
}

impl Drop for TestPostgres {
    fn drop(&mut self) {
        if self.running {
            let mut stop = self.command("pg_ctl");
            stop.arg("-D")
                .arg(self.data())
                .args(["-m", "immediate", "-w", "-t", "10", "stop"]);
            let _ = run(&mut stop);
        }
    }
}

/// A TLS client that trusts only the certificate authority in `ca_file` (none: no server at
/// all), as a test's database connections are verified.
pub fn tls_client(ca_file: Option<&std::path::Path>) -> rustls::ClientConfig {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject as _;
    let mut roots = rustls::RootCertStore::empty();
    if let Some(file) = ca_file {
        for certificate in CertificateDer::pem_file_iter(file).unwrap_or_else(|e| panic!("ca: {e}"))
        {
            roots
                .add(certificate.unwrap_or_else(|e| panic!("ca: {e}")))
                .unwrap_or_else(|e| panic!("ca: {e}"));
        }
    }
    rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap_or_else(|e| panic!("tls: {e}"))
    .with_root_certificates(roots)
    .with_no_client_auth()
}

/// The directory of the newest installed server's programs (`/usr/lib/postgresql/N/bin`).
fn server_bin() -> PathBuf {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("pg_ctl").is_file().then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin).unwrap_or_else(|| {
        panic!("no PostgreSQL server under /usr/lib/postgresql: run scripts/setup.sh")
    })
}

fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|meta| meta.uid() == 0)
}

/// A password nobody guesses, without a random-number crate: the standard library's
/// randomly keyed hasher, twice.
fn random_password() -> String {
    use std::hash::{BuildHasher, RandomState};
    let a = RandomState::new().hash_one(std::process::id());
    let b = RandomState::new().hash_one(Instant::now());
    format!("pgpw{a:016x}{b:016x}")
}

/// Runs `command` to its end within [`STEP_LIMIT`], or panics naming `what`.
fn bounded(command: &mut Command, what: &str) {
    if let Err(error) = run(command) {
        panic!("{what}: {error}");
    }
}

/// Runs `command` to its end within [`STEP_LIMIT`] (killed past it); `Err` says why it failed.
fn run(command: &mut Command) -> Result<(), String> {
    let output = tempfile::NamedTempFile::new().map_err(|e| e.to_string())?;
    let sink =
        |file: &tempfile::NamedTempFile| file.reopen().map(Stdio::from).map_err(|e| e.to_string());
    let mut child = command
        .stdin(Stdio::null())
        .stdout(sink(&output)?)
        .stderr(sink(&output)?)
        .spawn()
        .map_err(|e| format!("cannot run {command:?}: {e}"))?;
    let deadline = Instant::now() + STEP_LIMIT;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("{command:?} took longer than {STEP_LIMIT:?}"));
            }
        }
    };
    if status.success() {
        Ok(())
    } else {
        let printed = std::fs::read_to_string(output.path()).unwrap_or_default();
        Err(format!("{command:?} failed ({status}): {printed}"))
    }
}
