//! Every form a secret travels in is found and replaced; nothing else is touched.
#![expect(clippy::indexing_slicing, reason = "tests")]

use base64::Engine as _;
use serde_json::json;

use super::{REDACTED, Secrets};

const KEY: &str = "sk-live-4f9a/b+c=d?x&y";

fn registry() -> Secrets {
    let secrets = Secrets::default();
    secrets.register("api key of upstream mail", KEY);
    secrets
}

#[test]
fn every_encoding_of_a_secret_is_redacted() {
    let secrets = registry();
    let standard = base64::engine::general_purpose::STANDARD;
    let url_safe = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let hex: String = KEY.bytes().map(|b| format!("{b:02x}")).collect();
    let percent: String = KEY
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    let unicode: String = KEY
        .chars()
        .map(|c| format!("\\u{:04x}", u32::from(c)))
        .collect();
    for (what, text) in [
        ("as is", format!("x-api-key: {KEY}")),
        ("percent-encoded", format!("?key={percent}&z=1")),
        (
            "percent, lower hex",
            format!("?key={}", percent.to_lowercase()),
        ),
        (
            "JSON with escaped slash",
            format!("\"{}\"", KEY.replace('/', "\\/")),
        ),
        ("JSON \\u escapes", unicode),
        ("hex", hex.clone()),
        ("HEX", hex.to_uppercase()),
        ("base64", standard.encode(KEY)),
        ("base64 after 1 byte", standard.encode(format!("a{KEY}"))),
        ("base64 after 2 bytes", standard.encode(format!("ab{KEY}"))),
        (
            "base64 of a header line",
            standard.encode(format!("Authorization: Bearer {KEY}\r\n")),
        ),
        ("url-safe base64", url_safe.encode(format!("xy{KEY}"))),
    ] {
        let (redacted, found) = secrets.redact_text(&text);
        assert_eq!(
            found,
            ["api key of upstream mail"],
            "{what}: {text} -> {redacted}"
        );
        assert!(redacted.contains(REDACTED), "{what}");
        assert!(!redacted.contains(KEY), "{what}");
    }
}

#[test]
fn json_is_redacted_in_strings_and_member_names_and_the_rest_is_untouched() {
    let secrets = registry();
    let mut value = json!({
        "headers": {"x-api-key": KEY, "accept": "*/*"},
        "list": [1, true, format!("prefix {KEY} suffix")],
        KEY: "as a name",
    });
    let found = secrets.redact_json(&mut value);
    assert_eq!(found, ["api key of upstream mail"]);
    let text = value.to_string();
    assert!(!text.contains("sk-live"), "{text}");
    assert_eq!(value["headers"]["accept"], "*/*");
    assert_eq!(value["list"][0], 1);
    let mut clean = json!({"nothing": "to see"});
    assert!(secrets.redact_json(&mut clean).is_empty());
}

#[test]
fn a_short_secret_is_not_registered_and_text_without_secrets_is_unchanged() {
    let secrets = Secrets::default();
    secrets.register("pin", "1234");
    let (text, found) = secrets.redact_text("1234 is not redacted");
    assert_eq!(text, "1234 is not redacted");
    assert!(found.is_empty());
    let secrets = registry();
    let (text, found) = secrets.redact_text("an ordinary answer");
    assert_eq!(text, "an ordinary answer");
    assert!(found.is_empty());
}
