//! `tocsin.yaml`: serde structs that mirror the file (unknown keys are
//! errors naming the key and its line), turned into validated settings.
//!
//! Secrets are never inline: only `*_env` (an environment variable's name)
//! or `*_file` (a file's path) keys exist for them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::de::value::{EnumAccessDeserializer, MapAccessDeserializer, SeqAccessDeserializer};
use serde::de::{self, DeserializeSeed, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};
use serde_yaml_ng::{Mapping, Value};

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
        parse_str(d, "a duration", |s| {
            lang::duration_ms(s).map(Dur).map_err(|e| e.to_string())
        })
    }
}

/// Deserializes a string and parses it with `parse`, inside the YAML
/// deserializer's visitor, so that an error carries the value's position.
fn parse_str<'de, D, T>(
    d: D,
    expecting: &'static str,
    parse: impl FnOnce(&str) -> Result<T, String>,
) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
{
    struct V<F>(&'static str, F);
    impl<'de, T, F: FnOnce(&str) -> Result<T, String>> Visitor<'de> for V<F> {
        type Value = T;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str(self.0)
        }
        fn visit_str<E: de::Error>(self, s: &str) -> Result<T, E> {
            (self.1)(s).map_err(E::custom)
        }
    }
    d.deserialize_str(V(expecting, parse))
}

/// `idle_timeout`: a duration or `off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdleTimeout(pub Option<i64>);

impl<'de> Deserialize<'de> for IdleTimeout {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        parse_str(d, "a duration or `off`", |s| {
            if s == "off" {
                return Ok(IdleTimeout(None));
            }
            lang::duration_ms(s)
                .map(|ms| IdleTimeout(Some(ms)))
                .map_err(|e| e.to_string())
        })
    }
}

/// A size in bytes: `512`, `64KiB`, `16MiB`, `1GiB`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Size(pub u64);

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Size;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a size (a number of bytes, or with KiB, MiB or GiB)")
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<Size, E> {
                Ok(Size(n))
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<Size, E> {
                u64::try_from(n)
                    .map(Size)
                    .map_err(|_| E::custom(format!("invalid size `{n}`: must not be negative")))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Size, E> {
                parse_size(s).map(Size).ok_or_else(|| {
                    E::custom(format!(
                        "invalid size `{s}`: write a number of bytes, or with KiB, MiB or GiB"
                    ))
                })
            }
        }
        d.deserialize_any(V)
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

/// A source as written. Deserialized by hand (see [`Tagged`]) so that an
/// unknown key or a bad value is reported at its own line; the derived
/// (`remote = "Self"`) code then builds the variant.
#[derive(Debug, Clone, Deserialize)]
#[serde(
    remote = "Self",
    tag = "kind",
    rename_all = "lowercase",
    deny_unknown_fields
)]
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
        /// `end` (default) or `beginning`.
        start_at: Option<crate::source::file::StartAt>,
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

