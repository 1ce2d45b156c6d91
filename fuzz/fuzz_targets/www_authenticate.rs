//! An upstream's `WWW-Authenticate` header, parsed into a challenge: never a panic, and every
//! scope it yields is a scope token.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(header) = std::str::from_utf8(data) {
        let challenge = portcullis_auth::parse_www_authenticate(header);
        for scope in challenge.scope.iter().flatten() {
            assert!(!scope.is_empty() && !scope.contains(' '), "scope {scope:?}");
        }
    }
});
