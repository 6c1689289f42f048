//! The consumer of `email-events`: what happened to a message moves its enrollment. Events
//! are applied by batches (what the consumer read within a few milliseconds, up to
//! [`BATCH`]), each batch in one transaction that also stores its events under their envelope
//! ids: a redelivered event, within the batch or after it, finds itself stored and changes
//! nothing. The batch's enrollments are locked together, the stored ones among its events
//! looked up by one statement, the new ones applied in the batch's order, which keeps each
//! enrollment's events in the order of their partition, and stored by one statement (which
//! must store all of them, or the transaction fails and the batch is applied again).
//!
//! `sent` advances the enrollment here rather than through a `followup-events` hop: the
//! scheduler owns enrollment state, and a second topic would add a second at-least-once step
//! (and a window where the event is stored but the step not advanced) for no gain.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use chrono::{DateTime, Utc};
use diesel_async::{AsyncConnection as _, AsyncPgConnection};
use domain::db::PgPool;
use domain::db::progress::{self, EnrollmentContext, MessageOwner, NewEvent, StoppedEnrollment};
use domain::db::steps::Step;
use domain::db::suppressions::NewSuppression;
use domain::events::{EmailEvent, MessageRef, PauseCause};
use domain::kafka::{BatchHandler, Batching, Envelope, Handler};
use serde_json::json;
use uuid::Uuid;

use crate::reputation;
use crate::timing::{self, Wait};
use crate::webhook_events::{About, Changes, Webhooks};
use crate::window::SendWindow;

/// Events applied per transaction at most.
pub const BATCH: usize = 500;

/// How the consumer gathers a batch: up to [`BATCH`] events, waiting at most 5 ms after the
/// first (a lone event is applied about as soon as it was one at a time). Two batches of
/// different partitions apply at once, on two connections: one transaction's statements
/// leave PostgreSQL idle while the scheduler prepares the next, and events are keyed by
/// enrollment, so two batches at once never share an enrollment.
pub const BATCHING: Batching = Batching {
    max_records: BATCH,
    wait: Duration::from_millis(5),
    lanes: 2,
};

/// Rows per `INSERT` of events at most (one array per column each).
const INSERT_CHUNK: usize = 1_000;

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

impl BatchHandler<EmailEvent> for EventHandler {
    async fn handle(&self, batch: &[Envelope<EmailEvent>]) -> anyhow::Result<()> {
        let mut conn = self.pool.get().await?;
        let outcomes = conn
            .transaction(async |tx| {
                apply_batch(tx, batch, &self.webhooks, Some(&self.reputation)).await
            })
            .await?;
        for outcome in outcomes {
            if let Some(cause) = outcome.paused {
                metrics::counter!("mailboxes_auto_paused_total", "reason" => cause.as_str())
                    .increment(1);
            }
            if outcome.applied {
                metrics::counter!("scheduler_events_applied_total", "type" => outcome.kind)
                    .increment(1);
            } else {
                metrics::counter!("scheduler_events_ignored_total", "type" => outcome.kind)
                    .increment(1);
            }
        }
        Ok(())
    }
}

/// One event at a time, as a batch of one.
impl Handler<EmailEvent> for EventHandler {
    async fn handle(&self, envelope: Envelope<EmailEvent>) -> anyhow::Result<()> {
        BatchHandler::handle(self, std::slice::from_ref(&envelope)).await
    }
}

/// What applying a batch did with one of its events.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// Its `events.event_type`.
    pub kind: &'static str,
    /// False for a duplicate or an event about nothing that still exists.
    pub applied: bool,
    /// The mailbox the reputation guard paused after it, if it did.
    pub paused: Option<PauseCause>,
}

/// Applies one event and announces it on `webhooks`; false when it was a duplicate or
/// concerns nothing that still exists.
pub async fn apply(
    tx: &mut AsyncPgConnection,
    envelope: &Envelope<EmailEvent>,
    webhooks: &Webhooks,
) -> Result<bool, diesel::result::Error> {
    let outcomes = apply_batch(tx, std::slice::from_ref(envelope), webhooks, None).await?;
    Ok(outcomes.first().is_some_and(|o| o.applied))
}

