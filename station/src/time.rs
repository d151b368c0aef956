//! UTC times as the station shows and reads them: RFC 3339 with milliseconds, and dates.

/// Year, month, day of a day count since 1970-01-01 (H. Hinnant's civil-from-days).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}

/// Days since 1970-01-01 of a civil date (H. Hinnant's days-from-civil), the inverse.
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// RFC 3339 UTC time of Unix milliseconds, e.g. `2026-11-24T21:04:05.123Z`.
pub fn rfc3339(millis: i64) -> String {
    let seconds = millis.div_euclid(1000);
    let second_of_day = seconds.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(seconds.div_euclid(86_400));
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        second_of_day / 3600,
        second_of_day % 3600 / 60,
        second_of_day % 60,
        millis.rem_euclid(1000)
    )
}

/// `YYYY-MM-DD` of Unix milliseconds, UTC.
pub fn utc_date(millis: i64) -> String {
    let (year, month, day) = civil_from_days(millis.div_euclid(86_400_000));
    format!("{year:04}-{month:02}-{day:02}")
}

/// Unix milliseconds of `YYYY-MM-DD` (midnight UTC) or `YYYY-MM-DDTHH:MM:SS[.fff]Z`.
pub fn parse_utc(text: &str) -> Option<i64> {
    let (date, time) = match text.split_once(['T', ' ']) {
        Some((date, time)) => (date, Some(time.strip_suffix('Z')?)),
        None => (text, None),
    };
    let mut parts = date.splitn(3, '-').map(|p| p.parse::<i64>().ok());
    let (year, month, day) = (parts.next()??, parts.next()??, parts.next()??);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || !(1970..=9999).contains(&year) {
        return None;
    }
    let (mut seconds, mut millis) = (0, 0);
    if let Some(time) = time {
        let (clock, fraction) = time.split_once('.').unwrap_or((time, ""));
        let mut fields = clock.splitn(3, ':').map(|p| p.parse::<i64>().ok());
        let (hour, minute, second) = (fields.next()??, fields.next()??, fields.next()??);
        if hour > 23
            || minute > 59
            || second > 60
            || fraction.len() > 3
            || !fraction.chars().all(|c| c.is_ascii_digit())
        {
            return None;
        }
        seconds = hour * 3600 + minute * 60 + second;
        millis = if fraction.is_empty() { 0 } else { format!("{fraction:0<3}").parse().ok()? };
    }
    let days = days_from_civil(year, month, day);
    // 2026-02-31 would roll over into March: a date is valid only if it reads back the same.
    if civil_from_days(days) != (year, month, day) {
        return None;
    }
    Some((days * 86_400 + seconds) * 1000 + millis)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_known_instants() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(rfc3339(1_795_554_245_123), "2026-11-24T21:04:05.123Z");
    }

    #[test]
    fn parses_what_it_prints() {
        for millis in [0, 951_782_400_000, 1_795_554_245_123, 1_795_554_245_000] {
            assert_eq!(parse_utc(&rfc3339(millis)), Some(millis));
        }
        assert_eq!(parse_utc("2026-11-24"), Some(1_795_478_400_000));
        assert_eq!(parse_utc("2026-11-24T21:04:05Z"), Some(1_795_554_245_000));
        assert_eq!(utc_date(1_795_554_245_123), "2026-11-24");
        assert_eq!(utc_date(0), "1970-01-01");
        assert_eq!(utc_date(951_782_400_000), "2000-02-29");
        assert_eq!(utc_date(-1), "1969-12-31");
        for bad in ["", "2026-13-01", "2026-02-31", "2026-11-24T21:04:05", "yesterday", "2026-11-24T25:00:00Z"] {
            assert_eq!(parse_utc(bad), None, "{bad}");
        }
    }
}
