//! The Debian package and the systemd unit (daemon.md section 7, issue 7).
//!
//! The package is built once per run by `packaging/build-deb.sh --binary`,
//! which runs cargo-deb on the `[package.metadata.deb]` section of
//! Cargo.toml exactly as a release build does, but packages the binary of
//! this test build instead of compiling a release one (a release build
//! costs minutes; this costs seconds). `TOCSIN_DEB=path/to/tocsin.deb`
//! checks an already built package instead, e.g. the release one from
//! `packaging/build-deb.sh`.
//!
//! Needs `cargo-deb` (the script installs it when missing) and `dpkg-deb`;
//! the `systemd-analyze` checks need the `systemd` package, and are
//! required when `CI` is set.

mod common;

use std::collections::BTreeMap;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{free_port, get, http, wait_for};

/// A built package, listed, and unpacked into `root` (data) and `control`.
struct Package {
    deb: PathBuf,
    /// `dpkg-deb -c`: path (without the leading `.`) → (mode, owner).
    listing: BTreeMap<String, (String, String)>,
    root: PathBuf,
    control: PathBuf,
}

fn manifest_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn package() -> &'static Package {
    static PACKAGE: OnceLock<Package> = OnceLock::new();
    PACKAGE.get_or_init(build_package)
}

fn build_package() -> Package {
    // One directory per process, so that two runs never share one; those of
    // earlier runs are removed once they are an hour old.
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    if let Ok(entries) = std::fs::read_dir(tmp) {
        for e in entries.flatten() {
            let old = e
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age > Duration::from_secs(3600));
            if e.file_name().to_string_lossy().starts_with("packaging-") && old {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
    let work = tmp.join(format!("packaging-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).expect("work dir");

    let deb = match std::env::var_os("TOCSIN_DEB") {
        Some(path) => PathBuf::from(path),
        None => {
            let start = Instant::now();
            let out = run(Command::new(manifest_dir().join("packaging/build-deb.sh"))
                .arg("--binary")
                .arg(env!("CARGO_BIN_EXE_tocsin"))
                .arg("--output")
                .arg(work.join("deb"))
                .stderr(Stdio::inherit()));
            let printed = stdout(&out);
            let deb = PathBuf::from(printed.lines().last().unwrap_or_default().trim());
            eprintln!(
                "packaging: built {} in {:.1}s",
                deb.display(),
                start.elapsed().as_secs_f64()
            );
            deb
        }
    };
    assert!(
        deb.is_file(),
        "no package at {} (TOCSIN_DEB or the last line of build-deb.sh)",
        deb.display()
    );

    let listing = stdout(&run(Command::new("dpkg-deb").arg("-c").arg(&deb)))
        .lines()
        .map(|line| {
            // -rwxr-xr-x 0/0  15648792 2026-11-28 00:00 ./usr/bin/tocsin
            let f: Vec<&str> = line.split_whitespace().collect();
            assert!(f.len() >= 6, "unexpected dpkg-deb -c line: {line}");
            let path = f[5].trim_start_matches('.').to_string();
            (path, (f[0].to_string(), f[1].to_string()))
        })
        .collect();
    let root = work.join("root");
    let control = work.join("control");
    run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&root));
    run(Command::new("dpkg-deb").arg("-e").arg(&deb).arg(&control));
    Package {
        deb,
        listing,
        root,
        control,
    }
}

/// The shipped example rules, by file name.
fn shipped_rules() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(manifest_dir().join("rules"))
        .expect("rules/")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".rules"))
        .collect();
    names.sort();
    assert!(!names.is_empty(), "rules/ holds no *.rules");
    names
}

const UNIT: &str = "/usr/lib/systemd/system/tocsin.service";

