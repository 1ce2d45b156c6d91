//! Credential store cases: round trips, every kind of damage to the file, refused files, modes,
//! concurrent writers, and that no token or key text escapes through `Debug` or an error.
#![expect(
    clippy::panic,
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "tests"
)]

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::thread;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};

use super::*;
use crate::format::{MAGIC, MIN_LEN, NONCE_LEN};

const KEY_TEXT: &str = "correct horse battery staple, 0123456789abcdef";
const OTHER_KEY_TEXT: &str = "another key text that is long enough 0123456789";
const ACCESS_TOKEN: &str = "at-SECRET-ACCESS-TOKEN-5f2b9c";
const REFRESH_TOKEN: &str = "rt-SECRET-REFRESH-TOKEN-8e1d4a";

/// Every string that must never show up outside the encrypted file.
const SECRETS: [&str; 3] = [ACCESS_TOKEN, REFRESH_TOKEN, KEY_TEXT];

fn key() -> StoreKey {
    StoreKey::from_secret_text("PORTCULLIS_CREDENTIAL_KEY", KEY_TEXT).unwrap()
}

fn other_key() -> StoreKey {
    StoreKey::from_secret_text("PORTCULLIS_CREDENTIAL_KEY", OTHER_KEY_TEXT).unwrap()
}

fn credential_key(subject: &str, upstream: &str) -> CredentialKey {
    CredentialKey {
        issuer: "https://id.example.com".to_owned(),
        subject: subject.to_owned(),
        upstream: upstream.to_owned(),
    }
}

fn grant(access_token: &str) -> Grant {
    Grant {
        access_token: Secret::new(access_token),
        refresh_token: Some(Secret::new(REFRESH_TOKEN)),
        token_type: "Bearer".to_owned(),
        expires_at: Some(1_900_000_000),
        scopes: BTreeSet::from(["repo:read".to_owned(), "issues:write".to_owned()]),
        resource: "https://mcp.github.example/".to_owned(),
        authorization_server: "https://github.example/login/oauth".to_owned(),
        consented_clients: BTreeSet::from(["claude-desktop".to_owned()]),
        obtained_at: 1_899_996_400,
    }
}

fn store_path(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().join("credentials.pcred")
}

/// A store holding one grant, and its path.
fn stored() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = store_path(&dir);
    let store = CredentialStore::open(&path, key()).unwrap();
    store
        .put(credential_key("alice", "github"), grant(ACCESS_TOKEN))
        .unwrap();
    (dir, path)
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn assert_same_grant(got: &Grant, want: &Grant) {
    assert_eq!(got.access_token.expose(), want.access_token.expose());
    assert_eq!(
        got.refresh_token.as_ref().map(Secret::expose),
        want.refresh_token.as_ref().map(Secret::expose)
    );
    assert_eq!(got.summary(), want.summary());
}

fn assert_no_secret(text: &str) {
    for secret in SECRETS {
        assert!(!text.contains(secret), "`{secret}` leaked into: {text}");
    }
}

/// The file's bytes for `plaintext` under `KEY_TEXT`, as the store would seal them: for
/// contents the store itself would never write.
fn seal_plaintext(plaintext: &[u8]) -> Vec<u8> {
    let cipher = XChaCha20Poly1305::new(&key().0.into());
    let nonce = [7u8; NONCE_LEN];
    let sealed = cipher
        .encrypt(
            &XNonce::from(nonce),
            Payload {
                msg: plaintext,
                aad: MAGIC,
            },
        )
        .unwrap();
    [MAGIC.as_slice(), &nonce, &sealed].concat()
}

#[test]
fn round_trip_through_a_reopened_store() {
    let (_dir, path) = stored();
    let store = CredentialStore::open(&path, key()).unwrap();
    assert_eq!(store.path(), path);
    let got = store
        .get(&credential_key("alice", "github"))
        .unwrap()
        .unwrap();
    assert_same_grant(&got, &grant(ACCESS_TOKEN));
    assert!(
        store
            .get(&credential_key("bob", "github"))
            .unwrap()
            .is_none()
    );
    assert!(
        store
            .get(&credential_key("alice", "linear"))
            .unwrap()
            .is_none()
    );

    let listed = store.list().unwrap();
    assert_eq!(
        listed,
        vec![(
            credential_key("alice", "github"),
            grant(ACCESS_TOKEN).summary()
        )]
    );
}

