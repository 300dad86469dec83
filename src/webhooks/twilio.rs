//! Twilio's request signature (`X-Twilio-Signature`): base64 of HMAC-SHA1, keyed with the auth
//! token, over the full public URL followed by every POST parameter's name and value, sorted by
//! name. The public URL is configuration (`PUBLIC_BASE_URL`): behind a proxy the service sees
//! another scheme and host than Twilio used.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, Mac};
use sha1::Sha1;
use subtle::ConstantTimeEq;

/// The signature Twilio sends for `url` and `params`.
pub fn signature(auth_token: &str, url: &str, params: &[(String, String)]) -> String {
    let mut sorted: Vec<&(String, String)> = params.iter().collect();
    // Twilio sorts by name; repeated names keep their values in sorted order too.
    sorted.sort();
    let mut mac = <Hmac<Sha1> as Mac>::new_from_slice(auth_token.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(url.as_bytes());
    for (k, v) in sorted {
        mac.update(k.as_bytes());
        mac.update(v.as_bytes());
    }
    BASE64.encode(mac.finalize().into_bytes())
}

/// Whether `header` is the right signature, compared in constant time.
pub fn verify(auth_token: &str, url: &str, params: &[(String, String)], header: &str) -> bool {
    let expected = signature(auth_token, url, params);
    expected.as_bytes().ct_eq(header.trim().as_bytes()).into()
}

/// The URL Twilio signed: the configured public base URL plus the path and query it called.
pub fn public_url(base: &str, path_and_query: &str) -> String {
    format!("{}{}", base.trim_end_matches('/'), path_and_query)
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
    fn the_public_url_replaces_what_the_proxy_changed() {
        assert_eq!(
            public_url("https://api.example.com/", "/webhook/twilio/status?x=1"),
            "https://api.example.com/webhook/twilio/status?x=1"
        );
    }
}
