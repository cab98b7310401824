//! The consumer thread: polls the group's partitions, feeds each message to
//! its partition's shard, hands alerts to the outbox, and writes snapshots
//! (periodically, on revoke, at shutdown) before committing offsets.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;

use super::repartition::{Meta, Origin, Repartitioner};
use super::route::Plan;
use super::shard::{Keyed, Shard};
use super::state::{StateStore, key};
use super::{AlertHook, KafkaSettings};
use crate::alert::Alert;
use crate::decode::RejectReason;
use crate::decode::{Decoded, Decoder};
use crate::lang::Program;
use crate::metrics::{Metrics, PartitionLabels, TopicLabel};
use crate::outbox::Outbox;
use crate::source::now;

const SOURCE: &str = "kafka";

/// What the poll loop and the rebalance callbacks share (both run on the
/// consumer thread, inside or after `poll`; the lock is never contended).
struct Runtime {
    settings: KafkaSettings,
    /// Which rules run on the input shards and which on by-key shards
    /// (replaced by a rule reload, [`super::reload`]).
    plan: RwLock<Arc<Plan>>,
    /// Every input partition (`topic/partition`): the sources whose
    /// watermarks a by-key shard waits for.
    sources: Vec<String>,
    /// Publishes to the by-key topics (`None` when no rule is repartitioned).
    repart: Option<Repartitioner>,
    shards: Mutex<BTreeMap<(String, i32), Shard>>,
    store: StateStore,
    outbox: Arc<Outbox>,
    metrics: Arc<Metrics>,
    on_alert: AlertHook,
    /// High watermark per partition, from the client's statistics.
    high: Mutex<HashMap<(String, i32), i64>>,
}

struct Ctx(Arc<Runtime>);

impl ClientContext for Ctx {
    fn stats(&self, st: rdkafka::Statistics) {
        let mut high = self.0.high.lock().unwrap_or_else(|p| p.into_inner());
        for (t, topic) in st.topics {
            for (p, part) in topic.partitions {
                if p >= 0 && part.hi_offset >= 0 {
                    high.insert((t.clone(), p), part.hi_offset);
                }
            }
        }
    }
}

/// Stops the process: the state in memory can no longer be made durable
/// consistently; another instance (or this one, restarted) re-evaluates
/// from the last snapshots.
fn fatal(what: &str, e: &str) -> ! {
    tracing::error!(error = %e, "{what}; exiting");
    std::process::exit(1)
}

impl ConsumerContext for Ctx {
    fn pre_rebalance(&self, c: &BaseConsumer<Self>, r: &Rebalance<'_>) {
        let rt = &self.0;
        match r {
            Rebalance::Revoke(tpl) => {
                let parts = parts(tpl);
                let lost = c.assignment_lost();
                rt.metrics.rebalance(if lost { "lost" } else { "revoke" });
                tracing::info!(partitions = ?parts, lost, "Kafka partitions revoked");
                if !lost && let Err(e) = rt.checkpoint(c, Some(&parts)) {
                    tracing::error!(error = %e, "Snapshot on revoke failed; the next owner re-evaluates from the previous one");
                }
                let mut shards = rt.lock();
                for (t, p) in &parts {
                    shards.remove(&(t.clone(), *p));
                    rt.metrics.forget_partition(t, *p);
                    if let Some(r) = &rt.repart {
                        r.forget(&key(t, *p));
                    }
                }
            }
            Rebalance::Assign(tpl) => {
                let parts = parts(tpl);
                rt.metrics.rebalance("assign");
                let started = Instant::now();
                let (snaps, chunks) = match rt.store.load(&parts) {
                    Ok(s) => s,
                    Err(e) => {
                        // Without the snapshot, evaluating would skip state:
                        // fatal for this instance, another one takes over.
                        tracing::error!(error = %e, "Cannot read shard snapshots; exiting");
                        std::process::exit(1);
                    }
                };
                let plan = rt.plan();
                let mut shards = rt.lock();
                for (t, p) in &parts {
                    let mut sh = match plan.group_of(t) {
                        Some(g) => Shard::by_key(&g.program, t, *p),
                        None => Shard::input(&plan.local, rt.settings.max_delay_ms, t, *p),
                    };
                    if let Some(s) = snaps.get(&key(t, *p)) {
                        sh.restore(s);
                    }
                    shards.insert((t.clone(), *p), sh);
                }
                let secs = started.elapsed().as_secs_f64();
                rt.metrics.kafka_restore_seconds.set(secs);
                tracing::info!(
                    partitions = ?parts,
                    restored = snaps.len(),
                    chunks,
                    seconds = secs,
                    "Kafka partitions assigned"
                );
            }
            Rebalance::Error(e) => tracing::warn!(error = %e, "Kafka rebalance error"),
        }
    }
}

