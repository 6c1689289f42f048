//! What to do with each claimed enrollment, decided without touching the database: stop it,
//! finish it, move it to a later time, or send its step from a chosen mailbox. Pure, so the
//! rules (suppression, windows, rotation, capacity, spacing) are unit-tested directly.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, NaiveDate, TimeDelta, Utc};
use chrono_tz::Tz;
use domain::db::dispatch::{DueEnrollment, MailboxForDispatch};
use domain::db::steps::Step;
use rand::Rng;
use uuid::Uuid;

use crate::timing;
use crate::window::SendWindow;

/// A mailbox as one round sees it: today's limit in its own zone and what is used of it.
#[derive(Debug, Clone)]
pub struct MailboxState {
    pub mailbox: MailboxForDispatch,
    pub zone: Tz,
    /// The mailbox's local date now; the units reserved count against it.
    pub day: NaiveDate,
    /// Today's limit, warmup applied.
    pub limit: i32,
    /// Units reserved today before this round.
    pub used: i32,
}

impl MailboxState {
    pub fn new(mailbox: MailboxForDispatch, now: DateTime<Utc>, used: i32) -> Self {
        let zone = mailbox.timezone.parse::<Tz>().unwrap_or(Tz::UTC);
        let day = now.with_timezone(&zone).date_naive();
        let limit = timing::daily_limit(
            mailbox.daily_limit,
            mailbox.warmup_enabled,
            mailbox.warmup_start_limit,
            mailbox.warmup_daily_increase,
            mailbox.warmup_started_on,
            day,
        );
        Self {
            mailbox,
            zone,
            day,
            limit,
            used,
        }
    }

    fn spaced(&self) -> bool {
        self.mailbox.min_interval_seconds > 0 || self.mailbox.max_jitter_seconds > 0
    }

    fn slot_due(&self, now: DateTime<Utc>) -> bool {
        self.mailbox
            .next_send_slot_at
            .is_none_or(|slot| slot <= now)
    }
}

/// Everything a round decides from.
pub struct Inputs<'a> {
    pub now: DateTime<Utc>,
    /// Live steps per sequence, in position order.
    pub steps: &'a HashMap<Uuid, Vec<Step>>,
    /// (workspace, address) pairs on a suppression list.
    pub suppressed: &'a HashSet<(Uuid, String)>,
    /// Rotation pool per sequence.
    pub pools: &'a HashMap<Uuid, Vec<Uuid>>,
    pub mailboxes: &'a HashMap<Uuid, MailboxState>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Send this step now from this mailbox.
    Send(Send),
    /// Nothing now; come back at `until`.
    Defer {
        enrollment_id: Uuid,
        until: DateTime<Utc>,
    },
    /// No step left.
    Complete { enrollment_id: Uuid },
    /// Never send again: status and reason.
    Stop {
        enrollment_id: Uuid,
        status: &'static str,
        reason: &'static str,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Send {
    pub enrollment_id: Uuid,
    pub workspace_id: Uuid,
    pub contact_id: Uuid,
    pub step_id: Uuid,
    pub step_order: i32,
    pub mailbox_id: Uuid,
    pub variant_index: Option<i32>,
}

/// The units a round asks of one mailbox.
#[derive(Debug, Clone, PartialEq)]
pub struct Ask {
    pub want: i32,
    /// For a spaced mailbox: its next slot once this round's send is taken.
    pub next_slot: Option<DateTime<Utc>>,
}

#[derive(Debug, Default)]
pub struct Plan {
    pub decisions: Vec<Decision>,
    pub asks: HashMap<Uuid, Ask>,
}

/// How long to wait before looking again at a follow-up whose mailbox cannot send (paused,
/// in error, disabled): a person has to act, so there is no point in polling faster.
const MAILBOX_UNAVAILABLE_RECHECK: TimeDelta = TimeDelta::hours(1);

