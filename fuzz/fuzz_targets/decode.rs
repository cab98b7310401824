//! Arbitrary bytes → event decoder: a rejection reason or an event, never a
//! panic. Differential as well: the decoded tape (`event::doc`) holds what
//! serde_json's own `Value` holds for the same text, member look-ups find
//! what `Value` finds, and any text parses as a tape exactly when it parses
//! as a `Value`.
#![no_main]
use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use tocsin::decode::{Decoded, Decoder};
use tocsin::event::{Doc, EventTime};

/// serde_json's `Value` treats an object whose first member is named
/// `$serde_json::private::RawValue` as a raw value (feature `raw_value`) and
/// rejects it unless the member is a string; the decoder reads it as the
/// ordinary JSON object it is. Such texts are left out of the comparison.
fn comparable(data: &[u8]) -> bool {
    const MAGIC: &[u8] = b"$serde_json::private";
    !data.windows(MAGIC.len()).any(|w| w == MAGIC)
}

fuzz_target!(|data: &[u8]| {
    let dec = Decoder::default();
    let comparable = comparable(data);
    if let Decoded::Event(ev) = dec.decode(data, Some(EventTime(0))) {
        let _ = ev.time.rfc3339();
        let _ = ev.compact_json();
        if !comparable {
            return;
        }
        let value: Value = serde_json::from_str(ev.raw()).expect("the decoder accepted it");
        let root = ev.fields.root();
        assert_eq!(root.to_value(), value);
        if let Some(members) = value.as_object() {
            for (name, v) in members {
                assert_eq!(root.get(name).map(|n| n.to_value()).as_ref(), Some(v));
            }
        }
        let mut out = String::new();
        root.write_compact(&mut out);
        assert_eq!(out, tocsin::event::json::compact(&value));
    }
    if let (true, Ok(text)) = (comparable, std::str::from_utf8(data)) {
        assert_eq!(
            Doc::parse(text).is_ok(),
            serde_json::from_str::<Value>(text).is_ok(),
            "{text:?}"
        );
    }
});