#[test]
fn put_replaces_the_grant_for_the_same_key() {
    let (_dir, path) = stored();
    let store = CredentialStore::open(&path, key()).unwrap();
    let mut newer = grant("at-newer-token");
    newer.refresh_token = None;
    store
        .put(credential_key("alice", "github"), newer.clone())
        .unwrap();
    let got = store
        .get(&credential_key("alice", "github"))
        .unwrap()
        .unwrap();
    assert_same_grant(&got, &newer);
    assert_eq!(store.list().unwrap().len(), 1);
}

#[test]
fn every_lookup_sees_what_another_handle_wrote() {
    let (_dir, path) = stored();
    let reader = CredentialStore::open(&path, key()).unwrap();
    let writer = CredentialStore::open(&path, key()).unwrap();
    assert_eq!(reader.list().unwrap().len(), 1);

    writer
        .put(credential_key("bob", "linear"), grant("at-bob"))
        .unwrap();
    let got = reader
        .get(&credential_key("bob", "linear"))
        .unwrap()
        .unwrap();
    assert_eq!(got.access_token.expose(), "at-bob");
    assert_eq!(reader.list().unwrap().len(), 2);

    writer.remove(&credential_key("alice", "github")).unwrap();
    assert!(
        reader
            .get(&credential_key("alice", "github"))
            .unwrap()
            .is_none()
    );
}

#[test]
fn remove_returns_the_grant_and_it_stays_gone() {
    let (_dir, path) = stored();
    let store = CredentialStore::open(&path, key()).unwrap();
    let removed = store
        .remove(&credential_key("alice", "github"))
        .unwrap()
        .unwrap();
    assert_same_grant(&removed, &grant(ACCESS_TOKEN));
    drop(store);

    let store = CredentialStore::open(&path, key()).unwrap();
    assert!(
        store
            .get(&credential_key("alice", "github"))
            .unwrap()
            .is_none()
    );
    assert!(store.list().unwrap().is_empty());

    // Removing what is not there writes nothing.
    let before = fs::read(&path).unwrap();
    assert!(
        store
            .remove(&credential_key("alice", "github"))
            .unwrap()
            .is_none()
    );
    assert_eq!(fs::read(&path).unwrap(), before);
}

#[test]
fn a_new_store_is_created_private_with_its_directory() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state").join("portcullis").join("creds");
    let store = CredentialStore::open(&path, key()).unwrap();
    assert_eq!(mode(&path), 0o600);
    assert_eq!(mode(&dir.path().join("state/portcullis/creds.lock")), 0o600);
    assert_eq!(mode(&dir.path().join("state")), 0o700);
    assert_eq!(mode(&dir.path().join("state/portcullis")), 0o700);
    assert!(store.list().unwrap().is_empty());

    let bytes = fs::read(&path).unwrap();
    assert!(bytes.starts_with(b"PCRED1"));
    // An empty array sealed: header, nonce, `[]`, tag.
    assert_eq!(bytes.len(), MIN_LEN + 2);

    store
        .put(credential_key("alice", "github"), grant(ACCESS_TOKEN))
        .unwrap();
    assert_eq!(mode(&path), 0o600);
    assert!(!dir.path().join("state/portcullis/creds.tmp").exists());
}

#[test]
fn no_token_or_key_text_is_in_the_files() {
    let (dir, path) = stored();
    for file in [path.clone(), dir.path().join("credentials.pcred.lock")] {
        let bytes = fs::read(&file).unwrap();
        for secret in SECRETS {
            assert!(
                !bytes
                    .windows(secret.len())
                    .any(|window| window == secret.as_bytes()),
                "`{secret}` is in `{}`",
                file.display()
            );
        }
    }
    // Nor anything else in the clear: the grant's other fields are sealed too.
    let bytes = fs::read(&path).unwrap();
    assert!(
        !bytes
            .windows(b"repo:read".len())
            .any(|window| window == b"repo:read")
    );
    let names: Vec<_> = fs::read_dir(dir.path())
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    assert_eq!(names, ["credentials.pcred", "credentials.pcred.lock"]);
}

#[test]
fn every_write_draws_a_new_nonce() {
    let (_dir, path) = stored();
    let store = CredentialStore::open(&path, key()).unwrap();
    let nonce = |bytes: &[u8]| bytes[MAGIC.len()..MAGIC.len() + NONCE_LEN].to_vec();
    let first = fs::read(&path).unwrap();
    // The same contents again.
    store
        .put(credential_key("alice", "github"), grant(ACCESS_TOKEN))
        .unwrap();
    let second = fs::read(&path).unwrap();
    assert_eq!(first.len(), second.len());
    assert_ne!(nonce(&first), nonce(&second));
    assert_ne!(first, second);
}

