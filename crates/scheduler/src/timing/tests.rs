//! Expected instants are written in UTC; comments give the local time they stand for.
//! 2026-03-04 is a Wednesday; March 8 and 29, April 5, October 25 and November 1 are Sundays.

use super::*;
use crate::window::WindowSettings;
use crate::window::testing::{EVERY_DAY, WEEKDAYS, settings, utc, window};

fn days(days: i32) -> Wait {
    Wait {
        days,
        ..Wait::default()
    }
}

fn date(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).unwrap_or_else(|| panic!("bad date {y}-{m}-{d}"))
}

fn business(send_days: &[i16], zone: &str) -> SendWindow {
    SendWindow::new(
        &WindowSettings {
            business_days_only: true,
            ..settings(send_days, (9, 0), (17, 0), zone)
        },
        None,
    )
}

/// Asserts `next_send_at(previous, wait) == expected` for each case.
fn assert_next(window: &SendWindow, cases: &[(&str, Wait, &str)]) {
    for (previous, wait, expected) in cases {
        assert_eq!(
            next_send_at(utc(previous), *wait, window),
            utc(expected),
            "{previous} + {wait:?} in {}",
            window.zone()
        );
    }
}

#[test]
fn day_waits_keep_the_wall_clock_across_dst_changes() {
    let new_york = window(EVERY_DAY, (9, 0), (17, 0), "America/New_York");
    assert_next(
        &new_york,
        &[
            // Friday 2026-03-06 10:00 EST + 3 days = Monday 10:00 EDT: 71 hours later.
            ("2026-03-06T15:00:00Z", days(3), "2026-03-09T14:00:00Z"),
            // Friday 2026-10-30 10:00 EDT + 3 days = Monday 10:00 EST: 73 hours later.
            ("2026-10-30T14:00:00Z", days(3), "2026-11-02T15:00:00Z"),
        ],
    );
    let berlin = window(EVERY_DAY, (9, 0), (17, 0), "Europe/Berlin");
    assert_next(
        &berlin,
        &[
            // Thursday 2026-03-26 09:15 CET + 5 days = Tuesday 09:15 CEST.
            ("2026-03-26T08:15:00Z", days(5), "2026-03-31T07:15:00Z"),
            // Friday 2026-10-23 14:00 CEST + 2 days = Sunday 14:00 CET.
            ("2026-10-23T12:00:00Z", days(2), "2026-10-25T13:00:00Z"),
        ],
    );
    let sydney = window(EVERY_DAY, (9, 0), (17, 0), "Australia/Sydney");
    assert_next(
        &sydney,
        &[
            // Friday 2026-04-03 10:00 AEDT (+11) + 2 days = Sunday 10:00 AEST (+10).
            ("2026-04-02T23:00:00Z", days(2), "2026-04-05T00:00:00Z"),
            // Friday 2026-10-02 10:00 AEST + 2 days = Sunday 10:00 AEDT.
            ("2026-10-02T00:00:00Z", days(2), "2026-10-03T23:00:00Z"),
        ],
    );
}

#[test]
fn a_day_wait_landing_in_a_gap_or_repeated_hour_is_settled_like_an_opening() {
    let night = window(EVERY_DAY, (1, 0), (5, 0), "America/New_York");
    assert_next(
        &night,
        &[
            // Saturday 2026-03-07 02:30 EST + 1 day: Sunday 02:30 does not exist -> 03:00 EDT.
            ("2026-03-07T07:30:00Z", days(1), "2026-03-08T07:00:00Z"),
            // Saturday 2026-10-31 01:30 EDT + 1 day: Sunday 01:30 happens twice -> the first,
            // EDT.
            ("2026-10-31T05:30:00Z", days(1), "2026-11-01T05:30:00Z"),
        ],
    );
}

