//! The email channel: one message per alert over SMTP (lettre), with a
//! subject such as `[tocsin] FIRING critical brute_force user=alice` and a
//! plain-text body with an HTML alternative, both rendered from the alert.
//!
//! `tls: tls` is implicit TLS (default port 465), `starttls` upgrades a
//! plain connection and refuses to go on without it (default, port 587),
//! `none` is plain text and is accepted only for a loopback host, so that
//! credentials and alerts never cross a network unencrypted.
//!
//! Delivery: one connection per attempt, and in it one SMTP transaction
//! (MAIL, RCPT, DATA) per recipient, so that one bad address cannot block
//! the others. Every recipient gets the same message (same `To:` header,
//! same Message-ID).
//!
//! - A recipient whose `RCPT TO` is refused for good (550, 551, 553 that are
//!   not about security or policy, see [`refuses_recipient`]) is settled:
//!   logged with its address, and never tried again for this alert.
//! - Everything else is retried: 4xx, connection, TLS and client-side
//!   problems, a timeout, and a 5xx that is not about a recipient address
//!   (535 authentication failed, 554 transaction failed, 5.7.x relay or
//!   policy refusals), since a server or configuration that an operator can
//!   fix must not cost the alert.
//! - The channel's `timeout` bounds the whole attempt (connection, greeting,
//!   STARTTLS, AUTH and every transaction), whatever the server does:
//!   lettre's own timeout only bounds the TCP connect.
//!
//! The alert is delivered when every recipient has accepted it or refused
//! it for good. The recipients already settled are remembered, in memory,
//! for the alert being delivered, so a retry does not send it again to
//! those who already have it; after a restart, all are sent to again (at
//! least once; the stable Message-ID lets mail systems fold the duplicate).

use std::error::Error as _;
use std::fmt::Write as _;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;

use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::Error as SmtpError;
use lettre::transport::smtp::authentication::{Credentials, DEFAULT_MECHANISMS};
use lettre::transport::smtp::client::{AsyncSmtpConnection, TlsParameters};
use lettre::transport::smtp::commands::{Data, Mail, Rcpt, Rset};
use lettre::transport::smtp::extension::{ClientId, Extension, MailBodyParameter, MailParameter};
use lettre::{Address, Message};

use super::{AlertRecord, ChannelError, DeliveryError, config_error, error_chain, read_secret};
use crate::config::ChannelConfig;

/// Bound of one delivery attempt when the config gives no `timeout`.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// `tls`: typed when the config is read (`tls`, `starttls` or `none`).
pub use crate::config::SmtpTls as TlsMode;

pub struct EmailChannel {
    /// The channel's name, for logs.
    name: String,
    from: Mailbox,
    to: Vec<Mailbox>,
    host: String,
    port: u16,
    mode: TlsMode,
    /// For `tls` and `starttls`.
    tls: Option<TlsParameters>,
    credentials: Option<Credentials>,
    /// The EHLO name (this host's name), looked up once.
    hello: ClientId,
    /// Bounds a whole delivery attempt.
    timeout: Duration,
    /// `host:port`, for logs and errors.
    server: String,
    /// Which recipients already have (or refused for good) the alert being
    /// delivered. One connection per attempt (no pool: alerts are rare, and
    /// a stale pooled connection would only add a failure mode).
    progress: Mutex<Option<Progress>>,
}

impl std::fmt::Debug for EmailChannel {
    // Leaves the credentials out.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmailChannel")
            .field("server", &self.server)
            .field("from", &self.from.to_string())
            .field("to", &self.to.len())
            .finish()
    }
}

/// The recipients settled so far for one alert (in memory only).
struct Progress {
    /// The alert's JSON text: progress belongs to exactly this alert.
    alert: String,
    /// Indexed like `EmailChannel::to`.
    settled: Vec<Option<Settled>>,
}

enum Settled {
    Accepted,
    /// Refused for good, with the server's answer.
    Refused(String),
}

/// What happened during one attempt, kept outside the attempt's future so
/// that it is still there when the timeout cancels that future.
#[derive(Default)]
struct AttemptLog {
    /// What the attempt is waiting for (for a timeout's message).
    waiting_for: String,
    /// Failures to retry, `what: why`.
    failures: Vec<String>,
}

/// One recipient's transaction.
enum Outcome {
    Accepted,
    /// `RCPT TO` refused for good.
    Refused(String),
    /// To retry. `usable`: the server answered (a negative reply), so the
    /// connection can go on with the next recipient after RSET.
    Failed {
        reason: String,
        usable: bool,
    },
}

