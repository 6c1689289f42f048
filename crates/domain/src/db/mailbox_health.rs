//! Mailbox health: the sender worker's automatic re-checks of mailboxes in `error`, and the
//! figures the scheduler's reputation guard judges a mailbox by.
//!
//! Re-checks: a mailbox entering `error` has no `next_check_at` (a trigger clears it and
//! `check_failures` on every change of status); [`schedule_rechecks`] gives it one, the
//! initial wait ahead. [`claim_rechecks`] takes the due ones (`SKIP LOCKED`) and moves their
//! next check forward at once, so another replica does not check them too; the check itself
//! runs outside any transaction, and its outcome is written only while the mailbox is still
//! the row that was claimed (same `updated_at`): a person who changed it meanwhile wins.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt, Double, Text, Timestamptz, Uuid as SqlUuid};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use super::mailboxes::{Mailbox, status};
use super::schema::mailboxes;

/// Sends the bounce rate is computed over: the mailbox's latest 50.
pub const BOUNCE_WINDOW: i64 = 50;
/// Sends the complaint rate is computed over: the mailbox's latest 200.
pub const COMPLAINT_WINDOW: i64 = 200;

/// The wait before the next re-check after `failures` failed ones: `initial` doubled per
/// failure, at most `max`.
pub fn recheck_delay(failures: i32, initial: Duration, max: Duration) -> Duration {
    let doublings = u32::try_from(failures.clamp(0, 32)).unwrap_or(0);
    initial
        .checked_mul(1_u32 << doublings.min(31))
        .map_or(max, |delay| delay.min(max))
}

fn after(now: DateTime<Utc>, delay: Duration) -> DateTime<Utc> {
    TimeDelta::from_std(delay)
        .ok()
        .and_then(|delta| now.checked_add_signed(delta))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// Gives mailboxes that entered `error` their first re-check, `initial` from `now`.
pub async fn schedule_rechecks(
    conn: &mut AsyncPgConnection,
    now: DateTime<Utc>,
    initial: Duration,
) -> QueryResult<usize> {
    diesel::update(
        mailboxes::table
            .filter(mailboxes::status.eq(status::ERROR))
            .filter(mailboxes::next_check_at.is_null()),
    )
    .set(mailboxes::next_check_at.eq(after(now, initial)))
    .execute(conn)
    .await
}

/// Claims up to `limit` mailboxes in `error` whose re-check is due, moving each one's next
/// check to where a failure of this one would put it. Returns them as they are after the
/// claim (their `updated_at` is what [`record_recheck`] compares with). Run it in a
/// transaction of its own: the rows stay locked until it commits.
pub async fn claim_rechecks(
    conn: &mut AsyncPgConnection,
    now: DateTime<Utc>,
    initial: Duration,
    max: Duration,
    limit: i64,
) -> QueryResult<Vec<Mailbox>> {
    let due: Vec<Mailbox> = mailboxes::table
        .filter(mailboxes::status.eq(status::ERROR))
        .filter(mailboxes::next_check_at.le(now))
        .order(mailboxes::next_check_at.asc())
        .limit(limit)
        .select(Mailbox::as_select())
        .for_update()
        .skip_locked()
        .load(conn)
        .await?;
    if due.is_empty() {
        return Ok(due);
    }
    #[derive(QueryableByName)]
    struct Claimed {
        #[diesel(sql_type = SqlUuid)]
        id: Uuid,
        #[diesel(sql_type = Timestamptz)]
        updated_at: DateTime<Utc>,
        #[diesel(sql_type = Timestamptz)]
        next_check_at: DateTime<Utc>,
    }
    let ids: Vec<Uuid> = due.iter().map(|m| m.id).collect();
    let next: Vec<DateTime<Utc>> = due
        .iter()
        .map(|m| after(now, recheck_delay(m.check_failures + 1, initial, max)))
        .collect();
    let claimed: Vec<Claimed> = diesel::sql_query(
        "UPDATE mailboxes mb SET next_check_at = t.at \
           FROM UNNEST($1::uuid[], $2::timestamptz[]) AS t(id, at) \
          WHERE mb.id = t.id \
         RETURNING mb.id, mb.updated_at, mb.next_check_at",
    )
    .bind::<Array<SqlUuid>, _>(&ids)
    .bind::<Array<Timestamptz>, _>(&next)
    .load(conn)
    .await?;
    Ok(due
        .into_iter()
        .filter_map(|mut m| {
            let c = claimed.iter().find(|c| c.id == m.id)?;
            m.updated_at = c.updated_at;
            m.next_check_at = Some(c.next_check_at);
            Some(m)
        })
        .collect())
}

/// What a re-check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recheck {
    Passed,
    /// Why it failed (already redacted: never a password).
    Failed(String),
}

