//! Authtokens, credential ids and the keyed token hash.
//!
//! A token is `wkt_` followed by 256 random bits in unpadded base64url (43 characters). Only
//! `HMAC-SHA256(key, token)` is ever stored, where `key` is a per-database secret kept in its own
//! file beside the database (see [`TokenHasher`]). The plain token exists in memory between
//! generation and the response that shows it once; its `Debug` output is redacted.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use rand::RngCore as _;
use rand::rngs::OsRng;
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use subtle::ConstantTimeEq as _;

/// The prefix every authtoken starts with, so leaked tokens are recognisable by secret scanners.
pub const TOKEN_PREFIX: &str = "wkt_";

/// Random bytes in a token (256 bits).
const TOKEN_RANDOM_BYTES: usize = 32;

/// Length of the base64url body of a token.
const TOKEN_BODY_LEN: usize = 43;

/// Length of the per-database hashing key.
pub(crate) const HASH_KEY_LEN: usize = 32;

/// A freshly generated authtoken. It is returned exactly once, by create and rotate; nothing
/// stores it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Token(String);

impl Token {
    /// Generates a new random token from the operating system's CSPRNG.
    pub fn generate() -> Self {
        let mut bytes = [0u8; TOKEN_RANDOM_BYTES];
        OsRng.fill_bytes(&mut bytes);
        Self(format!("{TOKEN_PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes)))
    }

    /// The token text, to show to the operator once.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether `text` has the shape of a token (prefix, length, alphabet). Cheap pre-check that
    /// avoids hashing obvious garbage; it says nothing about validity.
    pub fn is_well_formed(text: &str) -> bool {
        text.strip_prefix(TOKEN_PREFIX).is_some_and(|body| {
            body.len() == TOKEN_BODY_LEN
                && body
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

/// The keyed hash of a token as stored in the database.
#[derive(Clone, PartialEq, Eq)]
pub struct TokenHash([u8; 32]);

impl TokenHash {
    /// Wraps raw hash bytes read from storage; `None` when the length is wrong.
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        <[u8; 32]>::try_from(bytes).ok().map(Self)
    }

    /// The raw hash bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Constant-time equality.
    pub fn ct_eq(&self, other: &TokenHash) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenHash(..)")
    }
}

/// Computes `HMAC-SHA256(key, token)` with the per-database key.
#[derive(Clone)]
pub struct TokenHasher {
    key: [u8; HASH_KEY_LEN],
}

impl TokenHasher {
    /// A hasher over `key`.
    pub fn new(key: [u8; HASH_KEY_LEN]) -> Self {
        Self { key }
    }

    /// A hasher over a fresh random key.
    pub fn generate_key() -> [u8; HASH_KEY_LEN] {
        let mut key = [0u8; HASH_KEY_LEN];
        OsRng.fill_bytes(&mut key);
        key
    }

    /// The keyed hash of `token`.
    pub fn hash(&self, token: &str) -> TokenHash {
        // INVARIANT: HMAC accepts keys of any length, so `new_from_slice` cannot fail.
        let mut mac = match <Hmac<Sha256> as Mac>::new_from_slice(&self.key) {
            Ok(mac) => mac,
            Err(_) => unreachable!("hmac accepts keys of any length"),
        };
        mac.update(token.as_bytes());
        TokenHash(mac.finalize().into_bytes().into())
    }
}

impl fmt::Debug for TokenHasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenHasher(..)")
    }
}

/// A credential id: `cr_` followed by 26 lowercase base32 characters (128 random bits).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct CredentialId(String);

impl CredentialId {
    /// The prefix of every credential id.
    pub const PREFIX: &'static str = "cr_";

    /// A new random id.
    pub fn generate() -> Self {
        Self(format!("{}{}", Self::PREFIX, random_id_body()))
    }

    /// Parses an id given by a user; `None` unless it has the `cr_` shape.
    pub fn parse(text: &str) -> Option<Self> {
        is_id_shaped(text, Self::PREFIX).then(|| Self(text.to_owned()))
    }

    /// The id text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for CredentialId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// 128 random bits as 26 lowercase RFC 4648 base32 characters.
pub(crate) fn random_id_body() -> String {
    const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
    let mut bytes = [0u8; 16];
    OsRng.fill_bytes(&mut bytes);
    let value = u128::from_be_bytes(bytes);
    (0..26)
        .map(|i| {
            let shift = 125u32.saturating_sub(i * 5);
            let index = usize::try_from((value >> shift) & 31).unwrap_or(0);
            char::from(ALPHABET[index])
        })
        .collect()
}

/// Whether `text` is `prefix` followed by 26 base32 characters.
pub(crate) fn is_id_shaped(text: &str, prefix: &str) -> bool {
    text.strip_prefix(prefix).is_some_and(|body| {
        body.len() == 26
            && body
                .bytes()
                .all(|b| b.is_ascii_lowercase() || (b'2'..=b'7').contains(&b))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_has_prefix_and_256_bits() {
        let token = Token::generate();
        assert!(token.expose().starts_with(TOKEN_PREFIX));
        assert_eq!(token.expose().len(), TOKEN_PREFIX.len() + TOKEN_BODY_LEN);
        assert!(Token::is_well_formed(token.expose()));
        let body = token.expose().strip_prefix(TOKEN_PREFIX).unwrap();
        assert_eq!(URL_SAFE_NO_PAD.decode(body).unwrap().len(), 32);
        assert_ne!(Token::generate(), token);
    }

    #[test]
    fn token_debug_is_redacted() {
        let token = Token::generate();
        assert!(!format!("{token:?}").contains(token.expose()));
    }

    #[test]
    fn token_shape_check_rejects_garbage() {
        for bad in [
            "",
            "wkt_",
            "wkt_short",
            "xyz_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        ] {
            assert!(!Token::is_well_formed(bad), "{bad}");
        }
        assert!(!Token::is_well_formed(&format!("wkt_{}", "!".repeat(43))));
    }

    #[test]
    fn hash_depends_on_key_and_token() {
        let a = TokenHasher::new([1; 32]);
        let b = TokenHasher::new([2; 32]);
        assert!(a.hash("wkt_x").ct_eq(&a.hash("wkt_x")));
        assert!(!a.hash("wkt_x").ct_eq(&b.hash("wkt_x")));
        assert!(!a.hash("wkt_x").ct_eq(&a.hash("wkt_y")));
    }

    #[test]
    fn credential_ids_are_shaped_and_distinct() {
        let id = CredentialId::generate();
        assert!(CredentialId::parse(id.as_str()).is_some());
        assert_ne!(id, CredentialId::generate());
        assert!(CredentialId::parse("cr_UPPER").is_none());
        assert!(CredentialId::parse("ss_aaaaaaaaaaaaaaaaaaaaaaaaaa").is_none());
    }
}
