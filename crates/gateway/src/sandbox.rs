//! Containment of a stdio upstream: the environment it gets, and the sandbox profile compiled
//! from its config (roots read-write; what it needs to run, derived, read-only; granted ports or
//! host names; limits), prepared afresh at every start so that a restart sees paths created
//! since (and host names get a fresh network and forwarder).
//!
//! What a program needs to run is derived by the rules in [`runtime_paths`], each there for a
//! reason a person can check; anything more is config's to grant (`read_only`). The derivation
//! reads the filesystem (which program the child's `PATH` finds, a script's `#!` line, package
//! manifests) but never Portcullis's environment: the child's environment is a parameter.

use std::collections::BTreeMap;
use std::fs;
use std::io::Read as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use portcullis_config::{Containment, SandboxGrants, Upstream, UpstreamTransport};
use portcullis_sandbox::{Limits, Prepared, Profile, SandboxError};

/// What a dynamically linked program reads before its own code runs: the loader, the shared
/// libraries, the loader's cache; and the local time zone, so that times read as they do
/// outside. `/usr` holds the system's interpreters and their libraries too.
const SYSTEM_READ_ONLY: &[&str] = &[
    "/usr",
    "/lib",
    "/lib64",
    "/etc/ld.so.cache",
    "/etc/localtime",
];
/// Randomness that programs open by path (most use `getrandom`, which needs no grant), and the
/// OpenSSL configuration that Node and Python's `ssl` read at start-up even without a network.
const SUPPORT_READ_ONLY: &[&str] = &["/dev/urandom", "/dev/random", "/etc/ssl/openssl.cnf"];
/// The null device, read and write: programs open it for their own children's stdio.
const SUPPORT_READ_WRITE: &[&str] = &["/dev/null"];
/// What name resolution reads, granted only with a TCP port: host names (`/etc/hosts`) and the
/// resolver's configuration. Without a port they would be of no use; with host names the
/// upstream reads the sandbox's own files mounted over these (granted by the sandbox), so the
/// system's are not granted, and `check` does not list them as if they were read.
const RESOLVER_READ_ONLY: &[&str] = &["/etc/hosts", "/etc/nsswitch.conf", "/etc/resolv.conf"];
/// What address selection and TLS read, granted with a TCP port or host name: the order of
/// addresses (`/etc/gai.conf`) and CA certificates.
const NETWORK_READ_ONLY: &[&str] = &[
    "/etc/gai.conf",
    "/etc/ssl/certs",
    "/etc/pki/tls/certs",
    "/etc/ca-certificates",
];
/// Where glibc's `execvp` looks for a program when the child's environment has no `PATH`.
const DEFAULT_SEARCH_PATH: &str = "/bin:/usr/bin";
/// Files that mark a project's root, whose dependencies live beneath it.
const PROJECT_MANIFESTS: &[&str] = &["package.json", "pyproject.toml"];
/// How many directories above a file's own a project root may be: entry points sit in `dist/`,
/// `build/` or `src/<package>/`. Bounded so that a stray manifest high up (in a home directory)
/// cannot grant everything beneath it.
const PROJECT_ROOT_DEPTH: usize = 2;
/// How many `#!` interpreters are followed (a script run by a script run by ...).
const INTERPRETER_DEPTH: usize = 4;
/// The most of a program's first line read to find its `#!` interpreter (the kernel reads 256).
const SHEBANG_MAX: u64 = 256;

/// The sandbox of one start, or why there is none.
#[expect(
    clippy::large_enum_variant,
    reason = "one per upstream start, moved once into the command"
)]
pub(crate) enum StartSandbox {
    Contained(Prepared),
    /// `contain = false` in config: the child runs with Portcullis's own access.
    Uncontained,
    /// A container engine's client: the container holds the server, with Portcullis's options.
    Container,
}

/// The environment a stdio child runs with: exactly config's `env` plus the values of the
/// `inherit_env` names that `inherited` holds (Portcullis's own, read by the caller).
pub(crate) fn child_environment(
    upstream: &Upstream,
    inherited: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let mut child_env = BTreeMap::new();
    if let UpstreamTransport::Stdio {
        env, inherit_env, ..
    } = &upstream.transport
    {
        for name in inherit_env {
            if let Some(value) = inherited.get(name) {
                child_env.insert(name.clone(), value.clone());
            }
        }
        child_env.extend(env.iter().map(|(k, v)| (k.clone(), v.clone())));
    }
    // A variable named like a secret holds one: whatever the upstream answers or writes on
    // stderr (which a failed start quotes) is redacted of it.
    for (name, value) in &child_env {
        if is_secret_variable(name) {
            crate::secrets::Secrets::global()
                .register(&format!("the upstream's variable `{name}`"), value);
        }
    }
    child_env
}

