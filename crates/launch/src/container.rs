//! A container upstream's `run` arguments: the isolation Portcullis sets, whatever the line
//! asked for. No network unless the sandbox grants connect; a read-only root file system and a
//! small private `/tmp`; every capability dropped and no privilege gained; the caller's user;
//! the upstream's roots mounted at the same paths and nothing else; memory and process limits;
//! removed when it stops, stdin kept open for MCP.

use std::path::PathBuf;

use portcullis_config::{ContainerRun, SandboxGrants};

/// Processes a container may run when config sets no limit.
const PIDS_LIMIT: u64 = 256;

/// The arguments after the engine (`docker`, `podman`): `run`, Portcullis's options, the kept
/// environment options, the image and the server's arguments.
pub fn container_args(
    run: &ContainerRun,
    roots: &[PathBuf],
    grants: &SandboxGrants,
    user: String,
) -> Vec<String> {
    // The engine's network cannot be narrowed to names or ports the way Portcullis's sandbox
    // narrows it: any connect grant gives the container the engine's default network.
    let network = if grants.tcp_connect.is_empty() && grants.tcp_connect_hosts.is_empty() {
        "none"
    } else {
        "bridge"
    };
    let mut args: Vec<String> = [
        "run",
        "--rm",
        "-i",
        "--network",
        network,
        "--read-only",
        "--tmpfs",
        "/tmp:rw,noexec,nosuid,size=64m",
        "--cap-drop",
        "ALL",
        "--security-opt",
        "no-new-privileges",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    args.extend(["--user".to_owned(), user]);
    if let Some(bytes) = grants.limits.memory_bytes {
        args.extend(["--memory".to_owned(), format!("{}m", bytes / (1024 * 1024))]);
    }
    let pids = grants.limits.processes.unwrap_or(PIDS_LIMIT);
    args.extend(["--pids-limit".to_owned(), pids.to_string()]);
    for root in roots {
        let root = root.display();
        args.extend(["--volume".to_owned(), format!("{root}:{root}:rw")]);
    }
    args.extend(run.options.iter().cloned());
    args.push(run.image.clone());
    args.extend(run.args.iter().cloned());
    args
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn isolation_comes_first_and_only_the_roots_are_mounted() {
        let run = ContainerRun {
            engine: "docker".to_owned(),
            image: "ghcr.io/example/server".to_owned(),
            options: vec!["-e".to_owned(), "TOKEN".to_owned()],
            args: vec!["stdio".to_owned()],
        };
        let args = container_args(
            &run,
            &[PathBuf::from("/srv/work")],
            &SandboxGrants::default(),
            "1000:1000".to_owned(),
        );
        let text = args.join(" ");
        assert!(
            text.starts_with("run --rm -i --network none --read-only"),
            "{text}"
        );
        assert!(
            text.contains("--cap-drop ALL --security-opt no-new-privileges --user 1000:1000"),
            "{text}"
        );
        assert!(text.contains("--volume /srv/work:/srv/work:rw"), "{text}");
        assert!(
            text.ends_with("-e TOKEN ghcr.io/example/server stdio"),
            "{text}"
        );
        assert_eq!(args.iter().filter(|a| *a == "--volume").count(), 1);
        let networked = SandboxGrants {
            tcp_connect: vec![443],
            ..SandboxGrants::default()
        };
        assert!(
            container_args(&run, &[], &networked, "0:0".to_owned())
                .join(" ")
                .contains("--network bridge")
        );
    }
}
