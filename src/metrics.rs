//! Every metric of daemon.md section 5, registered once, with the exact
//! contract names. Families are registered at start, so each one shows its
//! `# TYPE` line before it has samples.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceLabel {
    pub source: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RejectLabels {
    pub source: String,
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RuleLabel {
    pub rule: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AlertLabels {
    pub rule: String,
    pub status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DeliveryLabels {
    pub channel: String,
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ChannelLabel {
    pub channel: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    pub outcome: String,
}

/// A partition of a Kafka topic (an input topic or an internal by-key one).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PartitionLabels {
    pub topic: String,
    pub partition: i32,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TopicLabel {
    pub topic: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RebalanceLabel {
    /// `assign`, `revoke` or `lost`.
    pub kind: String,
}

type FGauge = Gauge<f64, AtomicU64>;

/// Name (without `_total`), type and help of every family.
const FAMILIES: [(&str, &str, &str); 20] = [
    (
        "tocsin_events_received",
        "counter",
        "Events received, per source",
    ),
    (
        "tocsin_events_rejected",
        "counter",
        "Inputs rejected, per source and reason",
    ),
    (
        "tocsin_events_late",
        "counter",
        "Events older than the watermark on arrival",
    ),
    (
        "tocsin_watermark_lag_seconds",
        "gauge",
        "Wall clock minus watermark",
    ),
    (
        "tocsin_rule_matches",
        "counter",
        "Matches per rule, before throttling",
    ),
    (
        "tocsin_alerts",
        "counter",
        "Alerts produced, per rule and status",
    ),
    (
        "tocsin_alerts_throttled",
        "counter",
        "Alerts suppressed by throttle, per rule",
    ),
    ("tocsin_rule_keys", "gauge", "Live keys per rule"),
    (
        "tocsin_deliveries",
        "counter",
        "Delivery attempts per channel and outcome",
    ),
    (
        "tocsin_outbox_pending",
        "gauge",
        "Alerts waiting for delivery, per channel",
    ),
    (
        "tocsin_rules_reload",
        "counter",
        "Rule reload attempts by outcome",
    ),
    (
        "tocsin_checkpoint_seconds",
        "gauge",
        "Duration of the last checkpoint",
    ),
    (
        "tocsin_kafka_consumer_lag",
        "gauge",
        "Messages of a Kafka partition not yet evaluated (high watermark minus next offset), per shard",
    ),
    (
        "tocsin_kafka_watermark_seconds",
        "gauge",
        "Event-time watermark of a Kafka shard, Unix seconds",
    ),
    (
        "tocsin_kafka_shard_keys",
        "gauge",
        "Live keys of a Kafka shard, over its rules",
    ),
    (
        "tocsin_kafka_rebalances",
        "counter",
        "Kafka group rebalance callbacks, by kind (assign, revoke, lost)",
    ),
    (
        "tocsin_kafka_restore_seconds",
        "gauge",
        "Duration of the last restore of assigned Kafka shards from their snapshots",
    ),
    (
        "tocsin_kafka_republished",
        "counter",
        "Events re-published to an internal by-key topic, per topic",
    ),
    (
        "tocsin_kafka_duplicates_dropped",
        "counter",
        "Re-published events dropped by a by-key shard as already evaluated, per topic",
    ),
    (
        "tocsin_template_errors",
        "counter",
        "Alert messages whose template failed to render (the alert carries the raw template)",
    ),
];

/// The name a family's `# HELP`/`# TYPE` lines carry in text format
/// 0.0.4: a counter's sample name, with `_total`.
fn exposed_name(name: &str, kind: &str) -> String {
    if kind == "counter" && !name.ends_with("_total") {
        format!("{name}_total")
    } else {
        name.to_string()
    }
}

/// Rewrites prometheus-client's output into text format 0.0.4 (see
/// [`Metrics::encode`]).
fn to_text_004(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len() + 256);
    for line in raw.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let meta = ["# HELP ", "# TYPE "]
            .into_iter()
            .find(|p| line.starts_with(p));
        if let Some(prefix) = meta {
            let rest = &line[prefix.len()..];
            let (name, tail) = match rest.split_once(' ') {
                Some((name, tail)) => (name, Some(tail)),
                None => (rest, None),
            };
            if let Some((base, kind, _)) = FAMILIES.iter().find(|f| f.0 == name) {
                out.push_str(prefix);
                out.push_str(&exposed_name(base, kind));
                if let Some(tail) = tail {
                    out.push(' ');
                    out.push_str(tail);
                }
                out.push('\n');
                continue;
            }
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

pub struct Metrics {
    registry: Registry,
    pub events_received: Family<SourceLabel, Counter>,
    pub events_rejected: Family<RejectLabels, Counter>,
    pub events_late: Counter,
    pub watermark_lag_seconds: FGauge,
    pub rule_matches: Family<RuleLabel, Counter>,
    pub alerts: Family<AlertLabels, Counter>,
    pub alerts_throttled: Family<RuleLabel, Counter>,
    pub rule_keys: Family<RuleLabel, Gauge>,
    pub deliveries: Family<DeliveryLabels, Counter>,
    pub outbox_pending: Family<ChannelLabel, Gauge>,
    pub rules_reload: Family<OutcomeLabel, Counter>,
    /// How long the last checkpoint took.
    pub checkpoint_seconds: FGauge,
    pub kafka_consumer_lag: Family<PartitionLabels, Gauge>,
    pub kafka_watermark_seconds: Family<PartitionLabels, FGauge>,
    pub kafka_shard_keys: Family<PartitionLabels, Gauge>,
    pub kafka_rebalances: Family<RebalanceLabel, Counter>,
    pub kafka_restore_seconds: FGauge,
    pub kafka_republished: Family<TopicLabel, Counter>,
    pub kafka_duplicates_dropped: Family<TopicLabel, Counter>,
    /// Message templates that failed to render (beyond daemon.md 5).
    pub template_errors: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let m = Metrics {
            events_received: Family::default(),
            events_rejected: Family::default(),
            events_late: Counter::default(),
            watermark_lag_seconds: FGauge::default(),
            rule_matches: Family::default(),
            alerts: Family::default(),
            alerts_throttled: Family::default(),
            rule_keys: Family::default(),
            deliveries: Family::default(),
            outbox_pending: Family::default(),
            rules_reload: Family::default(),
            checkpoint_seconds: FGauge::default(),
            kafka_consumer_lag: Family::default(),
            kafka_watermark_seconds: Family::default(),
            kafka_shard_keys: Family::default(),
            kafka_rebalances: Family::default(),
            kafka_restore_seconds: FGauge::default(),
            kafka_republished: Family::default(),
            kafka_duplicates_dropped: Family::default(),
            template_errors: Counter::default(),
            registry: Registry::default(),
        };
        // Counter names get their `_total` suffix from the encoder.
        let help = |i: usize| FAMILIES[i].2;
        registry.register(FAMILIES[0].0, help(0), m.events_received.clone());
        registry.register(FAMILIES[1].0, help(1), m.events_rejected.clone());
        registry.register(FAMILIES[2].0, help(2), m.events_late.clone());
        registry.register(FAMILIES[3].0, help(3), m.watermark_lag_seconds.clone());
        registry.register(FAMILIES[4].0, help(4), m.rule_matches.clone());
        registry.register(FAMILIES[5].0, help(5), m.alerts.clone());
        registry.register(FAMILIES[6].0, help(6), m.alerts_throttled.clone());
        registry.register(FAMILIES[7].0, help(7), m.rule_keys.clone());
        registry.register(FAMILIES[8].0, help(8), m.deliveries.clone());
        registry.register(FAMILIES[9].0, help(9), m.outbox_pending.clone());
        registry.register(FAMILIES[10].0, help(10), m.rules_reload.clone());
        registry.register(FAMILIES[11].0, help(11), m.checkpoint_seconds.clone());
        registry.register(FAMILIES[12].0, help(12), m.kafka_consumer_lag.clone());
        registry.register(FAMILIES[13].0, help(13), m.kafka_watermark_seconds.clone());
        registry.register(FAMILIES[14].0, help(14), m.kafka_shard_keys.clone());
        registry.register(FAMILIES[15].0, help(15), m.kafka_rebalances.clone());
        registry.register(FAMILIES[16].0, help(16), m.kafka_restore_seconds.clone());
        registry.register(FAMILIES[17].0, help(17), m.kafka_republished.clone());
        registry.register(FAMILIES[18].0, help(18), m.kafka_duplicates_dropped.clone());
        registry.register(FAMILIES[19].0, help(19), m.template_errors.clone());
        Metrics { registry, ..m }
    }

    /// Puts one sample (label values `http`, `r`, `ops`, topic `t`) in
    /// every family: for tests of the exposition (tests/grafana.rs too).
    #[doc(hidden)]
    pub fn sample_every_family(&self) {
        let m = self;
        m.received("http", 3);
        m.reject("tcp", "invalid_json");
        m.events_late.inc();
        m.watermark_lag_seconds.set(1.5);
        let rule = RuleLabel { rule: "r".into() };
        m.rule_matches.get_or_create(&rule).inc();
        m.alerts
            .get_or_create(&AlertLabels {
                rule: "r".into(),
                status: "firing".into(),
            })
            .inc();
        m.alerts_throttled.get_or_create(&rule).inc();
        m.rule_keys.get_or_create(&rule).set(4);
        m.deliveries
            .get_or_create(&DeliveryLabels {
                channel: "ops".into(),
                outcome: "ok".into(),
            })
            .inc();
        m.outbox_pending
            .get_or_create(&ChannelLabel {
                channel: "ops".into(),
            })
            .set(2);
        m.reload(true);
        m.reload(false);
        m.checkpoint_seconds.set(0.25);
        let p = PartitionLabels {
            topic: "t".into(),
            partition: 0,
        };
        m.kafka_consumer_lag.get_or_create(&p).set(7);
        m.kafka_watermark_seconds.get_or_create(&p).set(1.0);
        m.kafka_shard_keys.get_or_create(&p).set(1);
        m.rebalance("assign");
        m.kafka_restore_seconds.set(0.5);
        let t = TopicLabel { topic: "t".into() };
        m.kafka_republished.get_or_create(&t).inc();
        m.kafka_duplicates_dropped.get_or_create(&t).inc();
        m.template_errors.inc();
    }

    /// The Prometheus text exposition (format 0.0.4).
    ///
    /// prometheus-client writes OpenMetrics-style metadata: a counter's
    /// `# HELP`/`# TYPE` lines name the family without `_total`, while its
    /// samples carry it. Text format 0.0.4 wants the TYPE line to name the
    /// samples, so the metadata of counters is renamed to `<name>_total`,
    /// and the OpenMetrics-only `# UNIT` and `# EOF` lines are dropped.
    /// Families without samples, which the encoder leaves out, get their
    /// HELP and TYPE lines first.
    pub fn encode(&self) -> String {
        let mut raw = String::new();
        if prometheus_client::encoding::text::encode_registry(&mut raw, &self.registry).is_err() {
            raw.clear();
        }
        let body = to_text_004(&raw);
        let mut out = String::with_capacity(body.len() + 1024);
        for (name, kind, help) in FAMILIES {
            let name = exposed_name(name, kind);
            if !body.contains(&format!("# TYPE {name} ")) {
                out.push_str(&format!("# HELP {name} {help}.\n# TYPE {name} {kind}\n"));
            }
        }
        out.push_str(&body);
        out
    }

    pub fn reject(&self, source: &str, reason: &str) {
        self.events_rejected
            .get_or_create(&RejectLabels {
                source: source.to_string(),
                reason: reason.to_string(),
            })
            .inc();
    }

    pub fn received(&self, source: &str, n: u64) {
        self.events_received
            .get_or_create(&SourceLabel {
                source: source.to_string(),
            })
            .inc_by(n);
    }

    /// Forgets the per-partition series of a Kafka shard this instance no
    /// longer owns.
    pub fn forget_partition(&self, topic: &str, partition: i32) {
        let l = PartitionLabels {
            topic: topic.to_string(),
            partition,
        };
        self.kafka_consumer_lag.remove(&l);
        self.kafka_watermark_seconds.remove(&l);
        self.kafka_shard_keys.remove(&l);
    }

    pub fn rebalance(&self, kind: &str) {
        self.kafka_rebalances
            .get_or_create(&RebalanceLabel {
                kind: kind.to_string(),
            })
            .inc();
    }

    pub fn reload(&self, ok: bool) {
        self.rules_reload
            .get_or_create(&OutcomeLabel {
                outcome: if ok { "success" } else { "error" }.to_string(),
            })
            .inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    /// The families of daemon.md section 5 (and the Kafka ones), with the
    /// names their samples and TYPE lines carry.
    const EXPOSED: [(&str, &str); 19] = [
        ("tocsin_events_received_total", "counter"),
        ("tocsin_events_rejected_total", "counter"),
        ("tocsin_events_late_total", "counter"),
        ("tocsin_watermark_lag_seconds", "gauge"),
        ("tocsin_rule_matches_total", "counter"),
        ("tocsin_alerts_total", "counter"),
        ("tocsin_alerts_throttled_total", "counter"),
        ("tocsin_rule_keys", "gauge"),
        ("tocsin_deliveries_total", "counter"),
        ("tocsin_outbox_pending", "gauge"),
        ("tocsin_rules_reload_total", "counter"),
        ("tocsin_checkpoint_seconds", "gauge"),
        ("tocsin_kafka_consumer_lag", "gauge"),
        ("tocsin_kafka_watermark_seconds", "gauge"),
        ("tocsin_kafka_shard_keys", "gauge"),
        ("tocsin_kafka_rebalances_total", "counter"),
        ("tocsin_kafka_restore_seconds", "gauge"),
        ("tocsin_kafka_republished_total", "counter"),
        ("tocsin_kafka_duplicates_dropped_total", "counter"),
    ];

    /// A strict reading of Prometheus text format 0.0.4: returns the
    /// declared families (name → type) or the first violation.
    ///
    /// - only `# HELP name text`, `# TYPE name type` and sample lines (no
    ///   `# EOF`, no `# UNIT`, no other comment);
    /// - a family's HELP and TYPE lines appear once, TYPE before its samples;
    /// - every sample belongs to the family of the TYPE line above it: for a
    ///   counter or gauge, the sample name is exactly the TYPE name; for a
    ///   histogram or summary, the name minus `_bucket`/`_sum`/`_count`;
    /// - sample values parse as numbers.
    fn parse_strict(text: &str) -> Result<BTreeMap<String, String>, String> {
        let mut types: BTreeMap<String, String> = BTreeMap::new();
        let mut helps = std::collections::BTreeSet::new();
        let mut current: Option<(String, String)> = None;
        if !text.ends_with('\n') {
            return Err("output does not end with a newline".into());
        }
        for (n, line) in text.lines().enumerate() {
            let n = n + 1;
            if line.is_empty() {
                continue;
            }
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let name = rest.split(' ').next().unwrap_or_default();
                if !helps.insert(name.to_string()) {
                    return Err(format!("line {n}: second HELP for {name}"));
                }
                continue;
            }
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let mut it = rest.split(' ');
                let (Some(name), Some(kind), None) = (it.next(), it.next(), it.next()) else {
                    return Err(format!("line {n}: malformed TYPE line `{line}`"));
                };
                if !["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind) {
                    return Err(format!("line {n}: unknown type `{kind}`"));
                }
                if types.insert(name.into(), kind.into()).is_some() {
                    return Err(format!("line {n}: second TYPE for {name}"));
                }
                current = Some((name.into(), kind.into()));
                continue;
            }
            if line.starts_with('#') {
                return Err(format!("line {n}: not a 0.0.4 line: `{line}`"));
            }
            let end = line.find(['{', ' ']).unwrap_or(line.len());
            let name = &line[..end];
            let value = line.rsplit(' ').next().unwrap_or_default();
            if value.parse::<f64>().is_err() && !["+Inf", "-Inf", "NaN"].contains(&value) {
                return Err(format!("line {n}: bad value in `{line}`"));
            }
            let Some((family, kind)) = &current else {
                return Err(format!("line {n}: sample {name} before any TYPE line"));
            };
            let belongs = match kind.as_str() {
                "histogram" | "summary" => {
                    let base = ["_bucket", "_sum", "_count"]
                        .iter()
                        .find_map(|s| name.strip_suffix(s))
                        .unwrap_or(name);
                    base == family
                }
                _ => name == family,
            };
            if !belongs {
                return Err(format!(
                    "line {n}: sample {name} is not of the family `{family}` ({kind}) declared above it"
                ));
            }
        }
        for name in &helps {
            if !types.contains_key(name) {
                return Err(format!("HELP for {name} without a TYPE line"));
            }
        }
        Ok(types)
    }

    fn check_exposition(m: &Metrics) {
        let text = m.encode();
        let types = match parse_strict(&text) {
            Ok(t) => t,
            Err(e) => panic!("{e}\n--- /metrics:\n{text}"),
        };
        for (name, kind) in EXPOSED {
            assert_eq!(
                types.get(name).map(String::as_str),
                Some(kind),
                "no `# TYPE {name} {kind}` in:\n{text}"
            );
        }
    }

    /// Before any sample: every family has its TYPE line, under the name
    /// its samples will carry.
    #[test]
    fn exposition_is_strict_text_004_from_the_start() {
        check_exposition(&Metrics::new());
    }

    /// With samples in every family.
    #[test]
    fn exposition_is_strict_text_004_with_samples() {
        let m = Metrics::new();
        m.sample_every_family();
        check_exposition(&m);
        let text = m.encode();
        assert!(
            text.contains("# TYPE tocsin_events_received_total counter\ntocsin_events_received_total{source=\"http\"} 3\n"),
            "{text}"
        );
    }

    /// The checker itself refuses what prometheus-client writes unchanged
    /// (counter TYPE lines without `_total`).
    #[test]
    fn strict_check_refuses_openmetrics_family_names() {
        let om = "# HELP tocsin_events_late Late.\n# TYPE tocsin_events_late counter\ntocsin_events_late_total 0\n# EOF\n";
        assert!(parse_strict(om).is_err());
        assert!(parse_strict("# TYPE a gauge\na 1\n# EOF\n").is_err());
        assert!(parse_strict("# TYPE a gauge\n# UNIT a seconds\na 1\n").is_err());
        assert!(
            parse_strict("# TYPE h histogram\nh_bucket{le=\"1\"} 0\nh_sum 0\nh_count 0\n").is_ok()
        );
    }
}
