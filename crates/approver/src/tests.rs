//! The approvers file fails closed, ceremonies refuse what they must, and the enrolment page
//! answers only its own token, host and origin. The browser ceremonies themselves are tested
//! with a real Chromium in `tests/e2e/passkey.rs`.
#![expect(clippy::unwrap_used, clippy::indexing_slicing, reason = "tests")]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use url::Url;

use crate::{ApproverError, Approvers, enrol};

fn origin() -> Url {
    Url::parse("http://localhost:8080").unwrap()
}

fn file_in(dir: &Path) -> PathBuf {
    dir.join("state").join("approvers.json")
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn a_missing_file_means_nobody_enrolled() {
    let dir = tempfile::tempdir().unwrap();
    let approvers = Approvers::open(file_in(dir.path()), &origin()).unwrap();
    assert!(approvers.is_empty().unwrap());
    assert!(approvers.names().unwrap().is_empty());
    assert!(!file_in(dir.path()).exists(), "opening writes nothing");
}

#[test]
fn a_corrupt_file_fails_closed_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("approvers.json");
    fs::write(&file, "{\"version\": 1, \"approvers\": [").unwrap();
    fs::set_permissions(&file, fs::Permissions::from_mode(0o600)).unwrap();
    let error = Approvers::open(file.clone(), &origin()).unwrap_err();
    assert!(matches!(error, ApproverError::Corrupt { .. }), "{error}");
    assert!(
        error.to_string().contains(&file.display().to_string()),
        "{error}"
    );
}

#[test]
fn a_file_corrupted_after_open_fails_closed_too() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("approvers.json");
    let approvers = Approvers::open(file.clone(), &origin()).unwrap();
    fs::write(&file, "[]").unwrap();
    fs::set_permissions(&file, fs::Permissions::from_mode(0o600)).unwrap();
    assert!(approvers.is_empty().is_err());
    assert!(approvers.names().is_err());
    assert!(matches!(
        approvers.begin_assertion(),
        Err(ApproverError::Corrupt { .. })
    ));
}

#[test]
fn a_newer_format_is_refused_not_half_read() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("approvers.json");
    fs::write(&file, "{\"version\": 2, \"approvers\": []}").unwrap();
    fs::set_permissions(&file, fs::Permissions::from_mode(0o600)).unwrap();
    let error = Approvers::open(file, &origin()).unwrap_err();
    assert!(error.to_string().contains("format version 2"), "{error}");
}

#[test]
fn a_file_others_can_write_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("approvers.json");
    fs::write(&file, "{\"version\": 1, \"approvers\": []}").unwrap();
    fs::set_permissions(&file, fs::Permissions::from_mode(0o666)).unwrap();
    let error = Approvers::open(file, &origin()).unwrap_err();
    assert!(matches!(error, ApproverError::Refused { .. }), "{error}");
    assert!(error.to_string().contains("chmod 600"), "{error}");
}

#[test]
fn a_symbolic_link_is_not_followed() {
    let dir = tempfile::tempdir().unwrap();
    let real = dir.path().join("elsewhere.json");
    fs::write(&real, "{\"version\": 1, \"approvers\": []}").unwrap();
    fs::set_permissions(&real, fs::Permissions::from_mode(0o600)).unwrap();
    let file = dir.path().join("approvers.json");
    std::os::unix::fs::symlink(&real, &file).unwrap();
    let error = Approvers::open(file, &origin()).unwrap_err();
    assert!(error.to_string().contains("symbolic link"), "{error}");
}

#[test]
fn an_unreadable_path_is_an_error_not_nobody() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("approvers.json");
    fs::create_dir(&file).unwrap();
    let error = Approvers::open(file, &origin()).unwrap_err();
    assert!(error.to_string().contains("not a regular file"), "{error}");
}

#[test]
fn an_assertion_with_nobody_enrolled_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let approvers = Approvers::open(file_in(dir.path()), &origin()).unwrap();
    let error = approvers.begin_assertion().unwrap_err();
    assert!(
        matches!(error, ApproverError::NobodyEnrolled { .. }),
        "{error}"
    );
    assert!(
        error.to_string().contains("portcullis approver enroll"),
        "{error}"
    );
}

#[test]
fn an_origin_without_a_domain_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let by_address = Url::parse("http://127.0.0.1:8080").unwrap();
    let error = Approvers::open(file_in(dir.path()), &by_address).unwrap_err();
    assert!(matches!(error, ApproverError::Origin { .. }), "{error}");
}

