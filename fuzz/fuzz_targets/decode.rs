//! Arbitrary bytes → event decoder: a rejection reason or an event, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let dec = tocsin::decode::Decoder::default();
    if let tocsin::decode::Decoded::Event(ev) = dec.decode(data, Some(tocsin::event::EventTime(0))) {
        let _ = ev.time.rfc3339();
        let _ = tocsin::event::json::compact(&ev.fields);
    }
});
