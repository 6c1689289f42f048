//! `email-jobs`: send requests from the scheduler to the sender workers, keyed by mailbox id
//! so one mailbox's sends stay ordered on one partition.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::kafka::Payload;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", content = "payload", rename_all = "snake_case")]
pub enum EmailJob {
    Send(SendJob),
}

impl Payload for EmailJob {
    const VERSION: u16 = 1;
}

/// Everything needed to find the message row; the worker loads the rest from PostgreSQL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendJob {
    pub message_id: Uuid,
    pub enrollment_id: Uuid,
    pub mailbox_id: Uuid,
    /// 1 for the first try; retries count up.
    pub attempt: u32,
}
