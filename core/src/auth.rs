//! API tokens (`http.tokens`): the HTTP API and dashboard ask for one when
//! the endpoint listens beyond loopback (or `http.require_tokens` is set).
//! Settings hold only each token's SHA-256 (hex), so a leaked settings file
//! grants nothing; a presented token is hashed and compared with every
//! configured hash in constant time.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenRole {
    /// Every `GET`.
    Read,
    /// Reads and writes (upsert, delete, pause, resume, trigger, backfill,
    /// dead-letter replay and purge).
    Admin,
}

impl TokenRole {
    pub fn as_str(self) -> &'static str {
        match self {
            TokenRole::Read => "read",
            TokenRole::Admin => "admin",
        }
    }
}

/// One configured token: a name (for logs), its role and its hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiToken {
    pub name: String,
    pub role: TokenRole,
    pub sha256: [u8; 32],
}

/// SHA-256 of `token`, lowercase hex: what `http.tokens[].sha256` holds
/// (`printf %s "$TOKEN" | sha256sum`).
pub fn hash_token(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Parses a configured hash (64 hex digits).
pub fn parse_hash(hex: &str) -> Option<[u8; 32]> {
    let hex = hex.trim();
    if hex.len() != 64 || !hex.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

/// The token `presented` matches, if any. Every configured hash is
/// compared (no early exit), each in constant time.
pub fn authenticate<'a>(tokens: &'a [ApiToken], presented: &str) -> Option<&'a ApiToken> {
    let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
    let mut found = None;
    for t in tokens {
        if bool::from(t.sha256.ct_eq(&digest)) {
            found = Some(t);
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_matches_its_hash_only() {
        let tokens = vec![
            ApiToken {
                name: "viewer".into(),
                role: TokenRole::Read,
                sha256: parse_hash(&hash_token("r-secret")).unwrap(),
            },
            ApiToken {
                name: "ops".into(),
                role: TokenRole::Admin,
                sha256: parse_hash(&hash_token("a-secret")).unwrap(),
            },
        ];
        assert_eq!(
            authenticate(&tokens, "r-secret").map(|t| t.role),
            Some(TokenRole::Read)
        );
        assert_eq!(
            authenticate(&tokens, "a-secret").map(|t| t.role),
            Some(TokenRole::Admin)
        );
        assert!(authenticate(&tokens, "a-secreT").is_none());
        assert!(authenticate(&tokens, "").is_none());
        // printf %s secret | sha256sum
        assert_eq!(
            hash_token("secret"),
            "2bb80d537b1da3e38bd30361aa855686bde0eacd7162fef6a25fe97bf527a25b"
        );
        assert!(parse_hash("2bb8").is_none());
        assert!(parse_hash(&"zz".repeat(32)).is_none());
    }
}
