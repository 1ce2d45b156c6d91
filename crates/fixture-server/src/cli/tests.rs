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
