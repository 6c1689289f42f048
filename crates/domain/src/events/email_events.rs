//! `email-events`: what happened to a message, produced by the sender worker, the tracker and
//! the inbox watcher, consumed by the scheduler (which owns enrollment state).

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::kafka::Payload;

/// The message an event is about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageRef {
    pub message_id: Uuid,
    pub enrollment_id: Uuid,
}

/// Who made a tracker request, as far as the tracker keeps it: the user agent, and the client
/// address truncated, hashed or left out per `tracker.client_ip`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Client {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_ip: Option<String>,
}

/// The message that came back to a mailbox, as far as the events keep it (never its body).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inbound {
    /// Its Message-ID header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inbound_message_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", content = "payload", rename_all = "snake_case")]
pub enum EmailEvent {
    Sent {
        #[serde(flatten)]
        message: MessageRef,
        step_order: i32,
        message_id_header: String,
    },
    Opened {
        #[serde(flatten)]
        message: MessageRef,
        is_bot: bool,
        bot_reason: Option<String>,
        #[serde(flatten)]
        client: Client,
    },
    Clicked {
        #[serde(flatten)]
        message: MessageRef,
        url: String,
        is_bot: bool,
        bot_reason: Option<String>,
        #[serde(flatten)]
        client: Client,
    },
    /// The contact answered (found by the inbox watcher).
    Replied {
        #[serde(flatten)]
        message: MessageRef,
        #[serde(flatten)]
        inbound: Inbound,
    },
    /// An automatic answer (out of office, autoresponder): recorded, and the enrollment goes
    /// on unless its sequence says `stop_on_auto_reply`.
    AutoReplied {
        #[serde(flatten)]
        message: MessageRef,
        #[serde(flatten)]
        inbound: Inbound,
        /// Which rule recognised it (e.g. `Auto-Submitted: auto-replied`).
        reason: String,
    },
    Bounced {
        #[serde(flatten)]
        message: MessageRef,
        /// Hard (5.x.x) bounces stop the enrollment; soft ones are recorded only.
        hard: bool,
        diagnostic: Option<String>,
    },
    Unsubscribed {
        #[serde(flatten)]
        message: MessageRef,
        #[serde(flatten)]
        client: Client,
    },
    Complained {
        #[serde(flatten)]
        message: MessageRef,
    },
    Failed {
        #[serde(flatten)]
        message: MessageRef,
        reason: String,
    },
    /// Not sent, and waiting for a person: the email would have had a hole in it (a template
    /// variable with no value and no fallback). The enrollment pauses at this step with
    /// `reason` (`missing_variable: <name>`); resuming it sends the step then.
    Held {
        #[serde(flatten)]
        message: MessageRef,
        /// The position of the step held, as in [`EmailEvent::Sent`].
        step_order: i32,
        reason: String,
    },
}

impl Payload for EmailEvent {
    const VERSION: u16 = 1;
}
