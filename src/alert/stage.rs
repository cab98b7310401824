//! The alert stage: throttle per (rule, key), then id, message and JSON.
//!
//! State: for throttled rules, the time `P` of the last produced firing per
//! key (kept until `P + throttle`) and whether the firing that a `resolved`
//! would end was produced.

use std::sync::Arc;

use minijinja::Environment;
use serde_json::{Map, Value};

use super::{Alert, alert_id};
use crate::engine::{FastMap, Key, Match, Status};
use crate::event::EventTime;
use crate::lang::program::Rule;

/// Instructions a message template may run per alert.
const TEMPLATE_FUEL: u64 = 50_000;

#[derive(Debug, Clone, Default)]
pub struct StageStats {
    /// Alerts produced, per rule and status (firing, resolved).
    pub alerts: Vec<[u64; 2]>,
    /// Alerts suppressed by `throttle`, per rule.
    pub throttled: Vec<u64>,
    /// Messages that failed to render (the raw template was sent).
    pub template_errors: u64,
}

#[derive(Debug, Clone, Copy)]
struct Throttle {
    /// Time of the last produced firing alert.
    last_fired: Option<EventTime>,
    /// Whether the firing alert a `resolved` would end was produced.
    open_produced: bool,
}

pub struct AlertStage {
    rules: Vec<Arc<Rule>>,
    env: Environment<'static>,
    throttles: FastMap<(usize, Key), Throttle>,
    /// Inserts since the last sweep of expired throttle entries.
    since_sweep: usize,
    stats: StageStats,
}

impl AlertStage {
    pub fn new(rules: &[Arc<Rule>]) -> Self {
        let mut env = Environment::new();
        // Templates can neither load files (no loader) nor run for long:
        // a render stops once it has spent its fuel.
        env.set_fuel(Some(TEMPLATE_FUEL));
        env.set_recursion_limit(64);
        for r in rules {
            if let Some(m) = &r.message {
                // Checked at load; a failure here leaves the raw template in use.
                let _ = env.add_template_owned(r.name.clone(), m.clone());
            }
        }
        AlertStage {
            rules: rules.to_vec(),
            env,
            throttles: FastMap::default(),
            since_sweep: 0,
            stats: StageStats {
                alerts: vec![[0; 2]; rules.len()],
                throttled: vec![0; rules.len()],
                template_errors: 0,
            },
        }
    }

    /// Follows an engine reload: `kept[new] = Some(old)` for unchanged rules,
    /// whose throttle state and counters carry over.
    pub fn reload(&mut self, rules: &[Arc<Rule>], kept: &[Option<usize>]) {
        let mut fresh = AlertStage::new(rules);
        let mut remap = vec![None; self.rules.len()];
        for (new, old) in kept.iter().enumerate() {
            if let Some(o) = old {
                remap[*o] = Some(new);
                fresh.stats.alerts[new] = self.stats.alerts[*o];
                fresh.stats.throttled[new] = self.stats.throttled[*o];
            }
        }
        fresh.stats.template_errors = self.stats.template_errors;
        fresh.throttles = std::mem::take(&mut self.throttles)
            .into_iter()
            .filter_map(|((r, k), t)| remap[r].map(|n| ((n, k), t)))
            .collect();
        *self = fresh;
    }

    /// Throttle state and counters for a checkpoint.
    pub fn snapshot(&self) -> StageSnapshot {
        let mut throttles: Vec<ThrottleSnap> = self
            .throttles
            .iter()
            .map(|((r, k), t)| ThrottleSnap {
                rule: self.rules[*r].name.clone(),
                key: k.to_string(),
                last_fired: t.last_fired.map(|x| x.0),
                open_produced: t.open_produced,
            })
            .collect();
        throttles.sort_by(|a, b| (&a.rule, &a.key).cmp(&(&b.rule, &b.key)));
        StageSnapshot {
            throttles,
            alerts: self
                .rules
                .iter()
                .zip(&self.stats.alerts)
                .zip(&self.stats.throttled)
                .map(|((r, a), t)| (r.name.clone(), r.source.clone(), *a, *t))
                .collect(),
        }
    }

