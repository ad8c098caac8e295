//! The one stderr line `walwarden wal-get` (the restore_command helper)
//! writes when it refuses a WAL file, cannot serve one, or finds one missing
//! inside the restore's line. PostgreSQL puts restore_command's stderr into
//! the server log, so this module is the contract between the helper, which
//! formats the line, and the log classifier ([`crate::pg::pglog`]), which
//! diagnoses it by name.
//!
//! The shape: `walwarden wal-get: <verb> <file> (<code>): <reason>`, where
//! the verb is `refused` (the archive's file is wrong), `failed` (the helper
//! could not do its job) or `missing` (a gap: the file is absent although the
//! line goes on past it), and the code is a pglog diagnosis code. The reason
//! is one line without the `:  ` (colon, two spaces) that marks a server
//! message, so the line can never be taken for PostgreSQL's own.

use std::fmt;

use crate::pg::pglog::{Diagnosis, LineKind, codes};

/// What every helper line starts with.
pub const PREFIX: &str = "walwarden wal-get: ";

/// Why the helper did not hand a file over; each is a pglog diagnosis code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RefusalCode {
    /// The segment belongs to another database system (xlp_sysid).
    ForeignSegment,
    /// Not a whole gzip stream, not exactly one segment, or no valid header.
    CorruptSegment,
    /// The header's page address (or timeline) names another segment.
    MisnamedSegment,
    /// The archive's file exists but the PostgreSQL user cannot read it.
    ArchivePermission,
    /// Writing the file for PostgreSQL ran out of space.
    DiskFull,
    /// Anything else the helper could not do (its plan, a write).
    HelperFailed,
}

impl RefusalCode {
    pub fn as_str(self) -> &'static str {
        match self {
            RefusalCode::ForeignSegment => codes::FOREIGN_SEGMENT,
            RefusalCode::CorruptSegment => codes::CORRUPT_SEGMENT,
            RefusalCode::MisnamedSegment => codes::MISNAMED_SEGMENT,
            RefusalCode::ArchivePermission => codes::ARCHIVE_PERMISSION,
            RefusalCode::DiskFull => codes::DISK_FULL,
            RefusalCode::HelperFailed => codes::RESTORE_COMMAND_FAILED,
        }
    }

    pub fn parse(code: &str) -> Option<RefusalCode> {
        [
            RefusalCode::ForeignSegment,
            RefusalCode::CorruptSegment,
            RefusalCode::MisnamedSegment,
            RefusalCode::ArchivePermission,
            RefusalCode::DiskFull,
            RefusalCode::HelperFailed,
        ]
        .into_iter()
        .find(|c| c.as_str() == code)
    }

    /// Whether the archive's file is at fault (`refused`) rather than the helper (`failed`).
    pub fn blames_the_file(self) -> bool {
        matches!(
            self,
            RefusalCode::ForeignSegment
                | RefusalCode::CorruptSegment
                | RefusalCode::MisnamedSegment
        )
    }
}

/// One helper line, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WalGetLine {
    Refused {
        file: String,
        code: RefusalCode,
        reason: String,
    },
    /// A segment of the line is absent from the archive while later ones are
    /// expected: the gap replay will stop at.
    Missing { file: String, reason: String },
}

impl WalGetLine {
    pub fn refused(file: &str, code: RefusalCode, reason: &str) -> WalGetLine {
        WalGetLine::Refused {
            file: file.to_owned(),
            code,
            reason: one_line(reason),
        }
    }

    pub fn missing(file: &str, reason: &str) -> WalGetLine {
        WalGetLine::Missing {
            file: file.to_owned(),
            reason: one_line(reason),
        }
    }

    /// Finds a helper line anywhere in a log line (a log_line_prefix or a
    /// syslog header may stand before it).
    pub fn parse(line: &str) -> Option<WalGetLine> {
        let rest = &line[line.find(PREFIX)? + PREFIX.len()..];
        let (verb, rest) = rest.split_once(' ')?;
        let (file, rest) = rest.split_once(" (")?;
        let (code, reason) = rest.split_once("): ")?;
        if file.is_empty() || file.contains(' ') {
            return None;
        }
        let reason = reason.trim_end().to_owned();
        match verb {
            "refused" | "failed" => Some(WalGetLine::Refused {
                file: file.to_owned(),
                code: RefusalCode::parse(code)?,
                reason,
            }),
            "missing" if code == codes::WAL_GAP => Some(WalGetLine::Missing {
                file: file.to_owned(),
                reason,
            }),
            _ => None,
        }
    }

    /// What the log classifier makes of it: a refusal is a failure named by
    /// its code and segment, with a fix; a missing segment is a miss, so the
    /// replay tracker's gap logic names it as it does for gunzip's complaint.
    pub fn kind(&self) -> LineKind {
        match self {
            WalGetLine::Missing { file, .. } => LineKind::NormalMiss {
                missing_file: file.clone(),
            },
            WalGetLine::Refused { file, code, reason } => LineKind::Failure(Diagnosis {
                code: code.as_str(),
                summary: summary(file, *code, reason),
                fix: fix(file, *code),
            }),
        }
    }
}

