//! API key material: `tfk-<16 hex>` public id, a 256-bit secret, shown once as
//! `tfk-<id>.<secret>`; only an Argon2id hash of the secret is stored.

use base64::Engine;
use rand::RngCore;
use sha2::{Digest, Sha256};

/// Permissions an ingest key may carry.
/// Read permissions an API key may carry, for tools that hold a key rather than a session
/// (Grafana): the query endpoints read that signal's telemetry, nothing else.
pub const READ_PERMISSIONS: [&str; 3] = ["traces:read", "metrics:read", "logs:read"];

pub const INGEST_PERMISSIONS: [&str; 4] = [
    "traces:write",
    "metrics:write",
    "logs:write",
    "monitors:report",
];

#[derive(Debug, Clone)]
pub struct ApiKeyMaterial {
    /// The public id, `tfk-` and 16 hex digits; stored in clear, unique.
    pub key_id: String,
    /// The secret half (43 base64url characters, 256 bits).
    pub secret: String,
    /// What the user gets once: `<key_id>.<secret>`.
    pub token: String,
}

pub fn generate_api_key() -> ApiKeyMaterial {
    let mut id = [0u8; 8];
    let mut secret = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut id);
    rand::rngs::OsRng.fill_bytes(&mut secret);
    let key_id = format!("tfk-{}", hex::encode(id));
    let secret = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret);
    let token = format!("{key_id}.{secret}");
    ApiKeyMaterial {
        key_id,
        secret,
        token,
    }
}

/// Splits a presented token into `(key_id, secret)` if it has the right shape.
pub fn parse_api_key(token: &str) -> Option<(&str, &str)> {
    let (id, secret) = token.split_once('.')?;
    let hex_part = id.strip_prefix("tfk-")?;
    if hex_part.len() != 16 || !hex_part.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    if secret.len() != 43
        || !secret
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return None;
    }
    Some((id, secret))
}

/// A fast digest of a high-entropy token, used as the key of the verified-key cache so that the
/// Argon2id check runs once per key and cache lifetime, not once per request.
pub fn fast_digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_parse_and_malformed_ones_do_not() {
        let k = generate_api_key();
        assert!(k.token.starts_with("tfk-"));
        assert_eq!(
            parse_api_key(&k.token),
            Some((k.key_id.as_str(), k.secret.as_str()))
        );
        assert_ne!(generate_api_key().token, k.token);
        for bad in [
            "",
            "tfk-",
            "tfk-zz.abc",
            "abc.def",
            &k.key_id,
            &format!("{}.short", k.key_id),
        ] {
            assert!(parse_api_key(bad).is_none(), "{bad}");
        }
    }
}
