//! What only the machine can tell about a config, checked by `check` and logged by `serve`:
//! the variables upstreams and credentials read are set (or stored), programs are found on
//! the PATH the upstream itself will search, scripts an interpreter is given and roots
//! exist, and no root grants the whole disk; and an untrusted upstream told not to taint.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use portcullis_config::{Config, Taint, Upstream, UpstreamCredential, UpstreamTransport};

/// Where a child's program is looked up when its environment has no `PATH` (glibc's
/// `execvp`, and the gateway's sandbox rules, use the same).
const DEFAULT_SEARCH_PATH: &str = "/bin:/usr/bin";
/// Interpreters whose first non-option argument is the script they run.
const INTERPRETERS: &[&str] = &["node", "nodejs", "bun", "python", "ruby", "perl"];
/// Options after which an interpreter runs code given inline or a module, not a script.
const NO_SCRIPT: &[&str] = &["-m", "-c", "-e", "--eval", "-p", "--print"];
/// Endings that make an interpreter's argument a script path even without a `/`.
const SCRIPT_ENDINGS: &[&str] = &[".js", ".mjs", ".cjs", ".ts", ".py", ".rb", ".pl"];

/// What `check` found: errors fail it (and `serve` logs them); warnings are printed.
#[derive(Default)]
pub(crate) struct Findings {
    pub errors: Vec<String>,
    pub warnings: Vec<String>,
}

/// `values`: the upstreams' variables as `serve` would pass them (environment, then store).
pub(crate) fn check_environment(config: &Config, values: &BTreeMap<String, String>) -> Findings {
    let mut findings = Findings::default();
    variables(config, values, &mut findings.errors);
    findings.errors.extend(exposed_state(config));
    for upstream in &config.upstreams {
        roots(upstream, &mut findings);
        untainting(upstream, &mut findings.warnings);
        if let UpstreamTransport::Stdio {
            program,
            args,
            cwd,
            env,
            inherit_env,
            ..
        } = &upstream.transport
        {
            let name = &upstream.name;
            if !cwd.is_dir() {
                findings.errors.push(format!(
                    "upstream `{name}`: working directory `{}` does not exist",
                    cwd.display()
                ));
            }
            let (search_path, whence) =
                match (env.get("PATH"), inherit_env.iter().any(|n| n == "PATH")) {
                    (Some(path), _) => (path.clone(), "from its `env`"),
                    (None, true) => (
                        values.get("PATH").cloned().unwrap_or_default(),
                        "inherited from Portcullis",
                    ),
                    (None, false) => (
                        DEFAULT_SEARCH_PATH.to_owned(),
                        "the default: it neither sets nor inherits `PATH`",
                    ),
                };
            if let Some(problem) = program_problem(program, &search_path, whence, cwd) {
                findings
                    .errors
                    .push(format!("upstream `{name}`: {problem}"));
            }
            if let Some(script) = missing_script(program, args, cwd) {
                findings.errors.push(format!(
                    "upstream `{name}`: `{}` is to run the script `{}`, which does not exist",
                    program.display(),
                    script.display()
                ));
            }
        }
    }
    findings
}

/// The secrets credentials and headers are read from, and the store's key when a grant may
/// be kept.
fn variables(config: &Config, values: &BTreeMap<String, String>, errors: &mut Vec<String>) {
    let mut variables: Vec<(String, &str, bool)> = config
        .upstreams
        .iter()
        .filter_map(|upstream| upstream.credential.as_ref().map(|c| (upstream, c)))
        .flat_map(|(upstream, credential)| {
            credential
                .secret_variables()
                .into_iter()
                .map(move |variable| (format!("upstream `{}`", upstream.name), variable, false))
        })
        .collect();
    for upstream in &config.upstreams {
        if let UpstreamTransport::Http { remote, .. } = &upstream.transport {
            for header in &remote.headers {
                variables.push((
                    format!("upstream `{}` (header `{}`)", upstream.name, header.name),
                    header.env.as_str(),
                    true,
                ));
            }
        }
    }
    let delegated = config
        .upstreams
        .iter()
        .any(|u| matches!(u.credential, Some(UpstreamCredential::Delegated(_))));
    let (store, key_env) = (&config.credentials.store, &config.credentials.key_env);
    // Without the variable, the key file beside the store holds the key (made with a fresh
    // store); an existing store without either cannot be read.
    if delegated
        && std::env::var_os(key_env).is_none()
        && store.exists()
        && !portcullis_credentials::key_file_of(store).exists()
    {
        errors.push(format!(
            "the credential store `{}` exists, but its key is neither in `{key_env}` nor in `{}` (serve reads it at start)",
            store.display(),
            portcullis_credentials::key_file_of(store).display()
        ));
    }
    for (whose, variable, storable) in variables {
        let set = if storable {
            values.contains_key(variable)
        } else {
            std::env::var_os(variable).is_some()
        };
        if !set {
            errors.push(format!(
                "{whose}: the environment variable `{variable}` is not set{} (serve reads it at start)",
                if storable { " nor stored" } else { "" }
            ));
        }
    }
}

/// A root that does not exist makes the upstream's sandbox grant nothing there and every
/// path under it refused; `/` grants the whole disk, which is what roots are meant to narrow.
fn roots(upstream: &Upstream, findings: &mut Findings) {
    // A `url` upstream's roots name another machine's files.
    if matches!(upstream.transport, UpstreamTransport::Http { .. }) {
        return;
    }
    for root in &upstream.roots {
        if root == Path::new("/") {
            findings.warnings.push(format!(
                "upstream `{}`: root `/` grants it every file you can read and write; name the directories it needs",
                upstream.name
            ));
        } else if !root.is_dir() {
            findings.errors.push(format!(
                "upstream `{}`: root `{}` does not exist or is not a directory; create it, or remove it from `roots`",
                upstream.name,
                root.display()
            ));
        }
    }
}