/// A channel as written; deserialized like [`SourceConfig`].
#[derive(Debug, Clone, Deserialize)]
#[serde(
    remote = "Self",
    tag = "kind",
    rename_all = "lowercase",
    deny_unknown_fields
)]
pub enum ChannelConfig {
    Webhook {
        url: String,
        #[serde(default)]
        headers: BTreeMap<String, String>,
        secret_env: Option<String>,
        secret_file: Option<PathBuf>,
        format: Option<WebhookFormat>,
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
        /// Default `starttls`.
        tls: Option<SmtpTls>,
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

/// A webhook's `format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WebhookFormat {
    /// The alert JSON of rule-language.md 9, as is.
    Json,
    /// The Prometheus Alertmanager webhook payload, version 4.
    Alertmanager,
}

/// An email channel's `tls`: `tls` is implicit TLS, `starttls` upgrades a
/// plain connection, `none` (loopback hosts only) is plain text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpTls {
    Tls,
    StartTls,
    None,
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
    #[serde(default, deserialize_with = "listen_opt")]
    pub listen: Option<String>,
    pub token_env: Option<String>,
    pub token_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DurabilitySection {
    /// `batch` (default), `interval` or `off`, checked by
    /// [`crate::wal::FsyncPolicy::parse`] when the file is read.
    #[serde(default, deserialize_with = "fsync_opt")]
    pub fsync: Option<String>,
    /// Longer than zero (a checkpoint after every batch would leave time
    /// for little else).
    #[serde(default, deserialize_with = "positive_dur")]
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

/// `listen`: `ip:port` or `host:port`. Only the form is checked: whether a
/// host name resolves, or the port is free, is a matter of the machine
/// `tocsin run` runs on.
pub fn check_listen(addr: &str) -> Result<(), String> {
    if addr.parse::<std::net::SocketAddr>().is_ok() {
        return Ok(());
    }
    let bad = || format!("invalid listen address `{addr}`: write host:port, e.g. 127.0.0.1:8080");
    let (host, port) = addr.rsplit_once(':').ok_or_else(bad)?;
    if host.is_empty()
        || host.contains([':', '[', ']', '/'])
        || host.chars().any(char::is_whitespace)
        || port.parse::<u16>().is_err()
    {
        return Err(bad());
    }
    Ok(())
}

fn listen_opt<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    parse_str(d, "a listen address (host:port)", |s| {
        check_listen(s).map(|()| Some(s.to_string()))
    })
}

fn positive_dur<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Dur>, D::Error> {
    parse_str(d, "a duration", |s| match lang::duration_ms(s) {
        Ok(ms) if ms > 0 => Ok(Some(Dur(ms))),
        Ok(_) => Err("must be longer than 0s".into()),
        Err(e) => Err(e.to_string()),
    })
}

fn fsync_opt<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    parse_str(d, "an fsync policy", |s| {
        crate::wal::FsyncPolicy::parse(Some(s)).map(|_| Some(s.to_string()))
    })
}

/// An internally tagged list item or map value (a source, a channel),
/// read key by key so that errors point at the key or value at fault
/// (serde's own tagged enums buffer the item and report its first line).
trait Tagged: Sized {
    /// For messages: `source`, `channel`.
    const WHAT: &'static str;
    /// Each `kind` and the keys it takes besides `kind`.
    const KINDS: &'static [(&'static str, &'static [&'static str])];
    /// The derived deserializer, from the collected item.
    fn from_value(v: Value) -> Result<Self, serde_yaml_ng::Error>;
    /// Checks one value as soon as it is read (one key's checks only;
    /// checks across keys are in [`Config::validate`]). `kind` is `None`
    /// when the item has not given its `kind` yet.
    fn check_value(kind: Option<&str>, key: &str, v: &Value) -> Result<(), String>;
}

fn kind_keys<T: Tagged>(kind: &str) -> Option<&'static [&'static str]> {
    T::KINDS
        .iter()
        .find(|(k, _)| *k == kind)
        .map(|(_, keys)| *keys)
}

fn one_of(names: &[&str]) -> String {
    names
        .iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Deserializes `T` from a value already read, e.g. for a check.
fn typed<T: serde::de::DeserializeOwned>(v: &Value) -> Result<T, String> {
    T::deserialize(v.clone()).map_err(|e| clean_message(&e.to_string()))
}

fn typed_str(v: &Value) -> Result<String, String> {
    typed::<String>(v)
}

struct ItemVisitor<T>(std::marker::PhantomData<T>);

impl<'de, T: Tagged> Visitor<'de> for ItemVisitor<T> {
    type Value = T;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(f, "a {} (a mapping with `kind`)", T::WHAT)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<T, A::Error> {
        let mut seen = Mapping::new();
        let mut kind: Option<String> = None;
        while let Some(key) = map.next_key_seed(KeySeed::<T> {
            kind: kind.as_deref(),
            seen: &seen,
            item: std::marker::PhantomData,
        })? {
            let check = |v: &Value| -> Result<(), String> {
                if key == "kind" {
                    let k = typed_str(v)?;
                    if kind_keys::<T>(&k).is_none() {
                        let kinds: Vec<&str> = T::KINDS.iter().map(|(k, _)| *k).collect();
                        return Err(format!(
                            "unknown {} kind `{k}`, expected one of {}",
                            T::WHAT,
                            one_of(&kinds)
                        ));
                    }
                    Ok(())
                } else {
                    T::check_value(kind.as_deref(), &key, v)
                }
            };
            let value = map.next_value_seed(ValueSeed { check: &check })?;
            if key == "kind" {
                kind = value.as_str().map(str::to_string);
            }
            seen.insert(Value::String(key), value);
        }
        T::from_value(Value::Mapping(seen))
            .map_err(|e| de::Error::custom(clean_message(&e.to_string())))
    }
}

/// Reads one key of a tagged item and refuses it, at its own position,
/// when the item's kind (or, before `kind`, every kind) does not take it.
struct KeySeed<'a, T> {
    kind: Option<&'a str>,
    seen: &'a Mapping,
    item: std::marker::PhantomData<T>,
}