fn parts(tpl: &TopicPartitionList) -> Vec<(String, i32)> {
    tpl.elements()
        .iter()
        .map(|e| (e.topic().to_string(), e.partition()))
        .collect()
}

impl Runtime {
    fn plan(&self) -> Arc<Plan> {
        self.plan.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Swaps in reloaded rules: every shard's pipeline reloads (unchanged
    /// rules keep their state), then every shard's snapshot is written, so
    /// that a re-evaluation after a crash switches rules at the same offset.
    /// [`super::reload::check`] made sure the by-key topics are the same.
    fn reload(&self, c: &BaseConsumer<Ctx>, program: &Program) -> Result<usize, String> {
        let old = self.plan();
        let mut plan = Plan::new(program, &self.settings.partitioned_by, &self.settings.group);
        for g in &mut plan.groups {
            g.partitions = old
                .group_of(&g.topic)
                .map(|o| o.partitions)
                .ok_or_else(|| format!("by-key topic {} is not subscribed", g.topic))?;
        }
        let mut shards = self.lock();
        for ((t, _), sh) in shards.iter_mut() {
            match plan.group_of(t) {
                Some(g) => sh.pipeline.reload(&g.program),
                None => sh.pipeline.reload(&plan.local),
            }
            sh.dirty = true;
        }
        let n = shards.len();
        drop(shards);
        *self.plan.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(plan);
        self.checkpoint(c, None)?;
        Ok(n)
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<(String, i32), Shard>> {
        self.shards.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn deliver(&self, alerts: &mut Vec<Alert>) {
        for a in alerts.drain(..) {
            let channels = if a.rule.notify.is_empty() {
                &self.settings.default_notify
            } else {
                &a.rule.notify
            };
            if let Err(e) = self.outbox.submit(&a, channels) {
                tracing::error!(error = %e, alert = %a.id, "Cannot record alert in the outbox");
            }
            (self.on_alert)(&a);
        }
    }

    /// Per-partition gauges: lag, watermark, keys.
    fn partition_metrics(&self) {
        let high = self.high.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let shards = self.lock();
        for ((t, p), sh) in shards.iter() {
            let l = PartitionLabels {
                topic: t.clone(),
                partition: *p,
            };
            if let Some(hi) = high.get(&(t.clone(), *p)) {
                self.metrics
                    .kafka_consumer_lag
                    .get_or_create(&l)
                    .set((hi - sh.next_offset).max(0));
            }
            // Before any event (a by-key shard's own sequencer sits near
            // the minimum until its sources' watermarks arrive): no sample.
            let w = sh.pipeline.watermark();
            if w.0 > i64::MIN / 2 {
                self.metrics
                    .kafka_watermark_seconds
                    .get_or_create(&l)
                    .set(w.0 as f64 / 1000.0);
            }
            self.metrics
                .kafka_shard_keys
                .get_or_create(&l)
                .set(i64::try_from(sh.keys()).unwrap_or(i64::MAX));
        }
    }

    /// Makes the alerts durable, writes the snapshots of the given shards
    /// (every dirty one when `None`), then commits their offsets.
    fn checkpoint(
        &self,
        c: &BaseConsumer<Ctx>,
        only: Option<&[(String, i32)]>,
    ) -> Result<(), String> {
        let started = Instant::now();
        let mut shards = self.lock();
        let chosen: Vec<(String, i32)> = shards
            .iter()
            .filter(|(k, s)| match only {
                Some(o) => o.contains(k),
                None => s.dirty,
            })
            .map(|(k, _)| k.clone())
            .collect();
        if chosen.is_empty() {
            return Ok(());
        }
        self.outbox.sync().map_err(|e| e.to_string())?;
        // Input offsets cover their re-published events only once these
        // are acknowledged.
        if let Some(r) = &self.repart {
            r.flush()?;
        }
        let snaps: Vec<_> = chosen.iter().map(|k| shards[k].snapshot()).collect();
        let chunks = self.store.write(&snaps)?;
        let mut tpl = TopicPartitionList::new();
        for s in &snaps {
            tpl.add_partition_offset(&s.topic, s.partition, Offset::Offset(s.offset))
                .map_err(|e| e.to_string())?;
        }
        for k in &chosen {
            if let Some(s) = shards.get_mut(k) {
                s.dirty = false;
            }
        }
        drop(shards);
        c.commit(&tpl, CommitMode::Sync)
            .map_err(|e| format!("commit: {e}"))?;
        let secs = started.elapsed().as_secs_f64();
        self.metrics.checkpoint_seconds.set(secs);
        tracing::debug!(
            shards = snaps.len(),
            chunks,
            seconds = secs,
            "Kafka shard snapshots written"
        );
        Ok(())
    }
}

/// Creates a topic when missing.
async fn create_topic(
    admin: &AdminClient<rdkafka::client::DefaultClientContext>,
    topic: &NewTopic<'_>,
) -> Result<(), String> {
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    match admin.create_topics([topic], &opts).await {
        Ok(rs) => {
            for r in rs {
                if let Err((t, code)) = r
                    && code != rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists
                {
                    return Err(format!("cannot create topic {t}: {code}"));
                }
            }
            Ok(())
        }
        Err(e) => Err(format!("cannot create topic {}: {e}", topic.name)),
    }
}

/// The partition count of a topic (0 when it does not exist).
fn partition_count(
    admin: &AdminClient<rdkafka::client::DefaultClientContext>,
    topic: &str,
) -> Result<i32, String> {
    let md = admin
        .inner()
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .map_err(|e| format!("metadata of topic {topic}: {e}"))?;
    Ok(md
        .topics()
        .iter()
        .find(|t| t.name() == topic && t.error().is_none())
        .map_or(0, |t| t.partitions().len() as i32))
}

/// Creates the state topic (and the by-key topics of repartitioned rules)
/// when missing, then starts the consumer thread. The thread stops (after a
/// last snapshot of every shard) when `stop` is cancelled.
pub async fn spawn(
    settings: KafkaSettings,
    program: Program,
    decoder: Decoder,
    outbox: Arc<Outbox>,
    metrics: Arc<Metrics>,
    on_alert: AlertHook,
    stop: CancellationToken,
) -> Result<std::thread::JoinHandle<()>, String> {
    let state_topic = settings.state_topic();
    let admin: AdminClient<_> = settings
        .client_config()
        .create()
        .map_err(|e| format!("kafka admin client: {e}"))?;
    let topic =
        NewTopic::new(&state_topic, 1, TopicReplication::Fixed(1)).set("cleanup.policy", "compact");
    create_topic(&admin, &topic)
        .await
        .map_err(|e| format!("state topic: {e}"))?;
    let mut plan = Plan::new(&program, &settings.partitioned_by, &settings.group);
    let mut sources = Vec::new();
    let mut repart = None;
    if !plan.groups.is_empty() {
        // By-key topics get the input's partition count (the largest one
        // when there are several input topics); the global key gets one.
        let mut n = 0;
        for t in &settings.topics {
            let c = partition_count(&admin, t)?;
            if c == 0 {
                return Err(format!(
                    "input topic {t} does not exist; it must, to size the by-key topics of repartitioned rules"
                ));
            }
            sources.extend((0..c).map(|p| key(t, p)));
            n = n.max(c);
        }
        for g in &mut plan.groups {
            let want = if g.is_global() { 1 } else { n };
            create_topic(
                &admin,
                &NewTopic::new(&g.topic, want, TopicReplication::Fixed(1)),
            )
            .await?;
            let got = partition_count(&admin, &g.topic)?;
            if got == 0 {
                return Err(format!("by-key topic {} has no partitions", g.topic));
            }
            if got != want {
                tracing::warn!(topic = %g.topic, partitions = got, wanted = want, "By-key topic exists with another partition count; using it");
            }
            g.partitions = got;
            tracing::info!(
                topic = %g.topic,
                partitions = got,
                rules = ?g.program.rules.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(),
                "Rules keyed otherwise than partitioned_by are repartitioned"
            );
        }
        repart = Some(Repartitioner::new(
            settings.client_config(),
            plan.groups.clone(),
            settings.max_event_bytes,
        )?);
    }
    let store = StateStore::new(
        settings.client_config(),
        &settings.group,
        state_topic,
        settings.snapshot_chunk_bytes,
    )?;
    let mut topics: Vec<String> = settings.topics.clone();
    topics.extend(plan.groups.iter().map(|g| g.topic.clone()));
    let (registration, reloads) =
        super::reload::register(&settings.group, &settings.partitioned_by, &plan);
    let rt = Arc::new(Runtime {
        settings: settings.clone(),
        plan: RwLock::new(Arc::new(plan)),
        sources,
        repart,
        shards: Mutex::new(BTreeMap::new()),
        store,
        outbox,
        metrics,
        on_alert,
        high: Mutex::new(HashMap::new()),
    });
    let mut cc = settings.client_config();
    if !settings.client.contains_key("statistics.interval.ms") {
        cc.set("statistics.interval.ms", "5000");
    }
    let consumer: BaseConsumer<Ctx> = cc
        .set("group.id", &settings.group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", &settings.start_at)
        .set("partition.assignment.strategy", "cooperative-sticky")
        .create_with_context(Ctx(rt.clone()))
        .map_err(|e| format!("kafka consumer: {e}"))?;
    let names: Vec<&str> = topics.iter().map(String::as_str).collect();
    consumer
        .subscribe(&names)
        .map_err(|e| format!("kafka subscribe: {e}"))?;
    tracing::info!(brokers = %settings.brokers, topics = ?topics, group = %settings.group, "Kafka source consuming");
    std::thread::Builder::new()
        .name("tocsin-kafka".into())
        .stack_size(64 << 20)
        .spawn(move || {
            run(rt, consumer, decoder, &reloads, stop);
            drop(registration);
        })
        .map_err(|e| format!("cannot start the kafka thread: {e}"))
}

/// A message of an input partition.
fn on_input(
    rt: &Runtime,
    decoder: &Decoder,
    m: &rdkafka::message::BorrowedMessage<'_>,
    alerts: &mut Vec<Alert>,
) -> bool {
    let s = &rt.settings;
    let wall = now();
    let (topic, partition, offset) = (m.topic(), m.partition(), m.offset());
    let payload = m.payload().unwrap_or_default();
    let ev = match decode(decoder, s, payload, wall) {
        Ok(ev) => ev,
        Err(reason) => {
            rt.metrics.reject(SOURCE, reason.as_str());
            None
        }
    };
    let received = ev.is_some();
    let mut shards = rt.lock();
    let Some(sh) = shards.get_mut(&(topic.to_string(), partition)) else {
        return false;
    };
    if sh.covers(offset) {
        return false;
    }
    if let (Some(r), Some(ev)) = (&rt.repart, &ev) {
        // Late in its partition: not evaluated here, not re-published.
        let w = sh.pipeline.watermark();
        if ev.time >= w {
            let after = w.max(ev.time.saturating_sub(s.max_delay_ms.max(0)));
            let src = key(topic, partition);
            let from = Origin {
                source: &src,
                offset,
                arrival: wall,
                watermark: after,
            };
            let plan = rt.plan();
            if let Err(e) = r.publish(&plan.groups, &from, payload, ev, |t| {
                rt.metrics
                    .kafka_republished
                    .get_or_create(&TopicLabel {
                        topic: t.to_string(),
                    })
                    .inc();
            }) {
                fatal("Cannot re-publish to a by-key topic", &e);
            }
        }
    }
    if sh.offer(offset, ev, wall, alerts).is_err() {
        rt.metrics.events_late.inc();
    }
    drop(shards);
    rt.deliver(alerts);
    received
}

/// A message of a by-key partition.
fn on_keyed(
    rt: &Runtime,
    decoder: &Decoder,
    m: &rdkafka::message::BorrowedMessage<'_>,
    alerts: &mut Vec<Alert>,
) {
    let (topic, partition, offset) = (m.topic(), m.partition(), m.offset());
    let meta = Meta::of(m);
    let mut shards = rt.lock();
    let Some(sh) = shards.get_mut(&(topic.to_string(), partition)) else {
        return;
    };
    if sh.covers(offset) {
        return;
    }
    let Some(meta) = meta else {
        // Not written by tocsin: skipped.
        sh.next_offset = offset + 1;
        sh.dirty = true;
        tracing::warn!(
            topic,
            partition,
            offset,
            "Message without tocsin headers in a by-key topic; skipped"
        );
        return;
    };
    let event = meta.offset.map(|o| {
        let payload = m.payload().unwrap_or_default();
        let ev = match decoder.decode(payload, meta.arrival.map(crate::event::EventTime)) {
            Decoded::Event(ev) => Some(ev),
            _ => None,
        };
        (o, ev)
    });
    match sh.offer_keyed(
        offset,
        &meta.source,
        event,
        meta.watermark,
        &rt.sources,
        alerts,
    ) {
        Keyed::Late => {
            rt.metrics.events_late.inc();
        }
        Keyed::Duplicate => {
            rt.metrics
                .kafka_duplicates_dropped
                .get_or_create(&TopicLabel {
                    topic: topic.to_string(),
                })
                .inc();
        }
        Keyed::Evaluated | Keyed::Marker => {}
    }
    drop(shards);
    rt.deliver(alerts);
}

fn run(
    rt: Arc<Runtime>,
    consumer: BaseConsumer<Ctx>,
    decoder: Decoder,
    reloads: &std::sync::mpsc::Receiver<super::reload::Request>,
    stop: CancellationToken,
) {
    let s = rt.settings.clone();
    let mut alerts: Vec<Alert> = Vec::new();
    let mut last_tick = Instant::now();
    let mut last_checkpoint = Instant::now();
    let mut received = 0u64;
    while !stop.is_cancelled() {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                if rt.plan().group_of(m.topic()).is_some() {
                    on_keyed(&rt, &decoder, &m, &mut alerts);
                } else {
                    received += u64::from(on_input(&rt, &decoder, &m, &mut alerts));
                }
            }
            Some(Err(e)) => tracing::warn!(error = %e, "Kafka consumer"),
            None => {}
        }
        while let Ok(req) = reloads.try_recv() {
            let r = rt.reload(&consumer, &req.program);
            match &r {
                Ok(n) => tracing::info!(
                    shards = n,
                    rules = req.program.rules.len(),
                    "Kafka shards reloaded their rules"
                ),
                Err(e) => {
                    tracing::error!(error = %e, "Kafka shards reloaded their rules, but writing their snapshots failed; retried at the next checkpoint")
                }
            }
            let _ = req.done.send(r);
        }
        if last_tick.elapsed() >= Duration::from_secs(1) {
            last_tick = Instant::now();
            if received > 0 {
                rt.metrics.received(SOURCE, received);
                received = 0;
            }
            let wall = now();
            let mut shards = rt.lock();
            if let Some(idle) = s.idle_timeout_ms {
                for sh in shards.values_mut() {
                    sh.idle_advance(wall, idle, s.max_delay_ms, &mut alerts);
                }
            }
            if let Some(r) = &rt.repart {
                // Watermarks of the input partitions to every by-key
                // partition that got no event of them lately.
                for ((t, p), sh) in shards.iter().filter(|(_, sh)| sh.by_key.is_none()) {
                    if let Err(e) =
                        r.markers(&key(t, *p), sh.pipeline.watermark(), Duration::from_secs(1))
                    {
                        fatal("Cannot send watermark markers to the by-key topics", &e);
                    }
                }
                if let Err(e) = r.poll() {
                    fatal("Re-published events were lost", &e);
                }
            }
            drop(shards);
            rt.deliver(&mut alerts);
            rt.partition_metrics();
        }
        if last_checkpoint.elapsed() >= s.checkpoint_every {
            if let Err(e) = rt.checkpoint(&consumer, None) {
                tracing::error!(error = %e, "Kafka shard snapshot failed; retried at the next checkpoint");
            }
            last_checkpoint = Instant::now();
        }
    }
    if received > 0 {
        rt.metrics.received(SOURCE, received);
    }
    if let Err(e) = rt.checkpoint(&consumer, None) {
        tracing::error!(error = %e, "Kafka shard snapshot at shutdown failed");
    }
    consumer.unsubscribe();
    // Let the group see the leave (the revoke callback finds nothing dirty).
    let until = Instant::now() + Duration::from_secs(2);
    while Instant::now() < until && !rt.lock().is_empty() {
        let _ = consumer.poll(Duration::from_millis(100));
    }
    tracing::info!("Kafka source stopped");
}

fn decode(
    decoder: &Decoder,
    s: &KafkaSettings,
    bytes: &[u8],
    wall: crate::event::EventTime,
) -> Result<Option<crate::event::Event>, RejectReason> {
    if bytes.len() > s.max_event_bytes {
        return Err(RejectReason::TooLarge);
    }
    match decoder.decode(bytes, Some(wall)) {
        Decoded::Blank => Ok(None),
        Decoded::Rejected(r) => Err(r),
        Decoded::Event(ev) if ev.time > wall.saturating_add(s.max_future_ms) => {
            Err(RejectReason::FutureTime)
        }
        Decoded::Event(ev) => Ok(Some(ev)),
    }
}
