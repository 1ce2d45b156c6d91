//! Path and `file://` arguments resolved and checked against a root: never a panic, and a path
//! accepted is inside the root (no `..` left, under it).
#![no_main]

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt as _;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use portcullis_roots::{Resolver, Roots, Tilde};

struct Tree {
    _dir: tempfile::TempDir,
    root: std::path::PathBuf,
    roots: Roots,
    resolver: Resolver,
}

fn tree() -> &'static Tree {
    static TREE: OnceLock<Tree> = OnceLock::new();
    TREE.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir");
        let top = dir.path().canonicalize().expect("canonical");
        let root = top.join("root");
        std::fs::create_dir_all(root.join("a/b")).expect("mkdir");
        std::fs::create_dir_all(top.join("out")).expect("mkdir");
        std::os::unix::fs::symlink("../../out", root.join("a/up")).expect("link");
        std::os::unix::fs::symlink(".", root.join("a/loop")).expect("link");
        let roots = Roots::from_paths(&[&root]).expect("roots");
        let resolver = Resolver::new(root.join("a"), Tilde::Deny).expect("resolver");
        Tree {
            _dir: dir,
            root,
            roots,
            resolver,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let tree = tree();
    if let Ok(resolved) = tree
        .resolver
        .resolve_within(&tree.roots, OsStr::from_bytes(data))
    {
        assert!(resolved.as_path().starts_with(&tree.root), "{resolved:?}");
    }
    if let Ok(uri) = std::str::from_utf8(data)
        && let Ok(resolved) = tree.resolver.resolve_uri_within(&tree.roots, uri)
    {
        assert!(resolved.as_path().starts_with(&tree.root), "{resolved:?}");
    }
});
