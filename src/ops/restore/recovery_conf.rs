//! The recovery configuration a restored data directory needs, as text: pure,
//! no I/O. Up to PostgreSQL 11 that is `recovery.conf`; from 12 an empty
//! `recovery.signal` plus lines appended to `postgresql.auto.conf` (12+ refuses
//! to start when it finds a recovery.conf).
//!
//! The restore_command is walwarden's own helper (`walwarden wal-get`, see
//! [`crate::ops::walget`]) for every major version: the engine passes its
//! line in [`RecoverySettings::restore_command`]. Without one, the tutorial's
//! `gunzip -c` (or `cp`) line is written: the benchmark's baseline, and
//! what the quoting rules below were first proven on.
//!
//! Three layers of quoting meet in `restore_command`, applied inside out:
//! the shell (archive paths in single quotes, `'` written `'\''`), PostgreSQL's
//! `%` placeholders (a literal `%` in a path is written `%%`) and the
//! configuration-file string (`'` doubled, and `\` doubled because the
//! configuration parser reads backslash escapes: a single `\` from `'\''` would
//! eat the quote after it and PostgreSQL would not start).
//!
//! Every restore also turns archiving off in the restored instance: its
//! postgresql.conf comes from the base backup and still archives into the
//! client's archive, where the old server may be writing too.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use thiserror::Error;

/// What a client's `wal/` folder holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ArchiveLayout {
    /// `*.gz` only (the tutorial's compressed archive_command).
    Compressed,
    /// Plain segments only.
    Plain,
    /// Both kinds: each file is looked up as `.gz` first, then plain.
    Both,
}

/// What PostgreSQL does when replay reaches the recovery target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum TargetAction {
    /// Stay in read-only recovery at the target so the engineer can look at the
    /// data first; `select pg_wal_replay_resume()` then promotes. PostgreSQL's
    /// own default, written out so the file says what will happen.
    #[default]
    Pause,
    /// Open for writes at once, on a new timeline.
    Promote,
    /// Stop the server at the target.
    Shutdown,
}

impl TargetAction {
    pub fn as_str(self) -> &'static str {
        match self {
            TargetAction::Pause => "pause",
            TargetAction::Promote => "promote",
            TargetAction::Shutdown => "shutdown",
        }
    }
}

impl fmt::Display for TargetAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the engineer chose for a restore.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoverySettings {
    /// The restored cluster's major version (`PG_VERSION`), 10 or later.
    pub major: u32,
    /// The client's `wal/` folder, absolute: restore_command runs in the data directory.
    pub archive_dir: PathBuf,
    pub layout: ArchiveLayout,
    /// The restore_command to write, before configuration-file quoting
    /// (`walget::plan::restore_command`: the helper and its plan); `None`
    /// writes the tutorial's line for `archive_dir` and `layout`.
    pub restore_command: Option<String>,
    /// `recovery_target_timeline`, written for every major: `current` (the
    /// base's own timeline), or the number of the line's timeline. PostgreSQL
    /// 12+ would otherwise follow `latest` (a stray branch included) and 10/11
    /// would stay on the base's timeline (never following a failover).
    pub target_timeline: String,
    /// Point-in-time target; `None` replays the whole archive.
    pub target_time: Option<TargetTime>,
    /// Written only with a target.
    pub target_action: TargetAction,
    /// `--set KEY=VALUE`, values as plain text. A key walwarden writes itself
    /// (restore_command, recovery_target_time, recovery_target_action,
    /// archive_mode) is replaced by the engineer's value.
    pub extra: Vec<(String, String)>,
}

