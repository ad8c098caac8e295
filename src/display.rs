//! How quantities read for people, shared by the CLI, the TUI and the engine's
//! messages: byte sizes, durations, ages and times (UTC, RFC 3339), and
//! words quoted for a shell (commands a person can paste).

use std::time::{Duration, SystemTime};

/// Decimal units, as `ls -lh --si` and du's `--si`: 12.3 MB.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "kB", "MB", "GB", "TB", "PB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit < UNITS.len() - 1 {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// Shell-quotes one word for display (`--dry-run` prints commands a person can paste).
pub fn shell_quote(word: &str) -> String {
    if !word.is_empty()
        && word
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./=:@%+,".contains(&b))
    {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', "'\\''"))
    }
}

/// A time as RFC 3339 in UTC, to the second: what reports and journals print.
pub fn time_text(time: SystemTime) -> String {
    humantime::format_rfc3339_seconds(time).to_string()
}

/// With milliseconds, for journals where steps follow each other closely.
pub fn time_text_precise(time: SystemTime) -> String {
    humantime::format_rfc3339_millis(time).to_string()
}

/// Age as a person reads it: "12m ago", "3h 4m ago"; rounded to what matters.
pub fn age_text(then: SystemTime, now: SystemTime) -> String {
    match now.duration_since(then) {
        Ok(age) => format!("{} ago", short_duration(age)),
        Err(_) => "just now".into(),
    }
}

/// A duration as an on-call engineer reads it: `45s`, `12m`, `3h 4m`, `2d 5h`.
/// Seconds stop mattering past ten minutes, minutes past a day.
pub fn short_duration(duration: Duration) -> String {
    let secs = duration.as_secs();
    let (days, hours, minutes) = (secs / 86_400, secs / 3600 % 24, secs / 60 % 60);
    match secs {
        0..60 => format!("{secs}s"),
        60..600 if !secs.is_multiple_of(60) => format!("{minutes}m {}s", secs % 60),
        60..3600 => format!("{minutes}m"),
        3600..86_400 if minutes == 0 => format!("{hours}h"),
        3600..86_400 => format!("{hours}h {minutes}m"),
        _ if hours == 0 => format!("{days}d"),
        _ => format!("{days}d {hours}h"),
    }
}

/// RFC 3339 in UTC to the microsecond (`2026-11-25T13:28:18.022631Z`): a
/// transaction's time as PostgreSQL keeps it.
pub fn rfc3339_micros(time: SystemTime) -> String {
    humantime::format_rfc3339_micros(time).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_read_like_du_si() {
        assert_eq!(human_bytes(999), "999 B");
        assert_eq!(human_bytes(62_945_847), "62.9 MB");
        assert_eq!(human_bytes(1_129_233_408), "1.1 GB");
    }

    #[test]
    fn short_durations_keep_what_matters() {
        let d = Duration::from_secs;
        assert_eq!(short_duration(d(0)), "0s");
        assert_eq!(short_duration(d(59)), "59s");
        assert_eq!(short_duration(d(90)), "1m 30s");
        assert_eq!(short_duration(d(120)), "2m");
        assert_eq!(short_duration(d(20 * 60 + 3)), "20m");
        assert_eq!(short_duration(d(3600)), "1h");
        assert_eq!(short_duration(d(3 * 3600 + 4 * 60 + 59)), "3h 4m");
        assert_eq!(short_duration(d(86_400)), "1d");
        assert_eq!(short_duration(d(26 * 3600 + 1800)), "1d 2h");
    }
}
