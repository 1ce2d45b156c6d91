//! Profile compilation: which paths each derivation rule grants, on a layout made for the test.
#![expect(clippy::unwrap_used, clippy::indexing_slicing, reason = "tests")]

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use portcullis_config::SandboxGrants;

use super::{Launch, code_grant, compile_profile, runtime_paths};

/// A directory tree standing in for a machine: programs, packages, projects, data.
struct Layout {
    dir: tempfile::TempDir,
}

impl Layout {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let layout = Self { dir };
        for (path, text) in [
            // A node install with a global package, and a project using the npm package `node`.
            ("opt/node/bin/node", "\x7fELF"),
            ("opt/node/lib/node_modules/npm/index.js", ""),
            ("app/node_modules/@scope/server/dist/index.js", ""),
            ("app/node_modules/@scope/server/package.json", "{}"),
            ("app/node_modules/dep/node_modules/inner/index.js", ""),
            // A project whose entry point sits two levels beneath its manifest, and one too deep.
            ("proj/package.json", "{}"),
            ("proj/src/server/main.js", ""),
            ("proj/a/b/c/deep.js", ""),
            // A script with no project, and a data file next to a secret.
            ("loose/tool.py", ""),
            ("data/secret.txt", "secret"),
            // A virtual environment whose python is a script here (a symlink in real life).
            ("venv/bin/python", "#!/bin/sh\n"),
            ("venv/pyvenv.cfg", "home = /usr/bin\n"),
            ("venv/lib/python3/site-packages/mod.py", ""),
            // Scripts run through `env` and directly.
            ("bin/mcp-server", "#!/usr/bin/env node --flag\n"),
            ("bin/direct", ""),
        ] {
            let full = layout.path(path);
            fs::create_dir_all(full.parent().unwrap()).unwrap();
            fs::write(&full, text).unwrap();
        }
        for program in [
            "opt/node/bin/node",
            "venv/bin/python",
            "bin/mcp-server",
            "bin/direct",
        ] {
            let path = layout.path(program);
            fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
        }
        fs::create_dir_all(layout.path("roots/work")).unwrap();
        layout
    }

    fn path(&self, relative: &str) -> PathBuf {
        fs::canonicalize(self.dir.path()).unwrap().join(relative)
    }

    /// The paths `runtime_paths` derives that lie in this layout, relative to it.
    fn derived(&self, program: &str, args: &[&str], env_path: Option<&str>) -> Vec<String> {
        let root = self.path("");
        let mut env = BTreeMap::new();
        if let Some(path) = env_path {
            env.insert("PATH".to_owned(), path.to_owned());
        }
        let args: Vec<String> = args.iter().map(|arg| (*arg).to_owned()).collect();
        let launch = Launch {
            program: Path::new(program),
            args: &args,
            cwd: &root,
            env: &env,
        };
        runtime_paths(&launch)
            .into_iter()
            .filter_map(|path| {
                path.strip_prefix(&root)
                    .ok()
                    .map(|rest| rest.display().to_string())
            })
            .collect()
    }
}

#[test]
fn the_program_is_found_on_the_childs_path_with_its_prefix_libraries() {
    let layout = Layout::new();
    let path = format!("/nonexistent:{}", layout.path("opt/node/bin").display());
    assert_eq!(
        layout.derived("node", &[], Some(&path)),
        ["opt/node/bin/node", "opt/node/lib"]
    );
    // Not on the child's PATH (here: none, so /bin:/usr/bin): nothing of the layout.
    assert!(layout.derived("node", &[], None).is_empty());
}

#[test]
fn a_file_argument_grants_the_code_it_runs() {
    let layout = Layout::new();
    let node = layout.path("opt/node/bin/node").display().to_string();
    let cases: &[(&str, &[&str])] = &[
        // Inside node_modules: the outermost node_modules tree, however deep the file.
        (
            "app/node_modules/@scope/server/dist/index.js",
            &["app/node_modules"],
        ),
        (
            "app/node_modules/dep/node_modules/inner/index.js",
            &["app/node_modules"],
        ),
        // In a project: its root, up to two directories above the file's own.
        ("proj/src/server/main.js", &["proj"]),
        // Too deep beneath the manifest, or no manifest at all: the file alone.
        ("proj/a/b/c/deep.js", &["proj/a/b/c/deep.js"]),
        ("loose/tool.py", &["loose/tool.py"]),
        ("data/secret.txt", &["data/secret.txt"]),
        // A directory argument is never granted (roots are for that); nor a word.
        ("data", &[]),
        ("stdio", &[]),
    ];
    for (argument, expected) in cases {
        let mut derived = layout.derived(&node, &[argument], None);
        derived.retain(|path| !path.starts_with("opt/node"));
        assert_eq!(&derived, expected, "argument `{argument}`");
    }
    // An absolute argument counts the same as a relative one.
    let absolute = layout.path("loose/tool.py").display().to_string();
    assert!(
        layout
            .derived(&node, &[&absolute], None)
            .contains(&"loose/tool.py".to_owned())
    );
}