/// The files to write, relative to the data directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoveryFiles {
    /// `recovery.conf` (10, 11) or an empty `recovery.signal` (12+), with content.
    pub files: Vec<(PathBuf, String)>,
    /// Lines to append to `postgresql.auto.conf`. Starts with a newline so a
    /// file without a final newline is not joined to the first line.
    pub auto_conf_append: String,
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum RecoveryConfError {
    #[error("PostgreSQL {0} is not supported: walwarden restores PostgreSQL 10 and later")]
    UnsupportedMajor(u32),
    #[error(
        "archive folder {0:?} is not an absolute path: PostgreSQL runs restore_command from the data directory"
    )]
    RelativeArchiveDir(PathBuf),
    #[error("archive folder {0:?} is not valid UTF-8: rename it or restore from a copy")]
    NonUtf8ArchiveDir(PathBuf),
    #[error(
        "archive folder {0:?} contains a line break or control character: rename it or restore from a copy"
    )]
    ControlCharInArchiveDir(PathBuf),
    #[error("--set {0:?}: expected KEY=VALUE")]
    NotKeyValue(String),
    #[error(
        "--set {0:?}: not a parameter name (lower-case letters, digits, `_` and `.`, not starting with a digit)"
    )]
    BadKey(String),
    #[error("--set {0}: the value contains a line break or control character")]
    BadValue(String),
    #[error("--set {0} is given twice")]
    DuplicateKey(String),
}

/// Splits one `--set KEY=VALUE` argument, checking the key.
pub fn parse_set(arg: &str) -> Result<(String, String), RecoveryConfError> {
    let (key, value) = arg
        .split_once('=')
        .ok_or_else(|| RecoveryConfError::NotKeyValue(arg.to_owned()))?;
    let key = key.trim();
    check_key(key)?;
    check_value(key, value)?;
    Ok((key.to_owned(), value.to_owned()))
}

/// Settings typed as text (the wizard's settings field): `KEY=VALUE` items,
/// one per line or separated by commas. A comma splits only where another
/// `KEY=` follows, so a value that is itself a list
/// (`unix_socket_directories=/run/a,/tmp`, `shared_preload_libraries=a,b`)
/// stays whole. Each item is checked as `--set` checks it.
pub fn parse_settings(text: &str) -> Result<Vec<(String, String)>, RecoveryConfError> {
    let mut items: Vec<String> = Vec::new();
    for line in text.lines() {
        let mut in_line = 0;
        for piece in line.split(',') {
            if piece.trim().is_empty() {
                continue;
            }
            let starts_item = piece
                .split_once('=')
                .is_some_and(|(key, _)| check_key(key.trim()).is_ok());
            match items.last_mut() {
                Some(last) if in_line > 0 && !starts_item => {
                    last.push(',');
                    last.push_str(piece);
                }
                _ => {
                    items.push(piece.to_owned());
                    in_line += 1;
                }
            }
        }
    }
    let mut settings: Vec<(String, String)> = Vec::new();
    for item in &items {
        let (key, value) = parse_set(item.trim())?;
        if settings.iter().any(|(k, _)| *k == key) {
            return Err(RecoveryConfError::DuplicateKey(key));
        }
        settings.push((key, value.trim().to_owned()));
    }
    Ok(settings)
}