/// Applies `batch` in its order and announces what it recorded on `webhooks`; with
/// `reputation`, a hard bounce or complaint has its mailbox's reputation reviewed after it.
/// Returns what became of each event, in the batch's order.
pub async fn apply_batch(
    tx: &mut AsyncPgConnection,
    batch: &[Envelope<EmailEvent>],
    webhooks: &Webhooks,
    reputation: Option<&reputation::Guard>,
) -> Result<Vec<Outcome>, diesel::result::Error> {
    let mut outcomes: Vec<Outcome> = batch
        .iter()
        .map(|e| Outcome {
            kind: event_type(&e.body),
            applied: false,
            paused: None,
        })
        .collect();
    // A copy within the batch is a redelivery like any other: the first one counts.
    let mut seen = HashSet::with_capacity(batch.len());
    let unique: Vec<usize> = (0..batch.len())
        .filter(|&i| seen.insert(batch[i].id))
        .collect();

    let mut enrollment_ids: Vec<Uuid> = unique
        .iter()
        .map(|&i| message_of(&batch[i].body).enrollment_id)
        .collect();
    enrollment_ids.sort_unstable();
    enrollment_ids.dedup();
    let mut enrollments: HashMap<Uuid, EnrollmentContext> =
        progress::lock_enrollments(tx, &enrollment_ids)
            .await?
            .into_iter()
            .map(|e| (e.id, e))
            .collect();

    let mut relevant = Vec::with_capacity(unique.len());
    for i in unique {
        let envelope = &batch[i];
        let enrollment_id = message_of(&envelope.body).enrollment_id;
        match enrollments.get(&enrollment_id) {
            None => {
                tracing::info!(enrollment.id = %enrollment_id, "event for a deleted enrollment ignored");
            }
            Some(enrollment) if enrollment.workspace_id != envelope.workspace_id => {
                tracing::warn!(
                    enrollment.id = %enrollment.id,
                    "event names another workspace than its enrollment's; ignored"
                );
            }
            Some(_) => relevant.push(i),
        }
    }
    let mut message_ids: Vec<Uuid> = relevant
        .iter()
        .map(|&i| message_of(&batch[i].body).message_id)
        .collect();
    message_ids.sort_unstable();
    message_ids.dedup();
    let owners: HashMap<Uuid, MessageOwner> = progress::message_owners(tx, &message_ids)
        .await?
        .into_iter()
        .map(|m| (m.id, m))
        .collect();
    // The message, when it exists and belongs to the event's enrollment.
    let owner_of = |envelope: &Envelope<EmailEvent>| {
        let message = message_of(&envelope.body);
        owners
            .get(&message.message_id)
            .filter(|o| o.enrollment_id == message.enrollment_id)
            .copied()
    };

    // Which events are new is read first; they are inserted after their effects, so the
    // statistics trigger's update of each step's shared row (held until commit) comes last
    // in the transaction, where transactions of other partitions wait on it least. Unless
    // a reputation review is to read them: then first, as the review must see its event.
    let ids: Vec<Uuid> = relevant.iter().map(|&i| batch[i].id).collect();
    let known: HashSet<Uuid> = progress::stored_events(tx, &ids)
        .await?
        .into_iter()
        .collect();
    let rows: Vec<NewEvent<'_>> = relevant
        .iter()
        .filter(|&&i| !known.contains(&batch[i].id))
        .filter_map(|&i| {
            let envelope = &batch[i];
            let enrollment = enrollments.get(&message_of(&envelope.body).enrollment_id)?;
            Some(new_event(envelope, enrollment, owner_of(envelope)))
        })
        .collect();
    let stored: HashSet<Uuid> = rows.iter().map(|r| r.id).collect();
    let reviewed = reputation.is_some()
        && rows
            .iter()
            .any(|r| matches!(r.event_type, "bounced" | "complained"));
    let mut rows = Some(rows);
    if reviewed {
        record_events(tx, rows.take().unwrap_or_default(), &stored).await?;
    }

    let steps = steps_for(tx, batch, &relevant, &stored, &enrollments).await?;
    let mut announcements = Vec::new();
    let mut pending = Pending::default();
    for i in relevant {
        let envelope = &batch[i];
        if !stored.contains(&envelope.id) {
            continue;
        }
        let owner = owner_of(envelope);
        let enrollment_id = message_of(&envelope.body).enrollment_id;
        if pending.must_flush_before(&envelope.body, enrollment_id) {
            pending.flush(tx).await?;
        }
        let changes = apply_stored(
            tx,
            envelope,
            &mut enrollments,
            enrollment_id,
            owner,
            &steps,
            &mut pending,
        )
        .await?;
        let Some(changes) = changes else {
            continue;
        };
        announcements.extend(changes.announcements);
        outcomes[i].applied = true;
        // A hard bounce or complaint may put its mailbox over a reputation threshold.
        if let Some(guard) = reputation {
            outcomes[i].paused = guard.review(tx, envelope).await?;
        }
    }
    pending.flush(tx).await?;
    webhooks.write(tx, &announcements).await?;
    if let Some(rows) = rows {
        record_events(tx, rows, &stored).await?;
    }
    Ok(outcomes)
}

