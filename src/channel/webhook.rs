//! The webhook channel (daemon.md 3, "Webhook requests"): one `POST` per
//! alert, the alert JSON or an Alertmanager version-4 payload holding that
//! one alert, with `Idempotency-Key: <alert id>` and, when a secret is set,
//! `X-Tocsin-Signature: sha256=<hex HMAC-SHA256 of the exact body>`.
//!
//! Answers: 2xx delivered; 4xx other than 408 and 429 permanent; anything
//! else (other statuses, redirects, connection errors, timeouts) retried.
//! Redirects are not followed: a `POST` must not turn into a `GET`.

use std::fmt::Write as _;
use std::time::Duration;

use hmac::{Hmac, KeyInit, Mac};
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue, RETRY_AFTER, USER_AGENT};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use super::{AlertRecord, ChannelError, DeliveryError, config_error, error_chain, read_secret};
use crate::config::ChannelConfig;

/// The default request timeout (daemon.md 2 shows `timeout: 5s`).
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// How much of a rejecting receiver's answer goes into the log.
const LOGGED_BODY_BYTES: usize = 512;

/// Alertmanager's "no end time" (Go's zero `time.Time`).
const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

/// `format`: typed when the config is read (`json` or `alertmanager`).
pub use crate::config::WebhookFormat as Format;

pub struct WebhookChannel {
    /// The channel's name: Alertmanager's `receiver`.
    name: String,
    url: reqwest::Url,
    /// The configured headers, then ours (which win on a clash).
    headers: HeaderMap,
    /// HMAC key; `None` sends no signature.
    secret: Option<Vec<u8>>,
    format: Format,
    send_resolved: bool,
    /// One client per channel: its own connection pool and timeout.
    client: reqwest::Client,
}

impl std::fmt::Debug for WebhookChannel {
    // Leaves the secret out.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookChannel")
            .field("name", &self.name)
            .field("url", &self.url.as_str())
            .field("format", &self.format)
            .field("signed", &self.secret.is_some())
            .field("send_resolved", &self.send_resolved)
            .finish()
    }
}

/// What a webhook channel's configuration means, without its secret or
/// HTTP client: checked when the config is read (so `tocsin check -c`
/// refuses what `tocsin run` would) and again by `build`.
struct Settings {
    url: reqwest::Url,
    headers: HeaderMap,
    format: Format,
    timeout: Duration,
}

fn settings(
    url: &str,
    headers: &std::collections::BTreeMap<String, String>,
    format: Option<Format>,
    timeout: Option<crate::config::Dur>,
) -> Result<Settings, String> {
    let url = check_url(url)?;
    let mut map = HeaderMap::new();
    for (k, v) in headers {
        let (hn, hv) = check_header(k, v)?;
        map.insert(hn, hv);
    }
    let timeout = super::check_timeout(timeout, DEFAULT_TIMEOUT)?;
    Ok(Settings {
        url,
        headers: map,
        format: format.unwrap_or(Format::Json),
        timeout,
    })
}

/// The checks of a webhook channel's config that need neither its secret
/// nor the network.
pub(crate) fn check_config(config: &ChannelConfig) -> Result<(), String> {
    match config {
        ChannelConfig::Webhook {
            url,
            headers,
            format,
            timeout,
            ..
        } => settings(url, headers, *format, *timeout).map(drop),
        _ => Ok(()),
    }
}

/// `url`: an absolute `http://` or `https://` URL.
pub(crate) fn check_url(url: &str) -> Result<reqwest::Url, String> {
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("invalid url `{url}`: {e}"))?;
    if parsed.scheme() != "http" && parsed.scheme() != "https" {
        return Err(format!("url `{url}` must be http:// or https://"));
    }
    Ok(parsed)
}

/// One entry of `headers`.
pub(crate) fn check_header(name: &str, value: &str) -> Result<(HeaderName, HeaderValue), String> {
    let hn = HeaderName::from_bytes(name.as_bytes())
        .map_err(|_| format!("invalid header name `{name}`"))?;
    let hv =
        HeaderValue::from_str(value).map_err(|_| format!("invalid value for header `{name}`"))?;
    Ok((hn, hv))
}