/// Settings as the wizard's field shows them: `KEY=VALUE, KEY=VALUE`
/// (what `parse_settings` reads back).
pub fn settings_text(settings: &[(String, String)]) -> String {
    settings
        .iter()
        .map(|(key, value)| format!("{key}={value}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn check_key(key: &str) -> Result<(), RecoveryConfError> {
    let mut bytes = key.bytes();
    let first_ok = matches!(bytes.next(), Some(b'a'..=b'z' | b'_'));
    if first_ok && bytes.all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_' | b'.')) {
        Ok(())
    } else {
        Err(RecoveryConfError::BadKey(key.to_owned()))
    }
}

fn check_value(key: &str, value: &str) -> Result<(), RecoveryConfError> {
    if value.chars().any(char::is_control) {
        Err(RecoveryConfError::BadValue(key.to_owned()))
    } else {
        Ok(())
    }
}

/// Parameters that live in recovery.conf, not postgresql.conf, up to PostgreSQL 11.
const RECOVERY_CONF_PARAMS: &[&str] = &[
    "restore_command",
    "archive_cleanup_command",
    "recovery_end_command",
    "recovery_target",
    "recovery_target_name",
    "recovery_target_time",
    "recovery_target_xid",
    "recovery_target_lsn",
    "recovery_target_inclusive",
    "recovery_target_timeline",
    "recovery_target_action",
    "standby_mode",
    "primary_conninfo",
    "primary_slot_name",
    "trigger_file",
    "recovery_min_apply_delay",
];

/// Settings a base backup may carry from its source that would stop,
/// delay or redirect this recovery, reset (PostgreSQL 12+, where they live
/// in the configuration files that come with the backup): an earlier
/// restore's recovery target (a pause at its first commit), a standby's
/// connection to its primary, a delayed standby's apply delay, and commands
/// meant for that server's own archive.
const INHERITED_RESETS: &[(&str, &str)] = &[
    ("recovery_target", ""),
    ("recovery_target_lsn", ""),
    ("recovery_target_name", ""),
    ("recovery_target_time", ""),
    ("recovery_target_xid", ""),
    ("recovery_target_inclusive", "on"),
    ("recovery_target_action", "pause"),
    ("primary_conninfo", ""),
    ("primary_slot_name", ""),
    ("recovery_min_apply_delay", "0"),
    ("recovery_end_command", ""),
    ("archive_cleanup_command", ""),
];

const INHERITED_RESETS_COMMENT: &str = "\
# Reset: settings the base backup may carry from an earlier restore or a standby
# (a recovery target, primary_conninfo, an apply delay, cleanup commands) would
# stop, delay or redirect this recovery.
";

const HELPER_COMMENT: &str = "\
# restore_command runs walwarden's helper (wal-get): it hands over a segment only
# once verified (this database system, the address its name says) and keeps the
# next ones of the line decompressed ahead. Its plan is the file after --plan.
";

const ARCHIVING_OFF_COMMENT: &str = "\
# Archiving is off in the restored instance: its postgresql.conf comes from the
# base backup and would archive into the client's archive, where the old server
# may still be writing. Set up fresh backups for this server, then turn it on.
";

/// The recovery files for `settings`.
pub fn recovery_files(settings: &RecoverySettings) -> Result<RecoveryFiles, RecoveryConfError> {
    if settings.major < 10 {
        return Err(RecoveryConfError::UnsupportedMajor(settings.major));
    }
    check_archive_dir(&settings.archive_dir)?;
    let mut seen: Vec<&str> = Vec::new();
    for (key, value) in &settings.extra {
        check_key(key)?;
        check_value(key, value)?;
        if seen.contains(&key.as_str()) {
            return Err(RecoveryConfError::DuplicateKey(key.clone()));
        }
        seen.push(key);
    }
    let overridden = |key: &str| seen.contains(&key);

    let mut recovery: Vec<(String, String)> = vec![
        (
            "restore_command".into(),
            settings
                .restore_command
                .clone()
                .unwrap_or_else(|| restore_command(&settings.archive_dir, settings.layout)),
        ),
        (
            "recovery_target_timeline".into(),
            settings.target_timeline.clone(),
        ),
    ];
    if let Some(target) = settings.target_time {
        recovery.push(("recovery_target_time".into(), target.to_string()));
        recovery.push((
            "recovery_target_action".into(),
            settings.target_action.as_str().into(),
        ));
    }
    recovery.retain(|(key, _)| !overridden(key));
    let helper_comment = if settings.restore_command.is_some() && !overridden("restore_command") {
        HELPER_COMMENT
    } else {
        ""
    };
    let set_lines = |keep: &dyn Fn(&str) -> bool| -> String {
        settings
            .extra
            .iter()
            .filter(|(key, _)| keep(key))
            .map(|(key, value)| conf_line(key, value))
            .collect()
    };
    let archiving_off = if overridden("archive_mode") {
        String::new()
    } else {
        format!(
            "{ARCHIVING_OFF_COMMENT}{}",
            conf_line("archive_mode", "off")
        )
    };
    let set_header = |lines: &str| {
        if lines.is_empty() {
            String::new()
        } else {
            format!("# Set by the engineer (--set):\n{lines}")
        }
    };

    let major = settings.major;
    if major <= 11 {
        let in_recovery_conf = |key: &str| RECOVERY_CONF_PARAMS.contains(&key);
        let mut conf = format!(
            "# Written by walwarden for a restore (PostgreSQL {major}): replay the client's WAL archive.\n"
        );
        conf.push_str(helper_comment);
        for (key, value) in &recovery {
            conf.push_str(&conf_line(key, value));
        }
        conf.push_str(&set_header(&set_lines(&in_recovery_conf)));
        let mut append = format!("\n# Added by walwarden for a restore (PostgreSQL {major}).\n");
        append.push_str(&archiving_off);
        append.push_str(&set_header(&set_lines(&|key| !in_recovery_conf(key))));
        Ok(RecoveryFiles {
            files: vec![(PathBuf::from("recovery.conf"), conf)],
            auto_conf_append: append,
        })
    } else {
        let mut append = format!(
            "\n# Added by walwarden for a restore (PostgreSQL {major}): with recovery.signal in the\n\
             # data directory, PostgreSQL replays the client's WAL archive.\n"
        );
        // The resets come first: the recovery lines after them win where both name a key.
        append.push_str(INHERITED_RESETS_COMMENT);
        for (key, value) in INHERITED_RESETS {
            if !overridden(key) {
                append.push_str(&conf_line(key, value));
            }
        }
        append.push_str(helper_comment);
        for (key, value) in &recovery {
            append.push_str(&conf_line(key, value));
        }
        append.push_str(&archiving_off);
        append.push_str(&set_header(&set_lines(&|_| true)));
        Ok(RecoveryFiles {
            files: vec![(PathBuf::from("recovery.signal"), String::new())],
            auto_conf_append: append,
        })
    }
}

fn check_archive_dir(dir: &Path) -> Result<(), RecoveryConfError> {
    if !dir.is_absolute() {
        return Err(RecoveryConfError::RelativeArchiveDir(dir.to_owned()));
    }
    let text = dir
        .to_str()
        .ok_or_else(|| RecoveryConfError::NonUtf8ArchiveDir(dir.to_owned()))?;
    if text.chars().any(char::is_control) {
        return Err(RecoveryConfError::ControlCharInArchiveDir(dir.to_owned()));
    }
    Ok(())
}

/// The shell command PostgreSQL runs to fetch `%f` into `%p` (relative to the
/// data directory, where it runs). Not yet quoted for a configuration file;
/// a missing file always makes it exit non-zero, which PostgreSQL reads as
/// "not in the archive". Call [`recovery_files`] to have the path checked.
pub fn restore_command(archive_dir: &Path, layout: ArchiveLayout) -> String {
    let dir = archive_dir.to_string_lossy();
    let dir = dir.trim_end_matches('/');
    // `%` in the path doubled for PostgreSQL; the `%f` placeholder added after.
    let file = |suffix: &str| shell_quote(&format!("{}/%f{suffix}", dir.replace('%', "%%")));
    let gz = file(".gz");
    let plain = file("");
    match layout {
        ArchiveLayout::Compressed => format!("gunzip -c {gz} > \"%p\""),
        ArchiveLayout::Plain => format!("cp {plain} \"%p\""),
        ArchiveLayout::Both => {
            format!("if test -f {gz}; then gunzip -c {gz} > \"%p\"; else cp {plain} \"%p\"; fi")
        }
    }
}

/// `text` in single quotes for a POSIX shell.
fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

pub use crate::pg::conf::conf_string;

fn conf_line(key: &str, value: &str) -> String {
    format!("{key} = {}\n", conf_string(value))
}

/// A recovery target time, held in UTC to the microsecond (PostgreSQL's precision).
///
/// Displays in the only form PostgreSQL 15 accepts at start-up:
/// `2026-11-25 13:28:18.022631+00` (zone abbreviations such as `Z` are not
/// loaded yet when recovery_target_time is checked, and the server refuses to start).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TargetTime {
    unix_micros: i64,
}

