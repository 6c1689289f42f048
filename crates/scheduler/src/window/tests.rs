//! Expected instants are written in UTC; comments give the local time they stand for.
//! Calendar of 2026 used here: March 1, March 8, March 29, April 5, October 4, October 25 and
//! November 1 are Sundays.

use chrono_tz::Tz;

use super::testing::{EVERY_DAY, WEEKDAYS, settings, utc, window};
use super::*;

/// Asserts `earliest_at_or_after(from) == expected` for each pair.
fn assert_earliest(window: &SendWindow, cases: &[(&str, &str)]) {
    for (from, expected) in cases {
        assert_eq!(
            window.earliest_at_or_after(utc(from)),
            utc(expected),
            "from {from} in {}",
            window.zone()
        );
    }
}

#[test]
fn inside_the_window_is_now_and_outside_is_the_next_opening() {
    let w = window(WEEKDAYS, (9, 0), (17, 0), "UTC");
    assert_earliest(
        &w,
        &[
            // Wednesday.
            ("2026-03-04T10:00:00Z", "2026-03-04T10:00:00Z"),
            ("2026-03-04T08:00:00Z", "2026-03-04T09:00:00Z"),
            ("2026-03-04T09:00:00Z", "2026-03-04T09:00:00Z"),
            ("2026-03-04T16:59:59Z", "2026-03-04T16:59:59Z"),
            // The end is exclusive.
            ("2026-03-04T17:00:00Z", "2026-03-05T09:00:00Z"),
            // Friday evening and the weekend go to Monday.
            ("2026-03-06T17:00:00Z", "2026-03-09T09:00:00Z"),
            ("2026-03-07T12:00:00Z", "2026-03-09T09:00:00Z"),
            ("2026-03-08T23:59:59Z", "2026-03-09T09:00:00Z"),
        ],
    );
}

#[test]
fn only_the_listed_days_are_allowed() {
    let tue_thu = window(&[2, 4], (9, 0), (17, 0), "UTC");
    assert_earliest(
        &tue_thu,
        &[
            ("2026-03-04T10:00:00Z", "2026-03-05T09:00:00Z"),
            ("2026-03-05T18:00:00Z", "2026-03-10T09:00:00Z"),
        ],
    );
    // The longest search: Sunday after the window closed, to the next Sunday.
    let sunday = window(&[7], (9, 0), (17, 0), "UTC");
    assert_earliest(
        &sunday,
        &[
            ("2026-03-02T10:00:00Z", "2026-03-08T09:00:00Z"),
            ("2026-03-08T17:00:00Z", "2026-03-15T09:00:00Z"),
        ],
    );
}

#[test]
fn business_days_only_excludes_the_weekend_even_when_listed() {
    let w = SendWindow::new(
        &WindowSettings {
            business_days_only: true,
            ..settings(EVERY_DAY, (9, 0), (17, 0), "UTC")
        },
        None,
    );
    assert!(w.business_days_only());
    assert_earliest(
        &w,
        &[
            ("2026-03-06T10:00:00Z", "2026-03-06T10:00:00Z"),
            ("2026-03-07T10:00:00Z", "2026-03-09T09:00:00Z"),
        ],
    );
}

#[test]
fn no_allowed_day_means_every_day_so_nothing_waits_forever() {
    let saturday_noon = "2026-03-07T12:00:00Z";
    for days in [&[][..], &[0, 8, -1, i16::MIN, i16::MAX][..]] {
        let w = window(days, (9, 0), (17, 0), "UTC");
        assert_earliest(&w, &[(saturday_noon, saturday_noon)]);
    }
    // Only weekend days with business_days_only: Monday to Friday rather than nothing.
    let w = SendWindow::new(
        &WindowSettings {
            business_days_only: true,
            ..settings(&[6, 7], (9, 0), (17, 0), "UTC")
        },
        None,
    );
    assert_earliest(&w, &[(saturday_noon, "2026-03-09T09:00:00Z")]);
}

