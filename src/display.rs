//! How quantities read for people, shared by the CLI, the TUI and the engine's
//! messages: byte sizes, durations, ages and times (UTC, RFC 3339), words
//! quoted for a shell (commands a person can paste), and names as data.
//!
//! Names come from whoever writes into the archive (a client's own user
//! controls its folder, a tarball's headers, a manifest), so they are shown
//! escaped, never as terminal commands: [`escape_name`] turns any file name
//! (any bytes, not only UTF-8) into printable text that [`unescape_name`]
//! turns back into the same bytes. That escaped form is how walwarden names
//! a client or a file everywhere (reports, metrics labels, the command line,
//! logs), so two distinct names never print alike. [`escape_text`] is the
//! same rule for whole messages at the edges, lines kept.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::Path;
use std::time::{Duration, SystemTime};

/// Characters shown as the `\xNN` escapes of their UTF-8 bytes: control
/// characters (C0, DEL, C1: ESC starts every terminal sequence) and the
/// invisible ones that reorder or hide text (bidirectional overrides and
/// isolates, marks), which would make one name read as another.
fn must_escape(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061c}' | '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{feff}'
        )
}

fn push_byte_escape(out: &mut String, byte: u8) {
    use std::fmt::Write;
    let _ = write!(out, "\\x{byte:02x}");
}

/// Escapes `bytes`: printable characters as they are, control and invisible
/// characters and bytes that are not UTF-8 as `\xNN`. A name (`as_name`)
/// also has its backslashes doubled and its newlines and tabs escaped, so it
/// reads back unambiguously; a message keeps its lines and backslashes.
fn escape_bytes(bytes: &[u8], as_name: bool) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            if c == '\\' && as_name {
                out.push_str("\\\\");
            } else if must_escape(c) && (as_name || !matches!(c, '\n' | '\t')) {
                let mut buf = [0u8; 4];
                for byte in c.encode_utf8(&mut buf).bytes() {
                    push_byte_escape(&mut out, byte);
                }
            } else {
                out.push(c);
            }
        }
        for byte in chunk.invalid() {
            push_byte_escape(&mut out, *byte);
        }
    }
    out
}

/// A file or client name as walwarden shows and addresses it: printable,
/// one line, and lossless ([`unescape_name`] gives the same bytes back).
pub fn escape_name(name: &OsStr) -> String {
    escape_bytes(name.as_bytes(), true)
}

/// A name that came as text (a tar entry, a manifest path), escaped the same way.
pub fn escape_str(name: &str) -> String {
    escape_name(OsStr::new(name))
}

/// A path shown in a message, escaped like a name.
pub fn escape_path(path: &Path) -> String {
    escape_name(path.as_os_str())
}

/// The bytes an escaped name stands for: `\\` is a backslash and `\xNN` a
/// byte; anything else is taken as it is (a plain name is itself).
pub fn unescape_name(text: &str) -> OsString {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' {
            if bytes.get(i + 1) == Some(&b'\\') {
                out.push(b'\\');
                i += 2;
                continue;
            }
            let hex = bytes
                .get(i + 2..i + 4)
                .filter(|_| bytes.get(i + 1) == Some(&b'x'))
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok());
            if let Some(byte) = hex {
                out.push(byte);
                i += 4;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    OsString::from_vec(out)
}

/// A message (which may quote names from the archive, a tarball or a
/// server) made safe for a terminal or a log: control and invisible
/// characters escaped as `\xNN`, newlines and tabs kept.
pub fn escape_text(text: &str) -> String {
    if !text
        .chars()
        .any(|c| must_escape(c) && !matches!(c, '\n' | '\t'))
    {
        return text.to_owned();
    }
    escape_bytes(text.as_bytes(), false)
}

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
    fn names_are_escaped_losslessly_and_messages_keep_their_lines() {
        let raw = OsStr::from_bytes(b"evil\x1b[31m\\x\xff\xc2\x85\xe2\x80\xaeok \xc3\xa9");
        let shown = escape_name(raw);
        assert_eq!(
            shown,
            "evil\\x1b[31m\\\\x\\xff\\xc2\\x85\\xe2\\x80\\xaeok \u{e9}"
        );
        assert!(!shown.chars().any(char::is_control));
        assert_eq!(unescape_name(&shown), raw);
        assert_eq!(unescape_name("acme"), OsStr::new("acme"));
        assert_eq!(
            escape_text("line one\n\tline \x1b]0;title\x07 two \\ kept"),
            "line one\n\tline \\x1b]0;title\\x07 two \\ kept"
        );
    }

    proptest::proptest! {
        #[test]
        fn any_name_round_trips_and_prints_without_controls(
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64)
        ) {
            let shown = escape_name(OsStr::from_bytes(&bytes));
            proptest::prop_assert!(!shown.chars().any(must_escape));
            proptest::prop_assert_eq!(unescape_name(&shown).into_vec(), bytes);
        }
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