/// What an email channel's configuration means, without its credentials
/// or transport: checked when the config is read (so `tocsin check -c`
/// refuses what `tocsin run` would) and again by `build`.
struct Settings {
    mode: TlsMode,
    host: String,
    port: u16,
    from: Mailbox,
    to: Vec<Mailbox>,
    timeout: Duration,
}

fn settings(
    smtp: &str,
    tls: Option<TlsMode>,
    from: &str,
    to: &[String],
    timeout: Option<crate::config::Dur>,
) -> Result<Settings, String> {
    let (mode, host, port) = check_smtp(smtp, tls)?;
    let from = check_mailbox("from", from)?;
    let to = check_recipients(to)?;
    let timeout = super::check_timeout(timeout, DEFAULT_TIMEOUT)?;
    Ok(Settings {
        mode,
        host,
        port,
        from,
        to,
        timeout,
    })
}

/// The checks of an email channel's config that need neither its
/// credentials nor the network.
pub(crate) fn check_config(config: &ChannelConfig) -> Result<(), String> {
    match config {
        ChannelConfig::Email {
            smtp,
            tls,
            from,
            to,
            timeout,
            ..
        } => settings(smtp, *tls, from, to, *timeout).map(drop),
        _ => Ok(()),
    }
}

/// `smtp` (with the `tls` mode, default `starttls`) → mode, host, port.
/// `tls: none` is refused for a host that is not loopback.
pub(crate) fn check_smtp(
    smtp: &str,
    tls: Option<TlsMode>,
) -> Result<(TlsMode, String, u16), String> {
    let mode = tls.unwrap_or(TlsMode::StartTls);
    let (host, port) =
        split_host_port(smtp).ok_or_else(|| format!("invalid smtp address `{smtp}`"))?;
    let port = port.unwrap_or(match mode {
        TlsMode::Tls => 465,
        TlsMode::StartTls => 587,
        TlsMode::None => 25,
    });
    if mode == TlsMode::None && !is_loopback(&host) {
        return Err(format!(
            "tls: none is allowed only for a loopback SMTP host, not `{host}`: use `tls` or `starttls`"
        ));
    }
    Ok((mode, host, port))
}

/// `from`, or one entry of `to`.
pub(crate) fn check_mailbox(what: &str, address: &str) -> Result<Mailbox, String> {
    address
        .parse()
        .map_err(|e| format!("invalid {what} address `{address}`: {e}"))
}

/// `to`: at least one address, each valid.
pub(crate) fn check_recipients(to: &[String]) -> Result<Vec<Mailbox>, String> {
    if to.is_empty() {
        return Err("`to` lists no recipient".into());
    }
    to.iter().map(|t| check_mailbox("to", t)).collect()
}

impl EmailChannel {
    pub fn build(name: &str, config: &ChannelConfig) -> Result<EmailChannel, ChannelError> {
        let ChannelConfig::Email {
            smtp,
            tls,
            username_env,
            username_file,
            password_env,
            password_file,
            from,
            to,
            timeout,
            retry: _,
        } = config
        else {
            return Err(config_error(name, "not an email channel"));
        };
        let s = settings(smtp, *tls, from, to, *timeout).map_err(|m| config_error(name, m))?;
        let username = read_secret(
            name,
            "SMTP username",
            username_env.as_deref(),
            username_file.as_deref(),
        )?;
        let password = read_secret(
            name,
            "SMTP password",
            password_env.as_deref(),
            password_file.as_deref(),
        )?;

        super::ensure_crypto_provider();
        let tls = match s.mode {
            TlsMode::None => None,
            TlsMode::Tls | TlsMode::StartTls => {
                Some(TlsParameters::new(s.host.clone()).map_err(|e| {
                    config_error(name, format!("cannot set up TLS: {}", error_chain(&e)))
                })?)
            }
        };
        let credentials = match (username, password) {
            (Some(u), Some(p)) => Some(Credentials::new(u, p)),
            (None, None) => None,
            _ => {
                return Err(config_error(
                    name,
                    "give both an SMTP username and a password, or neither",
                ));
            }
        };
        Ok(EmailChannel {
            name: name.to_string(),
            server: format!("{}:{}", s.host, s.port),
            from: s.from,
            to: s.to,
            host: s.host,
            port: s.port,
            mode: s.mode,
            tls,
            credentials,
            hello: ClientId::default(),
            timeout: s.timeout,
            progress: Mutex::new(None),
        })
    }