#[test]
fn an_end_not_after_the_start_runs_to_midnight() {
    // The database refuses such a row; the scheduler still gives a usable window.
    let w = window(EVERY_DAY, (22, 0), (6, 0), "UTC");
    assert_earliest(
        &w,
        &[
            ("2026-03-04T23:30:00Z", "2026-03-04T23:30:00Z"),
            ("2026-03-04T05:00:00Z", "2026-03-04T22:00:00Z"),
        ],
    );
}

#[test]
fn new_york_openings_follow_the_wall_clock_across_both_changes() {
    let w = window(EVERY_DAY, (9, 0), (17, 0), "America/New_York");
    assert_earliest(
        &w,
        &[
            // Saturday 2026-03-07 08:00 EST (-5) -> 09:00 EST.
            ("2026-03-07T13:00:00Z", "2026-03-07T14:00:00Z"),
            // Saturday 18:00 EST -> Sunday 09:00 EDT (-4), an hour earlier in UTC.
            ("2026-03-07T23:00:00Z", "2026-03-08T13:00:00Z"),
            // Saturday 2026-10-31 18:00 EDT -> Sunday 09:00 EST.
            ("2026-10-31T22:00:00Z", "2026-11-01T14:00:00Z"),
            // Sunday 16:59 EST is inside, 17:00 EST is not.
            ("2026-11-01T21:59:00Z", "2026-11-01T21:59:00Z"),
            ("2026-11-01T22:00:00Z", "2026-11-02T14:00:00Z"),
        ],
    );
}

#[test]
fn a_window_starting_in_the_spring_forward_gap_opens_when_the_clocks_jump() {
    // New York skips 02:00-03:00 on 2026-03-08 (07:00Z is 03:00 EDT).
    let w = window(EVERY_DAY, (2, 0), (4, 0), "America/New_York");
    assert_earliest(
        &w,
        &[
            // 01:30 EST -> 03:00 EDT, the first instant after the gap.
            ("2026-03-08T06:30:00Z", "2026-03-08T07:00:00Z"),
            // 03:30 EDT is inside.
            ("2026-03-08T07:30:00Z", "2026-03-08T07:30:00Z"),
            // 04:00 EDT is the end -> Monday 02:00 EDT.
            ("2026-03-08T08:00:00Z", "2026-03-09T06:00:00Z"),
        ],
    );

    // A window entirely inside the gap still opens, for an instant, at 03:00 EDT.
    let w = window(EVERY_DAY, (2, 0), (2, 30), "America/New_York");
    assert_earliest(
        &w,
        &[
            ("2026-03-08T06:00:00Z", "2026-03-08T07:00:00Z"),
            ("2026-03-08T07:00:00Z", "2026-03-08T07:00:00Z"),
            ("2026-03-08T07:01:00Z", "2026-03-09T06:00:00Z"),
        ],
    );
}

#[test]
fn a_window_starting_in_the_repeated_hour_opens_at_its_first_occurrence() {
    // New York shows 01:00-02:00 twice on 2026-11-01: EDT (05:00Z-06:00Z), then EST.
    let w = window(EVERY_DAY, (1, 30), (3, 0), "America/New_York");
    assert_earliest(
        &w,
        &[
            // 01:00 EDT -> 01:30 EDT.
            ("2026-11-01T05:00:00Z", "2026-11-01T05:30:00Z"),
            // 01:15 EST, second pass: the window opened at 01:30 EDT and is still open.
            ("2026-11-01T06:15:00Z", "2026-11-01T06:15:00Z"),
            // 03:00 EST closes it; Monday 01:30 EST.
            ("2026-11-01T08:00:00Z", "2026-11-02T06:30:00Z"),
        ],
    );
}

