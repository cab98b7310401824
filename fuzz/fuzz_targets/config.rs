//! Arbitrary text as tocsin.yaml: an error naming the place, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Err(e) = tocsin::config::Config::parse("fuzz.yaml", text) {
        let _ = e.to_string();
    }
});
