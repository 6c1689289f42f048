//! API key material: generation and hashing. Only the SHA-256 of a key is stored; the key
//! itself is shown once, at creation. Keys have 256 bits of entropy, so a plain (unsalted)
//! hash is enough and allows an indexed lookup.

use base64::Engine as _;
use rand::RngCore;
use secrecy::SecretString;
use sha2::{Digest, Sha256};

/// Every key starts with this, so leaked keys are easy to recognise (secret scanners).
pub const KEY_PREFIX: &str = "seq_";
/// Characters of the key shown in listings to tell keys apart.
pub const VISIBLE_LEN: usize = 12;

pub struct GeneratedKey {
    pub key: SecretString,
    pub prefix: String,
    pub hash: [u8; 32],
}

pub fn generate() -> GeneratedKey {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let key = format!(
        "{KEY_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    );
    GeneratedKey {
        prefix: key.chars().take(VISIBLE_LEN).collect(),
        hash: hash(&key),
        key: SecretString::from(key),
    }
}

pub fn hash(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret;

    use super::*;

    #[test]
    fn generated_keys_are_unique_prefixed_and_hash_to_their_digest() {
        let a = generate();
        let b = generate();
        assert_ne!(a.key.expose_secret(), b.key.expose_secret());
        assert!(a.key.expose_secret().starts_with(KEY_PREFIX));
        assert_eq!(a.key.expose_secret().len(), KEY_PREFIX.len() + 43);
        assert!(a.key.expose_secret().starts_with(&a.prefix));
        assert_eq!(a.hash, hash(a.key.expose_secret()));
    }
}
