//! What each console page shows, as plain serializable structs built from
//! [`Shared`]. No HTML here: the templates render these, and escape every
//! string in them (event fields, messages, labels and rule text are all
//! user-controlled).

use std::fmt;

use serde::de::{MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::value::RawValue;

use super::format::{duration, pretty_json};
use crate::config::{ChannelConfig, SourceConfig};
use crate::daemon::{RuleView, Shared};
use crate::decode::RejectReason;
use crate::event::EventTime;
use crate::metrics::{RejectLabels, SourceLabel};
use crate::outbox::DeliveryState;

/// How many alerts the Alerts page lists at most.
pub const ALERTS_SHOWN: usize = 100;
/// How many recent alerts a rule's page lists.
const RULE_ALERTS_SHOWN: usize = 20;

/// The Alerts page's filter, as the GET form sends it (`""` is "any").
#[derive(Debug, Default, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct AlertFilter {
    pub rule: String,
    pub status: String,
    pub severity: String,
}

impl AlertFilter {
    fn admits(&self, a: &AlertRow) -> bool {
        let ok = |want: &str, have: &str| want.is_empty() || want == have;
        ok(&self.rule, &a.rule) && ok(&self.status, &a.status) && ok(&self.severity, &a.severity)
    }
}

/// One line of an alert list.
#[derive(Debug, Clone, Serialize)]
pub struct AlertRow {
    pub id: String,
    pub rule: String,
    pub status: String,
    pub severity: String,
    /// The key object's JSON text, as in the alert.
    pub key: String,
    pub time: String,
    pub message: String,
}

impl AlertRow {
    /// The list fields of an alert's JSON text; `None` for text that is not
    /// an alert (cannot happen for texts from `Alert::to_json`).
    fn parse(text: &str) -> Option<AlertRow> {
        #[derive(Deserialize)]
        struct Head<'a> {
            id: String,
            rule: String,
            status: String,
            severity: String,
            #[serde(borrow)]
            key: &'a RawValue,
            time: String,
            message: String,
        }
        let h: Head = serde_json::from_str(text).ok()?;
        Some(AlertRow {
            id: h.id,
            rule: h.rule,
            status: h.status,
            severity: h.severity,
            key: h.key.get().to_string(),
            time: h.time,
            message: h.message,
        })
    }
}

/// Recent alerts that pass `filter`, newest first: at most `limit` rows,
/// and how many matched in all.
fn filtered(shared: &Shared, filter: &AlertFilter, limit: usize) -> (Vec<AlertRow>, usize, usize) {
    let texts = shared.recent_alert_texts();
    let mut rows = Vec::new();
    let mut matched = 0;
    for text in &texts {
        let Some(row) = AlertRow::parse(text) else {
            continue;
        };
        if filter.admits(&row) {
            matched += 1;
            if rows.len() < limit {
                rows.push(row);
            }
        }
    }
    (rows, matched, texts.len())
}

#[derive(Debug, Serialize)]
pub struct AlertsPage {
    pub alerts: Vec<AlertRow>,
    /// Alerts passing the filter among the remembered ones.
    pub matched: usize,
    /// Alerts remembered (the newest 10,000).
    pub remembered: usize,
    pub filter: AlertFilter,
    /// Choices of the form's rule menu: every loaded rule.
    pub rule_names: Vec<String>,
    pub statuses: [&'static str; 2],
    pub severities: [&'static str; 4],
}

pub fn alerts(shared: &Shared, filter: AlertFilter) -> AlertsPage {
    let (alerts, matched, remembered) = filtered(shared, &filter, ALERTS_SHOWN);
    let mut rule_names: Vec<String> = shared.rules_view().into_iter().map(|r| r.name).collect();
    rule_names.sort();
    AlertsPage {
        alerts,
        matched,
        remembered,
        filter,
        rule_names,
        statuses: ["firing", "resolved"],
        severities: crate::lang::program::AlertSeverity::NAMES,
    }
}

/// The steps of an alert's `events` member, in order, each event's text
/// kept exactly as received.
struct Steps(Vec<(String, Vec<Box<RawValue>>)>);

impl<'de> Deserialize<'de> for Steps {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Steps;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object of event lists")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Steps, A::Error> {
                let mut steps = Vec::new();
                while let Some(entry) = m.next_entry::<String, Vec<Box<RawValue>>>()? {
                    steps.push(entry);
                }
                Ok(Steps(steps))
            }
        }
        d.deserialize_map(V)
    }
}