    /// One delivery attempt, bounded by `timeout`: `Ok` once every
    /// recipient has accepted the alert or refused it for good (at least one
    /// accepted), `Permanent` when every recipient refused it, `Retry`
    /// otherwise, the recipients already settled being skipped next time.
    pub async fn deliver(&self, alert: &AlertRecord) -> Result<(), DeliveryError> {
        let message = self
            .message(alert)
            .map_err(|e| DeliveryError::Permanent(format!("cannot build the message: {e}")))?;
        let body = message.formatted();
        let todo = self.unsettled(alert);
        let log = Mutex::new(AttemptLog::default());
        if !todo.is_empty() {
            let attempt = self.attempt(alert, &todo, &body, &log);
            if tokio::time::timeout(self.timeout, attempt).await.is_err() {
                let mut log = lock(&log);
                let what = format!(
                    "no answer within the {} timeout, waiting for {}",
                    show_duration(self.timeout),
                    log.waiting_for
                );
                log.failures.push(what);
            }
        }
        let failures = std::mem::take(&mut lock(&log).failures);
        self.outcome(alert, failures)
    }

    /// The indexes of the recipients that still have to be sent `alert`;
    /// all of them for an alert other than the one in progress.
    fn unsettled(&self, alert: &AlertRecord) -> Vec<usize> {
        let mut progress = lock(&self.progress);
        match &*progress {
            Some(p) if p.alert == alert.json => (0..self.to.len())
                .filter(|&i| p.settled[i].is_none())
                .collect(),
            _ => {
                *progress = Some(Progress {
                    alert: alert.json.clone(),
                    settled: self.to.iter().map(|_| None).collect(),
                });
                (0..self.to.len()).collect()
            }
        }
    }

    fn settle(&self, alert: &AlertRecord, recipient: usize, settled: Settled) {
        if let Some(p) = lock(&self.progress).as_mut()
            && p.alert == alert.json
        {
            p.settled[recipient] = Some(settled);
        }
    }

    /// The result of the attempt that just ended, from the recipients
    /// settled so far (also by earlier attempts).
    fn outcome(&self, alert: &AlertRecord, failures: Vec<String>) -> Result<(), DeliveryError> {
        let mut progress = lock(&self.progress);
        let done = progress
            .as_ref()
            .is_some_and(|p| p.alert == alert.json && p.settled.iter().all(Option::is_some));
        if !done {
            let why = if failures.is_empty() {
                "not every recipient was reached".to_string()
            } else {
                failures.join("; ")
            };
            return Err(DeliveryError::retry(format!("{}: {why}", self.server)));
        }
        // Done: forget it, so that a later record of the same alert is sent.
        let p = progress.take().expect("checked above");
        if p.settled
            .iter()
            .any(|s| matches!(s, Some(Settled::Accepted)))
        {
            return Ok(());
        }
        let refusals: Vec<String> = p
            .settled
            .iter()
            .zip(&self.to)
            .filter_map(|(s, to)| match s {
                Some(Settled::Refused(why)) => Some(format!("{}: {why}", to.email)),
                _ => None,
            })
            .collect();
        Err(DeliveryError::Permanent(format!(
            "{}: every recipient refused the alert: {}",
            self.server,
            refusals.join("; ")
        )))
    }

    /// Connects, then runs one transaction per recipient in `todo`. Records
    /// settled recipients as it goes, and failures in `log`.
    async fn attempt(
        &self,
        alert: &AlertRecord,
        todo: &[usize],
        body: &[u8],
        log: &Mutex<AttemptLog>,
    ) {
        let waiting = |what: String| lock(log).waiting_for = what;
        let fail = |what: String| lock(log).failures.push(what);
        let mut conn = match self.connect(&waiting).await {
            Ok(conn) => conn,
            Err((step, e)) => return fail(format!("{step}: {}", error_chain(&e))),
        };
        for &i in todo {
            let to = &self.to[i].email;
            match self.send_to(&mut conn, to, body, &waiting).await {
                Outcome::Accepted => self.settle(alert, i, Settled::Accepted),
                Outcome::Refused(why) => {
                    tracing::warn!(
                        channel = %self.name,
                        alert = alert.id(),
                        recipient = %to,
                        reason = %why,
                        "Recipient refused the alert for good; the other recipients still get it."
                    );
                    self.settle(alert, i, Settled::Refused(why));
                }
                Outcome::Failed {
                    reason,
                    usable: false,
                } => return fail(format!("<{to}>: {reason}")),
                Outcome::Failed {
                    reason,
                    usable: true,
                } => fail(format!("<{to}>: {reason}")),
            }
            if i != *todo.last().expect("not empty") {
                // Clears a failed transaction (harmless after one that
                // succeeded) before the next recipient's.
                waiting("the answer to RSET".into());
                if let Err(e) = conn.command(Rset).await {
                    return fail(format!("RSET: {}", error_chain(&e)));
                }
            }
        }
        // Polite; the outcome does not depend on it (and a server silent
        // here only runs into the timeout, with every recipient settled).
        waiting("the answer to QUIT".into());
        let _ = conn.quit().await;
    }

