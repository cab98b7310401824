//! Helpers for process-level tests: start the built `tocsin` binary on a
//! temporary config with free ports, talk HTTP/1.1 to it over real sockets,
//! and stop it with real signals.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

pub struct Response {
    pub status: u16,
    pub headers: String,
    pub body: String,
}

/// One HTTP/1.1 request over a fresh connection.
pub fn http(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<Response> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(20)))?;
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes())?;
    // The server may answer (413) and close before reading a large body.
    let _ = s.write_all(body);
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("no HTTP answer: {text:?}")))?;
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_string()
    };
    Ok(Response {
        status,
        headers: head.to_string(),
        body,
    })
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((len, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(len.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

pub fn get(port: u16, path: &str) -> Response {
    http(port, "GET", path, &[], b"").expect("GET answered")
}

pub fn post(port: u16, path: &str, body: &str) -> Response {
    http(port, "POST", path, &[], body.as_bytes()).expect("POST answered")
}

/// Polls `f` until it returns `Some` or the deadline passes.
pub fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        if start.elapsed() > timeout {
            panic!("timed out waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// A running daemon; killed when dropped.
pub struct Daemon {
    pub child: Child,
    pub dir: PathBuf,
    pub port: u16,
    pub stderr_path: PathBuf,
}

impl Daemon {
    /// Writes `config` (with `{port}` and `{dir}` replaced) and `rules` into
    /// `dir`, starts `tocsin run`, waits for `/readyz`.
    pub fn start(dir: &Path, config: &str, envs: &[(&str, &str)]) -> Daemon {
        Self::start_on(dir, config, envs, free_port())
    }

    /// As [`Daemon::start`], on a given port (to restart on the same one).
    pub fn start_on(dir: &Path, config: &str, envs: &[(&str, &str)], port: u16) -> Daemon {
        let mut d = Self::spawn(dir, config, envs, port);
        d.wait_ready();
        d
    }

    /// As [`Daemon::start_on`], waiting for `ready(port)` instead of
    /// `/readyz` on the port.
    pub fn start_on_ready(
        dir: &Path,
        config: &str,
        envs: &[(&str, &str)],
        port: u16,
        ready: impl Fn(u16) -> bool,
    ) -> Daemon {
        let mut d = Self::spawn(dir, config, envs, port);
        d.wait_until(ready);
        d
    }

    fn spawn(dir: &Path, config: &str, envs: &[(&str, &str)], port: u16) -> Daemon {
        let config = config
            .replace("{port}", &port.to_string())
            .replace("{dir}", &dir.display().to_string());
        let cfg_path = dir.join("tocsin.yaml");
        std::fs::write(&cfg_path, config).expect("write config");
        let stderr_path = dir.join(format!("stderr-{port}.log"));
        let stderr = std::fs::File::create(&stderr_path).expect("stderr file");
        let child = Command::new(env!("CARGO_BIN_EXE_tocsin"))
            .args(["run", "-c"])
            .arg(&cfg_path)
            .envs(envs.iter().copied())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("spawn tocsin");
        Daemon {
            child,
            dir: dir.to_path_buf(),
            port,
            stderr_path,
        }
    }

    pub fn wait_ready(&mut self) {
        self.wait_until(|port| {
            http(port, "GET", "/readyz", &[], b"").is_ok_and(|r| r.status == 200)
        });
    }

    fn wait_until(&mut self, ready: impl Fn(u16) -> bool) {
        let port = self.port;
        let start = Instant::now();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("tocsin exited early ({status}): {}", self.stderr());
            }
            if ready(port) {
                return;
            }
            if start.elapsed() > Duration::from_secs(20) {
                panic!("tocsin not ready: {}", self.stderr());
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{sig}"), &self.child.id().to_string()])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "kill -{sig} failed");
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        self.signal("TERM");
        let start = Instant::now();
        loop {
            if let Ok(Some(s)) = self.child.try_wait() {
                return s;
            }
            if start.elapsed() > Duration::from_secs(20) {
                let _ = self.child.kill();
                panic!("tocsin did not stop on SIGTERM: {}", self.stderr());
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// Alerts in an NDJSON file channel, parsed.
    pub fn file_alerts(&self, name: &str) -> Vec<serde_json::Value> {
        std::fs::read_to_string(self.dir.join(name))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A webhook receiver on 127.0.0.1: answers every POST with 200 and keeps
/// the JSON bodies. HTTP/1.1 with keep-alive, as reqwest uses it.
pub struct WebhookReceiver {
    pub port: u16,
    bodies: std::sync::Arc<std::sync::Mutex<Vec<serde_json::Value>>>,
}

impl WebhookReceiver {
    pub fn start() -> WebhookReceiver {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind receiver");
        let port = listener.local_addr().expect("addr").port();
        let bodies = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let b = bodies.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let b = b.clone();
                std::thread::spawn(move || serve_webhook(stream, &b));
            }
        });
        WebhookReceiver { port, bodies }
    }

    pub fn bodies(&self) -> Vec<serde_json::Value> {
        self.bodies.lock().map(|b| b.clone()).unwrap_or_default()
    }
}

fn serve_webhook(stream: TcpStream, bodies: &std::sync::Mutex<Vec<serde_json::Value>>) {
    use std::io::BufRead;
    let mut reader = std::io::BufReader::new(stream);
    loop {
        let mut len = 0usize;
        let mut line = String::new();
        // Request line and headers.
        loop {
            line.clear();
            match reader.read_line(&mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some(v) = l.to_ascii_lowercase().strip_prefix("content-length:") {
                len = v.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0u8; len];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        if let Ok(v) = serde_json::from_slice(&body)
            && let Ok(mut b) = bodies.lock()
        {
            b.push(v);
        }
        let out = reader.get_mut();
        if out
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
            .is_err()
        {
            return;
        }
    }
}

/// A conformance case (`tests/conformance/cases/*`) for library-level
/// tests: its rules compiled, its `--max-delay`, its events decoded.
pub struct Case {
    pub dir: PathBuf,
    pub program: tocsin::lang::Program,
    pub max_delay: i64,
    pub events: Vec<tocsin::event::Event>,
}

/// Every conformance case whose rules load, in name order (at least 50
/// cases are expected on disk).
pub fn conformance_cases() -> Vec<Case> {
    use tocsin::decode::{Decoded, Decoder};
    use tocsin::lang::{Options, load_texts};
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/conformance/cases");
    let mut dirs: Vec<_> = std::fs::read_dir(&root)
        .expect("conformance cases")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("rules.rules").exists())
        .collect();
    dirs.sort();
    assert!(dirs.len() >= 50, "{} cases", dirs.len());
    let dec = Decoder::default();
    dirs.into_iter()
        .filter_map(|dir| {
            let rules = std::fs::read_to_string(dir.join("rules.rules")).expect("rules");
            let loaded = load_texts(vec![("rules.rules".into(), rules)], &Options::default());
            if loaded.has_errors() {
                return None;
            }
            let args = std::fs::read_to_string(dir.join("args")).unwrap_or_default();
            let max_delay = match args.split_whitespace().collect::<Vec<_>>()[..] {
                ["--max-delay", d] => tocsin::lang::duration_ms(d).expect("duration"),
                _ => 0,
            };
            let text = std::fs::read_to_string(dir.join("events.ndjson")).expect("events");
            let events = text
                .lines()
                .filter_map(|l| match dec.decode(l.as_bytes(), None) {
                    Decoded::Event(e) => Some(e),
                    _ => None,
                })
                .collect();
            Some(Case {
                dir,
                program: loaded.program,
                max_delay,
                events,
            })
        })
        .collect()
}

/// Rules of every kind over streams `a`, `b`, `c` with a key `u` and a
/// number `v`: a filter, sliding, hopping and session windows, an
/// absence, a quantified sequence with a negation, a trailing negation
/// with a throttle. Shared by the property tests over random streams.
pub const ALL_KINDS: &str = r#"
rule f { key u from a where v > 5 }
rule slide { key u from a window sliding 2s when count() >= 3 and max(v) > 3 }
rule hop { from * window hopping 3s every 1s when count() > 2 }
rule sess { key u from b window session 1500ms when distinct(v) >= 2 }
rule gone { key u from b absent 2s }
rule seq {
    key u
    sequence within 4s {
        x: a where v < 5 {2,}
        not n: c
        y: b where v >= x.v
    }
}
rule trail {
    key u
    sequence within 3s {
        p: a
        not q: c where v == p.v
    }
    throttle 2s
}
"#;
