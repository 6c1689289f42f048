//! The `sent` announcements, published straight to `email-events` once the outcome they
//! announce is committed, instead of through the outbox (a row inserted, selected and deleted
//! per email). At-least-once still holds because a job's offset is stored only after its
//! announcement is acknowledged: a crash or a publish that fails in between leaves the job to
//! be delivered again, and a job whose message is already `sent` announces it again from the
//! message's row. Every announcement of a message carries the same envelope id
//! ([`EmailEvent::sent_id`]) and time (its `sent_at`), so the scheduler, which stores events
//! under their ids, applies the first to arrive and ignores the repeats.
//!
//! The other outcomes (bounced, failed, held, retry requests, failing mailboxes) still go
//! through the outbox: a redelivered job could not tell most of them apart from the row
//! (a retry leaves the message `sending`, a held one is `cancelled` like a cancelled one, a
//! failing mailbox is announced only when its status changed), and they are few.

use std::time::Duration;

use chrono::{DateTime, SubsecRound as _, Utc};
use domain::db::sending::Unclaimed;
use domain::events::{EmailEvent, MessageRef};
use domain::kafka::{Envelope, Producer};
use futures::future::join_all;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::outcome::MessageFacts;

/// A message's `sent`, serialised, with its key (the enrollment).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Announcement {
    pub message_id: Uuid,
    pub key: String,
    pub payload: Vec<u8>,
}

/// What a `sent` says, wherever it is built from.
struct Sent<'a> {
    workspace_id: Uuid,
    message_id: Uuid,
    enrollment_id: Uuid,
    step_order: i32,
    message_id_header: &'a str,
    sent_at: DateTime<Utc>,
}

impl Announcement {
    /// The first announcement of a message the server accepted at `at`.
    pub fn first(facts: &MessageFacts, at: DateTime<Utc>) -> Result<Self, serde_json::Error> {
        Self::of(&Sent {
            workspace_id: facts.workspace_id,
            message_id: facts.id,
            enrollment_id: facts.enrollment_id,
            step_order: facts.step_order,
            message_id_header: &facts.message_id_header,
            sent_at: at,
        })
    }

    /// The announcement again, from the row of a message recorded `sent` (its job came
    /// back); `None` for a message in any other state.
    pub fn again(row: &Unclaimed) -> Option<Result<Self, serde_json::Error>> {
        if row.status != "sent" {
            return None;
        }
        let Some(sent_at) = row.sent_at else {
            // Every writer of `sent` sets the time; without it there is nothing to repeat.
            tracing::error!(message.id = %row.id, "a sent message without sent_at: not announced again");
            return None;
        };
        Some(Self::of(&Sent {
            workspace_id: row.workspace_id,
            message_id: row.id,
            enrollment_id: row.enrollment_id,
            step_order: row.step_order,
            message_id_header: row.message_id_header.as_deref().unwrap_or_default(),
            sent_at,
        }))
    }

    fn of(sent: &Sent<'_>) -> Result<Self, serde_json::Error> {
        let mut envelope = Envelope::new(
            sent.workspace_id,
            EmailEvent::Sent {
                message: MessageRef {
                    message_id: sent.message_id,
                    enrollment_id: sent.enrollment_id,
                },
                step_order: sent.step_order,
                message_id_header: sent.message_id_header.to_owned(),
            },
        );
        envelope.id = EmailEvent::sent_id(sent.message_id);
        // As stored (PostgreSQL keeps microseconds), so a repeat built from the row carries
        // the same time and the scheduler would compute the same next step from either.
        envelope.occurred_at = sent.sent_at.trunc_subsecs(6);
        Ok(Self {
            message_id: sent.message_id,
            key: sent.enrollment_id.to_string(),
            payload: envelope.to_json()?,
        })
    }
}

/// Publishes announcements to `email-events`.
#[derive(Clone)]
pub struct Announcer {
    producer: Producer,
    topic: String,
}

impl Announcer {
    pub fn new(producer: Producer, topic: String) -> Self {
        Self { producer, topic }
    }

