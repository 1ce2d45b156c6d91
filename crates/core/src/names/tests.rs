//! Naming cases as data: each row is an input and its expected outcome.
#![expect(clippy::unwrap_used, clippy::indexing_slicing, reason = "tests")]

use super::*;

fn up(name: &str) -> UpstreamName {
    UpstreamName::new(name).unwrap()
}

#[test]
fn upstream_names() {
    let cases: &[(&str, bool)] = &[
        ("files", true),
        ("mail-2", true),
        ("a_b", true),
        ("", false),
        ("2files", false),
        ("fi.les", false),
        ("fi+les", false),
        ("fi les", false),
        ("é", false),
        (&"x".repeat(32), true),
        (&"x".repeat(33), false),
    ];
    for (name, ok) in cases {
        assert_eq!(UpstreamName::new(name).is_ok(), *ok, "{name:?}");
    }
}

#[test]
fn expose_and_resolve_round_trip() {
    let upstreams = [up("files"), up("mail")];
    let exposed = Namespacing::Prefixed
        .expose(&upstreams[1], "send.v2")
        .unwrap();
    assert_eq!(exposed, "mail.send.v2");
    let resolved = Namespacing::Prefixed.resolve(&upstreams, &exposed).unwrap();
    assert_eq!(
        resolved,
        ExposedName {
            upstream: 1,
            local: "send.v2"
        }
    );
}

#[test]
fn unknown_prefix_or_missing_separator_does_not_resolve() {
    let upstreams = [up("files")];
    for name in ["mail.send", "send", "files", ".send", "FILES.read"] {
        assert_eq!(
            Namespacing::Prefixed.resolve(&upstreams, name),
            None,
            "{name}"
        );
    }
    assert_eq!(
        Namespacing::Prefixed.resolve(&upstreams, "files."),
        Some(ExposedName {
            upstream: 0,
            local: ""
        })
    );
}

#[test]
fn names_are_refused_not_truncated() {
    let upstream = up("files");
    let long = "t".repeat(MAX_TOOL_NAME_LEN - "files.".len());
    assert!(Namespacing::Prefixed.expose(&upstream, &long).is_ok());
    let too_long = format!("{long}x");
    assert_eq!(
        Namespacing::Prefixed.expose(&upstream, &too_long),
        Err(NameError::TooLong(format!("files.{too_long}")))
    );
    for bad in ["", "has space", "slash/y", "semi;colon", "ünï"] {
        assert!(
            Namespacing::Prefixed.expose(&upstream, bad).is_err(),
            "{bad}"
        );
        assert!(
            Namespacing::Passthrough.expose(&upstream, bad).is_err(),
            "{bad}"
        );
    }
}

#[test]
fn passthrough_keeps_names_and_needs_one_upstream() {
    let one = [up("only")];
    assert_eq!(
        Namespacing::Passthrough.expose(&one[0], "echo").unwrap(),
        "echo"
    );
    assert_eq!(
        Namespacing::Passthrough.resolve(&one, "echo"),
        Some(ExposedName {
            upstream: 0,
            local: "echo"
        })
    );
    let two = [up("a"), up("b")];
    assert_eq!(Namespacing::Passthrough.resolve(&two, "echo"), None);
}

#[test]
fn uris_are_prefixed_by_scheme() {
    let upstreams = [up("everything"), up("files")];
    let exposed = Namespacing::Prefixed.expose_uri(&upstreams[0], "demo://resource/{id}");
    assert_eq!(exposed, "everything+demo://resource/{id}");
    assert_eq!(
        Namespacing::Prefixed.resolve_uri(&upstreams, &exposed),
        Some(ExposedName {
            upstream: 0,
            local: "demo://resource/{id}"
        })
    );
    assert_eq!(
        Namespacing::Prefixed.resolve_uri(&upstreams, "demo://resource/1"),
        None
    );
    assert_eq!(
        Namespacing::Prefixed.resolve_uri(&upstreams, "other+demo://x"),
        None
    );
}

#[test]
fn the_reserved_namespace_is_never_exposed() {
    let upstreams = [up("files"), up("portcullis"), up("Portcullis")];
    let cases: &[(Namespacing, usize, &str, bool)] = &[
        (Namespacing::Passthrough, 0, "portcullis.call_tool", false),
        (
            Namespacing::Passthrough,
            0,
            "PORTCULLIS.search_tools",
            false,
        ),
        (Namespacing::Passthrough, 0, "portcullis_sign_in", true),
        (Namespacing::Passthrough, 0, "portcullis", true),
        (Namespacing::Prefixed, 1, "call_tool", false),
        (Namespacing::Prefixed, 2, "call_tool", false),
        (Namespacing::Prefixed, 0, "portcullis.call_tool", true),
    ];
    for (namespacing, upstream, local, ok) in cases {
        let exposed = namespacing.expose(&upstreams[*upstream], local);
        assert_eq!(exposed.is_ok(), *ok, "{namespacing:?} {local}: {exposed:?}");
    }
    assert!(is_reserved("portcullis.describe_tool"));
    assert!(!is_reserved("files.portcullis.x"));
}