/// Decides every claimed enrollment of one round.
pub fn plan(inputs: &Inputs<'_>, due: &[DueEnrollment], rng: &mut impl Rng) -> Plan {
    let now = inputs.now;
    let mut plan = Plan::default();
    // Units assigned so far in this round, per mailbox, on top of `used`.
    let mut assigned: HashMap<Uuid, i32> = HashMap::new();

    for enrollment in due {
        let id = enrollment.id;
        if let Some(stop) = stop_reason(inputs, enrollment) {
            plan.decisions.push(Decision::Stop {
                enrollment_id: id,
                status: stop.0,
                reason: stop.1,
            });
            continue;
        }
        let Some(step) = inputs.steps.get(&enrollment.sequence_id).and_then(|steps| {
            steps
                .iter()
                .find(|s| s.step_order >= enrollment.current_step)
        }) else {
            plan.decisions
                .push(Decision::Complete { enrollment_id: id });
            continue;
        };
        let window = SendWindow::of(&enrollment.window);
        let opening = window.earliest_at_or_after(now);
        if opening > now {
            plan.decisions.push(Decision::Defer {
                enrollment_id: id,
                until: opening,
            });
            continue;
        }
        let choice = match enrollment.mailbox_id {
            Some(mailbox_id) => follow_up_mailbox(inputs, &assigned, mailbox_id, &window),
            None => first_step_mailbox(inputs, &assigned, enrollment, &window),
        };
        match choice {
            Err(until) => plan.decisions.push(Decision::Defer {
                enrollment_id: id,
                until,
            }),
            Ok(mailbox_id) => {
                *assigned.entry(mailbox_id).or_default() += 1;
                let ask = plan.asks.entry(mailbox_id).or_insert(Ask {
                    want: 0,
                    next_slot: None,
                });
                ask.want += 1;
                if let Some(state) = inputs.mailboxes.get(&mailbox_id)
                    && state.spaced()
                {
                    ask.next_slot = Some(now + spacing(state, &window, rng));
                }
                plan.decisions.push(Decision::Send(Send {
                    enrollment_id: id,
                    workspace_id: enrollment.workspace_id,
                    contact_id: enrollment.contact_id,
                    step_id: step.id,
                    step_order: step.step_order,
                    mailbox_id,
                    variant_index: choose_variant(&step.variants, rng),
                }));
            }
        }
    }
    plan
}

fn stop_reason(
    inputs: &Inputs<'_>,
    enrollment: &DueEnrollment,
) -> Option<(&'static str, &'static str)> {
    match enrollment.contact_status.as_str() {
        "unsubscribed" => return Some(("unsubscribed", "contact_unsubscribed")),
        "bounced" => return Some(("bounced", "contact_bounced")),
        "complained" => return Some(("stopped", "contact_complained")),
        _ => {}
    }
    inputs
        .suppressed
        .contains(&(enrollment.workspace_id, enrollment.email.clone()))
        .then_some(("stopped", "suppressed"))
}

fn has_capacity(state: &MailboxState, assigned: &HashMap<Uuid, i32>) -> bool {
    state.used + assigned.get(&state.mailbox.id).copied().unwrap_or(0) < state.limit
}

/// Whether this round may give the mailbox one more send: capacity left, and for a spaced
/// mailbox its slot due and not already used this round.
fn can_send_now(state: &MailboxState, assigned: &HashMap<Uuid, i32>, now: DateTime<Utc>) -> bool {
    has_capacity(state, assigned)
        && (!state.spaced() || (state.slot_due(now) && !assigned.contains_key(&state.mailbox.id)))
}

/// When a mailbox that cannot send now can next be asked: its slot, or after its day.
fn next_chance(
    state: &MailboxState,
    assigned: &HashMap<Uuid, i32>,
    window: &SendWindow,
    now: DateTime<Utc>,
) -> DateTime<Utc> {
    if !has_capacity(state, assigned) {
        return window.opening_after_local_day(now, state.zone);
    }
    // A spaced mailbox already used this round: its slot moves about one interval on.
    let slot = state
        .mailbox
        .next_send_slot_at
        .filter(|slot| *slot > now)
        .unwrap_or(now + TimeDelta::seconds(i64::from(state.mailbox.min_interval_seconds)));
    window.earliest_at_or_after(slot.max(now + TimeDelta::seconds(1)))
}

