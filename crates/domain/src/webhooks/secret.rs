//! An endpoint's signing secret: 32 random bytes, written `whsec_` + their base64 as the
//! Standard Webhooks libraries take it.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use rand::RngCore as _;
use secrecy::{ExposeSecret, SecretBox, SecretString};

/// The prefix of a secret's text.
pub const PREFIX: &str = "whsec_";
/// Random bytes in a generated secret (the specification asks for 24 to 64).
pub const GENERATED_LEN: usize = 32;
const MIN_LEN: usize = 24;
const MAX_LEN: usize = 64;

/// Why a secret's text is not one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    #[error("a webhook secret starts with `whsec_`")]
    NoPrefix,
    #[error("a webhook secret is `whsec_` and base64")]
    NotBase64,
    #[error("a webhook secret has {MIN_LEN} to {MAX_LEN} bytes, not {0}")]
    Length(usize),
}

/// The key HMAC-SHA256 signs with. Never printed.
pub struct WebhookSecret(SecretBox<Vec<u8>>);

impl std::fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WebhookSecret(..)")
    }
}

impl Clone for WebhookSecret {
    fn clone(&self) -> Self {
        WebhookSecret(SecretBox::new(Box::new(self.0.expose_secret().clone())))
    }
}

impl WebhookSecret {
    /// A new secret from the operating system's random generator.
    pub fn generate() -> Self {
        let mut bytes = vec![0u8; GENERATED_LEN];
        rand::rng().fill_bytes(&mut bytes);
        WebhookSecret(SecretBox::new(Box::new(bytes)))
    }

    /// The secret written `whsec_<base64>`.
    pub fn parse(text: &SecretString) -> Result<Self, SecretError> {
        let encoded = text
            .expose_secret()
            .trim()
            .strip_prefix(PREFIX)
            .ok_or(SecretError::NoPrefix)?;
        let bytes = STANDARD
            .decode(encoded)
            .map_err(|_| SecretError::NotBase64)?;
        if !(MIN_LEN..=MAX_LEN).contains(&bytes.len()) {
            return Err(SecretError::Length(bytes.len()));
        }
        Ok(WebhookSecret(SecretBox::new(Box::new(bytes))))
    }

    /// `whsec_<base64>`: shown once to the endpoint's owner, stored encrypted.
    pub fn text(&self) -> SecretString {
        SecretString::from(format!(
            "{PREFIX}{}",
            STANDARD.encode(self.0.expose_secret())
        ))
    }

    pub(super) fn key(&self) -> &[u8] {
        self.0.expose_secret()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_secret_reads_back_as_itself() -> Result<(), SecretError> {
        let secret = WebhookSecret::generate();
        let text = secret.text();
        assert!(text.expose_secret().starts_with(PREFIX));
        let parsed = WebhookSecret::parse(&text)?;
        assert_eq!(parsed.key(), secret.key());
        assert_eq!(parsed.key().len(), GENERATED_LEN);
        assert_ne!(WebhookSecret::generate().key(), secret.key());
        Ok(())
    }

    #[test]
    fn texts_that_are_not_secrets_are_refused() {
        let parse = |text: &str| WebhookSecret::parse(&SecretString::from(text.to_owned()));
        assert_eq!(parse("AAECAwQF").err(), Some(SecretError::NoPrefix));
        assert_eq!(parse("whsec_!!").err(), Some(SecretError::NotBase64));
        assert_eq!(parse("whsec_AAECAwQF").err(), Some(SecretError::Length(6)));
    }

    #[test]
    fn debug_shows_no_key() {
        let shown = format!("{:?}", WebhookSecret::generate());
        assert_eq!(shown, "WebhookSecret(..)");
    }
}
