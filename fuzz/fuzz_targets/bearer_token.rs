//! Bearer tokens and JWTs, checked as the resource server checks them, against a fixed key set
//! (one Ed25519 key, whose private half signed only tokens with `CLAIMS`: the seed corpus's)
//! and settings: any `Authorization` header is refused without a panic, unless its token
//! carries exactly those claims under that key, and then it is alice's identity, valid now.
//! The same bytes are also read as the issuer's key set (JWKS).
#![no_main]

use std::collections::BTreeSet;
use std::sync::OnceLock;
use std::time::Instant;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use libfuzzer_sys::fuzz_target;
use portcullis_auth::fuzzing::{KeySet, authenticate};
use portcullis_core::{ClaimNames, ResourceServerSettings};
use serde_json::{Value, json};

const JWKS: &str = r#"{"keys":[{"kty":"OKP","crv":"Ed25519","alg":"EdDSA","use":"sig","kid":"fuzz","x":"vCValjfmsVjOmthInrjYbkojFP63W60uUTffmNIDFGE"}]}"#;
const ISSUER: &str = "https://issuer.example";
const RESOURCE: &str = "https://portcullis.example/mcp";
const NOW: u64 = 1_800_000_000;

struct Fixed {
    keys: KeySet,
    settings: ResourceServerSettings,
    /// The only claims the key ever signed.
    claims: Value,
}

fn fixed() -> &'static Fixed {
    static FIXED: OnceLock<Fixed> = OnceLock::new();
    FIXED.get_or_init(|| Fixed {
        keys: KeySet::parse(JWKS.as_bytes(), Instant::now()).expect("a key set"),
        settings: ResourceServerSettings {
            issuer: ISSUER.to_owned(),
            resource: RESOURCE.to_owned(),
            required_scopes: BTreeSet::from(["mcp".to_owned()]),
            scopes_supported: vec!["mcp".to_owned()],
            claims: ClaimNames::default(),
            leeway_secs: 30,
            allow_http: false,
        },
        claims: json!({
            "iss": ISSUER, "sub": "alice", "aud": RESOURCE, "azp": "client",
            "iat": NOW - 60, "exp": NOW + 3600, "scope": "mcp files.read",
        }),
    })
}

fuzz_target!(|data: &[u8]| {
    let fixed = fixed();
    let _ = KeySet::parse(data, Instant::now());
    let Ok(header) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(envelope) = authenticate(&fixed.keys, &fixed.settings, Some(header), NOW) {
        let claims = header
            .split('.')
            .nth(1)
            .and_then(|payload| URL_SAFE_NO_PAD.decode(payload).ok())
            .and_then(|payload| serde_json::from_slice::<Value>(&payload).ok());
        assert_eq!(
            claims.as_ref(),
            Some(&fixed.claims),
            "a token the key never signed was accepted"
        );
        assert_eq!(envelope.user().subject, "alice");
        assert!(envelope.is_valid_at(NOW));
    }
});
