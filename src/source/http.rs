//! `POST /v1/events`: one JSON object, a JSON array of objects, or NDJSON.
//! Answers 202 with per-item rejections once the accepted events are in
//! the write-ahead log, 400 when none was accepted, 401 without the token,
//! 413 over `max_body`, 503 with `Retry-After` while the engine's backlog
//! of logged events is over its budget or the log writer's queue is full.
//! A retried request with the same `Idempotency-Key` gets the first answer;
//! one sent while the first is still in progress waits for it.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::json;
use serde_json::value::RawValue;
use tokio::sync::{mpsc, oneshot};

use super::{Batch, EngineMsg, IdempotencyStore, Ingest, now};
use crate::wal::Idempotent;

/// Default time a client has to send the whole request body.
pub const BODY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// How long a request waits for the engine's backlog to have room before
/// it is answered 503: a short burst is absorbed, while a client that
/// keeps offering more than the engine takes is told to back off instead
/// of queueing without end (its acknowledgements would wait as long).
pub const ADMIT_WAIT: std::time::Duration = std::time::Duration::from_millis(50);

/// Items decoded between yields to the runtime: a large body takes
/// milliseconds to decode, and the other tasks of its worker (small
/// requests, alert deliveries) should not wait for all of it.
const YIELD_EVERY: usize = 128;

pub struct HttpSource {
    pub ingest: Ingest,
    pub token: Option<String>,
    pub max_body: usize,
    /// Answers of accepted requests by idempotency key (durable).
    answers: Arc<IdempotencyStore>,
    body_timeout: std::time::Duration,
}

impl HttpSource {
    pub fn new(
        ingest: Ingest,
        token: Option<String>,
        max_body: usize,
        answers: Arc<IdempotencyStore>,
    ) -> Self {
        HttpSource {
            ingest,
            token,
            max_body,
            answers,
            body_timeout: BODY_TIMEOUT,
        }
    }

    /// Overrides [`BODY_TIMEOUT`].
    pub fn with_body_timeout(mut self, t: Option<std::time::Duration>) -> Self {
        if let Some(t) = t {
            self.body_timeout = t;
        }
        self
    }

    pub fn router(self: Arc<Self>) -> Router {
        Router::new()
            .route("/v1/events", post(ingest))
            .with_state(self)
    }
}

pub(crate) fn error(status: StatusCode, msg: &str) -> Response {
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        json!({ "error": msg }).to_string(),
    )
        .into_response()
}

/// Whether the request carries `Authorization: Bearer <token>`.
pub(crate) fn authorized(headers: &HeaderMap, token: Option<&str>) -> bool {
    let Some(token) = token else {
        return true;
    };
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer)
        .is_some_and(|t| constant_time_eq(t.as_bytes(), token.as_bytes()))
}

/// The credentials of a `Bearer` authorization; the scheme's name is
/// case-insensitive (RFC 9110 11.1), so `bearer x` counts too.
fn bearer(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The items of a body: `(index, bytes)`: NDJSON lines (blank lines
/// counted), array elements, or the one object.
pub fn split_body<'b>(body: &'b [u8], ndjson: bool) -> Vec<(usize, &'b [u8])> {
    let lines = |b: &'b [u8]| -> Vec<(usize, &'b [u8])> {
        let mut v: Vec<(usize, &[u8])> = Vec::with_capacity(b.len() / 128 + 1);
        let mut rest = b;
        while let Some(nl) = super::find_newline(rest) {
            v.push((v.len(), &rest[..nl]));
            rest = &rest[nl + 1..];
        }
        // A final line ending does not start another line.
        if !rest.is_empty() {
            v.push((v.len(), rest));
        }
        v
    };
    if ndjson {
        return lines(body);
    }
    let trimmed = body
        .iter()
        .position(|c| !c.is_ascii_whitespace())
        .map_or(&body[..0], |i| &body[i..]);
    if trimmed.first() == Some(&b'[') {
        if let Ok(items) = serde_json::from_slice::<Vec<&RawValue>>(body) {
            return items
                .into_iter()
                .enumerate()
                .map(|(i, r)| (i, r.get().as_bytes()))
                .collect();
        }
        return vec![(0, body)];
    }
    // One object; several lines of objects without the NDJSON content type
    // are taken as NDJSON (curl --data-binary @file.ndjson).
    if serde_json::from_slice::<&RawValue>(body).is_err() && body.contains(&b'\n') {
        return lines(body);
    }
    vec![(0, body)]
}

