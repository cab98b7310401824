//! HTTP body splitting (object, array, NDJSON): indexes stay in order and
//! every item is a slice of the body.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for ndjson in [false, true] {
        let items = tocsin::source::http::split_body(data, ndjson);
        let mut last = None;
        for (i, item) in &items {
            assert!(last.is_none_or(|l| *i > l));
            last = Some(*i);
            assert!(item.len() <= data.len());
        }
    }
});