impl<'de, T: Tagged> DeserializeSeed<'de> for KeySeed<'_, T> {
    type Value = String;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<String, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de, T: Tagged> Visitor<'de> for KeySeed<'_, T> {
    type Value = String;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a key")
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<String, E> {
        if self.seen.contains_key(key) {
            return Err(E::custom(format!("duplicate key `{key}`")));
        }
        if key == "kind" {
            return Ok(key.to_string());
        }
        let allowed: Vec<&str> = match self.kind.and_then(kind_keys::<T>) {
            Some(keys) => keys.to_vec(),
            None => {
                let mut all: Vec<&str> = T::KINDS
                    .iter()
                    .flat_map(|(_, k)| k.iter().copied())
                    .collect();
                all.sort_unstable();
                all.dedup();
                all
            }
        };
        if allowed.contains(&key) {
            return Ok(key.to_string());
        }
        Err(E::custom(match (self.kind, allowed.is_empty()) {
            (Some(kind), true) => format!("unknown key `{key}`: kind `{kind}` takes no other key"),
            (Some(kind), false) => format!(
                "unknown key `{key}`, expected one of {} (kind `{kind}`)",
                one_of(&allowed)
            ),
            (None, _) => format!("unknown key `{key}`, expected one of {}", one_of(&allowed)),
        }))
    }
}

/// Reads one value as a [`Value`] and runs `check` on it inside the YAML
/// deserializer's visitor, so that an error carries the value's position.
struct ValueSeed<'a> {
    check: &'a dyn Fn(&Value) -> Result<(), String>,
}

impl ValueSeed<'_> {
    fn done<E: de::Error>(&self, v: Value) -> Result<Value, E> {
        (self.check)(&v).map(|()| v).map_err(E::custom)
    }
}

impl<'de> DeserializeSeed<'de> for ValueSeed<'_> {
    type Value = Value;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ValueSeed<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("any YAML value")
    }
    fn visit_bool<E: de::Error>(self, b: bool) -> Result<Value, E> {
        self.done(Value::Bool(b))
    }
    fn visit_i64<E: de::Error>(self, n: i64) -> Result<Value, E> {
        self.done(Value::Number(n.into()))
    }
    fn visit_u64<E: de::Error>(self, n: u64) -> Result<Value, E> {
        self.done(Value::Number(n.into()))
    }
    fn visit_f64<E: de::Error>(self, n: f64) -> Result<Value, E> {
        self.done(Value::Number(n.into()))
    }
    fn visit_str<E: de::Error>(self, s: &str) -> Result<Value, E> {
        self.done(Value::String(s.to_string()))
    }
    fn visit_string<E: de::Error>(self, s: String) -> Result<Value, E> {
        self.done(Value::String(s))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        self.done(Value::Null)
    }
    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        self.done(Value::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        let v = Value::deserialize(d)?;
        self.done(v)
    }
    fn visit_seq<A: de::SeqAccess<'de>>(self, seq: A) -> Result<Value, A::Error> {
        let v = Value::deserialize(SeqAccessDeserializer::new(seq))?;
        self.done(v)
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Value, A::Error> {
        let v = Value::deserialize(MapAccessDeserializer::new(map))?;
        self.done(v)
    }
    fn visit_enum<A: de::EnumAccess<'de>>(self, data: A) -> Result<Value, A::Error> {
        let v = Value::deserialize(EnumAccessDeserializer::new(data))?;
        self.done(v)
    }
}

impl<'de> Deserialize<'de> for SourceConfig {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(ItemVisitor(std::marker::PhantomData))
    }
}

