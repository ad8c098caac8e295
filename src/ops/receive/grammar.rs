//! The receiver's command grammar: what `SSH_ORIGINAL_COMMAND` may say.
//!
//! ```text
//! put-wal NAME          NAME: SEGMENT[.partial][.gz] | TTTTTTTT.history[.gz]
//!                             | SEGMENT.OOOOOOOO.backup[.gz]   (upper-case hex)
//! put-base ID FILE      ID: [A-Za-z0-9_-]{1,64}; FILE: base.tar.gz | pg_wal.tar.gz | backup_manifest
//! finish-base ID
//! copy-test
//! ```
//!
//! Words are separated by spaces; nothing is quoted, expanded or run. The
//! file's bytes come on stdin. Anything else (no command at all, which is an
//! interactive shell; scp, sftp, rsync, rm, cat, ls...) is refused with a
//! message that names what was asked. Pure: no I/O.

use crate::archive::wal::{RawSegmentName, WalFileKind};
use crate::ops::receive::error::{ReceiveError, sanitize};

/// Longest command accepted: the longest valid one is well under 100 bytes.
const MAX_COMMAND: usize = 256;

/// A WAL file name that passed the grammar, with what it must contain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalName {
    pub name: String,
    pub kind: WalKind,
    pub compressed: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WalKind {
    Segment { name: RawSegmentName, partial: bool },
    TimelineHistory { timeline: u32 },
    BackupHistory { name: RawSegmentName, offset: u32 },
}

impl WalName {
    pub fn parse(name: &str) -> Result<WalName, ReceiveError> {
        let bad = || ReceiveError::BadName {
            name: sanitize(name, 80),
            expected: "a WAL file name: a segment (24 upper-case hex digits), SEGMENT.partial, TTTTTTTT.history or SEGMENT.OOOOOOOO.backup, each optionally .gz",
        };
        let (kind, compressed) = match WalFileKind::classify(name) {
            WalFileKind::Segment {
                name,
                compressed,
                partial,
            } => (WalKind::Segment { name, partial }, compressed),
            WalFileKind::TimelineHistory {
                timeline,
                compressed,
            } => (
                WalKind::TimelineHistory {
                    timeline: timeline.0,
                },
                compressed,
            ),
            WalFileKind::BackupHistory {
                name,
                offset,
                compressed,
            } => (WalKind::BackupHistory { name, offset }, compressed),
            WalFileKind::InFlight { .. } | WalFileKind::Other => return Err(bad()),
        };
        let wal = WalName {
            name: name.to_owned(),
            kind,
            compressed,
        };
        // One spelling per file: PostgreSQL writes upper-case hex, and a
        // lower-case twin would be a second name for the same segment.
        let timeline_ok = match kind {
            WalKind::Segment { name, .. } | WalKind::BackupHistory { name, .. } => {
                name.timeline >= 1
            }
            // Timeline 1 has no history file: initdb starts it.
            WalKind::TimelineHistory { timeline } => timeline >= 2,
        };
        if wal.canonical() != name || !timeline_ok {
            return Err(bad());
        }
        Ok(wal)
    }

    /// The name as PostgreSQL writes it, from the parsed parts.
    fn canonical(&self) -> String {
        let gz = if self.compressed { ".gz" } else { "" };
        match self.kind {
            WalKind::Segment { name, partial } => {
                format!("{name}{}{gz}", if partial { ".partial" } else { "" })
            }
            WalKind::TimelineHistory { timeline } => format!("{timeline:08X}.history{gz}"),
            WalKind::BackupHistory { name, offset } => format!("{name}.{offset:08X}.backup{gz}"),
        }
    }

    /// The other spelling of the same file (`X` for `X.gz` and back): both
    /// name one file, so an upload under either is compared with the other.
    pub fn sibling(&self) -> String {
        match self.name.strip_suffix(".gz") {
            Some(plain) => plain.to_owned(),
            None => format!("{}.gz", self.name),
        }
    }
}

/// The three files of a base backup that pg_basebackup --format=tar --gzip writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BaseFile {
    BaseTar,
    PgWalTar,
    Manifest,
}

impl BaseFile {
    pub const ALL: [BaseFile; 3] = [BaseFile::BaseTar, BaseFile::PgWalTar, BaseFile::Manifest];