#[test]
fn a_wrong_key_is_an_error_naming_the_file_and_the_file_is_kept() {
    let (_dir, path) = stored();
    let before = fs::read(&path).unwrap();
    let error = CredentialStore::open(&path, other_key()).unwrap_err();
    assert!(
        matches!(error, StoreError::DoesNotDecrypt { .. }),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(message.contains(&path.display().to_string()), "{message}");
    assert!(message.contains("does not decrypt"), "{message}");
    assert_eq!(fs::read(&path).unwrap(), before);
    // The right key still reads it.
    let store = CredentialStore::open(&path, key()).unwrap();
    assert_eq!(store.list().unwrap().len(), 1);
}

#[test]
fn any_flipped_byte_is_refused() {
    let (_dir, path) = stored();
    let original = fs::read(&path).unwrap();
    for index in 0..original.len() {
        let mut bytes = original.clone();
        bytes[index] ^= 0x01;
        fs::write(&path, &bytes).unwrap();
        let error = CredentialStore::open(&path, key()).unwrap_err();
        if index < MAGIC.len() {
            assert!(matches!(error, StoreError::NotAStore { .. }), "{error:?}");
        } else {
            assert!(
                matches!(error, StoreError::DoesNotDecrypt { .. }),
                "byte {index}: {error:?}"
            );
        }
        // Never repaired or emptied.
        assert_eq!(fs::read(&path).unwrap(), bytes);
    }
}

#[test]
fn a_truncated_file_is_refused() {
    let (_dir, path) = stored();
    let original = fs::read(&path).unwrap();
    for len in 0..original.len() {
        fs::write(&path, &original[..len]).unwrap();
        let error = CredentialStore::open(&path, key()).unwrap_err();
        if len < MIN_LEN {
            assert!(matches!(error, StoreError::Truncated { .. }), "{error:?}");
            assert!(error.to_string().contains("truncated"), "{error}");
        } else {
            assert!(
                matches!(error, StoreError::DoesNotDecrypt { .. }),
                "length {len}: {error:?}"
            );
        }
        assert_eq!(fs::read(&path).unwrap(), &original[..len]);
    }
}

#[test]
fn a_store_damaged_after_opening_fails_every_operation_and_is_kept() {
    let (_dir, path) = stored();
    let store = CredentialStore::open(&path, key()).unwrap();
    let mut bytes = fs::read(&path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x80;
    fs::write(&path, &bytes).unwrap();

    let key = credential_key("alice", "github");
    assert!(store.get(&key).is_err());
    assert!(store.list().is_err());
    assert!(store.put(key.clone(), grant(ACCESS_TOKEN)).is_err());
    assert!(store.remove(&key).is_err());
    assert_eq!(fs::read(&path).unwrap(), bytes);
}

#[test]
fn files_that_are_not_stores_are_named_as_such() {
    let dir = tempfile::tempdir().unwrap();
    let path = store_path(&dir);
    let cases: [(&[u8], &str); 3] = [
        (
            b"{\"issuer\": \"not ours\"}",
            "does not start with `PCRED1`",
        ),
        (b"PCRED2 and something newer", "format version `2`"),
        (b"PCRE", "truncated"),
    ];
    for (bytes, expected) in cases {
        fs::write(&path, bytes).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        let message = CredentialStore::open(&path, key()).unwrap_err().to_string();
        assert!(message.contains(expected), "{message}");
        assert_eq!(fs::read(&path).unwrap(), bytes);
    }
}

#[test]
fn an_empty_existing_file_is_refused_not_filled() {
    let dir = tempfile::tempdir().unwrap();
    let path = store_path(&dir);
    fs::write(&path, b"").unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
    let error = CredentialStore::open(&path, key()).unwrap_err();
    assert!(
        matches!(error, StoreError::Truncated { len: 0, .. }),
        "{error:?}"
    );
    assert_eq!(fs::read(&path).unwrap(), b"");
}

#[test]
fn a_file_others_can_reach_is_refused() {
    let (_dir, path) = stored();
    for loose in [0o644, 0o640, 0o604, 0o660, 0o606] {
        fs::set_permissions(&path, fs::Permissions::from_mode(loose)).unwrap();
        let message = CredentialStore::open(&path, key()).unwrap_err().to_string();
        assert!(message.contains(&format!("mode {loose:04o}")), "{message}");
        assert!(
            message.contains(&format!("chmod 600 {}", path.display())),
            "{message}"
        );
    }
    // Also when it changes under an open store.
    fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
    let store = CredentialStore::open(&path, key()).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
    let error = store.get(&credential_key("alice", "github")).unwrap_err();
    assert!(matches!(error, StoreError::Refused { .. }), "{error:?}");
    let error = store
        .put(credential_key("bob", "github"), grant(ACCESS_TOKEN))
        .unwrap_err();
    assert!(matches!(error, StoreError::Refused { .. }), "{error:?}");
}

#[test]
fn a_symbolic_link_is_refused_even_to_a_good_store() {
    let (dir, path) = stored();
    let link = dir.path().join("link.pcred");
    symlink(&path, &link).unwrap();
    let message = CredentialStore::open(&link, key()).unwrap_err().to_string();
    assert!(message.contains("symbolic link"), "{message}");
    assert!(message.contains(&link.display().to_string()), "{message}");

    // A dangling link is not created through.
    let target = dir.path().join("elsewhere");
    let dangling = dir.path().join("dangling.pcred");
    symlink(&target, &dangling).unwrap();
    let message = CredentialStore::open(&dangling, key())
        .unwrap_err()
        .to_string();
    assert!(message.contains("symbolic link"), "{message}");
    assert!(!target.exists());
}

#[test]
fn a_symbolic_link_as_the_lock_file_is_refused() {
    let (dir, path) = stored();
    let lock = dir.path().join("credentials.pcred.lock");
    fs::remove_file(&lock).unwrap();
    let target = dir.path().join("elsewhere");
    symlink(&target, &lock).unwrap();
    let store_error = CredentialStore::open(&path, key()).unwrap_err();
    let message = store_error.to_string();
    assert!(
        message.contains("this lock file is a symbolic link"),
        "{message}"
    );
    assert!(!target.exists());
}

#[test]
fn something_other_than_a_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = store_path(&dir);
    fs::create_dir(&path).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o700)).unwrap();
    let message = CredentialStore::open(&path, key()).unwrap_err().to_string();
    assert!(message.contains("not a regular file"), "{message}");

    let message = CredentialStore::open(Path::new("/"), key())
        .unwrap_err()
        .to_string();
    assert!(message.contains("does not name a file"), "{message}");
}

