//! Channels: where alerts go. Each channel kind is a runtime struct built
//! from its [`ChannelConfig`] (`build`), with one hook, `deliver`, that
//! sends one alert and says whether it was accepted, should be retried, or
//! failed for good.
//!
//! A channel never sees an [`Alert`]: it gets an [`AlertRecord`], the alert's
//! JSON text as the outbox stored it, so an alert recorded before a restart
//! is delivered exactly as one recorded now. Channels keep no queue and do
//! not retry; ordering, retries and back-off belong to the outbox.
//!
//! Invariant: `deliver` never panics on what a receiver answers, and a
//! `DeliveryError::Permanent` is returned only when sending the same alert
//! again cannot succeed.

mod email;
mod file;
mod stdout;
mod webhook;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use crate::alert::Alert;
use crate::config::{ChannelConfig, RetryConfig};

pub use email::EmailChannel;
pub(crate) use email::{check_mailbox, check_recipients, check_smtp};
pub use file::FileChannel;
pub use stdout::StdoutChannel;
pub use webhook::WebhookChannel;
pub(crate) use webhook::{check_header, check_url};

/// A channel's `timeout` (`default` when unset), or why it is not one: it
/// must be longer than zero. Checked when the config is read and when the
/// channel is built.
pub(crate) fn check_timeout(
    setting: Option<crate::config::Dur>,
    default: Duration,
) -> Result<Duration, String> {
    match setting {
        Some(d) if d.0 > 0 => Ok(Duration::from_millis(d.0 as u64)),
        Some(_) => Err("timeout must be positive".into()),
        None => Ok(default),
    }
}

