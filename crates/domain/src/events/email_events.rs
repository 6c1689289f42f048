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

impl EmailEvent {
    /// The envelope id of the `sent` of `message_id`. A message is sent once, so every
    /// announcement of it (the sender worker's, its repeat for a redelivered job, a person's
    /// `sent` resolution) carries this one id, and the scheduler, which stores events under
    /// their ids, applies the first to arrive and ignores the others.
    ///
    /// Its first 48 bits are the message id's (a UUIDv7's milliseconds: when it was
    /// dispatched), so these ids grow with time as the other events' UUIDv7s do and the
    /// events' primary key takes them near its end; the rest is a name-based hash (UUIDv5)
    /// of the message id. Version 8 (custom), so it never equals a UUIDv7 or UUIDv5 id.
    pub fn sent_id(message_id: Uuid) -> Uuid {
        let mut bytes = *Uuid::new_v5(&message_id, b"sent").as_bytes();
        bytes[..6].copy_from_slice(&message_id.as_bytes()[..6]);
        uuid::Builder::from_custom_bytes(bytes).into_uuid()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sent_id_is_the_same_for_one_message_and_differs_between_messages() {
        let message = Uuid::now_v7();
        let id = EmailEvent::sent_id(message);
        assert_eq!(id, EmailEvent::sent_id(message));
        assert_ne!(id, EmailEvent::sent_id(Uuid::now_v7()));
        assert_ne!(id, message);
        assert_eq!(id.get_version_num(), 8);
    }

    #[test]
    fn sent_ids_sort_as_their_messages_were_dispatched() {
        let earlier = Uuid::new_v7(uuid::Timestamp::from_unix_time(1_800_000_000, 0, 0, 0));
        let later = Uuid::new_v7(uuid::Timestamp::from_unix_time(1_800_000_001, 0, 0, 0));
        assert!(EmailEvent::sent_id(earlier) < EmailEvent::sent_id(later));
        assert_eq!(
            EmailEvent::sent_id(later).as_bytes()[..6],
            later.as_bytes()[..6]
        );
    }
}
