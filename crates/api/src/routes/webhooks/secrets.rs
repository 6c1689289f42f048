//! Signing secrets on their way to and from the database: encrypted with `AppState.cipher`
//! under the context of their column (`db::webhook_endpoints::secret_context` and
//! `previous_secret_context`), so a ciphertext copied to another row or column does not
//! decrypt.

use domain::crypto::{CryptoError, SecretCipher};
use secrecy::SecretString;

use crate::error::ApiError;

/// The cipher, or the 503 of a server without `security.encryption_keys`.
pub(super) fn cipher(cipher: Option<&SecretCipher>) -> Result<&SecretCipher, ApiError> {
    cipher.ok_or(ApiError::EncryptionUnavailable)
}

pub(super) fn encrypt(
    cipher: &SecretCipher,
    text: &SecretString,
    context: &str,
) -> Result<Vec<u8>, ApiError> {
    cipher.encrypt(text, context).map_err(|error| match error {
        CryptoError::NotConfigured => ApiError::EncryptionUnavailable,
        other => ApiError::internal(other),
    })
}

/// A stored secret's text. One that no configured key decrypts (its key was removed from
/// `security.encryption_keys`) is a 409: the endpoint cannot be signed for until it is
/// created again.
pub(super) fn decrypt(
    cipher: &SecretCipher,
    stored: &[u8],
    context: &str,
) -> Result<SecretString, ApiError> {
    cipher
        .decrypt(stored, context)
        .map_err(|error| match error {
            CryptoError::NotConfigured => ApiError::EncryptionUnavailable,
            other => {
                tracing::warn!(error = %other, "a webhook signing secret does not decrypt");
                ApiError::Conflict(
                    "the endpoint's signing secret cannot be decrypted with the server's keys \
                 (security.encryption_keys changed): delete the endpoint and create it again"
                        .into(),
                )
            }
        })
}
