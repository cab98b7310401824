//! Rule text → parser, validator, compiler, and (when it loads) the engine
//! on a few events: nothing may panic, every diagnostic must render.
#![no_main]
use libfuzzer_sys::fuzz_target;
use tocsin::lang::{Options, load_texts};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let loaded = load_texts(vec![("f.rules".into(), text.to_string())], &Options::default());
    let _ = loaded.render();
    if !loaded.has_errors() {
        let mut p = tocsin::pipeline::Pipeline::new(&loaded.program, 0);
        let dec = tocsin::decode::Decoder::default();
        let mut alerts = Vec::new();
        for line in [
            r#"{"type":"a","ts":1,"user":"x","v":1}"#,
            r#"{"type":"b","ts":2,"user":"x","v":"s"}"#,
            r#"{"type":"a","ts":5000,"v":[1,2]}"#,
        ] {
            if let tocsin::decode::Decoded::Event(ev) = dec.decode(line.as_bytes(), None) {
                let _ = p.push(ev, &mut alerts);
            }
        }
        p.finish(&mut alerts);
        for a in &alerts {
            let _ = a.to_json();
        }
    }
});
