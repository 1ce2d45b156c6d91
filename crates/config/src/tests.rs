//! Configuration cases: each input with the exact messages a person reads.
#![expect(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "tests"
)]

use std::path::{Path, PathBuf};

use expect_test::{Expect, expect};

use crate::{
    Containment, DEFAULT_TOOL_SEARCH_THRESHOLD, Pinning, SandboxGrants, SandboxLimits,
    StateBackend, ToolSearch, UpstreamTransport, parse,
};

fn check_errors(text: &str, expected: Expect) {
    let errors = parse(Path::new("conf/portcullis.toml"), text).unwrap_err();
    expected.assert_eq(&errors.to_string());
}

#[test]
fn a_minimal_config_parses_with_defaults() {
    let config = parse(
        Path::new("conf/portcullis.toml"),
        r#"
[[upstream]]
name = "files"
command = ["./bin/server", "--root", "/srv"]
env = { MODE = "test" }
inherit_env = ["PATH"]

[[upstream]]
name = "mail"
url = "http://127.0.0.1:9000/mcp"
call_timeout_secs = 5
"#,
    )
    .unwrap();
    assert_eq!(config.upstreams.len(), 2);
    assert_eq!(config.page_size, 100);
    assert_eq!(config.http.listen.to_string(), "127.0.0.1:8787");
    let UpstreamTransport::Stdio {
        program, args, cwd, ..
    } = &config.upstreams[0].transport
    else {
        panic!("stdio expected")
    };
    assert_eq!(program, Path::new("conf/./bin/server"));
    assert_eq!(args, &["--root", "/srv"]);
    assert_eq!(cwd, Path::new("conf"));
    assert_eq!(config.upstreams[1].call_timeout.as_secs(), 5);
    assert_eq!(config.upstreams[0].call_timeout.as_secs(), 60);
}

#[test]
fn syntax_errors_name_the_line() {
    check_errors(
        "[server]\npage_size = \n",
        expect![[
            r#"conf/portcullis.toml:2:13: string values must be quoted, expected literal string"#
        ]],
    );
}

#[test]
fn unknown_keys_are_refused() {
    check_errors(
        "[[upstream]]\nname = \"a\"\ncommand = [\"x\"]\ncomand = [\"y\"]\n",
        expect![
            "conf/portcullis.toml:4:1: unknown field `comand`, expected one of `name`, `command`, `env`, `inherit_env`, `cwd`, `url`, `call_timeout_secs`, `start_timeout_secs`, `max_concurrent_calls`, `surface`, `effect`, `trusted`, `taint`, `trust_hints`, `sampling`, `elicitation`, `tools`, `roots`, `roots_for`, `check_paths`, `tilde`, `sandbox`, `credential`, `ca_file`, `insecure_http`, `headers`, `instance`, `instance_idle_secs`, `instance_state`, `instance_state_days`, `pinning`"
        ],
    );
}

