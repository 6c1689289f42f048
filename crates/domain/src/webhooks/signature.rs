//! The Standard Webhooks signature of a request: `webhook-signature` is `v1,` and the base64
//! of HMAC-SHA256 over `{webhook-id}.{webhook-timestamp}.{body}` with the secret's bytes,
//! one per secret, space-separated (during a rotation both the old and the new secret sign,
//! and receivers accept either).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::secret::WebhookSecret;

/// The three headers of a Standard Webhooks request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureHeaders {
    /// `webhook-id`: the same for every attempt of one event at one endpoint, so receivers
    /// deduplicate.
    pub id: String,
    /// `webhook-timestamp`: seconds since the Unix epoch, of this attempt.
    pub timestamp: i64,
    /// `webhook-signature`.
    pub signature: String,
}

/// Signs `body` as the message `id` sent at `timestamp`, with every one of `secrets`.
pub fn sign(secrets: &[WebhookSecret], id: &str, timestamp: i64, body: &[u8]) -> SignatureHeaders {
    let signature = secrets
        .iter()
        .filter_map(|secret| {
            // HMAC takes keys of any length: this cannot fail for the secrets' 24 to 64 bytes.
            let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.key()).ok()?;
            mac.update(id.as_bytes());
            mac.update(b".");
            mac.update(timestamp.to_string().as_bytes());
            mac.update(b".");
            mac.update(body);
            Some(format!(
                "v1,{}",
                STANDARD.encode(mac.finalize().into_bytes())
            ))
        })
        .collect::<Vec<_>>()
        .join(" ");
    SignatureHeaders {
        id: id.to_owned(),
        timestamp,
        signature,
    }
}

#[cfg(test)]
mod tests {
    use secrecy::SecretString;

    use super::*;

    fn secret(text: &str) -> anyhow::Result<WebhookSecret> {
        Ok(WebhookSecret::parse(&SecretString::from(text.to_owned()))?)
    }

    const ID: &str = "msg_2m5kXhQb3dYV7uQk";
    const TIMESTAMP: i64 = 1_765_000_000;
    const BODY: &[u8] = br#"{"type":"message.sent","data":{}}"#;
    /// The bytes 0 to 31.
    const FIRST: &str = "whsec_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    /// The bytes 100 to 131.
    const SECOND: &str = "whsec_ZGVmZ2hpamtsbW5vcHFyc3R1dnd4eXp7fH1+f4CBgoM=";

    // The expected values are what the specification's reference library computes for these
    // inputs (`standardwebhooks` 1.3.0 from PyPI: `Webhook(secret).sign(ID, timestamp, body)`).
    const FIRST_SIGNATURE: &str = "v1,a9+7MrZ4dPO+EpEx7YiX8URd1Wt6DRg/aKIM9Vwkwjs=";
    const SECOND_SIGNATURE: &str = "v1,6t37OUrdeZsNeAfu2wiMsrFHZuOrPnnimfABOBWqwQg=";

    #[test]
    fn signs_as_the_reference_library() -> anyhow::Result<()> {
        let headers = sign(&[secret(FIRST)?], ID, TIMESTAMP, BODY);
        assert_eq!(headers.signature, FIRST_SIGNATURE);
        assert_eq!((headers.id.as_str(), headers.timestamp), (ID, TIMESTAMP));
        Ok(())
    }

    #[test]
    fn during_a_rotation_both_secrets_sign() -> anyhow::Result<()> {
        let headers = sign(&[secret(SECOND)?, secret(FIRST)?], ID, TIMESTAMP, BODY);
        assert_eq!(
            headers.signature,
            format!("{SECOND_SIGNATURE} {FIRST_SIGNATURE}")
        );
        Ok(())
    }

    #[test]
    fn any_change_changes_the_signature() -> anyhow::Result<()> {
        let key = [secret(FIRST)?];
        let reference = sign(&key, ID, TIMESTAMP, BODY).signature;
        assert_ne!(
            sign(&key, "msg_other", TIMESTAMP, BODY).signature,
            reference
        );
        assert_ne!(sign(&key, ID, TIMESTAMP + 1, BODY).signature, reference);
        assert_ne!(sign(&key, ID, TIMESTAMP, b"{}").signature, reference);
        Ok(())
    }
}
