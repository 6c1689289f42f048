//! Wire types of an endpoint's deliveries: the view of a delivery with its attempts, the
//! listing's and the replay's query strings, and the replay's answer.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use domain::db::webhook_deliveries as db;
use paperclip::actix::Apiv2Schema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Debug, Deserialize, Apiv2Schema)]
pub struct ListDeliveries {
    /// Only those with this status: `pending`, `delivered` or `failed`.
    pub status: Option<String>,
    /// Only those of this event type.
    pub event_type: Option<String>,
    pub limit: Option<i64>,
    pub cursor: Option<String>,
}

#[derive(Debug, Deserialize, Apiv2Schema)]
pub struct ReplayQuery {
    /// RFC 3339 time: the deliveries of events that occurred at or
    /// after it are sent again.
    pub since: Option<String>,
}

/// One event for one endpoint: its body as sent, where it stands and each attempt.
#[derive(Debug, Serialize, Apiv2Schema)]
pub struct WebhookDelivery {
    /// As `msg_<id>`, the `webhook-id` header of every attempt, for receivers to
    /// deduplicate.
    pub id: Uuid,
    /// The recorded event; one event goes to an endpoint once.
    pub event_id: Uuid,
    /// The endpoint it is for.
    pub webhook_id: Uuid,
    pub event_type: String,
    /// `pending` (waiting to be sent, or sent again after a failed attempt), `delivered`
    /// (an attempt got a 2xx) or `failed` (retries ran out).
    pub status: String,
    /// How many attempts were made, manual retries included.
    pub attempts: i32,
    /// When a pending delivery is sent next.
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// When the event happened.
    pub occurred_at: DateTime<Utc>,
    /// When it was first delivered; kept when it is sent again (a retry, a replay).
    pub delivered_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    /// The request body: `{"type", "timestamp", "data"}`.
    pub payload: serde_json::Value,
    /// Every attempt, oldest first.
    pub attempt_log: Vec<WebhookAttempt>,
}

/// One request of a delivery and what came back.
#[derive(Debug, Serialize, Apiv2Schema)]
pub struct WebhookAttempt {
    pub attempted_at: DateTime<Utc>,
    /// The receiver's HTTP status; `null` when no answer came (refused, timed out).
    pub status_code: Option<i32>,
    /// From sending the request to the answer (or the failure), in milliseconds.
    pub latency_ms: i32,
    /// Why the attempt failed, when it did.
    pub error: Option<String>,
    /// The first kilobyte of the answer's body.
    pub response_body: Option<String>,
}

/// What a replay made pending again.
#[derive(Debug, Serialize, Apiv2Schema)]
pub struct Replayed {
    /// How many deliveries are sent again.
    pub replayed: i64,
}

impl WebhookDelivery {
    pub(super) fn of(row: db::Delivery, attempts: Vec<db::Attempt>) -> Self {
        Self {
            id: row.id,
            event_id: row.event_id,
            webhook_id: row.endpoint_id,
            event_type: row.event_type,
            status: row.status,
            attempts: row.attempts,
            next_attempt_at: row.next_attempt_at,
            occurred_at: row.occurred_at,
            delivered_at: row.delivered_at,
            created_at: row.created_at,
            payload: row.payload,
            attempt_log: attempts.into_iter().map(WebhookAttempt::from).collect(),
        }
    }

    /// The views of `rows`, each with its attempts from `attempts`.
    pub(super) fn all(
        rows: Vec<db::Delivery>,
        mut attempts: HashMap<Uuid, Vec<db::Attempt>>,
    ) -> Vec<Self> {
        rows.into_iter()
            .map(|row| {
                let log = attempts.remove(&row.id).unwrap_or_default();
                Self::of(row, log)
            })
            .collect()
    }
}

impl From<db::Attempt> for WebhookAttempt {
    fn from(row: db::Attempt) -> Self {
        Self {
            attempted_at: row.attempted_at,
            status_code: row.status_code,
            latency_ms: row.latency_ms,
            error: row.error,
            response_body: row.response_body,
        }
    }
}
