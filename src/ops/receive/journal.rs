//! The receiver's log: `ROOT/<client>/.walwarden/receive.log`, one JSON
//! object per line (time, command, name, outcome, code, reason, bytes).
//!
//! Every refusal is written here (a refused upload leaves nothing else
//! behind), and so are the events worth an audit trail: a re-sent identical
//! file (PostgreSQL retrying after a lost exit status), base backup files
//! and a base backup made current. Ordinary accepted segments are not: the
//! archive itself records them, and a line per segment would grow the log
//! without bound. Each line is one `write` on a file opened for appending,
//! so concurrent uploads never interleave inside a line. Past 4 MiB the log
//! becomes `receive.log.1` (the older one goes), so a sender repeating a bad
//! command cannot fill the disk through it.
//!
//! [`parse_line`] and [`refusals`] read it back for the dashboard: pure
//! parsing, bounded reading, unknown or damaged lines skipped.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::ops::receive::error::RefusalCode;
use crate::ops::receive::state::OWN_DIR;

pub const LOG_FILE: &str = "receive.log";
pub const OLD_LOG_FILE: &str = "receive.log.1";
/// Size at which the log is rotated.
const ROTATE_AT: u64 = 4 << 20;
/// The most read back from each log file (the two together stay under 10 MiB).
const READ_LIMIT: u64 = 5 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Stored (base backup files and finished base backups are logged).
    Accepted,
    /// Already stored with identical content: exit 0, nothing written.
    Duplicate,
    /// Turned away; nothing was kept.
    Refused,
}

/// One line of the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogEntry {
    /// RFC 3339, UTC.
    pub time: String,
    pub command: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub outcome: Outcome,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
}

/// A refused upload, as the dashboard shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Refusal {
    #[serde(serialize_with = "crate::serde_util::time")]
    pub time: SystemTime,
    pub command: String,
    pub name: Option<String>,
    /// `None` for a code this version does not know (a newer receiver wrote it).
    #[serde(skip)]
    pub code: Option<RefusalCode>,
    /// The code as written.
    pub code_text: String,
    pub reason: String,
}

impl LogEntry {
    pub fn new(
        time: SystemTime,
        command: &str,
        name: Option<String>,
        outcome: Outcome,
    ) -> LogEntry {
        LogEntry {
            time: humantime::format_rfc3339_millis(time).to_string(),
            command: command.to_owned(),
            name,
            outcome,
            code: None,
            reason: None,
            bytes: None,
        }
    }
}

/// Parses one line of the log; `None` for a damaged or foreign line.
pub fn parse_line(line: &str) -> Option<LogEntry> {
    serde_json::from_str(line.trim()).ok()
}

/// Appends `entry` to the client's log (rotating it first when large).
/// Logging never fails an upload: a log that cannot be written loses the line.
pub fn append(client_dir: &Path, entry: &LogEntry) {
    let dir = client_dir.join(OWN_DIR);
    let path = dir.join(LOG_FILE);
    if fs::metadata(&path).is_ok_and(|m| m.len() >= ROTATE_AT) {
        // Two rotations racing lose at most the older file's lines.
        let _ = fs::rename(&path, dir.join(OLD_LOG_FILE));
    }
    let Ok(mut line) = serde_json::to_vec(entry) else {
        return;
    };
    line.push(b'\n');
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(&path);
    if let Ok(mut file) = file {
        let _ = file.write_all(&line);
    }
}

/// Every entry of the client's log, oldest first (both files, each read up to a bound).
pub fn entries(client_dir: &Path) -> Vec<LogEntry> {
    let dir = client_dir.join(OWN_DIR);
    let mut all = Vec::new();
    for name in [OLD_LOG_FILE, LOG_FILE] {
        let Ok(bytes) = crate::ops::receive::state::read_small(&dir.join(name), READ_LIMIT) else {
            continue;
        };
        all.extend(
            String::from_utf8_lossy(&bytes)
                .lines()
                .filter_map(parse_line),
        );
    }
    all
}

/// The refused uploads in the client's log, oldest first.
pub fn refusals(client_dir: &Path) -> Vec<Refusal> {
    entries(client_dir)
        .into_iter()
        .filter_map(refusal_of)
        .collect()
}

/// The refusals among log entries (pure: what [`refusals`] does after reading).
pub fn refusal_of(entry: LogEntry) -> Option<Refusal> {
    if entry.outcome != Outcome::Refused {
        return None;
    }
    let time = humantime::parse_rfc3339_weak(&entry.time).ok()?;
    let code_text = entry.code.unwrap_or_default();
    Some(Refusal {
        time,
        command: entry.command,
        name: entry.name,
        code: RefusalCode::parse(&code_text),
        code_text,
        reason: entry.reason.unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn lines_round_trip_and_damaged_ones_are_skipped() {
        let tmp = tempfile::tempdir().unwrap();
        fs::create_dir(tmp.path().join(OWN_DIR)).unwrap();
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_764_000_000);
        let mut refused = LogEntry::new(
            at,
            "put-wal",
            Some("000000010000000000000007.gz".into()),
            Outcome::Refused,
        );
        refused.code = Some("rejected_overwrite".into());
        refused.reason = Some("already archived with other content".into());
        append(tmp.path(), &refused);
        append(
            tmp.path(),
            &LogEntry::new(at, "put-wal", Some("x".into()), Outcome::Duplicate),
        );
        let path = tmp.path().join(OWN_DIR).join(LOG_FILE);
        let mut file = OpenOptions::new().append(true).open(&path).unwrap();
        file.write_all(b"{not json\n\n").unwrap();
        let mut future = refused.clone();
        future.code = Some("a_code_from_the_future".into());
        append(tmp.path(), &future);

        assert_eq!(entries(tmp.path()).len(), 3);
        let found = refusals(tmp.path());
        assert_eq!(found.len(), 2);
        assert_eq!(found[0].time, at);
        assert_eq!(found[0].code, Some(RefusalCode::RejectedOverwrite));
        assert_eq!(
            found[0].name.as_deref(),
            Some("000000010000000000000007.gz")
        );
        assert_eq!(found[1].code, None);
        assert_eq!(found[1].code_text, "a_code_from_the_future");
    }

    #[test]
    fn no_log_is_no_refusals() {
        let tmp = tempfile::tempdir().unwrap();
        assert!(refusals(tmp.path()).is_empty());
    }

    #[test]
    fn a_large_log_is_rotated() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join(OWN_DIR);
        fs::create_dir(&dir).unwrap();
        fs::write(dir.join(LOG_FILE), vec![b'\n'; ROTATE_AT as usize]).unwrap();
        append(
            tmp.path(),
            &LogEntry::new(SystemTime::now(), "copy-test", None, Outcome::Refused),
        );
        assert!(fs::metadata(dir.join(LOG_FILE)).unwrap().len() < 1000);
        assert!(dir.join(OLD_LOG_FILE).exists());
        assert_eq!(refusals(tmp.path()).len(), 1);
    }

    proptest::proptest! {
        #[test]
        fn parse_line_never_panics(text in "\\PC{0,200}") {
            let _ = parse_line(&text).map(refusal_of);
        }
    }
}
