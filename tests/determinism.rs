//! Guarantee 0.1 of the rule language: the alerts and their order depend on
//! the set of on-time events, not on their arrival order within
//! `max_delay`, nor on batching. Property test over random streams and
//! random arrival orders, through the library pipeline.

mod common;

use proptest::prelude::*;
use tocsin::decode::{Decoded, Decoder};
use tocsin::lang::{Options, load_texts};
use tocsin::pipeline::Pipeline;

use common::ALL_KINDS as RULES;

const MAX_DELAY: i64 = 1500;

fn run(lines: &[String]) -> Vec<String> {
    let loaded = load_texts(vec![("r.rules".into(), RULES.into())], &Options::default());
    assert!(!loaded.has_errors(), "{}", loaded.render());
    let mut p = Pipeline::new(&loaded.program, MAX_DELAY);
    let dec = Decoder::default();
    let mut alerts = Vec::new();
    for l in lines {
        if let Decoded::Event(ev) = dec.decode(l.as_bytes(), None) {
            assert!(
                p.push(ev, &mut alerts).is_ok(),
                "no event may be late here: {l}"
            );
        }
    }
    p.finish(&mut alerts);
    alerts.iter().map(|a| a.to_json()).collect()
}

/// (time, stream, user, v, arrival jitter)
fn stream() -> impl Strategy<Value = Vec<(i64, u8, u8, u8, i64)>> {
    prop::collection::vec(
        (0i64..400, 0u8..3, 0u8..3, 0u8..10, 0i64..=MAX_DELAY),
        1..80,
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn arrival_order_within_max_delay_does_not_change_alerts(spec in stream()) {
        let mut t = 0i64;
        let mut evs: Vec<(i64, String, i64)> = Vec::new();
        for (dt, s, u, v, jitter) in spec {
            t += dt * 10; // many ties and near-ties
            let stream = ["a", "b", "c"][s as usize];
            evs.push((t, format!("{{\"type\":\"{stream}\",\"ts\":{t},\"u\":\"u{u}\",\"v\":{v}}}"), jitter));
        }
        // Reference: event order (time, then text).
        let mut ordered = evs.clone();
        ordered.sort_by(|a, b| (a.0, a.1.as_bytes()).cmp(&(b.0, b.1.as_bytes())));
        let reference = run(&ordered.iter().map(|e| e.1.clone()).collect::<Vec<_>>());
        // Arrival order: by time + jitter (jitter <= max_delay keeps every event on time).
        let mut arrival = evs.clone();
        arrival.sort_by_key(|e| (e.0 + e.2, e.2));
        let shuffled = run(&arrival.iter().map(|e| e.1.clone()).collect::<Vec<_>>());
        prop_assert_eq!(reference, shuffled);
    }
}

#[test]
fn the_property_is_not_vacuous() {
    // A stream that makes every rule kind fire at least once.
    let mut lines = Vec::new();
    for (i, t) in [0, 100, 200, 300, 400, 2000, 2100, 2200, 9000]
        .iter()
        .enumerate()
    {
        lines.push(format!(
            "{{\"type\":\"a\",\"ts\":{t},\"u\":\"u1\",\"v\":{}}}",
            i % 9 + 1
        ));
        lines.push(format!(
            "{{\"type\":\"b\",\"ts\":{},\"u\":\"u1\",\"v\":{}}}",
            t + 50,
            i
        ));
    }
    let alerts = run(&lines);
    for rule in ["f", "slide", "hop", "sess", "gone", "seq", "trail"] {
        assert!(
            alerts
                .iter()
                .any(|a| a.contains(&format!("\"rule\":\"{rule}\""))),
            "rule {rule} never fired: {alerts:#?}"
        );
    }
}
