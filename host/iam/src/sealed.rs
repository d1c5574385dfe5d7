//! Secrets at rest (MFA secrets, later channel configs): XChaCha20-Poly1305 with a random
//! 192-bit nonce and the owner bound as associated data, so a sealed value copied to another
//! row or tenant does not open. The 256-bit root key comes from a key file or the environment,
//! never from the database.

use base64::Engine;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore;

#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error("the root key must be 32 bytes (base64 or hex), got {0} bytes")]
    KeyLength(usize),
    #[error("sealed value does not open (wrong key, wrong owner, or tampered)")]
    Open,
}

/// Seals and opens values with one root key.
#[derive(Clone)]
pub struct SecretBox {
    cipher: XChaCha20Poly1305,
}

impl std::fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretBox(..)")
    }
}

const PREFIX: &str = "v1.";

impl SecretBox {
    /// A box from 32 key bytes.
    ///
    /// # Errors
    /// [`SealError::KeyLength`] for any other length.
    pub fn new(key: &[u8]) -> Result<SecretBox, SealError> {
        if key.len() != 32 {
            return Err(SealError::KeyLength(key.len()));
        }
        let cipher =
            XChaCha20Poly1305::new_from_slice(key).map_err(|_| SealError::KeyLength(key.len()))?;
        Ok(SecretBox { cipher })
    }

    /// A box from a key written as base64 or hex (surrounding whitespace ignored).
    ///
    /// # Errors
    /// When the text does not decode to 32 bytes.
    pub fn from_text(text: &str) -> Result<SecretBox, SealError> {
        let t = text.trim();
        let bytes = hex::decode(t)
            .ok()
            .filter(|b| b.len() == 32)
            .or_else(|| base64::engine::general_purpose::STANDARD.decode(t).ok())
            .or_else(|| {
                base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(t)
                    .ok()
            })
            .unwrap_or_default();
        SecretBox::new(&bytes)
    }

    /// A new random key as base64 (for a key file).
    pub fn generate_key_text() -> String {
        let mut k = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut k);
        base64::engine::general_purpose::STANDARD.encode(k)
    }

    /// `v1.<base64(nonce ‖ ciphertext)>`, bound to `owner`.
    pub fn seal(&self, plaintext: &[u8], owner: &str) -> String {
        let mut nonce = [0u8; 24];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        // Encryption with a valid key and nonce cannot fail for in-memory buffers.
        let ct = self
            .cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad: owner.as_bytes(),
                },
            )
            .unwrap_or_default();
        let mut out = nonce.to_vec();
        out.extend_from_slice(&ct);
        format!(
            "{PREFIX}{}",
            base64::engine::general_purpose::STANDARD.encode(out)
        )
    }

    /// Opens a sealed value bound to `owner`.
    ///
    /// # Errors
    /// [`SealError::Open`] if the key, the owner or the bytes differ.
    pub fn open(&self, sealed: &str, owner: &str) -> Result<Vec<u8>, SealError> {
        let body = sealed.strip_prefix(PREFIX).ok_or(SealError::Open)?;
        let raw = base64::engine::general_purpose::STANDARD
            .decode(body)
            .map_err(|_| SealError::Open)?;
        if raw.len() < 24 + 16 {
            return Err(SealError::Open);
        }
        let (nonce, ct) = raw.split_at(24);
        self.cipher
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: ct,
                    aad: owner.as_bytes(),
                },
            )
            .map_err(|_| SealError::Open)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_open_only_for_their_owner_and_key() {
        let key = SecretBox::generate_key_text();
        let b = SecretBox::from_text(&key).expect("key");
        let s = b.seal(b"JBSWY3DPEHPK3PXP", "mfa:user-1");
        assert!(!s.contains("JBSWY3DP"));
        assert_eq!(b.open(&s, "mfa:user-1").expect("open"), b"JBSWY3DPEHPK3PXP");
        assert!(b.open(&s, "mfa:user-2").is_err(), "other owner");
        let other = SecretBox::from_text(&SecretBox::generate_key_text()).expect("key");
        assert!(other.open(&s, "mfa:user-1").is_err(), "other key");
        let mut tampered = s.clone();
        tampered.pop();
        tampered.push('A');
        assert!(b.open(&tampered, "mfa:user-1").is_err());
        assert_ne!(
            b.seal(b"x", "o"),
            b.seal(b"x", "o"),
            "fresh nonce each time"
        );
        assert!(SecretBox::from_text("short").is_err());
    }
}
