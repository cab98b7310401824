//! Back-pressure at the edges: when the log writer's queue is full or the
//! engine's backlog of logged events is over its budget, HTTP answers 503
//! with `Retry-After` (nothing is taken, so nothing is lost), and a TCP
//! connection is not read further until its batch is logged.

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use tocsin::decode::Decoder;
use tocsin::metrics::Metrics;
use tocsin::source::http::HttpSource;
use tocsin::source::{Backlog, EngineMsg, IdempotencyStore, Ingest};
use tokio::sync::mpsc;

fn ingest(tx: mpsc::Sender<EngineMsg>) -> Ingest {
    with_backlog(tx, Arc::new(Backlog::new(1 << 20)))
}

fn with_backlog(tx: mpsc::Sender<EngineMsg>, backlog: Arc<Backlog>) -> Ingest {
    Ingest {
        decoder: Decoder::default(),
        max_event_bytes: 1 << 20,
        max_future_ms: i64::MAX / 4,
        metrics: Arc::new(Metrics::new()),
        tx,
        backlog,
        rejects: Default::default(),
        preparer: Default::default(),
    }
}

/// Serves `ingest` over HTTP and posts one event; the raw answer.
async fn post_one(ingest: Ingest) -> String {
    let src = Arc::new(HttpSource::new(
        ingest,
        None,
        1 << 20,
        Arc::new(IdempotencyStore::default()),
    ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, src.router()).await;
    });
    tokio::task::spawn_blocking(move || {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        let body = "{\"type\":\"a\",\"ts\":1}";
        write!(
            s,
            "POST /v1/events HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut out = String::new();
        std::io::Read::read_to_string(&mut s, &mut out).unwrap();
        out
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn a_full_log_writer_queue_gives_503_with_retry_after() {
    let (tx, mut rx) = mpsc::channel(1);
    // Fill the queue.
    tx.send(EngineMsg::Tick(tocsin::event::EventTime(0)))
        .await
        .unwrap();
    let ingest = ingest(tx);
    let metrics = ingest.metrics.clone();
    let answer = post_one(ingest).await;
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("retry-after: 1"),
        "{answer}"
    );
    // Refused, so not counted as received.
    assert!(
        !metrics.encode().contains("tocsin_events_received_total{"),
        "{}",
        metrics.encode()
    );
    // Nothing but the filler was queued.
    assert!(matches!(rx.recv().await, Some(EngineMsg::Tick(_))));
    assert!(rx.try_recv().is_err());
}

#[tokio::test]
async fn a_spent_engine_backlog_gives_503_with_retry_after() {
    let (tx, mut rx) = mpsc::channel(16);
    let backlog = Arc::new(Backlog::new(1000));
    backlog.add(1000); // logged, not yet evaluated: the engine is behind
    let answer = post_one(with_backlog(tx, backlog.clone())).await;
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("retry-after: 1"),
        "{answer}"
    );
    assert!(rx.try_recv().is_err(), "nothing may be queued");
    // Once the engine has caught up, the same request is taken.
    backlog.take(1);
    let (tx2, mut rx2) = mpsc::channel(16);
    let taker = tokio::spawn(async move {
        let Some(EngineMsg::Batch(b)) = rx2.recv().await else {
            panic!("expected a batch");
        };
        assert_eq!(b.events.len(), 1);
        b.done.expect("a done channel").send(()).unwrap();
    });
    let answer = post_one(with_backlog(tx2, backlog)).await;
    assert!(answer.starts_with("HTTP/1.1 202"), "{answer}");
    taker.await.unwrap();
}

#[tokio::test]
async fn tcp_reading_waits_until_the_engine_takes_the_batch() {
    let (tx, mut rx) = mpsc::channel(1);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = tokio_util::sync::CancellationToken::new();
    tokio::spawn(tocsin::source::tcp::serve(
        listener,
        ingest(tx),
        1 << 20,
        shutdown.clone(),
    ));
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    use tokio::io::AsyncWriteExt;
    s.write_all(b"{\"type\":\"a\",\"ts\":1}\n").await.unwrap();
    let Some(EngineMsg::Batch(first)) = rx.recv().await else {
        panic!("expected a batch");
    };
    assert_eq!(first.events.len(), 1);
    s.write_all(b"{\"type\":\"a\",\"ts\":2}\n").await.unwrap();
    // The first batch is not acknowledged: no second batch arrives.
    assert!(
        tokio::time::timeout(Duration::from_millis(300), rx.recv())
            .await
            .is_err()
    );
    first.done.expect("a done channel").send(()).unwrap();
    let Some(EngineMsg::Batch(second)) = tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .unwrap()
    else {
        panic!("expected a second batch");
    };
    assert_eq!(second.events[0].raw(), "{\"type\":\"a\",\"ts\":2}");
    shutdown.cancel();
}
