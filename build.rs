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
    // A new commit or another branch changes the answer. Only paths that
    // exist are named: cargo reruns a build script on every build when a
    // path it watches is missing (and then rebuilds the crate).
    for p in git_paths() {
        println!("cargo:rerun-if-changed={}", p.display());
    }
    println!("cargo:rerun-if-changed=build.rs");
}

/// `HEAD`, the branch it names, and `packed-refs`, where they exist.
fn git_paths() -> Vec<std::path::PathBuf> {
    let Some(dir) = Command::new("git")
        .args(["rev-parse", "--git-dir"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| std::path::PathBuf::from(s.trim()))
    else {
        return Vec::new();
    };
    let head = dir.join("HEAD");
    let mut paths = vec![head.clone(), dir.join("packed-refs")];
    if let Some(branch) = std::fs::read_to_string(&head)
        .ok()
        .and_then(|h| h.strip_prefix("ref: ").map(|r| r.trim().to_string()))
    {
        paths.push(dir.join(branch));
    }
    paths.retain(|p| p.exists());
    paths
}