#[test]
fn a_store_removed_while_open_is_not_recreated_behind_the_operators_back() {
    let (_dir, path) = stored();
    let store = CredentialStore::open(&path, key()).unwrap();
    fs::remove_file(&path).unwrap();
    let error = store.get(&credential_key("alice", "github")).unwrap_err();
    assert!(matches!(error, StoreError::Missing { .. }), "{error:?}");
    let error = store
        .put(credential_key("alice", "github"), grant(ACCESS_TOKEN))
        .unwrap_err();
    assert!(matches!(error, StoreError::Missing { .. }), "{error:?}");
    assert!(!path.exists());
}

#[test]
fn a_stale_temporary_file_does_not_leak_its_mode() {
    let (dir, path) = stored();
    let tmp = dir.path().join("credentials.pcred.tmp");
    fs::write(&tmp, b"left by a crash").unwrap();
    fs::set_permissions(&tmp, fs::Permissions::from_mode(0o644)).unwrap();
    let store = CredentialStore::open(&path, key()).unwrap();
    store
        .put(credential_key("bob", "github"), grant(ACCESS_TOKEN))
        .unwrap();
    assert_eq!(mode(&path), 0o600);
    assert!(!tmp.exists());
    assert_eq!(store.list().unwrap().len(), 2);
}

#[test]
fn concurrent_writers_on_two_handles_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = store_path(&dir);
    let first = CredentialStore::open(&path, key()).unwrap();
    let second = CredentialStore::open(&path, key()).unwrap();
    let writers: Vec<_> = [("alice", first), ("bob", second)]
        .into_iter()
        .map(|(subject, store)| {
            thread::spawn(move || {
                for n in 0..50 {
                    let token = format!("at-{subject}-{n}");
                    store
                        .put(
                            credential_key(subject, &format!("upstream-{n}")),
                            grant(&token),
                        )
                        .unwrap();
                }
            })
        })
        .collect();
    for writer in writers {
        writer.join().unwrap();
    }
    let store = CredentialStore::open(&path, key()).unwrap();
    let listed = store.list().unwrap();
    assert_eq!(listed.len(), 100);
    for subject in ["alice", "bob"] {
        for n in 0..50 {
            let got = store
                .get(&credential_key(subject, &format!("upstream-{n}")))
                .unwrap()
                .unwrap();
            assert_eq!(got.access_token.expose(), format!("at-{subject}-{n}"));
        }
    }
}

