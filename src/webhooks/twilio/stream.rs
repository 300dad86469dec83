//! What proves a Media Stream is Twilio's, and for which call.
//!
//! - **The upgrade.** Twilio signs the WebSocket upgrade request as it signs webhooks
//!   (`X-Twilio-Signature`, the algorithm its settings header names), over the stream URL as it
//!   requested it and no parameters: a stream URL cannot carry a query, and a GET has no form.
//!   The URL is the public base URL with `wss://` for `https://` (`ws://` for `http://`), tried
//!   with and without its default port as twilio-python does.
//! - **The call.** A signature proves Twilio opened the socket, not that the `start` it carries is
//!   for a call we answered. `/twilio/voice` therefore puts a stream token in the TwiML's
//!   `<Parameter>`s: an HMAC-SHA256, under a key derived from the auth token, over the call SID,
//!   its tenant (`business_id`) and an expiry. Twilio echoes it in `start.customParameters`; a
//!   start without a valid token for its own call SID is refused before anything is written.

use hmac::Hmac;
use sha2::Sha256;
use subtle::ConstantTimeEq;

use super::{Signature, Signed, verify_request};
use crate::hex::hex;

/// The path of the Media Streams WebSocket (the stream URL's, under the public base URL).
pub const STREAM_PATH: &str = "/ws/twilio/media";

/// The `<Parameter>` that carries the stream token.
pub const TOKEN_PARAMETER: &str = "stream_token";

/// How long a token from `/twilio/voice` opens a stream: Twilio connects `<Connect><Stream>`
/// as soon as it runs the TwiML, within seconds; minutes allow for a slow network and clocks.
pub const TOKEN_TTL_SECS: u64 = 300;

/// The stream URL Twilio is told to connect to and signs: the public base URL's scheme turned
/// into its WebSocket form, followed by `path`. `None` for a base that is not http(s).
pub fn stream_url(public_base_url: &str, path: &str) -> Option<String> {
    let base = public_base_url.trim_end_matches('/');
    let ws = if let Some(host) = base.strip_prefix("https://") {
        format!("wss://{host}")
    } else {
        format!("ws://{}", base.strip_prefix("http://")?)
    };
    Some(format!("{ws}{path}"))
}

/// Whether an upgrade request to `url` carries Twilio's signature: the URL alone signed, as
/// Twilio signs a stream's handshake.
pub fn verify_upgrade(auth_token: &str, url: &str, signature: Signature<'_>) -> bool {
    verify_request(
        auth_token,
        url,
        Signed::Form(&[]),
        signature.header,
        signature.algorithm,
    )
}

/// Why a `start`'s token is refused; the label is a metric's reason.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenRefused {
    Missing,
    Malformed,
    Expired,
    /// Not made for this call SID and tenant, or not with our key.
    Mismatch,
}

impl TokenRefused {
    pub fn label(self) -> &'static str {
        match self {
            Self::Missing => "token_missing",
            Self::Malformed => "token_malformed",
            Self::Expired => "token_expired",
            Self::Mismatch => "token_mismatch",
        }
    }
}

/// Issues and checks stream tokens under a key derived from the Twilio auth token, so a token
/// is worth nothing anywhere else the auth token signs.
#[derive(Clone)]
pub struct StreamTokens {
    key: [u8; 32],
}

impl std::fmt::Debug for StreamTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StreamTokens(<key>)")
    }
}

impl StreamTokens {
    pub fn new(auth_token: &str) -> Self {
        let mac = crate::mac::hmac::<Hmac<Sha256>>(
            auth_token.as_bytes(),
            &[b"prosaas media stream token v1"],
        );
        Self {
            key: hmac::Mac::finalize(mac).into_bytes().into(),
        }
    }

    fn mac(&self, call_sid: &str, tenant: &str, expires: u64) -> String {
        let expires = expires.to_string();
        let mac = crate::mac::hmac::<Hmac<Sha256>>(
            &self.key,
            &[
                call_sid.as_bytes(),
                b"\n",
                expires.as_bytes(),
                b"\n",
                tenant.as_bytes(),
            ],
        );
        hex(&hmac::Mac::finalize(mac).into_bytes())
    }

