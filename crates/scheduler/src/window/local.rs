//! Conversions between instants and a zone's wall-clock time. They settle DST's skipped and
//! repeated hours one way for the whole scheduler, and return `None` instead of panicking
//! at the ends of chrono's calendar (chrono's own `naive_local` panics there).

use chrono::{DateTime, MappedLocalTime, NaiveDateTime, Offset, TimeZone, Utc};
use chrono_tz::{GapInfo, Tz};

/// The zone named `name`, if chrono-tz knows it (the same test the API applies).
pub(crate) fn parse_zone(name: &str) -> Option<Tz> {
    name.parse().ok()
}

/// What a wall clock in `zone` shows at `t`.
pub(crate) fn to_local(zone: Tz, t: DateTime<Utc>) -> Option<NaiveDateTime> {
    let offset = zone.offset_from_utc_datetime(&t.naive_utc()).fix();
    t.naive_utc().checked_add_offset(offset)
}

/// The instant at which a wall clock in `zone` shows `local`. A time shown twice (fall
/// back) is its first occurrence; a time never shown (spring forward) is the first instant
/// after the gap, so a window opening inside the gap opens as soon as the clocks have jumped.
pub(crate) fn to_utc(zone: Tz, local: NaiveDateTime) -> Option<DateTime<Utc>> {
    match zone.from_local_datetime(&local) {
        MappedLocalTime::Single(t) => Some(t.to_utc()),
        MappedLocalTime::Ambiguous(a, b) => Some(a.to_utc().min(b.to_utc())),
        MappedLocalTime::None => GapInfo::new(&local, &zone)?.end.map(|t| t.to_utc()),
    }
}

#[cfg(test)]
mod tests {
    use chrono::{NaiveDate, NaiveTime};

    use super::*;

    fn local(date: (i32, u32, u32), time: (u32, u32)) -> NaiveDateTime {
        NaiveDate::from_ymd_opt(date.0, date.1, date.2)
            .and_then(|d| d.and_hms_opt(time.0, time.1, 0))
            .unwrap_or_else(|| panic!("bad date {date:?} {time:?}"))
    }

    fn utc(rfc3339: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(rfc3339)
            .unwrap_or_else(|e| panic!("{rfc3339}: {e}"))
            .to_utc()
    }

    #[test]
    fn skipped_times_map_to_the_end_of_the_gap() {
        // New York skips 02:00-03:00 on 2026-03-08; 03:00 EDT is 07:00Z.
        let ny = chrono_tz::America::New_York;
        assert_eq!(
            to_utc(ny, local((2026, 3, 8), (2, 0))),
            Some(utc("2026-03-08T07:00:00Z"))
        );
        assert_eq!(
            to_utc(ny, local((2026, 3, 8), (2, 59))),
            Some(utc("2026-03-08T07:00:00Z"))
        );
        assert_eq!(
            to_utc(ny, local((2026, 3, 8), (3, 0))),
            Some(utc("2026-03-08T07:00:00Z"))
        );
    }

    #[test]
    fn repeated_times_map_to_their_first_occurrence() {
        // New York shows 01:00-02:00 twice on 2026-11-01: first EDT (05:30Z), then EST.
        let ny = chrono_tz::America::New_York;
        assert_eq!(
            to_utc(ny, local((2026, 11, 1), (1, 30))),
            Some(utc("2026-11-01T05:30:00Z"))
        );
        assert_eq!(
            to_local(ny, utc("2026-11-01T06:30:00Z")),
            Some(local((2026, 11, 1), (1, 30)))
        );
    }

    #[test]
    fn the_ends_of_the_calendar_give_none_instead_of_panicking() {
        let tokyo = chrono_tz::Asia::Tokyo;
        assert_eq!(to_local(tokyo, DateTime::<Utc>::MAX_UTC), None);
        let honolulu = chrono_tz::Pacific::Honolulu;
        assert_eq!(to_local(honolulu, DateTime::<Utc>::MIN_UTC), None);
        assert_eq!(
            to_utc(tokyo, NaiveDateTime::MIN.date().and_time(NaiveTime::MIN)),
            None
        );
    }
}
