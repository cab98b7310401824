//! Arbitrary bytes as a checkpoint file: refused or read, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = tocsin::checkpoint::parse(std::path::Path::new("fuzz.json"), data);
    // Past the checksum: the JSON body itself.
    if let Ok(cp) = serde_json_from(data) {
        let _ = cp;
    }
});

fn serde_json_from(data: &[u8]) -> Result<tocsin::checkpoint::Checkpoint, ()> {
    let mut framed = Vec::new();
    let digest = sha256_hex(data);
    framed.extend_from_slice(format!("tocsin-checkpoint 1 sha256={digest}\n").as_bytes());
    framed.extend_from_slice(data);
    tocsin::checkpoint::parse(std::path::Path::new("fuzz.json"), &framed)
        .ok()
        .flatten()
        .ok_or(())
}

fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(data).iter().map(|b| format!("{b:02x}")).collect()
}
