//! The receiver's log as the checks read it: `ROOT/<client>/.walwarden/`
//! holds what `walwarden receive` keeps of its own (state, staging, previous
//! base backups, and `receive.log`, one JSON object per line: time, command,
//! name, outcome, code, reason, bytes). Every refused upload is written
//! there, so this is where the dashboard and `check` learn of refusals.
//! Reading is bounded (two files of at most 5 MiB) and damaged or unknown
//! lines are skipped: the client's user writes this folder.

use std::fs::File;
use std::io::Read;
use std::path::Path;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

/// The receiver's own folder in a client folder.
pub const OWN_DIR: &str = ".walwarden";
pub const LOG_FILE: &str = "receive.log";
pub const OLD_LOG_FILE: &str = "receive.log.1";
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
    /// The receiver's refusal code as written (`rejected_overwrite`, `quota_exceeded`, …).
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

/// Every entry of the client's log, oldest first (both files, each read up to a bound).
pub fn entries(client_dir: &Path) -> Vec<LogEntry> {
    let dir = client_dir.join(OWN_DIR);
    let mut all = Vec::new();
    for name in [OLD_LOG_FILE, LOG_FILE] {
        let Ok(bytes) = read_small(&dir.join(name), READ_LIMIT) else {
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
        code_text,
        reason: entry.reason.unwrap_or_default(),
    })
}

/// Reads at most `limit` bytes of a small file of the receiver's.
fn read_small(path: &Path, limit: u64) -> std::io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    File::open(path)?.take(limit).read_to_end(&mut bytes)?;
    Ok(bytes)
}