#[derive(Debug, Error, PartialEq, Eq)]
#[error(
    "recovery target time {text:?}: {reason} (write it like 2026-11-25 13:28:18+00 or 2026-11-25T13:28:18Z)"
)]
pub struct TargetTimeError {
    pub text: String,
    pub reason: &'static str,
}

const MICROS_PER_SEC: i64 = 1_000_000;
const SECS_PER_DAY: i64 = 86_400;

impl TargetTime {
    /// Microseconds since 1970-01-01 00:00:00 UTC; `None` outside years 1 to 9999.
    pub fn from_unix_micros(unix_micros: i64) -> Option<TargetTime> {
        let min = days_from_civil(1, 1, 1) * SECS_PER_DAY * MICROS_PER_SEC;
        let max = days_from_civil(10000, 1, 1) * SECS_PER_DAY * MICROS_PER_SEC;
        (min..max)
            .contains(&unix_micros)
            .then_some(TargetTime { unix_micros })
    }

    pub fn unix_micros(self) -> i64 {
        self.unix_micros
    }

    /// The same moment as a `SystemTime`; `None` before 1970 (no file was
    /// written then).
    pub fn system_time(self) -> Option<std::time::SystemTime> {
        let micros = u64::try_from(self.unix_micros).ok()?;
        Some(std::time::UNIX_EPOCH + std::time::Duration::from_micros(micros))
    }
}