#[test]
fn concurrent_writers_sharing_one_handle_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = store_path(&dir);
    let store = CredentialStore::open(&path, key()).unwrap();
    let writers: Vec<_> = ["alice", "bob"]
        .into_iter()
        .map(|subject| {
            let store = store.clone();
            thread::spawn(move || {
                for n in 0..50 {
                    store
                        .put(
                            credential_key(subject, &format!("upstream-{n}")),
                            grant("at"),
                        )
                        .unwrap();
                    // Readers run beside the writers and always see a whole file.
                    assert!(store.list().unwrap().len() > n);
                }
            })
        })
        .collect();
    for writer in writers {
        writer.join().unwrap();
    }
    assert_eq!(store.list().unwrap().len(), 100);
}

/// Set to `PATH\nSUBJECT` in a child of `writers_in_two_processes_lose_nothing`.
const WRITER_ENV: &str = "PORTCULLIS_CREDENTIALS_TEST_WRITER";

/// Not a test: the entry point of a writer child process. In a normal run it does nothing.
#[test]
fn writer_child() {
    let Ok(task) = std::env::var(WRITER_ENV) else {
        return;
    };
    let (path, subject) = task.split_once('\n').unwrap();
    let store = CredentialStore::open(Path::new(path), key()).unwrap();
    for n in 0..50 {
        store
            .put(
                credential_key(subject, &format!("upstream-{n}")),
                grant(&format!("at-{subject}-{n}")),
            )
            .unwrap();
    }
}

/// The case the lock is for: a `portcullis login` writing while `portcullis serve` does.
#[test]
fn writers_in_two_processes_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = store_path(&dir);
    let mut children: Vec<_> = ["alice", "bob"]
        .into_iter()
        .map(|subject| {
            std::process::Command::new(std::env::current_exe().unwrap())
                .args(["--exact", "tests::writer_child", "--test-threads=1", "-q"])
                .env(WRITER_ENV, format!("{}\n{subject}", path.display()))
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    for child in &mut children {
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                panic!("a writer child did not finish in time");
            }
            thread::sleep(std::time::Duration::from_millis(20));
        };
        assert!(status.success(), "writer child failed: {status}");
    }
    let store = CredentialStore::open(&path, key()).unwrap();
    let listed = store.list().unwrap();
    assert_eq!(listed.len(), 100);
    assert_eq!(
        store
            .get(&credential_key("bob", "upstream-49"))
            .unwrap()
            .unwrap()
            .access_token
            .expose(),
        "at-bob-49"
    );
}

#[test]
fn a_short_key_text_is_refused_naming_the_variable_only() {
    let short = "x".repeat(31);
    let error = StoreKey::from_secret_text("PORTCULLIS_CREDENTIAL_KEY", &short).unwrap_err();
    let message = error.to_string();
    assert!(message.contains("`PORTCULLIS_CREDENTIAL_KEY`"), "{message}");
    assert!(!message.contains(&short), "{message}");
    assert!(!format!("{error:?}").contains(&short));
    assert!(StoreKey::from_secret_text("K", "").is_err());
    assert!(StoreKey::from_secret_text("K", &"x".repeat(32)).is_ok());
}

#[test]
fn the_key_is_the_hash_of_the_context_and_the_text() {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    hasher.update(b"portcullis credential store v1\0");
    hasher.update(KEY_TEXT.as_bytes());
    let expected: [u8; 32] = hasher.finalize().into();
    assert_eq!(key().0, expected);
    assert_ne!(key().0, other_key().0);
}

#[test]
fn fingerprints_are_stable_distinct_and_short() {
    // SHA-256("abc") = ba7816bf8f01cfea414140de5dae2223…
    assert_eq!(Secret::new("abc").fingerprint(), "sha256:ba7816bf8f01cfea");
    let one = Secret::new(ACCESS_TOKEN).fingerprint();
    assert_eq!(one, Secret::new(ACCESS_TOKEN.to_owned()).fingerprint());
    assert_ne!(one, Secret::new(REFRESH_TOKEN).fingerprint());
    assert_ne!(one, Secret::new(format!("{ACCESS_TOKEN}x")).fingerprint());
    assert_eq!(one.len(), "sha256:".len() + 16);
    assert!(
        one["sha256:".len()..]
            .bytes()
            .all(|b| b.is_ascii_hexdigit())
    );
}