#[test]
fn every_semantic_error_is_reported_with_its_place() {
    check_errors(
        r#"[server]
namespacing = "passthrough"
page_size = 0

[http]
listen = "0.0.0.0:8080"
allowed_origins = ["localhost:3000"]

[[upstream]]
name = "files.v2"
command = []

[[upstream]]
name = "mail"
url = "ftp://mail"
cwd = "x"

[[upstream]]
name = "mail"
command = ["srv"]
url = "http://127.0.0.1:1/mcp"
inherit_env = ["NOT-A-NAME"]
call_timeout_secs = -1
max_concurrent_calls = 0
"#,
        expect![[r#"
            conf/portcullis.toml:2:15: `passthrough` keeps tool names unchanged and so serves exactly one upstream, but 3 are configured; use `prefixed`
            conf/portcullis.toml:3:13: `page_size` is 0; it must be between 1 and 10000
            conf/portcullis.toml:6:10: `0.0.0.0:8080` is not a loopback address; without `[http.auth]` every client would act as the local identity, so Portcullis listens on loopback only
            conf/portcullis.toml:7:20: origin `localhost:3000` needs a scheme, e.g. `http://localhost:3000`
            conf/portcullis.toml:10:8: upstream name `files.v2` may contain only ASCII letters, digits, `_` and `-`, and must start with a letter
            conf/portcullis.toml:11:11: `command` is empty; give the program and its arguments, e.g. `["node", "server.js"]`
            conf/portcullis.toml:15:7: `cwd` applies only to a `command` upstream, not to a `url` one
            conf/portcullis.toml:15:7: `ftp://mail` is not an http:// or https:// URL with a host
            conf/portcullis.toml:20:11: an upstream has either a `command` (stdio) or a `url` (streamable HTTP), not both
            conf/portcullis.toml:23:21: `call_timeout_secs` is -1; it must be between 1 and 86400
            conf/portcullis.toml:24:24: `max_concurrent_calls` is 0; it must be between 1 and 10000"#]],
    );
}

#[test]
fn duplicate_names_and_no_upstreams() {
    check_errors(
        "[[upstream]]\nname = \"a\"\ncommand = [\"x\"]\n[[upstream]]\nname = \"a\"\nurl = \"http://127.0.0.1:1/\"\n",
        expect![[
            r#"conf/portcullis.toml:5:8: upstream `a` is defined twice; upstream names must be unique"#
        ]],
    );
    check_errors(
        "[server]\npage_size = 10\n",
        expect![[
            r#"conf/portcullis.toml: no upstream is configured; add at least one `[[upstream]]` table with a `name` and a `command` or `url`"#
        ]],
    );
}

#[test]
fn identity_policy_auth_and_tool_rules_parse() {
    let config = parse(
        Path::new("conf/portcullis.toml"),
        r#"
[identity.local]
user = "alice"
groups = ["eng"]
tenant = "acme"
scopes = ["files.write"]

[policy]
schema = "s.cedarschema"
policies = ["policies", "extra.cedar"]

[http]
listen = "0.0.0.0:8443"
auth = { issuer = "http://127.0.0.1:9000", resource = "https://mcp.example/mcp", required_scopes = ["mcp"], leeway_secs = 0 }

[[upstream]]
name = "files"
command = ["server"]
surface = "filesystem"
tools.write_file = { effect = "write", scopes = ["files.write"], redact = ["/content", "/edits/*/newText"] }
"#,
    )
    .unwrap();
    let envelope = &config.local_identity;
    assert_eq!(envelope.user().subject, "alice");
    assert_eq!(envelope.user().issuer, portcullis_core::LOCAL_ISSUER);
    assert_eq!(envelope.tenant(), Some("acme"));
    assert!(envelope.groups().contains("eng"));
    assert_eq!(
        config.policy.schema.as_deref(),
        Some(Path::new("conf/s.cedarschema"))
    );
    assert_eq!(config.policy.policies.len(), 2);
    // With authentication configured the listener may leave loopback.
    assert_eq!(config.http.listen.to_string(), "0.0.0.0:8443");
    let auth = config.http.auth.as_ref().unwrap();
    assert!(auth.allow_http, "a loopback issuer may be plain http");
    assert_eq!(auth.leeway_secs, 0);
    assert_eq!(auth.claims.groups, "groups");
    let upstream = &config.upstreams[0];
    assert_eq!(upstream.surface, portcullis_core::Surface::Filesystem);
    let rules = upstream.tool_rules("write_file");
    assert_eq!(rules.effect(), portcullis_core::Effect::Write);
    let redact: Vec<String> = rules.redact.iter().map(ToString::to_string).collect();
    assert_eq!(redact, ["/content", "/edits/*/newText"]);
    // A tool config does not classify is unknown: side-effecting.
    assert_eq!(
        upstream.tool_rules("other").effect(),
        portcullis_core::Effect::Unknown
    );
}

#[test]
fn identity_policy_auth_and_tool_errors_name_their_place() {
    check_errors(
        r#"
[identity.local]
user = ""
scopes = ["two words"]

[policy]
policies = []

[http.auth]
issuer = "http://idp.example"
resource = "https://mcp.example/mcp"

[[upstream]]
name = "files"
command = ["server"]
surface = "disk"
tools.write_file = { effect = "scribble" }
tools.send = { redact = ["body", "/a~2"] }
"#,
        expect![[r#"
            conf/portcullis.toml:3:8: an identity name is empty; give a user, group, tenant or credential name
            conf/portcullis.toml:4:11: scope `two words` is empty or contains spaces
            conf/portcullis.toml:7:12: `policies` is empty; list policy files or directories, or remove the key to use the shipped policy
            conf/portcullis.toml:10:10: issuer `http://idp.example` uses plain http on a non-loopback host; its keys decide who may call anything, so use https
            conf/portcullis.toml:16:11: unknown surface `disk`; use one of `filesystem`, `shell`, `code`, `browser`, `http_api`, `database`, `device`, `remote`
            conf/portcullis.toml:17:31: unknown effect `scribble` for tool `write_file`; use one of `read`, `write`, `destructive`, `send`, `physical`
            conf/portcullis.toml:18:26: `body` is not an argument pointer: it must start with `/` (like `/password`)
            conf/portcullis.toml:18:34: `/a~2` is not an argument pointer: `~` must be followed by `0` or `1`"#]],
    );
}

#[test]
fn metrics_listen_on_loopback_only() {
    let config = parse(
        Path::new("conf/portcullis.toml"),
        "[http]\nmetrics = \"127.0.0.1:9464\"\n\n[[upstream]]\nname = \"a\"\ncommand = [\"server\"]\n",
    )
    .unwrap();
    assert_eq!(
        config.http.metrics,
        Some(std::net::SocketAddr::from(([127, 0, 0, 1], 9464)))
    );
    check_errors(
        "[http]\nmetrics = \"0.0.0.0:9464\"\n\n[[upstream]]\nname = \"a\"\ncommand = [\"server\"]\n",
        expect![[r#"
            conf/portcullis.toml:2:11: `0.0.0.0:9464` is not a loopback address; nothing authenticates a metrics scrape, so metrics are served on loopback only"#]],
    );
}

#[test]
fn roots_and_sandbox_grants_parse_with_defaults() {
    let config = parse(
        Path::new("conf/portcullis.toml"),
        r#"
[[upstream]]
name = "files"
command = ["server"]
roots = ["work", "/srv/shared"]

[upstream.sandbox]
read_only = ["../share", "/etc/ssl"]
tcp_connect = [443, 8080]
tcp_bind = [0]
unix_sockets = true
limits = { memory_mb = 512, processes = 64, open_files = "inherit" }

[[upstream]]
name = "plain"
command = ["server"]

[[upstream]]
name = "open"
command = ["server"]
sandbox = { contain = false }

[[upstream]]
name = "remote"
url = "http://127.0.0.1:9000/mcp"
roots = ["remote-work"]
"#,
    )
    .unwrap();
    let containment = |index: usize| match &config.upstreams[index].transport {
        UpstreamTransport::Stdio { containment, .. } => containment.clone(),
        UpstreamTransport::Http { .. } => panic!("stdio expected"),
    };
    assert_eq!(
        config.upstreams[0].roots,
        [Path::new("conf/work"), Path::new("/srv/shared")]
    );
    let Containment::Contained(grants) = containment(0) else {
        panic!("contained expected")
    };
    assert_eq!(
        grants.read_only,
        [Path::new("conf/../share"), Path::new("/etc/ssl")]
    );
    assert_eq!(grants.tcp_connect, [443, 8080]);
    assert_eq!(grants.tcp_bind, [0]);
    assert!(grants.unix_sockets);
    assert_eq!(
        grants.limits,
        SandboxLimits {
            memory_bytes: Some(512 << 20),
            processes: Some(64),
            file_size_bytes: Some(crate::DEFAULT_FILE_SIZE_MB << 20),
            open_files: None,
        }
    );
    // Contained by default, with nothing but the default limits.
    assert_eq!(
        containment(1),
        Containment::Contained(SandboxGrants::default())
    );
    assert_eq!(
        SandboxGrants::default().limits,
        SandboxLimits {
            memory_bytes: Some(crate::DEFAULT_MEMORY_MB << 20),
            processes: None,
            file_size_bytes: Some(crate::DEFAULT_FILE_SIZE_MB << 20),
            open_files: Some(crate::DEFAULT_OPEN_FILES),
        }
    );
    assert_eq!(containment(2), Containment::Uncontained);
    assert_eq!(config.upstreams[3].roots, [Path::new("conf/remote-work")]);
}

#[test]
fn sandbox_errors_name_their_place() {
    check_errors(
        r#"[[upstream]]
name = "a"
command = ["x"]
roots = [""]
sandbox = { read_only = ["ok"], tcp_connect = [0, 70000], tcp_bind = [-1], limits = { memory_mb = 1, processes = "lots" } }

[[upstream]]
name = "b"
command = ["x"]
[upstream.sandbox]
contain = false
read_only = ["/usr"]
limits = { open_files = 10 }

[[upstream]]
name = "c"
url = "http://127.0.0.1:1/mcp"
sandbox = { tcp_connect = [443] }
"#,
        expect![[r#"
            conf/portcullis.toml:4:10: a root is empty
            conf/portcullis.toml:5:48: port 0 is not a TCP port; it must be between 1 and 65535
            conf/portcullis.toml:5:51: port 70000 is not a TCP port; it must be between 1 and 65535
            conf/portcullis.toml:5:71: port -1 is not a TCP port; it must be between 0 and 65535
            conf/portcullis.toml:5:99: `memory_mb` is 1; it must be between 64 and 16777216, or `"inherit"`
            conf/portcullis.toml:5:114: `processes` is `lots`; give a number, or `"inherit"` to keep Portcullis's own limit
            conf/portcullis.toml:12:13: `read_only` has no effect with `contain = false` (the upstream runs uncontained); remove one of them
            conf/portcullis.toml:13:10: `limits` has no effect with `contain = false` (the upstream runs uncontained); remove one of them
            conf/portcullis.toml:18:11: `sandbox` applies only to a `command` upstream: a `url` upstream runs elsewhere, so there is no process to contain"#]],
    );
    check_errors(
        "[[upstream]]\nname = \"a\"\ncommand = [\"x\"]\nsandbox = { network = \"deny\" }\n",
        expect![[
            r#"conf/portcullis.toml:4:13: unknown field `network`, expected one of `contain`, `read_only`, `tcp_connect`, `tcp_bind`, `unix_sockets`, `limits`"#
        ]],
    );
    check_errors(
        "[[upstream]]\nname = \"a\"\ncommand = [\"x\"]\nsandbox = { limits = { memory = 1 } }\n",
        expect![[
            r#"conf/portcullis.toml:4:24: unknown field `memory`, expected one of `memory_mb`, `processes`, `file_size_mb`, `open_files`"#
        ]],
    );
}

#[test]
fn tcp_connect_takes_host_names_with_a_port() {
    let config = parse(
        Path::new("conf/portcullis.toml"),
        r#"
[[upstream]]
name = "github"
command = ["server"]
sandbox = { tcp_connect = ["api.github.com:443", "Uploads.GitHub.com:443", "api.github.com:8443"] }
"#,
    )
    .unwrap();
    let UpstreamTransport::Stdio {
        containment: Containment::Contained(grants),
        ..
    } = &config.upstreams[0].transport
    else {
        panic!("a contained stdio upstream expected")
    };
    assert!(grants.tcp_connect.is_empty());
    let hosts: Vec<String> = grants
        .tcp_connect_hosts
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        hosts,
        [
            "api.github.com:443",
            "uploads.github.com:443",
            "api.github.com:8443"
        ]
    );
}

#[test]
fn bad_host_name_grants_say_how_to_write_them() {
    check_errors(
        r#"[[upstream]]
name = "a"
command = ["x"]
sandbox = { tcp_connect = ["*.github.com:443", "10.0.0.5:5432", "api.github.com", "api.github.com:0", "443", "api_v2.example:443", true, 4.5] }
"#,
        expect![[
            r#"conf/portcullis.toml:4:132: invalid type: boolean `true`, expected a port number (`443`) or a host and port (`"api.github.com:443"`)"#
        ]],
    );
    check_errors(
        r#"[[upstream]]
name = "a"
command = ["x"]
sandbox = { tcp_connect = ["*.github.com:443", "10.0.0.5:5432", "api.github.com", "api.github.com:0", "443", "api_v2.example:443", "bücher.example:443", "api.github.com.:443"] }
"#,
        expect![[r#"
            conf/portcullis.toml:4:28: `*.github.com` is a wildcard; name each host (`api.github.com:443`): the upstream can resolve only the names its hosts file lists, and a wildcard would let it choose where to connect
            conf/portcullis.toml:4:48: `10.0.0.5:5432` is an address, not a host name; name the host, whose addresses Portcullis looks up when the upstream connects
            conf/portcullis.toml:4:65: `api.github.com` has no port; write it as `api.github.com:443`, with the port it connects to
            conf/portcullis.toml:4:83: the port in `api.github.com:0` must be a number between 1 and 65535
            conf/portcullis.toml:4:103: `"443"` is a port written as a string; write `443` without quotes
            conf/portcullis.toml:4:110: host name `api_v2.example` may contain only ASCII letters, digits, `-` and `.` (write an internationalised name in its `xn--` form)
            conf/portcullis.toml:4:132: host name `bücher.example` may contain only ASCII letters, digits, `-` and `.` (write an internationalised name in its `xn--` form)
            conf/portcullis.toml:4:154: host name `api.github.com.` ends with a dot; write it without the dot"#]],
    );
    // A port on any address and a host name do not mix: the name's network reaches no address.
    check_errors(
        r#"[[upstream]]
name = "a"
command = ["x"]
sandbox = { tcp_connect = [5432, "api.github.com:443"] }
"#,
        expect![[r#"
            conf/portcullis.toml:4:34: `tcp_connect` grants both a port on any address (`5432`) and a host name (`api.github.com:443`); a host name gives the upstream a network of its own in which only the named hosts are reachable, so name the host of every port instead (`"db.example:5432"`)"#]],
    );
    // Host names are a grant like any other: meaningless without containment.
    check_errors(
        r#"[[upstream]]
name = "a"
command = ["x"]
sandbox = { contain = false, tcp_connect = ["api.github.com:443"] }
"#,
        expect![[r#"
            conf/portcullis.toml:4:44: `tcp_connect` has no effect with `contain = false` (the upstream runs uncontained); remove one of them"#]],
    );
}

#[test]
fn credentials_parse_with_their_defaults() {
    let config = parse(
        Path::new("conf/portcullis.toml"),
        r#"
[[upstream]]
name = "mail"
url = "https://mail.example/mcp"
tools.send = { effect = "send", upstream_scopes = ["mail.send"] }

[upstream.credential]
kind = "oauth"
issuer = "https://login.example"
client_id = "portcullis"
client_secret_env = "MAIL_SECRET"
scopes = ["mail.read"]
hide_tools = true

[[upstream]]
name = "search"
url = "https://search.example/mcp"
credential = { kind = "api_key", env = "SEARCH_KEY", header = "X-Api-Key" }
"#,
    )
    .unwrap();
    assert_eq!(
        config.credentials.store,
        Path::new("conf/state/credentials.enc")
    );
    assert_eq!(config.credentials.key_env, crate::DEFAULT_KEY_ENV);
    assert_eq!(
        config.credentials.redirect_uri(),
        "http://127.0.0.1:8790/oauth/callback"
    );
    let Some(crate::UpstreamCredential::Delegated(delegation)) = &config.upstreams[0].credential
    else {
        panic!("delegated expected")
    };
    assert_eq!(delegation.client.issuer, "https://login.example");
    assert_eq!(
        delegation.client.client_secret_env.as_deref(),
        Some("MAIL_SECRET")
    );
    assert!(delegation.hide_tools && !delegation.exchange && !delegation.client.loopback);
    assert!(
        config.upstreams[0]
            .tool_rules("send")
            .upstream_scopes
            .contains("mail.send")
    );
    assert_eq!(
        config.upstreams[1].credential,
        Some(crate::UpstreamCredential::Service(
            crate::ServiceCredential::ApiKey {
                env: "SEARCH_KEY".to_owned(),
                header: Some("x-api-key".to_owned()),
            }
        ))
    );
}

#[test]
fn credential_mistakes_are_named() {
    check_errors(
        r#"
[credentials]
callback = "0.0.0.0:8790"

[[upstream]]
name = "files"
command = ["server"]
credential = { kind = "api_key", env = "KEY" }

[[upstream]]
name = "mail"
url = "https://mail.example/mcp"
credential = { kind = "oauth", client_id = "p" }

[[upstream]]
name = "web"
url = "https://web.example/mcp"
credential = { kind = "oauth", issuer = "http://login.example", client_id = "p" }

[[upstream]]
name = "docs"
url = "https://docs.example/mcp"
credential = { kind = "api_key", env = "KEY", client_id = "p", scopes = ["a"] }

[[upstream]]
name = "chat"
url = "https://chat.example/mcp"
credential = { kind = "password" }
"#,
        expect![[r#"
            conf/portcullis.toml:3:12: `0.0.0.0:8790` is not a loopback address with a port; the callback is registered at authorization servers and opened by a browser on this machine, so it is a fixed loopback address
            conf/portcullis.toml:8:14: `credential` applies only to a `url` upstream; give a `command` upstream its secrets with `env` or `inherit_env`, which reach that child alone
            conf/portcullis.toml:13:14: this credential needs `issuer`, the authorization server Portcullis is registered with (its secret is never sent to a server the upstream merely names)
            conf/portcullis.toml:18:41: issuer `http://login.example` must be an https URL (plain http only on loopback with `loopback = true`, for tests)
            conf/portcullis.toml:23:14: `scopes` does not apply to `kind = "api_key"`: a key has whatever authority it was issued with
            conf/portcullis.toml:23:59: `client_id` does not apply to `kind = "api_key"`
            conf/portcullis.toml:28:23: unknown credential kind `password`; use `oauth` (each user's own grant), `client_credentials` or `api_key` (service authority)"#]],
    );
}

#[test]
fn roots_for_narrow_and_only_narrow() {
    let config = parse(
        Path::new("conf/portcullis.toml"),
        r#"
[[upstream]]
name = "files"
command = ["server"]
roots = ["work"]
roots_for = [{ group = "eng", roots = ["work/eng"] }, { user = "carol", roots = ["work/carol"] }]
"#,
    )
    .unwrap();
    let entries = &config.upstreams[0].roots_for;
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[0].grantee, crate::Grantee::Group("eng".to_owned()));
    assert_eq!(entries[1].roots, [Path::new("conf/work/carol")]);
    check_errors(
        r#"
[[upstream]]
name = "files"
command = ["server"]
roots = ["work"]
roots_for = [
  { group = "eng", user = "carol", roots = ["work/x"] },
  { group = "ops", roots = ["elsewhere"] },
]

[[upstream]]
name = "other"
command = ["server"]
roots_for = [{ user = "carol", roots = ["x"] }]
"#,
        expect![[r#"
            conf/portcullis.toml:7:3: a `roots_for` entry names exactly one non-empty `user` or `group`
            conf/portcullis.toml:8:29: `elsewhere` is not within the upstream's `roots`; `roots_for` can only narrow them
            conf/portcullis.toml:12:8: `roots_for` narrows the upstream's `roots`, and it has none
            conf/portcullis.toml:14:41: `x` is not within the upstream's `roots`; `roots_for` can only narrow them"#]],
    );
}

#[test]
fn remote_upstreams_take_https_a_ca_file_and_headers_from_the_environment() {
    let config = parse(
        Path::new("conf/portcullis.toml"),
        "[[upstream]]\nname = \"gh\"\nurl = \"https://api.example/mcp\"\nca_file = \"ca.pem\"\n\
         headers = { X-Api-Key = { env = \"GH_KEY\" }, Authorization = { env = \"GH_TOKEN\", prefix = \"Bearer \" } }\n\
         [[upstream]]\nname = \"lan\"\nurl = \"http://10.0.0.5:8000/mcp\"\ninsecure_http = true\n",
    )
    .unwrap();
    let UpstreamTransport::Http { remote, .. } = &config.upstreams[0].transport else {
        panic!("http expected");
    };
    assert_eq!(remote.ca_file.as_deref(), Some(Path::new("conf/ca.pem")));
    let headers: Vec<_> = remote
        .headers
        .iter()
        .map(|h| (h.name.as_str(), h.env.as_str(), h.prefix.as_str()))
        .collect();
    assert_eq!(
        headers,
        [
            ("authorization", "GH_TOKEN", "Bearer "),
            ("x-api-key", "GH_KEY", "")
        ]
    );
    check_errors(
        "[[upstream]]\nname = \"a\"\nurl = \"http://mcp.example/mcp\"\nca_file = \"ca.pem\"\n\
         headers = { X-Key = \"sk-in-the-file\", Host = { env = \"H\" }, \"Bad Name\" = { env = \"B\" }, X-Env = { env = \"1BAD\" } }\n\
         [upstream.credential]\nkind = \"api_key\"\nenv = \"KEY\"\n\
         [[upstream]]\nname = \"b\"\nurl = \"http://127.0.0.1:9/mcp\"\ninsecure_http = true\nheaders = { Authorization = { env = \"T\" } }\n\
         [[upstream]]\nname = \"c\"\ncommand = [\"server\"]\nca_file = \"ca.pem\"\n",
        expect![[r#"
            conf/portcullis.toml:3:7: `http://mcp.example/mcp` is plain http to a host that is not loopback: anyone on the way can read and change the calls and the credentials they carry; use https, or set `insecure_http = true` if this network is trusted
            conf/portcullis.toml:4:11: `ca_file` is for an https:// URL; this upstream uses plain http
            conf/portcullis.toml:5:21: header `X-Key` is written in the file; its value belongs in an environment variable: `X-Key = { env = "NAME" }` (with `prefix = "Bearer "` if it needs one)
            conf/portcullis.toml:5:46: header `Host` is set by portcullis or the transport itself; remove it
            conf/portcullis.toml:5:74: `Bad Name` is not an HTTP header name
            conf/portcullis.toml:5:97: `1BAD` is not an environment variable name (letters, digits and `_`, not starting with a digit)
            conf/portcullis.toml:12:17: `insecure_http` is for plain http to a host that is not loopback; this URL is loopback, so remove it
            conf/portcullis.toml:16:11: `ca_file` applies only to a `url` upstream, not to a `command` one"#]],
    );
}

#[test]
fn a_single_upstream_table_is_named_for_what_it_is() {
    // Alone: TOML would say "invalid type: map, expected a sequence".
    check_errors(
        "[upstream]\nname = \"a\"\ncommand = [\"x\"]\n",
        expect![[
            r#"conf/portcullis.toml:1:1: `[upstream]` is a single table; every upstream is an entry of a list, written `[[upstream]]` (double brackets), one per upstream"#
        ]],
    );
    // After a `[[upstream]]`: TOML would say "duplicate key".
    check_errors(
        "[[upstream]]\nname = \"a\"\ncommand = [\"x\"]\n\n  [ upstream ]  # the second\nname = \"b\"\ncommand = [\"y\"]\n",
        expect![[
            r#"conf/portcullis.toml:5:3: `[upstream]` is a single table; every upstream is an entry of a list, written `[[upstream]]` (double brackets), one per upstream"#
        ]],
    );
}

#[test]
fn taint_follows_trust_unless_set_and_scoped_answers_last_an_hour_unless_set() {
    let config = parse(
        Path::new("conf/portcullis.toml"),
        r#"
[server]
approval_scope_secs = 0

[[upstream]]
name = "web"
command = ["web"]

[[upstream]]
name = "files"
command = ["files"]
trusted = true

[[upstream]]
name = "docs"
command = ["docs"]
taint = "none"

[[upstream]]
name = "wiki"
command = ["wiki"]
trusted = true
taint = "session"
"#,
    )
    .unwrap();
    let taints: Vec<(&str, crate::Taint)> = config
        .upstreams
        .iter()
        .map(|u| (u.name.as_str(), u.taint))
        .collect();
    assert_eq!(
        taints,
        [
            ("web", crate::Taint::Session),
            ("files", crate::Taint::None),
            ("docs", crate::Taint::None),
            ("wiki", crate::Taint::Session),
        ]
    );
    assert_eq!(config.approval.scope, None, "0 turns scoped answers off");
    let defaults = parse(
        Path::new("conf/portcullis.toml"),
        "[[upstream]]\nname = \"web\"\ncommand = [\"web\"]\n",
    )
    .unwrap();
    assert_eq!(
        defaults.approval.scope,
        Some(std::time::Duration::from_secs(3600))
    );
    check_errors(
        "[server]\napproval_scope_secs = 90000\n\n[[upstream]]\nname = \"web\"\ncommand = [\"web\"]\ntaint = \"always\"\n",
        expect![[r#"
            conf/portcullis.toml:2:23: `approval_scope_secs` is 90000; it must be between 0 and 86400
            conf/portcullis.toml:7:9: unknown taint `always`; use `session` or `none`"#]],
    );
}

#[test]
fn pinning_is_tofu_unless_set_and_an_upstream_may_set_its_own() {
    let config = parse(
        Path::new("conf/portcullis.toml"),
        "[server]\npinning = \"strict\"\n\n[[upstream]]\nname = \"web\"\ncommand = [\"web\"]\n\n[[upstream]]\nname = \"lab\"\ncommand = [\"lab\"]\npinning = \"off\"\n",
    )
    .unwrap();
    let pinning: Vec<Pinning> = config.upstreams.iter().map(|u| u.pinning).collect();
    assert_eq!(pinning, vec![Pinning::Strict, Pinning::Off]);
    let default = parse(
        Path::new("conf/portcullis.toml"),
        "[[upstream]]\nname = \"web\"\ncommand = [\"web\"]\n",
    )
    .unwrap();
    assert_eq!(default.upstreams[0].pinning, Pinning::Tofu);
    check_errors(
        "[server]\npinning = \"trust\"\n\n[[upstream]]\nname = \"web\"\ncommand = [\"web\"]\npinning = \"never\"\n",
        expect![[r#"
            conf/portcullis.toml:2:11: unknown pinning `trust`; use `tofu`, `strict` or `off`
            conf/portcullis.toml:7:11: unknown pinning `never`; use `tofu`, `strict` or `off`"#]],
    );
}

#[test]
fn the_approval_page_signs_in_with_the_issuer_when_configured() {
    let config = parse(
        Path::new("conf/portcullis.toml"),
        r#"
[http.auth]
issuer = "https://idp.example"
resource = "https://mcp.example/mcp"
approval = { client_id = "portcullis-approvals", client_secret_env = "APPROVALS_SECRET", approvers_group = "approvers" }

[[upstream]]
name = "files"
command = ["server"]
"#,
    )
    .unwrap();
    let sign_in = config.http.approval_sign_in.unwrap();
    assert_eq!(sign_in.client_id, "portcullis-approvals");
    assert_eq!(
        sign_in.client_secret_env.as_deref(),
        Some("APPROVALS_SECRET")
    );
    assert_eq!(sign_in.approvers_group.as_deref(), Some("approvers"));

    // `approval_page = "off"`, `[http.auth]`, then the approval table's `lines` (from line 10)
    // and one upstream.
    let with_page_off = |lines: &str| {
        format!(
            "\n[server]\napproval_page = \"off\"\n\n[http.auth]\nissuer = \"https://idp.example\"\nresource = \"https://mcp.example/mcp\"\n\n[http.auth.approval]\n{lines}\n\n[[upstream]]\nname = \"files\"\ncommand = [\"server\"]\n"
        )
    };
    check_errors(
        &with_page_off("client_id = \" \"\napprovers_group = \"\""),
        expect![[r#"
            conf/portcullis.toml:10:13: `client_id` is empty
            conf/portcullis.toml:11:19: `approvers_group` is empty"#]],
    );
    check_errors(
        &with_page_off("client_id = \"portcullis-approvals\"\nclient_secret_env = \"not a name\""),
        expect!["conf/portcullis.toml:11:21: `not a name` is not an environment variable name"],
    );
    check_errors(
        &with_page_off("client_id = \"portcullis-approvals\""),
        expect![[
            r#"conf/portcullis.toml: `[http.auth.approval]` signs people in on the approval page, but `approval_page = "off"`: turn the page on, or remove the table"#
        ]],
    );
}

#[test]
fn durability_is_process_unless_set_and_names_its_choices() {
    let text = |value: &str| {
        format!(
            "[server]\ndurability = \"{value}\"\n\n[[upstream]]\nname = \"files\"\ncommand = [\"server\"]\n"
        )
    };
    let parsed = |value: &str| {
        parse(Path::new("conf/portcullis.toml"), &text(value))
            .unwrap()
            .evidence
            .durability
    };
    assert_eq!(parsed("process"), crate::Durability::Process);
    assert_eq!(parsed("disk"), crate::Durability::Disk);
    let minimal = parse(
        Path::new("conf/portcullis.toml"),
        "[[upstream]]\nname = \"files\"\ncommand = [\"server\"]\n",
    )
    .unwrap();
    assert_eq!(minimal.evidence.durability, crate::Durability::Process);
    check_errors(
        &text("fast"),
        expect![[
            r#"conf/portcullis.toml:2:14: unknown durability `fast`; use `process` or `disk`"#
        ]],
    );
}

#[test]
fn tool_search_is_off_unless_configured() {
    let upstream = "[[upstream]]\nname = \"a\"\ncommand = [\"x\"]\n";
    let mode = |server: &str| {
        parse(
            Path::new("conf/portcullis.toml"),
            &format!("[server]\n{server}\n{upstream}"),
        )
        .unwrap()
        .tool_search
    };
    assert_eq!(mode(""), ToolSearch::Off);
    assert_eq!(mode("tool_search = \"off\""), ToolSearch::Off);
    assert_eq!(mode("tool_search = \"on\""), ToolSearch::On);
    assert_eq!(
        mode("tool_search = \"auto\""),
        ToolSearch::Auto {
            above: DEFAULT_TOOL_SEARCH_THRESHOLD
        }
    );
    assert_eq!(
        mode("tool_search = \"auto\"\ntool_search_threshold = 7"),
        ToolSearch::Auto { above: 7 }
    );
}

#[test]
fn tool_search_settings_and_the_reserved_name_are_checked() {
    check_errors(
        r#"[server]
tool_search = "sometimes"
tool_search_threshold = 0

[[upstream]]
name = "portcullis"
command = ["x"]

[[upstream]]
name = "PortCullis"
command = ["y"]
"#,
        expect![[r#"
            conf/portcullis.toml:2:15: unknown tool_search `sometimes`; use `off`, `auto` or `on`
            conf/portcullis.toml:3:25: `tool_search_threshold` is 0; it must be between 1 and 100000
            conf/portcullis.toml:3:25: `tool_search_threshold` applies only to `tool_search = "auto"`; remove it or set `tool_search = "auto"`
            conf/portcullis.toml:6:8: upstream name `portcullis` is reserved: portcullis's own tools are named `portcullis.…`; choose another name
            conf/portcullis.toml:10:8: upstream name `PortCullis` is reserved: portcullis's own tools are named `portcullis.…`; choose another name"#]],
    );
    check_errors(
        "[server]\ntool_search = \"on\"\ntool_search_threshold = 10\n[[upstream]]\nname = \"a\"\ncommand = [\"x\"]\n",
        expect![[
            r#"conf/portcullis.toml:3:25: `tool_search_threshold` applies only to `tool_search = "auto"`; remove it or set `tool_search = "auto"`"#
        ]],
    );
}

const ONE_UPSTREAM: &str = "[[upstream]]\nname = \"a\"\ncommand = [\"x\"]\n";

#[test]
fn shared_state_is_local_unless_config_names_a_database_by_its_variable() {
    let local = parse(Path::new("conf/portcullis.toml"), ONE_UPSTREAM).unwrap();
    assert_eq!(local.state, StateBackend::Local);
    let explicit = format!("[state]\nbackend = \"local\"\n{ONE_UPSTREAM}");
    let explicit = parse(Path::new("conf/portcullis.toml"), &explicit).unwrap();
    assert_eq!(explicit.state, StateBackend::Local);
    let shared = format!(
        "[server]\nstate_key_env = \"PORTCULLIS_STATE_KEY\"\n[state]\nbackend = \"postgres\"\nurl_env = \"PORTCULLIS_DATABASE_URL\"\n{ONE_UPSTREAM}"
    );
    let shared = parse(Path::new("conf/portcullis.toml"), &shared).unwrap();
    assert_eq!(
        shared.state,
        StateBackend::Postgres {
            url_env: "PORTCULLIS_DATABASE_URL".to_owned(),
            ca_file: None,
        }
    );
    let verified = format!(
        "[server]\nstate_key_env = \"K\"\n[state]\nbackend = \"postgres\"\nurl_env = \"URL\"\nca_file = \"db-ca.pem\"\n{ONE_UPSTREAM}"
    );
    let verified = parse(Path::new("conf/portcullis.toml"), &verified).unwrap();
    assert_eq!(
        verified.state,
        StateBackend::Postgres {
            url_env: "URL".to_owned(),
            ca_file: Some(PathBuf::from("conf/db-ca.pem")),
        }
    );
}

#[test]
fn shared_state_settings_that_cannot_work_are_refused() {
    // No variable; no shared requestState key (a retry on another replica would be refused).
    check_errors(
        &format!("[state]\nbackend = \"postgres\"\n{ONE_UPSTREAM}"),
        expect![[r#"
            conf/portcullis.toml:1:1: replicas sharing state in postgres must seal `requestState` with one key: set `[server] state_key_env` to the variable holding it (at least 32 bytes), the same on every replica
            conf/portcullis.toml:1:1: `backend = "postgres"` needs `url_env`, the environment variable holding the connection string (`postgres://USER:PASSWORD@HOST:PORT/DATABASE`)"#]],
    );
    // A connection string written in the file is not a variable name, and is not echoed.
    check_errors(
        &format!(
            "[server]\nstate_key_env = \"K\"\n[state]\nbackend = \"postgres\"\nurl_env = \"postgres://u:hunter2@db/p\"\n{ONE_UPSTREAM}"
        ),
        expect![
            "conf/portcullis.toml:5:11: `url_env` is not an environment variable name (its value is not shown: it may be a connection string); put the connection string in a variable and name that variable here"
        ],
    );
    check_errors(
        &format!("[state]\nbackend = \"redis\"\nurl_env = \"URL\"\n{ONE_UPSTREAM}"),
        expect![
            "conf/portcullis.toml:2:11: unknown state backend `redis`; use `local` or `postgres`"
        ],
    );
    check_errors(
        &format!("[state]\nbackend = \"local\"\nurl_env = \"URL\"\n{ONE_UPSTREAM}"),
        expect![[
            r#"conf/portcullis.toml:3:11: `url_env` names the database of `backend = "postgres"`; the local backend has none: remove it, or set `backend = "postgres"`"#
        ]],
    );
    check_errors(
        &format!("[state]\nurl = \"x\"\n{ONE_UPSTREAM}"),
        expect![
            "conf/portcullis.toml:2:1: unknown field `url`, expected one of `backend`, `url_env`, `ca_file`"
        ],
    );
    check_errors(
        &format!("[state]\nca_file = \"ca.pem\"\n{ONE_UPSTREAM}"),
        expect![[
            r#"conf/portcullis.toml:2:11: `ca_file` is for the database of `backend = "postgres"`; the local backend has none: remove it, or set `backend = "postgres"`"#
        ]],
    );
    check_errors(
        &format!(
            "[server]\nstate_key_env = \"K\"\n[state]\nbackend = \"postgres\"\nurl_env = \"URL\"\nca_file = \" \"\n{ONE_UPSTREAM}"
        ),
        expect![
            "conf/portcullis.toml:6:11: `ca_file` is empty; give the path of a PEM file holding the certificate authority that signed the database's certificate"
        ],
    );
}