/// Follow-ups stay in the first step's mailbox so the thread stays in one inbox.
fn follow_up_mailbox(
    inputs: &Inputs<'_>,
    assigned: &HashMap<Uuid, i32>,
    mailbox_id: Uuid,
    window: &SendWindow,
) -> Result<Uuid, DateTime<Utc>> {
    let now = inputs.now;
    let Some(state) = inputs.mailboxes.get(&mailbox_id) else {
        return Err(now + MAILBOX_UNAVAILABLE_RECHECK);
    };
    if state.mailbox.status != "active" {
        return Err(window.earliest_at_or_after(now + MAILBOX_UNAVAILABLE_RECHECK));
    }
    if can_send_now(state, assigned, now) {
        Ok(mailbox_id)
    } else {
        Err(next_chance(state, assigned, window, now))
    }
}

/// First steps rotate over the sequence's active mailboxes that can send now, least used
/// today first (ties by id, so replicas agree).
fn first_step_mailbox(
    inputs: &Inputs<'_>,
    assigned: &HashMap<Uuid, i32>,
    enrollment: &DueEnrollment,
    window: &SendWindow,
) -> Result<Uuid, DateTime<Utc>> {
    let now = inputs.now;
    let pool: Vec<&MailboxState> = inputs
        .pools
        .get(&enrollment.sequence_id)
        .into_iter()
        .flatten()
        .filter_map(|id| inputs.mailboxes.get(id))
        .filter(|m| m.mailbox.status == "active")
        .collect();
    let best = pool
        .iter()
        .filter(|m| can_send_now(m, assigned, now))
        .min_by_key(|m| {
            let load = m.used + assigned.get(&m.mailbox.id).copied().unwrap_or(0);
            (load, m.mailbox.id)
        });
    if let Some(best) = best {
        return Ok(best.mailbox.id);
    }
    Err(pool
        .iter()
        .map(|m| next_chance(m, assigned, window, now))
        .min()
        .unwrap_or_else(|| window.earliest_at_or_after(now + MAILBOX_UNAVAILABLE_RECHECK)))
}

/// Time to the mailbox's next send: its minimum interval, stretched so a day's sends spread
/// over the window instead of bursting at its opening, plus random jitter.
fn spacing(state: &MailboxState, window: &SendWindow, rng: &mut impl Rng) -> TimeDelta {
    let min = i64::from(state.mailbox.min_interval_seconds.max(0));
    let spread = window.length().num_seconds() / i64::from(state.limit.max(1));
    let jitter = i64::from(state.mailbox.max_jitter_seconds.max(0));
    let jitter = if jitter > 0 {
        rng.random_range(0..=jitter)
    } else {
        0
    };
    TimeDelta::seconds(min.max(spread) + jitter)
}

/// A/B variant by weight (`[{"subject", "content", "weight"}]`); `None` without variants.
/// A missing weight counts as 1; a non-positive one never wins unless all are.
pub fn choose_variant(variants: &serde_json::Value, rng: &mut impl Rng) -> Option<i32> {
    let variants = variants.as_array().filter(|v| !v.is_empty())?;
    let weights: Vec<u64> = variants
        .iter()
        .map(|v| {
            v.get("weight")
                .and_then(serde_json::Value::as_f64)
                .map_or(1, |w| if w > 0.0 { (w * 1000.0) as u64 } else { 0 })
        })
        .collect();
    let total: u64 = weights.iter().sum();
    if total == 0 {
        return Some(0);
    }
    let mut pick = rng.random_range(0..total);
    for (index, weight) in weights.iter().enumerate() {
        if pick < *weight {
            return i32::try_from(index).ok();
        }
        pick -= weight;
    }
    Some(0)
}

#[cfg(test)]
mod tests;
