//! Back-pressure at the edges: when the engine queue is full, HTTP answers
//! 503 with `Retry-After` (nothing is taken, so nothing is lost), and a TCP
//! connection is not read further until its batch is taken.

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use tocsin::decode::Decoder;
use tocsin::metrics::Metrics;
use tocsin::source::http::HttpSource;
use tocsin::source::{EngineMsg, IdempotencyStore, Ingest};
use tokio::sync::mpsc;

fn ingest(tx: mpsc::Sender<EngineMsg>) -> Ingest {
    Ingest {
        decoder: Decoder::default(),
        max_event_bytes: 1 << 20,
        max_future_ms: i64::MAX / 4,
        metrics: Arc::new(Metrics::new()),
        tx,
        rejects: Default::default(),
    }
}

#[tokio::test]
async fn a_full_engine_queue_gives_503_with_retry_after() {
    let (tx, mut rx) = mpsc::channel(1);
    // Fill the queue.
    tx.send(EngineMsg::Tick(tocsin::event::EventTime(0)))
        .await
        .unwrap();
    let src = Arc::new(HttpSource::new(
        ingest(tx),
        None,
        1 << 20,
        Arc::new(IdempotencyStore::default()),
    ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, src.router()).await;
    });
    let answer = tokio::task::spawn_blocking(move || {
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
    .unwrap();
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("retry-after: 1"),
        "{answer}"
    );
    // Nothing but the filler was queued.
    assert!(matches!(rx.recv().await, Some(EngineMsg::Tick(_))));
    assert!(rx.try_recv().is_err());
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
    assert_eq!(&*second.events[0].raw, "{\"type\":\"a\",\"ts\":2}");
    shutdown.cancel();
}
