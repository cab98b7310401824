//! The web console on the admin listener: server-rendered HTML pages
//! (Rules, Alerts, Status) for operators, read-only, no JavaScript.
//!
//! - `pages` builds what each page shows from [`Shared`]; the templates
//!   (`templates/*.html`, embedded) render it with minijinja, whose
//!   auto-escaping is on for every `.html` template: event fields, messages,
//!   labels and rule text are user-controlled and are always escaped. The
//!   pages carry a Content-Security-Policy that allows no script at all.
//! - With an admin token configured, every page needs either the same
//!   `Authorization: Bearer <token>` header as `/v1/*`, or the session
//!   cookie that `POST /login` sets after checking the token. The cookie is
//!   an HMAC of the token, not the token, and opens only the console's
//!   pages: `/v1/*` keeps requiring the header.
//!
//! Invariant: the console never changes daemon state; it reads the same
//! published views as `/v1/*` and takes each lock only to copy out.

mod format;
mod pages;

use std::sync::{Arc, OnceLock};
use std::time::Instant;

use axum::Router;
use axum::extract::{Form, Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use hmac::{Hmac, KeyInit, Mac};
use minijinja::value::Serde;
use minijinja::{AutoEscape, Environment, UndefinedBehavior, context};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::daemon::Shared;

/// The session cookie's name.
const COOKIE: &str = "tocsin_console";
/// What the session cookie's HMAC is taken over (the key is the token).
const SESSION_MESSAGE: &[u8] = b"tocsin console session v1";
/// No script, no frames, styles and forms from this origin only.
const CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; \
                   base-uri 'none'; frame-ancestors 'none'";
const STYLE: &str = include_str!("style.css");
const TEMPLATES: [(&str, &str); 8] = [
    ("base.html", include_str!("templates/base.html")),
    ("macros.html", include_str!("templates/macros.html")),
    ("rules.html", include_str!("templates/rules.html")),
    ("rule.html", include_str!("templates/rule.html")),
    ("alerts.html", include_str!("templates/alerts.html")),
    ("alert.html", include_str!("templates/alert.html")),
    ("status.html", include_str!("templates/status.html")),
    ("message.html", include_str!("templates/message.html")),
];

#[derive(Clone)]
struct Console {
    shared: Arc<Shared>,
    /// The admin token; `None`: the console is open, like `/v1/*`.
    token: Option<Arc<str>>,
    /// The session cookie's expected value (derived from the token).
    session: Option<Arc<str>>,
    /// When the router was built (at start): the uptime's origin.
    started: Instant,
}

/// The console's routes, to merge into the admin router.
pub fn router(shared: Arc<Shared>, token: Option<String>) -> Router {
    let state = Console {
        shared,
        session: token.as_deref().map(|t| Arc::from(session_value(t))),
        token: token.map(Arc::from),
        started: Instant::now(),
    };
    let pages = Router::new()
        .route("/rules", get(rules))
        .route("/rules/{name}", get(rule))
        .route("/alerts", get(alerts))
        .route("/alerts/{id}", get(alert))
        .route("/status", get(status))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_login));
    Router::new()
        .route("/", get(home))
        .route("/console.css", get(stylesheet))
        .route("/login", get(login_form).post(login))
        .route("/logout", post(logout))
        .merge(pages)
        .with_state(state)
}

fn templates() -> &'static Environment<'static> {
    static ENV: OnceLock<Environment<'static>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Environment::new();
        env.set_auto_escape_callback(|name| {
            if name.ends_with(".html") {
                AutoEscape::Html
            } else {
                AutoEscape::None
            }
        });
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.add_filter("urlencode", format::url_component);
        for (name, text) in TEMPLATES {
            // The templates are part of the binary and covered by the
            // console tests; a broken one renders as a 500 naming it.
            if let Err(e) = env.add_template(name, text) {
                tracing::error!(template = name, error = %e, "Console template does not compile");
            }
        }
        env
    })
}

