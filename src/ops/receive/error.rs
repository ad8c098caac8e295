//! Why the receiver turned an upload away, as a typed error with a stable
//! code. Every refusal becomes one line on the sender's stderr (and so in
//! PostgreSQL's log, where `check --target` diagnoses it by its code) and one
//! line in the client's receive log. Messages are one line, lower-case, and
//! say what to do where that helps; they never repeat the file name, which
//! the line's prefix already gives.

use std::io;

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// The commands this key may run, as refusals list them.
pub const GRAMMAR: &str = "put-wal NAME, put-base ID FILE, finish-base ID, copy-test";

/// A stable name for each kind of refusal: in the log, on stderr between
/// brackets, and in `check --target`'s diagnosis.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RefusalCode {
    /// A command outside the grammar: a shell, rm, cat, scp, sftp, a listing.
    NotAllowed,
    /// A file name or backup ID outside the grammar.
    BadName,
    /// Not a complete gzip stream, not one segment long, a bad page header,
    /// a history or backup file that does not parse.
    CorruptUpload,
    /// The first page header names another segment.
    MisnamedSegment,
    /// The segment comes from another database system.
    ForeignSegment,
    /// The name is taken by a file with other content; the stored file is kept.
    RejectedOverwrite,
    /// The client's quota would be passed.
    QuotaExceeded,
    /// The backup server's file system is (nearly) full.
    DiskFull,
    /// Another connection is uploading the same file.
    Busy,
    /// A staged base backup does not verify.
    BadBase,
    /// A staged base backup from another database system.
    ForeignBase,
    /// finish-base of an ID never staged.
    NoSuchBase,
    /// The receiver's own setup is wrong (config, root, client folder, owner).
    Misconfigured,
    /// An I/O error on the backup server.
    Failed,
}

impl RefusalCode {
    pub const ALL: [RefusalCode; 14] = [
        RefusalCode::NotAllowed,
        RefusalCode::BadName,
        RefusalCode::CorruptUpload,
        RefusalCode::MisnamedSegment,
        RefusalCode::ForeignSegment,
        RefusalCode::RejectedOverwrite,
        RefusalCode::QuotaExceeded,
        RefusalCode::DiskFull,
        RefusalCode::Busy,
        RefusalCode::BadBase,
        RefusalCode::ForeignBase,
        RefusalCode::NoSuchBase,
        RefusalCode::Misconfigured,
        RefusalCode::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RefusalCode::NotAllowed => "not_allowed",
            RefusalCode::BadName => "bad_name",
            RefusalCode::CorruptUpload => "corrupt_upload",
            RefusalCode::MisnamedSegment => "misnamed_segment",
            RefusalCode::ForeignSegment => "foreign_segment",
            RefusalCode::RejectedOverwrite => "rejected_overwrite",
            RefusalCode::QuotaExceeded => "quota_exceeded",
            RefusalCode::DiskFull => "disk_full",
            RefusalCode::Busy => "busy",
            RefusalCode::BadBase => "bad_base",
            RefusalCode::ForeignBase => "foreign_base",
            RefusalCode::NoSuchBase => "no_such_base",
            RefusalCode::Misconfigured => "misconfigured",
            RefusalCode::Failed => "failed",
        }
    }

    pub fn parse(text: &str) -> Option<RefusalCode> {
        RefusalCode::ALL.into_iter().find(|c| c.as_str() == text)
    }
}

#[derive(Debug, Error)]
pub enum ReceiveError {
    #[error("{what}: this key only uploads backups; accepted: {GRAMMAR}")]
    NotAllowed { what: String },
    #[error("{name:?} is not {expected}")]
    BadName {
        name: String,
        expected: &'static str,
    },
    #[error("{reason}")]
    Corrupt { reason: String },
    #[error(
        "its first page header says it is {header_says}: a renamed or mis-copied file; send the segment under its own name"
    )]
    Misnamed { header_says: String },
    #[error(
        "from another database system (system identifier {found}, this client's is {expected}): another server's archive_command names this client, or the cluster was rebuilt (initdb, pg_upgrade: give it a new client folder)"
    )]
    Foreign { found: u64, expected: u64 },
    #[error(
        "{stored} is already archived with other content (stored: {stored_bytes} bytes unpacked, sha256 {stored_sha256}; this upload: {upload_bytes} bytes unpacked, sha256 {upload_sha256}); the stored file is kept: find which server archives into this client's folder"
    )]
    Overwrite {
        stored: String,
        stored_bytes: u64,
        stored_sha256: String,
        upload_bytes: u64,
        upload_sha256: String,
    },
    #[error(
        "this client's quota of {limit} bytes would be passed ({used} bytes stored, this upload reached {incoming}): ask the backup server's operator to raise quota for the client or to prune old backups"
    )]
    Quota {
        limit: u64,
        used: u64,
        incoming: u64,
    },
    #[error(
        "the backup server's file system is nearly full ({available} bytes free, {reserve} kept in reserve): free space on the backup server"
    )]
    DiskFull { available: u64, reserve: u64 },
    #[error("{what} is being uploaded by another connection; retry when it is done")]
    Busy { what: String },
    #[error("base backup {id} does not verify: {reasons}; the current base backup is untouched")]
    BadBase { id: String, reasons: String },
    #[error(
        "base backup {id} is from another database system (system identifier {found}, this client's is {expected}); the current base backup is untouched"
    )]
    ForeignBase {
        id: String,
        found: u64,
        expected: u64,
    },
    #[error("no base backup {id} is staged: send its files with put-base {id} FILE first")]
    NoSuchBase { id: String },
    #[error("{0}")]
    Misconfigured(String),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
}

