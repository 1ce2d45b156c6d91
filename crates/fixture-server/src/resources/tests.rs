//! Percent-decoding of `{path}` in `fixture://files/{path}`, and refused reads.
#![expect(clippy::unwrap_used, reason = "tests")]

use super::*;

#[test]
fn percent_decoding() {
    let cases: &[(&str, Option<&str>)] = &[
        ("a.txt", Some("a.txt")),
        ("sub%2Fc.txt", Some("sub/c.txt")),
        ("sub%2fc.txt", Some("sub/c.txt")),
        ("sp%20ace", Some("sp ace")),
        ("%C3%A9", Some("é")),
        ("%", None),
        ("%2", None),
        ("%zz", None),
        ("%FF", None),
    ];
    for (encoded, expected) in cases {
        assert_eq!(percent_decode(encoded).as_deref(), *expected, "{encoded}");
    }
}

#[tokio::test]
async fn reading_refuses_escapes() {
    let directory = tempfile::tempdir().unwrap();
    let scratch = Scratch::open(directory.path()).unwrap();
    for uri in [
        "fixture://files/..%2Fx",
        "fixture://files/%2Fetc%2Fpasswd",
        "other://x",
    ] {
        assert!(read(&scratch, uri).await.is_err(), "{uri}");
    }
    assert!(read(&scratch, "fixture://readme").await.is_ok());
}
