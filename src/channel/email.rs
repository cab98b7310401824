//! The email channel: one message per alert over SMTP (lettre), with a
//! subject such as `[tocsin] FIRING critical brute_force user=alice` and a
//! plain-text body with an HTML alternative, both rendered from the alert.
//!
//! `tls: tls` is implicit TLS (default port 465), `starttls` upgrades a
//! plain connection and refuses to go on without it (default, port 587),
//! `none` is plain text and is accepted only for a loopback host, so that
//! credentials and alerts never cross a network unencrypted.
//!
//! An SMTP 5xx answer (e.g. an unknown recipient) is permanent; 4xx
//! answers, connection and TLS failures, timeouts and client-side problems
//! (e.g. credentials configured but no AUTH offered) are retried, so the
//! alerts wait for a fixed server or config instead of being dropped.

use std::fmt::Write as _;
use std::net::IpAddr;
use std::time::Duration;

use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use super::{AlertRecord, ChannelError, DeliveryError, config_error, error_chain, read_secret};
use crate::config::ChannelConfig;

/// SMTP command timeout when the config gives none.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// `tls`: typed when the config is read (`tls`, `starttls` or `none`).
pub use crate::config::SmtpTls as TlsMode;

pub struct EmailChannel {
    from: Mailbox,
    to: Vec<Mailbox>,
    /// Holds host, port, TLS mode, credentials and timeout; opens one
    /// connection per message (no pool: alerts are rare, and a stale pooled
    /// connection would only add a failure mode).
    transport: AsyncSmtpTransport<Tokio1Executor>,
    /// For logs.
    server: String,
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
    let timeout = match timeout {
        Some(d) if d.0 > 0 => Duration::from_millis(d.0 as u64),
        Some(_) => return Err("timeout must be positive".into()),
        None => DEFAULT_TIMEOUT,
    };
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
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(s.host.as_str())
            .port(s.port)
            .timeout(Some(s.timeout));
        if s.mode != TlsMode::None {
            let params = TlsParameters::new(s.host.clone()).map_err(|e| {
                config_error(name, format!("cannot set up TLS: {}", error_chain(&e)))
            })?;
            builder = builder.tls(match s.mode {
                TlsMode::Tls => Tls::Wrapper(params),
                _ => Tls::Required(params),
            });
        }
        match (username, password) {
            (Some(u), Some(p)) => builder = builder.credentials(Credentials::new(u, p)),
            (None, None) => {}
            _ => {
                return Err(config_error(
                    name,
                    "give both an SMTP username and a password, or neither",
                ));
            }
        }
        Ok(EmailChannel {
            server: format!("{}:{}", s.host, s.port),
            from: s.from,
            to: s.to,
            transport: builder.build(),
        })
    }

    pub async fn deliver(&self, alert: &AlertRecord) -> Result<(), DeliveryError> {
        let message = self
            .message(alert)
            .map_err(|e| DeliveryError::Permanent(format!("cannot build the message: {e}")))?;
        match self.transport.send(message).await {
            Ok(_) => Ok(()),
            Err(e) if e.is_permanent() => Err(DeliveryError::Permanent(format!(
                "{}: {}",
                self.server,
                error_chain(&e)
            ))),
            Err(e) => Err(DeliveryError::retry(format!(
                "{}: {}",
                self.server,
                error_chain(&e)
            ))),
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
}