    /// Connection, greeting, EHLO, STARTTLS and AUTH; on failure, which of
    /// them failed.
    async fn connect(
        &self,
        waiting: &impl Fn(String),
    ) -> Result<AsyncSmtpConnection, (&'static str, SmtpError)> {
        waiting("the connection, the greeting and the answer to EHLO".into());
        let wrapper = match self.mode {
            TlsMode::Tls => self.tls.clone(),
            _ => None,
        };
        let mut conn = AsyncSmtpConnection::connect_tokio1(
            (self.host.as_str(), self.port),
            Some(self.timeout),
            &self.hello,
            wrapper,
            None,
        )
        .await
        .map_err(|e| ("connection", e))?;
        if let (TlsMode::StartTls, Some(params)) = (self.mode, &self.tls) {
            waiting("the answer to STARTTLS".into());
            conn.starttls(params.clone(), &self.hello)
                .await
                .map_err(|e| ("STARTTLS", e))?;
        }
        if let Some(credentials) = &self.credentials {
            waiting("the answer to AUTH".into());
            conn.auth(DEFAULT_MECHANISMS, credentials)
                .await
                .map_err(|e| ("AUTH", e))?;
        }
        Ok(conn)
    }

    /// One transaction: the message to one recipient.
    async fn send_to(
        &self,
        conn: &mut AsyncSmtpConnection,
        to: &Address,
        body: &[u8],
        waiting: &impl Fn(String),
    ) -> Outcome {
        let failed = |step: &str, e: SmtpError| Outcome::Failed {
            reason: format!("{step}: {}", error_chain(&e)),
            // A negative reply leaves the session usable; a network or
            // protocol error does not.
            usable: e.status().is_some(),
        };
        // As lettre's own `send` does: SMTPUTF8 for non-ASCII addresses,
        // 8BITMIME for a non-ASCII message, each only if the server has it.
        let info = conn.server_info();
        let mut params = Vec::new();
        if !is_ascii(to) || !is_ascii(&self.from.email) {
            if !info.supports_feature(Extension::SmtpUtfEight) {
                return Outcome::Failed {
                    reason: "a non-ASCII address, and the server does not offer SMTPUTF8".into(),
                    usable: true,
                };
            }
            params.push(MailParameter::SmtpUtfEight);
        }
        if !body.is_ascii() {
            if !info.supports_feature(Extension::EightBitMime) {
                return Outcome::Failed {
                    reason: "a non-ASCII message, and the server does not offer 8BITMIME".into(),
                    usable: true,
                };
            }
            params.push(MailParameter::Body(MailBodyParameter::EightBitMime));
        }
        waiting("the answer to MAIL FROM".into());
        if let Err(e) = conn
            .command(Mail::new(Some(self.from.email.clone()), params))
            .await
        {
            return failed("MAIL FROM", e);
        }
        waiting(format!("the answer to RCPT TO:<{to}>"));
        if let Err(e) = conn.command(Rcpt::new(to.clone(), Vec::new())).await {
            if refuses_recipient(&e) {
                return Outcome::Refused(error_chain(&e));
            }
            return failed("RCPT TO", e);
        }
        waiting("the answer to DATA".into());
        if let Err(e) = conn.command(Data).await {
            return failed("DATA", e);
        }
        waiting("the answer to the end of the message (after DATA)".into());
        match conn.message(body).await {
            Ok(_) => Outcome::Accepted,
            Err(e) => failed("end of DATA", e),
        }
    }

    fn message(&self, alert: &AlertRecord) -> Result<Message, lettre::error::Error> {
        let mut b = Message::builder()
            .from(self.from.clone())
            .subject(subject(alert))
            // The same alert always gets the same Message-ID, so a mail
            // client can fold the rare duplicate of a retried delivery.
            .message_id(Some(format!("<{}@tocsin>", alert.id())));
        for to in &self.to {
            b = b.to(to.clone());
        }
        b.multipart(MultiPart::alternative_plain_html(
            plain_body(alert),
            html_body(alert),
        ))
    }
}

