//! `portcullis doctor`: what this machine gives Portcullis, one line each, `OK`, `WARN` or
//! `FAIL` with the fix: the kernel's containment (landlock, seccomp, user namespaces), the
//! programs the usual server lines run (node/npx, uv/uvx and python3, docker/podman), which MCP
//! clients' configurations exist and whether they start Portcullis, and, for a configuration,
//! whether it checks, its state directory is private, and each upstream starts.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use portcullis_sandbox::LandlockSupport;

use crate::import::CLIENTS;

/// How one finding reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Level {
    Ok,
    Warn,
    Fail,
}

/// The findings so far, printed as they come.
#[derive(Default)]
struct Report {
    failed: usize,
}

impl Report {
    fn line(&mut self, level: Level, what: &str, fix: Option<&str>) {
        let tag = match level {
            Level::Ok => "OK  ",
            Level::Warn => "WARN",
            Level::Fail => {
                self.failed += 1;
                "FAIL"
            }
        };
        match fix {
            Some(fix) => println!("{tag}  {what}; fix: {fix}"),
            None => println!("{tag}  {what}"),
        }
    }
}

/// Runs every check; fails if any line is `FAIL`. `config` is checked if given, else the file
/// `import --write` writes, if it exists.
pub(crate) fn run(config: Option<PathBuf>, home: Option<&Path>) -> anyhow::Result<()> {
    let mut report = Report::default();
    kernel(&mut report);
    programs(&mut report);
    if let Some(home) = home {
        clients(&mut report, home);
    }
    let config = config.or_else(|| {
        home.map(crate::import::default_path)
            .filter(|path| path.is_file())
    });
    match config {
        Some(path) => configuration(&mut report, &path),
        None => report.line(
            Level::Warn,
            "no configuration given, and none at the usual place",
            Some("`portcullis import --write`, or `portcullis doctor --config FILE`"),
        ),
    }
    if report.failed > 0 {
        anyhow::bail!("{} of the checks failed", report.failed);
    }
    Ok(())
}

fn kernel(report: &mut Report) {
    let support = portcullis_sandbox::probe();
    match support.landlock {
        LandlockSupport::Abi(abi) if abi >= 6 => report.line(
            Level::Ok,
            &format!("kernel: landlock ABI {abi}: stdio upstreams run contained"),
            None,
        ),
        LandlockSupport::Abi(abi) => report.line(
            Level::Fail,
            &format!("kernel: landlock ABI {abi}; containment needs 6 (signal and socket scoping), so no stdio upstream starts"),
            Some("a kernel of 6.12 or later"),
        ),
        LandlockSupport::NotEnabled => report.line(
            Level::Fail,
            "kernel: landlock is built in but not enabled, so no stdio upstream starts",
            Some("add `landlock` to the `lsm=` boot parameter"),
        ),
        LandlockSupport::NotBuilt => report.line(
            Level::Fail,
            "kernel: built without landlock, so no stdio upstream starts",
            Some("a kernel with CONFIG_SECURITY_LANDLOCK"),
        ),
    }
    if support.seccomp_filter {
        report.line(Level::Ok, "kernel: seccomp filters", None);
    } else {
        report.line(
            Level::Fail,
            "kernel: no seccomp filters, so no stdio upstream starts",
            Some("a kernel with CONFIG_SECCOMP_FILTER"),
        );
    }
    let read = |path: &str| {
        std::fs::read_to_string(path)
            .ok()
            .map(|text| text.trim().to_owned())
    };
    let namespaces = read("/proc/sys/user/max_user_namespaces")
        .and_then(|n| n.parse::<u64>().ok())
        .unwrap_or(0);
    let restricted = read("/proc/sys/kernel/apparmor_restrict_unprivileged_userns")
        .is_some_and(|value| value == "1");
    if namespaces == 0 {
        report.line(
            Level::Warn,
            "kernel: no user namespaces: an upstream granted host names (`tcp_connect = [\"host:443\"]`) cannot start",
            Some("`sysctl user.max_user_namespaces=15000`"),
        );
    } else if restricted {
        report.line(
            Level::Warn,
            "kernel: AppArmor restricts unprivileged user namespaces: an upstream granted host names cannot start",
            Some("`sysctl kernel.apparmor_restrict_unprivileged_userns=0`, or an AppArmor profile for portcullis"),
        );
    } else {
        report.line(
            Level::Ok,
            "kernel: user namespaces (host-name grants)",
            None,
        );
    }
}

fn programs(report: &mut Report) {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let find = |program: &str| {
        std::env::split_paths(&path)
            .map(|dir| dir.join(program))
            .find(|candidate| {
                candidate
                    .metadata()
                    .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
            })
    };
    let wanted: [(&[&str], &str, &str); 3] = [
        (
            &["node", "npx"],
            "npx servers",
            "install Node.js 20 or later",
        ),
        (
            &["python3"],
            "uvx and pipx servers (installed with its venv and pip)",
            "install python3 with its venv module",
        ),
        (
            &["docker"],
            "docker run servers",
            "install Docker or Podman",
        ),
    ];
    for (programs, serves, fix) in wanted {
        let missing: Vec<&str> = programs
            .iter()
            .copied()
            .filter(|program| find(program).is_none())
            .collect();
        let podman = programs == ["docker"] && find("podman").is_some();
        let engine =
            std::env::var_os("DOCKER_HOST").is_some() || Path::new("/var/run/docker.sock").exists();
        if programs == ["docker"] && missing.is_empty() && !podman && !engine {
            report.line(
                Level::Warn,
                "docker found, but no engine answers at /var/run/docker.sock: docker run servers cannot run",
                Some("start the Docker engine, or set DOCKER_HOST"),
            );
            continue;
        }
        if missing.is_empty() || podman {
            report.line(
                Level::Ok,
                &format!(
                    "{} found: {serves} can be prepared and run",
                    programs.join(", ")
                ),
                None,
            );
        } else {
            report.line(
                Level::Warn,
                &format!("{} not on PATH: {serves} cannot run", missing.join(", ")),
                Some(fix),
            );
        }
    }
}

