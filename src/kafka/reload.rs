//! Rule reload for the Kafka shards (docs/scale-out.md, "Reload").
//!
//! The daemon's reload (`SIGHUP`, `POST /v1/reload`, the rules watcher;
//! `crate::daemon::reload`) first asks [`check`] whether every Kafka
//! consumer of this process can take the new rules, then swaps them into
//! the engine thread, then hands them to every consumer thread with
//! [`apply`]. A consumer thread applies them between two messages: every
//! shard's pipeline reloads (rules whose name and text are unchanged keep
//! their state, as in the engine thread), the by-key groups get their new
//! rules, and every shard's snapshot is written at once, so that the
//! switch point is durable.
//!
//! Not supported (refused by [`check`], the running rules stay): a reload
//! that changes the set of by-key topics (a rule keyed on a new field set,
//! or the last rule of a key removed), since that would need topics created
//! and subscriptions changed in every instance of the group at once.
//!
//! The consumer threads register here, in a process-wide list, because the
//! daemon's shared state is not theirs to extend; there is one entry per
//! `kind: kafka` source, removed when its thread stops.

use std::sync::Mutex;
use std::sync::mpsc;
use std::time::Duration;

use tokio::sync::oneshot;

use super::route::Plan;
use crate::lang::Program;

/// A reload handed to a consumer thread; `done` gets the number of shards
/// reloaded, or why not.
pub struct Request {
    pub program: Program,
    pub done: oneshot::Sender<Result<usize, String>>,
}

struct Consumer {
    id: u64,
    group: String,
    partitioned_by: Vec<String>,
    /// The by-key topics the thread subscribed to (fixed for its life).
    topics: Vec<String>,
    tx: mpsc::Sender<Request>,
}

static CONSUMERS: Mutex<Vec<Consumer>> = Mutex::new(Vec::new());
static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

fn consumers() -> std::sync::MutexGuard<'static, Vec<Consumer>> {
    CONSUMERS.lock().unwrap_or_else(|p| p.into_inner())
}

/// Registered while a consumer thread runs; unregisters when dropped.
pub struct Registration {
    id: u64,
}

impl Drop for Registration {
    fn drop(&mut self) {
        consumers().retain(|c| c.id != self.id);
    }
}

/// Registers a consumer thread of `group`; its reloads arrive on the
/// returned receiver.
pub fn register(
    group: &str,
    partitioned_by: &[String],
    plan: &Plan,
) -> (Registration, mpsc::Receiver<Request>) {
    let (tx, rx) = mpsc::channel();
    let id = NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    consumers().push(Consumer {
        id,
        group: group.to_string(),
        partitioned_by: partitioned_by.to_vec(),
        topics: topics(plan),
        tx,
    });
    (Registration { id }, rx)
}

fn topics(plan: &Plan) -> Vec<String> {
    plan.groups.iter().map(|g| g.topic.clone()).collect()
}

/// Whether every Kafka consumer can take `program`: each error says why
/// not. No consumer: `Ok`.
pub fn check(program: &Program) -> Result<(), Vec<String>> {
    let errors: Vec<String> = consumers()
        .iter()
        .filter_map(|c| {
            let want = topics(&Plan::new(program, &c.partitioned_by, &c.group));
            (want != c.topics).then(|| {
                format!(
                    "kafka group `{}`: the new rules are repartitioned through topics {:?}, the running ones through {:?}; changing them needs a restart of every instance of the group",
                    c.group, want, c.topics
                )
            })
        })
        .collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

/// How long a consumer thread may take to apply a reload (it writes every
/// shard's snapshot).
const APPLY_TIMEOUT: Duration = Duration::from_secs(60);

/// Hands `program` to every Kafka consumer thread and waits until each has
/// applied it. `Ok(n)`: `n` shards reloaded over all consumers.
pub async fn apply(program: &Program) -> Result<usize, Vec<String>> {
    let waits: Vec<(String, oneshot::Receiver<Result<usize, String>>)> = consumers()
        .iter()
        .map(|c| {
            let (done, wait) = oneshot::channel();
            let _ = c.tx.send(Request {
                program: program.clone(),
                done,
            });
            (c.group.clone(), wait)
        })
        .collect();
    let mut shards = 0;
    let mut errors = Vec::new();
    for (group, wait) in waits {
        match tokio::time::timeout(APPLY_TIMEOUT, wait).await {
            Ok(Ok(Ok(n))) => shards += n,
            Ok(Ok(Err(e))) => errors.push(format!("kafka group `{group}`: {e}")),
            Ok(Err(_)) => errors.push(format!("kafka group `{group}`: the consumer stopped")),
            Err(_) => errors.push(format!(
                "kafka group `{group}`: the reload was not applied within {}s",
                APPLY_TIMEOUT.as_secs()
            )),
        }
    }
    if errors.is_empty() {
        Ok(shards)
    } else {
        Err(errors)
    }
}