impl fmt::Display for WalGetLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WalGetLine::Refused { file, code, reason } => {
                let verb = if code.blames_the_file() {
                    "refused"
                } else {
                    "failed"
                };
                write!(f, "{PREFIX}{verb} {file} ({}): {reason}", code.as_str())
            }
            WalGetLine::Missing { file, reason } => {
                write!(f, "{PREFIX}missing {file} ({}): {reason}", codes::WAL_GAP)
            }
        }
    }
}

/// `LineKind` for a log line written by the helper, if it is one.
pub fn classify(line: &str) -> Option<LineKind> {
    WalGetLine::parse(line).map(|l| l.kind())
}

/// Line breaks and runs of blanks collapsed: one log line, and never a `:  `.
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn summary(file: &str, code: RefusalCode, reason: &str) -> String {
    match code {
        RefusalCode::ForeignSegment => {
            format!("wal-get refused {file}: a segment of another database system ({reason})")
        }
        RefusalCode::CorruptSegment => {
            format!("wal-get refused {file}: the archived file is damaged ({reason})")
        }
        RefusalCode::MisnamedSegment => {
            format!("wal-get refused {file}: the archived file is another segment ({reason})")
        }
        RefusalCode::ArchivePermission => {
            format!("postgres cannot read the WAL archive: wal-get {file}: {reason}")
        }
        RefusalCode::DiskFull => format!("the disk is full: wal-get {file}: {reason}"),
        RefusalCode::HelperFailed => format!("wal-get could not serve {file}: {reason}"),
    }
}

fn fix(file: &str, code: RefusalCode) -> String {
    let without = "without it the data ends before it, so restore to a time before it or take a new base backup";
    match code {
        RefusalCode::ForeignSegment => format!(
            "another cluster archived into this client's folder (two servers with one archive_command, \
             or a copy from elsewhere): find the right {file} (the old server's pg_wal, another copy \
             of the archive), put it in the archive and restore again; {without}"
        ),
        RefusalCode::CorruptSegment => format!(
            "the file is truncated or damaged (gzip -t, its size): replace {file} from another copy of \
             the archive or the old server's pg_wal and restore again; {without}"
        ),
        RefusalCode::MisnamedSegment => format!(
            "a file was renamed or copied under the wrong name: find the real {file} and restore \
             again; {without}"
        ),
        RefusalCode::ArchivePermission => "let the PostgreSQL OS user read the client's folder \
             through a group only it is in (chgrp -R GROUP CLIENT_DIR; chmod -R g+rX CLIENT_DIR; \
             chmod g+s CLIENT_DIR/base CLIENT_DIR/wal) and restore again; never chown the folder \
             away from the client's own user (its archive_command writes as that user), and \
             never o+r, which opens one client's WAL to every other client's user"
            .to_owned(),
        RefusalCode::DiskFull => {
            "free space on the data directory's file system (df -h DATA) and restore again"
                .to_owned()
        }
        RefusalCode::HelperFailed => "run the restore_command by hand as postgres from the data \
             directory (its plan file beside the data directory must be readable) and restore again"
            .to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_round_trip_and_are_diagnosed_by_name() {
        let line = WalGetLine::refused(
            "000000010000000000000009",
            RefusalCode::ForeignSegment,
            "system identifier 1 in its header,\n the base backup's is 2",
        );
        let text = line.to_string();
        assert_eq!(
            text,
            "walwarden wal-get: refused 000000010000000000000009 (foreign-segment): system \
             identifier 1 in its header, the base backup's is 2"
        );
        assert_eq!(WalGetLine::parse(&text), Some(line));
        match crate::pg::pglog::classify(&text) {
            LineKind::Failure(d) => {
                assert_eq!(d.code, "foreign-segment");
                assert!(d.summary.contains("000000010000000000000009"), "{d:?}");
                assert!(d.fix.contains("000000010000000000000009"), "{d:?}");
            }
            other => panic!("{other:?}"),
        }
        let failed = WalGetLine::refused("00000002.history", RefusalCode::DiskFull, "no space");
        assert!(
            failed
                .to_string()
                .contains(": failed 00000002.history (disk-full): ")
        );
        assert_eq!(WalGetLine::parse(&failed.to_string()), Some(failed));
        let missing = WalGetLine::missing("00000001000000000000000F", "not in /x/wal");
        assert_eq!(
            crate::pg::pglog::classify(&missing.to_string()),
            LineKind::NormalMiss {
                missing_file: "00000001000000000000000F".into()
            }
        );
        for other in [
            "walwarden wal-get: refused",
            "walwarden wal-get: refused x (no-such-code): y",
            "walwarden wal-get: missing x (foreign-segment): y",
            "gzip: /x/000000010000000000000016.gz: No such file or directory",
        ] {
            assert_eq!(WalGetLine::parse(other), None, "{other}");
        }
    }
}
