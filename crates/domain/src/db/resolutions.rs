//! A person's answer for a message whose fate is `unknown` (its data went out and no reply
//! came, or its worker died mid-send): nothing automatic may send it again, since it may have
//! been delivered, so its enrollment waits until someone says what happened.
//!
//! - `sent`: it was delivered. The message becomes `sent`, and the enrollment moves on exactly
//!   as if the sender worker had reported it: the same `sent` event goes to `email-events`
//!   (through the outbox, keyed by enrollment), and the scheduler, the only writer of
//!   enrollment progress, applies it.
//! - `not_sent`: it was not. The message becomes `retrying`, due now: the scheduler queues it
//!   again as its next attempt, with its Message-ID and without another unit of the mailbox's
//!   daily limit (the unit of its first attempt is still reserved).
//!
//! Either way the answer is stored on the message and audited as a `resolved` event in the
//! enrollment's timeline, in one transaction. The same answer given again changes nothing.

use chrono::{DateTime, SubsecRound as _, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Int4, Nullable, Text, Timestamptz, Uuid as SqlUuid};
use diesel_async::{AsyncConnection as _, AsyncPgConnection, RunQueryDsl};
use serde_json::json;
use uuid::Uuid;

use super::outbox::{self, NewOutboxRecord};
use super::progress::{self, NewEvent};
use crate::events::{EmailEvent, MessageRef};
use crate::kafka::Envelope;

/// What a person says became of an `unknown` message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Sent,
    NotSent,
}

impl Outcome {
    /// The stored and API spelling (one of [`super::messages::RESOLUTIONS`]).
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Sent => "sent",
            Outcome::NotSent => "not_sent",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "sent" => Some(Outcome::Sent),
            "not_sent" => Some(Outcome::NotSent),
            _ => None,
        }
    }
}

/// One resolution to apply.
#[derive(Debug, Clone)]
pub struct Resolve<'a> {
    pub workspace_id: Uuid,
    pub message_id: Uuid,
    pub outcome: Outcome,
    /// Who answered, kept in the audit event (the API writes `api_key:<key id>`).
    pub resolved_by: &'a str,
    pub now: DateTime<Utc>,
    /// The (prefixed) `email-events` topic a `sent` resolution is announced on.
    pub email_events_topic: &'a str,
}

/// What [`resolve`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolved {
    /// The message was `unknown` and is now resolved.
    Applied,
    /// It was resolved with this outcome before and is no longer `unknown`: nothing changed.
    Repeated,
    /// It is not `unknown` and was not resolved with this outcome.
    Refused {
        status: String,
        resolution: Option<String>,
    },
    /// The workspace has no such message.
    NotFound,
}

#[derive(QueryableByName)]
struct Locked {
    #[diesel(sql_type = SqlUuid)]
    enrollment_id: Uuid,
    #[diesel(sql_type = SqlUuid)]
    contact_id: Uuid,
    #[diesel(sql_type = Int4)]
    step_order: i32,
    #[diesel(sql_type = Text)]
    status: String,
    #[diesel(sql_type = Int4)]
    attempts: i32,
    #[diesel(sql_type = Nullable<Text>)]
    message_id_header: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    resolution: Option<String>,
    /// When it became `unknown` (nothing changes an unknown message until it is resolved).
    #[diesel(sql_type = Timestamptz)]
    updated_at: DateTime<Utc>,
}

/// Applies `r` in one transaction of its own (a savepoint inside a caller's).
pub async fn resolve(
    conn: &mut AsyncPgConnection,
    r: &Resolve<'_>,
) -> Result<Resolved, diesel::result::Error> {
    conn.transaction(async |tx| apply(tx, r).await).await
}

