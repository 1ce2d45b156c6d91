//! An evidence log's bytes (with no key at hand), read by the verifier and by the reader: a
//! report or an error, never a panic.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;

fn dir() -> &'static tempfile::TempDir {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| tempfile::tempdir().expect("tempdir"))
}

fuzz_target!(|data: &[u8]| {
    let path = dir().path().join("evidence.jsonl");
    if std::fs::write(&path, data).is_err() {
        return;
    }
    let _ = portcullis_audit::verify(&path, None);
    if let Ok(records) = portcullis_audit::read(&path, portcullis_audit::Filter::default()) {
        for record in records.take(1000) {
            let _ = record;
        }
    }
});
