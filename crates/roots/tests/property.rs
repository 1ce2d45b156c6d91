//! Property: a path the roots check accepts resolves inside the roots, by an independent
//! resolver. The tree is real (a temporary directory), with symbolic links that lead out of
//! the root (relative and absolute), back into it, to itself, and in a chain; the paths are
//! generated from its names, `.` and `..`, relative to the upstream's working directory or
//! absolute. The independent resolver walks them as the kernel does, one component at a time,
//! following every link, and treats a missing component as a directory an upstream may make
//! first (so `missing/..` counts, the worst case).
#![expect(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "tests"
)]

use std::ffi::OsStr;
use std::os::unix::ffi::OsStringExt as _;
use std::os::unix::fs::symlink;
use std::path::{Component, Path, PathBuf};

use portcullis_roots::{Resolver, Roots, Tilde};
use proptest::prelude::*;
use proptest::test_runner::{TestCaseError, TestRunner};

const NAMES: &[&str] = &[
    "a", "b", "c", "up", "in", "loop", "abs", "deep", "chain", "file", "missing", "..", ".",
];

/// root/{a/b, c, file}; out/ beside root; the links.
fn tree() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let top = dir.path().canonicalize().unwrap();
    let root = top.join("root");
    let out = top.join("out");
    std::fs::create_dir_all(root.join("a/b")).unwrap();
    std::fs::create_dir_all(root.join("c")).unwrap();
    std::fs::create_dir_all(out.join("a")).unwrap();
    std::fs::write(root.join("file"), "x").unwrap();
    symlink("../../out", root.join("a/up")).unwrap();
    symlink("../c", root.join("a/in")).unwrap();
    symlink(".", root.join("c/loop")).unwrap();
    symlink(&out, root.join("abs")).unwrap();
    symlink("../../c", root.join("a/b/deep")).unwrap();
    symlink("a/up", root.join("chain")).unwrap();
    (dir, root, out)
}

/// Where the kernel (or an upstream that makes missing directories first) ends up.
fn independent(path: &Path) -> Option<PathBuf> {
    let mut pending: Vec<PathBuf> = vec![path.to_path_buf()];
    let mut current = PathBuf::from("/");
    let mut links = 0;
    let mut missing = false;
    while let Some(next) = pending.pop() {
        let mut parts: Vec<Component<'_>> = next.components().collect();
        parts.reverse();
        while let Some(part) = parts.pop() {
            match part {
                Component::RootDir => current = PathBuf::from("/"),
                Component::CurDir | Component::Prefix(_) => {}
                Component::ParentDir => {
                    current.pop();
                }
                Component::Normal(name) => {
                    let candidate = current.join(name);
                    let meta = if missing {
                        None
                    } else {
                        std::fs::symlink_metadata(&candidate).ok()
                    };
                    match meta {
                        Some(meta) if meta.file_type().is_symlink() => {
                            links += 1;
                            if links > 40 {
                                return None;
                            }
                            let target = std::fs::read_link(&candidate).unwrap();
                            // The link's target next (from the link's directory, or from
                            // `/`), then the rest of this path after it.
                            let remaining: PathBuf = parts.iter().rev().collect();
                            pending.push(remaining);
                            pending.push(target);
                            break;
                        }
                        Some(_) => current = candidate,
                        None => {
                            missing = true;
                            current = candidate;
                        }
                    }
                }
            }
        }
    }
    Some(current)
}

fn path_from(parts: &[usize], absolute: Option<&Path>) -> PathBuf {
    let mut path = absolute.map(Path::to_path_buf).unwrap_or_default();
    for &index in parts {
        path.push(NAMES[index % NAMES.len()]);
    }
    path
}

/// The tree, its root and the resolver of an upstream working in `root/a`, made once per
/// property: the checks only read the tree, and making one per case cost most of the time.
struct World {
    _dir: tempfile::TempDir,
    root: PathBuf,
    out: PathBuf,
    top: PathBuf,
    roots: Roots,
    resolver: Resolver,
}

/// Runs `property` on `cases` inputs from `strategy` against one [`World`], failing with the
/// shrunk input of a failure.
fn on_one_tree<S: Strategy>(
    cases: u32,
    strategy: S,
    property: impl Fn(&World, S::Value) -> Result<(), TestCaseError>,
) where
    S::Value: std::fmt::Debug,
{
    let (dir, root, out) = tree();
    let world = World {
        roots: Roots::from_paths(&[&root]).unwrap(),
        resolver: Resolver::new(root.join("a"), Tilde::Deny).unwrap(),
        top: root.parent().unwrap().to_path_buf(),
        _dir: dir,
        root,
        out,
    };
    // Failures are kept beside this file, as `proptest!` keeps them, and run first.
    let config = ProptestConfig {
        cases,
        source_file: Some(file!()),
        ..ProptestConfig::default()
    };
    if let Err(failure) = TestRunner::new(config).run(&strategy, |input| property(&world, input)) {
        panic!("{failure}");
    }
}

