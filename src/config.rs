//! `tocsin.yaml`: serde structs that mirror the file (unknown keys are
//! errors naming the key and its line), turned into validated settings.
//!
//! Secrets are never inline: only `*_env` (an environment variable's name)
//! or `*_file` (a file's path) keys exist for them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Deserializer};

use crate::decode::{DecodeConfig, MissingTime};
use crate::event::TimeUnit;
use crate::lang;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: cannot read: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}:{line}:{col}: error: {message}")]
    Invalid {
        path: String,
        line: usize,
        col: usize,
        message: String,
    },
    #[error("{path}: error: {message}")]
    InvalidNoPos { path: String, message: String },
}

/// A duration in the rule language's syntax, as milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dur(pub i64);

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        lang::duration_ms(&s)
            .map(Dur)
            .map_err(serde::de::Error::custom)
    }
}

/// `idle_timeout`: a duration or `off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdleTimeout(pub Option<i64>);

impl<'de> Deserialize<'de> for IdleTimeout {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        if s == "off" {
            return Ok(IdleTimeout(None));
        }
        lang::duration_ms(&s)
            .map(|ms| IdleTimeout(Some(ms)))
            .map_err(serde::de::Error::custom)
    }
}

/// A size in bytes: `512`, `64KiB`, `16MiB`, `1GiB`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Size(pub u64);

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            N(u64),
            S(String),
        }
        match Raw::deserialize(d)? {
            Raw::N(n) => Ok(Size(n)),
            Raw::S(s) => parse_size(&s).map(Size).ok_or_else(|| {
                serde::de::Error::custom(format!(
                    "invalid size `{s}`: write a number of bytes, or with KiB, MiB or GiB"
                ))
            }),
        }
    }
}

