//! Encryption at rest of customer secrets (mailbox SMTP/IMAP passwords): AES-256-GCM with
//! keys from `security.encryption_keys`, so a database dump alone reveals no credential.
//!
//! Stored form: `[format 1][key id][12-byte nonce][ciphertext + 16-byte tag]`. The key id lets
//! keys rotate: new secrets use the first configured key, older ones still decrypt while their
//! key stays listed. Associated data binds a ciphertext to where it belongs (for example
//! `mailboxes.smtp_password:<mailbox id>`), so one row's secret pasted into another fails.

use aes_gcm::aead::{Aead, KeyInit, OsRng, Payload};
use aes_gcm::{AeadCore, Aes256Gcm, Key, Nonce};
use base64::Engine as _;
use secrecy::{ExposeSecret, SecretString};

const FORMAT: u8 = 1;
const NONCE_LEN: usize = 12;
const HEADER_LEN: usize = 2 + NONCE_LEN;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CryptoError {
    #[error(
        "security.encryption_keys is empty: set SEQ_SECURITY__ENCRYPTION_KEYS to `1:<base64 of 32 random bytes>` \
         (e.g. `1:$(openssl rand -base64 32)`)"
    )]
    NotConfigured,
    #[error("security.encryption_keys: {0}")]
    InvalidKeys(String),
    #[error("stored secret is malformed")]
    Malformed,
    #[error("stored secret uses key id {0}, which is not configured")]
    UnknownKey(u8),
    #[error("stored secret does not decrypt: wrong key, wrong record, or tampered")]
    Decrypt,
}

/// The configured keys. Deliberately no `Debug` that could print key material.
#[derive(Clone)]
pub struct SecretCipher {
    /// (id, cipher); the first encrypts, all decrypt.
    keys: Vec<(u8, Aes256Gcm)>,
}

impl std::fmt::Debug for SecretCipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ids: Vec<u8> = self.keys.iter().map(|(id, _)| *id).collect();
        f.debug_struct("SecretCipher")
            .field("key_ids", &ids)
            .finish()
    }
}