#[test]
fn enrolment_options_carry_the_name_and_require_verification() {
    let dir = tempfile::tempdir().unwrap();
    let approvers = Approvers::open(file_in(dir.path()), &origin()).unwrap();
    let (options, state) = approvers.begin_enrolment("alice").unwrap();
    let public_key = &options["publicKey"];
    assert_eq!(public_key["rp"]["id"], "localhost");
    assert_eq!(public_key["user"]["name"], "alice");
    assert_eq!(
        public_key["authenticatorSelection"]["userVerification"],
        "required"
    );
    let debug = format!("{state:?}");
    let challenge = public_key["challenge"].as_str().unwrap();
    assert!(
        !debug.contains(challenge),
        "the state's Debug shows no challenge: {debug}"
    );
}

#[test]
fn names_that_cannot_be_shown_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let approvers = Approvers::open(file_in(dir.path()), &origin()).unwrap();
    for name in ["", "  ", "al\nice", &"x".repeat(65)] {
        let error = approvers.begin_enrolment(name).unwrap_err();
        assert!(
            matches!(error, ApproverError::Name { .. }),
            "{name:?}: {error}"
        );
    }
}

#[test]
fn a_made_up_enrolment_response_is_refused_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let approvers = Approvers::open(file_in(dir.path()), &origin()).unwrap();
    let (_, state) = approvers.begin_enrolment("alice").unwrap();
    let made_up = json!({
        "id": "AAAA", "rawId": "AAAA", "type": "public-key",
        "response": {"attestationObject": "AAAA", "clientDataJSON": "AAAA"},
    });
    assert!(approvers.finish_enrolment(state, &made_up).is_err());
    assert!(!file_in(dir.path()).exists());
    let (_, state) = approvers.begin_enrolment("alice").unwrap();
    let error = approvers
        .finish_enrolment(state, &json!({"hello": 1}))
        .unwrap_err();
    assert!(matches!(error, ApproverError::Response { .. }), "{error}");
}

#[test]
fn one_time_tokens_are_long_random_and_url_safe() {
    let first = enrol::one_time_token().unwrap();
    let second = enrol::one_time_token().unwrap();
    assert_ne!(first, second);
    assert_eq!(first.len(), 43, "256 bits in unpadded base64url");
    assert!(
        first
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    );
}

/// A raw HTTP/1.1 exchange with the page: its status line's code and its body.
async fn exchange(port: u16, request: String) -> (u16, String) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    let status = answer.split(' ').nth(1).unwrap().parse().unwrap();
    let body = answer
        .split("\r\n\r\n")
        .nth(1)
        .unwrap_or_default()
        .to_owned();
    (status, body)
}

fn get(path: &str, host: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n")
}

fn post(path: &str, host: &str, origin: &str, content_type: &str) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nHost: {host}\r\nOrigin: {origin}\r\n\
         Content-Type: {content_type}\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{{}}"
    )
}

#[tokio::test]
async fn the_enrolment_page_answers_only_its_token_host_and_origin() {
    let dir = tempfile::tempdir().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let origin = Url::parse(&format!("http://localhost:{port}")).unwrap();
    let approvers = Approvers::open(file_in(dir.path()), &origin).unwrap();
    let token = enrol::one_time_token().unwrap();
    let server = tokio::spawn(enrol::serve(
        listener,
        approvers,
        "alice".to_owned(),
        token.clone(),
        Duration::from_secs(30),
    ));
    let host = format!("localhost:{port}");
    let page = format!("/enrol/{token}");

    let (status, body) = exchange(port, get(&page, &host)).await;
    assert_eq!(status, 200);
    assert!(
        body.contains("Enrol passkey") && body.contains("alice"),
        "{body}"
    );

    let wrong = enrol::one_time_token().unwrap();
    for path in [
        format!("/enrol/{wrong}"),
        format!("/enrol/{wrong}/enrol.js"),
        "/".to_owned(),
    ] {
        assert_eq!(exchange(port, get(&path, &host)).await.0, 404, "{path}");
    }
    let options = format!("/enrol/{wrong}/options");
    let own_origin = format!("http://{host}");
    assert_eq!(
        exchange(port, post(&options, &host, &own_origin, "application/json"))
            .await
            .0,
        404
    );

    // Another host name (a DNS rebinding page) reaches nothing, even with the token.
    assert_eq!(
        exchange(port, get(&page, &format!("evil.example:{port}")))
            .await
            .0,
        421
    );
    assert_eq!(
        exchange(port, get(&page, &format!("127.0.0.1:{port}")))
            .await
            .0,
        421
    );

    // Another origin, or a body a plain form could send, does not begin a ceremony.
    let options = format!("/enrol/{token}/options");
    let cross = post(&options, &host, "http://evil.example", "application/json");
    assert_eq!(exchange(port, cross).await.0, 403);
    let no_origin = format!(
        "POST {options} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n\
         Content-Length: 2\r\nConnection: close\r\n\r\n{{}}"
    );
    assert_eq!(exchange(port, no_origin).await.0, 403);
    let form = post(
        &options,
        &host,
        &own_origin,
        "application/x-www-form-urlencoded",
    );
    assert_eq!(exchange(port, form).await.0, 415);

    // The page's own origin gets the options.
    let (status, body) =
        exchange(port, post(&options, &host, &own_origin, "application/json")).await;
    assert_eq!(status, 200, "{body}");
    let options: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(options["publicKey"]["rp"]["id"], "localhost");

    // A made-up answer is refused and does not close the page.
    let finish = format!("/enrol/{token}/finish");
    let (status, _) = exchange(port, post(&finish, &host, &own_origin, "application/json")).await;
    assert_eq!(status, 403);
    assert_eq!(exchange(port, get(&page, &host)).await.0, 200);
    server.abort();
}