#[test]
fn package_holds_the_binary_unit_config_rules_and_docs() {
    let p = package();
    let mut expected: Vec<(String, &str)> = vec![
        ("/usr/bin/tocsin".into(), "-rwxr-xr-x"),
        (UNIT.into(), "-rw-r--r--"),
        ("/etc/tocsin/tocsin.yaml".into(), "-rw-r--r--"),
        ("/usr/share/man/man1/tocsin.1.gz".into(), "-rw-r--r--"),
        ("/usr/share/man/man1/tocsin-run.1.gz".into(), "-rw-r--r--"),
        (
            "/usr/share/bash-completion/completions/tocsin".into(),
            "-rw-r--r--",
        ),
        (
            "/usr/share/zsh/vendor-completions/_tocsin".into(),
            "-rw-r--r--",
        ),
        (
            "/usr/share/fish/vendor_completions.d/tocsin.fish".into(),
            "-rw-r--r--",
        ),
        ("/usr/share/doc/tocsin/README.md".into(), "-rw-r--r--"),
        ("/usr/share/doc/tocsin/operations.md".into(), "-rw-r--r--"),
        ("/usr/share/doc/tocsin/copyright".into(), "-rw-r--r--"),
        (
            "/usr/share/doc/tocsin/examples/example.yaml".into(),
            "-rw-r--r--",
        ),
        (
            "/usr/share/doc/tocsin/examples/tocsin.yaml".into(),
            "-rw-r--r--",
        ),
    ];
    for name in shipped_rules() {
        expected.push((format!("/etc/tocsin/rules/{name}"), "-rw-r--r--"));
        expected.push((
            format!("/usr/share/doc/tocsin/examples/rules/{name}"),
            "-rw-r--r--",
        ));
    }
    for (path, mode) in &expected {
        match p.listing.get(path) {
            Some((m, owner)) => {
                assert_eq!(m, mode, "mode of {path}");
                assert_eq!(owner, "0/0", "owner of {path}");
            }
            None => panic!(
                "{path} missing from {}; it holds:\n{}",
                p.deb.display(),
                p.listing.keys().cloned().collect::<Vec<_>>().join("\n")
            ),
        }
    }
    // Nothing in the package writes outside /usr and /etc: state is the
    // daemon's own, created by postinst and systemd.
    for path in p.listing.keys() {
        assert!(
            path == "/" || path.starts_with("/usr/") || path.starts_with("/etc/"),
            "unexpected path in the package: {path}"
        );
    }
    // What is installed is what the repository holds.
    for (installed, source) in [
        ("etc/tocsin/tocsin.yaml", "packaging/tocsin.yaml"),
        (&UNIT[1..], "packaging/systemd/tocsin.service"),
        ("usr/share/doc/tocsin/operations.md", "docs/operations.md"),
    ] {
        assert_eq!(
            std::fs::read_to_string(p.root.join(installed)).expect("installed file"),
            std::fs::read_to_string(manifest_dir().join(source)).expect("source file"),
            "{installed} differs from {source}"
        );
    }
    let version = stdout(&run(
        Command::new(p.root.join("usr/bin/tocsin")).arg("version")
    ));
    let mut lines = version.lines();
    assert_eq!(
        lines.next(),
        Some(format!("tocsin {}", env!("CARGO_PKG_VERSION")).as_str())
    );
    // Then the build: commit, target, profile, compiler.
    let build: Vec<&str> = lines.collect();
    assert_eq!(build.len(), 4, "{version}");
    assert!(build[1].starts_with("target: "), "{version}");
}

#[test]
fn control_has_conffiles_dependencies_and_maintainer_scripts() {
    let p = package();
    let field = |name: &str| {
        stdout(&run(Command::new("dpkg-deb")
            .arg("-f")
            .arg(&p.deb)
            .arg(name)))
        .trim()
        .to_string()
    };
    assert_eq!(field("Package"), "tocsin");
    assert_eq!(field("Version"), format!("{}-1", env!("CARGO_PKG_VERSION")));
    let depends = field("Depends");
    assert!(depends.contains("adduser"), "Depends: {depends}");
    assert!(depends.contains("libc6"), "Depends: {depends}");
    // ExecReload=/bin/kill.
    assert!(depends.contains("procps"), "Depends: {depends}");

    // The config and every shipped rule are conffiles: an upgrade keeps
    // the operator's edits (and asks about conflicting ones).
    let conffiles = std::fs::read_to_string(p.control.join("conffiles")).expect("conffiles");
    let mut expected = vec!["/etc/tocsin/tocsin.yaml".to_string()];
    expected.extend(
        shipped_rules()
            .iter()
            .map(|n| format!("/etc/tocsin/rules/{n}")),
    );
    let mut got: Vec<String> = conffiles.lines().map(str::to_string).collect();
    got.sort();
    expected.sort();
    assert_eq!(got, expected, "conffiles");

    let info = stdout(&run(Command::new("dpkg-deb").arg("-I").arg(&p.deb)));
    for script in ["postinst", "prerm", "postrm"] {
        assert!(info.contains(script), "{script} missing from:\n{info}");
        let path = p.control.join(script);
        run(Command::new("sh").arg("-n").arg(&path));
        let text = std::fs::read_to_string(&path).expect("script");
        assert!(text.starts_with("#!/bin/sh\n"), "{script} shebang");
        assert!(
            !text.contains("#DEBHELPER#"),
            "{script}: token not replaced"
        );
    }
    let postinst = std::fs::read_to_string(p.control.join("postinst")).expect("postinst");
    assert!(
        postinst.contains("addgroup --system tocsin")
            && postinst.contains("adduser --system --ingroup tocsin --no-create-home"),
        "postinst creates the tocsin system user and group"
    );
    assert!(postinst.contains("chown tocsin:tocsin /var/lib/tocsin"));
    assert!(postinst.contains("systemctl --system daemon-reload"));
    // Installed, not started and not enabled; a running service is
    // restarted on upgrade only.
    assert!(!postinst.contains("deb-systemd-invoke start"));
    assert!(!postinst.contains("deb-systemd-invoke restart"));
    assert!(postinst.contains("deb-systemd-invoke try-restart tocsin.service"));
    assert!(!postinst.contains("was-enabled defaults to true"));
    let postrm = std::fs::read_to_string(p.control.join("postrm")).expect("postrm");
    assert!(postrm.contains("rm -rf /var/lib/tocsin"));
    assert!(postrm.contains("deb-systemd-helper purge tocsin.service"));
}

