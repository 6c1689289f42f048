//! `email-retries`: a send failed transiently (a 4xx reply, a timeout, a dropped connection);
//! produced by the sender worker, consumed by the scheduler, which owns when to try again.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::kafka::Payload;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", content = "payload", rename_all = "snake_case")]
pub enum EmailRetry {
    Retry(RetryRequest),
}

impl Payload for EmailRetry {
    const VERSION: u16 = 1;
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetryRequest {
    pub message_id: Uuid,
    pub enrollment_id: Uuid,
    pub mailbox_id: Uuid,
    /// The attempt that failed (1 for the first).
    pub attempt: u32,
    /// Not before this time, when the server said how long to wait; the scheduler's backoff
    /// applies when it is later.
    pub not_before: Option<DateTime<Utc>>,
    /// What went wrong, for the message's last_error (never credentials).
    pub error: String,
}