/// Whether an environment variable's name says it holds a secret: as an argument member would
/// (`*_TOKEN`, `*PASSWORD*`, `*API_KEY*`, ...), or it ends in `KEY` (`OPENAI_KEY`).
fn is_secret_variable(name: &str) -> bool {
    portcullis_audit::is_secret_name(name) || name.to_ascii_lowercase().ends_with("key")
}

/// Builds the sandbox of one start of a stdio upstream (`None` for an HTTP upstream). An error
/// means the kernel cannot enforce the profile, or a granted path is unusable: the upstream must
/// not start.
pub(crate) fn prepare_start(
    upstream: &Upstream,
    child_env: &BTreeMap<String, String>,
) -> Option<Result<StartSandbox, SandboxError>> {
    let UpstreamTransport::Stdio {
        program,
        args,
        cwd,
        containment,
        ..
    } = &upstream.transport
    else {
        return None;
    };
    let grants = match containment {
        Containment::Uncontained => return Some(Ok(StartSandbox::Uncontained)),
        Containment::Container => return Some(Ok(StartSandbox::Container)),
        Containment::Contained(grants) => grants,
    };
    let launch = Launch {
        program,
        args,
        cwd,
        env: child_env,
    };
    let profile = compile_profile(&launch, &upstream.roots, grants);
    // The forwarder of host-name grants logs from its own thread, inside this span.
    let _span = tracing::info_span!("sandbox", upstream = %upstream.name).entered();
    Some(portcullis_sandbox::prepare(&profile).map(StartSandbox::Contained))
}

/// How one upstream is contained, for `portcullis check`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContainmentReport {
    /// An HTTP upstream: no process of Portcullis's to contain.
    Remote,
    /// `contain = false`.
    Uncontained,
    /// Contained by its container engine: the final command line.
    Container(String),
    /// The effective sandbox, as `describe()` renders it, and its profile's digest (as the
    /// upstream's `sandbox_started` record names it).
    Contained { description: String, digest: String },
    /// Why it cannot be contained, so the upstream would not start.
    Unenforceable(String),
}

/// What each upstream's sandbox would be if it started now, in configuration order.
pub fn containment_reports(
    config: &portcullis_config::Config,
    inherited: &BTreeMap<String, String>,
) -> Vec<(portcullis_core::UpstreamName, ContainmentReport)> {
    config
        .upstreams
        .iter()
        .map(|upstream| {
            let report = match prepare_start(upstream, &child_environment(upstream, inherited)) {
                None => ContainmentReport::Remote,
                Some(Ok(StartSandbox::Uncontained)) => ContainmentReport::Uncontained,
                Some(Ok(StartSandbox::Container)) => {
                    ContainmentReport::Container(match &upstream.transport {
                        UpstreamTransport::Stdio { program, args, .. } => {
                            std::iter::once(program.display().to_string())
                                .chain(args.iter().cloned())
                                .collect::<Vec<_>>()
                                .join(" ")
                        }
                        UpstreamTransport::Http { .. } => String::new(),
                    })
                }
                Some(Ok(StartSandbox::Contained(prepared))) => ContainmentReport::Contained {
                    description: prepared.describe(),
                    digest: profile_digest(&prepared),
                },
                Some(Err(error)) => ContainmentReport::Unenforceable(error.to_string()),
            };
            (upstream.name.clone(), report)
        })
        .collect()
}

/// The digest of a prepared sandbox's profile: what the evidence records of each contained
/// start, and what `check` and the console show.
pub(crate) fn profile_digest(prepared: &Prepared) -> String {
    portcullis_audit::digest_bytes(prepared.digest_input().as_bytes())
}

/// The parts of a stdio upstream's config that decide what it needs to run.
pub(crate) struct Launch<'a> {
    pub program: &'a Path,
    pub args: &'a [String],
    pub cwd: &'a Path,
    pub env: &'a BTreeMap<String, String>,
}

