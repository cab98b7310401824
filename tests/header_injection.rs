//! Values from events (rule keys, message text) and from rules (labels) that
//! hold CR/LF cannot add headers to webhook requests: they travel only in
//! the JSON body, escaped. The receiver here reads the raw request bytes,
//! so an injected header line would be seen as such.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Daemon, post, wait_for};

/// (head, body) of every request received.
type Seen = Arc<Mutex<Vec<(String, String)>>>;

/// A raw HTTP/1.1 receiver: keeps (head, body) of every request, answers 200.
fn raw_receiver() -> (u16, Seen) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let s = s.clone();
            std::thread::spawn(move || {
                let mut w = stream.try_clone().expect("clone");
                let mut r = BufReader::new(stream);
                loop {
                    let mut head = String::new();
                    let mut len = 0usize;
                    loop {
                        let mut line = String::new();
                        match r.read_line(&mut line) {
                            Ok(0) | Err(_) => return,
                            Ok(_) => {}
                        }
                        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                            len = v.trim().parse().unwrap_or(0);
                        }
                        if line == "\r\n" {
                            break;
                        }
                        head.push_str(&line);
                    }
                    let mut body = vec![0; len];
                    if r.read_exact(&mut body).is_err() {
                        return;
                    }
                    s.lock()
                        .expect("lock")
                        .push((head, String::from_utf8_lossy(&body).into_owned()));
                    let _ = w.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n");
                }
            });
        }
    });
    (port, seen)
}

const RULES: &str = r#"
rule inj {
    key    user
    from   auth
    labels { note: "a\u{d}\nX-From-Label: 1" }
    message "user {{ event.user }}"
}
"#;

#[test]
fn cr_lf_in_keys_labels_and_messages_never_reach_webhook_headers() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("r.rules"), RULES).expect("rules");
    for format in ["json", "alertmanager"] {
        let (hook, seen) = raw_receiver();
        let cfg = format!(
            "rules: {{dir}}/r.rules\nstate_dir: {{dir}}/state-{format}\n\
             events:\n  max_delay: 0s\n\
             sources:\n  - kind: http\n    listen: 127.0.0.1:{{port}}\n\
             admin:\n  listen: 127.0.0.1:{{port}}\n\
             default_notify: [hook]\n\
             channels:\n  hook:\n    kind: webhook\n    url: http://127.0.0.1:{hook}/hook\n    format: {format}\n"
        );
        let mut d = Daemon::start(dir.path(), &cfg, &[]);
        let ev = r#"{"type":"auth","ts":1000,"user":"eve\r\nX-From-Key: 1\r\n\r\nGET /smuggled HTTP/1.1"}"#;
        // A later event of another stream moves the watermark past it.
        let r = post(
            d.port,
            "/v1/events",
            &format!("[{ev},{{\"type\":\"tick\",\"ts\":2000}}]"),
        );
        assert_eq!(r.status, 202, "{}", r.body);
        let (head, body) = wait_for("the webhook request", Duration::from_secs(20), || {
            seen.lock().expect("lock").first().cloned()
        });
        d.terminate();
        let lower = head.to_ascii_lowercase();
        assert!(!lower.contains("x-from-key"), "{format}: {head}");
        assert!(!lower.contains("x-from-label"), "{format}: {head}");
        assert_eq!(
            seen.lock().expect("lock").len(),
            1,
            "{format}: one request, nothing smuggled"
        );
        // The values arrive intact, JSON-escaped, in the body.
        let v: serde_json::Value = serde_json::from_str(&body).expect("json body");
        let text = v.to_string();
        assert!(
            text.contains(r"eve\r\nX-From-Key: 1\r\n\r\nGET /smuggled HTTP/1.1"),
            "{format}: {text}"
        );
        assert!(text.contains(r"a\r\nX-From-Label: 1"), "{format}: {text}");
    }
}
