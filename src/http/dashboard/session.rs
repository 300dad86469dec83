//! Dashboard sessions: a signed cookie naming a session that Redis keeps (so signing out ends
//! it everywhere), the CSRF token every action carries, and the limit on failed sign-ins.
//!
//! The cookie is `<id>.<expiry>.<HMAC-SHA256(key, id.expiry)>`, `HttpOnly`, `SameSite=Strict`,
//! `Path=/dashboard`. The key is derived from the secret that signs operators in, so changing
//! the password or token signs everyone out. The CSRF token is an HMAC of the session id under
//! the same key: nothing else to store, and useless without the cookie.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use hmac::Hmac;
use hmac::Mac;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::context::AppContext;
use crate::http::ApiError;

pub(super) const COOKIE: &str = "prosaas_dashboard";
/// Where a signed-out browser is sent.
pub(super) const LOGIN_PATH: &str = "/dashboard/login";

/// The key sessions and CSRF tokens are signed with, from the sign-in secret.
fn key(secret: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"prosaas dashboard session v1\0");
    h.update(secret.as_bytes());
    h.finalize().into()
}

fn mac_hex(key: &[u8; 32], parts: &[&[u8]]) -> String {
    let mac: Hmac<Sha256> = crate::mac::hmac(key, parts);
    crate::hex::hex(&mac.finalize().into_bytes())
}

/// Whether `given` is the sign-in secret, in constant time.
pub(super) fn secret_matches(given: &str, secret: &str) -> bool {
    given.as_bytes().ct_eq(secret.as_bytes()).into()
}

/// The `Set-Cookie` value of a new session.
pub(super) fn cookie(ctx: &AppContext, secret: &str, id: &str, expires: i64, ttl: u64) -> String {
    let sig = mac_hex(
        &key(secret),
        &[id.as_bytes(), b".", expires.to_string().as_bytes()],
    );
    let secure = if ctx.settings.dashboard.secure_cookie {
        "; Secure"
    } else {
        ""
    };
    format!(
        "{COOKIE}={id}.{expires}.{sig}; Path=/dashboard; Max-Age={ttl}; HttpOnly; SameSite=Strict{secure}"
    )
}

/// The `Set-Cookie` value that removes the session cookie.
pub(super) fn cleared_cookie() -> String {
    format!("{COOKIE}=; Path=/dashboard; Max-Age=0; HttpOnly; SameSite=Strict")
}

/// Session cookies tried per request. A cookie planted for a parent domain or another path
/// comes before ours in the header, so a valid one is looked for among several; a few bound the
/// HMACs a request can ask for.
const MAX_SESSION_COOKIES: usize = 8;

/// The session id a well-signed, unexpired cookie names, among every cookie of our name.
fn verified_id(headers: &HeaderMap, secret: &str, now: i64) -> Option<String> {
    let key = key(secret);
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().strip_prefix(COOKIE)?.strip_prefix('='))
        .take(MAX_SESSION_COOKIES)
        .find_map(|value| verified_value(value, &key, now))
}

/// The session id of one cookie value, if it is well signed and unexpired.
fn verified_value(value: &str, key: &[u8; 32], now: i64) -> Option<String> {
    let mut parts = value.splitn(3, '.');
    let (id, expires, sig) = (parts.next()?, parts.next()?, parts.next()?);
    if id.len() != 32 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let exp: i64 = expires.parse().ok()?;
    let expected = mac_hex(key, &[id.as_bytes(), b".", expires.as_bytes()]);
    let good: bool = sig.as_bytes().ct_eq(expected.as_bytes()).into();
    (good && exp > now).then(|| id.to_owned())
}

/// A signed-in operator: take it as a handler parameter to require a session.
pub(super) struct OperatorSession {
    pub(super) id: String,
    /// The token this session's actions must carry (`X-CSRF-Token`).
    pub(super) csrf: String,
}

/// Why a request has no session: pages redirect to the sign-in form, data answers 401.
pub(super) enum NoSession {
    SignedOut {
        page: bool,
    },
    /// No secret signs anyone in: pages go to the sign-in form, which says so.
    NotConfigured {
        page: bool,
    },
    Unavailable,
}

impl IntoResponse for NoSession {
    fn into_response(self) -> Response {
        match self {
            Self::SignedOut { page: true } | Self::NotConfigured { page: true } => {
                Redirect::to(LOGIN_PATH).into_response()
            }
            Self::SignedOut { page: false } => ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "no dashboard session: sign in at /dashboard/login",
            )
            .into_response(),
            Self::NotConfigured { page: false } => not_configured().into_response(),
            Self::Unavailable => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "Redis cannot be reached to check the session",
            )
            .into_response(),
        }
    }
}

/// What an operator must set before anyone can sign in.
pub(super) const NOT_CONFIGURED: &str =
    "The dashboard is not configured: set DASHBOARD_PASSWORD or INTERNAL_API_TOKEN.";

pub(super) fn not_configured() -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "not_configured",
        NOT_CONFIGURED,
    )
}

impl FromRequestParts<AppContext> for OperatorSession {
    type Rejection = NoSession;

    async fn from_request_parts(
        parts: &mut Parts,
        ctx: &AppContext,
    ) -> Result<Self, Self::Rejection> {
        let page = !parts.uri.path().starts_with("/dashboard/api/");
        let secret = ctx
            .settings
            .dashboard
            .secret(&ctx.settings.api)
            .ok_or(NoSession::NotConfigured { page })?;
        let now = chrono::Utc::now().timestamp();
        let id = verified_id(&parts.headers, secret, now).ok_or(NoSession::SignedOut { page })?;
        match ctx.jobs.sessions().session_open(&id).await {
            Ok(true) => {}
            Ok(false) => return Err(NoSession::SignedOut { page }),
            Err(e) => {
                tracing::warn!(error = %e, "dashboard: cannot check a session");
                return Err(NoSession::Unavailable);
            }
        }
        let csrf = mac_hex(&key(secret), &[b"csrf.", id.as_bytes()]);
        Ok(OperatorSession { id, csrf })
    }
}