impl Tagged for SourceConfig {
    const WHAT: &'static str = "source";
    const KINDS: &'static [(&'static str, &'static [&'static str])] = &[
        (
            "http",
            &[
                "listen",
                "token_env",
                "token_file",
                "max_body",
                "header_timeout",
                "body_timeout",
            ],
        ),
        ("tcp", &["listen", "max_line"]),
        ("file", &["path", "start_at"]),
        (
            "kafka",
            &[
                "brokers",
                "topics",
                "group",
                "start_at",
                "partitioned_by",
                "client",
                "client_env",
                "client_file",
                "snapshot_chunk",
            ],
        ),
    ];

    fn from_value(v: Value) -> Result<Self, serde_yaml_ng::Error> {
        SourceConfig::deserialize(v)
    }

    fn check_value(kind: Option<&str>, key: &str, v: &Value) -> Result<(), String> {
        match (kind, key) {
            (_, "listen") => check_listen(&typed_str(v)?),
            (_, "max_body" | "max_line" | "snapshot_chunk") => typed::<Size>(v).map(drop),
            (_, "header_timeout" | "body_timeout") => typed::<Dur>(v).map(drop),
            (Some("file"), "start_at") => typed::<crate::source::file::StartAt>(v).map(drop),
            (Some("kafka"), "start_at") => crate::kafka::start_at(Some(&typed_str(v)?)).map(drop),
            _ => Ok(()),
        }
    }
}

impl<'de> Deserialize<'de> for ChannelConfig {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(ItemVisitor(std::marker::PhantomData))
    }
}

impl Tagged for ChannelConfig {
    const WHAT: &'static str = "channel";
    const KINDS: &'static [(&'static str, &'static [&'static str])] = &[
        (
            "webhook",
            &[
                "url",
                "headers",
                "secret_env",
                "secret_file",
                "format",
                "timeout",
                "send_resolved",
                "retry",
            ],
        ),
        ("file", &["path"]),
        ("stdout", &[]),
        (
            "email",
            &[
                "smtp",
                "tls",
                "username_env",
                "username_file",
                "password_env",
                "password_file",
                "from",
                "to",
                "timeout",
                "retry",
            ],
        ),
    ];

    fn from_value(v: Value) -> Result<Self, serde_yaml_ng::Error> {
        ChannelConfig::deserialize(v)
    }

    fn check_value(kind: Option<&str>, key: &str, v: &Value) -> Result<(), String> {
        use crate::channel;
        match (kind, key) {
            (_, "timeout") => {
                channel::check_timeout(Some(typed::<Dur>(v)?), std::time::Duration::ZERO).map(drop)
            }
            (_, "retry") => typed::<RetryConfig>(v).map(drop),
            (Some("webhook"), "url") => channel::check_url(&typed_str(v)?).map(drop),
            (Some("webhook"), "format") => typed::<WebhookFormat>(v).map(drop),
            (Some("webhook"), "send_resolved") => typed::<bool>(v).map(drop),
            (Some("webhook"), "headers") => {
                for (k, val) in typed::<BTreeMap<String, String>>(v)? {
                    channel::check_header(&k, &val)?;
                }
                Ok(())
            }
            (Some("email"), "tls") => typed::<SmtpTls>(v).map(drop),
            // The form only: `tls: none` with a host that is not loopback
            // is refused by `Config::validate`, across keys.
            (Some("email"), "smtp") => channel::check_smtp(&typed_str(v)?, None).map(drop),
            (Some("email"), "from") => channel::check_mailbox("from", &typed_str(v)?).map(drop),
            (Some("email"), "to") => channel::check_recipients(&typed::<Vec<String>>(v)?).map(drop),
            _ => Ok(()),
        }
    }
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
        cfg.validate(name)?;
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

    /// The checks across keys of one source or channel, which cannot be
    /// placed on one key: run by [`Config::parse`], so by both `tocsin
    /// check -c` and `tocsin run`. A channel's messages are those `run`
    /// gives when it builds the channel (`channel `x`: ...`).
    fn validate(&self, name: &str) -> Result<(), ConfigError> {
        let fail = |message: String| ConfigError::InvalidNoPos {
            path: name.to_string(),
            message,
        };
        for src in &self.sources {
            if let SourceConfig::Kafka {
                brokers,
                topics,
                group,
                snapshot_chunk,
                ..
            } = src
            {
                crate::kafka::check_names(brokers, topics, group).map_err(fail)?;
                crate::kafka::chunk_bytes(snapshot_chunk.map(|s| s.0)).map_err(fail)?;
            }
        }
        for (channel, c) in &self.channels {
            crate::channel::Channel::check_config(c)
                .map_err(|m| fail(format!("channel `{channel}`: {m}")))?;
        }
        Ok(())
    }

    /// Channel names, for checking `notify` clauses.
    pub fn channel_names(&self) -> std::collections::HashSet<String> {
        self.channels.keys().cloned().collect()
    }
}