/// What decides for Portcullis and what it keeps: the directories of the evidence log (and
/// beside it the pending approvals, the approvers' passkeys, the known recipients, the scoped
/// answers) and of the credential store; the configuration, its schema and policies (reloaded
/// when they change); the launchers' package directory (other upstreams' code); each per-user
/// upstream's state directory.
fn protected(config: &Config) -> Vec<PathBuf> {
    let mut paths: Vec<PathBuf> = [&config.evidence.file, &config.credentials.store]
        .into_iter()
        .filter_map(|file| file.parent().map(Path::to_path_buf))
        .collect();
    paths.push(config.file.clone());
    paths.extend(config.policy.schema.iter().cloned());
    paths.extend(config.policy.policies.iter().cloned());
    let env = |name: &str| std::env::var(name).ok();
    paths.extend(portcullis_launch::packages_dir(config, &env).ok());
    paths.extend(
        config
            .upstreams
            .iter()
            .filter_map(|upstream| match &upstream.instance {
                portcullis_config::Instance::PerUser(per_user) => Some(per_user.state.clone()),
                portcullis_config::Instance::Shared => None,
            }),
    );
    paths.iter().map(|path| resolved(path)).collect()
}

/// `path` with its links followed where it exists (else as written).
fn resolved(path: &Path) -> PathBuf {
    std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
}

/// INVARIANT: no contained upstream is granted a path that holds Portcullis's own state or
/// what decides for it: an upstream that could write there could approve its own calls (the
/// pending approvals, the passkeys), rewrite the policy, change another upstream's code, or
/// edit the evidence. A root, a per-identity root or a read-only path that is one of them or
/// above one is an error for `check`, and `serve` refuses it.
pub(crate) fn exposed_state(config: &Config) -> Vec<String> {
    let state = protected(config);
    let mut problems = Vec::new();
    for upstream in &config.upstreams {
        let UpstreamTransport::Stdio { containment, .. } = &upstream.transport else {
            continue;
        };
        let read_only = match containment {
            portcullis_config::Containment::Contained(grants) => grants.read_only.as_slice(),
            _ => &[],
        };
        let granted = upstream
            .roots
            .iter()
            .chain(
                upstream
                    .roots_for
                    .iter()
                    .flat_map(|entry| entry.roots.iter()),
            )
            .chain(read_only);
        for path in granted {
            let grant = resolved(path);
            if let Some(dir) = state.iter().find(|dir| dir.starts_with(&grant)) {
                problems.push(format!(
                    "upstream `{}`: `{}` holds Portcullis's state directory or configuration (`{}`: evidence, pending approvals, passkeys, credentials, policies or packages): an upstream granted it could approve its own calls, rewrite the policy or edit the evidence; grant a narrower directory, or keep Portcullis's files elsewhere",
                    upstream.name,
                    path.display(),
                    dir.display()
                ));
            }
        }
    }
    problems
}

/// `trusted = false` with `taint = "none"` is allowed (someone may read an upstream they do not
/// trust for content that cannot act), but it turns off the rule that makes side effects ask
/// once such content was read, so it is said out loud.
fn untainting(upstream: &Upstream, warnings: &mut Vec<String>) {
    if !upstream.trusted && upstream.taint == Taint::None {
        warnings.push(format!(
            "upstream `{}`: it is not trusted, yet `taint = \"none\"`: what it returns can steer the model, and the side effects that follow will not ask for approval because of it; remove `taint`, or set `trusted = true` if you trust it",
            upstream.name
        ));
    }
}

/// Why `program` would not be found when the upstream starts, if it would not.
fn program_problem(program: &Path, search_path: &str, whence: &str, cwd: &Path) -> Option<String> {
    if program.components().count() > 1 {
        return (!program.is_file()).then(|| {
            format!(
                "program `{}` was not found (relative paths are relative to the configuration's directory)",
                program.display()
            )
        });
    }
    if find(program, search_path, cwd).is_some() {
        return None;
    }
    let ours = std::env::var("PATH").unwrap_or_default();
    let suggestion = match find(program, &ours, cwd) {
        Some(found) => format!(
            "; it is `{}` on your PATH: write that absolute path in `command`, or add `inherit_env = [\"PATH\"]`",
            found.display()
        ),
        None => "; install it, or write its absolute path in `command`".to_owned(),
    };
    Some(format!(
        "program `{}` was not found on the upstream's PATH `{search_path}` ({whence}){suggestion}",
        program.display()
    ))
}

fn find(program: &Path, search_path: &str, cwd: &Path) -> Option<PathBuf> {
    std::env::split_paths(search_path)
        .map(|dir| cwd.join(dir).join(program))
        .find(|candidate| candidate.is_file())
}

/// The script an interpreter (`node server.js`, `python3 tools/server.py`) is given, when it
/// is missing: it would start and exit at once.
fn missing_script(program: &Path, args: &[String], cwd: &Path) -> Option<PathBuf> {
    let name = program.file_name()?.to_str()?;
    let interpreter = INTERPRETERS.iter().any(|known| {
        name == *known
            || name
                .strip_prefix(known)
                .is_some_and(|version| version.bytes().all(|b| b.is_ascii_digit() || b == b'.'))
    });
    if !interpreter {
        return None;
    }
    for arg in args {
        if NO_SCRIPT.contains(&arg.as_str()) {
            return None;
        }
        if arg.starts_with('-') {
            continue;
        }
        let looks_like_path =
            arg.contains('/') || SCRIPT_ENDINGS.iter().any(|ending| arg.ends_with(ending));
        let script = cwd.join(arg);
        return (looks_like_path && !script.exists()).then_some(script);
    }
    None
}