#[derive(Debug, Serialize)]
pub struct StepView {
    pub name: String,
    /// Each event's JSON, indented.
    pub events: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct DeliveryRow {
    pub channel: String,
    /// `pending`, `delivered`, `retrying`, `failed` or `dropped`.
    pub state: &'static str,
    pub attempts: Option<u32>,
    /// The last error (retrying) or the refusal (failed).
    pub error: Option<String>,
    /// Wall-clock time the state was reached.
    pub since: String,
}

#[derive(Debug, Serialize)]
pub struct AlertPage {
    pub alert: AlertRow,
    /// The whole alert JSON, indented.
    pub json: String,
    pub labels: Vec<(String, String)>,
    pub values: Vec<(String, String)>,
    pub window: Option<(String, String)>,
    pub steps: Vec<StepView>,
    pub deliveries: Vec<DeliveryRow>,
}

/// The newest remembered alert with this id.
pub fn alert(shared: &Shared, id: &str) -> Option<AlertPage> {
    // `Alert::to_json` writes the id first, so a prefix test finds it
    // without parsing every remembered alert.
    let prefix = format!("{{\"id\":{}", serde_json::Value::from(id));
    let text = shared
        .recent_alert_texts()
        .into_iter()
        .find(|t| t.starts_with(&prefix))?;
    let row = AlertRow::parse(&text)?;
    #[derive(Deserialize)]
    struct Rest {
        values: serde_json::Map<String, serde_json::Value>,
        window: Option<Window>,
        labels: serde_json::Map<String, serde_json::Value>,
        events: Steps,
    }
    #[derive(Deserialize)]
    struct Window {
        start: String,
        end: String,
    }
    let rest: Rest = serde_json::from_str(&text).ok()?;
    let plain = |v: &serde_json::Value| match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let deliveries = shared
        .outbox
        .delivery(id)
        .into_iter()
        .map(|(channel, state, at)| {
            let since = EventTime(at).rfc3339();
            let (state, attempts, error) = match state {
                DeliveryState::Pending => ("pending", None, None),
                DeliveryState::Delivered => ("delivered", None, None),
                DeliveryState::Retrying {
                    attempts,
                    last_error,
                } => ("retrying", Some(attempts), Some(last_error)),
                DeliveryState::Failed { reason } => ("failed", None, Some(reason)),
                DeliveryState::Dropped => ("dropped", None, None),
            };
            DeliveryRow {
                channel,
                state,
                attempts,
                error,
                since,
            }
        })
        .collect();
    Some(AlertPage {
        json: pretty_json(&text),
        labels: rest
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), plain(v)))
            .collect(),
        values: rest
            .values
            .iter()
            .map(|(k, v)| (k.clone(), plain(v)))
            .collect(),
        window: rest.window.map(|w| (w.start, w.end)),
        steps: rest
            .events
            .0
            .into_iter()
            .map(|(name, evs)| StepView {
                name,
                events: evs.iter().map(|e| pretty_json(e.get())).collect(),
            })
            .collect(),
        deliveries,
        alert: row,
    })
}

/// One rule in the Rules table.
#[derive(Debug, Serialize)]
pub struct RuleRow {
    pub name: String,
    pub kind: &'static str,
    pub severity: &'static str,
    pub description: Option<String>,
    /// The rule file relative to the configured rules location.
    pub file: String,
    /// The rule file as loaded.
    pub path: String,
    pub line: usize,
    pub keys: u64,
    pub matches: u64,
    pub alerts: u64,
    /// Time of the newest alert since the start.
    pub last_alert: Option<String>,
}