    /// A token for `call_sid` with `tenant` (empty for none), good until `expires` (Unix
    /// seconds): `<expires>.<hex HMAC>`.
    pub fn issue(&self, call_sid: &str, tenant: &str, expires: u64) -> String {
        format!("{expires}.{}", self.mac(call_sid, tenant, expires))
    }

    /// Whether `token` was issued for `call_sid` and `tenant` and is still good at `now`.
    pub fn check(
        &self,
        token: Option<&str>,
        call_sid: &str,
        tenant: &str,
        now: u64,
    ) -> Result<(), TokenRefused> {
        let token = token.ok_or(TokenRefused::Missing)?;
        let (expires, mac) = token.split_once('.').ok_or(TokenRefused::Malformed)?;
        let expires: u64 = expires.parse().map_err(|_| TokenRefused::Malformed)?;
        let expected = self.mac(call_sid, tenant, expires);
        if !bool::from(expected.as_bytes().ct_eq(mac.as_bytes())) {
            return Err(TokenRefused::Mismatch);
        }
        if now > expires {
            return Err(TokenRefused::Expired);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Algorithm, signature};
    use super::*;

    #[test]
    fn the_stream_url_follows_the_public_base_url() {
        assert_eq!(
            stream_url("https://api.example.com/", "/ws/twilio/media").as_deref(),
            Some("wss://api.example.com/ws/twilio/media")
        );
        assert_eq!(
            stream_url("http://localhost:8080", "/ws").as_deref(),
            Some("ws://localhost:8080/ws")
        );
        assert_eq!(stream_url("ftp://h", "/ws"), None);
    }

    #[test]
    fn an_upgrade_verifies_with_the_url_alone() {
        let url = "wss://api.example.com/ws/twilio/media";
        let sig = signature("tok", url, &[]);
        let s = |header| Signature {
            header,
            algorithm: Algorithm::Sha1,
        };
        assert!(verify_upgrade("tok", url, s(&sig)));
        assert!(!verify_upgrade("other", url, s(&sig)));
        assert!(!verify_upgrade(
            "tok",
            "wss://api.example.com/ws/twilio/other",
            s(&sig)
        ));
        assert!(!verify_upgrade("tok", url, s("")));
    }

    #[test]
    fn a_token_opens_only_its_own_call_until_it_expires() {
        let tokens = StreamTokens::new("auth");
        let t = tokens.issue("CA1", "12", 1_000);
        assert_eq!(tokens.check(Some(&t), "CA1", "12", 999), Ok(()));
        assert_eq!(tokens.check(Some(&t), "CA1", "12", 1_000), Ok(()));
        assert_eq!(
            tokens.check(Some(&t), "CA1", "12", 1_001),
            Err(TokenRefused::Expired)
        );
        assert_eq!(
            tokens.check(Some(&t), "CA2", "12", 999),
            Err(TokenRefused::Mismatch),
            "another call"
        );
        assert_eq!(
            tokens.check(Some(&t), "CA1", "13", 999),
            Err(TokenRefused::Mismatch),
            "another tenant"
        );
        let later = t.replacen("1000.", "2000.", 1);
        assert_eq!(
            tokens.check(Some(&later), "CA1", "12", 999),
            Err(TokenRefused::Mismatch),
            "a moved expiry"
        );
        assert_eq!(
            StreamTokens::new("other").check(Some(&t), "CA1", "12", 999),
            Err(TokenRefused::Mismatch),
            "another auth token"
        );
        assert_eq!(
            tokens.check(None, "CA1", "12", 0),
            Err(TokenRefused::Missing)
        );
        assert_eq!(
            tokens.check(Some("x"), "CA1", "12", 0),
            Err(TokenRefused::Malformed)
        );
    }
}