fn clients(report: &mut Report, home: &Path) {
    let mut found = false;
    for (client, places) in CLIENTS {
        for place in *places {
            let Some(rest) = place.strip_prefix("~/") else {
                continue;
            };
            let file = home.join(rest);
            let Ok(text) = std::fs::read_to_string(&file) else {
                continue;
            };
            found = true;
            if starts_portcullis(&text) {
                report.line(
                    Level::Ok,
                    &format!("{client}: `{}` starts Portcullis", file.display()),
                    None,
                );
            } else {
                report.line(
                    Level::Warn,
                    &format!("{client}: `{}` does not start Portcullis", file.display()),
                    Some(&format!(
                        "`portcullis import --from {client} --write`, then `portcullis install --client {client} --replace`"
                    )),
                );
            }
        }
    }
    if !found {
        report.line(
            Level::Warn,
            "no MCP client's configuration found in its usual place",
            Some("`portcullis install --client NAME` once your client is installed"),
        );
    }
}

/// Whether a client's file has a server that runs a program named `portcullis` with `serve`.
fn starts_portcullis(text: &str) -> bool {
    text.lines().any(|line| line.contains("portcullis")) && {
        let runs = |command: &str, args: &[String]| {
            Path::new(command)
                .file_name()
                .is_some_and(|name| name == "portcullis")
                && args.iter().any(|arg| arg == "serve")
        };
        let json = serde_json::from_str::<serde_json::Value>(text).ok();
        let toml = text.parse::<toml_edit::DocumentMut>().ok();
        let from_json = json.is_some_and(|document| {
            let mut stack = vec![&document];
            let mut hit = false;
            while let Some(value) = stack.pop() {
                if let serde_json::Value::Object(members) = value {
                    if let Some(command) = members.get("command").and_then(|c| c.as_str()) {
                        let args: Vec<String> = members
                            .get("args")
                            .and_then(|a| a.as_array())
                            .into_iter()
                            .flatten()
                            .filter_map(|arg| arg.as_str().map(str::to_owned))
                            .collect();
                        hit |= runs(command, &args);
                    }
                    stack.extend(members.values());
                }
            }
            hit
        });
        let from_toml = toml.is_some_and(|document| {
            document
                .get("mcp_servers")
                .and_then(toml_edit::Item::as_table_like)
                .is_some_and(|servers| {
                    servers.iter().any(|(_, server)| {
                        let command = server.get("command").and_then(toml_edit::Item::as_str);
                        let args: Vec<String> = server
                            .get("args")
                            .and_then(toml_edit::Item::as_array)
                            .into_iter()
                            .flatten()
                            .filter_map(|arg| arg.as_str().map(str::to_owned))
                            .collect();
                        command.is_some_and(|command| runs(command, &args))
                    })
                })
        });
        from_json || from_toml
    }
}

fn configuration(report: &mut Report, path: &Path) {
    match crate::check(path, true) {
        Ok(()) => report.line(
            Level::Ok,
            &format!("`{}` checks, and every upstream started", path.display()),
            None,
        ),
        Err(error) => report.line(
            Level::Fail,
            &format!("`{}`: {error:#}", path.display()),
            Some("the message says what; `portcullis check --config FILE --start` again after"),
        ),
    }
    let Ok(config) = crate::load(path) else {
        return;
    };
    let mut dirs: Vec<PathBuf> = [
        config.evidence.file.parent(),
        config.credentials.store.parent(),
    ]
    .into_iter()
    .flatten()
    .map(Path::to_path_buf)
    .collect();
    dirs.dedup();
    for dir in dirs.iter().filter(|dir| dir.is_dir()) {
        let mode = std::fs::metadata(dir)
            .map(|meta| meta.permissions().mode() & 0o777)
            .unwrap_or_default();
        if mode & 0o022 == 0 {
            report.line(
                Level::Ok,
                &format!("state `{}` is not writable by others", dir.display()),
                None,
            );
        } else {
            report.line(
                Level::Fail,
                &format!(
                    "state `{}` is writable by others (mode {mode:o}): they could replace the evidence or the stores",
                    dir.display()
                ),
                Some(&format!("`chmod go-w {}`", dir.display())),
            );
        }
    }
    let store = &config.credentials.store;
    let key_file = portcullis_credentials::key_file_of(store);
    for (what, file) in [
        ("credential store", store),
        ("credential store's key", &key_file),
    ] {
        let Ok(meta) = std::fs::metadata(file) else {
            continue;
        };
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 == 0 {
            report.line(
                Level::Ok,
                &format!("{what} `{}` is yours alone", file.display()),
                None,
            );
        } else {
            report.line(
                Level::Fail,
                &format!(
                    "{what} `{}` is readable by others (mode {mode:o})",
                    file.display()
                ),
                Some(&format!("`chmod 600 {}`", file.display())),
            );
        }
    }
}