#[test]
fn hours_and_minutes_are_elapsed_time_added_after_the_days() {
    let new_york = window(EVERY_DAY, (9, 0), (17, 0), "America/New_York");
    assert_next(
        &new_york,
        &[
            // Saturday 2026-03-07 21:00 EST + 12 hours = Sunday 10:00 EDT, 13 hours on the clock.
            (
                "2026-03-08T02:00:00Z",
                Wait {
                    hours: 12,
                    ..Wait::default()
                },
                "2026-03-08T14:00:00Z",
            ),
            // Friday 2026-03-06 10:00 EST + 2 days = Sunday 10:00 EDT (14:00Z), + 3h30 elapsed.
            (
                "2026-03-06T15:00:00Z",
                Wait {
                    days: 2,
                    hours: 3,
                    minutes: 30,
                },
                "2026-03-08T17:30:00Z",
            ),
        ],
    );
}

#[test]
fn the_window_has_the_last_word() {
    let w = window(WEEKDAYS, (9, 0), (17, 0), "UTC");
    let one_hour = Wait {
        hours: 1,
        ..Wait::default()
    };
    assert_next(
        &w,
        &[
            // Wednesday 16:30 + 1 hour is past the end -> Thursday 09:00.
            ("2026-03-04T16:30:00Z", one_hour, "2026-03-05T09:00:00Z"),
            // Thursday + 2 calendar days is Saturday -> Monday 09:00.
            ("2026-03-05T10:00:00Z", days(2), "2026-03-09T09:00:00Z"),
        ],
    );
}

#[test]
fn business_days_skip_weekends() {
    let w = business(EVERY_DAY, "UTC");
    assert_next(
        &w,
        &[
            // Thursday + 2 = Monday, same time.
            ("2026-03-05T10:00:00Z", days(2), "2026-03-09T10:00:00Z"),
            // Friday + 1 = Monday; Friday + 5 = next Friday.
            ("2026-03-06T10:00:00Z", days(1), "2026-03-09T10:00:00Z"),
            ("2026-03-06T10:00:00Z", days(5), "2026-03-13T10:00:00Z"),
            // From the weekend the count starts on Friday: Saturday + 1 = Monday,
            // Sunday + 5 = Friday.
            ("2026-03-07T10:00:00Z", days(1), "2026-03-09T10:00:00Z"),
            ("2026-03-08T10:00:00Z", days(5), "2026-03-13T10:00:00Z"),
            // Wednesday + 7 = Thu, Fri, Mon, Tue, Wed, Thu, Fri.
            ("2026-03-04T10:00:00Z", days(7), "2026-03-13T10:00:00Z"),
            ("2026-03-02T10:00:00Z", days(10), "2026-03-16T10:00:00Z"),
            // No days: Saturday stays Saturday, and the window moves it to Monday's opening.
            ("2026-03-07T10:00:00Z", days(0), "2026-03-09T09:00:00Z"),
        ],
    );

    // Friday 2026-03-06 10:00 EST + 1 business day = Monday 10:00 EDT.
    let new_york = business(WEEKDAYS, "America/New_York");
    assert_next(
        &new_york,
        &[("2026-03-06T15:00:00Z", days(1), "2026-03-09T14:00:00Z")],
    );
}

#[test]
fn the_first_step_goes_as_soon_as_the_window_allows() {
    let w = window(WEEKDAYS, (9, 0), (17, 0), "UTC");
    let none = Wait::default();
    let now = utc("2026-03-04T10:00:00Z");
    assert_eq!(first_send_at(now, none, &w), now);
    assert_eq!(
        first_send_at(utc("2026-03-07T12:00:00Z"), none, &w),
        utc("2026-03-09T09:00:00Z")
    );
    assert_eq!(first_send_at(now, days(1), &w), utc("2026-03-05T10:00:00Z"));
}

#[test]
fn negative_waits_count_as_zero_and_huge_ones_as_never() {
    let w = window(EVERY_DAY, (9, 0), (17, 0), "UTC");
    let previous = utc("2026-03-04T10:00:00Z");
    let negative = Wait {
        days: -3,
        hours: -1,
        minutes: -59,
    };
    assert_eq!(next_send_at(previous, negative, &w), previous);
    assert_eq!(
        next_send_at(previous, days(i32::MAX), &w),
        DateTime::<Utc>::MAX_UTC
    );
    assert_eq!(
        next_send_at(previous, days(i32::MAX), &business(EVERY_DAY, "UTC")),
        DateTime::<Utc>::MAX_UTC
    );
    // 2^31 hours is about 245,000 years: still inside chrono's calendar, and on the hour.
    let far = next_send_at(
        previous,
        Wait {
            hours: i32::MAX,
            minutes: i32::MAX,
            ..Wait::default()
        },
        &w,
    );
    assert!(far > utc("9999-12-31T23:59:59Z"));
    assert_eq!(w.earliest_at_or_after(far), far);
}

