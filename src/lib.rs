//! tocsin: a complex-event-processing rules daemon.
//!
//! # Layout (data flows one way)
//!
//! - [`event`]: the event, its time and JSON helpers (types only).
//! - [`lang`]: rule files → validated [`lang::Program`]; no I/O but reading files.
//! - [`decode`]: bytes → [`event::Event`] or a rejection reason.
//! - [`sequencer`]: watermark, lateness, release in event order.
//! - [`engine`]: compiled rules on event time; keyed state, timers. No I/O, no clock.
//! - [`alert`]: matches → alerts (throttle, ids, messages, JSON).
//! - [`pipeline`]: sequencer → engine → alerts; shared by `run`, `replay`, `test`.
//! - [`source`]: HTTP, TCP and file ingest → decoded batches (I/O, tokio).
//! - [`outbox`], `channel`: durable alert delivery (I/O, tokio).
//! - [`daemon`], [`api`], [`console`]: wiring of `tocsin run`; the admin HTTP
//!   API; the web console (server-rendered HTML on the admin listener).
//! - [`config`], [`metrics`]: the YAML configuration; the contract's metrics.
//! - [`cli`]: one file per command; the only place `anyhow` is used.
//!
//! Layer rule: a module uses only modules listed above it.

pub mod alert;
pub mod api;
pub mod channel;
pub mod checkpoint;
pub mod cli;
pub mod config;
pub mod console;
pub mod daemon;
pub mod decode;
pub mod engine;
pub mod event;
pub mod kafka;
pub mod lang;
pub mod metrics;
pub mod outbox;
pub mod pipeline;
pub mod sequencer;
pub mod source;
pub mod wal;