/// Whether an error answering `RCPT TO` refuses that recipient address for
/// good (see [`refuses_address`]).
fn refuses_recipient(e: &SmtpError) -> bool {
    let Some(code) = e.status() else {
        return false;
    };
    let text = e.source().map(|s| s.to_string()).unwrap_or_default();
    refuses_address(&code.to_string(), &text)
}

/// Whether a `RCPT TO` answer (`code`, then its text) refuses the address
/// for good: 550, 551 or 553, unless the answer is about security or
/// policy (enhanced status 5.7.x, or without one, words about relaying or
/// authentication), which a fixed configuration can cure.
fn refuses_address(code: &str, text: &str) -> bool {
    if !matches!(code, "550" | "551" | "553") {
        return false;
    }
    let text = text.trim_start();
    match enhanced_status(text) {
        Some((class, subject)) => class == 5 && subject != 7,
        None => {
            let lower = text.to_ascii_lowercase();
            !lower.contains("relay") && !lower.contains("authenticat")
        }
    }
}

/// `5.1.1 no such user` → `(5, 1)` (RFC 3463 class and subject).
fn enhanced_status(text: &str) -> Option<(u8, u16)> {
    let token = text.split_whitespace().next()?;
    let mut parts = token.split('.');
    let class = parts.next()?.parse().ok()?;
    let subject = parts.next()?.parse().ok()?;
    let _detail: u16 = parts.next()?.parse().ok()?;
    parts.next().is_none().then_some((class, subject))
}

fn is_ascii(address: &Address) -> bool {
    AsRef::<str>::as_ref(address).is_ascii()
}

/// A poisoned lock only means a panic elsewhere: the data is still usable.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// `30s`, `2500ms`.
fn show_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

/// `[tocsin] FIRING critical brute_force user=alice`.
pub fn subject(alert: &AlertRecord) -> String {
    let mut s = format!(
        "[tocsin] {} {} {}",
        alert.status().to_uppercase(),
        alert.severity(),
        alert.rule()
    );
    let key = alert.key_text();
    if !key.is_empty() {
        s.push(' ');
        s.push_str(&key);
    }
    // One line, whatever the key holds.
    s.replace(['\r', '\n'], " ")
}

/// The facts of an alert as (label, value) rows, shared by both bodies.
fn rows(alert: &AlertRecord) -> Vec<(&'static str, String)> {
    let pairs = |v: Vec<(String, String)>| {
        v.iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut rows = vec![
        ("Rule", alert.rule().to_string()),
        ("Status", alert.status().to_string()),
        ("Severity", alert.severity().to_string()),
    ];
    if let Some(d) = &alert.description {
        rows.push(("Description", d.clone()));
    }
    let key = alert.key_members();
    if !key.is_empty() {
        rows.push(("Key", pairs(key)));
    }
    rows.push(("Time", alert.time().to_string()));
    if let Some((start, end)) = alert.window() {
        rows.push(("Window", format!("{start} to {end}")));
    }
    let values = alert.values();
    if !values.is_empty() {
        rows.push(("Values", pairs(values)));
    }
    let labels = alert.labels();
    if !labels.is_empty() {
        rows.push(("Labels", pairs(labels)));
    }
    rows.push(("Alert id", alert.id().to_string()));
    rows
}

pub fn plain_body(alert: &AlertRecord) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{} {} {}",
        alert.status().to_uppercase(),
        alert.severity(),
        alert.rule()
    );
    if !alert.message().is_empty() {
        let _ = writeln!(s, "\n{}", alert.message());
    }
    s.push('\n');
    for (label, value) in rows(alert) {
        let _ = writeln!(s, "{:<12} {value}", format!("{label}:"));
    }
    s
}

pub fn html_body(alert: &AlertRecord) -> String {
    let mut s = String::from("<!DOCTYPE html>\n<html><body>\n");
    let _ = writeln!(
        s,
        "<h2>{} {} {}</h2>",
        escape(&alert.status().to_uppercase()),
        escape(alert.severity()),
        escape(alert.rule())
    );
    if !alert.message().is_empty() {
        let _ = writeln!(s, "<p>{}</p>", escape(alert.message()));
    }
    s.push_str("<table>\n");
    for (label, value) in rows(alert) {
        let _ = writeln!(
            s,
            "<tr><th align=\"left\">{}</th><td>{}</td></tr>",
            escape(label),
            escape(&value)
        );
    }
    s.push_str("</table>\n</body></html>\n");
    s
}