/// What every page gets besides its own context.
#[derive(Serialize)]
struct Frame {
    /// The nav entry to mark as current (`""`: none).
    nav: &'static str,
    title: String,
    version: &'static str,
    /// Whether to offer "Log out" (a token is configured).
    login: bool,
}

fn render(status: StatusCode, template: &str, frame: Frame, page: impl Serialize) -> Response {
    let rendered = templates()
        .get_template(template)
        .and_then(|t| t.render(context! { frame => Serde(frame), page => Serde(page) }));
    match rendered {
        Ok(body) => html(status, body),
        Err(e) => {
            tracing::error!(template, error = %e, "Console page failed to render");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("console page {template} failed to render: {e}"),
            )
                .into_response()
        }
    }
}

fn frame(console: &Console, nav: &'static str, title: impl Into<String>) -> Frame {
    Frame {
        nav,
        title: title.into(),
        version: env!("CARGO_PKG_VERSION"),
        login: console.token.is_some(),
    }
}

fn html(status: StatusCode, body: String) -> Response {
    let mut r = (status, body).into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

fn redirect(to: &str, cookie: Option<String>) -> Response {
    let mut r = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(to) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    if let Some(c) = cookie.and_then(|c| HeaderValue::from_str(&c).ok()) {
        r.headers_mut().insert(header::SET_COOKIE, c);
    }
    r
}

fn not_found(console: &Console, nav: &'static str, what: String) -> Response {
    render(
        StatusCode::NOT_FOUND,
        "message.html",
        frame(console, nav, "Not found"),
        context! { heading => "Not found", text => what, login_form => false },
    )
}

// ---- Authentication ----

/// The session cookie's value for a token: hex HMAC-SHA256(token, message).
fn session_value(token: &str) -> String {
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(token.as_bytes()) else {
        // HMAC takes keys of any length; unreachable.
        return String::new();
    };
    mac.update(SESSION_MESSAGE);
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Whether the request may see the console: no token configured, the
/// admin bearer header, or the session cookie.
fn admitted(console: &Console, headers: &HeaderMap) -> bool {
    let (Some(token), Some(session)) = (&console.token, &console.session) else {
        return true;
    };
    if crate::source::http::authorized(headers, Some(token)) {
        return true;
    }
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().strip_prefix(COOKIE)?.strip_prefix('='))
        .any(|v| constant_time_eq(v.as_bytes(), session.as_bytes()))
}

async fn require_login(State(console): State<Console>, req: Request, next: Next) -> Response {
    if admitted(&console, req.headers()) {
        return next.run(req).await;
    }
    let next_path = req
        .uri()
        .path_and_query()
        .map_or("/alerts".to_string(), |p| p.as_str().to_string());
    login_page(&console, StatusCode::UNAUTHORIZED, &next_path, None)
}

fn login_page(console: &Console, status: StatusCode, next: &str, error: Option<&str>) -> Response {
    let mut r = render(
        status,
        "message.html",
        frame(console, "", "Log in"),
        context! {
            heading => "Log in",
            text => "This console needs the daemon's admin token.",
            login_form => true,
            next => safe_next(next),
            error => error,
        },
    );
    if status == StatusCode::UNAUTHORIZED {
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"tocsin\""),
        );
    }
    r
}

/// A local path to return to after login; anything else (another host,
/// `//host`, a scheme) becomes `/alerts`, so login cannot redirect away.
fn safe_next(next: &str) -> &str {
    let local = next.starts_with('/')
        && !next.starts_with("//")
        && !next.contains('\\')
        && !next.chars().any(|c| c.is_control());
    if local && next != "/login" {
        next
    } else {
        "/alerts"
    }
}