#[test]
fn packaged_rules_pass_check_with_the_packaged_config() {
    let p = package();
    let tocsin = p.root.join("usr/bin/tocsin");
    // As the operator runs it after install, with the paths of the
    // unpacked tree.
    let out = run(Command::new(&tocsin)
        .arg("check")
        .arg("-c")
        .arg(p.root.join("etc/tocsin/tocsin.yaml"))
        .arg(p.root.join("etc/tocsin/rules")));
    assert_eq!(stdout(&out), "", "no diagnostics");
    let summary = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        summary.trim(),
        format!(
            "{} rule(s) OK",
            count_rules(&p.root.join("etc/tocsin/rules"))
        )
    );

    // And with the config's own `rules:` location, rewritten to the tree.
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = packaged_config_in(p, dir.path(), 8080);
    let out = run(Command::new(&tocsin).arg("check").arg("-c").arg(&cfg));
    assert_eq!(stdout(&out), "", "no diagnostics");
}

/// Number of `rule NAME {` openings in the rule files of `dir`.
fn count_rules(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .expect("rules dir")
        .flatten()
        .map(|e| std::fs::read_to_string(e.path()).expect("rule file"))
        .map(|text| {
            text.lines()
                .filter(|l| l.trim_start().starts_with("rule ") && l.trim_end().ends_with('{'))
                .count()
        })
        .sum()
}

/// The packaged config with /etc/tocsin/rules, /var/lib/tocsin and the
/// port moved into the unpacked tree and `dir`; written to `dir`.
fn packaged_config_in(p: &Package, dir: &Path, port: u16) -> PathBuf {
    let text = std::fs::read_to_string(p.root.join("etc/tocsin/tocsin.yaml")).expect("config");
    for needle in [
        "rules: /etc/tocsin/rules",
        "/var/lib/tocsin",
        "127.0.0.1:8080",
    ] {
        assert!(text.contains(needle), "packaged config lacks {needle}");
    }
    let state = dir.join("state");
    let text = text
        .replace(
            "rules: /etc/tocsin/rules",
            &format!("rules: {}", p.root.join("etc/tocsin/rules").display()),
        )
        .replace("/var/lib/tocsin", &state.display().to_string())
        .replace("127.0.0.1:8080", &format!("127.0.0.1:{port}"));
    let path = dir.join("tocsin.yaml");
    std::fs::write(&path, text).expect("write config");
    path
}

