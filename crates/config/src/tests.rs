//! Configuration cases: each input with the exact messages a person reads.
#![expect(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "tests"
)]

use std::path::Path;

use expect_test::{Expect, expect};

use crate::{UpstreamTransport, parse};

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
        expect![[
            r#"conf/portcullis.toml:4:1: unknown field `comand`, expected one of `name`, `command`, `env`, `inherit_env`, `cwd`, `url`, `call_timeout_secs`, `start_timeout_secs`"#
        ]],
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
"#,
        expect![[r#"
            conf/portcullis.toml:2:15: `passthrough` keeps tool names unchanged and so serves exactly one upstream, but 3 are configured; use `prefixed`
            conf/portcullis.toml:3:13: `page_size` is 0; it must be between 1 and 10000
            conf/portcullis.toml:6:10: `0.0.0.0:8080` is not a loopback address; Portcullis listens on loopback only until client authentication is configured
            conf/portcullis.toml:7:20: origin `localhost:3000` needs a scheme, e.g. `http://localhost:3000`
            conf/portcullis.toml:10:8: upstream name `files.v2` may contain only ASCII letters, digits, `_` and `-`, and must start with a letter
            conf/portcullis.toml:11:11: `command` is empty; give the program and its arguments, e.g. `["node", "server.js"]`
            conf/portcullis.toml:15:7: `cwd` applies only to a `command` upstream, not to a `url` one
            conf/portcullis.toml:15:7: `ftp://mail` is not an http:// or https:// URL with a host
            conf/portcullis.toml:20:11: an upstream has either a `command` (stdio) or a `url` (streamable HTTP), not both
            conf/portcullis.toml:23:21: `call_timeout_secs` is -1; it must be between 1 and 86400"#]],
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