/// The profile: roots read-write, [`runtime_paths`] and config's `read_only` read-only,
/// config's ports or host names, unix sockets and limits.
pub(crate) fn compile_profile(
    launch: &Launch<'_>,
    roots: &[PathBuf],
    grants: &SandboxGrants,
) -> Profile {
    let mut read_write: Vec<PathBuf> = roots.to_vec();
    read_write.extend(existing(SUPPORT_READ_WRITE));
    let ports = !grants.tcp_connect.is_empty() || !grants.tcp_bind.is_empty();
    let network = ports || !grants.tcp_connect_hosts.is_empty();
    let mut derived = runtime_paths(launch);
    if network {
        derived.extend(existing(NETWORK_READ_ONLY));
    }
    // With host names the upstream has its own (a bind port beside them binds inside its
    // network, and resolves from its own files too).
    if ports && grants.tcp_connect_hosts.is_empty() {
        derived.extend(existing(RESOLVER_READ_ONLY));
    }
    // Config's own paths are kept as written, so a missing one is reported; derived ones exist.
    let mut read_only = without_covered(derived, &read_write);
    read_only.extend(grants.read_only.iter().cloned());
    let limits = &grants.limits;
    Profile {
        read_only,
        read_write,
        tcp_connect: grants.tcp_connect.clone(),
        tcp_connect_hosts: grants.tcp_connect_hosts.clone(),
        tcp_bind: grants.tcp_bind.clone(),
        unix_sockets: grants.unix_sockets,
        limits: Limits {
            address_space: limits.memory_bytes,
            processes: limits.processes,
            file_size: limits.file_size_bytes,
            open_files: limits.open_files,
        },
    }
}

/// What the program needs to read to run, derived (each path exists):
///
/// 1. [`SYSTEM_READ_ONLY`] and [`SUPPORT_READ_ONLY`]: the loader, shared libraries and the
///    few files and devices programs open by path.
/// 2. The program, found as `execvp` will find it: a path with a `/` as given (config joined
///    it to its directory), else the first executable of that name on the child's `PATH`
///    (not Portcullis's), or on `/bin:/usr/bin` when the child has none.
/// 3. A script's interpreter: the `#!` line's program (for `/usr/bin/env NAME`, `env` and
///    `NAME` on the child's `PATH`), followed up to [`INTERPRETER_DEPTH`] times.
/// 4. For the program and each interpreter, its install prefix's libraries: in `PREFIX/bin`,
///    `PREFIX/lib` (Node's global modules, Python's standard library and a virtual
///    environment's packages), and `PREFIX/pyvenv.cfg` (how Python finds a virtual
///    environment). Only `lib`, never the whole prefix: a prefix such as `~/.local` or
///    `~/.cargo` holds other things (keyrings, registry tokens).
/// 5. For the program, each interpreter and each argument that names an existing file
///    (relative ones against the child's working directory) — the code it runs: inside a
///    `node_modules` tree, the outermost `node_modules` (Node loads a package's dependencies
///    from every `node_modules` above it, and npm hoists them to the top); else the nearest
///    directory at most [`PROJECT_ROOT_DEPTH`] above the file's own that holds a
///    `package.json` or `pyproject.toml` (the project its dependencies are installed in);
///    else the file alone. A directory argument is never granted: that is what roots are for.
///
/// Symlinks are resolved before the rules look at names, as Node resolves its modules.
pub(crate) fn runtime_paths(launch: &Launch<'_>) -> Vec<PathBuf> {
    let mut paths = existing(SYSTEM_READ_ONLY);
    paths.extend(existing(SUPPORT_READ_ONLY));
    let search_path = launch
        .env
        .get("PATH")
        .map_or(DEFAULT_SEARCH_PATH, String::as_str);
    let mut programs = Vec::new();
    let mut next = find_program(launch.program, search_path, launch.cwd);
    while let Some(program) = next.take() {
        if programs.len() >= INTERPRETER_DEPTH || programs.contains(&program) {
            break;
        }
        let interpreter = interpreter_of(&program);
        programs.push(program);
        if let Some(interpreter) = interpreter {
            // `#!/usr/bin/env node`: env runs, and finds `node` on the same PATH.
            if let Some(name) = interpreter.looked_up {
                if let Some(env) = find_program(&interpreter.program, search_path, launch.cwd) {
                    paths.push(env);
                }
                next = find_program(Path::new(&name), search_path, launch.cwd);
            } else {
                next = find_program(&interpreter.program, search_path, launch.cwd);
            }
        }
    }
    for program in &programs {
        paths.extend(prefix_libraries(program));
        paths.push(code_grant(program));
    }
    for arg in launch.args {
        let path = launch.cwd.join(arg);
        if path.is_file() {
            paths.push(code_grant(&path));
        }
    }
    paths.sort();
    paths.dedup();
    paths
}