    /// Publishes `announcements` and waits for Kafka to acknowledge them; those it refused
    /// are published again (after 100 ms, doubling up to 5 s) until acknowledged, unless
    /// `stop` is cancelled, which leaves them to the jobs' redelivery. Returns whether every
    /// one was acknowledged: only then may their jobs' offsets be stored.
    pub async fn publish(&self, announcements: &[Announcement], stop: &CancellationToken) -> bool {
        let mut pending: Vec<&Announcement> = announcements.iter().collect();
        let mut delay = Duration::from_millis(100);
        loop {
            let results = join_all(
                pending
                    .iter()
                    .map(|a| self.producer.send_bytes(&self.topic, &a.key, &a.payload)),
            )
            .await;
            let mut refused = Vec::new();
            for (announcement, result) in pending.into_iter().zip(results) {
                if let Err(error) = result {
                    tracing::warn!(%error, message.id = %announcement.message_id,
                                   "sent announcement not acknowledged; its job's offset stays unstored");
                    refused.push(announcement);
                }
            }
            if refused.is_empty() {
                return true;
            }
            metrics::counter!("sent_announcements_refused_total").increment(refused.len() as u64);
            pending = refused;
            tokio::select! {
                () = stop.cancelled() => return false,
                () = tokio::time::sleep(delay) => {}
            }
            delay = (delay * 2).min(Duration::from_secs(5));
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone as _;

    use super::*;

    fn facts() -> MessageFacts {
        MessageFacts {
            id: Uuid::now_v7(),
            workspace_id: Uuid::now_v7(),
            enrollment_id: Uuid::now_v7(),
            mailbox_id: Uuid::now_v7(),
            step_order: 2,
            attempts: 1,
            message_id_header: "<m@acme.test>".to_owned(),
        }
    }

    #[test]
    fn the_repeat_from_the_row_is_the_first_announcement() -> anyhow::Result<()> {
        let facts = facts();
        let at = Utc
            .timestamp_opt(1_800_000_000, 123_456_789)
            .single()
            .ok_or_else(|| anyhow::anyhow!("no time"))?;
        let first = Announcement::first(&facts, at)?;
        let row = Unclaimed {
            id: facts.id,
            status: "sent".to_owned(),
            next_allowed_at: None,
            workspace_id: facts.workspace_id,
            enrollment_id: facts.enrollment_id,
            step_order: facts.step_order,
            message_id_header: Some(facts.message_id_header.clone()),
            // As PostgreSQL stored it.
            sent_at: Some(at.trunc_subsecs(6)),
        };
        let again = Announcement::again(&row).transpose()?;
        assert_eq!(again.as_ref(), Some(&first));

        let envelope = Envelope::<EmailEvent>::from_json(&first.payload)?;
        assert_eq!(envelope.id, EmailEvent::sent_id(facts.id));
        assert_eq!(envelope.occurred_at, at.trunc_subsecs(6));
        assert_eq!(envelope.workspace_id, facts.workspace_id);
        assert_eq!(first.key, facts.enrollment_id.to_string());
        assert_eq!(
            envelope.body,
            EmailEvent::Sent {
                message: MessageRef {
                    message_id: facts.id,
                    enrollment_id: facts.enrollment_id,
                },
                step_order: 2,
                message_id_header: "<m@acme.test>".to_owned(),
            }
        );
        Ok(())
    }

    #[test]
    fn only_a_sent_message_is_announced_again() {
        let facts = facts();
        for status in [
            "queued",
            "sending",
            "unknown",
            "bounced",
            "failed",
            "cancelled",
        ] {
            let row = Unclaimed {
                id: facts.id,
                status: status.to_owned(),
                next_allowed_at: None,
                workspace_id: facts.workspace_id,
                enrollment_id: facts.enrollment_id,
                step_order: 1,
                message_id_header: None,
                sent_at: Some(Utc::now()),
            };
            assert!(Announcement::again(&row).is_none(), "{status}");
        }
    }
}
