//! The consumer of `email-retries`: a transiently failed attempt waits in the database for
//! its turn on the backoff schedule, then the dispatcher sends it again (same message row,
//! same Message-ID, no new unit of the mailbox's daily limit). After the last retry the
//! message fails and so does its enrollment.
//!
//! A message whose mailbox cannot send (paused by a person or the reputation guard, in
//! `error`, disabled) is not a failed attempt: it waits without a retry time and without
//! using up a retry, and becomes due when its mailbox is `active` again (a trigger on
//! `mailboxes`), however long that takes.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use diesel_async::{AsyncConnection as _, AsyncPgConnection};
use domain::db::PgPool;
use domain::db::mailbox_health;
use domain::db::progress::{self, NewEvent};
use domain::events::{EmailEvent, EmailRetry, MessageRef, RetryRequest};
use domain::kafka::{Envelope, Handler, Payload as _};
use serde_json::json;

use crate::webhook_events::{self, About, Changes, Webhooks};

#[derive(Clone)]
pub struct RetryHandler {
    pool: PgPool,
    backoff: Vec<Duration>,
    webhooks: Webhooks,
}

impl RetryHandler {
    pub fn new(pool: PgPool, backoff: Vec<Duration>, webhooks: Webhooks) -> Self {
        Self {
            pool,
            backoff,
            webhooks,
        }
    }
}

/// When attempt `failed_attempt` (1-based) may be followed by the next, or `None` when the
/// schedule is used up. The sender's `not_before` wins when later.
pub fn retry_time(
    backoff: &[Duration],
    failed_attempt: u32,
    failed_at: DateTime<Utc>,
    not_before: Option<DateTime<Utc>>,
) -> Option<DateTime<Utc>> {
    let index = usize::try_from(failed_attempt).ok()?.checked_sub(1)?;
    let wait = TimeDelta::from_std(*backoff.get(index)?).ok()?;
    let at = failed_at.checked_add_signed(wait)?;
    Some(not_before.map_or(at, |nb| nb.max(at)))
}