#[test]
fn nothing_printable_shows_a_secret() {
    let grant = grant(ACCESS_TOKEN);
    let fingerprint = grant.access_token.fingerprint();

    let secret = format!("{:?}", grant.access_token);
    assert_eq!(secret, format!("Secret({fingerprint})"));
    let debug_grant = format!("{grant:?} {grant:#?}");
    assert!(debug_grant.contains(&fingerprint), "{debug_grant}");
    let summary = grant.summary();
    let debug_summary = format!("{summary:?}");
    assert!(debug_summary.contains(&fingerprint));
    let json_summary = serde_json::to_string(&summary).unwrap();
    assert!(json_summary.contains(&fingerprint));
    assert_eq!(format!("{:?}", key()), "StoreKey(..)");

    let (_dir, path) = stored();
    let store = CredentialStore::open(&path, key()).unwrap();
    let listed = format!("{:?}", store.list().unwrap());
    for text in [
        secret,
        debug_grant,
        debug_summary,
        json_summary,
        format!("{store:?}"),
        listed,
    ] {
        assert_no_secret(&text);
    }
}

#[test]
fn an_unexpected_value_inside_is_reported_without_quoting_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = store_path(&dir);
    let entry = |grant: &str| {
        format!(r#"[{{"key":{{"issuer":"i","subject":"s","upstream":"u"}},"grant":{grant}}}]"#)
    };
    let valid = format!(
        r#"{{"access_token":"{ACCESS_TOKEN}","refresh_token":null,"token_type":"Bearer","expires_at":null,"scopes":[],"resource":"r","authorization_server":"a","consented_clients":[],"obtained_at":1}}"#
    );
    let cases = [
        // A token where a number belongs: serde_json would quote it.
        valid.replace(
            "\"obtained_at\":1",
            &format!("\"obtained_at\":\"{ACCESS_TOKEN}\""),
        ),
        // A field this version does not know.
        valid.replace(
            "\"obtained_at\":1",
            &format!("\"obtained_at\":1,\"{ACCESS_TOKEN}\":1"),
        ),
        // Not JSON.
        format!("{{{ACCESS_TOKEN}"),
    ];
    // Positive control: the same sealing of a valid entry opens.
    fs::write(&path, seal_plaintext(entry(&valid).as_bytes())).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
    let store = CredentialStore::open(&path, key()).unwrap();
    assert_eq!(store.list().unwrap().len(), 1);

    for grant in cases {
        fs::write(&path, seal_plaintext(entry(&grant).as_bytes())).unwrap();
        let error = CredentialStore::open(&path, key()).unwrap_err();
        assert!(matches!(error, StoreError::Corrupt { .. }), "{error:?}");
        assert_no_secret(&error.to_string());
        assert_no_secret(&format!("{error:?}"));
    }

    // The same credential twice.
    let twice = format!(
        r#"[{{"key":{{"issuer":"i","subject":"s","upstream":"u"}},"grant":{valid}}},{{"key":{{"issuer":"i","subject":"s","upstream":"u"}},"grant":{valid}}}]"#
    );
    fs::write(&path, seal_plaintext(twice.as_bytes())).unwrap();
    let message = CredentialStore::open(&path, key()).unwrap_err().to_string();
    assert!(message.contains("two credentials"), "{message}");
}

/// Every variant, reached the way it happens where the test can make it happen; the match
/// fails to compile when a variant is added, so it cannot be forgotten here.
#[test]
fn no_error_shows_a_secret() {
    fn variant(error: &StoreError) -> &'static str {
        match error {
            StoreError::WeakKey { .. } => "WeakKey",
            StoreError::Io { .. } => "Io",
            StoreError::Refused { .. } => "Refused",
            StoreError::Missing { .. } => "Missing",
            StoreError::Truncated { .. } => "Truncated",
            StoreError::NotAStore { .. } => "NotAStore",
            StoreError::DoesNotDecrypt { .. } => "DoesNotDecrypt",
            StoreError::Corrupt { .. } => "Corrupt",
            StoreError::Random { .. } => "Random",
            StoreError::Encrypt { .. } => "Encrypt",
            StoreError::NoKey { .. } => "NoKey",
        }
    }
    let mut errors = Vec::new();
    // The key text given is a secret too: a short one must not be echoed.
    errors.push(
        StoreKey::from_secret_text("PORTCULLIS_CREDENTIAL_KEY", &KEY_TEXT[..31]).unwrap_err(),
    );

    let (dir, path) = stored();
    let not_a_dir = dir.path().join("file");
    fs::write(&not_a_dir, b"").unwrap();
    errors.push(CredentialStore::open(&not_a_dir.join("creds"), key()).unwrap_err());

    let original = fs::read(&path).unwrap();
    errors.push(CredentialStore::open(&path, other_key()).unwrap_err());
    fs::write(&path, &original[..10]).unwrap();
    errors.push(CredentialStore::open(&path, key()).unwrap_err());
    fs::write(&path, b"not a store").unwrap();
    errors.push(CredentialStore::open(&path, key()).unwrap_err());
    fs::write(&path, seal_plaintext(ACCESS_TOKEN.as_bytes())).unwrap();
    errors.push(CredentialStore::open(&path, key()).unwrap_err());
    fs::write(&path, &original).unwrap();
    let store = CredentialStore::open(&path, key()).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
    errors.push(store.get(&credential_key("alice", "github")).unwrap_err());
    fs::remove_file(&path).unwrap();
    errors.push(store.get(&credential_key("alice", "github")).unwrap_err());
    fs::write(&path, &original).unwrap();
    errors.push(store_key(&path, "PORTCULLIS_CREDENTIAL_KEY", None).unwrap_err());
    // Not reachable from a test: the operating system's randomness and the cipher's length
    // limit. Their reasons are fixed text or getrandom's.
    errors.push(StoreError::Random {
        path: path.display().to_string(),
        reason: "getrandom: unavailable".to_owned(),
    });
    errors.push(StoreError::Encrypt {
        path: path.display().to_string(),
        reason: "the credentials are too large".to_owned(),
    });

    let seen: BTreeSet<_> = errors.iter().map(variant).collect();
    assert_eq!(seen.len(), 11, "{seen:?}");
    for error in &errors {
        assert_no_secret(&error.to_string());
        assert_no_secret(&format!("{error:?}"));
        // 3 AM: every message about a file says which.
        if !matches!(error, StoreError::WeakKey { .. }) {
            assert!(
                error.to_string().contains(dir.path().to_str().unwrap()),
                "{error}"
            );
        }
    }
}