impl fmt::Display for TargetTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.unix_micros.div_euclid(MICROS_PER_SEC);
        let micros = self.unix_micros.rem_euclid(MICROS_PER_SEC);
        let days = secs.div_euclid(SECS_PER_DAY);
        let in_day = secs.rem_euclid(SECS_PER_DAY);
        let (y, m, d) = civil_from_days(days);
        write!(
            f,
            "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
            in_day / 3600,
            in_day / 60 % 60,
            in_day % 60
        )?;
        if micros != 0 {
            // Trailing zeros dropped, as PostgreSQL prints timestamps in its log.
            let fraction = format!("{micros:06}");
            write!(f, ".{}", fraction.trim_end_matches('0'))?;
        }
        f.write_str("+00")
    }
}

impl FromStr for TargetTime {
    type Err = TargetTimeError;

    fn from_str(text: &str) -> Result<TargetTime, TargetTimeError> {
        parse_target_time(text)
    }
}

/// Reads a time as an engineer types it: RFC 3339 (`2026-11-25T13:28:18.022631Z`,
/// `...+02:00`) or `2026-11-25 13:28:18`, seconds and fraction (up to 6 digits)
/// optional; offsets `Z`, `UTC`, `GMT`, `+HH`, `+HHMM`, `+HH:MM`. Without an
/// offset the time is taken as UTC (the zone PostgreSQL logs in by default).
pub fn parse_target_time(text: &str) -> Result<TargetTime, TargetTimeError> {
    let err = |reason| TargetTimeError {
        text: text.to_owned(),
        reason,
    };
    let mut s = Scanner(text.trim().as_bytes());
    let year = s
        .digits(4)
        .ok_or_else(|| err("expected a date as YYYY-MM-DD"))?;
    let month = s
        .expect(b'-')
        .and_then(|()| s.digits(2))
        .ok_or_else(|| err("expected a date as YYYY-MM-DD"))?;
    let day = s
        .expect(b'-')
        .and_then(|()| s.digits(2))
        .ok_or_else(|| err("expected a date as YYYY-MM-DD"))?;
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return Err(err("no such date"));
    }
    if !matches!(s.peek(), Some(b'T' | b't' | b' ')) {
        return Err(err(
            "expected a time after the date, separated by a space or T",
        ));
    }
    s.bump();
    let hour = s
        .digits(2)
        .ok_or_else(|| err("expected a time as HH:MM:SS"))?;
    let minute = s
        .expect(b':')
        .and_then(|()| s.digits(2))
        .ok_or_else(|| err("expected a time as HH:MM:SS"))?;
    let mut second = 0;
    let mut micros = 0;
    if s.peek() == Some(b':') {
        s.bump();
        second = s
            .digits(2)
            .ok_or_else(|| err("expected seconds as two digits"))?;
        if matches!(s.peek(), Some(b'.' | b',')) {
            s.bump();
            let start = s.0;
            let count = start.iter().take_while(|b| b.is_ascii_digit()).count();
            if count == 0 {
                return Err(err("expected digits after the decimal point"));
            }
            if count > 6 {
                return Err(err(
                    "PostgreSQL keeps microseconds: at most 6 fractional digits",
                ));
            }
            let value = s.digits(count).ok_or_else(|| err("bad fraction"))?;
            micros = value * 10i64.pow(6 - count as u32);
        }
    }
    if hour > 23 || minute > 59 || second > 59 {
        return Err(err("no such time of day"));
    }
    let offset_secs = parse_offset(s.rest()).ok_or_else(|| {
        err("unknown time zone: use Z, UTC or a numeric offset such as +00, +0200, -05:00")
    })?;
    let local =
        (days_from_civil(year, month, day) * SECS_PER_DAY + hour * 3600 + minute * 60 + second)
            * MICROS_PER_SEC
            + micros;
    TargetTime::from_unix_micros(local - offset_secs * MICROS_PER_SEC)
        .ok_or_else(|| err("out of range: years 1 to 9999"))
}