impl Handler<EmailRetry> for RetryHandler {
    async fn handle(&self, envelope: Envelope<EmailRetry>) -> anyhow::Result<()> {
        let mut conn = self.pool.get().await?;
        let EmailRetry::Retry(request) = &envelope.body;
        let outcome = conn
            .transaction(async |tx| -> Result<Outcome, diesel::result::Error> {
                apply(tx, &envelope, request, &self.backoff, &self.webhooks).await
            })
            .await?;
        let label = match outcome {
            Outcome::Scheduled => "scheduled",
            Outcome::Failed => "failed",
            Outcome::WaitingForMailbox => "waiting_for_mailbox",
            Outcome::Ignored => "ignored",
        };
        metrics::counter!("scheduler_retry_requests_total", "outcome" => label).increment(1);
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Scheduled,
    Failed,
    /// Its mailbox cannot send: it waits for the mailbox, its retries untouched.
    WaitingForMailbox,
    /// A replay, or an attempt the message is no longer at.
    Ignored,
}

/// Applies one retry request; a message failed for good is announced on `webhooks`.
pub async fn apply(
    tx: &mut AsyncPgConnection,
    envelope: &Envelope<EmailRetry>,
    request: &RetryRequest,
    backoff: &[Duration],
    webhooks: &Webhooks,
) -> Result<Outcome, diesel::result::Error> {
    let attempt = i32::try_from(request.attempt).unwrap_or(i32::MAX);
    if !mailbox_health::is_active_locked(tx, request.mailbox_id).await? {
        let waiting =
            progress::wait_for_mailbox(tx, request.message_id, attempt, &request.error).await?;
        return Ok(if waiting {
            Outcome::WaitingForMailbox
        } else {
            Outcome::Ignored
        });
    }
    match retry_time(
        backoff,
        request.attempt,
        envelope.occurred_at,
        request.not_before,
    ) {
        Some(at) => {
            let scheduled =
                progress::schedule_retry(tx, request.message_id, attempt, at, &request.error)
                    .await?;
            Ok(if scheduled {
                Outcome::Scheduled
            } else {
                Outcome::Ignored
            })
        }
        None => {
            // The enrollment before the message, as the events consumer and a delete of
            // messages with their step or mailbox lock them (migration 000082): the other
            // order could deadlock with such a delete.
            let enrollment = progress::lock_enrollment(tx, request.enrollment_id).await?;
            if !progress::fail_attempt(tx, request.message_id, attempt, &request.error).await? {
                return Ok(Outcome::Ignored);
            }
            let Some(enrollment) = enrollment else {
                return Ok(Outcome::Failed);
            };
            // Counted like any failure in the step's statistics.
            let recorded = progress::record_event(
                tx,
                &NewEvent {
                    id: envelope.id,
                    workspace_id: enrollment.workspace_id,
                    message_id: Some(request.message_id),
                    enrollment_id: Some(enrollment.id),
                    contact_id: Some(enrollment.contact_id),
                    event_type: "failed",
                    occurred_at: envelope.occurred_at,
                    is_bot: None,
                    bot_reason: None,
                    url: None,
                    user_agent: None,
                    client_ip: None,
                    payload: json!({"reason": request.error, "attempts": request.attempt}),
                },
            )
            .await?;
            let stopped = progress::stop(tx, enrollment.id, "failed", "retries_exhausted").await?;
            if recorded {
                // Announced as the `failed` event it amounts to, under the request's id.
                let failed = Envelope {
                    id: envelope.id,
                    version: EmailEvent::VERSION,
                    occurred_at: envelope.occurred_at,
                    workspace_id: enrollment.workspace_id,
                    body: EmailEvent::Failed {
                        message: MessageRef {
                            message_id: request.message_id,
                            enrollment_id: enrollment.id,
                        },
                        reason: request.error.clone(),
                    },
                };
                let step_order = webhook_events::step_of_message(tx, request.message_id).await?;
                let about = About::of(&enrollment, Some(request.message_id), step_order);
                let mut changes = Changes::recorded(&failed, about);
                if stopped {
                    changes.stopped("failed", "retries_exhausted");
                }
                webhooks.write(tx, &changes.announcements).await?;
            }
            Ok(Outcome::Failed)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule() -> Vec<Duration> {
        [300, 1800, 7200, 21600]
            .into_iter()
            .map(Duration::from_secs)
            .collect()
    }

    #[test]
    fn each_failed_attempt_waits_its_step_of_the_schedule() -> anyhow::Result<()> {
        let failed_at: DateTime<Utc> = "2026-03-02T10:00:00Z".parse()?;
        let expected = [(1, 5), (2, 30), (3, 120), (4, 360)];
        for (attempt, minutes) in expected {
            assert_eq!(
                retry_time(&schedule(), attempt, failed_at, None),
                Some(failed_at + TimeDelta::minutes(minutes)),
                "attempt {attempt}"
            );
        }
        Ok(())
    }

    #[test]
    fn the_schedule_used_up_means_no_retry() -> anyhow::Result<()> {
        let failed_at: DateTime<Utc> = "2026-03-02T10:00:00Z".parse()?;
        assert_eq!(retry_time(&schedule(), 5, failed_at, None), None);
        assert_eq!(retry_time(&[], 1, failed_at, None), None);
        assert_eq!(retry_time(&schedule(), 0, failed_at, None), None);
        Ok(())
    }

    #[test]
    fn a_later_not_before_wins_an_earlier_one_does_not() -> anyhow::Result<()> {
        let failed_at: DateTime<Utc> = "2026-03-02T10:00:00Z".parse()?;
        let later = failed_at + TimeDelta::hours(1);
        assert_eq!(
            retry_time(&schedule(), 1, failed_at, Some(later)),
            Some(later)
        );
        let earlier = failed_at + TimeDelta::minutes(1);
        assert_eq!(
            retry_time(&schedule(), 1, failed_at, Some(earlier)),
            Some(failed_at + TimeDelta::minutes(5))
        );
        Ok(())
    }
}