/// A signed-in operator's action: a session, and the session's CSRF token in `X-CSRF-Token`.
pub(super) struct Action(pub(super) OperatorSession);

impl FromRequestParts<AppContext> for Action {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        ctx: &AppContext,
    ) -> Result<Self, Self::Rejection> {
        let session = OperatorSession::from_request_parts(parts, ctx)
            .await
            .map_err(IntoResponse::into_response)?;
        let given = parts
            .headers
            .get("x-csrf-token")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        if bool::from(given.as_bytes().ct_eq(session.csrf.as_bytes())) {
            Ok(Action(session))
        } else {
            Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "csrf",
                "the action lacks this session's X-CSRF-Token",
            )
            .into_response())
        }
    }
}

/// The client's address, when the listener recorded it (see `serve.rs`).
pub(super) fn client_ip(extensions: &axum::http::Extensions) -> IpAddr {
    extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| c.0.ip())
}

/// Failed sign-ins per client address, in fixed one-minute windows, for a bounded number of
/// addresses: past that, new addresses share one window (so a flood from many addresses
/// throttles itself rather than growing the map).
#[derive(Default)]
pub(super) struct LoginLimiter {
    windows: Mutex<HashMap<IpAddr, (Instant, u32)>>,
}

const WINDOW: Duration = Duration::from_secs(60);
const MAX_TRACKED: usize = 10_000;
/// Stands for every address beyond [`MAX_TRACKED`].
const OVERFLOW: IpAddr = IpAddr::V4(Ipv4Addr::BROADCAST);

/// The window `ip` counts in: its own while it has one or there is room, else the shared one.
fn window_of(windows: &HashMap<IpAddr, (Instant, u32)>, ip: IpAddr) -> IpAddr {
    if windows.contains_key(&ip) || windows.len() < MAX_TRACKED {
        ip
    } else {
        OVERFLOW
    }
}

impl LoginLimiter {
    /// `Err(retry after)` when `ip` has used up its failures for this window.
    pub(super) fn check(&self, ip: IpAddr, per_minute: u32) -> Result<(), Duration> {
        let windows = self.windows.lock().unwrap_or_else(PoisonError::into_inner);
        match windows.get(&window_of(&windows, ip)) {
            Some((start, n)) if *n >= per_minute && start.elapsed() < WINDOW => {
                Err(WINDOW.saturating_sub(start.elapsed()))
            }
            _ => Ok(()),
        }
    }

    /// Counts a failed sign-in from `ip`.
    pub(super) fn failed(&self, ip: IpAddr) {
        let mut windows = self.windows.lock().unwrap_or_else(PoisonError::into_inner);
        if windows.len() >= MAX_TRACKED {
            windows.retain(|_, (start, _)| start.elapsed() < WINDOW);
        }
        let key = window_of(&windows, ip);
        let entry = windows.entry(key).or_insert((Instant::now(), 0));
        if entry.0.elapsed() >= WINDOW {
            *entry = (Instant::now(), 0);
        }
        entry.1 += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(cookie: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, cookie.parse().unwrap());
        h
    }

    #[test]
    fn only_a_cookie_signed_with_the_secret_and_unexpired_names_a_session() {
        let id = "0123456789abcdef0123456789abcdef";
        let sig = mac_hex(&key("s3cret"), &[id.as_bytes(), b".", b"2000"]);
        let good = format!("other=1; {COOKIE}={id}.2000.{sig}");
        assert_eq!(
            verified_id(&headers(&good), "s3cret", 1999).as_deref(),
            Some(id)
        );
        assert_eq!(
            verified_id(&headers(&good), "s3cret", 2000),
            None,
            "expired"
        );
        assert_eq!(
            verified_id(&headers(&good), "other", 1999),
            None,
            "another secret"
        );
        let stretched = format!("{COOKIE}={id}.9000.{sig}");
        assert_eq!(
            verified_id(&headers(&stretched), "s3cret", 1999),
            None,
            "expiry edited"
        );
        assert_eq!(verified_id(&headers("x=1"), "s3cret", 1999), None);
        // A planted cookie of the same name before ours does not hide it.
        let planted = format!("{COOKIE}=junk; {COOKIE}={id}.1.{sig}; {COOKIE}={id}.2000.{sig}");
        assert_eq!(
            verified_id(&headers(&planted), "s3cret", 1999).as_deref(),
            Some(id)
        );
        let mut two = headers(&format!("{COOKIE}=junk"));
        two.append(header::COOKIE, good.parse().unwrap());
        assert_eq!(verified_id(&two, "s3cret", 1999).as_deref(), Some(id));
        let flood = format!(
            "{}{COOKIE}={id}.2000.{sig}",
            format!("{COOKIE}=junk; ").repeat(8)
        );
        assert_eq!(
            verified_id(&headers(&flood), "s3cret", 1999),
            None,
            "only the first few are tried"
        );
    }

    #[test]
    fn failed_sign_ins_are_limited_per_address() {
        let l = LoginLimiter::default();
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        for _ in 0..3 {
            assert!(l.check(a, 3).is_ok());
            l.failed(a);
        }
        let wait = l.check(a, 3).unwrap_err();
        assert!(wait <= WINDOW && wait > Duration::from_secs(50), "{wait:?}");
        assert!(l.check(b, 3).is_ok(), "another address is not held up");
    }
}