fn parse_size(s: &str) -> Option<u64> {
    let (num, mult) = if let Some(n) = s.strip_suffix("GiB") {
        (n, 1 << 30)
    } else if let Some(n) = s.strip_suffix("MiB") {
        (n, 1 << 20)
    } else if let Some(n) = s.strip_suffix("KiB") {
        (n, 1 << 10)
    } else {
        (s, 1)
    };
    num.trim().parse::<u64>().ok()?.checked_mul(mult)
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventsSection {
    #[serde(default = "d_type_field")]
    pub type_field: String,
    #[serde(default = "d_time_field")]
    pub time_field: String,
    #[serde(default)]
    pub time_unit: TimeUnit,
    #[serde(default = "d_max_delay")]
    pub max_delay: Dur,
    #[serde(default = "d_idle")]
    pub idle_timeout: IdleTimeout,
    #[serde(default)]
    pub missing_time: MissingTime,
    #[serde(default = "d_event_bytes")]
    pub max_event_bytes: Size,
    #[serde(default = "d_max_future")]
    pub max_future: Dur,
}

fn d_type_field() -> String {
    "type".into()
}
fn d_time_field() -> String {
    "ts".into()
}
fn d_max_delay() -> Dur {
    Dur(2000)
}
fn d_idle() -> IdleTimeout {
    IdleTimeout(Some(30_000))
}
fn d_event_bytes() -> Size {
    Size(1 << 20)
}
fn d_max_future() -> Dur {
    Dur(600_000)
}

impl Default for EventsSection {
    fn default() -> Self {
        EventsSection {
            type_field: d_type_field(),
            time_field: d_time_field(),
            time_unit: TimeUnit::default(),
            max_delay: d_max_delay(),
            idle_timeout: d_idle(),
            missing_time: MissingTime::default(),
            max_event_bytes: d_event_bytes(),
            max_future: d_max_future(),
        }
    }
}

impl EventsSection {
    pub fn decode_config(&self) -> DecodeConfig {
        DecodeConfig {
            type_field: self.type_field.clone(),
            time_field: self.time_field.clone(),
            time_unit: self.time_unit,
            missing_time: self.missing_time,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum SourceConfig {
    Http {
        listen: String,
        token_env: Option<String>,
        token_file: Option<PathBuf>,
        max_body: Option<Size>,
        /// Time a client has to send its request headers (default 10s).
        header_timeout: Option<Dur>,
        /// Time a client has to send the whole body (default 30s).
        body_timeout: Option<Dur>,
    },
    Tcp {
        listen: String,
        max_line: Option<Size>,
    },
    File {
        path: String,
        start_at: Option<String>,
    },
    /// Kafka as the log (docs/scale-out.md): one shard per assigned partition.
    Kafka {
        /// `host:port` bootstrap servers.
        brokers: Vec<String>,
        topics: Vec<String>,
        group: String,
        /// `earliest` or `latest`: where a new group starts (default earliest).
        start_at: Option<String>,
        /// The event fields producers key messages by. Rules keyed
        /// otherwise are repartitioned through `<group>.by-<key>` topics
        /// (`tocsin check -c` names them); empty: every rule is.
        #[serde(default)]
        partitioned_by: Vec<String>,
        /// librdkafka settings passed through (`security.protocol`, ...).
        #[serde(default)]
        client: BTreeMap<String, String>,
        /// librdkafka settings whose values are secrets: setting name →
        /// environment variable (`client_env`) or file (`client_file`).
        #[serde(default)]
        client_env: BTreeMap<String, String>,
        #[serde(default)]
        client_file: BTreeMap<String, PathBuf>,
        /// Largest record of a shard snapshot in `<group>.state`; larger
        /// snapshots are chunked (default 512KiB).
        snapshot_chunk: Option<Size>,
    },
}

#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum ChannelConfig {
    Webhook {
        url: String,
        #[serde(default)]
        headers: BTreeMap<String, String>,
        secret_env: Option<String>,
        secret_file: Option<PathBuf>,
        format: Option<String>,
        timeout: Option<Dur>,
        send_resolved: Option<bool>,
        retry: Option<RetryConfig>,
    },
    File {
        path: PathBuf,
    },
    Stdout {},
    Email {
        smtp: String,
        tls: Option<String>,
        username_env: Option<String>,
        username_file: Option<PathBuf>,
        password_env: Option<String>,
        password_file: Option<PathBuf>,
        from: String,
        to: Vec<String>,
        timeout: Option<Dur>,
        retry: Option<RetryConfig>,
    },
}

/// A channel's delivery back-off: the first retry waits `initial`, each
/// further one twice as long up to `max`, each ±20% jitter.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryConfig {
    pub initial: Dur,
    pub max: Dur,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminSection {
    pub listen: Option<String>,
    pub token_env: Option<String>,
    pub token_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DurabilitySection {
    pub fsync: Option<String>,
    pub checkpoint_every: Option<Dur>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutboxSection {
    pub max_pending: Option<u64>,
}

/// How rules are evaluated.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EngineSection {
    /// Threads the rules are shared out among (each rule is evaluated by
    /// one of them; alerts and their order do not depend on the number).
    /// Default: one per core, at most [`MAX_ENGINE_THREADS`].
    pub threads: Option<usize>,
}

/// The most engine threads the default gives.
pub const MAX_ENGINE_THREADS: usize = 4;

impl EngineSection {
    /// The number of engine threads to run.
    pub fn threads(&self) -> usize {
        self.threads.unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map_or(1, |n| n.get())
                .min(MAX_ENGINE_THREADS)
        })
    }
}

/// The configuration file as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub rules: PathBuf,
    #[serde(default = "d_state_dir")]
    pub state_dir: PathBuf,
    #[serde(default)]
    pub events: EventsSection,
    #[serde(default)]
    pub sources: Vec<SourceConfig>,
    #[serde(default)]
    pub admin: AdminSection,
    #[serde(default)]
    pub durability: DurabilitySection,
    pub late_events: Option<PathBuf>,
    #[serde(default)]
    pub outbox: OutboxSection,
    #[serde(default)]
    pub engine: EngineSection,
    #[serde(default)]
    pub default_notify: Vec<String>,
    #[serde(default)]
    pub channels: BTreeMap<String, ChannelConfig>,
}

fn d_state_dir() -> PathBuf {
    PathBuf::from("/var/lib/tocsin")
}

impl Config {
    /// Reads and checks a config file. Relative paths in it are taken
    /// relative to the file's directory.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: name.clone(),
            source,
        })?;
        let mut cfg = Self::parse(&name, &text)?;
        let base = path.parent().unwrap_or(Path::new("."));
        let rel = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        rel(&mut cfg.rules);
        rel(&mut cfg.state_dir);
        if let Some(p) = &mut cfg.late_events {
            rel(p);
        }
        for c in cfg.channels.values_mut() {
            if let ChannelConfig::File { path } = c {
                rel(path);
            }
        }
        for s in &mut cfg.sources {
            if let SourceConfig::File { path, .. } = s
                && Path::new(path).is_relative()
            {
                *path = base.join(&*path).display().to_string();
            }
        }
        Ok(cfg)
    }

    pub fn parse(name: &str, text: &str) -> Result<Config, ConfigError> {
        let cfg: Config = serde_yaml_ng::from_str(text).map_err(|e| {
            let message = clean_message(&e.to_string());
            match e.location() {
                Some(loc) => ConfigError::Invalid {
                    path: name.to_string(),
                    line: loc.line(),
                    col: loc.column(),
                    message,
                },
                None => ConfigError::InvalidNoPos {
                    path: name.to_string(),
                    message,
                },
            }
        })?;
        for src in &cfg.sources {
            if let SourceConfig::Kafka { snapshot_chunk, .. } = src
                && let Err(message) = crate::kafka::chunk_bytes(snapshot_chunk.map(|s| s.0))
            {
                return Err(ConfigError::InvalidNoPos {
                    path: name.to_string(),
                    message,
                });
            }
        }
        if cfg.engine.threads == Some(0) {
            return Err(ConfigError::InvalidNoPos {
                path: name.to_string(),
                message: "engine.threads must be at least 1".into(),
            });
        }
        for n in &cfg.default_notify {
            if !cfg.channels.contains_key(n) {
                return Err(ConfigError::InvalidNoPos {
                    path: name.to_string(),
                    message: format!("default_notify names unknown channel `{n}`"),
                });
            }
        }
        Ok(cfg)
    }

    /// Channel names, for checking `notify` clauses.
    pub fn channel_names(&self) -> std::collections::HashSet<String> {
        self.channels.keys().cloned().collect()
    }
}

