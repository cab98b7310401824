//! tocsin: a complex-event-processing rules daemon.
//!
//! # Layout (data flows one way)
//!
//! - [`event`]: the event, its time and JSON helpers (types only).
//! - [`lang`]: rule files → validated [`lang::Program`]; no I/O but reading files.
//! - [`decode`]: bytes → [`event::Event`] or a rejection reason.
//! - [`cli`]: one file per command; the only place `anyhow` is used.
//!
//! Layer rule: a module uses only modules listed above it.

pub mod cli;
pub mod decode;
pub mod event;
pub mod lang;