#[test]
fn an_accepted_path_resolves_inside_the_roots() {
    let parts = proptest::collection::vec(0usize..NAMES.len(), 1..8);
    on_one_tree(2000, (parts, 0usize..3), |world, (parts, anchor)| {
        let path = match anchor {
            0 => path_from(&parts, None),
            1 => path_from(&parts, Some(&world.root)),
            _ => path_from(&parts, Some(&world.top)),
        };
        if world
            .resolver
            .resolve_within(&world.roots, OsStr::new(path.as_os_str()))
            .is_ok()
        {
            let absolute = if path.is_absolute() {
                path.clone()
            } else {
                world.root.join("a").join(&path)
            };
            let reached = independent(&absolute);
            prop_assert!(
                reached
                    .as_ref()
                    .is_some_and(|reached| reached.starts_with(&world.root)),
                "`{}` was accepted but reaches {:?} (outside {})",
                path.display(),
                reached,
                world.root.display()
            );
            prop_assert!(!reached.unwrap().starts_with(&world.out));
        }
        Ok(())
    });
}

/// `path` as a `file://` URI: each byte percent-encoded where `encode` says (cycled), so that
/// `.`, `/` and letters arrive encoded as well as plain, after an empty or `localhost` host,
/// the scheme in either case.
fn uri_from(path: &Path, encode: &[bool], localhost: bool, upper: bool) -> String {
    let mut uri = String::from(if upper { "FILE://" } else { "file://" });
    if localhost {
        uri.push_str("localhost");
    }
    for (index, byte) in path.as_os_str().as_encoded_bytes().iter().enumerate() {
        if encode[index % encode.len()] {
            uri.push_str(&format!("%{byte:02X}"));
        } else {
            uri.push(char::from(*byte));
        }
    }
    uri
}

/// The path an upstream reads from a `file://` URI: its path part, percent-decoded once.
fn decoded(uri: &str) -> PathBuf {
    let rest = &uri["file://".len()..];
    let path = &rest[rest.find('/').unwrap()..];
    let (bytes, mut out) = (path.as_bytes(), Vec::new());
    let mut index = 0;
    while index < bytes.len() {
        if bytes[index] == b'%' {
            let hex = std::str::from_utf8(&bytes[index + 1..index + 3]).unwrap();
            out.push(u8::from_str_radix(hex, 16).unwrap());
            index += 3;
        } else {
            out.push(bytes[index]);
            index += 1;
        }
    }
    PathBuf::from(std::ffi::OsString::from_vec(out))
}

/// The same for `file://` URI arguments: percent-encoding (of dots and slashes too) is not a
/// way out.
#[test]
fn an_accepted_file_uri_resolves_inside_the_roots() {
    let inputs = (
        proptest::collection::vec(0usize..NAMES.len(), 1..8),
        any::<bool>(),
        proptest::collection::vec(any::<bool>(), 1..6),
        any::<bool>(),
        any::<bool>(),
    );
    on_one_tree(
        1000,
        inputs,
        |world, (parts, outside_first, encode, localhost, upper)| {
            let anchor = if outside_first {
                &world.top
            } else {
                &world.root
            };
            let uri = uri_from(&path_from(&parts, Some(anchor)), &encode, localhost, upper);
            if world
                .resolver
                .resolve_uri_within(&world.roots, &uri)
                .is_ok()
            {
                let reached = independent(&decoded(&uri));
                prop_assert!(
                    reached
                        .as_ref()
                        .is_some_and(|reached| reached.starts_with(&world.root)),
                    "`{}` was accepted but reaches {:?} (outside {})",
                    uri,
                    reached,
                    world.root.display()
                );
            }
            Ok(())
        },
    );
}

/// The tree has ways out, which the independent resolver sees and the check refuses, and ways
/// in, which both accept: the property above is not vacuous.
#[test]
fn the_tree_has_ways_out_that_are_refused_and_ways_in_that_are_accepted() {
    let (_dir, root, _out) = tree();
    let roots = Roots::from_paths(&[&root]).unwrap();
    let base = root.join("a");
    let resolver = Resolver::new(&base, Tilde::Deny).unwrap();
    for out in [
        "up",
        "up/a",
        "../abs",
        "../chain",
        "../../out",
        "b/deep/../../up",
    ] {
        let reached = independent(&base.join(out)).unwrap();
        assert!(
            !reached.starts_with(&root),
            "{out} reaches {}",
            reached.display()
        );
        assert!(
            resolver.resolve_within(&roots, OsStr::new(out)).is_err(),
            "{out} was accepted"
        );
    }
    for inside in [
        "b",
        "in",
        "../c/loop/loop",
        "b/deep",
        "missing/new",
        "../file",
    ] {
        let reached = independent(&base.join(inside)).unwrap();
        assert!(
            reached.starts_with(&root),
            "{inside} reaches {}",
            reached.display()
        );
        assert!(
            resolver.resolve_within(&roots, OsStr::new(inside)).is_ok(),
            "{inside} was refused"
        );
    }
}