/// Seconds east of UTC for what follows the time.
fn parse_offset(rest: &[u8]) -> Option<i64> {
    let rest = std::str::from_utf8(rest).ok()?.trim();
    if rest.is_empty()
        || ["Z", "UTC", "GMT"]
            .iter()
            .any(|z| rest.eq_ignore_ascii_case(z))
    {
        return Some(0);
    }
    let sign = match rest.as_bytes()[0] {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let body = &rest[1..];
    let (hours, minutes) = match body.len() {
        2 => (body, "00"),
        4 => (&body[..2], &body[2..]),
        5 if body.as_bytes()[2] == b':' => (&body[..2], &body[3..]),
        _ => return None,
    };
    if !hours
        .bytes()
        .chain(minutes.bytes())
        .all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let hours: i64 = hours.parse().ok()?;
    let minutes: i64 = minutes.parse().ok()?;
    (hours <= 15 && minutes <= 59).then_some(sign * (hours * 3600 + minutes * 60))
}

struct Scanner<'a>(&'a [u8]);

impl Scanner<'_> {
    fn peek(&self) -> Option<u8> {
        self.0.first().copied()
    }

    fn bump(&mut self) {
        self.0 = self.0.get(1..).unwrap_or_default();
    }

    fn rest(&self) -> &[u8] {
        self.0
    }

    fn expect(&mut self, byte: u8) -> Option<()> {
        (self.peek() == Some(byte)).then(|| self.bump())
    }

    fn digits(&mut self, count: usize) -> Option<i64> {
        let field = self.0.get(..count)?;
        if !field.iter().all(u8::is_ascii_digit) {
            return None;
        }
        self.0 = &self.0[count..];
        field.iter().try_fold(0i64, |acc, b| {
            acc.checked_mul(10)?.checked_add(i64::from(b - b'0'))
        })
    }
}