/// The paths among `candidates` that exist (a derived path that does not exist grants nothing
/// and would only produce a warning at every start).
fn existing(candidates: &[&str]) -> Vec<PathBuf> {
    candidates
        .iter()
        .map(PathBuf::from)
        .filter(|path| path.exists())
        .collect()
}

/// `derived` without the paths already beneath another read-only one or a read-write one, so
/// that `portcullis check` lists each grant once.
fn without_covered(derived: Vec<PathBuf>, read_write: &[PathBuf]) -> Vec<PathBuf> {
    let resolved = |path: &Path| fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let covering: Vec<PathBuf> = derived
        .iter()
        .chain(read_write)
        .filter(|path| path.is_dir())
        .map(|path| resolved(path))
        .collect();
    derived
        .into_iter()
        .filter(|path| {
            let own = resolved(path);
            !covering
                .iter()
                .any(|cover| own != *cover && own.starts_with(cover))
        })
        .collect()
}

/// The program `execvp` runs for `program`: as given when it contains a `/`, else the first
/// executable file of that name in `search_path` (relative entries against `cwd`, as the child
/// would see them).
fn find_program(program: &Path, search_path: &str, cwd: &Path) -> Option<PathBuf> {
    if program.components().count() > 1 || program.is_absolute() {
        return program.is_file().then(|| program.to_path_buf());
    }
    search_path
        .split(':')
        .map(|dir| cwd.join(dir).join(program))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    fs::metadata(path).is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
}

/// A script's `#!` interpreter.
struct Interpreter {
    program: PathBuf,
    /// For `#!/usr/bin/env NAME`: the program `env` looks up on the `PATH`.
    looked_up: Option<String>,
}

/// The `#!` line of `program`, if it has one.
fn interpreter_of(program: &Path) -> Option<Interpreter> {
    let mut head = Vec::new();
    fs::File::open(program)
        .ok()?
        .take(SHEBANG_MAX)
        .read_to_end(&mut head)
        .ok()?;
    let line = head.strip_prefix(b"#!")?;
    let line = line.split(|&byte| byte == b'\n').next()?;
    let line = std::str::from_utf8(line).ok()?;
    let mut words = line.split_whitespace();
    let program = PathBuf::from(words.next()?);
    let is_env = program.file_name().is_some_and(|name| name == "env");
    // `env -S node --flag` and `env node`: the first word that is not a flag.
    let looked_up = is_env
        .then(|| words.find(|word| !word.starts_with('-')).map(str::to_owned))
        .flatten();
    Some(Interpreter { program, looked_up })
}

/// `PREFIX/lib` and `PREFIX/pyvenv.cfg` for a program in `PREFIX/bin`, both as found and with
/// symlinks resolved (a virtual environment's `bin/python` links to the system's).
fn prefix_libraries(program: &Path) -> Vec<PathBuf> {
    let resolved = fs::canonicalize(program).ok();
    std::iter::once(program)
        .chain(resolved.as_deref())
        .filter_map(|path| {
            let bin = path.parent()?;
            (bin.file_name()? == "bin").then_some(bin.parent()?)
        })
        .flat_map(|prefix| [prefix.join("lib"), prefix.join("pyvenv.cfg")])
        .filter(|path| path.exists())
        .collect()
}

/// What running the code in `file` needs to read (rule 5 of [`runtime_paths`]).
fn code_grant(file: &Path) -> PathBuf {
    let file = fs::canonicalize(file).unwrap_or_else(|_| file.to_path_buf());
    if let Some(tree) = file
        .ancestors()
        .filter(|dir| dir.file_name().is_some_and(|name| name == "node_modules"))
        .last()
    {
        return tree.to_path_buf();
    }
    file.ancestors()
        .skip(1)
        .take(PROJECT_ROOT_DEPTH + 1)
        .filter(|dir| dir.parent().is_some())
        .find(|dir| {
            PROJECT_MANIFESTS
                .iter()
                .any(|manifest| dir.join(manifest).is_file())
        })
        .map_or_else(|| file.clone(), Path::to_path_buf)
}

#[cfg(test)]
mod tests;
