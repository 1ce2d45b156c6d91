//! Path checks as data, and completion candidates from a real directory.
#![expect(clippy::unwrap_used, reason = "tests")]

use super::*;

#[test]
fn relative_paths_are_checked() {
    let cases: &[(&str, Result<(), PathError>)] = &[
        ("a.txt", Ok(())),
        ("dir/a.txt", Ok(())),
        ("./a.txt", Ok(())),
        ("dir/./a.txt", Ok(())),
        ("a..b", Ok(())),
        ("", Err(PathError::Empty)),
        (".", Err(PathError::Empty)),
        ("..", Err(PathError::Parent("..".into()))),
        ("../a", Err(PathError::Parent("../a".into()))),
        ("dir/../a", Err(PathError::Parent("dir/../a".into()))),
        ("dir/..", Err(PathError::Parent("dir/..".into()))),
        (
            "/etc/passwd",
            Err(PathError::Absolute("/etc/passwd".into())),
        ),
        ("//x", Err(PathError::Absolute("//x".into()))),
    ];
    for (path, expected) in cases {
        assert_eq!(&check_relative(path), expected, "{path:?}");
    }
}

#[test]
fn resolve_stays_under_the_root() {
    let directory = tempfile::tempdir().unwrap();
    let scratch = Scratch::open(directory.path()).unwrap();
    let resolved = scratch.resolve("dir/a.txt").unwrap();
    assert!(resolved.starts_with(scratch.root()));
    assert!(scratch.resolve("../a.txt").is_err());
}

#[test]
fn files_with_prefix_lists_nested_files() {
    let directory = tempfile::tempdir().unwrap();
    let scratch = Scratch::open(directory.path()).unwrap();
    for file in [
        "b.txt",
        "a.txt",
        "sub/c.txt",
        "sub/deeper/d.txt",
        "other.md",
    ] {
        let path = scratch.resolve(file).unwrap();
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, "x").unwrap();
    }
    assert_eq!(
        scratch.files_with_prefix("", 10),
        (
            vec![
                "a.txt".to_owned(),
                "b.txt".to_owned(),
                "other.md".to_owned(),
                "sub/c.txt".to_owned(),
                "sub/deeper/d.txt".to_owned(),
            ],
            false
        )
    );
    assert_eq!(
        scratch.files_with_prefix("sub/", 1),
        (vec!["sub/c.txt".to_owned()], true)
    );
    assert_eq!(scratch.files_with_prefix("zzz", 10), (vec![], false));
}
