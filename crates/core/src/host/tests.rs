//! Host-name grants as data: each row is an input and what it parses to, or the error shown.
#![expect(clippy::unwrap_used, reason = "tests")]

use super::*;

#[test]
fn grants_parse_or_say_what_is_wrong() {
    let cases: &[(&str, Result<&str, &str>)] = &[
        ("api.github.com:443", Ok("api.github.com:443")),
        ("API.GitHub.com:443", Ok("api.github.com:443")),
        ("localhost:5432", Ok("localhost:5432")),
        (
            "xn--bcher-kva.example:8443",
            Ok("xn--bcher-kva.example:8443"),
        ),
        ("a-b.c2.example:1", Ok("a-b.c2.example:1")),
        ("host:65535", Ok("host:65535")),
        (
            "",
            Err("the host name is empty; write `host:port`, for example `api.github.com:443`"),
        ),
        (
            ":443",
            Err("the host name is empty; write `host:port`, for example `api.github.com:443`"),
        ),
        (
            "api.github.com",
            Err(
                "`api.github.com` has no port; write it as `api.github.com:443`, with the port it connects to",
            ),
        ),
        (
            "api.github.com:0",
            Err("the port in `api.github.com:0` must be a number between 1 and 65535"),
        ),
        (
            "api.github.com:65536",
            Err("the port in `api.github.com:65536` must be a number between 1 and 65535"),
        ),
        (
            "api.github.com:+443",
            Err("the port in `api.github.com:+443` must be a number between 1 and 65535"),
        ),
        (
            "api.github.com:https",
            Err("the port in `api.github.com:https` must be a number between 1 and 65535"),
        ),
        (
            "api.github.com:",
            Err("the port in `api.github.com:` must be a number between 1 and 65535"),
        ),
        (
            "*.github.com:443",
            Err(
                "`*.github.com` is a wildcard; name each host (`api.github.com:443`): the upstream can resolve only the names its hosts file lists, and a wildcard would let it choose where to connect",
            ),
        ),
        (
            "*.github.com",
            Err(
                "`*.github.com` is a wildcard; name each host (`api.github.com:443`): the upstream can resolve only the names its hosts file lists, and a wildcard would let it choose where to connect",
            ),
        ),
        (
            "10.0.0.5:5432",
            Err(
                "`10.0.0.5:5432` is an address, not a host name; name the host, whose addresses Portcullis looks up when the upstream connects",
            ),
        ),
        (
            "[::1]:443",
            Err(
                "`[::1]:443` is an address, not a host name; name the host, whose addresses Portcullis looks up when the upstream connects",
            ),
        ),
        (
            "::1:443",
            Err(
                "`::1:443` is an address, not a host name; name the host, whose addresses Portcullis looks up when the upstream connects",
            ),
        ),
        (
            "api.github.com.:443",
            Err("host name `api.github.com.` ends with a dot; write it without the dot"),
        ),
        (
            "api..github.com:443",
            Err(
                "host name `api..github.com` has an empty label (two dots in a row, or a leading dot)",
            ),
        ),
        (
            ".github.com:443",
            Err("host name `.github.com` has an empty label (two dots in a row, or a leading dot)"),
        ),
        (
            "api_v2.example:443",
            Err(
                "host name `api_v2.example` may contain only ASCII letters, digits, `-` and `.` (write an internationalised name in its `xn--` form)",
            ),
        ),
        (
            "bücher.example:443",
            Err(
                "host name `bücher.example` may contain only ASCII letters, digits, `-` and `.` (write an internationalised name in its `xn--` form)",
            ),
        ),
        (
            "api github.com:443",
            Err(
                "host name `api github.com` may contain only ASCII letters, digits, `-` and `.` (write an internationalised name in its `xn--` form)",
            ),
        ),
        (
            "-api.example:443",
            Err("host name `-api.example` has a label that starts or ends with `-`"),
        ),
    ];
    for (text, expected) in cases {
        let got = HostPort::parse(text)
            .map(|grant| grant.to_string())
            .map_err(|error| error.to_string());
        let expected = expected.map(str::to_owned).map_err(str::to_owned);
        assert_eq!(got, expected, "{text:?}");
    }
}

#[test]
fn lengths_are_bounded() {
    let label = "a".repeat(MAX_LABEL_LEN);
    assert!(HostName::new(&format!("{label}.example")).is_ok());
    assert!(matches!(
        HostName::new(&format!("{label}a.example")),
        Err(HostError::LabelTooLong(_))
    ));
    let long = [label.as_str(); 4].join(".");
    assert_eq!(long.len(), 255);
    assert!(matches!(HostName::new(&long), Err(HostError::TooLong(_))));
    let longest = &long[..MAX_HOST_NAME_LEN];
    assert!(HostName::new(longest).is_ok(), "{longest}");
}

#[test]
fn a_grant_is_a_name_and_a_port() {
    let grant = HostPort::parse("Example.ORG:8443").unwrap();
    assert_eq!(grant.host().as_str(), "example.org");
    assert_eq!(grant.port(), 8443);
    assert_eq!(
        HostPort::new(HostName::new("example.org").unwrap(), 0),
        Err(HostError::Port("example.org:0".to_owned()))
    );
}