    /// Restores throttles and counters of rules in `restored` (unchanged rules).
    pub fn restore(&mut self, snap: &StageSnapshot, restored: &[String]) {
        for t in &snap.throttles {
            if !restored.contains(&t.rule) {
                continue;
            }
            if let Some(i) = self.rules.iter().position(|r| r.name == t.rule) {
                self.throttles.insert(
                    (i, Key::from(t.key.as_str())),
                    Throttle {
                        last_fired: t.last_fired.map(EventTime),
                        open_produced: t.open_produced,
                    },
                );
            }
        }
        for (name, _source, a, t) in &snap.alerts {
            if !restored.contains(name) {
                continue;
            }
            if let Some(i) = self.rules.iter().position(|r| &r.name == name) {
                self.stats.alerts[i] = *a;
                self.stats.throttled[i] = *t;
            }
        }
    }

    pub fn stats(&self) -> &StageStats {
        &self.stats
    }

    /// Turns a match into an alert, or `None` when throttled.
    pub fn process(&mut self, m: Match) -> Option<Alert> {
        let rule = self.rules[m.rule].clone();
        if let Some(d) = rule.throttle_ms
            && !self.admit(m.rule, &m.key, m.status, m.time, d)
        {
            self.stats.throttled[m.rule] += 1;
            return None;
        }
        let id = alert_id(&rule.name, &m.key, m.status, m.time, m.window.map(|w| w.0));
        let message = self.render(&rule, &m);
        self.stats.alerts[m.rule][usize::from(m.status == Status::Resolved)] += 1;
        Some(Alert {
            id,
            rule,
            status: m.status,
            key: m.key,
            time: m.time,
            values: m.values,
            window: m.window,
            message,
            events: m.events,
        })
    }

    /// Throttle bookkeeping; `true` when the alert is produced.
    fn admit(&mut self, rule: usize, key: &Key, status: Status, time: EventTime, d: i64) -> bool {
        let entry = self.throttles.get(&(rule, key.clone())).copied();
        match status {
            Status::Firing => {
                let suppressed = entry
                    .and_then(|t| t.last_fired)
                    .is_some_and(|p| time < p.saturating_add(d));
                let t = Throttle {
                    last_fired: if suppressed {
                        entry.and_then(|t| t.last_fired)
                    } else {
                        Some(time)
                    },
                    open_produced: !suppressed,
                };
                self.throttles.insert((rule, key.clone()), t);
                self.since_sweep += 1;
                if self.since_sweep > 4096 {
                    self.sweep(time, d);
                }
                !suppressed
            }
            Status::Resolved => match entry {
                Some(t) => {
                    self.throttles.insert(
                        (rule, key.clone()),
                        Throttle {
                            open_produced: false,
                            ..t
                        },
                    );
                    t.open_produced
                }
                None => false,
            },
        }
    }

    /// Drops throttle entries that can no longer suppress anything and
    /// have no open firing.
    fn sweep(&mut self, now: EventTime, _d: i64) {
        self.since_sweep = 0;
        let rules = &self.rules;
        self.throttles.retain(|(r, _), t| {
            let d = rules[*r].throttle_ms.unwrap_or(0);
            t.open_produced || t.last_fired.is_some_and(|p| p.saturating_add(d) > now)
        });
    }

