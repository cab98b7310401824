//! Shared by the load benches (`loadgen`, `probe`): their arguments, one
//! HTTP/1.1 message read off a kept-alive connection, and percentiles.

use std::io::{BufRead, BufReader, Read};
use std::net::TcpStream;

/// The command-line arguments without the `--bench` that `cargo bench`
/// adds. Empty under `cargo test --benches`, where each bench checks
/// itself instead.
pub fn bench_args() -> Vec<String> {
    std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect()
}

/// Reads one HTTP/1.1 message: its head (start line and headers, without
/// the blank line) and its `Content-Length` body; `None` if the stream
/// ends first.
pub fn read_message(r: &mut BufReader<TcpStream>) -> std::io::Result<Option<(String, Vec<u8>)>> {
    let mut head = String::new();
    loop {
        let mut line = String::new();
        if r.read_line(&mut line)? == 0 {
            return Ok(None);
        }
        if line == "\r\n" || line == "\n" {
            break;
        }
        head.push_str(&line);
    }
    let len = header(&head, "content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; len];
    r.read_exact(&mut body)?;
    Ok(Some((head, body)))
}

/// A header's value in a message head (name matched without case).
pub fn header<'h>(head: &'h str, name: &str) -> Option<&'h str> {
    head.lines().skip(1).find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// The `p`th percentile (nearest rank) of sorted values.
pub fn percentile<T: Copy>(sorted: &[T], p: f64) -> Option<T> {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    (!sorted.is_empty()).then(|| sorted[rank.clamp(1, sorted.len()) - 1])
}