#[test]
fn berlin_openings_follow_the_wall_clock_across_both_changes() {
    let w = window(EVERY_DAY, (9, 0), (17, 0), "Europe/Berlin");
    assert_earliest(
        &w,
        &[
            // Saturday 2026-03-28 17:00 CET (+1) -> Sunday 09:00 CEST (+2).
            ("2026-03-28T16:00:00Z", "2026-03-29T07:00:00Z"),
            // Saturday 2026-10-24 17:00 CEST -> Sunday 09:00 CET.
            ("2026-10-24T15:00:00Z", "2026-10-25T08:00:00Z"),
        ],
    );
    // Berlin skips 02:00-03:00 on 2026-03-29; 03:00 CEST is 01:00Z.
    let gap = window(EVERY_DAY, (2, 30), (3, 30), "Europe/Berlin");
    assert_earliest(
        &gap,
        &[
            // 01:00 CET -> 03:00 CEST; 03:30 CEST (01:30Z) closes it.
            ("2026-03-29T00:00:00Z", "2026-03-29T01:00:00Z"),
            ("2026-03-29T01:29:00Z", "2026-03-29T01:29:00Z"),
            ("2026-03-29T01:30:00Z", "2026-03-30T00:30:00Z"),
        ],
    );
}

#[test]
fn sydney_changes_in_the_other_half_of_the_year() {
    // Sydney leaves summer time (+11 -> +10) on 2026-04-05 at 03:00 and enters it
    // (+10 -> +11) on 2026-10-04 at 02:00.
    let w = window(EVERY_DAY, (9, 0), (17, 0), "Australia/Sydney");
    assert_earliest(
        &w,
        &[
            // Saturday 2026-04-04 17:00 AEDT -> Sunday 09:00 AEST (Saturday 23:00Z).
            ("2026-04-04T06:00:00Z", "2026-04-04T23:00:00Z"),
            // Saturday 2026-10-03 17:00 AEST -> Sunday 09:00 AEDT (Saturday 22:00Z).
            ("2026-10-03T07:00:00Z", "2026-10-03T22:00:00Z"),
        ],
    );
    // 02:00-04:00 on 2026-10-04: from 01:00 AEST (15:00Z) to 03:00 AEDT (16:00Z).
    let gap = window(EVERY_DAY, (2, 0), (4, 0), "Australia/Sydney");
    assert_earliest(&gap, &[("2026-10-03T15:00:00Z", "2026-10-03T16:00:00Z")]);
}

#[test]
fn the_contact_zone_is_used_when_asked_for_and_valid() {
    let sequence = settings(EVERY_DAY, (9, 0), (17, 0), "America/New_York");
    let asked = WindowSettings {
        use_contact_timezone: true,
        ..sequence
    };
    let berlin = chrono_tz::Europe::Berlin;
    let new_york = chrono_tz::America::New_York;

    assert_eq!(
        SendWindow::new(&asked, Some("Europe/Berlin")).zone(),
        berlin
    );
    assert_eq!(SendWindow::new(&asked, None).zone(), new_york);
    assert_eq!(
        SendWindow::new(&asked, Some("Mars/Olympus")).zone(),
        new_york
    );
    assert_eq!(SendWindow::new(&asked, Some("")).zone(), new_york);
    assert_eq!(
        SendWindow::new(&sequence, Some("Europe/Berlin")).zone(),
        new_york
    );

    // The zone decides the instants: 09:00 on Wednesday 2026-03-04 in Berlin (CET) is 08:00Z,
    // in New York (EST) 14:00Z.
    let from = utc("2026-03-04T06:00:00Z");
    assert_eq!(
        SendWindow::new(&asked, Some("Europe/Berlin")).earliest_at_or_after(from),
        utc("2026-03-04T08:00:00Z")
    );
    assert_eq!(
        SendWindow::new(&sequence, Some("Europe/Berlin")).earliest_at_or_after(from),
        utc("2026-03-04T14:00:00Z")
    );
}

#[test]
fn unknown_zones_fall_back_to_utc() {
    let bad = WindowSettings {
        use_contact_timezone: true,
        ..settings(EVERY_DAY, (9, 0), (17, 0), "Not/AZone")
    };
    assert_eq!(SendWindow::new(&bad, None).zone(), Tz::UTC);
    assert_eq!(SendWindow::new(&bad, Some("Also/Bad")).zone(), Tz::UTC);
    // Zone names are case-sensitive, as in the API's check.
    assert_eq!(SendWindow::new(&bad, Some("europe/berlin")).zone(), Tz::UTC);
    assert_eq!(
        SendWindow::new(&bad, None).earliest_at_or_after(utc("2026-03-04T06:00:00Z")),
        utc("2026-03-04T09:00:00Z")
    );
}

