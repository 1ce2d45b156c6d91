//! The config parser and validator: any text is an error list or a config, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = portcullis_config::parse(std::path::Path::new("/fuzz/portcullis.toml"), text);
    }
});