#[test]
fn warmup_ramps_up_to_the_daily_limit() {
    let start = Some(date(2026, 3, 1));
    let limit = |today| daily_limit(50, true, 5, 2, start, today);
    assert_eq!(limit(date(2026, 3, 1)), 5);
    assert_eq!(limit(date(2026, 3, 4)), 11);
    // 5 + 2 * 22 = 49, then 51 is capped at 50.
    assert_eq!(limit(date(2026, 3, 23)), 49);
    assert_eq!(limit(date(2026, 3, 24)), 50);
    assert_eq!(limit(date(2027, 3, 1)), 50);
    // Before the start: the first day's limit.
    assert_eq!(limit(date(2026, 2, 1)), 5);
    // No start date: the ramp starts today.
    assert_eq!(daily_limit(50, true, 5, 2, None, date(2026, 3, 4)), 5);
    // Without warmup, the plain limit whatever the ramp says.
    assert_eq!(daily_limit(50, false, 5, 2, start, date(2026, 3, 1)), 50);
}

#[test]
fn the_limit_saturates_and_stays_at_least_one() {
    let today = date(2026, 3, 11);
    let start = Some(date(2026, 3, 1));
    assert_eq!(daily_limit(30, true, 5, i32::MAX, start, today), 30);
    assert_eq!(daily_limit(30, true, i32::MAX, 2, start, today), 30);
    assert_eq!(
        daily_limit(30, true, 5, 2, Some(NaiveDate::MIN), NaiveDate::MAX),
        30
    );
    assert_eq!(daily_limit(30, true, 0, 0, start, today), 1);
    assert_eq!(daily_limit(30, true, 5, -10, start, today), 1);
    // A limit below 1 stands: the mailbox sends nothing.
    assert_eq!(daily_limit(0, true, 5, 2, start, today), 0);
    assert_eq!(daily_limit(0, false, 5, 2, start, today), 0);
}

#[test]
fn local_dates_follow_the_zone() {
    // 2026-03-08 04:30Z is Saturday 23:30 EST, Sunday 13:30 in Tokyo.
    let t = utc("2026-03-08T04:30:00Z");
    assert_eq!(local_date(t, "America/New_York"), date(2026, 3, 7));
    assert_eq!(local_date(t, "Asia/Tokyo"), date(2026, 3, 8));
    assert_eq!(local_date(t, "UTC"), date(2026, 3, 8));
    assert_eq!(local_date(t, "Not/AZone"), date(2026, 3, 8));
    // 2026-03-07 14:00Z is Sunday 01:00 AEDT (+11).
    assert_eq!(
        local_date(utc("2026-03-07T14:00:00Z"), "Australia/Sydney"),
        date(2026, 3, 8)
    );
    assert_eq!(
        local_date(DateTime::<Utc>::MAX_UTC, "Asia/Tokyo"),
        DateTime::<Utc>::MAX_UTC.date_naive()
    );
}

/// Every 61 minutes of 2026 in zones with DST changes: a one-day wait never comes earlier
/// than the shortest day (23 hours) allows, and lands where the window is open.
#[test]
fn one_day_later_is_never_early() {
    for zone in [
        "America/New_York",
        "Europe/Berlin",
        "Australia/Sydney",
        "Australia/Lord_Howe",
    ] {
        for w in [
            window(EVERY_DAY, (0, 0), (23, 59), zone),
            business(WEEKDAYS, zone),
        ] {
            let mut previous = utc("2026-01-01T00:17:00Z");
            while previous < utc("2027-01-01T00:00:00Z") {
                let next = next_send_at(previous, days(1), &w);
                assert!(
                    next - previous >= TimeDelta::hours(23),
                    "{zone}: {previous} -> {next}"
                );
                assert_eq!(w.earliest_at_or_after(next), next, "{zone}: {previous}");
                previous += TimeDelta::minutes(61);
            }
        }
    }
}
