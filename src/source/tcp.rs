//! TCP source: newline-delimited JSON, one event per line. An over-long or
//! undecodable line is rejected and counted; the connection stays open.
//! The daemon never writes on it. Reading pauses until the previous batch
//! is logged, and while the log writer's queue is full (back-pressure).

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use super::{Batch, EngineMsg, Ingest, now};

/// Lines per batch at most.
const BATCH: usize = 1024;

pub async fn serve(
    listener: TcpListener,
    ingest: Ingest,
    max_line: usize,
    shutdown: CancellationToken,
) {
    let mut conns = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    tracing::debug!(%peer, "TCP sender connected");
                    let ingest = ingest.clone();
                    let shutdown = shutdown.clone();
                    conns.spawn(async move {
                        connection(stream, ingest, max_line, shutdown).await;
                    });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "TCP accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
    // Connections see the cancellation and finish their current batch.
    while conns.join_next().await.is_some() {}
}

async fn connection(
    stream: TcpStream,
    ingest: Ingest,
    max_line: usize,
    shutdown: CancellationToken,
) {
    let mut reader = BufReader::with_capacity(64 * 1024, stream);
    // The current line; `skipping` while discarding the rest of an over-long one.
    let mut line: Vec<u8> = Vec::new();
    let mut skipping = false;
    let mut events = Vec::new();
    loop {
        let buf = tokio::select! {
            _ = shutdown.cancelled() => break,
            r = reader.fill_buf() => match r {
                Ok(b) => b,
                Err(_) => break,
            },
        };
        if buf.is_empty() {
            // EOF: a last line without a line ending still counts.
            if !skipping && !line.is_empty() {
                decode_into(&ingest, &line, &mut events);
            }
            break;
        }
        let at = now();
        let mut consumed = 0;
        while consumed < buf.len() && events.len() < BATCH {
            let rest = &buf[consumed..];
            match super::find_newline(rest) {
                Some(nl) => {
                    if !skipping {
                        if line.len() + nl > max_line {
                            ingest.metrics.reject("tcp", "too_large");
                        } else {
                            line.extend_from_slice(&rest[..nl]);
                            if let Ok(Some(ev)) = ingest.decode("tcp", &line, at) {
                                events.push(ev);
                            }
                        }
                    }
                    line.clear();
                    skipping = false;
                    consumed += nl + 1;
                }
                None => {
                    if !skipping {
                        if line.len() + rest.len() > max_line {
                            ingest.metrics.reject("tcp", "too_large");
                            skipping = true;
                            line.clear();
                        } else {
                            line.extend_from_slice(rest);
                        }
                    }
                    consumed = buf.len();
                }
            }
        }
        reader.consume(consumed);
        if !events.is_empty() && !send(&ingest, &mut events).await {
            return;
        }
    }
    if !events.is_empty() {
        send(&ingest, &mut events).await;
    }
}

fn decode_into(ingest: &Ingest, line: &[u8], events: &mut Vec<crate::event::Event>) {
    if let Ok(Some(ev)) = ingest.decode("tcp", line, now()) {
        events.push(ev);
    }
}

/// Hands a batch to the log writer and waits until it is logged.
async fn send(ingest: &Ingest, events: &mut Vec<crate::event::Event>) -> bool {
    // The engine is behind: hold this connection (it is not read meanwhile).
    ingest.backlog.until_room().await;
    ingest.metrics.received("tcp", events.len() as u64);
    let (done, wait) = oneshot::channel();
    let batch = Batch::new("tcp", std::mem::take(events), None, None, Some(done))
        .prepared_by(&ingest.preparer);
    if ingest.tx.send(EngineMsg::Batch(batch)).await.is_err() {
        return false;
    }
    wait.await.is_ok()
}