#[test]
fn after_the_mailboxs_day_the_window_decides() {
    let new_york = window(WEEKDAYS, (9, 0), (17, 0), "America/New_York");

    // Wednesday 2026-03-04 10:00 EST is 16:00 in Berlin; Berlin's Thursday starts at 23:00Z
    // (18:00 EST, window closed), so Thursday 09:00 EST.
    assert_eq!(
        new_york.opening_after_local_day(utc("2026-03-04T15:00:00Z"), chrono_tz::Europe::Berlin),
        utc("2026-03-05T14:00:00Z")
    );

    // Wednesday 09:30 EST is 23:30 in Tokyo (+9); Tokyo's Thursday starts at 15:00Z, 10:00
    // EST, while the window is open: the mailbox may send again from then.
    assert_eq!(
        new_york.opening_after_local_day(utc("2026-03-04T14:30:00Z"), chrono_tz::Asia::Tokyo),
        utc("2026-03-04T15:00:00Z")
    );

    // A UTC mailbox full on Friday: its Saturday starts at 00:00Z, the Berlin window is
    // closed on weekends, so Monday 09:00 CET.
    let berlin = window(WEEKDAYS, (9, 0), (17, 0), "Europe/Berlin");
    assert_eq!(
        berlin.opening_after_local_day(utc("2026-03-06T10:00:00Z"), Tz::UTC),
        utc("2026-03-09T08:00:00Z")
    );

    // Saturday 2026-03-28 20:00Z is Sunday 07:00 for a Sydney mailbox (AEDT, +11); its
    // Monday starts at Sunday 13:00Z, which is 15:00 CEST in Berlin (changed that night),
    // inside an every-day window.
    let berlin_every_day = window(EVERY_DAY, (9, 0), (17, 0), "Europe/Berlin");
    assert_eq!(
        berlin_every_day
            .opening_after_local_day(utc("2026-03-28T20:00:00Z"), chrono_tz::Australia::Sydney),
        utc("2026-03-29T13:00:00Z")
    );

    // Same zone for both: simply the next day's opening (Thursday 09:00 EST).
    assert_eq!(
        new_york.opening_after_local_day(utc("2026-03-04T15:00:00Z"), chrono_tz::America::New_York),
        utc("2026-03-05T14:00:00Z")
    );
}

#[test]
fn the_ends_of_the_calendar_do_not_panic() {
    let w = window(EVERY_DAY, (9, 0), (17, 0), "Asia/Tokyo");
    for t in [DateTime::<Utc>::MAX_UTC, DateTime::<Utc>::MIN_UTC] {
        assert_eq!(w.earliest_at_or_after(t), t);
    }
    assert_eq!(
        w.opening_after_local_day(DateTime::<Utc>::MAX_UTC, chrono_tz::Asia::Tokyo),
        DateTime::<Utc>::MAX_UTC
    );
}

/// Every hour of 2026 in zones with and without DST: the answer is never earlier than asked,
/// and asking again at the answer gives the same instant (it really is open then).
#[test]
fn answers_are_never_early_and_are_fixed_points() {
    let zones = [
        "UTC",
        "America/New_York",
        "Europe/Berlin",
        "Australia/Sydney",
        "Australia/Lord_Howe",
    ];
    let shapes = [
        ((9, 0), (17, 0)),
        ((2, 0), (3, 0)),
        ((0, 0), (1, 0)),
        ((1, 30), (2, 30)),
    ];
    for zone in zones {
        for (start, end) in shapes {
            let w = window(&[1, 3, 7], start, end, zone);
            let mut t = utc("2026-01-01T00:17:00Z");
            while t < utc("2027-01-01T00:00:00Z") {
                let answer = w.earliest_at_or_after(t);
                assert!(answer >= t, "{zone} {start:?}: {t} -> {answer}");
                assert!(answer - t <= chrono::TimeDelta::days(8), "{zone}: {t}");
                assert_eq!(w.earliest_at_or_after(answer), answer, "{zone}: {t}");
                t += chrono::TimeDelta::minutes(61);
            }
        }
    }
}
