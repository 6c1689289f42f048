//! Writes down how messages ended: their rows, and the events and retry requests that tell
//! the scheduler, in one transaction per batch (the outbox publishes the records), except the
//! `sent` events, which it returns for the worker to publish itself once the transaction
//! committed ([`crate::announce`]). Only after the commit, and the publication of the `sent`
//! events, are the jobs' Kafka offsets stored, so a crash in between replays jobs whose claim
//! then finds their message no longer `queued` (and a `sent` one announces itself again).
//!
//! A mailbox whose server refused its login or sender goes to `error` in that transaction
//! too, with a `MailboxEvent::Failing` on `mailbox-events` only when its status did change:
//! a second failure of the same mailbox (in the batch, from another worker, or replayed)
//! announces nothing.

use std::collections::HashSet;
use std::sync::Arc;

use diesel_async::AsyncConnection as _;
use domain::clock::Clock;
use domain::db::PgPool;
use domain::db::outbox::{self, NewOutboxRecord};
use domain::db::sending::FailedMailbox;
use domain::db::sending::{self, SentRow, Settled, SettledRow};
use domain::events::{EmailEvent, EmailRetry, FoundBy, MailboxEvent, MessageRef, RetryRequest};
use domain::kafka::{Envelope, TopicNames};
use uuid::Uuid;

use crate::announce::Announcement;
use crate::outcome::{MessageFacts, Outcome};

pub struct Recorder {
    pool: PgPool,
    worker_id: String,
    topics: TopicNames,
    clock: Arc<dyn Clock>,
}

/// How many outcomes a [`Recorder::record`] call wrote, by kind, and the `sent` events to
/// publish now that they are committed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Recorded {
    pub sent: usize,
    pub other: usize,
    /// Outcomes of messages this worker no longer held (their lease ran out): not written.
    pub lost_lease: usize,
    pub announcements: Vec<Announcement>,
}

impl Recorder {
    pub fn new(pool: PgPool, worker_id: String, topics: TopicNames, clock: Arc<dyn Clock>) -> Self {
        Self {
            pool,
            worker_id,
            topics,
            clock,
        }
    }

    pub async fn record(&self, results: &[(MessageFacts, Outcome)]) -> anyhow::Result<Recorded> {
        if results.is_empty() {
            return Ok(Recorded::default());
        }
        let now = self.clock.now();
        let mut sent = Vec::new();
        let mut settled = Vec::new();
        let mut failing = Vec::new();
        let mut announcements = Vec::new();
        for (facts, outcome) in results {
            let settle = |outcome: Settled, error: &str| SettledRow {
                id: facts.id,
                outcome,
                error: error.to_owned(),
            };
            match outcome {
                Outcome::Sent { at, reply, subject } => {
                    sent.push(SentRow {
                        id: facts.id,
                        mailbox_id: facts.mailbox_id,
                        sent_at: *at,
                        reply: reply.clone(),
                        subject: subject.clone(),
                    });
                    announcements.push(Announcement::first(facts, *at)?);
                }
                Outcome::Bounced { reply } => settled.push(settle(Settled::Bounced, reply)),
                Outcome::Retry { error } => settled.push(settle(Settled::AwaitingRetry, error)),
                Outcome::MailboxFailing { error } => {
                    settled.push(settle(Settled::AwaitingRetry, error));
                    failing.push((facts.mailbox_id, error.clone()));
                }
                Outcome::Unknown { error } => settled.push(settle(Settled::Unknown, error)),
                Outcome::Failed { reason } => settled.push(settle(Settled::Failed, reason)),
                Outcome::Cancelled { reason } | Outcome::Held { reason } => {
                    settled.push(settle(Settled::Cancelled, reason));
                }
            }
        }

        let mut conn = self.pool.get().await?;
        let worker_id = self.worker_id.as_str();
        let (written, failed) = conn
            .transaction(
                async |tx| -> anyhow::Result<(HashSet<Uuid>, Vec<FailedMailbox>)> {
                    let mut written: HashSet<Uuid> = HashSet::new();
                    written.extend(sending::mark_sent(tx, &sent, worker_id, now).await?);
                    written.extend(sending::settle(tx, &settled, worker_id, now).await?);
                    let failed = sending::mark_mailboxes_failing(tx, &failing, now).await?;
                    let mut records = results
                        .iter()
                        .filter(|(facts, _)| written.contains(&facts.id))
                        .filter_map(|(facts, outcome)| {
                            self.announcement(facts, outcome).transpose()
                        })
                        .collect::<Result<Vec<_>, _>>()?;
                    for mailbox in &failed {
                        records.push(self.failing(mailbox, now)?);
                    }
                    outbox::insert_many(tx, &records).await?;
                    Ok((written, failed))
                },
            )
            .await?;
        for mailbox in &failed {
            tracing::warn!(mailbox.id = %mailbox.id, reason = %mailbox.reason,
                           "the mailbox's server refused it; the mailbox is now in error");
        }

        let mut recorded = Recorded::default();
        let (announced, unwritten): (Vec<Announcement>, Vec<Announcement>) = announcements
            .into_iter()
            .partition(|a| written.contains(&a.message_id));
        recorded.announcements = announced;
        if !unwritten.is_empty() {
            // Not `sending` under this worker any more: its lease ran out, or this is the
            // retry of a batch whose commit did go through. A message that is `sent` now is
            // announced as a redelivered job would announce it.
            let ids: Vec<Uuid> = unwritten.iter().map(|a| a.message_id).collect();
            for row in sending::unclaimed(&mut conn, &ids).await? {
                if let Some(again) = Announcement::again(&row) {
                    recorded.announcements.push(again?);
                }
            }
        }
        for (facts, outcome) in results {
            if !written.contains(&facts.id) {
                recorded.lost_lease += 1;
                tracing::warn!(message.id = %facts.id, "outcome not recorded: the message's lease ran out");
                continue;
            }
            let label = match outcome {
                Outcome::Sent { .. } => {
                    recorded.sent += 1;
                    "sent"
                }
                Outcome::Bounced { .. } => "bounced",
                Outcome::Retry { .. } => "retry",
                Outcome::MailboxFailing { .. } => "mailbox_failing",
                Outcome::Unknown { .. } => "unknown",
                Outcome::Failed { .. } => "failed",
                Outcome::Cancelled { .. } => "cancelled",
                Outcome::Held { .. } => "held",
            };
            if label != "sent" {
                recorded.other += 1;
            }
            metrics::counter!("emails_total", "outcome" => label).increment(1);
        }
        Ok(recorded)
    }

