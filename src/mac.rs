//! HMAC keyed in one place: outgoing job signatures (SHA-256) and Twilio's request signatures
//! (SHA-1 and SHA-256) all start here.

use hmac::Mac;

/// An HMAC of `M` (e.g. `Hmac<Sha256>`) keyed with `key`, fed `parts` in order.
pub fn hmac<M: Mac + hmac::digest::KeyInit>(key: &[u8], parts: &[&[u8]]) -> M {
    let mut mac = <M as Mac>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    for part in parts {
        mac.update(part);
    }
    mac
}
