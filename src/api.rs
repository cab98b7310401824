//! The admin HTTP API (daemon.md section 3): `/healthz`, `/readyz`,
//! `/metrics`, and behind the admin token `/v1/rules`, `/v1/alerts`,
//! `/v1/reload` and the web console ([`crate::console`], at `/`).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::json;

use crate::daemon::{Shared, reload};
use crate::source::http::{authorized, error, retry_later};

#[derive(Clone)]
struct Api {
    shared: Arc<Shared>,
    token: Option<String>,
}

pub fn router(shared: Arc<Shared>, token: Option<String>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/v1/rules", get(rules))
        .route("/v1/alerts", get(alerts))
        .route("/v1/reload", post(reload_now))
        .with_state(Api {
            shared: shared.clone(),
            token: token.clone(),
        })
        .merge(crate::console::router(shared, token))
}

/// What every listener answers beyond its routes: JSON errors like the
/// rest of the API (daemon.md 3), 404 for an unknown path and 405 (with
/// `Allow`) for a known path with another method. Applied last, once the
/// routes of the listener are merged.
pub fn with_error_answers(router: Router) -> Router {
    router
        .fallback(|| async { error(StatusCode::NOT_FOUND, "no such endpoint") })
        .method_not_allowed_fallback(|| async {
            error(
                StatusCode::METHOD_NOT_ALLOWED,
                "method not allowed for this endpoint",
            )
        })
}

/// The routes of the listener that shares the admin API with an HTTP
/// source while recovery runs: the admin API (`/readyz` answers 503), and
/// 503 with `Retry-After` for events. Each answer closes its connection,
/// so that the client's next request reaches the source once it is up.
pub fn recovering(admin: Router) -> Router {
    with_error_answers(admin.route("/v1/events", post(not_yet))).layer(
        axum::middleware::map_response(|mut r: Response| async move {
            r.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            r
        }),
    )
}

async fn not_yet() -> Response {
    retry_later("recovering the state from the write-ahead log; retry later")
}

fn json_ok(status: StatusCode, body: String) -> Response {
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

async fn healthz() -> Response {
    json_ok(StatusCode::OK, json!({"status": "ok"}).to_string())
}

async fn readyz(State(api): State<Api>) -> Response {
    if api.shared.ready.load(Ordering::SeqCst) {
        json_ok(StatusCode::OK, json!({"ready": true}).to_string())
    } else {
        json_ok(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"ready": false}).to_string(),
        )
    }
}

async fn metrics(State(api): State<Api>) -> Response {
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        api.shared.metrics.encode(),
    )
        .into_response()
}

fn denied(api: &Api, headers: &HeaderMap) -> Option<Response> {
    (!authorized(headers, api.token.as_deref()))
        .then(|| error(StatusCode::UNAUTHORIZED, "missing or invalid bearer token"))
}

async fn rules(State(api): State<Api>, headers: HeaderMap) -> Response {
    if let Some(r) = denied(&api, &headers) {
        return r;
    }
    let body = json!({
        "rules": api.shared.rules_view(),
        "last_reload": api.shared.last_reload(),
    });
    json_ok(StatusCode::OK, body.to_string())
}

#[derive(Deserialize)]
struct AlertsQuery {
    limit: Option<usize>,
}

async fn alerts(
    State(api): State<Api>,
    headers: HeaderMap,
    q: Result<Query<AlertsQuery>, QueryRejection>,
) -> Response {
    if let Some(r) = denied(&api, &headers) {
        return r;
    }
    let Ok(Query(q)) = q else {
        return error(
            StatusCode::BAD_REQUEST,
            "`limit` must be a non-negative whole number",
        );
    };
    let list = api.shared.recent_alerts(q.limit.unwrap_or(100));
    json_ok(StatusCode::OK, format!("[{}]", list.join(",")))
}

async fn reload_now(State(api): State<Api>, headers: HeaderMap) -> Response {
    if let Some(r) = denied(&api, &headers) {
        return r;
    }
    if !api.shared.ready.load(Ordering::SeqCst) {
        return not_yet().await;
    }
    match reload::reload(&api.shared).await {
        Ok(n) => json_ok(StatusCode::OK, json!({"ok": true, "rules": n}).to_string()),
        Err(errors) => json_ok(
            StatusCode::UNPROCESSABLE_ENTITY,
            json!({"ok": false, "errors": errors}).to_string(),
        ),
    }
}