fn rule_row(shared: &Shared, r: &RuleView) -> RuleRow {
    RuleRow {
        name: r.name.clone(),
        kind: r.kind,
        severity: r.rule.severity.as_str(),
        description: r.rule.description.clone(),
        file: rule_file(&shared.config.rules, &r.file),
        path: r.file.clone(),
        line: r.line,
        keys: r.keys,
        matches: r.matches,
        alerts: r.alerts,
        last_alert: shared.last_alert(&r.name).map(EventTime::rfc3339),
    }
}

/// A rule file's name as the operator wrote the rules location: relative to
/// it when inside, else its file name.
fn rule_file(rules: &std::path::Path, file: &str) -> String {
    let path = std::path::Path::new(file);
    match path.strip_prefix(rules) {
        Ok(rel) if !rel.as_os_str().is_empty() => rel.display().to_string(),
        _ => path
            .file_name()
            .map_or_else(|| file.to_string(), |n| n.to_string_lossy().into_owned()),
    }
}

#[derive(Debug, Serialize)]
pub struct RulesPage {
    pub rules: Vec<RuleRow>,
    pub reload_ok: bool,
    pub reload_time: String,
}

pub fn rules(shared: &Shared) -> RulesPage {
    let reload = shared.last_reload();
    RulesPage {
        rules: shared
            .rules_view()
            .iter()
            .map(|r| rule_row(shared, r))
            .collect(),
        reload_ok: reload.ok,
        reload_time: reload.time,
    }
}

#[derive(Debug, Serialize)]
pub struct RulePage {
    pub rule: RuleRow,
    pub source: String,
    pub labels: Vec<(String, String)>,
    /// The rule's channels; empty means the config's `default_notify`.
    pub notify: Vec<String>,
    pub default_notify: Vec<String>,
    pub throttle: Option<String>,
    pub alerts: Vec<AlertRow>,
}

pub fn rule(shared: &Shared, name: &str) -> Option<RulePage> {
    let view = shared.rules_view().into_iter().find(|r| r.name == name)?;
    let filter = AlertFilter {
        rule: name.to_string(),
        ..AlertFilter::default()
    };
    let (alerts, _, _) = filtered(shared, &filter, RULE_ALERTS_SHOWN);
    Some(RulePage {
        rule: rule_row(shared, &view),
        source: view.rule.source.clone(),
        labels: view.rule.labels.clone(),
        notify: view.rule.notify.clone(),
        default_notify: shared.default_notify.clone(),
        throttle: view.rule.throttle_ms.map(duration),
        alerts,
    })
}

#[cfg(test)]
mod tests {
    use super::rule_file;
    use std::path::Path;

    #[test]
    fn rule_files_are_shown_relative_to_the_rules_location() {
        let dir = Path::new("/etc/tocsin/rules");
        assert_eq!(
            rule_file(dir, "/etc/tocsin/rules/10-auth.rules"),
            "10-auth.rules"
        );
        assert_eq!(
            rule_file(dir, "/etc/tocsin/rules/team/a.rules"),
            "team/a.rules"
        );
        let file = Path::new("/etc/tocsin/only.rules");
        assert_eq!(rule_file(file, "/etc/tocsin/only.rules"), "only.rules");
        assert_eq!(rule_file(dir, "elsewhere/x.rules"), "x.rules");
    }
}

#[derive(Debug, Serialize)]
pub struct SampleRow {
    pub time: String,
    pub reason: &'static str,
    pub head: String,
    pub truncated: bool,
}