impl WebhookChannel {
    pub fn build(name: &str, config: &ChannelConfig) -> Result<WebhookChannel, ChannelError> {
        let ChannelConfig::Webhook {
            url,
            headers,
            secret_env,
            secret_file,
            format,
            timeout,
            send_resolved,
            retry: _,
        } = config
        else {
            return Err(config_error(name, "not a webhook channel"));
        };
        let Settings {
            url,
            headers: mut map,
            format,
            timeout,
        } = settings(url, headers, *format, *timeout).map_err(|m| config_error(name, m))?;
        map.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        map.insert(
            USER_AGENT,
            HeaderValue::from_static(concat!("tocsin/", env!("CARGO_PKG_VERSION"))),
        );
        let secret = read_secret(
            name,
            "webhook secret",
            secret_env.as_deref(),
            secret_file.as_deref(),
        )?
        .map(String::into_bytes);
        super::ensure_crypto_provider();
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| {
                config_error(
                    name,
                    format!("cannot build HTTP client: {}", error_chain(&e)),
                )
            })?;
        Ok(WebhookChannel {
            name: name.to_string(),
            url,
            headers: map,
            secret,
            format,
            send_resolved: send_resolved.unwrap_or(true),
            client,
        })
    }

    pub fn wants(&self, status: &str) -> bool {
        self.send_resolved || status != "resolved"
    }

    /// The request body for one alert.
    pub fn body(&self, alert: &AlertRecord) -> String {
        match self.format {
            Format::Json => alert.json.clone(),
            Format::Alertmanager => alertmanager_payload(&self.name, alert).to_string(),
        }
    }

    pub async fn deliver(&self, alert: &AlertRecord) -> Result<(), DeliveryError> {
        let body = self.body(alert);
        let mut headers = self.headers.clone();
        if let Ok(v) = HeaderValue::from_str(alert.id()) {
            headers.insert(HeaderName::from_static("idempotency-key"), v);
        }
        if let Some(secret) = &self.secret {
            let sig = format!("sha256={}", sign(secret, body.as_bytes()));
            if let Ok(v) = HeaderValue::from_str(&sig) {
                headers.insert(HeaderName::from_static("x-tocsin-signature"), v);
            }
        }
        let sent = self
            .client
            .post(self.url.clone())
            .headers(headers)
            .body(body)
            .send()
            .await;
        let mut resp = match sent {
            Ok(r) => r,
            Err(e) if e.is_builder() => {
                return Err(DeliveryError::Permanent(error_chain(&e)));
            }
            Err(e) => return Err(DeliveryError::retry(error_chain(&e))),
        };
        let status = resp.status();
        if status.is_success() {
            return Ok(());
        }
        let code = status.as_u16();
        let after = retry_after(resp.headers());
        // The start of the answer, for the log; a failure to read it changes nothing.
        let snippet = match resp.chunk().await {
            Ok(Some(b)) => String::from_utf8_lossy(&b[..b.len().min(LOGGED_BODY_BYTES)])
                .trim()
                .to_string(),
            _ => String::new(),
        };
        let reason = if snippet.is_empty() {
            format!("receiver answered {status}")
        } else {
            format!("receiver answered {status}: {snippet}")
        };
        if status.is_client_error() && code != 408 && code != 429 {
            Err(DeliveryError::Permanent(reason))
        } else {
            Err(DeliveryError::Retry { reason, after })
        }
    }
}

/// Lower-case hex HMAC-SHA256 of `body` under `secret`.
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    // HMAC takes keys of any length, so this cannot fail.
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret) {
        Ok(m) => m,
        Err(_) => return String::new(),
    };
    mac.update(body);
    hex(&mac.finalize().into_bytes())
}

fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// `Retry-After` in seconds (the HTTP-date form is ignored).
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let secs: u64 = headers
        .get(RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(Duration::from_secs(secs))
}

/// A label name Prometheus accepts: `[a-zA-Z_][a-zA-Z0-9_]*`, other
/// characters replaced by `_` (`user.name` → `user_name`).
fn label_name(name: &str) -> String {
    let mut out: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if out.is_empty() || out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    out
}

