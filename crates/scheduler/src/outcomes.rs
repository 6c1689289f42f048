//! The consumer of `email-events`: what happened to a message moves its enrollment. Each
//! event is applied in one transaction that also stores it under its envelope id, so a
//! redelivered event finds itself stored and changes nothing.
//!
//! `sent` advances the enrollment here rather than through a `followup-events` hop: the
//! scheduler owns enrollment state, and a second topic would add a second at-least-once step
//! (and a window where the event is stored but the step not advanced) for no gain.

use chrono::{DateTime, Utc};
use diesel_async::{AsyncConnection as _, AsyncPgConnection};
use domain::db::PgPool;
use domain::db::progress::{self, EnrollmentContext, NewEvent, StoppedEnrollment};
use domain::db::suppressions::NewSuppression;
use domain::events::{EmailEvent, MessageRef};
use domain::kafka::{Envelope, Handler};
use serde_json::json;
use uuid::Uuid;

use crate::reputation;
use crate::timing::{self, Wait};
use crate::webhook_events::{About, Changes, Webhooks};
use crate::window::SendWindow;

#[derive(Clone)]
pub struct EventHandler {
    pool: PgPool,
    reputation: reputation::Guard,
    webhooks: Webhooks,
}

impl EventHandler {
    pub fn new(pool: PgPool, reputation: reputation::Guard, webhooks: Webhooks) -> Self {
        Self {
            pool,
            reputation,
            webhooks,
        }
    }
}

impl Handler<EmailEvent> for EventHandler {
    async fn handle(&self, envelope: Envelope<EmailEvent>) -> anyhow::Result<()> {
        let mut conn = self.pool.get().await?;
        let (applied, paused) = conn
            .transaction(async |tx| -> Result<_, diesel::result::Error> {
                let applied = apply(tx, &envelope, &self.webhooks).await?;
                // A hard bounce or complaint may put its mailbox over a reputation threshold.
                let paused = match applied {
                    true => self.reputation.review(tx, &envelope).await?,
                    false => None,
                };
                Ok((applied, paused))
            })
            .await?;
        if let Some(cause) = paused {
            metrics::counter!("mailboxes_auto_paused_total", "reason" => cause.as_str())
                .increment(1);
        }
        let kind = event_type(&envelope.body);
        if applied {
            metrics::counter!("scheduler_events_applied_total", "type" => kind).increment(1);
        } else {
            metrics::counter!("scheduler_events_ignored_total", "type" => kind).increment(1);
        }
        Ok(())
    }
}

