//! Start modes and the loopback-only rule for `--listen`.
#![expect(clippy::unwrap_used, reason = "tests")]

use clap::Parser as _;

use super::*;

#[test]
fn start_modes_parse() {
    let cases: &[(&str, Option<StartMode>)] = &[
        ("normal", Some(StartMode::Normal)),
        ("crash", Some(StartMode::Crash)),
        ("hang", Some(StartMode::Hang)),
        (
            "slow:250",
            Some(StartMode::Slow(Duration::from_millis(250))),
        ),
        ("slow:0", Some(StartMode::Slow(Duration::ZERO))),
        ("slow:", None),
        ("slow:-1", None),
        ("slow:1s", None),
        ("Crash", None),
        ("", None),
    ];
    for (text, expected) in cases {
        assert_eq!(text.parse::<StartMode>().ok(), *expected, "{text}");
    }
}

fn config(args: &[&str]) -> Result<Config, String> {
    let argv = ["portcullis-fixture", "--scratch", "/tmp/s"]
        .iter()
        .chain(args);
    Args::try_parse_from(argv)
        .map_err(|error| error.to_string())?
        .into_config()
}

#[test]
fn listen_must_be_loopback() {
    let cases: &[(&str, bool)] = &[
        ("127.0.0.1:0", true),
        ("127.0.0.1:8787", true),
        ("[::1]:8787", true),
        ("0.0.0.0:8787", false),
        ("[::]:8787", false),
        ("192.168.1.2:8787", false),
    ];
    for (address, allowed) in cases {
        assert_eq!(
            config(&["--listen", address]).is_ok(),
            *allowed,
            "{address}"
        );
    }
}

#[test]
fn defaults() {
    let config = config(&[]).unwrap();
    assert_eq!(config.transport, Transport::Stdio);
    assert_eq!(config.name, "portcullis-fixture");
    assert_eq!(config.start_mode, StartMode::Normal);
    assert_eq!(config.tools_delay, Duration::ZERO);
    assert_eq!(config.extra_tools, 0);
    assert_eq!(config.page_size, None);
}

#[test]
fn page_size_zero_is_refused() {
    assert!(config(&["--page-size", "0"]).is_err());
}

#[test]
fn auth_flags_need_an_issuer_and_http() {
    let listen = ["--listen", "127.0.0.1:0"];
    let with = |extra: &[&str]| {
        let mut args = listen.to_vec();
        args.extend_from_slice(extra);
        config(&args)
    };
    for flag in [
        &["--auth-resource", "auto"][..],
        &["--auth-tool-scope", "send_message=mail.send"][..],
        &["--auth-record", "/tmp/r.jsonl"][..],
        &["--public-lists"][..],
    ] {
        assert!(with(flag).is_err(), "{flag:?} without --auth-issuer");
    }
    assert!(
        config(&["--auth-issuer", "http://127.0.0.1:8080"]).is_err(),
        "stdio"
    );
    assert_eq!(config(&[]).unwrap().auth, None);

    let auth = with(&[
        "--auth-issuer",
        "http://127.0.0.1:8080",
        "--auth-tool-scope",
        "send_message=mail.send",
        "--auth-tool-scope",
        "send_message=mail.read",
        "--public-lists",
    ])
    .unwrap()
    .auth
    .unwrap();
    assert!(auth.allow_http);
    assert_eq!(auth.resource, AuthResource::Auto);
    assert!(auth.public_lists);
    let scopes: Vec<&String> = auth
        .tool_scopes
        .get("send_message")
        .unwrap()
        .iter()
        .collect();
    assert_eq!(scopes, ["mail.read", "mail.send"]);

    let given = with(&[
        "--auth-issuer",
        "https://idp.example",
        "--auth-resource",
        "http://127.0.0.1:9/mcp",
    ])
    .unwrap()
    .auth
    .unwrap();
    assert!(!given.allow_http);
    assert_eq!(
        given.resource,
        AuthResource::Url("http://127.0.0.1:9/mcp".to_owned())
    );
}

#[test]
fn plain_http_issuers_only_on_loopback() {
    let cases: &[(&str, bool)] = &[
        ("http://127.0.0.1:8080", true),
        ("http://[::1]:8080", true),
        ("http://localhost:8080", true),
        ("https://idp.example", true),
        ("http://idp.example", false),
        ("http://10.0.0.1", false),
        ("ftp://127.0.0.1", false),
        ("not a url", false),
    ];
    for (issuer, allowed) in cases {
        let result = config(&["--listen", "127.0.0.1:0", "--auth-issuer", issuer]);
        assert_eq!(result.is_ok(), *allowed, "{issuer}");
    }
}

#[test]
fn tool_scopes_parse() {
    let cases: &[(&str, bool)] = &[
        ("send_message=mail.send", true),
        ("send_message=urn:x:y", true),
        ("send_message", false),
        ("=mail.send", false),
        ("send_message=", false),
        ("send_message=a b", false),
        ("send_message=a\"b", false),
    ];
    for (pair, ok) in cases {
        assert_eq!(parse_tool_scope(pair).is_ok(), *ok, "{pair}");
    }
}