    pub fn name(self) -> &'static str {
        match self {
            BaseFile::BaseTar => "base.tar.gz",
            BaseFile::PgWalTar => "pg_wal.tar.gz",
            BaseFile::Manifest => "backup_manifest",
        }
    }

    pub fn parse(name: &str) -> Result<BaseFile, ReceiveError> {
        BaseFile::ALL
            .into_iter()
            .find(|f| f.name() == name)
            .ok_or_else(|| ReceiveError::BadName {
                name: sanitize(name, 80),
                expected: "a base backup file: base.tar.gz, pg_wal.tar.gz or backup_manifest",
            })
    }
}

/// A base backup's upload ID, chosen by the sender (a time stamp, say).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseId(String);

impl BaseId {
    pub fn parse(id: &str) -> Result<BaseId, ReceiveError> {
        let ok = (1..=64).contains(&id.len())
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if ok {
            Ok(BaseId(id.to_owned()))
        } else {
            Err(ReceiveError::BadName {
                name: sanitize(id, 80),
                expected: "a base backup ID: 1 to 64 letters, digits, '_' or '-'",
            })
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    PutWal(WalName),
    PutBase { id: BaseId, file: BaseFile },
    FinishBase { id: BaseId },
    CopyTest,
}

impl Request {
    /// The command word, for the log.
    pub fn command(&self) -> &'static str {
        match self {
            Request::PutWal(_) => "put-wal",
            Request::PutBase { .. } => "put-base",
            Request::FinishBase { .. } => "finish-base",
            Request::CopyTest => "copy-test",
        }
    }

    /// What the request names, for the log and the messages.
    pub fn subject(&self) -> Option<String> {
        match self {
            Request::PutWal(wal) => Some(wal.name.clone()),
            Request::PutBase { id, file } => Some(format!("{} {}", id.as_str(), file.name())),
            Request::FinishBase { id } => Some(id.as_str().to_owned()),
            Request::CopyTest => None,
        }
    }
}

/// Parses `SSH_ORIGINAL_COMMAND` (`None`: the client asked for a shell).
pub fn parse(original: Option<&str>) -> Result<Request, ReceiveError> {
    let Some(text) = original else {
        return Err(ReceiveError::NotAllowed {
            what: "an interactive shell".into(),
        });
    };
    if text.len() > MAX_COMMAND || text.chars().any(|c| c.is_control() && c != '\t') {
        return Err(ReceiveError::NotAllowed {
            what: format!("{:?}", sanitize(text, 60)),
        });
    }
    let words: Vec<&str> = text.split_ascii_whitespace().collect();
    match words.as_slice() {
        ["put-wal", name] => Ok(Request::PutWal(WalName::parse(name)?)),
        ["put-base", id, file] => Ok(Request::PutBase {
            id: BaseId::parse(id)?,
            file: BaseFile::parse(file)?,
        }),
        ["finish-base", id] => Ok(Request::FinishBase {
            id: BaseId::parse(id)?,
        }),
        ["copy-test"] => Ok(Request::CopyTest),
        _ => Err(ReceiveError::NotAllowed {
            what: describe_other(text, &words),
        }),
    }
}

/// Names a refused command the way the engineer will recognise it.
fn describe_other(text: &str, words: &[&str]) -> String {
    let program = words
        .first()
        .map(|w| w.rsplit('/').next().unwrap_or(w))
        .unwrap_or("");
    let known = match program {
        "" => Some("an empty command"),
        "scp" => Some("scp"),
        "sftp-server" | "internal-sftp" | "sftp" => Some("sftp"),
        "rsync" => Some("rsync"),
        "put-wal" | "put-base" | "finish-base" | "copy-test" => Some("a malformed command"),
        _ => None,
    };
    match known {
        Some(kind) => format!("{kind} ({:?})", sanitize(text, 60)),
        None => format!("{:?}", sanitize(text, 60)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::receive::error::RefusalCode;

    fn code(text: Option<&str>) -> RefusalCode {
        parse(text).unwrap_err().code()
    }

    #[test]
    fn accepts_the_four_commands() {
        let wal = parse(Some("put-wal 000000010000000000000007.gz")).unwrap();
        assert_eq!(
            wal,
            Request::PutWal(WalName {
                name: "000000010000000000000007.gz".into(),
                kind: WalKind::Segment {
                    name: RawSegmentName::parse("000000010000000000000007").unwrap(),
                    partial: false
                },
                compressed: true,
            })
        );
        for name in [
            "000000010000000000000007",
            "000000010000000000000007.partial.gz",
            "00000002.history.gz",
            "00000002.history",
            "000000010000000000000007.00000028.backup.gz",
        ] {
            assert!(parse(Some(&format!("put-wal {name}"))).is_ok(), "{name}");
        }
        assert_eq!(
            parse(Some("put-base 20261125T130000Z base.tar.gz")).unwrap(),
            Request::PutBase {
                id: BaseId("20261125T130000Z".into()),
                file: BaseFile::BaseTar
            }
        );
        assert!(parse(Some("finish-base 20261125T130000Z")).is_ok());
        assert_eq!(parse(Some("copy-test")).unwrap(), Request::CopyTest);
        // Extra spaces are harmless; the words are what count.
        assert!(parse(Some("  put-wal   00000002.history  ")).is_ok());
    }

    #[test]
    fn refuses_shells_and_other_programs_by_name() {
        assert_eq!(code(None), RefusalCode::NotAllowed);
        let message = parse(None).unwrap_err().to_string();
        assert!(message.contains("interactive shell"), "{message}");
        for (command, says) in [
            ("rm -rf wal", "\"rm -rf wal\""),
            ("cat > wal/000000010000000000000007.gz", "cat >"),
            ("scp -t wal/", "scp ("),
            ("/usr/lib/openssh/sftp-server", "sftp ("),
            ("internal-sftp", "sftp ("),
            ("rsync --server -e.LsfxC . wal/", "rsync ("),
            ("ls wal", "\"ls wal\""),
            ("sh -c 'put-wal x'", "sh -c"),
            ("put-wal", "a malformed command"),
            ("put-wal a b", "a malformed command"),
            ("", "an empty command"),
            (
                "put-wal 000000010000000000000007.gz; rm -rf wal",
                "a malformed command",
            ),
        ] {
            let error = parse(Some(command)).unwrap_err();
            assert_eq!(error.code(), RefusalCode::NotAllowed, "{command}");
            let message = error.to_string();
            assert!(message.contains(says), "{command}: {message}");
            assert!(message.contains("put-wal NAME"), "{message}");
        }
        assert_eq!(
            code(Some("put-wal 0000000100000000000000\n07")),
            RefusalCode::NotAllowed
        );
        assert_eq!(code(Some(&"x".repeat(300))), RefusalCode::NotAllowed);
    }

    #[test]
    fn names_are_strict() {
        for name in [
            "../other/wal/000000010000000000000007.gz",
            "wal/000000010000000000000007.gz",
            "00000001000000000000000a.gz",
            "000000010000000000000007.gz.part",
            "000000010000000000000007.gz.gz",
            "000000000000000000000007",
            "00000001.history",
            "00000000.history",
            "0000000100000000000000071",
            "000000010000000000000007.28.backup",
            "test.txt",
            ".",
            "..",
        ] {
            let error = parse(Some(&format!("put-wal {name}"))).unwrap_err();
            assert_eq!(error.code(), RefusalCode::BadName, "{name}");
        }
        for (id, file) in [
            ("../x", "base.tar.gz"),
            ("a.b", "base.tar.gz"),
            ("x", "base.tar"),
            ("x", "../base/base.tar.gz"),
            ("x", "16385.tar.gz"),
            (&"a".repeat(65), "base.tar.gz"),
        ] {
            let error = parse(Some(&format!("put-base {id} {file}"))).unwrap_err();
            assert_eq!(error.code(), RefusalCode::BadName, "{id} {file}");
        }
    }

    #[test]
    fn siblings_name_the_other_spelling() {
        let gz = WalName::parse("000000010000000000000007.gz").unwrap();
        assert_eq!(gz.sibling(), "000000010000000000000007");
        let plain = WalName::parse("00000002.history").unwrap();
        assert_eq!(plain.sibling(), "00000002.history.gz");
    }

    proptest::proptest! {
        #[test]
        fn parse_never_panics(text in "\\PC{0,120}") {
            let _ = parse(Some(&text));
        }
    }
}
