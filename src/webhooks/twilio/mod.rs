//! Twilio's request signature (`X-Twilio-Signature`), checked as Twilio's own `RequestValidator`
//! (twilio-python) checks it: base64 of an HMAC (SHA-1, or SHA-256 when
//! `X-Twilio-Webhooks-Signature-Settings` names `HMAC_SHA256`), keyed with the auth token, over
//! the full public URL followed by each POST parameter name with each of its distinct values,
//! names and values sorted. The URL is tried with and without its default port, since Twilio signs
//! either. A JSON body is not signed as parameters: the URL carries `bodySHA256`, the hex SHA-256
//! of the body, and the signature covers the URL alone. The public URL is configuration
//! (`PUBLIC_BASE_URL`): behind a proxy the service sees another scheme and host than Twilio used.
//!
//! `tests/fixtures/twilio_signatures.json` holds cases computed with twilio-python
//! (`scripts/twilio-fixtures.py`); a test holds this module to them.
//!
//! This module is Twilio's one home: verification, the call SID rule, the de-dupe keys and the
//! jobs its callbacks become. The HTTP layer only extracts the request and answers.

use std::collections::BTreeSet;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, Mac};
use serde_json::{Map, Value};
use sha1::Sha1;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::Event;
use crate::hex::hex;
use crate::jobs::NewJob;

pub mod stream;

