//! Shared by the load benches (`loadgen`, `probe`): their command-line
//! arguments without the `--bench` that `cargo bench` adds. Empty under
//! `cargo test --benches`, where each bench checks itself instead.

pub fn bench_args() -> Vec<String> {
    std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect()
}
