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
//! Reading it back (for the dashboard and `check`) is the archive layer's:
//! [`crate::archive::receiver_log`].

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use crate::ops::receive::state::OWN_DIR;

/// Size at which the log is rotated.
const ROTATE_AT: u64 = 4 << 20;

pub use crate::archive::receiver_log::{
    LOG_FILE, LogEntry, OLD_LOG_FILE, Outcome, Refusal, entries, parse_line, refusal_of, refusals,
};

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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, SystemTime};

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
        assert_eq!(found[0].code_text, "rejected_overwrite");
        assert_eq!(
            found[0].name.as_deref(),
            Some("000000010000000000000007.gz")
        );
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