/// Type=notify, ExecReload=kill -HUP, KillSignal=SIGTERM, as the unit
/// relies on them: the packaged binary on the packaged config (moved into a
/// temporary directory) says READY=1 on $NOTIFY_SOCKET only once it
/// answers /readyz, raises the README's first alert into the `ops` file
/// channel, reloads on SIGHUP, says STOPPING=1 on SIGTERM and exits 0.
#[test]
fn packaged_config_runs_notifies_systemd_and_raises_a_first_alert() {
    let p = package();
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let cfg = packaged_config_in(p, dir.path(), port);
    let notify_path = dir.path().join("notify.sock");
    let notify = UnixDatagram::bind(&notify_path).expect("notify socket");
    notify
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let stderr_path = dir.path().join("stderr.log");
    let mut child = Command::new(p.root.join("usr/bin/tocsin"))
        .arg("run")
        .arg("-c")
        .arg(&cfg)
        .env("NOTIFY_SOCKET", &notify_path)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr_path).expect("stderr file"))
        .spawn()
        .expect("spawn the packaged tocsin");
    let log = || std::fs::read_to_string(&stderr_path).unwrap_or_default();

    let mut buf = [0u8; 4096];
    let n = notify
        .recv(&mut buf)
        .unwrap_or_else(|e| panic!("no READY=1 on NOTIFY_SOCKET ({e}):\n{}", log()));
    assert_eq!(std::str::from_utf8(&buf[..n]).expect("utf-8"), "READY=1\n");
    // Ready means ready: recovery is done and the listeners are bound.
    assert_eq!(get(port, "/readyz").status, 200, "{}", log());
    assert_eq!(get(port, "/healthz").status, 200);

    // README step 2, stamped an hour ago (the default max_future rejects
    // events from the future): root logs in, alice's later login moves the
    // watermark past it.
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_millis();
    let t0 = now_ms - 3_600_000;
    let body = format!(
        "{{\"type\":\"auth\",\"ts\":{t0},\"user\":\"root\",\"ip\":\"203.0.113.7\",\"outcome\":\"success\"}}\n\
         {{\"type\":\"auth\",\"ts\":{},\"user\":\"alice\",\"ip\":\"198.51.100.2\",\"outcome\":\"success\"}}\n",
        t0 + 5_000
    );
    let r = http(
        port,
        "POST",
        "/v1/events",
        &[("Content-Type", "application/x-ndjson")],
        body.as_bytes(),
    )
    .expect("POST answered");
    assert_eq!(r.status, 202, "{}", r.body);
    assert_eq!(r.body, r#"{"accepted":2,"rejected":[]}"#);
    let alerts_file = dir.path().join("state/alerts.ndjson");
    let alert: serde_json::Value =
        wait_for("the root_login alert", Duration::from_secs(20), || {
            std::fs::read_to_string(&alerts_file)
                .ok()?
                .lines()
                .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                .find(|a| a["rule"] == "root_login")
        });
    assert_eq!(alert["status"], "firing");
    assert_eq!(alert["message"], "root logged in from 203.0.113.7");
    let listed: serde_json::Value =
        serde_json::from_str(&get(port, "/v1/alerts").body).expect("alerts JSON");
    assert!(
        listed
            .as_array()
            .expect("array")
            .iter()
            .any(|a| a["id"] == alert["id"]),
        "/v1/alerts lists the alert"
    );

    // ExecReload: SIGHUP reloads the rules.
    let pid = child.id().to_string();
    run(Command::new("kill").args(["-HUP", &pid]));
    wait_for("a reload after SIGHUP", Duration::from_secs(20), || {
        get(port, "/metrics")
            .body
            .lines()
            .any(|l| l.starts_with("tocsin_rules_reload_total{outcome=\"success\"} 1"))
            .then_some(())
    });

    // KillSignal=SIGTERM: STOPPING=1, then exit 0 (so Restart=on-failure
    // leaves a stopped service stopped).
    run(Command::new("kill").args(["-TERM", &pid]));
    let n = notify
        .recv(&mut buf)
        .unwrap_or_else(|e| panic!("no STOPPING=1 on NOTIFY_SOCKET ({e}):\n{}", log()));
    assert_eq!(
        std::str::from_utf8(&buf[..n]).expect("utf-8"),
        "STOPPING=1\n"
    );
    let status = wait_for("exit after SIGTERM", Duration::from_secs(30), || {
        child.try_wait().expect("wait")
    });
    assert!(status.success(), "exit status {status}:\n{}", log());
}

/// `key=value` settings of a unit file, by section, in order.
fn unit_settings(text: &str) -> Vec<(String, String, String)> {
    let mut section = String::new();
    let mut out = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(s) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = s.to_string();
        } else if let Some((k, v)) = line.split_once('=') {
            out.push((section.clone(), k.trim().to_string(), v.trim().to_string()));
        }
    }
    out
}

