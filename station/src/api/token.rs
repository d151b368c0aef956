//! The API's bearer tokens: `kf_<id>_<secret>`, 16 hex digits naming the row and 43 base64url
//! characters of secret (32 random bytes). The station keeps only the SHA-256 of the secret, and
//! compares it in constant time; the token is shown once, when it is made.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fmt;
use subtle::ConstantTimeEq;
use thiserror::Error;
use zeroize::Zeroizing;

const PREFIX: &str = "kf_";
const ID_BYTES: usize = 8;
const SECRET_BYTES: usize = 32;
/// Longest token name.
pub const MAX_NAME_LEN: usize = 48;

/// What a token lets its holder do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, utoipa::ToSchema)]
pub enum Scope {
    #[serde(rename = "devices:read")]
    DevicesRead,
    #[serde(rename = "jobs:read")]
    JobsRead,
    #[serde(rename = "jobs:write")]
    JobsWrite,
    #[serde(rename = "orders:read")]
    OrdersRead,
    #[serde(rename = "orders:write")]
    OrdersWrite,
    #[serde(rename = "runs:read")]
    RunsRead,
    #[serde(rename = "runs:write")]
    RunsWrite,
    #[serde(rename = "events:read")]
    EventsRead,
}

impl Scope {
    pub const ALL: [Scope; 8] = [
        Scope::DevicesRead,
        Scope::JobsRead,
        Scope::JobsWrite,
        Scope::OrdersRead,
        Scope::OrdersWrite,
        Scope::RunsRead,
        Scope::RunsWrite,
        Scope::EventsRead,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::DevicesRead => "devices:read",
            Scope::JobsRead => "jobs:read",
            Scope::JobsWrite => "jobs:write",
            Scope::OrdersRead => "orders:read",
            Scope::OrdersWrite => "orders:write",
            Scope::RunsRead => "runs:read",
            Scope::RunsWrite => "runs:write",
            Scope::EventsRead => "events:read",
        }
    }

    pub fn parse(text: &str) -> Option<Scope> {
        Scope::ALL.into_iter().find(|scope| scope.as_str() == text)
    }

    /// Scopes as stored: comma-separated.
    pub fn join(scopes: &[Scope]) -> String {
        scopes.iter().map(|scope| scope.as_str()).collect::<Vec<_>>().join(",")
    }

    pub fn split(text: &str) -> Option<Vec<Scope>> {
        text.split(',').filter(|part| !part.is_empty()).map(Scope::parse).collect()
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A token's name, checked once here: 1 to 48 ASCII letters, digits, `.`, `_` or `-`, beginning
/// with a letter or digit; it appears in logs and the event log.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct TokenName(String);

#[derive(Debug, Error, PartialEq, Eq)]
pub enum TokenNameError {
    #[error("a token's name has 1 to {MAX_NAME_LEN} characters")]
    Length,
    #[error(
        "a token's name is made of ASCII letters, digits, '.', '_' and '-', and begins with a letter or digit; \
         the character U+{code:04X} at position {at} is not"
    )]
    Invalid { at: usize, code: u32 },
}

impl TokenName {
    pub fn parse(text: &str) -> Result<Self, TokenNameError> {
        if text.is_empty() || text.len() > MAX_NAME_LEN {
            return Err(TokenNameError::Length);
        }
        let allowed = |(at, c): &(usize, char)| c.is_ascii_alphanumeric() || (*at > 0 && matches!(c, '.' | '_' | '-'));
        if let Some((at, c)) = text.chars().enumerate().find(|pair| !allowed(pair)) {
            return Err(TokenNameError::Invalid { at, code: u32::from(c) });
        }
        Ok(TokenName(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TokenName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&self.0)
    }
}

/// A token just made: its row's id and hash, and the text to hand over once.
pub struct NewToken {
    pub id: String,
    pub secret_hash: String,
    pub text: Zeroizing<String>,
}

impl fmt::Debug for NewToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewToken").field("id", &self.id).finish_non_exhaustive()
    }
}

#[derive(Debug, Error)]
#[error("the system's random source failed; no token was made")]
pub struct RandomFailed;

impl NewToken {
    pub fn generate() -> Result<NewToken, RandomFailed> {
        let id = hex::encode(crate::seal::random_array::<ID_BYTES>().map_err(|_| RandomFailed)?);
        let secret = Zeroizing::new(crate::seal::random_array::<SECRET_BYTES>().map_err(|_| RandomFailed)?);
        let secret = Zeroizing::new(URL_SAFE_NO_PAD.encode(secret.as_slice()));
        let text = Zeroizing::new(format!("{PREFIX}{id}_{}", secret.as_str()));
        Ok(NewToken { secret_hash: hash(&secret), id, text })
    }
}

/// The hash kept for a secret.
pub fn hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// A presented token's id and secret, when it has a token's shape.
pub fn split(presented: &str) -> Option<(&str, &str)> {
    let rest = presented.strip_prefix(PREFIX)?;
    let (id, secret) = rest.split_once('_')?;
    let shaped = id.len() == ID_BYTES * 2
        && id.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        && secret.len() == 43
        && secret.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    shaped.then_some((id, secret))
}

/// Whether `secret` is the one whose hash is `stored`.
pub fn matches(secret: &str, stored: &str) -> bool {
    hash(secret).as_bytes().ct_eq(stored.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_tokens_are_shown_once_and_kept_as_a_hash() {
        let token = NewToken::generate().expect("random");
        let (id, secret) = split(&token.text).expect("a token's shape");
        assert_eq!(id, token.id);
        assert!(matches(secret, &token.secret_hash));
        assert!(!token.secret_hash.contains(secret), "the secret is not stored");
        assert!(!format!("{token:?}").contains(secret), "nor shown by Debug");
        let other = NewToken::generate().expect("random");
        assert!(!matches(secret, &other.secret_hash));
        assert_ne!(token.id, other.id);
    }

    #[test]
    fn api_tokens_of_the_wrong_shape_are_not_looked_up() {
        let token = NewToken::generate().expect("random");
        for bad in [
            "",
            "kf_",
            "Bearer x",
            &token.text[..token.text.len() - 1],
            &format!("{}x", token.text.as_str()),
            &token.text.replace("kf_", "KF_"),
            &token.text.to_uppercase(),
        ] {
            assert!(split(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn api_scopes_and_names_round_trip_and_refuse_the_unknown() {
        assert_eq!(Scope::split(&Scope::join(&Scope::ALL)), Some(Scope::ALL.to_vec()));
        assert_eq!(Scope::split("devices:read,admin"), None);
        for scope in Scope::ALL {
            assert_eq!(serde_json::to_value(scope).expect("json"), scope.as_str());
        }
        assert!(TokenName::parse("mes-line-3").is_ok());
        assert_eq!(TokenName::parse("-x"), Err(TokenNameError::Invalid { at: 0, code: 0x2d }));
        assert_eq!(TokenName::parse("a\u{1b}"), Err(TokenNameError::Invalid { at: 1, code: 0x1b }));
        assert_eq!(TokenName::parse(&"a".repeat(49)), Err(TokenNameError::Length));
    }
}