impl SecretCipher {
    /// Parses `ID:BASE64[,ID:BASE64...]`; error messages never contain key material.
    pub fn from_spec(spec: &SecretString) -> Result<Self, CryptoError> {
        let spec = spec.expose_secret().trim();
        if spec.is_empty() {
            return Err(CryptoError::NotConfigured);
        }
        let mut keys: Vec<(u8, Aes256Gcm)> = Vec::new();
        for (position, entry) in spec.split(',').enumerate() {
            let n = position + 1;
            let (id, key) = entry.trim().split_once(':').ok_or_else(|| {
                CryptoError::InvalidKeys(format!("entry {n} is not `ID:BASE64KEY`"))
            })?;
            let id: u8 = id.trim().parse().ok().filter(|id| *id > 0).ok_or_else(|| {
                CryptoError::InvalidKeys(format!(
                    "entry {n}: the id must be a number from 1 to 255"
                ))
            })?;
            if keys.iter().any(|(existing, _)| *existing == id) {
                return Err(CryptoError::InvalidKeys(format!(
                    "key id {id} appears twice"
                )));
            }
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(key.trim())
                .map_err(|_| CryptoError::InvalidKeys(format!("key {id} is not valid base64")))?;
            if bytes.len() != 32 {
                return Err(CryptoError::InvalidKeys(format!(
                    "key {id} must be 32 bytes, found {}",
                    bytes.len()
                )));
            }
            keys.push((id, Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&bytes))));
        }
        Ok(Self { keys })
    }

    pub fn encrypt(&self, secret: &SecretString, context: &str) -> Result<Vec<u8>, CryptoError> {
        let (id, cipher) = self.keys.first().ok_or(CryptoError::NotConfigured)?;
        let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
        let sealed = cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: secret.expose_secret().as_bytes(),
                    aad: context.as_bytes(),
                },
            )
            .map_err(|_| CryptoError::Decrypt)?;
        let mut out = Vec::with_capacity(HEADER_LEN + sealed.len());
        out.push(FORMAT);
        out.push(*id);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    pub fn decrypt(&self, stored: &[u8], context: &str) -> Result<SecretString, CryptoError> {
        if stored.len() < HEADER_LEN + 16 || stored[0] != FORMAT {
            return Err(CryptoError::Malformed);
        }
        let id = stored[1];
        let (_, cipher) = self
            .keys
            .iter()
            .find(|(key_id, _)| *key_id == id)
            .ok_or(CryptoError::UnknownKey(id))?;
        let nonce = Nonce::from_slice(&stored[2..HEADER_LEN]);
        let plain = cipher
            .decrypt(
                nonce,
                Payload {
                    msg: &stored[HEADER_LEN..],
                    aad: context.as_bytes(),
                },
            )
            .map_err(|_| CryptoError::Decrypt)?;
        String::from_utf8(plain)
            .map(SecretString::from)
            .map_err(|_| CryptoError::Malformed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> String {
        base64::engine::general_purpose::STANDARD.encode([byte; 32])
    }

    fn cipher(spec: &str) -> SecretCipher {
        SecretCipher::from_spec(&SecretString::from(spec.to_owned()))
            .unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn round_trip() -> Result<(), CryptoError> {
        let c = cipher(&format!("1:{}", key(7)));
        let stored = c.encrypt(&SecretString::from("hunter2"), "mailboxes.smtp_password:a")?;
        assert!(!stored.windows(7).any(|w| w == b"hunter2"));
        let back = c.decrypt(&stored, "mailboxes.smtp_password:a")?;
        assert_eq!(back.expose_secret(), "hunter2");
        Ok(())
    }

    #[test]
    fn same_secret_encrypts_differently_each_time() -> Result<(), CryptoError> {
        let c = cipher(&format!("1:{}", key(7)));
        let secret = SecretString::from("pw");
        assert_ne!(c.encrypt(&secret, "x")?, c.encrypt(&secret, "x")?);
        Ok(())
    }

    #[test]
    fn other_record_or_tampering_fails() -> Result<(), CryptoError> {
        let c = cipher(&format!("1:{}", key(7)));
        let mut stored = c.encrypt(&SecretString::from("pw"), "row-a")?;
        assert_eq!(
            c.decrypt(&stored, "row-b").err(),
            Some(CryptoError::Decrypt)
        );
        let last = stored.len() - 1;
        stored[last] ^= 1;
        assert_eq!(
            c.decrypt(&stored, "row-a").err(),
            Some(CryptoError::Decrypt)
        );
        assert_eq!(
            c.decrypt(&stored[..5], "row-a").err(),
            Some(CryptoError::Malformed)
        );
        Ok(())
    }

    #[test]
    fn rotation_keeps_old_secrets_readable() -> Result<(), CryptoError> {
        let old = cipher(&format!("1:{}", key(1)));
        let stored_with_old = old.encrypt(&SecretString::from("pw"), "r")?;
        let rotated = cipher(&format!("2:{}, 1:{}", key(2), key(1)));
        assert_eq!(
            rotated.decrypt(&stored_with_old, "r")?.expose_secret(),
            "pw"
        );
        let stored_with_new = rotated.encrypt(&SecretString::from("pw"), "r")?;
        assert_eq!(stored_with_new[1], 2, "new secrets use the first key");
        let retired = cipher(&format!("2:{}", key(2)));
        assert_eq!(
            retired.decrypt(&stored_with_old, "r").err(),
            Some(CryptoError::UnknownKey(1))
        );
        Ok(())
    }

    #[test]
    fn bad_specs_are_explained_without_key_material() {
        let short = base64::engine::general_purpose::STANDARD.encode([9u8; 16]);
        for (spec, expected) in [
            ("", "is empty"),
            ("nocolon", "is not `ID:BASE64KEY`"),
            ("0:abc", "from 1 to 255"),
            ("1:***", "not valid base64"),
            (&format!("1:{short}") as &str, "must be 32 bytes"),
            (
                &format!("1:{},1:{}", key(1), key(2)) as &str,
                "appears twice",
            ),
        ] {
            let error = SecretCipher::from_spec(&SecretString::from(spec.to_owned()))
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(error.contains(expected), "{spec}: {error}");
            assert!(!error.contains(&short), "{error}");
        }
    }
}
