//! Random single-use secrets (refresh tokens, email tokens, backup codes) and their stored form.
//!
//! These secrets carry at least 128 bits of randomness, so a plain SHA-256 is a sound stored
//! form: there is nothing to brute-force. Passwords (low entropy) use Argon2id instead.

use base64::Engine;
use rand::RngCore;
use sha2::{Digest, Sha256};

/// A random token `<prefix><43 base64url chars>` (256 bits).
pub fn random_token(prefix: &str) -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    format!(
        "{prefix}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    )
}

/// The stored form of a high-entropy token: hex SHA-256.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Ten backup codes of the form `xxxxx-xxxxx` (50 bits each, base32 without look-alikes).
pub fn backup_codes() -> Vec<String> {
    const ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyz23456789";
    let mut out = Vec::with_capacity(10);
    for _ in 0..10 {
        let mut code = String::with_capacity(11);
        for i in 0..10 {
            if i == 5 {
                code.push('-');
            }
            let idx = (rand::rngs::OsRng.next_u32() as usize) % ALPHABET.len();
            code.push(char::from(ALPHABET[idx]));
        }
        out.push(code);
    }
    out
}

/// The stored form of a backup code, insensitive to case, spaces and dashes.
pub fn backup_code_hash(code: &str) -> String {
    let normal: String = code
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_lowercase())
        .collect();
    token_hash(&normal)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_distinct_and_hash_stably() {
        let a = random_token("tfr_");
        let b = random_token("tfr_");
        assert_ne!(a, b);
        assert!(a.starts_with("tfr_") && a.len() == 4 + 43);
        assert_eq!(token_hash(&a), token_hash(&a));
        assert_eq!(token_hash(&a).len(), 64);
        let codes = backup_codes();
        assert_eq!(codes.len(), 10);
        assert_eq!(
            backup_code_hash(&codes[0]),
            backup_code_hash(&codes[0].to_uppercase().replace('-', " "))
        );
    }
}