    fn render(&mut self, rule: &Rule, m: &Match) -> String {
        let Some(template) = &rule.message else {
            return String::new();
        };
        let Ok(tmpl) = self.env.get_template(&rule.name) else {
            self.template_error(&rule.name, "the template did not compile");
            return template.clone();
        };
        let mut cx = Map::new();
        cx.insert("rule".into(), Value::String(rule.name.clone()));
        cx.insert(
            "severity".into(),
            Value::String(rule.severity.as_str().into()),
        );
        cx.insert("status".into(), Value::String(m.status.as_str().into()));
        cx.insert(
            "key".into(),
            serde_json::from_str(&m.key).unwrap_or(Value::Object(Map::new())),
        );
        cx.insert("time".into(), Value::String(m.time.rfc3339()));
        cx.insert(
            "values".into(),
            Value::Object(
                m.values
                    .iter()
                    .map(|(k, v)| (k.clone(), whole_numbers_as_integers(v)))
                    .collect(),
            ),
        );
        cx.insert(
            "window".into(),
            match m.window {
                Some((s, e)) => serde_json::json!({"start": s.rfc3339(), "end": e.rfc3339()}),
                None => Value::Null,
            },
        );
        for (i, (name, evs)) in m.events.iter().enumerate() {
            let quantified = m.quantified.get(i).copied().unwrap_or(false);
            let v = if quantified {
                Value::Array(evs.iter().map(|e| e.fields.root().to_value()).collect())
            } else {
                evs.first()
                    .map_or(Value::Null, |e| e.fields.root().to_value())
            };
            cx.insert(name.clone(), v);
        }
        match tmpl.render(minijinja::value::Serde(Value::Object(cx))) {
            Ok(s) => s,
            Err(e) => {
                self.template_error(&rule.name, &e.to_string());
                template.clone()
            }
        }
    }
}

/// Whole numbers as integers, so that templates print `101`, not `101.0`.
fn whole_numbers_as_integers(v: &Value) -> Value {
    match v {
        Value::Number(n) => match n.as_f64() {
            Some(x) if x.fract() == 0.0 && x.abs() < 9.0e15 => Value::from(x as i64),
            _ => v.clone(),
        },
        _ => v.clone(),
    }
}

impl AlertStage {
    /// Counts a message that could not be rendered (the alert carries the
    /// raw template; `tocsin_template_errors_total`) and logs it — the 1st,
    /// 2nd, 4th, 8th… time, so that a broken template on a busy rule does
    /// not flood the log.
    fn template_error(&mut self, rule: &str, error: &str) {
        self.stats.template_errors += 1;
        let n = self.stats.template_errors;
        if n.is_power_of_two() {
            tracing::warn!(
                rule,
                error,
                template_errors = n,
                "A message template failed to render; the alert carries the raw template"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::decode::{Decoded, Decoder};
    use crate::lang::{Options, load_texts};
    use crate::pipeline::Pipeline;

    fn message_of(template: &str) -> (String, u64) {
        let text = format!("rule r {{ from a message \"{template}\" }}");
        let l = load_texts(vec![("t.rules".into(), text)], &Options::default());
        assert!(!l.has_errors(), "{}", l.render());
        let mut p = Pipeline::new(&l.program, 0);
        let mut alerts = Vec::new();
        let Decoded::Event(ev) = Decoder::default().decode(br#"{"type":"a","ts":1,"v":2.0}"#, None)
        else {
            panic!("event");
        };
        p.push(ev, &mut alerts).unwrap();
        p.finish(&mut alerts);
        (alerts[0].message.clone(), p.stage_stats().template_errors)
    }

    #[test]
    fn a_runaway_template_stops_and_the_raw_text_is_sent() {
        let t = "{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}";
        let (msg, errors) = message_of(t);
        assert_eq!(msg, t);
        assert_eq!(errors, 1);
    }

    #[test]
    fn templates_cannot_include_files() {
        let t = "{% include '/etc/passwd' %}";
        let (msg, errors) = message_of(t);
        assert_eq!(msg, t);
        assert_eq!(errors, 1);
    }

    #[test]
    fn event_fields_render() {
        let (msg, errors) = message_of("v={{ event.v }} rule={{ rule }}");
        assert_eq!(msg, "v=2.0 rule=r");
        assert_eq!(errors, 0);
    }
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ThrottleSnap {
    pub rule: String,
    pub key: String,
    pub last_fired: Option<i64>,
    pub open_produced: bool,
}

/// The alert stage's state in a checkpoint.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct StageSnapshot {
    pub throttles: Vec<ThrottleSnap>,
    /// (rule, source, [firing, resolved] counts, throttled count)
    pub alerts: Vec<(String, String, [u64; 2], u64)>,
}
