//! The record of restore drills: the history in the user's cache folder
//! (`drills.json`, appended under a lock), each client's last successful
//! drill, and the `drill_stale` rule for clients whose config asks for
//! drills (`drill_max_age`). Running a drill is `ops::drill`; this is what
//! both faces report about them.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::checks::health::{Problem, ProblemCode, Status};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DrillRecord {
    pub client: String,
    /// RFC 3339, when the drill started.
    pub at: String,
    pub at_unix: u64,
    pub success: bool,
    /// What failed and why, or what the restored server answered.
    pub detail: String,
    /// The measured recovery time: unpack, replay and start.
    pub seconds: f64,
    /// The last transaction the restored server replayed.
    pub reached: Option<String>,
}

pub fn default_history_path() -> Option<PathBuf> {
    dirs::cache_dir().map(|d| d.join("walwarden").join("drills.json"))
}

pub fn load_history(path: &Path) -> Vec<DrillRecord> {
    crate::store::read_json_or_default(Some(path))
}

impl DrillRecord {
    /// A drill that failed before it started, stamped now.
    pub fn failed(client: &str, detail: String) -> DrillRecord {
        let now = SystemTime::now();
        DrillRecord {
            client: client.to_owned(),
            at: crate::display::time_text(now),
            at_unix: now
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            success: false,
            detail,
            seconds: 0.0,
            reached: None,
        }
    }
}

/// Adds a record under the history's lock: two drills finishing at once both stay recorded.
pub fn append_history(path: &Path, record: &DrillRecord) -> std::io::Result<()> {
    crate::store::update_json(path, |history: &mut Vec<DrillRecord>| {
        history.push(record.clone())
    })
}

/// The newest successful drill of a client.
pub fn last_success<'a>(history: &'a [DrillRecord], client: &str) -> Option<&'a DrillRecord> {
    history
        .iter()
        .filter(|r| r.client == client && r.success)
        .max_by_key(|r| r.at_unix)
}

/// `drill_stale` when no drill of `client` succeeded within `max_age` of `now`.
pub fn stale_problem(
    client: &str,
    last: Option<&DrillRecord>,
    max_age: Duration,
    now: SystemTime,
) -> Option<Problem> {
    let now_unix = now
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let age = last.map(|d| now_unix.saturating_sub(d.at_unix));
    if age.is_some_and(|a| a <= max_age.as_secs()) {
        return None;
    }
    let when = last.map_or("never".to_owned(), |d| format!("last succeeded {}", d.at));
    Some(Problem::new(
        ProblemCode::DrillStale,
        Status::Warning,
        format!(
            "no successful restore drill within {} ({when})",
            crate::display::short_duration(max_age)
        ),
        format!("run `walwarden drill {client}`: only a restore proves the backup restores"),
    ))
}