#[test]
fn expiry_is_judged_against_the_given_now() {
    let mut grant = grant(ACCESS_TOKEN);
    grant.expires_at = Some(1_000);
    assert!(!grant.expires_within(900, 60));
    assert!(grant.expires_within(940, 60));
    assert!(grant.expires_within(1_000, 0));
    assert!(grant.expires_within(2_000, 0));
    assert!(grant.expires_within(u64::MAX, u64::MAX));
    grant.expires_at = None;
    assert!(!grant.expires_within(u64::MAX, u64::MAX));
}

/// The handle is shared by async tasks on several threads.
#[test]
fn the_store_handle_can_be_shared_across_tasks() {
    fn shareable<T: Clone + Send + Sync + 'static>() {}
    shareable::<CredentialStore>();
    shareable::<Grant>();
}

const NAMED_SECRET: &str = "ghp_NAMED-OPERATOR-SECRET-41c7e2";

#[test]
fn a_named_secret_round_trips_beside_the_grants_and_is_sealed() {
    let (dir, path) = stored();
    let store = CredentialStore::open(&path, key()).unwrap();
    store
        .put_secret("GITHUB_TOKEN", Secret::new(NAMED_SECRET))
        .unwrap();
    store
        .put_secret("OTHER", Secret::new("replaced later"))
        .unwrap();
    store.put_secret("OTHER", Secret::new("second")).unwrap();
    drop(store);
    let reopened = CredentialStore::open(&path, key()).unwrap();
    assert_eq!(
        reopened
            .secret("GITHUB_TOKEN")
            .unwrap()
            .map(|s| s.expose().to_owned()),
        Some(NAMED_SECRET.to_owned())
    );
    assert_eq!(
        reopened
            .secret("OTHER")
            .unwrap()
            .map(|s| s.expose().to_owned()),
        Some("second".to_owned())
    );
    assert!(reopened.secret("ABSENT").unwrap().is_none());
    assert_eq!(reopened.secret_names().unwrap(), ["GITHUB_TOKEN", "OTHER"]);
    // The grant written before is still there: secrets and grants share the file.
    assert_eq!(reopened.list().unwrap().len(), 1);
    for file in [path.clone(), dir.path().join("credentials.pcred.lock")] {
        let bytes = fs::read(&file).unwrap();
        for needle in [NAMED_SECRET.as_bytes(), b"GITHUB_TOKEN"] {
            assert!(
                !bytes.windows(needle.len()).any(|window| window == needle),
                "in the clear in `{}`",
                file.display()
            );
        }
    }
    // A wrong key reads no secret, and the error does not quote one.
    let error = CredentialStore::open(&path, other_key()).unwrap_err();
    assert!(!error.to_string().contains(NAMED_SECRET));
}

#[test]
fn a_secret_entry_of_an_unknown_shape_is_refused_without_quoting_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = store_path(&dir);
    let plaintext = format!(r#"[{{"name":"A","secret":"{NAMED_SECRET}","extra":1}}]"#);
    fs::write(&path, seal_plaintext(plaintext.as_bytes())).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
    let error = CredentialStore::open(&path, key()).unwrap_err().to_string();
    assert!(error.contains("unexpected shape"), "{error}");
    assert!(!error.contains(NAMED_SECRET), "{error}");
}