    /// The `mailbox-events` record of a mailbox this batch put in `error`.
    fn failing(
        &self,
        mailbox: &FailedMailbox,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<NewOutboxRecord, serde_json::Error> {
        let event = MailboxEvent::Failing {
            mailbox_id: mailbox.id,
            reason: mailbox.reason.clone(),
            found_by: FoundBy::Sending,
        };
        let mut envelope = Envelope::new(mailbox.workspace_id, event);
        envelope.occurred_at = now;
        NewOutboxRecord::from_envelope(
            &self.topics.mailbox_events,
            mailbox.id.to_string(),
            &envelope,
        )
    }

    /// The record that tells the scheduler about `outcome`, if any.
    fn announcement(
        &self,
        facts: &MessageFacts,
        outcome: &Outcome,
    ) -> Result<Option<NewOutboxRecord>, serde_json::Error> {
        let message = MessageRef {
            message_id: facts.id,
            enrollment_id: facts.enrollment_id,
        };
        let event = match outcome {
            // Published by the worker after the commit (`crate::announce`).
            Outcome::Sent { .. } => return Ok(None),
            Outcome::Bounced { reply } => EmailEvent::Bounced {
                message,
                hard: true,
                diagnostic: Some(reply.clone()),
            },
            Outcome::Failed { reason } => EmailEvent::Failed {
                message,
                reason: reason.clone(),
            },
            Outcome::Held { reason } => EmailEvent::Held {
                message,
                step_order: facts.step_order,
                reason: reason.clone(),
            },
            Outcome::Retry { error } | Outcome::MailboxFailing { error } => {
                let request = EmailRetry::Retry(RetryRequest {
                    message_id: facts.id,
                    enrollment_id: facts.enrollment_id,
                    mailbox_id: facts.mailbox_id,
                    attempt: u32::try_from(facts.attempts).unwrap_or(1),
                    not_before: None,
                    error: error.clone(),
                });
                let envelope = Envelope::new(facts.workspace_id, request);
                return NewOutboxRecord::from_envelope(
                    &self.topics.email_retries,
                    facts.mailbox_id.to_string(),
                    &envelope,
                )
                .map(Some);
            }
            // Nobody waits on these: the enrollment already stopped, or the message's fate
            // is for a person to decide.
            Outcome::Unknown { .. } | Outcome::Cancelled { .. } => return Ok(None),
        };
        let envelope = Envelope::new(facts.workspace_id, event);
        NewOutboxRecord::from_envelope(
            &self.topics.email_events,
            facts.enrollment_id.to_string(),
            &envelope,
        )
        .map(Some)
    }
}
