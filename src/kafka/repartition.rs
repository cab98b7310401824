//! Re-publishing events to the internal by-key topics ([`super::route`]).
//!
//! Every event an input shard accepts is sent, unchanged, to the by-key
//! topic of each repartitioned key it has a value for (message key = that
//! value as compact JSON, partition = murmur2 of it), with headers naming its
//! source partition and offset, the source's watermark after it and its
//! arrival time. Watermark markers (no payload) tell every by-key partition
//! how far each source partition got when no event of it goes there. The
//! producer is idempotent; a delivery failure is fatal (the process exits,
//! another instance re-publishes from the last snapshot), and the consumer
//! thread flushes it before any input snapshot is written, so an input offset
//! is committed only after its events are in the by-key topics.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};

use super::route::KeyGroup;
use crate::event::{Event, EventTime};

pub const H_SOURCE: &str = "tocsin-source";
pub const H_OFFSET: &str = "tocsin-offset";
pub const H_WATERMARK: &str = "tocsin-watermark";
pub const H_ARRIVAL: &str = "tocsin-arrival";

const FLUSH_TIMEOUT: Duration = Duration::from_secs(30);

pub struct DeliveryCtx {
    failed: Arc<AtomicU64>,
}

impl ClientContext for DeliveryCtx {}

impl ProducerContext for DeliveryCtx {
    type DeliveryOpaque = ();

    fn delivery(&self, r: &DeliveryResult<'_>, _: ()) {
        if let Err((e, m)) = r
            && self.failed.fetch_add(1, Ordering::SeqCst) == 0
        {
            tracing::error!(error = %e, topic = m.topic(), partition = m.partition(), "Re-published event not delivered");
        }
    }
}

/// Last watermark sent per (group index, partition, source), and when.
type Sent = HashMap<(usize, i32, String), (i64, Instant)>;

/// Where an event comes from: its input partition (`topic/partition`) and
/// offset, its arrival time and the partition's watermark after it.
pub struct Origin<'a> {
    pub source: &'a str,
    pub offset: i64,
    pub arrival: EventTime,
    pub watermark: EventTime,
}

pub struct Repartitioner {
    producer: BaseProducer<DeliveryCtx>,
    failed: Arc<AtomicU64>,
    pub groups: Vec<KeyGroup>,
    sent: Mutex<Sent>,
}

/// The tocsin headers of a by-key message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Meta {
    pub source: String,
    /// Source offset; `None` for a watermark marker.
    pub offset: Option<i64>,
    pub watermark: i64,
    pub arrival: Option<i64>,
}

impl Meta {
    pub fn of<M: Message>(m: &M) -> Option<Meta> {
        let hs = m.headers()?;
        let (mut source, mut offset, mut watermark, mut arrival) = (None, None, None, None);
        for h in hs.iter() {
            let v = h.value.and_then(|v| std::str::from_utf8(v).ok());
            match h.key {
                H_SOURCE => source = v.map(str::to_string),
                H_OFFSET => offset = v.and_then(|v| v.parse().ok()),
                H_WATERMARK => watermark = v.and_then(|v| v.parse().ok()),
                H_ARRIVAL => arrival = v.and_then(|v| v.parse().ok()),
                _ => {}
            }
        }
        Some(Meta {
            source: source?,
            offset,
            watermark: watermark?,
            arrival,
        })
    }
}

fn headers(src: &str, offset: Option<i64>, wm: i64, arrival: Option<i64>) -> OwnedHeaders {
    let mut h = OwnedHeaders::new().insert(Header {
        key: H_SOURCE,
        value: Some(src),
    });
    if let Some(o) = offset {
        h = h.insert(Header {
            key: H_OFFSET,
            value: Some(&o.to_string()),
        });
    }
    h = h.insert(Header {
        key: H_WATERMARK,
        value: Some(&wm.to_string()),
    });
    if let Some(a) = arrival {
        h = h.insert(Header {
            key: H_ARRIVAL,
            value: Some(&a.to_string()),
        });
    }
    h
}

