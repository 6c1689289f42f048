//! Endpoints as the lanes use them: the parsed URL and the decrypted signing secrets,
//! decrypted once per version of the endpoint's row (its `updated_at`), not per delivery.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use domain::crypto::SecretCipher;
use domain::db::webhook_endpoints::{self, WebhookEndpoint};
use domain::webhooks::WebhookSecret;
use reqwest::Url;
use uuid::Uuid;

/// Where and how one endpoint's deliveries go.
#[derive(Debug)]
pub struct Target {
    pub endpoint_id: Uuid,
    pub workspace_id: Uuid,
    pub url: Url,
    secret: WebhookSecret,
    /// The secret a rotation replaced, and until when it signs too.
    previous: Option<(WebhookSecret, DateTime<Utc>)>,
}

impl Target {
    /// The secrets that sign a request sent at `now`: the current one, and the previous one
    /// during its overlap.
    pub fn secrets(&self, now: DateTime<Utc>) -> Vec<WebhookSecret> {
        let mut secrets = vec![self.secret.clone()];
        if let Some((previous, until)) = &self.previous
            && now < *until
        {
            secrets.push(previous.clone());
        }
        secrets
    }
}

/// A target and the version of its endpoint's row it was made from (`updated_at`).
type Versioned = (DateTime<Utc>, Arc<Target>);

/// Decrypted endpoints, by id.
pub struct Targets {
    cipher: SecretCipher,
    known: Mutex<HashMap<Uuid, Versioned>>,
}

impl Targets {
    pub fn new(cipher: SecretCipher) -> Self {
        Targets {
            cipher,
            known: Mutex::new(HashMap::new()),
        }
    }

    /// The target of `endpoint` as its row is now; `None` (logged) when its URL does not
    /// parse or its secret does not decrypt with the configured keys.
    pub fn of(&self, endpoint: &WebhookEndpoint) -> Option<Arc<Target>> {
        if let Ok(known) = self.known.lock()
            && let Some((version, target)) = known.get(&endpoint.id)
            && *version == endpoint.updated_at
        {
            return Some(Arc::clone(target));
        }
        let target = match self.build(endpoint) {
            Ok(target) => Arc::new(target),
            Err(error) => {
                tracing::error!(webhook.id = %endpoint.id, %error,
                                "webhook endpoint cannot be sent to; its deliveries wait");
                metrics::counter!("webhook_unusable_endpoints_total").increment(1);
                return None;
            }
        };
        if let Ok(mut known) = self.known.lock() {
            known.insert(endpoint.id, (endpoint.updated_at, Arc::clone(&target)));
        }
        Some(target)
    }

    fn build(&self, endpoint: &WebhookEndpoint) -> anyhow::Result<Target> {
        let url = Url::parse(&endpoint.url)?;
        let decrypt = |stored: &[u8], context: String| -> anyhow::Result<WebhookSecret> {
            let text = self.cipher.decrypt(stored, &context).map_err(|error| {
                anyhow::anyhow!(
                    "its signing secret does not decrypt ({error}); \
                     security.encryption_keys lacks its key"
                )
            })?;
            Ok(WebhookSecret::parse(&text)?)
        };
        let secret = decrypt(
            &endpoint.secret_encrypted,
            webhook_endpoints::secret_context(endpoint.id),
        )?;
        let previous = match (
            &endpoint.previous_secret_encrypted,
            endpoint.previous_secret_expires_at,
        ) {
            (Some(stored), Some(until)) => Some((
                decrypt(
                    stored,
                    webhook_endpoints::previous_secret_context(endpoint.id),
                )?,
                until,
            )),
            _ => None,
        };
        Ok(Target {
            endpoint_id: endpoint.id,
            workspace_id: endpoint.workspace_id,
            url,
            secret,
            previous,
        })
    }
}
