//! JWT access tokens: HS256 pinned, `iss`, `aud`, `exp`, `nbf` required and checked.

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AccessClaims {
    pub sub: String,
    pub email: String,
    pub org: String,
    pub ws: String,
    pub tenant: String,
    pub roles: Vec<String>,
    /// The session this token belongs to; ending the session ends the token.
    pub sid: String,
    pub iss: String,
    pub aud: String,
    pub iat: u64,
    pub nbf: u64,
    pub exp: u64,
    pub jti: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct ChallengeClaims {
    sub: String,
    iss: String,
    aud: String,
    iat: u64,
    nbf: u64,
    exp: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("invalid access token: {0}")]
    Invalid(String),
}

/// Signing material and the claims every token must carry.
#[derive(Clone)]
pub struct TokenKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    pub issuer: String,
    pub audience: String,
    /// Lifetime of an access token in seconds (at most 15 minutes).
    pub ttl_secs: u64,
}

impl std::fmt::Debug for TokenKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenKeys")
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .finish_non_exhaustive()
    }
}

impl TokenKeys {
    /// Keys from a secret of at least 32 bytes.
    pub fn new(secret: &[u8], issuer: &str, audience: &str) -> TokenKeys {
        TokenKeys {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            issuer: issuer.to_string(),
            audience: audience.to_string(),
            ttl_secs: 15 * 60,
        }
    }

    /// Signs claims for a user, valid from `now` (unix seconds) for `ttl_secs`.
    ///
    /// # Errors
    /// Only if signing fails, which HS256 does not.
    pub fn issue(
        &self,
        sub: &str,
        email: &str,
        scope: &model::Scope,
        roles: Vec<String>,
        sid: &str,
        now: u64,
    ) -> Result<(String, AccessClaims), TokenError> {
        let claims = AccessClaims {
            sub: sub.to_string(),
            email: email.to_string(),
            org: scope.organization_id.clone(),
            ws: scope.workspace_id.clone(),
            tenant: scope.tenant_id.clone(),
            roles,
            sid: sid.to_string(),
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            iat: now,
            nbf: now,
            exp: now + self.ttl_secs,
            jti: uuid::Uuid::new_v4().to_string(),
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(|e| TokenError::Invalid(e.to_string()))?;
        Ok((token, claims))
    }

    /// A short-lived (5 min) token that proves the password was right and MFA is still owed.
    /// It has its own audience, so it is never accepted as an access token.
    ///
    /// # Errors
    /// Only if signing fails, which HS256 does not.
    pub fn issue_challenge(&self, sub: &str, now: u64) -> Result<String, TokenError> {
        let claims = ChallengeClaims {
            sub: sub.to_string(),
            iss: self.issuer.clone(),
            aud: format!("{}:mfa", self.audience),
            iat: now,
            nbf: now,
            exp: now + 300,
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(|e| TokenError::Invalid(e.to_string()))
    }

    /// The user id of a valid MFA challenge token.
    ///
    /// # Errors
    /// [`TokenError::Invalid`] with the reason.
    pub fn verify_challenge(&self, token: &str) -> Result<String, TokenError> {
        let mut v = Validation::new(Algorithm::HS256);
        v.set_issuer(&[&self.issuer]);
        v.set_audience(&[format!("{}:mfa", self.audience)]);
        v.set_required_spec_claims(&["exp", "nbf", "iss", "aud", "sub"]);
        v.validate_nbf = true;
        v.leeway = 5;
        jsonwebtoken::decode::<ChallengeClaims>(token, &self.decoding, &v)
            .map(|d| d.claims.sub)
            .map_err(|e| TokenError::Invalid(e.to_string()))
    }

    /// Verifies signature, algorithm, issuer, audience, expiry and not-before.
    ///
    /// # Errors
    /// [`TokenError::Invalid`] with the reason.
    pub fn verify(&self, token: &str) -> Result<AccessClaims, TokenError> {
        let mut v = Validation::new(Algorithm::HS256);
        v.set_issuer(&[&self.issuer]);
        v.set_audience(&[&self.audience]);
        v.set_required_spec_claims(&["exp", "nbf", "iss", "aud", "sub"]);
        v.validate_nbf = true;
        v.leeway = 30;
        jsonwebtoken::decode::<AccessClaims>(token, &self.decoding, &v)
            .map(|d| d.claims)
            .map_err(|e| TokenError::Invalid(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope() -> model::Scope {
        model::Scope {
            organization_id: "o".into(),
            workspace_id: "w".into(),
            tenant_id: "t".into(),
        }
    }

    fn now() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
    }

    #[test]
    fn tokens_round_trip_and_foreign_ones_fail() {
        let keys = TokenKeys::new(&[7u8; 32], "tf", "tf-api");
        let (tok, claims) = keys
            .issue("u1", "a@b.c", &scope(), vec!["admin".into()], "s1", now())
            .expect("issue");
        assert_eq!(keys.verify(&tok).expect("verify"), claims);
        assert!(claims.exp - claims.iat <= 900);

        let other = TokenKeys::new(&[8u8; 32], "tf", "tf-api");
        assert!(other.verify(&tok).is_err(), "wrong key");
        let wrong_aud = TokenKeys::new(&[7u8; 32], "tf", "elsewhere");
        assert!(wrong_aud.verify(&tok).is_err(), "wrong audience");
        let (old, _) = keys
            .issue("u1", "a@b.c", &scope(), vec![], "s1", now() - 3600)
            .expect("issue");
        assert!(keys.verify(&old).is_err(), "expired");
        let (future, _) = keys
            .issue("u1", "a@b.c", &scope(), vec![], "s1", now() + 3600)
            .expect("issue");
        assert!(keys.verify(&future).is_err(), "not yet valid");
        // alg=none must never pass
        let parts: Vec<&str> = tok.split('.').collect();
        let none_header = base64::Engine::encode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            br#"{"alg":"none","typ":"JWT"}"#,
        );
        assert!(
            keys.verify(&format!("{none_header}.{}.", parts[1]))
                .is_err()
        );
        // a challenge token is not an access token, nor the reverse
        let challenge = keys.issue_challenge("u1", now()).expect("challenge");
        assert!(keys.verify(&challenge).is_err());
        assert_eq!(keys.verify_challenge(&challenge).expect("challenge"), "u1");
        assert!(keys.verify_challenge(&tok).is_err());
    }
}