/// What the batch's `sent` events change, gathered over a run of the batch and written by
/// one statement: the enrollments advanced or completed. (The message itself is not written:
/// whoever announces a `sent` has marked it `sent`, with its send time, in the transaction
/// that wrote the announcement: the sender worker's `sending::mark_sent`, a resolution.)
/// Whether an enrollment moves is decided when its event is applied, from the locked
/// enrollment as the batch has changed it so far (its step and status), which is what the
/// statement's guard finds when it runs; an event whose own statements could see or change
/// what is pending has the pending writes flushed before it, so the batch's order holds.
#[derive(Debug, Default)]
struct Pending {
    moves: Vec<progress::Advance>,
    /// The enrollments of `moves`.
    enrollments: HashSet<Uuid>,
}

impl Pending {
    fn advance(&mut self, advance: progress::Advance) {
        self.enrollments.insert(advance.id);
        self.moves.push(advance);
    }

    /// Whether `event` of `enrollment_id` must see the pending writes done: any event that
    /// writes its enrollment (a second `sent` of one included: one statement moves an
    /// enrollment once), and those that stop a contact's every enrollment or review a
    /// mailbox's reputation from its messages.
    fn must_flush_before(&self, event: &EmailEvent, enrollment_id: Uuid) -> bool {
        if self.enrollments.is_empty() {
            return false;
        }
        match event {
            EmailEvent::Opened { .. }
            | EmailEvent::Clicked { .. }
            | EmailEvent::Bounced { hard: false, .. } => false,
            EmailEvent::Sent { .. }
            | EmailEvent::Replied { .. }
            | EmailEvent::AutoReplied { .. }
            | EmailEvent::Failed { .. }
            | EmailEvent::Held { .. } => self.enrollments.contains(&enrollment_id),
            EmailEvent::Bounced { hard: true, .. }
            | EmailEvent::Unsubscribed { .. }
            | EmailEvent::Complained { .. } => true,
        }
    }

    async fn flush(&mut self, tx: &mut AsyncPgConnection) -> Result<(), diesel::result::Error> {
        let mut moved = progress::advance_many(tx, &self.moves).await?;
        let mut expected: Vec<Uuid> = self.moves.iter().map(|m| m.id).collect();
        moved.sort_unstable();
        expected.sort_unstable();
        if moved != expected {
            // Only a write to a locked enrollment that the batch did not track can cause
            // this; announcing moves that did not happen would be worse than retrying.
            return Err(diesel::result::Error::QueryBuilderError(
                format!(
                    "{} of {} enrollments expected to advance did",
                    moved.len(),
                    expected.len()
                )
                .into(),
            ));
        }
        self.moves.clear();
        self.enrollments.clear();
        Ok(())
    }
}

/// Whether an enrollment of this status still moves on (what every guard of
/// `domain::db::progress` requires).
fn running(status: &str) -> bool {
    matches!(status, "active" | "paused")
}

/// The events table's row for `envelope`.
fn new_event<'a>(
    envelope: &'a Envelope<EmailEvent>,
    enrollment: &EnrollmentContext,
    owner: Option<MessageOwner>,
) -> NewEvent<'a> {
    let event = &envelope.body;
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
    NewEvent {
        id: envelope.id,
        workspace_id: envelope.workspace_id,
        message_id: owner.map(|o| o.id),
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
    }
}