/// Whether `sid` is a call SID: 1-64 ASCII letters and digits (Twilio's are `CA` and 32 hex
/// digits). The one rule for every place a call SID arrives: callbacks, media streams, jobs.
pub fn is_valid_call_sid(sid: &str) -> bool {
    !sid.is_empty() && sid.len() <= 64 && sid.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// The de-dupe key of a call's status callback: one job per call and status.
pub fn status_key(call_sid: &str, status: &str) -> String {
    format!("twilio:{call_sid}:{status}")
}

/// The de-dupe key of a call's recording: Twilio's recording callback and the calls role's own
/// recording of the same call are one event.
pub fn recording_key(call_sid: &str) -> String {
    format!("recording:{call_sid}")
}

fn field<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// The call SID of a callback's parameters, or why not.
pub fn call_sid(params: &[(String, String)]) -> Result<&str, String> {
    field(params, "CallSid")
        .filter(|s| is_valid_call_sid(s))
        .ok_or_else(|| "form field CallSid is missing or malformed".to_owned())
}

fn as_object(params: &[(String, String)]) -> Map<String, Value> {
    params
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect()
}

/// A status callback (`CallSid`, `CallStatus`) as a `twilio_callback` job on `queue`.
pub fn status_event(params: &[(String, String)], queue: &str) -> Result<Event, String> {
    let sid = call_sid(params)?;
    let status = field(params, "CallStatus")
        .filter(|s| {
            !s.is_empty()
                && s.len() <= 64
                && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
        .ok_or("form field CallStatus is missing or malformed")?
        .to_ascii_lowercase();
    let mut args = Map::new();
    args.insert("call_sid".into(), sid.into());
    args.insert("event_type".into(), status.clone().into());
    args.insert("params".into(), Value::Object(as_object(params)));
    Ok(Event {
        job: NewJob::new(queue, "twilio_callback", args),
        dedupe_key: status_key(sid, &status),
    })
}

/// A recording callback (`CallSid`, `RecordingUrl`) as a `recording_job` on `queue`.
pub fn recording_event(params: &[(String, String)], queue: &str) -> Result<Event, String> {
    let sid = call_sid(params)?;
    let url = field(params, "RecordingUrl")
        .filter(|u| u.starts_with("https://") || u.starts_with("http://"))
        .ok_or("form field RecordingUrl is missing or not an HTTP URL")?;
    let mut args = Map::new();
    args.insert("call_sid".into(), sid.into());
    args.insert("recording_url".into(), url.into());
    args.insert("params".into(), Value::Object(as_object(params)));
    Ok(Event {
        job: NewJob::new(queue, "recording_job", args),
        dedupe_key: recording_key(sid),
    })
}

/// Sets `event`'s tenant from the callback URL's query (`business_id`, or `tenant`), which the
/// application puts there when it tells Twilio where to call back, and which the signature
/// covers. No such parameter: no tenant. A malformed one is refused.
pub fn tenant_from_query(event: &mut Event, query: Option<&str>) -> Result<(), String> {
    let Some(query) = query else { return Ok(()) };
    let named = form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "business_id" || k == "tenant")
        .map(|(_, v)| v.into_owned());
    let Some(tenant) = named else { return Ok(()) };
    if !crate::jobs::is_valid_tenant(&tenant) {
        return Err(format!(
            "the callback URL's tenant {tenant:?} must be 1-128 characters of [A-Za-z0-9_.:@-]"
        ));
    }
    event.job.set_tenant(&tenant).map_err(|e| e.to_string())
}

/// The tenant a Media Stream names in its `<Parameter name="business_id">` (or `tenant`), when
/// it is a valid tenant name.
pub fn stream_tenant(parameters: &Map<String, Value>) -> Option<&str> {
    ["business_id", "tenant"]
        .iter()
        .find_map(|k| parameters.get(*k).and_then(Value::as_str))
        .filter(|t| crate::jobs::is_valid_tenant(t))
}

/// The HMAC a request was signed with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Algorithm {
    Sha1,
    Sha256,
}

impl Algorithm {
    /// The algorithm `X-Twilio-Webhooks-Signature-Settings` names (`key=...,algorithm=...`);
    /// none named is the auth-token signature, HMAC-SHA1. `None` for one we do not know.
    pub fn from_settings_header(header: Option<&str>) -> Option<Self> {
        let named = header.unwrap_or_default().split(',').find_map(|part| {
            let (name, value) = part.split_once('=')?;
            (name.trim() == "algorithm" && !value.trim().is_empty()).then(|| value.trim())
        });
        match named.map(str::to_ascii_uppercase).as_deref() {
            None | Some("HMAC_SHA1") => Some(Self::Sha1),
            Some("HMAC_SHA256") => Some(Self::Sha256),
            Some(_) => None,
        }
    }
}

/// What Twilio signed besides the URL.
#[derive(Clone, Copy, Debug)]
pub enum Signed<'a> {
    /// Form parameters in wire order, repeats included.
    Form(&'a [(String, String)]),
    /// A raw (JSON) body, whose hash the URL's `bodySHA256` carries.
    Body(&'a [u8]),
}

/// The SHA-1 signature Twilio sends for `url` and `params`.
pub fn signature(auth_token: &str, url: &str, params: &[(String, String)]) -> String {
    signature_with(Algorithm::Sha1, auth_token, url, params)
}

/// The signature for `url` and `params` with `algorithm`.
pub fn signature_with(
    algorithm: Algorithm,
    auth_token: &str,
    url: &str,
    params: &[(String, String)],
) -> String {
    // Each name with each of its distinct values, sorted: repeats count once.
    let distinct: BTreeSet<(&str, &str)> = params
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let parts: Vec<&[u8]> = std::iter::once(url.as_bytes())
        .chain(
            distinct
                .into_iter()
                .flat_map(|(k, v)| [k.as_bytes(), v.as_bytes()]),
        )
        .collect();
    let key = auth_token.as_bytes();
    let digest = match algorithm {
        Algorithm::Sha1 => crate::mac::hmac::<Hmac<Sha1>>(key, &parts)
            .finalize()
            .into_bytes()
            .to_vec(),
        Algorithm::Sha256 => crate::mac::hmac::<Hmac<Sha256>>(key, &parts)
            .finalize()
            .into_bytes()
            .to_vec(),
    };
    BASE64.encode(digest)
}

/// Whether `header` is the right SHA-1 signature of a form post, compared in constant time.
pub fn verify(auth_token: &str, url: &str, params: &[(String, String)], header: &str) -> bool {
    verify_request(
        auth_token,
        url,
        Signed::Form(params),
        header,
        Algorithm::Sha1,
    )
}

/// Whether a request to `url` carrying `signed` and the signature `header` is Twilio's, as
/// `RequestValidator.validate` decides.
pub fn verify_request(
    auth_token: &str,
    url: &str,
    signed: Signed<'_>,
    header: &str,
    algorithm: Algorithm,
) -> bool {
    let params: &[(String, String)] = match signed {
        Signed::Form(p) => p,
        Signed::Body(body) => {
            let Some(expected) = query_value(url, "bodySHA256") else {
                return false;
            };
            let actual = hex(&Sha256::digest(body));
            if !bool::from(actual.as_bytes().ct_eq(expected.as_bytes())) {
                return false;
            }
            &[]
        }
    };
    let header = header.trim();
    let matches = |u: &str| -> bool {
        let expected = signature_with(algorithm, auth_token, u, params);
        expected.as_bytes().ct_eq(header.as_bytes()).into()
    };
    // Both variants are always computed, so timing does not tell which one matched.
    let without = matches(&without_port(url));
    let with = matches(&with_port(url));
    without | with
}

/// The signature a request carries: `X-Twilio-Signature` and the algorithm its settings header
/// names.
#[derive(Clone, Copy, Debug)]
pub struct Signature<'a> {
    pub header: &'a str,
    pub algorithm: Algorithm,
}

/// Why a Twilio request is refused.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    /// The signature does not match: not Twilio's (403).
    Signature,
    /// Signed, but not a body a callback can have (400).
    Body(&'static str),
}

/// The parameters of a request to `url` whose signature checks out: the form's, or for a JSON
/// body (`json`, signed through `bodySHA256`) its top-level scalars as strings.
pub fn verified_params(
    auth_token: &str,
    url: &str,
    signature: Signature<'_>,
    json: bool,
    body: &[u8],
) -> Result<Vec<(String, String)>, Refused> {
    let check = |signed| {
        verify_request(
            auth_token,
            url,
            signed,
            signature.header,
            signature.algorithm,
        )
    };
    if !json {
        let params: Vec<(String, String)> = form_urlencoded::parse(body).into_owned().collect();
        return if check(Signed::Form(&params)) {
            Ok(params)
        } else {
            Err(Refused::Signature)
        };
    }
    if !check(Signed::Body(body)) {
        return Err(Refused::Signature);
    }
    let Ok(Value::Object(fields)) = serde_json::from_slice::<Value>(body) else {
        return Err(Refused::Body("the JSON body must be an object"));
    };
    Ok(fields
        .into_iter()
        .filter_map(|(k, v)| match v {
            Value::String(s) => Some((k, s)),
            Value::Number(n) => Some((k, n.to_string())),
            Value::Bool(b) => Some((k, b.to_string())),
            _ => None,
        })
        .collect())
}

/// The URL Twilio signed: the configured public base URL plus the path and query it called.
pub fn public_url(base: &str, path_and_query: &str) -> String {
    format!("{}{}", base.trim_end_matches('/'), path_and_query)
}

/// `(scheme://, authority, rest)` of an absolute URL.
fn split_url(url: &str) -> Option<(&str, &str, &str)> {
    let start = url.find("://")? + 3;
    let end = url[start..]
        .find(['/', '?', '#'])
        .map_or(url.len(), |i| start + i);
    Some((&url[..start], &url[start..end], &url[end..]))
}

/// The authority split at its port, when it has one (an IPv6 host's colons are in brackets).
fn port_of(authority: &str) -> Option<(&str, &str)> {
    let (host, port) = authority.rsplit_once(':')?;
    let bracketed = !host.starts_with('[') || host.ends_with(']');
    (bracketed && !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()))
        .then_some((host, port))
}