async fn ingest(State(src): State<Arc<HttpSource>>, headers: HeaderMap, body: Body) -> Response {
    if !authorized(&headers, src.token.as_deref()) {
        return error(StatusCode::UNAUTHORIZED, "missing or invalid bearer token");
    }
    let too_large = || {
        error(
            StatusCode::PAYLOAD_TOO_LARGE,
            &format!("body larger than max_body ({} bytes)", src.max_body),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > src.max_body) {
        return too_large();
    }
    let idem_key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let claim = match &idem_key {
        Some(k) => match src.answers.claim(k).await {
            Ok(claim) => Some(claim),
            Err((status, body)) => {
                let status = StatusCode::from_u16(status).unwrap_or(StatusCode::ACCEPTED);
                return json_response(status, body);
            }
        },
        None => None,
    };
    let bytes = match tokio::time::timeout(
        src.body_timeout,
        axum::body::to_bytes(body, src.max_body),
    )
    .await
    {
        Ok(Ok(b)) => b,
        Ok(Err(_)) => return too_large(),
        Err(_) => {
            return error(
                StatusCode::REQUEST_TIMEOUT,
                &format!("request body not received within {:?}", src.body_timeout),
            );
        }
    };
    // The engine is behind: wait a little for it, then refuse before
    // spending time on decoding.
    if src.ingest.backlog.full()
        && tokio::time::timeout(ADMIT_WAIT, src.ingest.backlog.until_room())
            .await
            .is_err()
    {
        return overloaded();
    }
    let ndjson = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("ndjson"));
    let at = now();
    let items = split_body(&bytes, ndjson);
    let mut events = Vec::with_capacity(items.len());
    let mut rejected = Vec::new();
    for (index, item) in items {
        if index % YIELD_EVERY == YIELD_EVERY - 1 {
            tokio::task::yield_now().await;
        }
        match src.ingest.decode("http", item, at) {
            Ok(Some(ev)) => events.push(ev),
            Ok(None) => {}
            Err(reason) => rejected.push(json!({"index": index, "reason": reason.as_str()})),
        }
    }
    let accepted = events.len();
    let status = if accepted > 0 {
        StatusCode::ACCEPTED
    } else {
        StatusCode::BAD_REQUEST
    };
    let body = json!({"accepted": accepted, "rejected": rejected}).to_string();
    if accepted > 0 {
        let (done, wait) = oneshot::channel();
        let idempotent = idem_key.map(|key| Idempotent {
            key,
            status: status.as_u16(),
            body: body.clone(),
        });
        let msg = EngineMsg::Batch(
            Batch::new("http", events, None, idempotent, Some(done))
                .prepared_by(&src.ingest.preparer),
        );
        match src.ingest.tx.try_send(msg) {
            // Counted once taken: a request refused here (503) is not.
            Ok(()) => src.ingest.metrics.received("http", accepted as u64),
            Err(mpsc::error::TrySendError::Full(_)) => return overloaded(),
            Err(mpsc::error::TrySendError::Closed(_)) => {
                return error(StatusCode::SERVICE_UNAVAILABLE, "shutting down");
            }
        }
        let written = match claim {
            // The claim is held until the batch is answered even if this
            // request goes away meanwhile: a retry waits for that answer.
            Some(claim) => tokio::spawn(async move {
                let written = wait.await.is_ok();
                drop(claim);
                written
            })
            .await
            .unwrap_or(false),
            None => wait.await.is_ok(),
        };
        if !written {
            // The log writer refused the batch (a failed write or sync,
            // logged there) or is gone.
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                "the events could not be written to the write-ahead log; retry later",
            );
        }
    }
    json_response(status, body)
}

/// 503 with `Retry-After`: the log writer's queue or the engine's backlog
/// is full. Nothing of the request was taken.
fn overloaded() -> Response {
    retry_later("engine overloaded, retry later")
}

/// 503 with `Retry-After: 1` and `msg`: the daemon cannot take the request
/// now (overloaded, or still recovering) and the client should send it
/// again.
pub(crate) fn retry_later(msg: &str) -> Response {
    let mut r = error(StatusCode::SERVICE_UNAVAILABLE, msg);
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    r
}

fn json_response(status: StatusCode, body: String) -> Response {
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::split_body;

    #[test]
    fn the_bearer_scheme_is_case_insensitive() {
        use super::bearer;
        assert_eq!(bearer("Bearer abc"), Some("abc"));
        assert_eq!(bearer("bearer abc"), Some("abc"));
        assert_eq!(bearer("BEARER  abc "), Some("abc"));
        assert_eq!(bearer("Basic abc"), None);
        assert_eq!(bearer("Bearerabc"), None);
    }

    fn items(body: &str, ndjson: bool) -> Vec<(usize, String)> {
        split_body(body.as_bytes(), ndjson)
            .into_iter()
            .map(|(i, b)| (i, String::from_utf8_lossy(b).into_owned()))
            .collect()
    }

    #[test]
    fn ndjson_lines_are_indexed_with_blank_lines_counted() {
        let v = items("{\"a\":1}\n\n{\"b\":2}\n", true);
        assert_eq!(
            v,
            vec![
                (0, "{\"a\":1}".into()),
                (1, "".into()),
                (2, "{\"b\":2}".into())
            ]
        );
    }

    #[test]
    fn lines_of_every_length_split_like_a_plain_split() {
        // Line ends at every offset of the word-at-a-time search.
        for len in 0..40 {
            let line = "x".repeat(len);
            let body = format!("{line}\n\n{line}\n{line}");
            let want: Vec<(usize, String)> = body
                .split('\n')
                .enumerate()
                .filter(|(i, l)| !(*i == 3 && l.is_empty()))
                .map(|(i, l)| (i, l.to_string()))
                .collect();
            assert_eq!(items(&body, true), want, "{len}");
        }
        assert_eq!(items("a\n", true), vec![(0, "a".into())]);
        assert_eq!(items("\n", true), vec![(0, "".into())]);
        assert!(items("", true).is_empty());
    }

    #[test]
    fn array_elements_keep_their_text() {
        let v = items("[ {\"a\":1} , 3 ]", false);
        assert_eq!(v, vec![(0, "{\"a\":1}".into()), (1, "3".into())]);
    }

    #[test]
    fn one_object_is_one_item() {
        assert_eq!(
            items(" {\"a\":1}\n", false),
            vec![(0, " {\"a\":1}\n".into())]
        );
    }
}
