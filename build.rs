//! Build information for `tocsin version`: the commit (when built from a
//! git checkout), the target, the profile and the compiler.

use std::process::Command;

fn main() {
    let commit = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".into());
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let rustc = Command::new(rustc)
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    let env = |k: &str| std::env::var(k).unwrap_or_else(|_| "unknown".into());
    println!("cargo:rustc-env=TOCSIN_COMMIT={commit}");
    println!("cargo:rustc-env=TOCSIN_RUSTC={rustc}");
    println!("cargo:rustc-env=TOCSIN_TARGET={}", env("TARGET"));
    println!("cargo:rustc-env=TOCSIN_PROFILE={}", env("PROFILE"));
    // A new commit changes the answer; nothing else in .git does.
    for p in [".git/HEAD", ".git/refs/heads", ".git/packed-refs"] {
        println!("cargo:rerun-if-changed={p}");
    }
    println!("cargo:rerun-if-changed=build.rs");
}