/// HTML-escapes text for element content and attribute values.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `host:port`, `host`, `[::1]:25` → (host, port).
fn split_host_port(addr: &str) -> Option<(String, Option<u16>)> {
    let addr = addr.trim();
    if let Some(rest) = addr.strip_prefix('[') {
        let (host, tail) = rest.split_once(']')?;
        let port = match tail.strip_prefix(':') {
            Some(p) => Some(p.parse().ok()?),
            None if tail.is_empty() => None,
            None => return None,
        };
        return Some((host.to_string(), port));
    }
    match addr.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') => {
            if host.is_empty() {
                return None;
            }
            Some((host.to_string(), Some(port.parse().ok()?)))
        }
        Some(_) => Some((addr.to_string(), None)), // a bare IPv6 address
        None if addr.is_empty() => None,
        None => Some((addr.to_string(), None)),
    }
}

fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> AlertRecord {
        AlertRecord::from_json(
            r#"{"id":"abc","rule":"brute_force","status":"firing","severity":"critical","key":{"user":"alice"},"time":"2026-01-01T00:01:00.000Z","values":{"count()":3},"window":null,"labels":{"team":"identity"},"message":"alice <b>&</b>","events":{}}"#.into(),
            Some("Too many failures".into()),
        )
        .unwrap()
    }

    #[test]
    fn subject_names_status_severity_rule_and_key() {
        assert_eq!(
            subject(&record()),
            "[tocsin] FIRING critical brute_force user=alice"
        );
    }

    /// A key from an event that holds CR/LF cannot start a new mail header.
    #[test]
    fn subject_is_one_line_whatever_the_key_holds() {
        let r = AlertRecord::from_json(
            r#"{"id":"abc","rule":"r","status":"firing","severity":"warning","key":{"user":"eve\r\nBcc: x@example.com"},"time":"2026-01-01T00:01:00.000Z","values":{},"window":null,"labels":{},"message":"m","events":{}}"#.into(),
            None,
        )
        .unwrap();
        let s = subject(&r);
        assert!(!s.contains('\r') && !s.contains('\n'), "{s:?}");
        assert!(s.contains("Bcc: x@example.com"), "{s:?}");
    }

    #[test]
    fn html_body_is_escaped() {
        let html = html_body(&record());
        assert!(
            html.contains("<p>alice &lt;b&gt;&amp;&lt;/b&gt;</p>"),
            "{html}"
        );
        assert!(!html.contains("<b>"), "{html}");
        let plain = plain_body(&record());
        assert!(plain.contains("alice <b>&</b>"), "{plain}");
        assert!(plain.contains("Key:         user=alice"), "{plain}");
    }

    #[test]
    fn host_and_port() {
        assert_eq!(
            split_host_port("smtp.example.com:587"),
            Some(("smtp.example.com".into(), Some(587)))
        );
        assert_eq!(split_host_port("[::1]:25"), Some(("::1".into(), Some(25))));
        assert_eq!(split_host_port("mail"), Some(("mail".into(), None)));
        assert_eq!(split_host_port("mail:x"), None);
        assert!(is_loopback("127.0.0.1") && is_loopback("::1") && is_loopback("LOCALHOST"));
        assert!(!is_loopback("10.0.0.1"));
    }

    #[test]
    fn which_rcpt_answers_refuse_the_address_for_good() {
        assert!(refuses_address("550", "5.1.1 no such user"));
        assert!(refuses_address("551", "user not local"));
        assert!(refuses_address("553", "5.1.3 bad address syntax"));
        assert!(refuses_address(
            "550",
            "5.1.1 <x@example.com>: Recipient address rejected: User unknown in relay recipient table"
        ));
        // Not about the address: retried.
        assert!(!refuses_address("550", "5.7.1 Unable to relay"));
        assert!(!refuses_address("550", "Relaying denied"));
        assert!(!refuses_address("554", "5.7.1 Relay access denied"));
        assert!(!refuses_address("530", "5.7.0 Authentication required"));
        assert!(!refuses_address("552", "5.3.4 message too big"));
        assert!(!refuses_address("450", "4.2.0 mailbox busy"));
        assert_eq!(enhanced_status("5.1.1 no such user"), Some((5, 1)));
        assert_eq!(enhanced_status("no such user"), None);
        assert_eq!(show_duration(Duration::from_millis(700)), "700ms");
        assert_eq!(show_duration(Duration::from_secs(30)), "30s");
    }
}
