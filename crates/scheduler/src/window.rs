//! A sequence's sending window (allowed weekdays and hours in one timezone) and the first
//! instant it allows at or after a given one. Pure: no clock, no database.
//!
//! The window of a day is the span of instants from its opening (the local start time, as
//! `local::to_utc` settles DST) to its closing, end exclusive. On a spring-forward day an
//! opening inside the gap is the first instant after it; on a fall-back day the window opens
//! at the first occurrence of its start time and stays open until its end, however often
//! the clocks show the hours in between.

mod local;

use chrono::{DateTime, Datelike, NaiveDate, NaiveTime, Utc};
use chrono_tz::Tz;

pub(crate) use local::{parse_zone, to_local, to_utc};

/// A sequence's window settings, as stored on its row.
#[derive(Debug, Clone, Copy)]
pub struct WindowSettings<'a> {
    /// ISO weekdays, 1 = Monday to 7 = Sunday (`sequences.send_days`).
    pub send_days: &'a [i16],
    pub window_start: NaiveTime,
    /// Exclusive.
    pub window_end: NaiveTime,
    /// The sequence's IANA zone.
    pub timezone: &'a str,
    pub use_contact_timezone: bool,
    pub business_days_only: bool,
}

/// When one contact of a sequence may be emailed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SendWindow {
    /// Indexed by days from Monday. Never all false, so every search finds a day.
    days: [bool; 7],
    start: NaiveTime,
    /// `None`: until the end of the day.
    end: Option<NaiveTime>,
    zone: Tz,
    business_days_only: bool,
}

impl SendWindow {
    /// Never fails, because the scheduler must not stop on one bad row, though the API and
    /// the database checks should have refused it:
    /// - the zone is the contact's when `use_contact_timezone` and it names a known zone,
    ///   else the sequence's when it does, else UTC;
    /// - day numbers outside 1..=7 are ignored; if no day is left (after
    ///   `business_days_only` removes the weekend), every day is allowed, or Monday to
    ///   Friday with `business_days_only`, rather than none;
    /// - an end at or before the start means the window runs to the end of the day.
    pub fn new(settings: &WindowSettings<'_>, contact_timezone: Option<&str>) -> Self {
        let contact_zone = contact_timezone
            .filter(|_| settings.use_contact_timezone)
            .and_then(parse_zone);
        let zone = contact_zone
            .or_else(|| parse_zone(settings.timezone))
            .unwrap_or(Tz::UTC);
        let end = (settings.window_end > settings.window_start).then_some(settings.window_end);
        Self {
            days: allowed_days(settings.send_days, settings.business_days_only),
            start: settings.window_start,
            end,
            zone,
            business_days_only: settings.business_days_only,
        }
    }

    /// The zone whose wall clock the window follows.
    /// The window of an enrollment as the scheduler's queries select it.
    pub fn of(columns: &domain::db::dispatch::WindowColumns) -> Self {
        Self::new(
            &WindowSettings {
                send_days: &columns.send_days,
                window_start: columns.window_start,
                window_end: columns.window_end,
                timezone: &columns.sequence_timezone,
                use_contact_timezone: columns.use_contact_timezone,
                business_days_only: columns.business_days_only,
            },
            columns.contact_timezone.as_deref(),
        )
    }

    pub fn zone(&self) -> Tz {
        self.zone
    }

    /// Whether waits count Monday to Friday only (Saturday and Sunday are never allowed then).
    /// How long the window is open on an allowed day (wall-clock hours; a DST change
    /// makes that day's real span an hour longer or shorter).
    pub fn length(&self) -> chrono::TimeDelta {
        let end = self
            .end
            .map_or(chrono::TimeDelta::days(1), |end| end - NaiveTime::MIN);
        end - (self.start - NaiveTime::MIN)
    }

    pub fn business_days_only(&self) -> bool {
        self.business_days_only
    }

    /// `t` when the window is open at `t`, else its next opening.
    ///
    /// Looks at most eight local days ahead (today, then a week, which holds an allowed day).
    /// Only at the ends of chrono's calendar, where there is no next opening, is `t`
    /// returned unchanged.
    pub fn earliest_at_or_after(&self, t: DateTime<Utc>) -> DateTime<Utc> {
        let Some(mut date) = to_local(self.zone, t).map(|local| local.date()) else {
            return t;
        };
        for _ in 0..8 {
            if self.allows(date) {
                let Some((open, close)) = self.open_span(date) else {
                    return t;
                };
                // `<=` so that an opening whose whole window fell into a DST gap (02:00-02:30
                // on a spring-forward day: open and close both map to 03:00) still opens.
                if t <= open {
                    return open;
                }
                if t < close {
                    return t;
                }
            }
            let Some(next) = date.succ_opt() else {
                return t;
            };
            date = next;
        }
        t
    }

    /// The first instant the window allows once the local day of `t` in `day_zone` has
    /// ended, for a mailbox that has used its day's capacity (its day runs in its own zone).
    ///
    /// When the mailbox's next day begins while the window is open, that is the instant
    /// itself, not the following opening, so the rest of the window is not wasted. At the
    /// end of chrono's calendar, `DateTime::<Utc>::MAX_UTC`: never.
    pub fn opening_after_local_day(&self, t: DateTime<Utc>, day_zone: Tz) -> DateTime<Utc> {
        to_local(day_zone, t)
            .and_then(|local| local.date().succ_opt())
            .and_then(|next_day| to_utc(day_zone, next_day.and_time(NaiveTime::MIN)))
            .map_or(DateTime::<Utc>::MAX_UTC, |next_day_start| {
                self.earliest_at_or_after(next_day_start)
            })
    }

    fn allows(&self, date: NaiveDate) -> bool {
        self.days[weekday_index(date)]
    }

    /// The instants of `date`'s window: opening, and closing (exclusive).
    fn open_span(&self, date: NaiveDate) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
        let open = to_utc(self.zone, date.and_time(self.start))?;
        let close_local = match self.end {
            Some(end) => date.and_time(end),
            None => date.succ_opt()?.and_time(NaiveTime::MIN),
        };
        Some((open, to_utc(self.zone, close_local)?))
    }
}

fn weekday_index(date: NaiveDate) -> usize {
    // At most 6, so the cast cannot truncate.
    date.weekday().num_days_from_monday() as usize
}

fn allowed_days(send_days: &[i16], business_days_only: bool) -> [bool; 7] {
    let weekday_ok = |index: usize| !business_days_only || index < 5;
    let mut days = [false; 7];
    for &day in send_days {
        if let Ok(index) = usize::try_from(day.saturating_sub(1))
            && index < 7
        {
            days[index] = weekday_ok(index);
        }
    }
    if !days.contains(&true) {
        days = std::array::from_fn(weekday_ok);
    }
    days
}

#[cfg(test)]
mod tests;

#[cfg(test)]
pub(crate) mod testing;