async fn apply(
    tx: &mut AsyncPgConnection,
    r: &Resolve<'_>,
) -> Result<Resolved, diesel::result::Error> {
    // The enrollment is key-share-locked too: the `resolved` event names it and its contact,
    // and `events` has no keys (migration 000082); a delete of either waits for this.
    let Some(message) = diesel::sql_query(
        "SELECT m.enrollment_id, m.contact_id, m.step_order, m.status, m.attempts, \
                m.message_id_header, m.resolution, m.updated_at \
           FROM messages m JOIN enrollments e ON e.id = m.enrollment_id \
          WHERE m.id = $1 AND m.workspace_id = $2 \
            FOR UPDATE OF m FOR KEY SHARE OF e",
    )
    .bind::<SqlUuid, _>(r.message_id)
    .bind::<SqlUuid, _>(r.workspace_id)
    .get_result::<Locked>(tx)
    .await
    .optional()?
    else {
        return Ok(Resolved::NotFound);
    };
    if message.status != "unknown" {
        return Ok(
            if message.resolution.as_deref() == Some(r.outcome.as_str()) {
                Resolved::Repeated
            } else {
                Resolved::Refused {
                    status: message.status,
                    resolution: message.resolution,
                }
            },
        );
    }
    match r.outcome {
        Outcome::Sent => {
            // As the worker would have reported it: sent when it was handed over (when it
            // became unknown), so the next step is due after its wait from then.
            let sent_at = message.updated_at.min(r.now.trunc_subsecs(6));
            // Its mailbox sent it, so the mailbox has sent since then at the latest.
            diesel::sql_query(
                "WITH sent AS ( \
                   UPDATE messages SET status = 'sent', sent_at = coalesce(sent_at, $2), \
                          resolution = 'sent', resolved_at = $3, retry_at = NULL, \
                          lease_expires_at = NULL \
                    WHERE id = $1 \
                   RETURNING mailbox_id, sent_at \
                 ) \
                 INSERT INTO mailbox_first_sends (mailbox_id, first_sent_at) \
                 SELECT mailbox_id, sent_at FROM sent \
                 ON CONFLICT (mailbox_id) DO UPDATE SET first_sent_at = EXCLUDED.first_sent_at \
                  WHERE mailbox_first_sends.first_sent_at > EXCLUDED.first_sent_at",
            )
            .bind::<SqlUuid, _>(r.message_id)
            .bind::<Timestamptz, _>(sent_at)
            .bind::<Timestamptz, _>(r.now)
            .execute(tx)
            .await?;
            let mut envelope = Envelope::new(
                r.workspace_id,
                EmailEvent::Sent {
                    message: MessageRef {
                        message_id: r.message_id,
                        enrollment_id: message.enrollment_id,
                    },
                    step_order: message.step_order,
                    message_id_header: message.message_id_header.clone().unwrap_or_default(),
                },
            );
            // The id of every announcement of this message's `sent`: should its job be
            // redelivered to a worker now, the worker's repeat is this same event.
            envelope.id = EmailEvent::sent_id(r.message_id);
            envelope.occurred_at = sent_at;
            let record = NewOutboxRecord::from_envelope(
                r.email_events_topic,
                message.enrollment_id.to_string(),
                &envelope,
            )
            .map_err(|e| diesel::result::Error::SerializationError(Box::new(e)))?;
            outbox::insert_many(tx, &[record]).await?;
        }
        Outcome::NotSent => {
            diesel::sql_query(
                "UPDATE messages SET status = 'retrying', retry_at = $2, \
                        resolution = 'not_sent', resolved_at = $2, lease_expires_at = NULL \
                  WHERE id = $1",
            )
            .bind::<SqlUuid, _>(r.message_id)
            .bind::<Timestamptz, _>(r.now)
            .execute(tx)
            .await?;
        }
    }
    progress::record_event(
        tx,
        &NewEvent {
            id: Uuid::now_v7(),
            workspace_id: r.workspace_id,
            message_id: Some(r.message_id),
            enrollment_id: Some(message.enrollment_id),
            contact_id: Some(message.contact_id),
            event_type: "resolved",
            occurred_at: r.now,
            is_bot: None,
            bot_reason: None,
            url: None,
            user_agent: None,
            client_ip: None,
            payload: json!({
                "outcome": r.outcome.as_str(),
                "resolved_by": r.resolved_by,
                "attempt": message.attempts,
            }),
        },
    )
    .await?;
    Ok(Resolved::Applied)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::messages::RESOLUTIONS;

    #[test]
    fn outcomes_are_spelt_as_stored() {
        for value in RESOLUTIONS {
            let outcome = Outcome::parse(value);
            assert_eq!(outcome.map(Outcome::as_str), Some(value));
        }
        assert_eq!(Outcome::parse("Sent"), None);
        assert_eq!(Outcome::parse(""), None);
    }
}