/// What [`record_recheck`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recorded {
    /// `active` again.
    Recovered,
    /// Still `error`; the next re-check is at this time.
    StillFailing {
        failures: i32,
        next_check_at: DateTime<Utc>,
    },
    /// The mailbox changed since the claim (a person edited, verified or resumed it), or is
    /// gone: nothing written.
    Superseded,
}

/// Writes the outcome of the re-check of `claimed` (as [`claim_rechecks`] returned it),
/// only while the row is unchanged since: a success makes it `active` (clearing the reason;
/// its waiting messages become due), a failure stores the reason, counts it and puts the
/// next re-check one doubled wait ahead.
pub async fn record_recheck(
    conn: &mut AsyncPgConnection,
    claimed: &Mailbox,
    outcome: &Recheck,
    now: DateTime<Utc>,
    initial: Duration,
    max: Duration,
) -> QueryResult<Recorded> {
    let row = mailboxes::table
        .find(claimed.id)
        .filter(mailboxes::status.eq(status::ERROR))
        .filter(mailboxes::updated_at.eq(claimed.updated_at));
    match outcome {
        Recheck::Passed => {
            let changed = diesel::update(row)
                .set((
                    mailboxes::status.eq(status::ACTIVE),
                    mailboxes::status_reason.eq(None::<String>),
                ))
                .execute(conn)
                .await?;
            Ok(if changed == 1 {
                Recorded::Recovered
            } else {
                Recorded::Superseded
            })
        }
        Recheck::Failed(reason) => {
            let failures = claimed.check_failures.saturating_add(1);
            let next_check_at = after(now, recheck_delay(failures, initial, max));
            let changed = diesel::update(row)
                .set((
                    mailboxes::status_reason.eq(reason),
                    mailboxes::check_failures.eq(failures),
                    mailboxes::next_check_at.eq(next_check_at),
                ))
                .execute(conn)
                .await?;
            Ok(if changed == 1 {
                Recorded::StillFailing {
                    failures,
                    next_check_at,
                }
            } else {
                Recorded::Superseded
            })
        }
    }
}

/// A mailbox's latest outcomes, as the reputation guard judges them.
#[derive(Debug, Clone, PartialEq, QueryableByName)]
pub struct Reputation {
    #[diesel(sql_type = SqlUuid)]
    pub workspace_id: Uuid,
    #[diesel(sql_type = Text)]
    pub status: String,
    #[diesel(sql_type = Double)]
    pub max_bounce_rate: f64,
    #[diesel(sql_type = Double)]
    pub max_complaint_rate: f64,
    /// Sends among the latest [`BOUNCE_WINDOW`] (fewer while the mailbox is new).
    #[diesel(sql_type = BigInt)]
    pub bounce_sends: i64,
    /// Of those, the hard bounces: bounced at send time, or reported later.
    #[diesel(sql_type = BigInt)]
    pub bounces: i64,
    /// Sends among the latest [`COMPLAINT_WINDOW`].
    #[diesel(sql_type = BigInt)]
    pub complaint_sends: i64,
    /// Of those, the ones a recipient reported as spam.
    #[diesel(sql_type = BigInt)]
    pub complaints: i64,
}