fn is_leap(year: i64) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// What a restore writes when the base backup lacks a file PostgreSQL needs
/// to start (a Debian-layout cluster keeps them in /etc/postgresql/MAJOR/NAME).
/// Deliberately minimal: defaults, plus local peer connections only.
pub const DEBIAN_LAYOUT_FILES: &[(&str, &str)] = &[
    (
        "postgresql.conf",
        "# Written by walwarden's restore: the base backup had no postgresql.conf\n\
         # (a Debian-layout cluster keeps it in /etc/postgresql/MAJOR/CLUSTER/).\n\
         # PostgreSQL's defaults apply; the restore's settings are in postgresql.auto.conf.\n",
    ),
    (
        "pg_hba.conf",
        "# Written by walwarden's restore: the base backup had no pg_hba.conf.\n\
         # Local connections over the unix socket, as the same OS user, only:\n\
         # add what the applications need before opening the server to them.\n\
         local   all   all   peer\n",
    ),
    (
        "pg_ident.conf",
        "# Written by walwarden's restore: the base backup had no pg_ident.conf.\n",
    ),
];

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn pg(text: &str) -> String {
        parse_target_time(text)
            .map(|t| t.to_string())
            .unwrap_or_else(|e| e.to_string())
    }

    #[test]
    fn target_times_render_in_the_numeric_form() {
        let cases = [
            (
                "2026-11-25T13:28:18.022631Z",
                "2026-11-25 13:28:18.022631+00",
            ),
            ("2026-11-25 13:28:18", "2026-11-25 13:28:18+00"),
            (
                "2026-11-25 13:28:18.022631+00",
                "2026-11-25 13:28:18.022631+00",
            ),
            ("2026-11-25 13:28:18.5 UTC", "2026-11-25 13:28:18.5+00"),
            ("2026-11-25t13:28z", "2026-11-25 13:28:00+00"),
            ("2026-11-25T15:28:18+02:00", "2026-11-25 13:28:18+00"),
            ("2026-11-25T15:28:18+0200", "2026-11-25 13:28:18+00"),
            ("2026-11-25 08:28:18-05", "2026-11-25 13:28:18+00"),
            ("2026-01-01 00:30:00+01", "2025-12-31 23:30:00+00"),
            ("2024-02-29 23:00:00-01:30", "2024-03-01 00:30:00+00"),
            ("  2026-11-25 13:28:18,25Z ", "2026-11-25 13:28:18.25+00"),
            (
                "2026-11-25 13:09:57.279753+00",
                "2026-11-25 13:09:57.279753+00",
            ),
        ];
        for (input, want) in cases {
            assert_eq!(pg(input), want, "{input}");
        }
    }

    #[test]
    fn bad_target_times_are_refused_with_a_reason() {
        for bad in [
            "",
            "yesterday",
            "2026-11-25",
            "2026-13-01 00:00:00",
            "2025-02-29 00:00:00",
            "2026-11-25 24:00:00",
            "2026-11-25 13:28:60",
            "2026-11-25 13:28:18.1234567",
            "2026-11-25 13:28:18.",
            "2026-11-25 13:28:18 CET",
            "2026-11-25 13:28:18+1",
            "2026-11-25 13:28:18+16:00",
            "0001-01-01 00:00:00+01",
        ] {
            let e = parse_target_time(bad).expect_err(bad);
            assert!(e.to_string().contains("recovery target time"), "{e}");
        }
    }

    #[test]
    fn conf_strings_double_quotes_and_backslashes() {
        assert_eq!(conf_string(r"a'b\c"), r"'a''b\\c'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
    }

    #[test]
    fn percent_in_the_archive_path_is_escaped_but_placeholders_are_not() {
        let cmd = restore_command(Path::new("/srv/100%f/wal"), ArchiveLayout::Plain);
        assert_eq!(cmd, r#"cp '/srv/100%%f/wal/%f' "%p""#);
    }

    #[test]
    fn set_keys_are_checked() {
        assert_eq!(
            parse_set("work_mem=64MB"),
            Ok(("work_mem".into(), "64MB".into()))
        );
        assert_eq!(parse_set("x.y=a=b"), Ok(("x.y".into(), "a=b".into())));
        assert!(matches!(
            parse_set("Work_mem=1"),
            Err(RecoveryConfError::BadKey(_))
        ));
        assert!(matches!(
            parse_set("1x=1"),
            Err(RecoveryConfError::BadKey(_))
        ));
        assert!(matches!(
            parse_set("a b=1"),
            Err(RecoveryConfError::BadKey(_))
        ));
        assert!(matches!(
            parse_set("novalue"),
            Err(RecoveryConfError::NotKeyValue(_))
        ));
        assert!(matches!(
            parse_set("a=x\ny"),
            Err(RecoveryConfError::BadValue(_))
        ));
    }

    proptest! {
        #[test]
        fn rendered_times_parse_back(micros in -62_135_596_800_000_000i64..253_402_300_799_999_999i64) {
            let t = TargetTime::from_unix_micros(micros).unwrap();
            prop_assert_eq!(parse_target_time(&t.to_string()), Ok(t));
        }

        #[test]
        fn civil_round_trips(days in -719_162i64..2_932_896i64) {
            let (y, m, d) = civil_from_days(days);
            prop_assert_eq!(days_from_civil(y, m, d), days);
        }
    }

    #[test]
    fn settings_typed_as_text_split_at_commas_before_a_key_and_at_lines() {
        let parsed = parse_settings(
            "port=5433, unix_socket_directories=/run/a,/tmp ,ssl=off\nshared_preload_libraries = pg_stat_statements,auto_explain,\n",
        )
        .unwrap();
        let pairs: Vec<(&str, &str)> = parsed
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            pairs,
            vec![
                ("port", "5433"),
                ("unix_socket_directories", "/run/a,/tmp"),
                ("ssl", "off"),
                (
                    "shared_preload_libraries",
                    "pg_stat_statements,auto_explain"
                ),
            ]
        );
        assert_eq!(parse_settings("").unwrap(), vec![]);
        assert_eq!(
            parse_settings(&settings_text(&parsed)).unwrap(),
            parsed,
            "the field's text reads back"
        );
        assert_eq!(
            parse_settings("port=1, port=2"),
            Err(RecoveryConfError::DuplicateKey("port".into()))
        );
        assert!(matches!(
            parse_settings("5433"),
            Err(RecoveryConfError::NotKeyValue(_))
        ));
        assert!(matches!(
            parse_settings("Port=5433"),
            Err(RecoveryConfError::BadKey(_))
        ));
    }
}
