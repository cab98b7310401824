//! The HTTP server loop for the ingest and admin listeners: HTTP/1.1 with a
//! header-read timeout (a client that trickles its request headers is cut
//! off), graceful shutdown of open connections, and no limit on the work a
//! slow client can hold besides the per-request body timeout in `http`.

use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// Default time a client has to send its request line and headers.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// At shutdown, how long a request in progress may take to finish (a body
/// still arriving, say); then its connection is closed without an answer,
/// and the client retries. A request whose body has arrived is answered
/// well within it (its batch is logged and synced, the log writer drains
/// before the daemon stops). One client trickling a body cannot hold a
/// restart for its whole `body_timeout`.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: CancellationToken,
    header_timeout: Duration,
) {
    serve_routes(listener, watch::channel(router).1, shutdown, header_timeout).await
}

/// [`serve`] with routes that can change: each new connection is served
/// by the routes current when it was accepted (the daemon's listener
/// answers "recovering" until recovery is done, then takes events).
pub async fn serve_routes(
    listener: TcpListener,
    routes: watch::Receiver<Router>,
    shutdown: CancellationToken,
    header_timeout: Duration,
) {
    let mut conns = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => {
                let stream = match accepted {
                    Ok((s, _)) => s,
                    Err(e) => {
                        tracing::warn!(error = %e, "HTTP accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let service = TowerToHyperService::new(routes.borrow().clone());
                let shutdown = shutdown.clone();
                conns.spawn(async move {
                    let mut builder = hyper::server::conn::http1::Builder::new();
                    builder.timer(TokioTimer::new()).header_read_timeout(header_timeout);
                    let conn = builder.serve_connection(TokioIo::new(stream), service);
                    let mut conn = std::pin::pin!(conn);
                    tokio::select! {
                        _ = conn.as_mut() => {}
                        _ = shutdown.cancelled() => {
                            conn.as_mut().graceful_shutdown();
                            let _ = tokio::time::timeout(SHUTDOWN_GRACE, conn).await;
                        }
                    }
                });
            }
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
    while conns.join_next().await.is_some() {}
}
