//! The operator dashboard at `/dashboard`: sign-in, the pages (one embedded shell whose script
//! draws the page its path names and refreshes it by polling), their JSON data and the actions
//! (requeue, delete, requeue all, sign out). Everything but the sign-in form, the style sheet and
//! the icon needs a session; every action is a POST with the session's CSRF token.

mod assets;
mod data;
mod session;

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde_json::json;

use crate::context::AppContext;
use session::{Action, LoginLimiter, NOT_CONFIGURED, OperatorSession};

use assets::{ASSETS, Asset};
/// The most bytes a sign-in form may have: it is read before anyone is signed in.
const LOGIN_BODY_MAX: usize = 4096;

pub(super) fn routes() -> Router<AppContext> {
    let a = &*ASSETS;
    Router::new()
        .route("/dashboard", get(page))
        .route("/dashboard/workers", get(page))
        .route("/dashboard/failed", get(page))
        .route("/dashboard/jobs/{id}", get(page))
        .route("/dashboard/queues/{queue}/{state}", get(page))
        .route("/dashboard/find", get(page))
        .route("/dashboard/scheduler", get(page))
        .route("/dashboard/calls", get(page))
        .route("/dashboard/login", get(login_form).post(login))
        .route("/dashboard/logout", post(logout))
        .route(&a.css.path, get(|| async { serve(&ASSETS.css) }))
        .route(&a.icon.path, get(|| async { serve(&ASSETS.icon) }))
        .route(&a.js.path, get(js))
        .merge(data::routes())
        .layer(Extension(Arc::new(LoginLimiter::default())))
        .layer(axum::middleware::map_response(guard_headers))
        // gzip for pages, assets and data alike. No answer mixes a secret with what a stranger
        // could make it reflect (BREACH): the shell's only secret is the CSRF token beside fixed
        // text, and the data answers carry no token.
        .layer(tower_http::compression::CompressionLayer::new())
}

/// Every dashboard answer: not framed, no inline script, nothing sent elsewhere, and not cached
/// unless it says otherwise (only the content-hashed assets do).
async fn guard_headers(mut response: Response) -> Response {
    let h = response.headers_mut();
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    for (name, value) in [
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    ] {
        h.insert(name, HeaderValue::from_static(value));
    }
    response
}

fn html(status: StatusCode, body: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        body,
    )
        .into_response()
}

/// The page shell, with this session's CSRF token for the script's actions.
async fn page(session: OperatorSession) -> Response {
    html(
        StatusCode::OK,
        ASSETS.app_html.replace("{{csrf}}", &session.csrf),
    )
}

fn serve(asset: &'static Asset) -> Response {
    (
        [
            (header::CONTENT_TYPE, asset.content_type),
            (header::CACHE_CONTROL, asset.cache_control),
        ],
        asset.body,
    )
        .into_response()
}

async fn js(_session: OperatorSession) -> Response {
    serve(&ASSETS.js)
}

/// The sign-in form with `message` (escaped: it never carries input, but stays safe if it did).
fn login_page(status: StatusCode, message: &str) -> Response {
    let escaped = message
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;");
    let shown = if escaped.is_empty() {
        String::new()
    } else {
        format!("<p class=\"error\" role=\"alert\">{escaped}</p>")
    };
    html(status, ASSETS.login_html.replace("{{message}}", &shown))
}

async fn login_form(State(ctx): State<AppContext>) -> Response {
    if ctx.settings.dashboard.secret(&ctx.settings.api).is_none() {
        return login_page(StatusCode::SERVICE_UNAVAILABLE, NOT_CONFIGURED);
    }
    login_page(StatusCode::OK, "")
}

/// Signs in with the form field `token`: 303 to the dashboard with the session cookie, 401 for
/// a wrong token, 429 once an address has failed too often this minute (checked before the
/// token is even read).
async fn login(
    State(ctx): State<AppContext>,
    Extension(limiter): Extension<Arc<LoginLimiter>>,
    request: Request,
) -> Response {
    let settings = &ctx.settings.dashboard;
    let Some(secret) = settings.secret(&ctx.settings.api) else {
        return login_page(StatusCode::SERVICE_UNAVAILABLE, NOT_CONFIGURED);
    };
    let ip = session::client_ip(request.extensions());
    if let Err(wait) = limiter.check(ip, settings.login_failures_per_minute.get()) {
        let mut r = login_page(
            StatusCode::TOO_MANY_REQUESTS,
            "Too many failed sign-ins from this address; wait a minute.",
        );
        if let Ok(v) = HeaderValue::from_str(&wait.as_secs().max(1).to_string()) {
            r.headers_mut().insert(header::RETRY_AFTER, v);
        }
        return r;
    }
    let Ok(body) = axum::body::to_bytes(Body::new(request.into_body()), LOGIN_BODY_MAX).await
    else {
        return login_page(StatusCode::PAYLOAD_TOO_LARGE, "The form is too large.");
    };
    let token = form_urlencoded::parse(&body)
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default();
    if token.is_empty() || !session::secret_matches(&token, secret) {
        limiter.failed(ip);
        tracing::warn!(client = %ip, "dashboard: failed sign-in");
        return login_page(StatusCode::UNAUTHORIZED, "That token is not right.");
    }
    let id = uuid::Uuid::new_v4().simple().to_string();
    let ttl = settings.session_ttl_secs;
    if let Err(e) = ctx.jobs.sessions().open_session(&id, ttl).await {
        tracing::warn!(error = %e, "dashboard: cannot record a session");
        return login_page(
            StatusCode::SERVICE_UNAVAILABLE,
            "Redis cannot be reached; try again shortly.",
        );
    }
    let expires = chrono::Utc::now().timestamp() + i64::try_from(ttl).unwrap_or(i64::MAX / 2);
    let mut r = Redirect::to("/dashboard").into_response();
    if let Ok(v) = HeaderValue::from_str(&session::cookie(&ctx, secret, &id, expires, ttl)) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    tracing::info!(client = %ip, session = &id[..8], "dashboard: signed in");
    r
}

/// Ends the session in Redis (its cookie is refused from now on, wherever it was copied) and
/// clears the cookie.
async fn logout(State(ctx): State<AppContext>, Action(session): Action) -> Response {
    tracing::info!(
        session = session.id.get(..8).unwrap_or_default(),
        "dashboard: signed out"
    );
    if let Err(e) = ctx.jobs.sessions().close_session(&session.id).await {
        return crate::http::ApiError::from(e).into_response();
    }
    let mut r = Json(json!({"signed_out": true, "login": session::LOGIN_PATH})).into_response();
    if let Ok(v) = HeaderValue::from_str(&session::cleared_cookie()) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}
