//! Per-user upstreams: what config accepts, what it refuses and why, and the spec each
//! identity's instance runs with.
#![expect(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "tests"
)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use expect_test::expect;

use crate::{Instance, PerUser, UpstreamTransport, parse};

fn parsed(text: &str) -> crate::Config {
    parse(Path::new("conf/portcullis.toml"), text).unwrap()
}

fn errors(text: &str) -> String {
    parse(Path::new("conf/portcullis.toml"), text)
        .unwrap_err()
        .to_string()
}

#[test]
fn shared_is_the_default_and_per_user_has_a_state_directory_and_an_idle_time() {
    let config = parsed(
        r#"
[[upstream]]
name = "files"
command = ["/bin/server"]

[[upstream]]
name = "browser"
command = ["/bin/browser-server"]
instance = "per_user"

[[upstream]]
name = "cli"
command = ["/bin/cli-server"]
instance = "per_user"
instance_idle_secs = 30
instance_state = "/var/lib/portcullis/cli"
instance_state_days = 7
"#,
    );
    let instances: Vec<&Instance> = config.upstreams.iter().map(|u| &u.instance).collect();
    assert_eq!(
        instances,
        [
            &Instance::Shared,
            &Instance::PerUser(PerUser {
                state: PathBuf::from("conf/state/instances/browser"),
                idle: Duration::from_secs(600),
                expire: Duration::from_secs(30 * 86_400),
            }),
            &Instance::PerUser(PerUser {
                state: PathBuf::from("/var/lib/portcullis/cli"),
                idle: Duration::from_secs(30),
                expire: Duration::from_secs(7 * 86_400),
            }),
        ]
    );
}

#[test]
fn a_per_user_upstream_whose_identities_could_share_state_is_refused() {
    let text = r#"
[[upstream]]
name = "open"
command = ["/bin/server"]
instance = "per_user"
sandbox = { contain = false }

[[upstream]]
name = "box"
command = ["docker", "run", "-i", "--rm", "example/server:1"]
instance = "per_user"

[[upstream]]
name = "remote"
url = "https://mcp.example.com/mcp"
instance = "per_user"

[[upstream]]
name = "odd"
command = ["/bin/server"]
instance = "per_user"
instance_idle_secs = 0

[[upstream]]
name = "odder"
command = ["/bin/server"]
instance = "each"

[[upstream]]
name = "shared"
command = ["/bin/server"]
instance_state = "/tmp/x"
"#;
    expect![[r#"
        conf/portcullis.toml:5:12: `instance = "per_user"` keeps each identity's state apart with the sandbox, and this upstream sets `contain = false`: every instance could read every other's state
        conf/portcullis.toml:11:12: `instance = "per_user"` is not supported for container launchers yet: the state directory would have to be mounted into each container
        conf/portcullis.toml:16:12: `instance = "per_user"` on a `url` upstream needs `[upstream.credential] kind = "oauth"`: each identity's connection carries that identity's own token, and without one every connection would be the same
        conf/portcullis.toml:22:22: `instance_idle_secs` must be a positive whole number
        conf/portcullis.toml:27:12: unknown instance `each`; use `shared` or `per_user`
        conf/portcullis.toml:32:18: `instance_state` applies only to an upstream with `instance = "per_user"`"#]]
    .assert_eq(&errors(text));
}

#[test]
fn each_identity_runs_with_its_own_roots_and_its_home_in_its_state() {
    let config = parsed(
        r#"
[[upstream]]
name = "files"
command = ["/bin/server"]
env = { HOME = "/home/shared", MODE = "x" }
roots = ["/srv/files"]
instance = "per_user"

[[upstream.roots_for]]
user = "alice"
roots = ["/srv/files/alice"]

[[upstream.roots_for]]
group = "eng"
roots = ["/srv/files/eng"]
"#,
    );
    let files = &config.upstreams[0];
    let state = Path::new("/state/files/a1");
    let alice = files.for_identity("alice", &BTreeSet::new(), state);
    assert_eq!(
        alice.roots,
        [PathBuf::from("/srv/files/alice"), state.to_path_buf()]
    );
    assert!(alice.roots_for.is_empty());
    // A group's entry counts.
    let eng = BTreeSet::from(["eng".to_owned()]);
    let carol = files.for_identity("carol", &eng, state);
    assert_eq!(
        carol.roots,
        [PathBuf::from("/srv/files/eng"), state.to_path_buf()]
    );
    // Nobody named: their state alone.
    let dave = files.for_identity("dave", &BTreeSet::new(), state);
    assert_eq!(dave.roots, [state.to_path_buf()]);
    let UpstreamTransport::Stdio { env, .. } = &alice.transport else {
        panic!("stdio expected");
    };
    assert_eq!(
        env.get("HOME").map(String::as_str),
        Some("/state/files/a1/")
    );
    assert_eq!(
        env.get("XDG_CONFIG_HOME").map(String::as_str),
        Some("/state/files/a1/.config")
    );
    assert_eq!(env.get("MODE").map(String::as_str), Some("x"));
}