fn without_port(url: &str) -> String {
    match split_url(url) {
        Some((scheme, authority, rest)) => match port_of(authority) {
            Some((host, _)) => format!("{scheme}{host}{rest}"),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

fn with_port(url: &str) -> String {
    match split_url(url) {
        Some((scheme, authority, rest)) if port_of(authority).is_none() => {
            let port = if scheme.eq_ignore_ascii_case("https://") {
                443
            } else {
                80
            };
            format!("{scheme}{authority}:{port}{rest}")
        }
        _ => url.to_owned(),
    }
}

/// The first non-empty value of `name` in the URL's query, percent-decoded (as `parse_qs`).
pub fn query_value(url: &str, name: &str) -> Option<String> {
    let query = url.split_once('?')?.1;
    let query = query.split('#').next().unwrap_or_default();
    form_urlencoded::parse(query.as_bytes())
        .find(|(k, v)| k == name && !v.is_empty())
        .map(|(_, v)| v.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params() -> Vec<(String, String)> {
        [
            ("CallSid", "CA1234567890ABCDE"),
            ("Caller", "+14158675309"),
            ("Digits", "1234"),
            ("From", "+14158675309"),
            ("To", "+18005551212"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    #[test]
    fn twilios_published_example_verifies() {
        // Auth token, URL, parameters and signature from Twilio's request-validation docs.
        let url = "https://mycompany.com/myapp.php?foo=1&bar=2";
        assert_eq!(
            signature("12345", url, &params()),
            "RSOYDt4T1cUTdK1PDd93/VVr8B8="
        );
        assert!(verify(
            "12345",
            url,
            &params(),
            "RSOYDt4T1cUTdK1PDd93/VVr8B8="
        ));
    }

    #[test]
    fn any_changed_byte_fails() {
        let url = "https://mycompany.com/myapp.php?foo=1&bar=2";
        let good = "RSOYDt4T1cUTdK1PDd93/VVr8B8=";
        assert!(!verify("12346", url, &params(), good), "other token");
        assert!(
            !verify(
                "12345",
                "http://mycompany.com/myapp.php?foo=1&bar=2",
                &params(),
                good
            ),
            "scheme"
        );
        assert!(
            !verify(
                "12345",
                "https://mycompany.com/myapp.php?foo=1&bar=3",
                &params(),
                good
            ),
            "query"
        );
        let mut p = params();
        p[2].1 = "1235".into();
        assert!(!verify("12345", url, &p, good), "a parameter value");
        let mut sig = good.to_string();
        sig.replace_range(0..1, "S");
        assert!(
            !verify("12345", url, &params(), &sig),
            "the signature itself"
        );
        assert!(!verify("12345", url, &params(), ""), "empty");
        // Parameter order on the wire does not matter.
        let mut rev = params();
        rev.reverse();
        assert!(verify("12345", url, &rev, good));
    }

    #[test]
    fn twilio_pythons_verdicts_hold() {
        let doc: serde_json::Value = serde_json::from_str(include_str!(
            "../../../tests/fixtures/twilio_signatures.json"
        ))
        .unwrap();
        let cases = doc["cases"].as_array().unwrap();
        assert!(cases.len() >= 20);
        for c in cases {
            let name = c["name"].as_str().unwrap();
            let algorithm = Algorithm::from_settings_header(c["settings"].as_str()).unwrap();
            let params: Vec<(String, String)> = c["params"]
                .as_array()
                .map(|ps| {
                    ps.iter()
                        .map(|p| {
                            (
                                p[0].as_str().unwrap().to_owned(),
                                p[1].as_str().unwrap().to_owned(),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            let signed = match c["body"].as_str() {
                Some(body) => Signed::Body(body.as_bytes()),
                None => Signed::Form(&params),
            };
            let ours = verify_request(
                c["token"].as_str().unwrap(),
                c["url"].as_str().unwrap(),
                signed,
                c["signature"].as_str().unwrap(),
                algorithm,
            );
            assert_eq!(ours, c["valid"].as_bool().unwrap(), "{name}");
        }
    }

    #[test]
    fn port_variants_and_unknown_algorithms() {
        assert_eq!(with_port("https://h/x?a=1"), "https://h:443/x?a=1");
        assert_eq!(with_port("http://h"), "http://h:80");
        assert_eq!(without_port("https://h:443/x"), "https://h/x");
        assert_eq!(without_port("https://[::1]:8443/x"), "https://[::1]/x");
        assert_eq!(with_port("https://[::1]/x"), "https://[::1]:443/x");
        assert_eq!(Algorithm::from_settings_header(Some("algorithm=MD5")), None);
        assert_eq!(
            Algorithm::from_settings_header(Some("key=k, algorithm = hmac_sha256")),
            Some(Algorithm::Sha256)
        );
        assert!(!verify_request(
            "t",
            "https://h/x",
            Signed::Body(b"{}"),
            "sig",
            Algorithm::Sha1
        ));
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn a_callback_url_names_the_tenant() {
        let params = pairs(&[
            ("CallSid", "CA0123456789abcdef0123456789abcdef"),
            ("CallStatus", "completed"),
        ]);
        let mut e = status_event(&params, "q").unwrap();
        tenant_from_query(&mut e, Some("x=1&business_id=shop-7")).unwrap();
        assert_eq!(e.job.options.meta["tenant"], "shop-7");
        let mut e = status_event(&params, "q").unwrap();
        tenant_from_query(&mut e, None).unwrap();
        assert!(!e.job.options.meta.contains_key("tenant"));
        let mut e = status_event(&params, "q").unwrap();
        assert!(tenant_from_query(&mut e, Some("tenant=a%20b")).is_err());
    }

    #[test]
    fn callbacks_become_jobs_under_one_call_sid_rule() {
        let e = status_event(
            &pairs(&[("CallSid", "CA1"), ("CallStatus", "In-Progress")]),
            "q",
        )
        .unwrap();
        assert_eq!(e.dedupe_key, "twilio:CA1:in-progress");
        assert_eq!(e.job.queue, "q");
        assert_eq!(e.job.job_type, "twilio_callback");
        assert_eq!(e.job.args["event_type"], "in-progress");
        let r = recording_event(
            &pairs(&[
                ("CallSid", "CA1"),
                ("RecordingUrl", "https://api.twilio.com/RE1"),
            ]),
            "q",
        )
        .unwrap();
        assert_eq!(r.dedupe_key, recording_key("CA1"));
        assert!(
            recording_event(
                &pairs(&[("CallSid", "CA1"), ("RecordingUrl", "ftp://x")]),
                "q"
            )
            .is_err()
        );
        for bad in ["", "CA-1", "CA 1", &"C".repeat(65)] {
            assert!(!is_valid_call_sid(bad), "{bad:?}");
            assert!(
                status_event(&pairs(&[("CallSid", bad), ("CallStatus", "ringing")]), "q").is_err()
            );
        }
        assert!(is_valid_call_sid("CA0123456789abcdef0123456789abcdef"));
    }

    #[test]
    fn verified_params_refuse_what_twilio_did_not_sign() {
        let params = pairs(&[("CallSid", "CA1")]);
        let url = "https://h/webhook/twilio/status";
        let sig = signature("t", url, &params);
        let body = b"CallSid=CA1";
        let s = |header| Signature {
            header,
            algorithm: Algorithm::Sha1,
        };
        assert_eq!(
            verified_params("t", url, s(&sig), false, body).unwrap(),
            params
        );
        assert_eq!(
            verified_params("t", url, s(&sig), false, b"CallSid=CA2"),
            Err(Refused::Signature)
        );
        let json_url = format!("{url}?bodySHA256={}", hex(&Sha256::digest(b"[1]")));
        let json_sig = signature("t", &json_url, &[]);
        assert_eq!(
            verified_params("t", &json_url, s(&json_sig), true, b"[1]"),
            Err(Refused::Body("the JSON body must be an object"))
        );
    }

    #[test]
    fn the_public_url_replaces_what_the_proxy_changed() {
        assert_eq!(
            public_url("https://api.example.com/", "/webhook/twilio/status?x=1"),
            "https://api.example.com/webhook/twilio/status?x=1"
        );
    }
}