/// The mailbox's thresholds and latest outcomes. "Sends" are its messages that went out
/// (`sent` or `bounced`), newest first by id (UUIDv7: dispatch order), read through the index
/// `messages_mailbox_idx` with the status checked on the row (no index of `messages` refers to
/// `status`, so the worker's updates stay heap-only: migration 000085); a message counts once
/// however many events it has.
pub async fn reputation(
    conn: &mut AsyncPgConnection,
    mailbox_id: Uuid,
) -> QueryResult<Option<Reputation>> {
    diesel::sql_query(
        "SELECT mb.workspace_id, mb.status, mb.max_bounce_rate, mb.max_complaint_rate, \
                count(r.id) FILTER (WHERE r.n <= $2) AS bounce_sends, \
                count(r.id) FILTER (WHERE r.n <= $2 AND r.bounced) AS bounces, \
                count(r.id) FILTER (WHERE r.n <= $3) AS complaint_sends, \
                count(r.id) FILTER (WHERE r.n <= $3 AND r.complained) AS complaints \
           FROM mailboxes mb \
           LEFT JOIN LATERAL ( \
                SELECT m.id, row_number() OVER (ORDER BY m.id DESC) AS n, \
                       m.status = 'bounced' OR EXISTS ( \
                           SELECT 1 FROM events e \
                            WHERE e.message_id = m.id AND e.event_type = 'bounced') AS bounced, \
                       EXISTS ( \
                           SELECT 1 FROM events e \
                            WHERE e.message_id = m.id AND e.event_type = 'complained') \
                           AS complained \
                  FROM (SELECT id, status FROM messages \
                         WHERE mailbox_id = mb.id AND status IN ('sent', 'bounced') \
                         ORDER BY id DESC LIMIT GREATEST($2, $3)) m \
           ) r ON true \
          WHERE mb.id = $1 \
          GROUP BY mb.id",
    )
    .bind::<SqlUuid, _>(mailbox_id)
    .bind::<BigInt, _>(BOUNCE_WINDOW)
    .bind::<BigInt, _>(COMPLAINT_WINDOW)
    .get_result(conn)
    .await
    .optional()
}

/// Pauses an `active` mailbox with `reason` (the reputation guard); true when it did.
/// Anything else (already paused, in `error`, disabled) is left as it is.
pub async fn pause(
    conn: &mut AsyncPgConnection,
    mailbox_id: Uuid,
    reason: &str,
) -> QueryResult<bool> {
    diesel::update(
        mailboxes::table
            .find(mailbox_id)
            .filter(mailboxes::status.eq(status::ACTIVE)),
    )
    .set((
        mailboxes::status.eq(status::PAUSED),
        mailboxes::status_reason.eq(reason),
    ))
    .execute(conn)
    .await
    .map(|n| n == 1)
}

/// The mailbox a message was sent from.
pub async fn mailbox_of_message(
    conn: &mut AsyncPgConnection,
    message_id: Uuid,
) -> QueryResult<Option<Uuid>> {
    use super::schema::messages;
    messages::table
        .find(message_id)
        .select(messages::mailbox_id)
        .first(conn)
        .await
        .optional()
}

/// Whether the mailbox can send now (`active`), read under a share lock so that a status
/// change waits for the caller's transaction: a message parked for a mailbox that is not
/// active is then released by the change that reactivates it (see the migration's trigger).
pub async fn is_active_locked(conn: &mut AsyncPgConnection, mailbox_id: Uuid) -> QueryResult<bool> {
    let current: Option<String> = mailboxes::table
        .find(mailbox_id)
        .select(mailboxes::status)
        .for_share()
        .first(conn)
        .await
        .optional()?;
    Ok(current.as_deref() == Some(status::ACTIVE))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wait_doubles_per_failure_up_to_the_maximum() {
        let initial = Duration::from_secs(900);
        let max = Duration::from_secs(21_600);
        let waits: Vec<u64> = (0..8)
            .map(|failures| recheck_delay(failures, initial, max).as_secs())
            .collect();
        assert_eq!(
            waits,
            [900, 1800, 3600, 7200, 14_400, 21_600, 21_600, 21_600]
        );
        assert_eq!(recheck_delay(i32::MAX, initial, max), max);
        assert_eq!(recheck_delay(-1, initial, max), initial);
    }
}