/// Stores `rows` (no id twice), which are `expected`: events not stored before (one stored
/// since by another transaction fails the insert, and so the batch, which is applied again).
/// The statistics trigger counts by statement, a message's outcome once however many rows of
/// it one statement brings.
async fn record_events(
    tx: &mut AsyncPgConnection,
    rows: Vec<NewEvent<'_>>,
    expected: &HashSet<Uuid>,
) -> Result<(), diesel::result::Error> {
    let mut stored = 0;
    for chunk in rows.chunks(INSERT_CHUNK) {
        stored += progress::record_events(tx, chunk).await?;
    }
    if stored != expected.len() {
        // Another transaction stored some of them since they were looked up (the same
        // records applied twice at once, as in a rebalance): this one must change nothing.
        return Err(diesel::result::Error::QueryBuilderError(
            format!(
                "{stored} of {} new events stored; applying the batch again",
                expected.len()
            )
            .into(),
        ));
    }
    Ok(())
}

/// The live steps of the sequences whose enrollments a newly stored `sent` may advance, by
/// sequence.
async fn steps_for(
    tx: &mut AsyncPgConnection,
    batch: &[Envelope<EmailEvent>],
    relevant: &[usize],
    stored: &HashSet<Uuid>,
    enrollments: &HashMap<Uuid, EnrollmentContext>,
) -> Result<HashMap<Uuid, Vec<Step>>, diesel::result::Error> {
    let mut sequences: Vec<Uuid> = relevant
        .iter()
        .map(|&i| &batch[i])
        .filter(|e| matches!(e.body, EmailEvent::Sent { .. }) && stored.contains(&e.id))
        .filter_map(|e| enrollments.get(&message_of(&e.body).enrollment_id))
        .map(|e| e.sequence_id)
        .collect();
    if sequences.is_empty() {
        return Ok(HashMap::new());
    }
    sequences.sort_unstable();
    sequences.dedup();
    let mut steps: HashMap<Uuid, Vec<Step>> = HashMap::new();
    // In step order within each sequence.
    for step in domain::db::steps::live_for(tx, &sequences).await? {
        steps.entry(step.sequence_id).or_default().push(step);
    }
    Ok(steps)
}