#[test]
fn unit_runs_as_its_own_user_with_notify_reload_and_hardening() {
    let p = package();
    let text = std::fs::read_to_string(p.root.join(&UNIT[1..])).expect("unit");
    let settings = unit_settings(&text);
    let value = |section: &str, key: &str| -> Vec<&str> {
        settings
            .iter()
            .filter(|(s, k, _)| s == section && k == key)
            .map(|(_, _, v)| v.as_str())
            .collect()
    };
    for (key, expected) in [
        ("Type", "notify"),
        ("NotifyAccess", "main"),
        (
            "ExecStart",
            "/usr/bin/tocsin run -c /etc/tocsin/tocsin.yaml",
        ),
        ("ExecReload", "/bin/kill -HUP $MAINPID"),
        ("KillSignal", "SIGTERM"),
        ("User", "tocsin"),
        ("Group", "tocsin"),
        ("StateDirectory", "tocsin"),
        ("ConfigurationDirectory", "tocsin"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "true"),
        ("NoNewPrivileges", "true"),
        ("PrivateTmp", "true"),
        ("Restart", "on-failure"),
        ("RestartSec", "2s"),
        ("LimitNOFILE", "65536"),
        ("RestrictAddressFamilies", "AF_INET AF_INET6 AF_UNIX"),
        ("CapabilityBoundingSet", ""),
    ] {
        assert_eq!(value("Service", key), vec![expected], "[Service] {key}");
    }
    assert_eq!(value("Install", "WantedBy"), vec!["multi-user.target"]);
    // The packaged config keeps every path the daemon writes inside the
    // state directory, the only writable one under ProtectSystem=strict.
    let cfg = std::fs::read_to_string(p.root.join("etc/tocsin/tocsin.yaml")).expect("config");
    for line in cfg.lines().filter(|l| !l.trim_start().starts_with('#')) {
        if let Some((_, v)) = line
            .split_once("path:")
            .or_else(|| line.split_once("state_dir:"))
        {
            assert!(
                v.trim().starts_with("/var/lib/tocsin"),
                "written outside the state directory: {line}"
            );
        }
    }
}

/// Whether `tool` runs; `CI` requires it.
fn have(tool: &str) -> bool {
    let found = Command::new(tool)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        assert!(
            std::env::var_os("CI").is_none(),
            "{tool} is required in CI (apt-get install -y systemd man-db)"
        );
        eprintln!("packaging: {tool} not installed; this check did not run");
    }
    found
}

/// `systemd-analyze verify` on the packaged unit, its ExecStart pointed at
/// the packaged binary (verify requires the program to exist) and man
/// pages looked up in the package (Documentation=man:tocsin(1)); and the
/// sandbox's exposure score stays "OK" (below 2.5 of 10).
#[test]
fn unit_passes_systemd_analyze_verify() {
    if !have("systemd-analyze") {
        return;
    }
    let p = package();
    let text = std::fs::read_to_string(p.root.join(&UNIT[1..])).expect("unit");
    let exec = "ExecStart=/usr/bin/tocsin ";
    assert!(text.contains(exec));
    let dir = tempfile::tempdir().expect("tempdir");
    let unit = dir.path().join("tocsin.service");
    std::fs::write(
        &unit,
        text.replace(
            exec,
            &format!("ExecStart={} ", p.root.join("usr/bin/tocsin").display()),
        ),
    )
    .expect("write unit");
    assert!(
        Path::new("/bin/kill").exists(),
        "ExecReload needs /bin/kill (apt-get install -y procps)"
    );
    // verify runs `man tocsin(1)` for Documentation=; without man-db (only
    // allowed outside CI) that part is left out.
    let man = if have("man") { "--man=yes" } else { "--man=no" };
    let out = Command::new("systemd-analyze")
        .args(["verify", man])
        .arg(&unit)
        .env("MANPATH", p.root.join("usr/share/man"))
        .output()
        .expect("systemd-analyze verify");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "systemd-analyze verify:\n{stderr}");
    // Warnings (an unknown key, a setting in the wrong section) do not fail
    // verify; they fail this test.
    let ours: Vec<&str> = stderr.lines().filter(|l| l.contains("tocsin")).collect();
    assert!(
        ours.is_empty(),
        "systemd-analyze verify:\n{}",
        ours.join("\n")
    );

    let out = Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--no-pager"])
        .arg(&unit)
        .output()
        .expect("systemd-analyze security");
    let text = String::from_utf8_lossy(&out.stdout);
    let score: f64 = text
        .lines()
        .find_map(|l| l.split_once("Overall exposure level for tocsin.service:"))
        .and_then(|(_, rest)| rest.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| {
            panic!(
                "no exposure level in:\n{text}\n{}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    assert!(score < 2.5, "exposure {score}:\n{text}");
}
