//! Shorthands for the tests of this crate's time logic.

use chrono::{DateTime, NaiveTime, Utc};

use super::{SendWindow, WindowSettings};

pub(crate) const EVERY_DAY: &[i16] = &[1, 2, 3, 4, 5, 6, 7];
pub(crate) const WEEKDAYS: &[i16] = &[1, 2, 3, 4, 5];

pub(crate) fn utc(rfc3339: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(rfc3339)
        .unwrap_or_else(|e| panic!("{rfc3339}: {e}"))
        .to_utc()
}

pub(crate) fn hm(hour: u32, minute: u32) -> NaiveTime {
    NaiveTime::from_hms_opt(hour, minute, 0).unwrap_or_else(|| panic!("bad time {hour}:{minute}"))
}

pub(crate) fn settings<'a>(
    send_days: &'a [i16],
    start: (u32, u32),
    end: (u32, u32),
    timezone: &'a str,
) -> WindowSettings<'a> {
    WindowSettings {
        send_days,
        window_start: hm(start.0, start.1),
        window_end: hm(end.0, end.1),
        timezone,
        use_contact_timezone: false,
        business_days_only: false,
    }
}

pub(crate) fn window(
    send_days: &[i16],
    start: (u32, u32),
    end: (u32, u32),
    timezone: &str,
) -> SendWindow {
    SendWindow::new(&settings(send_days, start, end, timezone), None)
}