/// Applies one event and announces it on `webhooks`; false when it was a duplicate or
/// concerns nothing that still exists.
pub async fn apply(
    tx: &mut AsyncPgConnection,
    envelope: &Envelope<EmailEvent>,
    webhooks: &Webhooks,
) -> Result<bool, diesel::result::Error> {
    let event = &envelope.body;
    let message = message_of(event);
    let Some(enrollment) = progress::lock_enrollment(tx, message.enrollment_id).await? else {
        tracing::info!(enrollment.id = %message.enrollment_id, "event for a deleted enrollment ignored");
        return Ok(false);
    };
    if enrollment.workspace_id != envelope.workspace_id {
        tracing::warn!(
            enrollment.id = %enrollment.id,
            "event names another workspace than its enrollment's; ignored"
        );
        return Ok(false);
    }
    let message_exists =
        progress::message_of_enrollment(tx, message.message_id, enrollment.id).await?;
    let (is_bot, bot_reason, url) = match event {
        EmailEvent::Opened {
            is_bot, bot_reason, ..
        } => (Some(*is_bot), bot_reason.as_deref(), None),
        EmailEvent::Clicked {
            is_bot,
            bot_reason,
            url,
            ..
        } => (Some(*is_bot), bot_reason.as_deref(), Some(url.as_str())),
        _ => (None, None, None),
    };
    let client = match event {
        EmailEvent::Opened { client, .. }
        | EmailEvent::Clicked { client, .. }
        | EmailEvent::Unsubscribed { client, .. } => Some(client),
        _ => None,
    };
    let stored = progress::record_event(
        tx,
        &NewEvent {
            id: envelope.id,
            workspace_id: envelope.workspace_id,
            message_id: message_exists.then_some(message.message_id),
            enrollment_id: Some(enrollment.id),
            contact_id: Some(enrollment.contact_id),
            event_type: event_type(event),
            occurred_at: envelope.occurred_at,
            is_bot,
            bot_reason,
            url,
            user_agent: client.and_then(|c| c.user_agent.as_deref()),
            client_ip: client.and_then(|c| c.client_ip.as_deref()),
            payload: details(event),
        },
    )
    .await?;
    if !stored {
        return Ok(false);
    }
    let step_order = match event {
        EmailEvent::Sent { step_order, .. } => Some(*step_order),
        _ if message_exists => {
            crate::webhook_events::step_of_message(tx, message.message_id).await?
        }
        _ => None,
    };
    let mut changes = Changes::recorded(
        envelope,
        About::of(
            &enrollment,
            message_exists.then_some(message.message_id),
            step_order,
        ),
    );
    let at = envelope.occurred_at;
    match event {
        EmailEvent::Sent { step_order, .. } => {
            if message_exists {
                progress::set_message_outcome(tx, message.message_id, "sent", at, None).await?;
            }
            if advance_after(tx, &enrollment, *step_order, at).await? == Advanced::Completed {
                changes.completed();
            }
        }
        EmailEvent::Replied { .. } => {
            if enrollment.stop_on_reply
                && progress::stop(tx, enrollment.id, "replied", "replied").await?
            {
                changes.stopped("replied", "replied");
            }
        }
        EmailEvent::AutoReplied { .. } => {
            if enrollment.stop_on_auto_reply
                && progress::stop(tx, enrollment.id, "replied", "auto_replied").await?
            {
                changes.stopped("replied", "auto_replied");
            }
        }
        EmailEvent::Bounced { hard: true, .. } => {
            if message_exists {
                progress::set_message_outcome(tx, message.message_id, "bounced", at, None).await?;
            }
            // The address does not exist: no sequence of the workspace should try it again,
            // and a contact re-imported later stays suppressed.
            let stopped = suppress(tx, &enrollment, "bounced", "bounced", "hard_bounce").await?;
            changes.contact_stopped(&stopped, "bounced", "hard_bounce");
        }
        EmailEvent::Unsubscribed { .. } => {
            let stopped = suppress(
                tx,
                &enrollment,
                "unsubscribed",
                "unsubscribed",
                "unsubscribed",
            )
            .await?;
            changes.contact_stopped(&stopped, "unsubscribed", "unsubscribed");
        }
        EmailEvent::Complained { .. } => {
            let stopped = suppress(tx, &enrollment, "complained", "stopped", "complained").await?;
            changes.contact_stopped(&stopped, "stopped", "complained");
        }
        EmailEvent::Failed { reason, .. } => {
            if message_exists {
                progress::set_message_outcome(tx, message.message_id, "failed", at, Some(reason))
                    .await?;
            }
            if progress::stop(tx, enrollment.id, "failed", "send_failed").await? {
                changes.stopped("failed", "send_failed");
            }
        }
        EmailEvent::Held {
            step_order, reason, ..
        } => {
            progress::hold(tx, enrollment.id, *step_order, reason).await?;
        }
        EmailEvent::Bounced { hard: false, .. }
        | EmailEvent::Opened { .. }
        | EmailEvent::Clicked { .. } => {}
    }
    webhooks.write(tx, &changes.announcements).await?;
    Ok(true)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Advanced {
    /// Not at the step sent any more (a stale or replayed `sent`).
    No,
    NextStep,
    Completed,
}

/// After step `sent_step` went out at `sent_at`: on to the next live step, due after its wait
/// inside the window, or completed after the last one. Applies only while the enrollment is
/// still at that step.
async fn advance_after(
    tx: &mut AsyncPgConnection,
    enrollment: &EnrollmentContext,
    sent_step: i32,
    sent_at: DateTime<Utc>,
) -> Result<Advanced, diesel::result::Error> {
    if enrollment.current_step != sent_step {
        return Ok(Advanced::No);
    }
    let steps = domain::db::steps::live_for(tx, &[enrollment.sequence_id]).await?;
    match steps.iter().find(|s| s.step_order > sent_step) {
        Some(next) => {
            let window = SendWindow::of(&enrollment.window);
            let wait = Wait {
                days: next.wait_days,
                hours: next.wait_hours,
                minutes: next.wait_minutes,
            };
            let due = timing::next_send_at(sent_at, wait, &window);
            let moved =
                progress::advance(tx, enrollment.id, sent_step, next.step_order, due, sent_at)
                    .await?;
            Ok(if moved {
                Advanced::NextStep
            } else {
                Advanced::No
            })
        }
        None => {
            let completed = progress::complete(tx, enrollment.id, sent_step, sent_at).await?;
            Ok(if completed {
                Advanced::Completed
            } else {
                Advanced::No
            })
        }
    }
}

/// Unsubscribe, complaint and hard bounce: the address goes on the workspace's suppression list, the
/// contact is marked, and every running enrollment of the contact stops; returns those.
async fn suppress(
    tx: &mut AsyncPgConnection,
    enrollment: &EnrollmentContext,
    reason: &str,
    enrollment_status: &str,
    stop_reason: &str,
) -> Result<Vec<StoppedEnrollment>, diesel::result::Error> {
    domain::db::suppressions::insert_or_get(
        tx,
        &NewSuppression {
            id: Uuid::now_v7(),
            workspace_id: enrollment.workspace_id,
            email: &enrollment.email,
            reason,
            source: Some("event"),
        },
    )
    .await?;
    progress::set_contact_status(tx, enrollment.contact_id, reason).await?;
    progress::stop_contact(
        tx,
        enrollment.workspace_id,
        enrollment.contact_id,
        enrollment_status,
        stop_reason,
    )
    .await
}

fn message_of(event: &EmailEvent) -> &MessageRef {
    match event {
        EmailEvent::Sent { message, .. }
        | EmailEvent::Opened { message, .. }
        | EmailEvent::Clicked { message, .. }
        | EmailEvent::Replied { message, .. }
        | EmailEvent::AutoReplied { message, .. }
        | EmailEvent::Bounced { message, .. }
        | EmailEvent::Unsubscribed { message, .. }
        | EmailEvent::Complained { message }
        | EmailEvent::Failed { message, .. }
        | EmailEvent::Held { message, .. } => message,
    }
}

/// The `events.event_type` of an event.
fn event_type(event: &EmailEvent) -> &'static str {
    match event {
        EmailEvent::Sent { .. } => "sent",
        EmailEvent::Opened { .. } => "opened",
        EmailEvent::Clicked { .. } => "clicked",
        EmailEvent::Replied { .. } => "replied",
        EmailEvent::AutoReplied { .. } => "auto_replied",
        EmailEvent::Bounced { hard: true, .. } => "bounced",
        EmailEvent::Bounced { hard: false, .. } => "soft_bounced",
        EmailEvent::Unsubscribed { .. } => "unsubscribed",
        EmailEvent::Complained { .. } => "complained",
        EmailEvent::Failed { .. } => "failed",
        EmailEvent::Held { .. } => "held",
    }
}

/// What the events table keeps beyond its columns.
fn details(event: &EmailEvent) -> serde_json::Value {
    match event {
        EmailEvent::Sent {
            step_order,
            message_id_header,
            ..
        } => json!({"step_order": step_order, "message_id_header": message_id_header}),
        EmailEvent::Bounced { diagnostic, .. } => json!({"diagnostic": diagnostic}),
        EmailEvent::Failed { reason, .. } | EmailEvent::Held { reason, .. } => {
            json!({"reason": reason})
        }
        EmailEvent::Replied { inbound, .. } => json!({"inbound": inbound}),
        EmailEvent::AutoReplied {
            inbound, reason, ..
        } => json!({"inbound": inbound, "reason": reason}),
        _ => json!({}),
    }
}