impl ReceiveError {
    pub fn code(&self) -> RefusalCode {
        match self {
            ReceiveError::NotAllowed { .. } => RefusalCode::NotAllowed,
            ReceiveError::BadName { .. } => RefusalCode::BadName,
            ReceiveError::Corrupt { .. } => RefusalCode::CorruptUpload,
            ReceiveError::Misnamed { .. } => RefusalCode::MisnamedSegment,
            ReceiveError::Foreign { .. } => RefusalCode::ForeignSegment,
            ReceiveError::Overwrite { .. } => RefusalCode::RejectedOverwrite,
            ReceiveError::Quota { .. } => RefusalCode::QuotaExceeded,
            ReceiveError::DiskFull { .. } => RefusalCode::DiskFull,
            ReceiveError::Busy { .. } => RefusalCode::Busy,
            ReceiveError::BadBase { .. } => RefusalCode::BadBase,
            ReceiveError::ForeignBase { .. } => RefusalCode::ForeignBase,
            ReceiveError::NoSuchBase { .. } => RefusalCode::NoSuchBase,
            ReceiveError::Misconfigured(_) => RefusalCode::Misconfigured,
            ReceiveError::Io { source, .. } if is_disk_full(source) => RefusalCode::DiskFull,
            ReceiveError::Io { .. } => RefusalCode::Failed,
        }
    }

    pub fn corrupt(reason: impl Into<String>) -> ReceiveError {
        ReceiveError::Corrupt {
            reason: reason.into(),
        }
    }

    /// An I/O error with what was being done; `context` names the path
    /// relative to the client folder, never the sender's input.
    pub fn io(context: impl Into<String>) -> impl FnOnce(io::Error) -> ReceiveError {
        let context = context.into();
        move |source| ReceiveError::Io { context, source }
    }
}

fn is_disk_full(error: &io::Error) -> bool {
    matches!(
        error.raw_os_error(),
        Some(code) if code == nix::libc::ENOSPC || code == nix::libc::EDQUOT
    )
}

/// Text that came from the sender, made safe for one log or stderr line:
/// control characters escaped, at most `max` characters.
pub fn sanitize(text: &str, max: usize) -> String {
    let mut out = String::new();
    for (count, c) in text.chars().enumerate() {
        if count >= max {
            out.push('…');
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// A message made one line: the sender's stderr reaches PostgreSQL's log
/// line by line, and the diagnosis reads one line per refusal.
pub fn one_line(text: &str) -> String {
    text.split(['\n', '\r'])
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_are_unique() {
        let mut seen = std::collections::HashSet::new();
        for code in RefusalCode::ALL {
            assert_eq!(RefusalCode::parse(code.as_str()), Some(code));
            assert!(seen.insert(code.as_str()));
            let json = serde_json::to_string(&code).unwrap();
            assert_eq!(json, format!("\"{}\"", code.as_str()));
        }
        assert_eq!(RefusalCode::parse("nonsense"), None);
    }

    #[test]
    fn sender_text_is_kept_to_one_short_line() {
        assert_eq!(sanitize("rm -rf wal\n; id", 100), "rm -rf wal\\n; id");
        assert_eq!(sanitize("abcdef", 3), "abc…");
        assert_eq!(one_line("a\nb\r\n\nc"), "a; b; c");
    }

    #[test]
    fn a_full_disk_is_its_own_code() {
        let full =
            ReceiveError::io("writing wal/x")(io::Error::from_raw_os_error(nix::libc::ENOSPC));
        assert_eq!(full.code(), RefusalCode::DiskFull);
        let other = ReceiveError::io("writing wal/x")(io::Error::other("boom"));
        assert_eq!(other.code(), RefusalCode::Failed);
    }
}