/// serde_yaml_ng's `PATH: MESSAGE at line L column C` → `MESSAGE` (the
/// position is reported separately), with serde's "unknown field" and
/// "missing field" worded as keys: "unknown key `x`, expected one of ...".
fn clean_message(msg: &str) -> String {
    let msg = match msg.find(" at line ") {
        Some(i) => &msg[..i],
        None => msg,
    };
    // A path prefix (`events`, `sources[0]`, `channels.ops`) is one word
    // before the first ": "; a message's own words hold spaces or quotes.
    let msg = match msg.split_once(": ") {
        Some((path, rest)) if !path.is_empty() && !path.contains([' ', '`', '"', '\'']) => rest,
        _ => msg,
    };
    msg.trim()
        .replacen("unknown field", "unknown key", 1)
        .replacen("missing field", "missing key", 1)
        .replacen("duplicate field", "duplicate key", 1)
        .replacen("unknown variant", "unknown value", 1)
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

    fn err(text: &str) -> String {
        Config::parse("t.yaml", text).unwrap_err().to_string()
    }

    /// Finding 6: at the top level the message keeps "unknown"/"missing".
    #[test]
    fn top_level_unknown_and_missing_keys_are_named_as_such() {
        let e = err("rules: r\nfoo: 1\n");
        assert!(e.starts_with("t.yaml:2:1: error: unknown key `foo`"), "{e}");
        let e = err("state_dir: s\n");
        assert_eq!(e, "t.yaml:1:1: error: missing key `rules`");
        let e = err("rules: r\nevents:\n  type_field: t\n  max_dealy: 2s\n");
        assert!(
            e.starts_with("t.yaml:4:3: error: unknown key `max_dealy`"),
            "{e}"
        );
    }

    /// Finding 6: inside `sources` and `channels` (tagged by `kind`) an
    /// unknown key is reported at its own line, not the item's.
    #[test]
    fn unknown_key_in_a_source_or_channel_points_at_the_key() {
        let e = err("rules: r\nsources:\n  - kind: http\n    listen: 127.0.0.1:1\n    bogus: 1\n");
        assert!(
            e.starts_with("t.yaml:5:5: error: unknown key `bogus`"),
            "{e}"
        );
        assert!(e.contains("`listen`"), "{e}");
        let e = err(
            "rules: r\nchannels:\n  x:\n    kind: webhook\n    url: http://x\n    sekret_env: A\n",
        );
        assert!(
            e.starts_with("t.yaml:6:5: error: unknown key `sekret_env`"),
            "{e}"
        );
        // A key of another kind, after `kind`.
        let e = err("rules: r\nsources:\n  - kind: file\n    path: x\n    listen: 1\n");
        assert!(
            e.starts_with("t.yaml:5:5: error: unknown key `listen`"),
            "{e}"
        );
        // Before `kind`: a key no kind takes is still caught at its line.
        let e = err("rules: r\nsources:\n  - path: x\n    bogus: 1\n    kind: file\n");
        assert!(
            e.starts_with("t.yaml:4:5: error: unknown key `bogus`"),
            "{e}"
        );
        // A key of another kind before `kind`: at the item, but named.
        let e = err("rules: r\nsources:\n  - listen: 127.0.0.1:1\n    path: x\n    kind: file\n");
        assert!(
            e.starts_with("t.yaml:3:") && e.contains("unknown key `listen`"),
            "{e}"
        );
        // Flow style.
        let e = err("rules: r\nchannels: {ops: {kind: stdout, x: 1}}\n");
        assert!(
            e.starts_with("t.yaml:2:") && e.contains("unknown key `x`"),
            "{e}"
        );
        let e = err("rules: r\nsources:\n  - kind: nope\n");
        assert!(
            e.starts_with("t.yaml:3:11: error: unknown source kind `nope`"),
            "{e}"
        );
        let e = err("rules: r\nsources:\n  - kind: http\n");
        assert!(
            e.starts_with("t.yaml:3:") && e.contains("missing key `listen`"),
            "{e}"
        );
        let e = err(
            "rules: r\nsources:\n  - kind: tcp\n    listen: 127.0.0.1:1\n    listen: 127.0.0.1:2\n",
        );
        assert!(
            e.starts_with("t.yaml:5:5: error: duplicate key `listen`"),
            "{e}"
        );
    }

    /// The key lists of [`Tagged::KINDS`] are those of the derived enums.
    #[test]
    fn tagged_key_lists_match_the_enums() {
        fn derived_keys<T: Tagged>(kind: &str) -> Vec<String> {
            let mut m = Mapping::new();
            m.insert("kind".into(), kind.into());
            m.insert("zz_not_a_key".into(), 1.into());
            let e = match T::from_value(Value::Mapping(m)) {
                Ok(_) => panic!("{kind}: accepted an unknown key"),
                Err(e) => e.to_string(),
            };
            if e.contains("there are no fields") {
                return Vec::new();
            }
            let list = e.split_once("expected ").unwrap().1;
            list.split('`')
                .skip(1)
                .step_by(2)
                .map(str::to_string)
                .collect()
        }
        fn same<T: Tagged>() {
            for (kind, keys) in T::KINDS {
                let mut want: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
                let mut got = derived_keys::<T>(kind);
                want.sort();
                got.sort();
                assert_eq!(got, want, "{} kind `{kind}`", T::WHAT);
            }
        }
        same::<SourceConfig>();
        same::<ChannelConfig>();
    }

    /// Finding 4: what `tocsin run` refuses for what the file says is
    /// refused when the file is read, at the value's line.
    #[test]
    fn values_run_would_refuse_are_refused_at_load() {
        let stdout = "channels:\n  ops:\n    kind: stdout\n";
        for (text, at, want) in [
            (
                "durability:\n  fsync: sometimes\n",
                "t.yaml:3:10:",
                "unknown policy `sometimes`",
            ),
            (
                "durability:\n  checkpoint_every: 0s\n",
                "t.yaml:3:21:",
                "must be longer than 0s",
            ),
            (
                "channels:\n  ops:\n    kind: webhook\n    url: http://x\n    format: xml\n",
                "t.yaml:6:13:",
                "unknown value `xml`, expected `json` or `alertmanager`",
            ),
            (
                "channels:\n  ops:\n    kind: webhook\n    url: ftp://x\n",
                "t.yaml:5:10:",
                "must be http:// or https://",
            ),
            (
                "channels:\n  ops:\n    kind: webhook\n    url: http://x\n    headers:\n      \"a b\": c\n",
                "t.yaml:7:",
                "invalid header name `a b`",
            ),
            (
                "channels:\n  ops:\n    kind: webhook\n    url: http://x\n    timeout: 0s\n",
                "t.yaml:6:14:",
                "timeout must be positive",
            ),
            (
                "channels:\n  m:\n    kind: email\n    smtp: mx.example.com\n    tls: bogus\n    from: a@example.com\n    to: [b@example.com]\n",
                "t.yaml:6:10:",
                "unknown value `bogus`",
            ),
            (
                "channels:\n  m:\n    kind: email\n    smtp: smtp.example.com:25\n    tls: none\n    from: a@example.com\n    to: [b@example.com]\n",
                "t.yaml: error:",
                "channel `m`: tls: none is allowed only for a loopback SMTP host, not `smtp.example.com`",
            ),
            (
                "channels:\n  m:\n    kind: email\n    smtp: \"mx:x\"\n    from: a@example.com\n    to: [b@example.com]\n",
                "t.yaml:5:11:",
                "invalid smtp address `mx:x`",
            ),
            (
                "channels:\n  m:\n    kind: email\n    smtp: localhost\n    from: not an address\n    to: [b@example.com]\n",
                "t.yaml:6:11:",
                "invalid from address",
            ),
            (
                "channels:\n  m:\n    kind: email\n    smtp: localhost\n    from: a@example.com\n    to: []\n",
                "t.yaml:7:9:",
                "`to` lists no recipient",
            ),
            (
                "sources:\n  - kind: http\n    listen: notanaddr\n",
                "t.yaml:4:13:",
                "invalid listen address `notanaddr`",
            ),
            (
                "sources:\n  - kind: tcp\n    listen: 127.0.0.1:99999\n",
                "t.yaml:4:13:",
                "invalid listen address",
            ),
            (
                "admin:\n  listen: 9464\n",
                "t.yaml:3:11:",
                "invalid listen address `9464`",
            ),
            (
                "sources:\n  - kind: kafka\n    brokers: [b:9092]\n    topics: [t]\n    group: g\n    start_at: now\n",
                "t.yaml:7:15:",
                "write `earliest` or `latest`",
            ),
            (
                "sources:\n  - kind: kafka\n    brokers: []\n    topics: [t]\n    group: g\n",
                "t.yaml: error:",
                "must not be empty",
            ),
        ] {
            let text = if text.starts_with("channels:") {
                format!("rules: r\n{text}")
            } else {
                format!("rules: r\n{text}{stdout}")
            };
            let e = err(&text);
            assert!(e.starts_with(at) && e.contains(want), "{text}\n→ {e}");
        }
    }

    #[test]
    fn valid_values_are_accepted_and_typed() {
        let c = Config::parse(
            "t.yaml",
            "rules: r\nadmin:\n  listen: localhost:9464\ndurability:\n  fsync: interval\nsources:\n  - {kind: http, listen: \"0.0.0.0:8080\", max_body: 1MiB}\n  - kind: tcp\n    listen: \"[::1]:9000\"\n  - kind: file\n    path: /x\n    start_at: beginning\n  - kind: file\n    path: /y\nchannels:\n  w:\n    kind: webhook\n    url: https://h/p\n    format: alertmanager\n    headers: {X-A: b}\n  m:\n    smtp: smtp.example.com\n    kind: email\n    tls: tls\n    from: A <a@example.com>\n    to: [b@example.com]\n  l:\n    kind: email\n    smtp: 127.0.0.1:2525\n    tls: none\n    from: a@example.com\n    to: [b@example.com]\n",
        )
        .unwrap();
        use crate::source::file::StartAt;
        assert!(matches!(
            c.sources[2],
            SourceConfig::File {
                start_at: Some(StartAt::Beginning),
                ..
            }
        ));
        assert!(matches!(
            c.sources[3],
            SourceConfig::File { start_at: None, .. }
        ));
        assert!(matches!(
            c.channels["w"],
            ChannelConfig::Webhook {
                format: Some(WebhookFormat::Alertmanager),
                ..
            }
        ));
        assert!(matches!(
            c.channels["m"],
            ChannelConfig::Email {
                tls: Some(SmtpTls::Tls),
                ..
            }
        ));
        assert_eq!(c.durability.fsync.as_deref(), Some("interval"));
    }

    /// Finding 5: `start_at` other than `end`/`beginning` is an error
    /// naming the value and its line (it used to mean `end`).
    #[test]
    fn a_bad_file_start_at_is_an_error() {
        for bad in ["middle", "beginnning", "End"] {
            let e = err(&format!(
                "rules: r\nsources:\n  - kind: file\n    path: x\n    start_at: {bad}\n"
            ));
            assert!(
                e.starts_with("t.yaml:5:15: error:") && e.contains(&format!("`{bad}`")),
                "{e}"
            );
            assert!(e.contains("`beginning` or `end`"), "{e}");
        }
        let c = Config::parse(
            "t.yaml",
            "rules: r\nsources:\n  - kind: file\n    path: x\n    start_at: end\n",
        )
        .unwrap();
        assert!(matches!(
            c.sources[0],
            SourceConfig::File {
                start_at: Some(crate::source::file::StartAt::End),
                ..
            }
        ));
    }

    #[test]
    fn listen_addresses() {
        for ok in [
            "127.0.0.1:0",
            "0.0.0.0:8080",
            "[::1]:80",
            "localhost:9464",
            "a.b-c:1",
        ] {
            assert!(check_listen(ok).is_ok(), "{ok}");
        }
        for bad in [
            "notanaddr",
            ":80",
            "host:",
            "host:70000",
            "::1:80",
            "a b:1",
            "8080",
        ] {
            assert!(check_listen(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn sizes_and_durations_point_at_their_value() {
        let e = err("rules: r\nevents:\n  type_field: t\n  max_event_bytes: 1.5MiB\n");
        assert!(e.starts_with("t.yaml:4:20: error: invalid size"), "{e}");
        let e =
            err("rules: r\nsources:\n  - kind: tcp\n    listen: 127.0.0.1:1\n    max_line: lots\n");
        assert!(e.starts_with("t.yaml:5:15: error: invalid size"), "{e}");
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("16MiB"), Some(16 << 20));
        assert_eq!(parse_size("512"), Some(512));
        assert_eq!(parse_size("1.5MiB"), None);
    }
}
