//! Roots, resolution and argument discovery on a real filesystem in temporary directories. The
//! path-escape and argument cases are data (`fixtures/paths.json`, `fixtures/arguments.json`),
//! each file run by one test that reports every case that does not come out as written.
#![allow(
    clippy::panic,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    reason = "tests"
)]

use std::ffi::OsStr;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::{Value, json};
use tempfile::TempDir;

use super::*;

#[derive(Deserialize)]
#[serde(untagged)]
enum Entry {
    Dir { dir: String },
    File { file: String },
    Link { link: String, to: String },
}

/// A temporary directory holding a fixture's tree; `{tmp}` and `{root}` in the fixture's
/// strings name it and its `root`.
struct Scratch {
    _dir: TempDir,
    tmp: PathBuf,
}

impl Scratch {
    fn new(tree: &[Entry]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        // Canonical, so that expected resolved paths can be written as `{tmp}/…`.
        let tmp = fs::canonicalize(dir.path()).unwrap();
        let scratch = Self { _dir: dir, tmp };
        fs::create_dir(scratch.tmp.join("root")).unwrap();
        for entry in tree {
            match entry {
                Entry::Dir { dir } => fs::create_dir_all(scratch.tmp.join(dir)).unwrap(),
                Entry::File { file } => fs::write(scratch.tmp.join(file), b"x").unwrap(),
                Entry::Link { link, to } => {
                    symlink(scratch.fill(to), scratch.tmp.join(link)).unwrap()
                }
            }
        }
        scratch
    }

    fn fill(&self, text: &str) -> String {
        let tmp = self.tmp.to_str().unwrap();
        text.replace("{root}", &format!("{tmp}/root"))
            .replace("{tmp}", tmp)
    }

    fn root(&self) -> PathBuf {
        self.tmp.join("root")
    }

    fn roots(&self) -> Roots {
        Roots::from_paths(&[self.root()]).unwrap()
    }

    fn resolver(&self) -> Resolver {
        Resolver::new(self.root(), Tilde::Deny).unwrap()
    }
}