/// One source label: every configured source of that kind.
#[derive(Debug, Serialize)]
pub struct SourceRow {
    pub name: &'static str,
    /// Listen addresses or path patterns.
    pub inputs: Vec<String>,
    pub received: u64,
    pub rejected: u64,
    pub late: u64,
    /// Rejections by reason, reasons without any left out.
    pub reasons: Vec<(&'static str, u64)>,
    pub samples: Vec<SampleRow>,
}

#[derive(Debug, Serialize)]
pub struct ChannelRow {
    pub name: String,
    pub kind: &'static str,
    pub pending: u64,
}

#[derive(Debug, Serialize)]
pub struct StatusPage {
    pub sources: Vec<SourceRow>,
    pub late_total: u64,
    pub watermark: Option<String>,
    pub watermark_lag: Option<String>,
    pub channels: Vec<ChannelRow>,
    pub reload_ok: bool,
    pub reload_time: String,
    pub reload_errors: Vec<String>,
    pub rules_loaded: usize,
    pub checkpoint_age: Option<String>,
    pub checkpoint_seconds: f64,
    pub ready: bool,
    pub uptime: String,
}

pub fn status(shared: &Shared, uptime_ms: i64) -> StatusPage {
    let now = crate::source::now();
    let m = &shared.metrics;
    let mut sources: Vec<SourceRow> = Vec::new();
    for src in &shared.config.sources {
        let (name, input) = match src {
            SourceConfig::Http { listen, .. } => ("http", listen.clone()),
            SourceConfig::Tcp { listen, .. } => ("tcp", listen.clone()),
            SourceConfig::File { path, .. } => ("file", path.clone()),
            SourceConfig::Kafka { topics, .. } => ("kafka", topics.join(",")),
        };
        if let Some(row) = sources.iter_mut().find(|s| s.name == name) {
            row.inputs.push(input);
            continue;
        }
        let received = m
            .events_received
            .get(&SourceLabel {
                source: name.to_string(),
            })
            .map_or(0, |c| c.get());
        let reasons: Vec<(&'static str, u64)> = RejectReason::ALL
            .iter()
            .map(|r| {
                let n = m
                    .events_rejected
                    .get(&RejectLabels {
                        source: name.to_string(),
                        reason: r.as_str().to_string(),
                    })
                    .map_or(0, |c| c.get());
                (r.as_str(), n)
            })
            .filter(|(_, n)| *n > 0)
            .collect();
        sources.push(SourceRow {
            name,
            inputs: vec![input],
            received,
            rejected: reasons.iter().map(|(_, n)| n).sum(),
            late: shared.late(name),
            reasons,
            samples: shared
                .rejects
                .of(name)
                .into_iter()
                .map(|s| SampleRow {
                    time: s.at.rfc3339(),
                    reason: s.reason,
                    head: s.head,
                    truncated: s.truncated,
                })
                .collect(),
        });
    }
    let w = shared.watermark();
    let (watermark, watermark_lag) = if w > EventTime::MIN {
        (
            Some(w.rfc3339()),
            Some(duration(now.millis().saturating_sub(w.millis()))),
        )
    } else {
        (None, None)
    };
    let channels = shared
        .outbox
        .pending()
        .into_iter()
        .map(|(name, pending)| ChannelRow {
            kind: match shared.config.channels.get(&name) {
                Some(ChannelConfig::Webhook { .. }) => "webhook",
                Some(ChannelConfig::File { .. }) => "file",
                Some(ChannelConfig::Stdout {}) => "stdout",
                Some(ChannelConfig::Email { .. }) => "email",
                None => "unknown",
            },
            name,
            pending,
        })
        .collect();
    let reload = shared.last_reload();
    let cp = shared.last_checkpoint();
    StatusPage {
        sources,
        late_total: m.events_late.get(),
        watermark,
        watermark_lag,
        channels,
        reload_ok: reload.ok,
        reload_time: reload.time,
        reload_errors: reload.errors,
        rules_loaded: shared.rules_view().len(),
        checkpoint_age: (cp > 0).then(|| duration(now.millis().saturating_sub(cp))),
        checkpoint_seconds: m.checkpoint_seconds.get(),
        ready: shared.ready.load(std::sync::atomic::Ordering::SeqCst),
        uptime: duration(uptime_ms),
    }
}