/// The Alertmanager webhook payload (version 4) for one alert.
///
/// Labels: the key's members, then the rule's labels, then `severity` and
/// `alertname` (= the rule), later ones winning. Firing and resolved alerts
/// of one rule and key have the same labels, hence the same `fingerprint`,
/// so receivers pair them as they do Alertmanager's.
pub fn alertmanager_payload(receiver: &str, alert: &AlertRecord) -> Value {
    let mut labels = Map::new();
    for (k, v) in alert.key_members() {
        labels.insert(label_name(&k), Value::String(v));
    }
    for (k, v) in alert.labels() {
        labels.insert(label_name(&k), Value::String(v));
    }
    labels.insert("severity".into(), alert.severity().into());
    labels.insert("alertname".into(), alert.rule().into());
    let mut sorted: Vec<(&String, &Value)> = labels.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(b.0));
    let labels = Value::Object(
        sorted
            .iter()
            .map(|(k, v)| ((*k).clone(), (*v).clone()))
            .collect(),
    );

    let mut annotations = Map::new();
    if !alert.message().is_empty() {
        annotations.insert("summary".into(), alert.message().into());
        annotations.insert("message".into(), alert.message().into());
    }
    if let Some(d) = &alert.description {
        annotations.insert("description".into(), d.as_str().into());
    }
    annotations.insert("tocsin_alert_id".into(), alert.id().into());
    let annotations = Value::Object(annotations);

    let status = alert.status();
    let starts_at = alert.window().map_or(alert.time(), |(start, _)| start);
    let ends_at = if status == "resolved" {
        alert.time()
    } else {
        ZERO_TIME
    };
    let fingerprint = {
        let mut h = Sha256::new();
        for (k, v) in &sorted {
            h.update(k.as_bytes());
            h.update([0xff]);
            h.update(v.as_str().unwrap_or("").as_bytes());
            h.update([0xff]);
        }
        hex(&h.finalize()[..8])
    };
    let group_labels = json!({ "alertname": alert.rule() });
    let group_key = format!(
        "{{}}:{{alertname={}}}",
        Value::String(alert.rule().to_string())
    );
    json!({
        "version": "4",
        "groupKey": group_key,
        "truncatedAlerts": 0,
        "status": status,
        "receiver": receiver,
        "groupLabels": group_labels,
        "commonLabels": labels,
        "commonAnnotations": annotations,
        "externalURL": "",
        "alerts": [{
            "status": status,
            "labels": labels,
            "annotations": annotations,
            "startsAt": starts_at,
            "endsAt": ends_at,
            "generatorURL": "",
            "fingerprint": fingerprint,
        }],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_of_a_known_vector() {
        // RFC 4231 test case 2.
        assert_eq!(
            sign(b"Jefe", b"what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn label_names_are_made_valid() {
        assert_eq!(label_name("user.name"), "user_name");
        assert_eq!(label_name("lower(user)"), "lower_user_");
        assert_eq!(label_name("1x"), "_1x");
    }

    #[test]
    fn resolved_alert_has_an_end_and_the_firing_fingerprint() {
        let firing = AlertRecord::from_json(
            r#"{"id":"a","rule":"r","status":"firing","severity":"critical","key":{"host":"db"},"time":"2026-01-01T00:02:00.000Z","values":{},"window":null,"labels":{"team":"sre"},"message":"m","events":{}}"#.into(),
            Some("d".into()),
        )
        .unwrap();
        let resolved = AlertRecord::from_json(
            firing
                .json
                .replace("firing", "resolved")
                .replace("00:02", "00:05"),
            None,
        )
        .unwrap();
        let f = alertmanager_payload("ops", &firing);
        let r = alertmanager_payload("ops", &resolved);
        assert_eq!(f["alerts"][0]["endsAt"], ZERO_TIME);
        assert_eq!(r["alerts"][0]["endsAt"], "2026-01-01T00:05:00.000Z");
        assert_eq!(f["alerts"][0]["fingerprint"], r["alerts"][0]["fingerprint"]);
        assert_eq!(
            f["alerts"][0]["labels"],
            json!({"alertname":"r","host":"db","severity":"critical","team":"sre"})
        );
        assert_eq!(f["groupKey"], "{}:{alertname=\"r\"}");
    }
}
