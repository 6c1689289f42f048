//! Request and response shapes of webhook endpoints, their limits, and the view of a stored
//! row. A signing secret appears only in [`CreatedWebhook`] and [`RotatedSecret`].

use chrono::{DateTime, Utc};
use domain::db::webhook_endpoints as db;
use paperclip::actix::Apiv2Schema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Longest `description`, in characters.
pub(crate) const MAX_DESCRIPTION_LEN: usize = 500;
/// How long the previous secret keeps signing after a rotation, in hours.
pub(crate) const ROTATION_OVERLAP_HOURS: i64 = 24;

#[derive(Debug, Deserialize, Apiv2Schema)]
#[serde(deny_unknown_fields)]
pub struct CreateWebhook {
    /// Where events are POSTed: an absolute `https://` URL without user name, password or
    /// fragment. `http://` only to an IP address in a network the operator allows
    /// (`security.allowed_private_networks`). Stored as normalised (`https://Example.com`
    /// becomes `https://example.com/`).
    pub url: String,
    /// The event types sent to it, each once; empty or omitted: all of them (also types
    /// added later). `webhook.test` reaches it whatever it lists.
    #[serde(default)]
    pub event_types: Vec<String>,
    /// For people: what the endpoint is for.
    pub description: Option<String>,
    /// Default true. A disabled endpoint receives nothing.
    pub enabled: Option<bool>,
}

/// Partial update: omitted fields keep their values.
#[derive(Debug, Deserialize, Apiv2Schema)]
#[serde(deny_unknown_fields)]
pub struct UpdateWebhook {
    /// See the create request's `url`.
    pub url: Option<String>,
    /// Replaces the list; `[]`: all event types.
    pub event_types: Option<Vec<String>>,
    /// `null` removes it.
    #[serde(default, deserialize_with = "crate::extract::nullable")]
    pub description: Option<Option<String>>,
    /// Setting it (either way) clears `disabled_reason`; `true` also restarts the count of
    /// failing days of an endpoint the platform disabled.
    pub enabled: Option<bool>,
}

#[derive(Debug, Deserialize, Apiv2Schema)]
pub struct ListQuery {
    /// Page size, 1 to 500 (default 50).
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// A webhook endpoint. Its signing secret is never shown here: only when it is created and
/// when it is rotated.
#[derive(Debug, Serialize, Apiv2Schema)]
pub struct Webhook {
    pub id: Uuid,
    pub url: String,
    pub description: Option<String>,
    /// Empty: all event types.
    pub event_types: Vec<String>,
    pub enabled: bool,
    /// Why the platform disabled it (the receiver answered 410 Gone, or every delivery
    /// failed for days); `null` when a person disabled it or it is enabled.
    pub disabled_reason: Option<String>,
    /// Since when every delivery has failed; `null` after a success.
    pub failing_since: Option<DateTime<Utc>>,
    /// After `rotate-secret`: until when the previous secret signs too (both signatures are
    /// sent); `null` when no rotation is under way.
    pub previous_secret_expires_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// The answer of a creation: the endpoint and its signing secret.
#[derive(Debug, Serialize, Apiv2Schema)]
pub struct CreatedWebhook {
    pub id: Uuid,
    pub url: String,
    pub description: Option<String>,
    pub event_types: Vec<String>,
    pub enabled: bool,
    pub disabled_reason: Option<String>,
    pub failing_since: Option<DateTime<Utc>>,
    pub previous_secret_expires_at: Option<DateTime<Utc>>,
    /// The signing secret, `whsec_` and the base64 of 32 random bytes, as the Standard
    /// Webhooks libraries take it. Shown only here: store it now, it cannot be retrieved
    /// later (`rotate-secret` makes a new one).
    pub secret: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A new signing secret.
#[derive(Debug, Serialize, Apiv2Schema)]
pub struct RotatedSecret {
    /// The new signing secret (`whsec_...`). Shown only here.
    pub secret: String,
    /// Until when the secret it replaced signs too: requests carry both signatures, so
    /// receivers can switch to the new secret at any time before.
    pub previous_secret_expires_at: DateTime<Utc>,
}

impl Webhook {
    /// The view of `row` at `now` (a rotation that ended is not shown).
    pub(super) fn of(row: db::WebhookEndpoint, now: DateTime<Utc>) -> Self {
        Self {
            id: row.id,
            url: row.url,
            description: row.description,
            event_types: row.event_types,
            enabled: row.enabled,
            disabled_reason: row.disabled_reason,
            failing_since: row.failing_since,
            previous_secret_expires_at: row.previous_secret_expires_at.filter(|t| *t > now),
            created_at: row.created_at,
            updated_at: row.updated_at,
        }
    }

    pub(super) fn with_secret(self, secret: String) -> CreatedWebhook {
        CreatedWebhook {
            id: self.id,
            url: self.url,
            description: self.description,
            event_types: self.event_types,
            enabled: self.enabled,
            disabled_reason: self.disabled_reason,
            failing_since: self.failing_since,
            previous_secret_expires_at: self.previous_secret_expires_at,
            secret,
            created_at: self.created_at,
            updated_at: self.updated_at,
        }
    }
}
