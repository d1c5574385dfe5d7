//! TOTP (RFC 6238) as authenticator apps speak it: SHA-1, 6 digits, 30 s steps, 160-bit secret;
//! a code is accepted one step either side of now. The caller records the step a code matched so
//! a code is never accepted twice (`MetaStore::use_totp_step`).

use totp_rs::{Algorithm, Secret, TOTP};

#[derive(Debug, thiserror::Error)]
pub enum TotpError {
    #[error("invalid TOTP secret: {0}")]
    Secret(String),
}

pub const STEP_SECS: u64 = 30;

fn totp(secret_b32: &str, issuer: &str, account: &str) -> Result<TOTP, TotpError> {
    let bytes = Secret::Encoded(secret_b32.to_string())
        .to_bytes()
        .map_err(|e| TotpError::Secret(format!("{e:?}")))?;
    TOTP::new(
        Algorithm::SHA1,
        6,
        1,
        STEP_SECS,
        bytes,
        Some(issuer.to_string()),
        account.to_string(),
    )
    .map_err(|e| TotpError::Secret(e.to_string()))
}

/// A new random 160-bit secret, base32 (what users type into an app by hand).
pub fn new_totp_secret() -> String {
    let mut bytes = [0u8; 20];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut bytes);
    Secret::Raw(bytes.to_vec()).to_encoded().to_string()
}

/// The `otpauth://totp/…` URI an authenticator app scans.
///
/// # Errors
/// When the secret is not valid base32 or the issuer/account contain a ':'.
pub fn otpauth_uri(secret_b32: &str, issuer: &str, account: &str) -> Result<String, TotpError> {
    Ok(totp(secret_b32, issuer, account)?.get_url())
}

/// The code for unix time `t` (for tests and tools).
///
/// # Errors
/// When the secret is not valid base32.
pub fn totp_code(secret_b32: &str, t: u64) -> Result<String, TotpError> {
    Ok(totp(secret_b32, "x", "x")?.generate(t))
}

/// The step (`t / 30`) whose code equals `code`, among now and one step either side; `None` if
/// none does. Compares in constant time.
///
/// # Errors
/// When the secret is not valid base32.
pub fn totp_match(secret_b32: &str, code: &str, now: u64) -> Result<Option<i64>, TotpError> {
    let t = totp(secret_b32, "x", "x")?;
    let code = code.trim();
    let current = now / STEP_SECS;
    let mut found = None;
    for step in [current.saturating_sub(1), current, current + 1] {
        let expected = t.generate(step * STEP_SECS);
        if subtle::ConstantTimeEq::ct_eq(expected.as_bytes(), code.as_bytes()).into() {
            found = i64::try_from(step).ok();
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_match_within_one_step_only() {
        let s = new_totp_secret();
        assert_eq!(s.len(), 32, "160 bits in base32");
        let now = 1_800_000_000;
        let code = totp_code(&s, now).expect("code");
        assert_eq!(
            totp_match(&s, &code, now).expect("match"),
            Some(i64::try_from(now / 30).expect("fits"))
        );
        assert!(totp_match(&s, &code, now + 30).expect("match").is_some());
        assert!(totp_match(&s, &code, now - 30).expect("match").is_some());
        assert!(totp_match(&s, &code, now + 60).expect("match").is_none());
        assert!(totp_match(&s, &code, now - 61).expect("match").is_none());
        assert!(totp_match(&s, "000000x", now).expect("match").is_none());
        let uri = otpauth_uri(&s, "TelemetryFlow", "a@b.c").expect("uri");
        assert!(
            uri.starts_with("otpauth://totp/TelemetryFlow:a%40b.c?"),
            "{uri}"
        );
        assert!(uri.contains(&format!("secret={s}")), "{uri}");
    }
}
