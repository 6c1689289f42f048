//! When a step is due, and how many emails a mailbox may send on a given day. Pure: the
//! caller passes the instants and rows in.

use chrono::{DateTime, Datelike, Days, NaiveDate, TimeDelta, Utc, Weekday};
use chrono_tz::Tz;

use crate::window::{SendWindow, parse_zone, to_local, to_utc};

/// A step's wait before it is sent (`steps.wait_days`, `wait_hours`, `wait_minutes`).
/// Negative parts, which the database refuses, count as zero.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Wait {
    pub days: i32,
    pub hours: i32,
    pub minutes: i32,
}

/// When the step after one sent at `previous` is due: `wait.days` calendar days later in
/// the window's zone (Monday to Friday only with `business_days_only`) at the same time on
/// the wall clock, so "3 days later" stays 10:00 across a DST change; then `hours` and
/// `minutes` as elapsed time; then the window's first instant at or after that.
///
/// A wait that runs past the end of chrono's calendar gives `DateTime::<Utc>::MAX_UTC`:
/// never.
pub fn next_send_at(previous: DateTime<Utc>, wait: Wait, window: &SendWindow) -> DateTime<Utc> {
    after_wait(previous, wait, window).map_or(DateTime::<Utc>::MAX_UTC, |due| {
        window.earliest_at_or_after(due)
    })
}

/// When the first step of an enrollment made at `now` is due: the same rule counted from
/// `now`, so a step 1 without a wait goes as soon as the window allows.
pub fn first_send_at(now: DateTime<Utc>, wait: Wait, window: &SendWindow) -> DateTime<Utc> {
    next_send_at(now, wait, window)
}

fn after_wait(previous: DateTime<Utc>, wait: Wait, window: &SendWindow) -> Option<DateTime<Utc>> {
    let days = u64::try_from(wait.days).unwrap_or(0);
    // Without whole days, `previous` is kept as it is: going through the wall clock would
    // move an instant in the second pass of a repeated hour back to the first.
    let after_days = if days == 0 {
        previous
    } else {
        let zone: Tz = window.zone();
        let local = to_local(zone, previous)?;
        let date = if window.business_days_only() {
            add_business_days(local.date(), days)?
        } else {
            local.date().checked_add_days(Days::new(days))?
        };
        to_utc(zone, date.and_time(local.time()))?
    };
    let elapsed = TimeDelta::try_hours(i64::from(wait.hours.max(0)))?
        .checked_add(&TimeDelta::try_minutes(i64::from(wait.minutes.max(0)))?)?;
    after_days.checked_add_signed(elapsed)
}

/// `days` (at least 1) Monday-to-Friday days after `date`; from a weekend the count starts
/// at the Friday before, so Saturday + 1 is Monday.
fn add_business_days(date: NaiveDate, days: u64) -> Option<NaiveDate> {
    let back_to_friday = match date.weekday() {
        Weekday::Sat => 1,
        Weekday::Sun => 2,
        _ => 0,
    };
    // Whole weeks by arithmetic, so a huge wait costs no more than a small one.
    let mut date = date
        .checked_sub_days(Days::new(back_to_friday))?
        .checked_add_days(Days::new((days / 5).checked_mul(7)?))?;
    for _ in 0..days % 5 {
        let step = if date.weekday() == Weekday::Fri { 3 } else { 1 };
        date = date.checked_add_days(Days::new(step))?;
    }
    Some(date)
}

/// A mailbox's limit for the local day `today`. With warmup it is
/// `min(daily_limit, start_limit + daily_increase * days since warmup_started_on)`, where
/// days before the start count as zero and no start date means the ramp starts today.
/// Never below 1, so a mailbox always moves, unless `daily_limit` itself is below 1 (then
/// it is `daily_limit`). Saturating, never overflowing.
pub fn daily_limit(
    daily_limit: i32,
    warmup_enabled: bool,
    start_limit: i32,
    daily_increase: i32,
    warmup_started_on: Option<NaiveDate>,
    today: NaiveDate,
) -> i32 {
    if !warmup_enabled {
        return daily_limit;
    }
    let started = warmup_started_on.unwrap_or(today);
    let days = today.signed_duration_since(started).num_days().max(0);
    let days = i32::try_from(days).unwrap_or(i32::MAX);
    let ramp = start_limit.saturating_add(daily_increase.saturating_mul(days));
    daily_limit.min(ramp.max(1))
}

/// The date a wall clock in `zone` shows at `t` (a mailbox's "today"); UTC when `zone` is
/// not a known zone.
pub fn local_date(t: DateTime<Utc>, zone: &str) -> NaiveDate {
    let zone = parse_zone(zone).unwrap_or(Tz::UTC);
    to_local(zone, t).map_or_else(|| t.date_naive(), |local| local.date())
}

#[cfg(test)]
mod tests;