/// serde's "unknown field `x`, expected one of ..." → "unknown key `x` (expected ...)",
/// without the trailing position serde_yaml adds.
fn clean_message(msg: &str) -> String {
    let msg = match msg.find(" at line ") {
        Some(i) => &msg[..i],
        None => msg,
    };
    let msg = msg.trim_start_matches(|c: char| {
        c == '.' || c.is_alphanumeric() || c == '_' || c == '[' || c == ']'
    });
    let msg = msg.trim_start_matches(": ").trim();
    msg.replacen("unknown field", "unknown key", 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minimal_config_gets_defaults() {
        let c = Config::parse("t.yaml", "rules: rules/\n").unwrap();
        assert_eq!(c.events.max_delay, Dur(2000));
        assert_eq!(c.events.idle_timeout, IdleTimeout(Some(30_000)));
        assert_eq!(c.events.max_event_bytes, Size(1 << 20));
    }

    #[test]
    fn engine_threads_default_to_the_cores_and_refuse_zero() {
        let c = Config::parse("t.yaml", "rules: r\n").unwrap();
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        assert_eq!(c.engine.threads(), cores.min(MAX_ENGINE_THREADS));
        let c = Config::parse("t.yaml", "rules: r\nengine:\n  threads: 3\n").unwrap();
        assert_eq!(c.engine.threads(), 3);
        let e = Config::parse("t.yaml", "rules: r\nengine:\n  threads: 0\n").unwrap_err();
        assert!(
            e.to_string().contains("engine.threads must be at least 1"),
            "{e}"
        );
    }

    #[test]
    fn unknown_key_names_key_and_line() {
        let e = Config::parse("t.yaml", "rules: r\nevents:\n  max_dealy: 2s\n").unwrap_err();
        let s = e.to_string();
        assert!(s.starts_with("t.yaml:3:"), "{s}");
        assert!(s.contains("unknown key `max_dealy`"), "{s}");
    }

    /// `tocsin check -c` and `tocsin run` reject the same out-of-bounds
    /// snapshot chunk size, at load.
    #[test]
    fn kafka_snapshot_chunk_is_bounded_at_load() {
        let cfg = |chunk: &str| {
            format!(
                "rules: r\nsources:\n  - kind: kafka\n    brokers: [b:9092]\n    topics: [t]\n    group: g\n    snapshot_chunk: {chunk}\n"
            )
        };
        let e = Config::parse("t.yaml", &cfg("10")).unwrap_err().to_string();
        assert!(e.contains("snapshot_chunk 10 bytes"), "{e}");
        assert!(Config::parse("t.yaml", &cfg("1MiB")).is_ok());
    }

    #[test]
    fn bad_duration_is_reported() {
        let e = Config::parse("t.yaml", "rules: r\nevents:\n  max_delay: 2 seconds\n").unwrap_err();
        assert!(e.to_string().contains("invalid duration"), "{e}");
    }

    /// Found by fuzzing the config loader: a duration with a multi-byte
    /// character panicked instead of being reported.
    #[test]
    fn a_non_ascii_duration_is_an_error_not_a_panic() {
        let e = Config::parse("t.yaml", "rules: r\nevents:\n  idle_timeout: 1Д\n").unwrap_err();
        assert!(e.to_string().contains("invalid duration"), "{e}");
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("16MiB"), Some(16 << 20));
        assert_eq!(parse_size("512"), Some(512));
        assert_eq!(parse_size("1.5MiB"), None);
    }
}
