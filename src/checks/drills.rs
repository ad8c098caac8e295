//! The record of restore drills: the history in the user's cache folder
//! (`drills.json`, appended under a lock), each client's last successful
//! drill, and the `drill_stale` rule for clients whose config asks for
//! drills (`drill_max_age`). Running a drill is `ops::drill`; this is what
//! both faces report about them.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::checks::health::{Problem, ProblemCode, Status};
use crate::checks::phase_times::PhaseTimes;
use crate::checks::phase_times::RestoreSizes;

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
    /// The furthest segment replay reached; a drill passes only at the line's end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reached_segment: Option<String>,
    /// The last commit the restored server replayed (RFC 3339, UTC, microseconds),
    /// equal to the archive's last commit on the line when the drill passed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_commit: Option<String>,
    /// Where the time went: preflight, unpack, replay (WAL bytes, MB/s),
    /// start until accepting writes; what a recovery-time estimate is made
    /// of. Absent in records older than this field.
    #[serde(default)]
    pub phases: PhaseTimes,
    /// The sizes the drill restored: base tarballs, and WAL on the line
    /// from the base backup's start (what `rto` scales by).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sizes: Option<RestoreSizes>,
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
            reached_segment: None,
            last_commit: None,
            phases: PhaseTimes::default(),
            sizes: None,
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

/// The client to drill next in a rotation (`walwarden drill --next`, the
/// nightly timer): one never drilled first, else the one whose last drill is
/// the oldest; ties go by name.
///
/// "Last drill" counts failed drills too. Ordered by the last *successful*
/// drill, a client whose drill keeps failing (a gap, a broken base backup)
/// would be picked every night and no other client would be drilled again;
/// its failure is already reported (the drill's exit status, the unit's
/// state, `drill_stale` in `check`), and it comes round again in turn.
pub fn next_to_drill<'a>(clients: &[&'a str], history: &[DrillRecord]) -> Option<&'a str> {
    let last_attempt = |client: &str| {
        history
            .iter()
            .filter(|r| r.client == client)
            .map(|r| r.at_unix)
            .max()
    };
    clients
        .iter()
        .map(|name| (last_attempt(name), *name))
        // None (never drilled) sorts before every time.
        .min()
        .map(|(_, name)| name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(client: &str, at_unix: u64, success: bool) -> DrillRecord {
        DrillRecord {
            client: client.to_owned(),
            at: String::new(),
            at_unix,
            success,
            detail: String::new(),
            seconds: 1.0,
            reached: None,
            reached_segment: None,
            last_commit: None,
            phases: PhaseTimes::default(),
            sizes: None,
        }
    }

    #[test]
    fn next_to_drill_takes_the_never_drilled_first_then_the_oldest() {
        let history = vec![
            record("acme", 300, true),
            record("globex", 100, true),
            record("acme", 50, true),
            record("gone", 10, true),
        ];
        // initech has never been drilled.
        assert_eq!(
            next_to_drill(&["acme", "globex", "initech"], &history),
            Some("initech")
        );
        // globex's last drill (100) is older than acme's (300; its older one at 50 does not count).
        assert_eq!(next_to_drill(&["acme", "globex"], &history), Some("globex"));
        // A client no longer under the root is never picked.
        assert_eq!(next_to_drill(&["acme"], &history), Some("acme"));
        assert_eq!(next_to_drill(&[], &history), None);
    }

    #[test]
    fn next_to_drill_breaks_ties_by_name() {
        assert_eq!(next_to_drill(&["b", "a", "c"], &[]), Some("a"));
        let history = vec![record("b", 5, true), record("a", 5, true)];
        assert_eq!(next_to_drill(&["b", "a"], &history), Some("a"));
    }

    #[test]
    fn a_failing_client_does_not_take_every_night() {
        // acme fails every night; its last success is the oldest of all.
        let mut history = vec![record("acme", 10, true), record("globex", 20, true)];
        history.push(record("acme", 100, false));
        assert_eq!(
            next_to_drill(&["acme", "globex"], &history),
            Some("globex"),
            "globex's turn: acme was tried last night"
        );
        history.push(record("globex", 200, true));
        assert_eq!(next_to_drill(&["acme", "globex"], &history), Some("acme"));
    }

    #[test]
    fn last_success_ignores_failures() {
        let history = vec![record("acme", 10, true), record("acme", 20, false)];
        assert_eq!(last_success(&history, "acme").map(|r| r.at_unix), Some(10));
    }
}