/// A channel that cannot be built from its configuration.
#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    #[error("channel `{channel}`: {message}")]
    Config { channel: String, message: String },
    #[error("channel `{channel}`: cannot read {what} from `{path}`: {source}")]
    SecretFile {
        channel: String,
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("channel `{channel}`: cannot open `{path}`: {source}")]
    Open {
        channel: String,
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Why one delivery attempt did not succeed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeliveryError {
    /// Worth trying again later (receiver down, 5xx, 408, 429, timeout).
    /// `after` is the receiver's own hint (`Retry-After`), if any.
    #[error("{reason}")]
    Retry {
        reason: String,
        after: Option<Duration>,
    },
    /// Sending the same alert again cannot succeed (a webhook's 4xx other
    /// than 408 and 429; every address of an email refused for good): the
    /// alert is dropped and counted.
    #[error("{0}")]
    Permanent(String),
}

impl DeliveryError {
    pub(crate) fn retry(reason: impl Into<String>) -> Self {
        DeliveryError::Retry {
            reason: reason.into(),
            after: None,
        }
    }
}

/// One alert as delivered: its exact JSON text (rule-language.md 9), the
/// same parsed, and the rule's description (not part of the alert JSON,
/// but shown by the Alertmanager and email formats).
#[derive(Debug, Clone)]
pub struct AlertRecord {
    /// The alert JSON text, byte for byte the body of a `json` webhook.
    pub json: String,
    /// `json` parsed (member order kept).
    pub alert: Value,
    pub description: Option<String>,
}

impl AlertRecord {
    pub fn from_alert(alert: &Alert) -> AlertRecord {
        let json = alert.to_json();
        let parsed = serde_json::from_str(&json).unwrap_or(Value::Null);
        AlertRecord {
            json,
            alert: parsed,
            description: alert.rule.description.clone(),
        }
    }

    /// A record from stored alert JSON text.
    pub fn from_json(
        json: String,
        description: Option<String>,
    ) -> Result<AlertRecord, serde_json::Error> {
        let alert = serde_json::from_str(&json)?;
        Ok(AlertRecord {
            json,
            alert,
            description,
        })
    }

    fn str_field(&self, name: &str) -> &str {
        self.alert.get(name).and_then(Value::as_str).unwrap_or("")
    }

    pub fn id(&self) -> &str {
        self.str_field("id")
    }
    pub fn rule(&self) -> &str {
        self.str_field("rule")
    }
    /// `firing` or `resolved`.
    pub fn status(&self) -> &str {
        self.str_field("status")
    }
    pub fn severity(&self) -> &str {
        self.str_field("severity")
    }
    /// RFC 3339 UTC with milliseconds.
    pub fn time(&self) -> &str {
        self.str_field("time")
    }
    pub fn message(&self) -> &str {
        self.str_field("message")
    }

    /// `(start, end)` of the alert's window, when it has one.
    pub fn window(&self) -> Option<(&str, &str)> {
        let w = self.alert.get("window")?;
        Some((w.get("start")?.as_str()?, w.get("end")?.as_str()?))
    }

    /// The key's members as text: strings as they are, other values as
    /// compact JSON.
    pub fn key_members(&self) -> Vec<(String, String)> {
        members_as_text(self.alert.get("key"))
    }

    /// The threshold aggregates, as text.
    pub fn values(&self) -> Vec<(String, String)> {
        members_as_text(self.alert.get("values"))
    }

    /// The rule's labels.
    pub fn labels(&self) -> Vec<(String, String)> {
        members_as_text(self.alert.get("labels"))
    }

    /// `user=alice host=db-3`: the key, as the email subject shows it.
    pub fn key_text(&self) -> String {
        self.key_members()
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

fn members_as_text(v: Option<&Value>) -> Vec<(String, String)> {
    let Some(Value::Object(map)) = v else {
        return Vec::new();
    };
    map.iter()
        .map(|(k, v)| {
            let text = match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            (k.clone(), text)
        })
        .collect()
}

/// A configured channel (the closed set of kinds).
#[derive(Debug)]
pub enum Channel {
    Webhook(WebhookChannel),
    Email(EmailChannel),
    File(FileChannel),
    Stdout(StdoutChannel),
}

impl Channel {
    /// Checks the configuration and prepares the channel; reads secrets.
    /// Touches no network.
    pub fn build(name: &str, config: &ChannelConfig) -> Result<Channel, ChannelError> {
        Ok(match config {
            ChannelConfig::Webhook { .. } => Channel::Webhook(WebhookChannel::build(name, config)?),
            ChannelConfig::Email { .. } => Channel::Email(EmailChannel::build(name, config)?),
            ChannelConfig::File { path } => Channel::File(FileChannel::build(name, path)?),
            ChannelConfig::Stdout {} => Channel::Stdout(StdoutChannel::build()),
        })
    }

    /// The checks of a channel's configuration that need neither its
    /// secrets nor its files nor the network. The config loader runs them,
    /// so `tocsin check -c` refuses every channel `build` would refuse for
    /// what the file says (secrets and files are checked by `run` only).
    pub fn check_config(config: &ChannelConfig) -> Result<(), String> {
        match config {
            ChannelConfig::Webhook { .. } => webhook::check_config(config),
            ChannelConfig::Email { .. } => email::check_config(config),
            ChannelConfig::File { .. } | ChannelConfig::Stdout {} => Ok(()),
        }
    }

    /// Sends one alert.
    pub async fn deliver(&self, alert: &AlertRecord) -> Result<(), DeliveryError> {
        match self {
            Channel::Webhook(c) => c.deliver(alert).await,
            Channel::Email(c) => c.deliver(alert).await,
            Channel::File(c) => c.deliver(alert).await,
            Channel::Stdout(c) => c.deliver(alert).await,
        }
    }

    /// Whether this channel sends alerts of this status at all (a webhook
    /// with `send_resolved: false` does not send `resolved`).
    pub fn wants(&self, status: &str) -> bool {
        match self {
            Channel::Webhook(c) => c.wants(status),
            _ => true,
        }
    }

    /// The configured back-off, if the channel has one.
    pub fn retry_config(config: &ChannelConfig) -> Option<RetryConfig> {
        match config {
            ChannelConfig::Webhook { retry, .. } | ChannelConfig::Email { retry, .. } => *retry,
            ChannelConfig::File { .. } | ChannelConfig::Stdout {} => None,
        }
    }
}

/// A secret from an environment variable or a file (trailing line break
/// removed). Both given is an error; neither is `None`.
fn read_secret(
    channel: &str,
    what: &'static str,
    env: Option<&str>,
    file: Option<&Path>,
) -> Result<Option<String>, ChannelError> {
    match (env, file) {
        (Some(_), Some(_)) => Err(ChannelError::Config {
            channel: channel.to_string(),
            message: format!("give the {what} as `*_env` or `*_file`, not both"),
        }),
        (Some(var), None) => match std::env::var(var) {
            Ok(v) if !v.is_empty() => Ok(Some(v)),
            _ => Err(ChannelError::Config {
                channel: channel.to_string(),
                message: format!("environment variable `{var}` (the {what}) is not set"),
            }),
        },
        (None, Some(path)) => {
            let text =
                std::fs::read_to_string(path).map_err(|source| ChannelError::SecretFile {
                    channel: channel.to_string(),
                    what,
                    path: path.to_path_buf(),
                    source,
                })?;
            Ok(Some(text.trim_end_matches(['\n', '\r']).to_string()))
        }
        (None, None) => Ok(None),
    }
}

/// reqwest is built without a default crypto provider; lettre falls back to
/// the same (ring). Installing it process-wide once keeps both on one.
fn ensure_crypto_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // An `Err` means another provider is already installed: use that.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// An error with its causes, `a: b: c`, for logs.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    text
}

fn config_error(channel: &str, message: impl Into<String>) -> ChannelError {
    ChannelError::Config {
        channel: channel.to_string(),
        message: message.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_members_render_strings_bare_and_others_as_json() {
        let r = AlertRecord::from_json(
            r#"{"id":"x","key":{"user":"alice","port":22,"ok":true}}"#.to_string(),
            None,
        )
        .unwrap();
        assert_eq!(r.key_text(), "user=alice port=22 ok=true");
    }

    #[test]
    fn both_secret_sources_is_an_error() {
        let e = read_secret("c", "secret", Some("X"), Some(Path::new("/f"))).unwrap_err();
        assert_eq!(
            e.to_string(),
            "channel `c`: give the secret as `*_env` or `*_file`, not both"
        );
    }
}