#[test]
fn a_scripts_interpreter_is_followed_through_env() {
    let layout = Layout::new();
    let path = format!(
        "{}:{}",
        layout.path("bin").display(),
        layout.path("opt/node/bin").display()
    );
    // `#!/usr/bin/env node --flag`: the script, and node found on the same PATH with its lib.
    assert_eq!(
        layout.derived("mcp-server", &[], Some(&path)),
        ["bin/mcp-server", "opt/node/bin/node", "opt/node/lib"]
    );
    // A program with no `#!` line is just itself.
    assert_eq!(layout.derived("direct", &[], Some(&path)), ["bin/direct"]);
}

#[test]
fn a_virtual_environment_grants_its_lib_and_pyvenv_cfg_but_not_the_prefix() {
    let layout = Layout::new();
    let python = layout.path("venv/bin/python").display().to_string();
    assert_eq!(
        layout.derived(&python, &[], None),
        ["venv/bin/python", "venv/lib", "venv/pyvenv.cfg"]
    );
}

#[test]
fn code_in_a_symlinked_tree_is_granted_where_it_really_is() {
    let layout = Layout::new();
    let link = layout.path("linked_modules");
    std::os::unix::fs::symlink(layout.path("app/node_modules"), &link).unwrap();
    assert_eq!(
        code_grant(&link.join("@scope/server/dist/index.js")),
        layout.path("app/node_modules")
    );
}

#[test]
fn the_profile_grants_roots_read_write_and_the_network_files_only_with_a_port() {
    let layout = Layout::new();
    let node = layout.path("opt/node/bin/node");
    let env = BTreeMap::new();
    let args = vec!["app/node_modules/@scope/server/dist/index.js".to_owned()];
    let cwd = layout.path("");
    let launch = Launch {
        program: &node,
        args: &args,
        cwd: &cwd,
        env: &env,
    };
    let roots = vec![layout.path("roots/work")];
    let extra = layout.path("data/extra-not-there");
    let grants = SandboxGrants {
        read_only: vec![extra.clone()],
        ..SandboxGrants::default()
    };
    let profile = compile_profile(&launch, &roots, &grants);
    assert!(profile.read_write.contains(&roots[0]));
    assert!(profile.read_write.contains(&PathBuf::from("/dev/null")));
    assert!(profile.read_only.contains(&layout.path("app/node_modules")));
    // Config's own path is kept even though it does not exist, so the sandbox warns of it.
    assert_eq!(profile.read_only.last(), Some(&extra));
    // Nothing beneath a granted directory is listed again (`/lib` is `/usr/lib` here or not).
    assert!(profile.read_only.contains(&PathBuf::from("/usr")));
    assert!(
        !profile
            .read_only
            .iter()
            .any(|path| path.starts_with("/usr") && path != Path::new("/usr")),
        "{:?}",
        profile.read_only
    );
    assert!(!profile.read_only.contains(&PathBuf::from("/etc/hosts")));
    assert!(profile.tcp_connect.is_empty() && !profile.unix_sockets);
    assert_eq!(
        profile.limits.address_space, grants.limits.memory_bytes,
        "config's limits"
    );

    let networked = SandboxGrants {
        tcp_connect: vec![443],
        ..SandboxGrants::default()
    };
    let profile = compile_profile(&launch, &roots, &networked);
    assert_eq!(profile.tcp_connect, [443]);
    if Path::new("/etc/hosts").exists() {
        assert!(profile.read_only.contains(&PathBuf::from("/etc/hosts")));
    }

    // Host names go to the sandbox as they are (it gives the upstream a network of its own);
    // CA certificates are read as with a port.
    let named = SandboxGrants {
        tcp_connect_hosts: vec![portcullis_core::HostPort::parse("api.github.com:443").unwrap()],
        ..SandboxGrants::default()
    };
    let profile = compile_profile(&launch, &roots, &named);
    assert!(profile.tcp_connect.is_empty());
    assert_eq!(
        profile
            .tcp_connect_hosts
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>(),
        ["api.github.com:443"]
    );
    if Path::new("/etc/ssl/certs").exists() {
        assert!(profile.read_only.contains(&PathBuf::from("/etc/ssl/certs")));
    }
    // The system's resolver files are not granted: the sandbox mounts its own over them.
    assert!(!profile.read_only.contains(&PathBuf::from("/etc/hosts")));
    assert!(
        !profile
            .read_only
            .contains(&PathBuf::from("/etc/resolv.conf"))
    );
}