#[test]
fn without_a_variable_a_fresh_store_gets_a_private_key_file_that_opens_it_again() {
    let dir = tempfile::tempdir().unwrap();
    let store_path = dir.path().join("state/credentials.enc");
    let key = store_key(&store_path, "PORTCULLIS_CREDENTIAL_KEY", None).unwrap();
    let file = key_file_of(&store_path);
    assert_eq!(file, dir.path().join("state/credentials.key"));
    assert_eq!(
        fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let store = CredentialStore::open(&store_path, key).unwrap();
    store
        .put_secret("TOKEN", Secret::new(ACCESS_TOKEN))
        .unwrap();
    // Another process finds the same key in the file, and reads what the first one wrote.
    let again = store_key(&store_path, "PORTCULLIS_CREDENTIAL_KEY", None).unwrap();
    let reopened = CredentialStore::open(&store_path, again).unwrap();
    assert_eq!(
        reopened.secret("TOKEN").unwrap().unwrap().expose(),
        ACCESS_TOKEN
    );
    // A key file others can read is refused, naming the fix.
    fs::set_permissions(&file, fs::Permissions::from_mode(0o644)).unwrap();
    let refused = store_key(&store_path, "PORTCULLIS_CREDENTIAL_KEY", None).unwrap_err();
    assert!(refused.to_string().contains("chmod 600"), "{refused}");
    // An existing store whose key file is gone gets no new key (it could not decrypt it).
    fs::remove_file(&file).unwrap();
    let missing = store_key(&store_path, "PORTCULLIS_CREDENTIAL_KEY", None).unwrap_err();
    assert!(matches!(missing, StoreError::NoKey { .. }), "{missing}");
    assert!(!file.exists());
}

#[test]
fn a_key_in_the_variable_is_used_and_no_key_file_is_made() {
    let dir = tempfile::tempdir().unwrap();
    let store_path = dir.path().join("credentials.enc");
    let from_variable =
        store_key(&store_path, "PORTCULLIS_CREDENTIAL_KEY", Some(KEY_TEXT)).unwrap();
    let store = CredentialStore::open(&store_path, from_variable).unwrap();
    store
        .put_secret("TOKEN", Secret::new(ACCESS_TOKEN))
        .unwrap();
    assert!(!key_file_of(&store_path).exists());
    // It is the same key as the variable's text always gives.
    assert!(
        CredentialStore::open(&store_path, key())
            .unwrap()
            .secret("TOKEN")
            .unwrap()
            .is_some()
    );
    let weak = store_key(&store_path, "PORTCULLIS_CREDENTIAL_KEY", Some("short")).unwrap_err();
    assert!(matches!(weak, StoreError::WeakKey { .. }), "{weak}");
}

#[test]
fn a_sealed_grant_opens_only_with_its_key_for_its_owner() {
    let alice = credential_key("alice", "github");
    let sealed = seal_grant(&key(), &alice, &grant(ACCESS_TOKEN)).unwrap();
    assert_same_grant(
        &open_grant(&key(), &alice, &sealed).unwrap(),
        &grant(ACCESS_TOKEN),
    );
    assert!(sealed.starts_with(b"PGRNT1"));
    assert_no_secret(&String::from_utf8_lossy(&sealed));
    // A fresh nonce each time: the same grant never seals to the same bytes.
    assert_ne!(
        sealed,
        seal_grant(&key(), &alice, &grant(ACCESS_TOKEN)).unwrap()
    );

    // Another key; the row moved to another user, or to another upstream; any flipped byte.
    let refusals = [
        open_grant(&other_key(), &alice, &sealed),
        open_grant(&key(), &credential_key("mallory", "github"), &sealed),
        open_grant(&key(), &credential_key("alice", "gitlab"), &sealed),
    ];
    for refused in refusals {
        assert!(matches!(refused, Err(SealError::DoesNotDecrypt)));
    }
    for at in [0, 6, 6 + NONCE_LEN, sealed.len() - 1] {
        let mut flipped = sealed.clone();
        flipped[at] ^= 0x01;
        let error = open_grant(&key(), &alice, &flipped).unwrap_err();
        assert_no_secret(&format!("{error} {error:?}"));
    }
    assert!(matches!(
        open_grant(&key(), &alice, &sealed[..20]),
        Err(SealError::DoesNotDecrypt)
    ));
}