#[tokio::test]
async fn the_enrolment_page_stops_at_its_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let origin = Url::parse(&format!("http://localhost:{port}")).unwrap();
    let approvers = Approvers::open(file_in(dir.path()), &origin).unwrap();
    let token = enrol::one_time_token().unwrap();
    let served = enrol::serve(
        listener,
        approvers,
        "alice".to_owned(),
        token,
        Duration::from_millis(200),
    );
    let error = tokio::time::timeout(Duration::from_secs(10), served)
        .await
        .unwrap()
        .unwrap_err();
    assert!(matches!(error, ApproverError::Deadline { .. }), "{error}");
    assert!(
        TcpStream::connect(("127.0.0.1", port)).await.is_err(),
        "the listener is closed"
    );
}

#[tokio::test]
async fn the_enrolment_page_listens_on_loopback_only() {
    let dir = tempfile::tempdir().unwrap();
    let listener = TcpListener::bind("0.0.0.0:0").await.unwrap();
    let approvers = Approvers::open(file_in(dir.path()), &origin()).unwrap();
    let token = enrol::one_time_token().unwrap();
    let error = enrol::serve(
        listener,
        approvers,
        "alice".to_owned(),
        token,
        Duration::from_secs(5),
    )
    .await
    .unwrap_err();
    assert!(error.to_string().contains("loopback"), "{error}");
}

#[test]
fn the_file_is_written_private_and_whole() {
    let dir = tempfile::tempdir().unwrap();
    let file = file_in(dir.path());
    let store = crate::store::Store::new(file.clone()).unwrap();
    store.update(|_| Ok(())).unwrap();
    assert_eq!(mode(&file), 0o600);
    assert_eq!(mode(&file.with_extension("json.lock")), 0o600);
    assert_eq!(mode(file.parent().unwrap()), 0o700);
    assert!(
        !file.with_extension("json.tmp").exists(),
        "the temporary file was renamed"
    );
    let approvers = Approvers::open(file, &origin()).unwrap();
    assert!(approvers.is_empty().unwrap());
}

#[test]
fn a_failed_change_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let file = file_in(dir.path());
    let store = crate::store::Store::new(file.clone()).unwrap();
    let failed =
        store.update(|_| -> Result<(), ApproverError> { Err(ApproverError::AlreadyEnrolled) });
    assert!(failed.is_err());
    assert!(!file.exists());
}

/// The check is the credential store's, the stricter of the two: group or others may not even
/// read the file (it names the approvers and their passkeys' ids).
#[test]
fn a_file_others_can_read_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("approvers.json");
    fs::write(&file, "{\"version\": 1, \"approvers\": []}").unwrap();
    fs::set_permissions(&file, fs::Permissions::from_mode(0o640)).unwrap();
    let error = Approvers::open(file, &origin()).unwrap_err();
    assert!(matches!(error, ApproverError::Refused { .. }), "{error}");
    assert!(error.to_string().contains("mode 0640"), "{error}");
    assert!(error.to_string().contains("chmod 600"), "{error}");
}