fn fixture<T: for<'de> Deserialize<'de>>(name: &str) -> T {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(name);
    serde_json::from_str(&fs::read_to_string(&path).unwrap()).unwrap()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PathFixture {
    #[serde(rename = "about")]
    _about: String,
    tree: Vec<Entry>,
    cases: Vec<PathCase>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PathCase {
    note: String,
    path: Option<String>,
    uri: Option<String>,
    roots: Option<Vec<String>>,
    base: Option<String>,
    tilde: Option<String>,
    home: Option<String>,
    allow: Option<String>,
    deny: Option<String>,
}

fn outcome(result: &Result<ResolvedPath, PathDenied>) -> String {
    match result {
        Ok(resolved) => format!("allow {}", resolved.as_path().display()),
        Err(denied) => format!("deny {}", denied.reason().code()),
    }
}

#[test]
fn path_cases() {
    let fixture: PathFixture = fixture("paths.json");
    let scratch = Scratch::new(&fixture.tree);
    let outside = scratch.fill("{tmp}/outside");
    let mut failures = Vec::new();
    for case in &fixture.cases {
        let roots: Vec<PathBuf> = case
            .roots
            .clone()
            .unwrap_or_else(|| vec!["{root}".to_owned()])
            .iter()
            .map(|root| PathBuf::from(scratch.fill(root)))
            .collect();
        let roots = Roots::from_paths(&roots).unwrap();
        let base = scratch.fill(case.base.as_deref().unwrap_or("{root}"));
        let tilde = match case.tilde.as_deref() {
            None | Some("deny") => Tilde::Deny,
            Some("literal") => Tilde::Literal,
            Some("expand") => Tilde::Expand(scratch.fill(case.home.as_deref().unwrap()).into()),
            Some(other) => panic!("unknown tilde `{other}`"),
        };
        let resolver = Resolver::new(base, tilde).unwrap();
        let (raw, result) = match (&case.path, &case.uri) {
            (Some(path), None) => {
                let path = scratch.fill(path);
                let result = resolver.resolve_within(&roots, OsStr::new(&path));
                (path, result)
            }
            (None, Some(uri)) => {
                let uri = scratch.fill(uri);
                let result = resolver.resolve_uri_within(&roots, &uri);
                (uri, result)
            }
            _ => panic!("case `{}` needs one of `path` and `uri`", case.note),
        };
        let expected = match (&case.allow, &case.deny) {
            (Some(resolved), None) => format!("allow {}", scratch.fill(resolved)),
            (None, Some(code)) => format!("deny {code}"),
            _ => panic!("case `{}` needs one of `allow` and `deny`", case.note),
        };
        let got = outcome(&result);
        if got != expected {
            failures.push(format!(
                "{}: `{raw}`\n  expected {expected}\n  got      {got}",
                case.note
            ));
        }
        // No message may say where a link points: the outside directory appears in it only
        // if the client wrote it.
        if let Err(denied) = &result {
            let message = denied.to_string();
            if message.contains(&outside) && !raw.contains(&outside) {
                failures.push(format!(
                    "{}: the message reveals a link's target: {message}",
                    case.note
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        fixture.cases.len(),
        failures.join("\n")
    );
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ArgumentFixture {
    #[serde(rename = "about")]
    _about: String,
    tree: Vec<Entry>,
    tools: Vec<Tool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Tool {
    name: String,
    #[serde(rename = "about")]
    _about: Option<String>,
    schema: Value,
    #[serde(default)]
    configured: Vec<String>,
    places: Vec<String>,
    calls: Vec<Call>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Call {
    note: String,
    arguments: Value,
    allow: Option<bool>,
    deny: Option<ExpectedDenial>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpectedDenial {
    pointer: String,
    reason: String,
}

fn fill_json(scratch: &Scratch, value: &Value) -> Value {
    match value {
        Value::String(text) => Value::String(scratch.fill(text)),
        Value::Array(items) => {
            Value::Array(items.iter().map(|item| fill_json(scratch, item)).collect())
        }
        Value::Object(members) => Value::Object(
            members
                .iter()
                .map(|(key, member)| (key.clone(), fill_json(scratch, member)))
                .collect(),
        ),
        other => other.clone(),
    }
}

fn reason_code(reason: &ArgumentReason) -> &'static str {
    match reason {
        ArgumentReason::Path(denied) => denied.reason().code(),
        ArgumentReason::NotAString => "not-a-string",
        ArgumentReason::NotAnObject => "not-an-object",
        ArgumentReason::TooMany => "too-many",
        ArgumentReason::TooDeep => "too-deep",
    }
}

#[test]
fn argument_cases() {
    let fixture: ArgumentFixture = fixture("arguments.json");
    let scratch = Scratch::new(&fixture.tree);
    let (roots, resolver) = (scratch.roots(), scratch.resolver());
    let mut failures = Vec::new();
    let mut n_calls = 0;
    for tool in &fixture.tools {
        let arguments = PathArguments::from_schema(&tool.schema, &tool.configured).unwrap();
        let mut places = arguments.describe();
        places.sort();
        let mut expected_places = tool.places.clone();
        expected_places.sort();
        if places != expected_places {
            failures.push(format!(
                "{}: places\n  expected {expected_places:?}\n  got      {places:?}",
                tool.name
            ));
        }
        for call in &tool.calls {
            n_calls += 1;
            let result =
                arguments.check_arguments(&fill_json(&scratch, &call.arguments), &resolver, &roots);
            let got = match &result {
                Ok(_) => "allow".to_owned(),
                Err(denied) => format!("deny {} {}", denied.pointer, reason_code(&denied.reason)),
            };
            let expected = match (&call.allow, &call.deny) {
                (Some(true), None) => "allow".to_owned(),
                (None, Some(denial)) => format!("deny {} {}", denial.pointer, denial.reason),
                _ => panic!(
                    "call `{}` of `{}` needs `allow: true` or `deny`",
                    call.note, tool.name
                ),
            };
            if got != expected {
                let shown = result
                    .err()
                    .map(|denied| denied.to_string())
                    .unwrap_or_default();
                failures.push(format!(
                    "{}: {}\n  expected {expected}\n  got      {got} {shown}",
                    tool.name, call.note
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {n_calls} calls failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn limits_on_length() {
    let scratch = Scratch::new(&[]);
    let (roots, resolver) = (scratch.roots(), scratch.resolver());
    let check = |path: &str| outcome(&resolver.resolve_within(&roots, OsStr::new(path)));
    let root = scratch.root();
    let root = root.to_str().unwrap();

    // A path of exactly the longest accepted length inside the root, and one byte more.
    let mut longest = root.to_owned();
    while longest.len() < MAX_PATH_BYTES {
        let room = MAX_PATH_BYTES - longest.len() - 1;
        longest.push('/');
        longest.push_str(&"a".repeat(room.clamp(1, 200)));
    }
    assert_eq!(longest.len(), MAX_PATH_BYTES);
    assert_eq!(check(&longest), format!("allow {longest}"));
    assert_eq!(check(&format!("{longest}b")), "deny too-long");
    assert_eq!(
        check(&format!("{root}/{}", "a/".repeat(2500))),
        "deny too-long"
    );
    // Relative, the path is short, but joined to the base it is too long.
    let resolver_far = Resolver::new(format!("{root}/{}", "b/".repeat(2040)), Tilde::Deny).unwrap();
    assert_eq!(
        outcome(&resolver_far.resolve(OsStr::new("cccccccccc"))),
        "deny too-long"
    );

    let name = "n".repeat(MAX_NAME_BYTES);
    assert_eq!(
        check(&format!("{root}/{name}")),
        format!("allow {root}/{name}")
    );
    assert_eq!(check(&format!("{root}/{name}n")), "deny name-too-long");
    assert_eq!(
        check(&format!("{root}/{}/x", "n".repeat(300))),
        "deny name-too-long"
    );
    assert_eq!(
        outcome(
            &resolver.resolve_uri_within(&roots, &format!("file://{root}/{}", "%61".repeat(256)))
        ),
        "deny name-too-long"
    );
}

#[test]
fn an_unreadable_directory_is_what_the_kernel_says() {
    let scratch = Scratch::new(&[Entry::Dir {
        dir: "root/locked/inner".to_owned(),
    }]);
    let locked = scratch.root().join("locked");
    fs::set_permissions(&locked, fs::Permissions::from_mode(0o000)).unwrap();
    let result = scratch
        .resolver()
        .resolve_within(&scratch.roots(), OsStr::new("locked/inner/x"));
    // Root ignores permission bits, and so would an upstream running as root: what matters is
    // that the answer is the kernel's, never a fallback to the path as written.
    let we_are_root = fs::metadata(&scratch.tmp).unwrap().uid() == 0;
    if we_are_root {
        assert_eq!(
            outcome(&result),
            format!("allow {}/inner/x", locked.display())
        );
    } else {
        assert_eq!(outcome(&result), "deny io");
        assert!(
            result
                .unwrap_err()
                .to_string()
                .ends_with("cannot be resolved: permission denied")
        );
    }
    fs::set_permissions(&locked, fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn messages_for_the_client() {
    let scratch = Scratch::new(&[
        Entry::Dir {
            dir: "outside".to_owned(),
        },
        Entry::Link {
            link: "root/link".to_owned(),
            to: "{tmp}/outside/secret".to_owned(),
        },
        Entry::Link {
            link: "root/dead".to_owned(),
            to: "{tmp}/outside/a.txt/x".to_owned(),
        },
    ]);
    let (roots, resolver) = (scratch.roots(), scratch.resolver());
    let root = scratch.root();
    let root = root.display();
    let message = |raw: &str| {
        resolver
            .resolve_within(&roots, OsStr::new(raw))
            .unwrap_err()
            .to_string()
    };

    assert_eq!(
        message("/etc/passwd"),
        "`/etc/passwd` is outside the allowed roots"
    );
    assert_eq!(message("link"), "`link` resolves outside the allowed roots");
    assert_eq!(message(""), "an empty path is not allowed");
    assert_eq!(message("a\0b"), "`a\\u{0}b` contains a NUL byte");
    assert_eq!(
        message("a\nb/../../x"),
        "`a\\nb/../../x` has `..` after a component that does not exist"
    );
    assert_eq!(
        message("~/.ssh/id_ed25519"),
        "`~/.ssh/id_ed25519` starts with `~`, which the upstream may read as a home directory; give an absolute path"
    );
    assert_eq!(
        message("/proc/self/root"),
        "`/proc/self/root` is in `/proc` or is a `/dev/fd` descriptor link, which are never allowed"
    );
    let long = message(&format!("/{}", "x".repeat(5000)));
    assert!(
        long.starts_with(&format!(
            "`/{}…` is longer than 4095 bytes",
            "x".repeat(159)
        )),
        "{long}"
    );

    // The log may learn where the link led; the client may not.
    let denied = resolver
        .resolve_within(&roots, OsStr::new("link"))
        .unwrap_err();
    assert_eq!(denied.argument(), "link");
    assert_eq!(
        denied.resolved_for_log(),
        Some(scratch.tmp.join("outside/secret").as_path())
    );
    assert!(!format!("{denied}").contains("outside/"));

    let uri = format!("file://{root}/x?y");
    let denied = resolver.resolve_uri(&uri).unwrap_err();
    assert_eq!(
        denied.to_string(),
        format!("`{uri}` has a query or a fragment")
    );

    let none = Resolver::new("/", Tilde::Deny)
        .unwrap()
        .resolve_within(&Roots::none(), OsStr::new("/tmp"));
    assert_eq!(
        none.unwrap_err().to_string(),
        "`/tmp` is not allowed: no roots are allowed for this upstream"
    );

    let schema = json!({"type": "object", "properties": {"path": {"type": "string"}}, "additionalProperties": false});
    let arguments = PathArguments::from_schema(&schema, &[]).unwrap();
    let refuse = |value: Value| {
        arguments
            .check_arguments(&value, &resolver, &roots)
            .unwrap_err()
            .to_string()
    };
    assert_eq!(
        refuse(json!({"path": "/etc/passwd"})),
        "`/path`: `/etc/passwd` is outside the allowed roots"
    );
    assert_eq!(
        refuse(json!({"path": 3})),
        "`/path`: a path argument must be a string or an array of strings"
    );
    assert_eq!(refuse(json!("x")), "the arguments are not a JSON object");
}

#[test]
fn roots_are_canonical_directories() {
    let scratch = Scratch::new(&[
        Entry::Dir {
            dir: "root/sub/deeper".to_owned(),
        },
        Entry::Dir {
            dir: "other".to_owned(),
        },
        Entry::File {
            file: "root/file".to_owned(),
        },
        Entry::Link {
            link: "root/to_other".to_owned(),
            to: "../other".to_owned(),
        },
    ]);
    let root = scratch.root();
    let other = scratch.tmp.join("other");

    // Links resolved; a root inside another dropped; duplicates merged; sorted.
    let roots = Roots::from_paths(&[
        root.join("to_other"),
        root.join("sub/deeper"),
        root.clone(),
        PathBuf::from(format!("{}//./", root.display())),
    ])
    .unwrap();
    assert_eq!(
        roots.iter().collect::<Vec<_>>(),
        vec![other.as_path(), root.as_path()]
    );
    assert_eq!(roots.len(), 2);

    let refused = |path: &str| Roots::from_paths(&[PathBuf::from(path)]).unwrap_err();
    let error = refused("relative/root");
    assert_eq!(error.reason, RootReason::NotAbsolute);
    assert_eq!(
        error.to_string(),
        "root `relative/root` is not an absolute path"
    );
    let missing = format!("{}/missing", root.display());
    assert_eq!(refused(&missing).reason, RootReason::Missing);
    assert_eq!(
        refused(&missing).to_string(),
        format!("root `{missing}` does not exist")
    );
    assert_eq!(
        refused(&format!("{}/file", root.display())).reason,
        RootReason::NotADirectory
    );
    assert_eq!(
        refused("/proc").reason,
        RootReason::Path(DenyReason::Special)
    );
    assert_eq!(
        refused("/dev/fd").reason,
        RootReason::Path(DenyReason::Special)
    );
    // One bad root fails them all: none is silently dropped.
    assert!(Roots::from_paths(&[root.clone(), PathBuf::from(&missing)]).is_err());
    // Control: the good one alone.
    assert!(Roots::from_paths(std::slice::from_ref(&root)).is_ok());
}

#[test]
fn client_roots_from_uris() {
    let scratch = Scratch::new(&[Entry::Dir {
        dir: "root/sub".to_owned(),
    }]);
    let root = scratch.root();
    let uris = vec![
        format!("file://{}/sub", root.display()),
        format!("file://localhost{}", root.display()),
        "https://example.com/".to_owned(),
        "file://elsewhere/srv".to_owned(),
        format!("file://{}/missing", root.display()),
    ];
    let (roots, problems) = Roots::from_client_uris(&uris);
    assert_eq!(roots.iter().collect::<Vec<_>>(), vec![root.as_path()]);
    let problems: Vec<String> = problems.iter().map(ToString::to_string).collect();
    assert_eq!(
        problems,
        vec![
            "root `https://example.com/` is not a `file://` URI".to_owned(),
            "root `file://elsewhere/srv` names a host other than `localhost`".to_owned(),
            format!("root `file://{}/missing` does not exist", root.display()),
        ]
    );
}

#[test]
fn effective_roots_intersect() {
    let scratch = Scratch::new(&[
        Entry::Dir {
            dir: "root/sub/deeper".to_owned(),
        },
        Entry::Dir {
            dir: "root/other".to_owned(),
        },
        Entry::Dir {
            dir: "elsewhere".to_owned(),
        },
    ]);
    let at = |paths: &[&str]| {
        let paths: Vec<PathBuf> = paths
            .iter()
            .map(|path| PathBuf::from(scratch.fill(path)))
            .collect();
        Roots::from_paths(&paths).unwrap()
    };
    let granted = at(&["{root}"]);
    let cases: [(&str, Option<Roots>, Roots); 7] = [
        (
            "client deeper than granted: the client's",
            Some(at(&["{root}/sub"])),
            at(&["{root}/sub"]),
        ),
        (
            "client wider than granted: the granted",
            Some(at(&["{tmp}"])),
            at(&["{root}"]),
        ),
        ("equal", Some(at(&["{root}"])), at(&["{root}"])),
        (
            "disjoint: nothing",
            Some(at(&["{tmp}/elsewhere"])),
            Roots::none(),
        ),
        (
            "several: each pair",
            Some(at(&[
                "{root}/sub/deeper",
                "{root}/other",
                "{tmp}/elsewhere",
            ])),
            at(&["{root}/other", "{root}/sub/deeper"]),
        ),
        ("none offered: the granted", None, at(&["{root}"])),
        (
            "offered but none usable: nothing",
            Some(Roots::none()),
            Roots::none(),
        ),
    ];
    for (note, client, expected) in cases {
        assert_eq!(
            effective_roots(client.as_ref(), &granted),
            expected,
            "{note}"
        );
    }
    // Several granted roots, a client root spanning two of them.
    let granted = at(&["{root}/sub", "{root}/other"]);
    assert_eq!(effective_roots(Some(&at(&["{root}"])), &granted), granted);

    // The effective roots are what is checked.
    let resolver = scratch.resolver();
    let effective = effective_roots(Some(&at(&["{root}/sub"])), &at(&["{root}"]));
    assert_eq!(
        outcome(&resolver.resolve_within(&effective, OsStr::new("other/x"))),
        "deny outside"
    );
    assert_eq!(
        outcome(&resolver.resolve_within(&effective, OsStr::new("sub/x"))),
        format!("allow {}", scratch.fill("{root}/sub/x"))
    );
}

#[test]
fn resolver_and_pointers_refuse_what_they_cannot_use() {
    assert_eq!(
        Resolver::new("relative", Tilde::Deny).unwrap_err(),
        ResolverError::RelativeBase("relative".into())
    );
    assert_eq!(
        Resolver::new("/srv", Tilde::Expand("home".into())).unwrap_err(),
        ResolverError::RelativeHome("home".into())
    );
    let schema = json!({"type": "object"});
    for pointer in ["", "path", "/a~2b"] {
        let error = PathArguments::from_schema(&schema, &[pointer.to_owned()]).unwrap_err();
        assert_eq!(error.pointer, pointer);
    }
    // Control: escapes that are valid.
    let arguments = PathArguments::from_schema(
        &json!({"type": "object", "additionalProperties": false}),
        &["/a~1b/~0c/*".to_owned()],
    )
    .unwrap();
    assert_eq!(arguments.describe(), vec!["/a~1b/~0c/*"]);
}

#[test]
fn limits_on_arguments() {
    let scratch = Scratch::new(&[]);
    let (roots, resolver) = (scratch.roots(), scratch.resolver());
    let schema = json!({"type": "object", "properties": {"paths": {"type": "array", "items": {"type": "string"}}}});
    let arguments = PathArguments::from_schema(&schema, &[]).unwrap();
    let inside = scratch.fill("{root}/x");

    let many = json!({ "paths": vec![inside.clone(); MAX_CHECKED_VALUES + 1] });
    let denied = arguments
        .check_arguments(&many, &resolver, &roots)
        .unwrap_err();
    assert_eq!(denied.reason, ArgumentReason::TooMany);
    let enough = json!({ "paths": vec![inside.clone(); MAX_CHECKED_VALUES] });
    let checked = arguments
        .check_arguments(&enough, &resolver, &roots)
        .unwrap();
    assert_eq!(checked.len(), MAX_CHECKED_VALUES);

    // Undeclared members are searched, so they may not be nested deeper than can be searched.
    let mut deep = json!({"path": inside});
    for _ in 0..MAX_DEPTH {
        deep = json!({ "x": deep });
    }
    let denied = arguments
        .check_arguments(&json!({"extra": deep}), &resolver, &roots)
        .unwrap_err();
    assert_eq!(denied.reason, ArgumentReason::TooDeep);
    let shallow = json!({"extra": {"x": {"path": scratch.fill("{root}/x")}}});
    let checked = arguments
        .check_arguments(&shallow, &resolver, &roots)
        .unwrap();
    // What was checked is where it resolved, by its pointer.
    assert_eq!(
        checked,
        [crate::CheckedPath {
            pointer: "/extra/x/path".to_owned(),
            resolved: std::path::PathBuf::from(scratch.fill("{root}/x")),
        }]
    );
}

#[test]
fn a_schema_that_expands_exponentially_is_bounded() {
    // Each definition uses the next one twice: 2^40 places if `$ref`s were expanded blindly.
    let mut definitions = serde_json::Map::new();
    for level in 0..40 {
        let next = json!({ "$ref": format!("#/$defs/d{}", level + 1) });
        definitions.insert(
            format!("d{level}"),
            json!({
                "type": "object",
                "properties": { "left": next, "right": next, "path": { "type": "string" } },
                "additionalProperties": false
            }),
        );
    }
    definitions.insert("d40".to_owned(), json!({ "type": "string" }));
    let schema = json!({
        "type": "object",
        "properties": { "tree": { "$ref": "#/$defs/d0" } },
        "additionalProperties": false,
        "$defs": definitions
    });
    let started = std::time::Instant::now();
    let arguments = PathArguments::from_schema(&schema, &[]).unwrap();
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    assert!(
        arguments
            .describe()
            .iter()
            .any(|place| place.ends_with("/**"))
    );

    // A path deeper than discovery went is still found, by name.
    let scratch = Scratch::new(&[]);
    let mut tree = json!({ "path": "/etc/passwd" });
    for _ in 0..30 {
        tree = json!({ "right": tree });
    }
    let denied = arguments
        .check_arguments(
            &json!({ "tree": tree }),
            &scratch.resolver(),
            &scratch.roots(),
        )
        .unwrap_err();
    assert_eq!(denied.pointer, format!("/tree{}/path", "/right".repeat(30)));
    assert_eq!(reason_code(&denied.reason), "outside");
}

/// Resolution must agree with the kernel's. Wherever `realpath(3)` (`fs::canonicalize`) resolves
/// a path, ours must resolve it to the same place; random paths over a small tree of links,
/// `..`, `.` and repeated slashes, from a fixed seed.
#[test]
fn resolution_agrees_with_realpath() {
    let scratch = Scratch::new(&[
        Entry::Dir {
            dir: "root/a/b/c".to_owned(),
        },
        Entry::File {
            file: "root/a/f".to_owned(),
        },
        Entry::Link {
            link: "root/l1".to_owned(),
            to: "a/b".to_owned(),
        },
        Entry::Link {
            link: "root/a/l2".to_owned(),
            to: "../../root/a".to_owned(),
        },
        Entry::Link {
            link: "root/a/b/l3".to_owned(),
            to: "{root}/a/b/c".to_owned(),
        },
        Entry::Link {
            link: "root/a/b/c/l4".to_owned(),
            to: "../../l2/..".to_owned(),
        },
        Entry::Link {
            link: "root/lf".to_owned(),
            to: "a/f".to_owned(),
        },
    ]);
    let resolver = scratch.resolver();
    let names = [
        "a", "b", "c", "f", "l1", "l2", "l3", "l4", "lf", "..", ".", "", "root",
    ];
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = |bound: usize| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % bound as u64) as usize
    };
    let (mut compared, mut failures) = (0, Vec::new());
    for _ in 0..20_000 {
        let n_names = 1 + next(8);
        let path: Vec<&str> = (0..n_names).map(|_| names[next(names.len())]).collect();
        let path = format!("{}/{}", scratch.root().display(), path.join("/"));
        let Ok(expected) = fs::canonicalize(&path) else {
            continue;
        };
        compared += 1;
        match resolver.resolve(OsStr::new(&path)) {
            Ok(resolved) if resolved.as_path() == expected => {}
            other => failures.push(format!("`{path}`: realpath {expected:?}, we {other:?}")),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(compared > 1000, "only {compared} paths resolved");
}