impl Repartitioner {
    pub fn new(
        base: rdkafka::ClientConfig,
        groups: Vec<KeyGroup>,
        max_event_bytes: usize,
    ) -> Result<Self, String> {
        let failed = Arc::new(AtomicU64::new(0));
        let max = (max_event_bytes.saturating_add(64 << 10)).clamp(1_000_000, 1_000_000_000);
        let producer: BaseProducer<DeliveryCtx> = base
            .clone()
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "20")
            .set("message.max.bytes", max.to_string())
            .create_with_context(DeliveryCtx {
                failed: failed.clone(),
            })
            .map_err(|e| format!("kafka repartition producer: {e}"))?;
        Ok(Repartitioner {
            producer,
            failed,
            groups,
            sent: Mutex::new(HashMap::new()),
        })
    }

    fn sent(&self) -> std::sync::MutexGuard<'_, Sent> {
        self.sent.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn send(&self, mut rec: BaseRecord<'_, str, [u8]>) -> Result<(), String> {
        loop {
            match self.producer.send(rec) {
                Ok(()) => return Ok(()),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    rec = r;
                    self.producer.poll(Duration::from_millis(50));
                }
                Err((e, r)) => return Err(format!("re-publish to {}: {e}", r.topic)),
            }
        }
    }

    /// Publishes an event an input shard accepted, its text unchanged, to
    /// each by-key topic whose rules (in `groups`: the current rules, the
    /// same topics as `self.groups`) may read it and whose key it has;
    /// `sent_to` is called with the topic of each message sent.
    pub fn publish(
        &self,
        groups: &[KeyGroup],
        from: &Origin<'_>,
        payload: &[u8],
        ev: &Event,
        mut sent_to: impl FnMut(&str),
    ) -> Result<(), String> {
        let (src, watermark) = (from.source, from.watermark);
        for (gi, g) in groups.iter().enumerate() {
            if !g.reads(ev) {
                continue;
            }
            let Some(key) = g.key_of(ev) else { continue };
            let part = g.partition_of(&key);
            let rec = BaseRecord::to(&g.topic)
                .partition(part)
                .key(&*key)
                .payload(payload)
                .headers(headers(
                    src,
                    Some(from.offset),
                    watermark.0,
                    Some(from.arrival.0),
                ));
            self.send(rec)?;
            self.sent()
                .insert((gi, part, src.to_string()), (watermark.0, Instant::now()));
            sent_to(&g.topic);
        }
        self.producer.poll(Duration::ZERO);
        Ok(())
    }

    /// Sends a watermark marker of `src` to every by-key partition that has
    /// not yet been told `watermark` and got nothing from `src` for `quiet`
    /// (events carry the watermark too).
    pub fn markers(&self, src: &str, watermark: EventTime, quiet: Duration) -> Result<(), String> {
        if watermark == EventTime::MIN {
            return Ok(());
        }
        for (gi, g) in self.groups.iter().enumerate() {
            for part in 0..g.partitions {
                let k = (gi, part, src.to_string());
                if self
                    .sent()
                    .get(&k)
                    .is_some_and(|&(w, at)| w >= watermark.0 || at.elapsed() < quiet)
                {
                    continue;
                }
                let rec = BaseRecord::<str, [u8]>::to(&g.topic)
                    .partition(part)
                    .headers(headers(src, None, watermark.0, None));
                self.send(rec)?;
                self.sent().insert(k, (watermark.0, Instant::now()));
            }
        }
        self.producer.poll(Duration::ZERO);
        Ok(())
    }

    /// Forgets what was sent for a source partition this instance no
    /// longer owns.
    pub fn forget(&self, src: &str) {
        self.sent().retain(|k, _| k.2 != src);
    }

    /// Serves delivery reports; `Err` once a message was not delivered.
    pub fn poll(&self) -> Result<(), String> {
        self.producer.poll(Duration::ZERO);
        self.check()
    }

    fn check(&self) -> Result<(), String> {
        match self.failed.load(Ordering::SeqCst) {
            0 => Ok(()),
            n => Err(format!("{n} re-published message(s) not delivered")),
        }
    }

    /// Waits until every message sent is acknowledged.
    pub fn flush(&self) -> Result<(), String> {
        self.producer
            .flush(FLUSH_TIMEOUT)
            .map_err(|e| format!("flushing the by-key topics: {e}"))?;
        self.check()
    }
}
