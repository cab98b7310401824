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
const FAMILIES: [(&str, &str, &str); 19] = [
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
];

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
        Metrics { registry, ..m }
    }

    /// The Prometheus text exposition (format 0.0.4). Families without
    /// samples, which the encoder leaves out, get their HELP and TYPE lines.
    pub fn encode(&self) -> String {
        let mut body = String::new();
        if prometheus_client::encoding::text::encode_registry(&mut body, &self.registry).is_err() {
            body.clear();
        }
        let mut out = String::with_capacity(body.len() + 1024);
        for (name, kind, help) in FAMILIES {
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

    #[test]
    fn every_family_has_a_type_line_before_samples() {
        let text = Metrics::new().encode();
        for (name, kind) in [
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
        ] {
            let base = name.trim_end_matches("_total");
            assert!(
                text.contains(&format!("# TYPE {base} {kind}")),
                "{name} missing from:\n{text}"
            );
        }
    }
}
