//! How one job ended, as the recorder writes it down.

use chrono::{DateTime, Utc};
use uuid::Uuid;

/// What the worker did with a claimed message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The server accepted it (2xx after the final dot).
    Sent {
        at: DateTime<Utc>,
        reply: String,
        subject: String,
    },
    /// The server refused the recipient or the message for good (5xx): a hard bounce.
    Bounced { reply: String },
    /// Worth another attempt later (4xx, connection trouble before the data, a paused
    /// mailbox): the scheduler is asked to retry.
    Retry { error: String },
    /// The server refused the mailbox itself (its login or sender, 5xx): the mailbox is put
    /// in `error` and the message is retried, perhaps after someone fixes it.
    MailboxFailing { error: String },
    /// The data went out and no reply came: it may have been delivered; never resent.
    Unknown { error: String },
    /// It can never be sent as it is (a template or an address that does not parse, a
    /// contact that unsubscribed or is suppressed): the message and enrollment fail.
    Failed { reason: String },
    /// Its enrollment stopped while the job waited: dropped quietly.
    Cancelled { reason: String },
    /// It would go out with a hole in it (`reason` names the variable): not sent, and its
    /// enrollment is to pause until a person fixes the contact or the template.
    Held { reason: String },
}

/// The identifiers of a claimed message that its outcome's records carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageFacts {
    pub id: Uuid,
    pub workspace_id: Uuid,
    pub enrollment_id: Uuid,
    pub mailbox_id: Uuid,
    pub step_order: i32,
    pub attempts: i32,
    pub message_id_header: String,
}