/// Applies the effects of an event just stored, on its locked enrollment among
/// `enrollments` (whose step and status are kept current for the batch's later events), the
/// advance of a `sent` left to `pending`; returns what to announce (nothing when the
/// enrollment is not among them).
async fn apply_stored(
    tx: &mut AsyncPgConnection,
    envelope: &Envelope<EmailEvent>,
    enrollments: &mut HashMap<Uuid, EnrollmentContext>,
    enrollment_id: Uuid,
    owner: Option<MessageOwner>,
    steps: &HashMap<Uuid, Vec<Step>>,
    pending: &mut Pending,
) -> Result<Option<Changes>, diesel::result::Error> {
    let Some(enrollment) = enrollments.get_mut(&enrollment_id) else {
        return Ok(None);
    };
    let event = &envelope.body;
    let message_exists = owner.is_some();
    let message = message_of(event);
    let step_order = match event {
        EmailEvent::Sent { step_order, .. } => Some(*step_order),
        _ => owner.map(|o| o.step_order),
    };
    let mut changes = Changes::recorded(
        envelope,
        About::of(
            enrollment,
            message_exists.then_some(message.message_id),
            step_order,
        ),
    );
    let at = envelope.occurred_at;
    match event {
        EmailEvent::Sent { step_order, .. } => {
            let live = steps
                .get(&enrollment.sequence_id)
                .map(Vec::as_slice)
                .unwrap_or_default();
            let thread_mailbox = owner.and_then(|o| o.thread_mailbox());
            if let Some(advance) = advance_after(enrollment, live, *step_order, at, thread_mailbox)
            {
                pending.advance(advance);
                match advance.next_step {
                    Some(next) => enrollment.current_step = next,
                    None => {
                        enrollment.status = "completed".to_owned();
                        changes.completed();
                    }
                }
            }
        }
        EmailEvent::Replied { .. } => {
            if enrollment.stop_on_reply
                && progress::stop(tx, enrollment.id, "replied", "replied").await?
            {
                enrollment.status = "replied".to_owned();
                changes.stopped("replied", "replied");
            }
        }
        EmailEvent::AutoReplied { .. } => {
            if enrollment.stop_on_auto_reply
                && progress::stop(tx, enrollment.id, "replied", "auto_replied").await?
            {
                enrollment.status = "replied".to_owned();
                changes.stopped("replied", "auto_replied");
            }
        }
        EmailEvent::Bounced { hard: true, .. } => {
            if message_exists {
                progress::set_message_outcome(tx, message.message_id, "bounced", at, None).await?;
            }
            // The address does not exist: no sequence of the workspace should try it again,
            // and a contact re-imported later stays suppressed.
            let stopped = suppress(tx, enrollment, "bounced", "bounced", "hard_bounce").await?;
            changes.contact_stopped(&stopped, "bounced", "hard_bounce");
            mark_stopped(enrollments, &stopped, "bounced");
        }
        EmailEvent::Unsubscribed { .. } => {
            let stopped = suppress(
                tx,
                enrollment,
                "unsubscribed",
                "unsubscribed",
                "unsubscribed",
            )
            .await?;
            changes.contact_stopped(&stopped, "unsubscribed", "unsubscribed");
            mark_stopped(enrollments, &stopped, "unsubscribed");
        }
        EmailEvent::Complained { .. } => {
            let stopped = suppress(tx, enrollment, "complained", "stopped", "complained").await?;
            changes.contact_stopped(&stopped, "stopped", "complained");
            mark_stopped(enrollments, &stopped, "stopped");
        }
        EmailEvent::Failed { reason, .. } => {
            if message_exists {
                progress::set_message_outcome(tx, message.message_id, "failed", at, Some(reason))
                    .await?;
            }
            if progress::stop(tx, enrollment.id, "failed", "send_failed").await? {
                enrollment.status = "failed".to_owned();
                changes.stopped("failed", "send_failed");
            }
        }
        EmailEvent::Held {
            step_order, reason, ..
        } => {
            if progress::hold(tx, enrollment.id, *step_order, reason).await? {
                enrollment.status = "paused".to_owned();
            }
        }
        EmailEvent::Bounced { hard: false, .. }
        | EmailEvent::Opened { .. }
        | EmailEvent::Clicked { .. } => {}
    }
    Ok(Some(changes))
}

/// The enrollments of the batch that `stopped` names are now `status`.
fn mark_stopped(
    enrollments: &mut HashMap<Uuid, EnrollmentContext>,
    stopped: &[StoppedEnrollment],
    status: &str,
) {
    for e in stopped {
        if let Some(enrollment) = enrollments.get_mut(&e.id) {
            enrollment.status = status.to_owned();
        }
    }
}

/// After step `sent_step` went out at `sent_at`: on to the next of the sequence's `live`
/// steps (in order), due after its wait inside the window, or completed after the last one.
/// Only while the enrollment still runs at that step (a stale or replayed `sent` moves
/// nothing). `thread_mailbox` is the thread's mailbox if the sent message shows it.
fn advance_after(
    enrollment: &EnrollmentContext,
    live: &[Step],
    sent_step: i32,
    sent_at: DateTime<Utc>,
    thread_mailbox: Option<Uuid>,
) -> Option<progress::Advance> {
    if enrollment.current_step != sent_step || !running(&enrollment.status) {
        return None;
    }
    let next = live.iter().find(|s| s.step_order > sent_step);
    let next_send_at = next.map(|next| {
        let window = SendWindow::of(&enrollment.window);
        let wait = Wait {
            days: next.wait_days,
            hours: next.wait_hours,
            minutes: next.wait_minutes,
        };
        timing::next_send_at(sent_at, wait, &window)
    });
    Some(progress::Advance {
        id: enrollment.id,
        sent_step,
        next_step: next.map(|s| s.step_order),
        next_send_at,
        sent_at,
        thread_mailbox,
    })
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