#[derive(Deserialize)]
struct LoginForm {
    token: String,
    #[serde(default)]
    next: String,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct NextQuery {
    next: String,
}

async fn login_form(State(console): State<Console>, Query(q): Query<NextQuery>) -> Response {
    if console.token.is_none() {
        return redirect(safe_next(&q.next), None);
    }
    login_page(&console, StatusCode::OK, &q.next, None)
}

async fn login(State(console): State<Console>, Form(f): Form<LoginForm>) -> Response {
    let (Some(token), Some(session)) = (&console.token, &console.session) else {
        return redirect(safe_next(&f.next), None);
    };
    if !constant_time_eq(f.token.trim().as_bytes(), token.as_bytes()) {
        return login_page(
            &console,
            StatusCode::UNAUTHORIZED,
            &f.next,
            Some("That is not the admin token."),
        );
    }
    let cookie = format!("{COOKIE}={session}; Path=/; HttpOnly; SameSite=Strict");
    redirect(safe_next(&f.next), Some(cookie))
}

async fn logout() -> Response {
    let cookie = format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0");
    redirect("/login", Some(cookie))
}

// ---- Pages ----

async fn home() -> Response {
    redirect("/alerts", None)
}

async fn stylesheet() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=3600"),
        ],
        STYLE,
    )
        .into_response()
}

async fn rules(State(c): State<Console>) -> Response {
    let page = pages::rules(&c.shared);
    render(
        StatusCode::OK,
        "rules.html",
        frame(&c, "rules", "Rules"),
        page,
    )
}

async fn rule(State(c): State<Console>, Path(name): Path<String>) -> Response {
    match pages::rule(&c.shared, &name) {
        Some(page) => render(
            StatusCode::OK,
            "rule.html",
            frame(&c, "rules", format!("Rule {name}")),
            page,
        ),
        None => not_found(&c, "rules", format!("No rule named “{name}” is loaded.")),
    }
}

async fn alerts(State(c): State<Console>, uri: Uri) -> Response {
    // Parsed here so a malformed query shows every alert instead of a 400.
    let filter = Query::<pages::AlertFilter>::try_from_uri(&uri)
        .map(|Query(f)| f)
        .unwrap_or_default();
    let page = pages::alerts(&c.shared, filter);
    render(
        StatusCode::OK,
        "alerts.html",
        frame(&c, "alerts", "Alerts"),
        page,
    )
}

async fn alert(State(c): State<Console>, Path(id): Path<String>) -> Response {
    match pages::alert(&c.shared, &id) {
        Some(page) => render(
            StatusCode::OK,
            "alert.html",
            frame(&c, "alerts", format!("Alert {id}")),
            page,
        ),
        None => not_found(
            &c,
            "alerts",
            format!("No alert with id “{id}” among the recent alerts."),
        ),
    }
}

async fn status(State(c): State<Console>) -> Response {
    let uptime = i64::try_from(c.started.elapsed().as_millis()).unwrap_or(i64::MAX);
    let page = pages::status(&c.shared, uptime);
    render(
        StatusCode::OK,
        "status.html",
        frame(&c, "status", "Status"),
        page,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn login_never_redirects_off_site() {
        assert_eq!(safe_next("/alerts?rule=x"), "/alerts?rule=x");
        assert_eq!(safe_next("//evil.example/"), "/alerts");
        assert_eq!(safe_next("https://evil.example/"), "/alerts");
        assert_eq!(safe_next("/\\evil.example"), "/alerts");
        assert_eq!(safe_next(""), "/alerts");
        assert_eq!(safe_next("/login"), "/alerts");
    }

    #[test]
    fn the_session_cookie_is_not_the_token() {
        let v = session_value("s3cret");
        assert_eq!(v.len(), 64);
        assert!(!v.contains("s3cret"));
        assert_eq!(v, session_value("s3cret"));
        assert_ne!(v, session_value("other"));
    }

    #[test]
    fn every_template_compiles() {
        for (name, _) in TEMPLATES {
            templates()
                .get_template(name)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
        }
    }
}
