//! `put-wal NAME`: one WAL file from stdin into `wal/NAME`.
//!
//! When NAME (or its other spelling, with or without `.gz`) is already
//! archived, the upload is only read and compared, never written: identical
//! content (compared inflated, so `gzip -9` and `gzip -1` of one segment are
//! the same) is accepted with exit 0, as PostgreSQL's retry after a lost
//! exit status needs; other content is refused and the stored file kept.
//! Otherwise the upload streams into a part file while it is verified, and
//! lands only when it is whole and good. A segment from a client whose
//! system identifier is not known yet (no base backup, no earlier segment)
//! teaches it, under the client's lock, so two first segments of two
//! clusters cannot both get in.

use std::io::Read;
use std::os::fd::AsFd;

use crate::archive::base_backup::BackupLabel;
use crate::archive::wal::parse_timeline_history;
use crate::ops::receive::error::ReceiveError;
use crate::ops::receive::grammar::{WalKind, WalName};
use crate::ops::receive::intake::{self, BACKUP_CAP, Expect, HISTORY_CAP, Received, SpaceRule};
use crate::ops::receive::land::{self, Landed};
use crate::ops::receive::quota::{self, UsageBook};
use crate::ops::receive::state::{ClientFolder, ClusterFacts};
use crate::ops::receive::{Done, Outcome, Receiver};

pub fn put_wal(
    folder: &ClientFolder,
    receiver: &Receiver,
    wal: &WalName,
    stdin: &mut dyn Read,
) -> Result<Done, ReceiveError> {
    let dir = folder.wal()?;
    let facts = folder.facts();
    let expect = match wal.kind {
        WalKind::Segment { name, .. } => Expect::Segment { name },
        WalKind::TimelineHistory { .. } => Expect::Small { cap: HISTORY_CAP },
        WalKind::BackupHistory { .. } => Expect::Small { cap: BACKUP_CAP },
    };
    for stored in [wal.name.clone(), wal.sibling()] {
        if let Some(file) = land::open_existing(dir.as_fd(), &stored)? {
            let received = intake::receive(
                stdin,
                None,
                wal.compressed,
                expect,
                facts,
                SpaceRule::default(),
                true,
            )?;
            judge_small(wal, &received, facts)?;
            return compare(file, &stored, &received);
        }
    }

    let mut part = land::claim_part(dir.as_fd(), &wal.name)?;
    let space = space_rule(folder, receiver)?;
    let verified = intake::receive(
        stdin,
        Some(part.file()),
        wal.compressed,
        expect,
        facts,
        space,
        false,
    )
    .and_then(|received| judge_small(wal, &received, facts).map(|()| received))
    .and_then(|received| {
        let Some(header) = received
            .header
            .filter(|_| facts.system_identifier.is_none())
        else {
            return Ok(received);
        };
        // The client's first segment: its cluster becomes the client's,
        // unless another upload taught another one a moment ago.
        let learnt = ClusterFacts {
            system_identifier: Some(header.system_identifier),
            segment_size: Some(header.seg_size),
        };
        let held = folder.learn(learnt, &format!("wal/{}", wal.name))?;
        match held.system_identifier {
            Some(expected) if expected != header.system_identifier => Err(ReceiveError::Foreign {
                found: header.system_identifier,
                expected,
            }),
            _ => Ok(received),
        }
    });
    let received = match verified {
        Ok(received) => received,
        Err(error) => {
            land::discard(dir.as_fd(), part);
            return Err(error);
        }
    };
    let landed = if receiver.quota.is_some() {
        UsageBook::new(&folder.path)
            .landing(received.raw_bytes, || {
                land::land(dir.as_fd(), &mut part, &wal.name)
            })
            .map_err(ReceiveError::io("updating .walwarden/usage.json"))
            .and_then(|landed| landed)
    } else {
        land::land(dir.as_fd(), &mut part, &wal.name)
    };
    let landed = match landed {
        Ok(landed) => landed,
        Err(error) => {
            land::discard(dir.as_fd(), part);
            return Err(error);
        }
    };
    match landed {
        Landed::Placed => Ok(Done::quiet(Outcome::Accepted, received.raw_bytes)),
        Landed::NameTaken => {
            // Another upload of this name landed while this one ran.
            let result = land::reopen(dir.as_fd(), &part.name).and_then(|mine| {
                let cap = content_cap(&received);
                let (sha, len) = land::content_digest(mine, wal.compressed, cap)
                    .map_err(ReceiveError::io(format!("reading {}", part.name)))?;
                let stored = land::reopen(dir.as_fd(), &wal.name)?;
                let mine = Received {
                    content_bytes: len,
                    sha256: Some(sha),
                    ..received.clone()
                };
                compare(stored, &wal.name, &mine)
            });
            land::discard(dir.as_fd(), part);
            result
        }
    }
}

/// The quota (with the client's current usage) and the disk's reserve.
pub fn space_rule(folder: &ClientFolder, receiver: &Receiver) -> Result<SpaceRule, ReceiveError> {
    let quota = match receiver.quota {
        None => None,
        Some(limit) => {
            let used = UsageBook::new(&folder.path)
                .used()
                .map_err(ReceiveError::io(
                    "summing the client folder's size for its quota",
                ))?;
            Some((limit, used))
        }
    };
    Ok(SpaceRule {
        quota,
        reserve: quota::reserve_at(&folder.path),
    })
}

/// The most content a stored twin of this upload is read for.
fn content_cap(received: &Received) -> u64 {
    received.content_bytes.max(1)
}

/// The upload (already read, with its hash) against a stored file.
pub fn compare(
    stored: std::fs::File,
    stored_name: &str,
    received: &Received,
) -> Result<Done, ReceiveError> {
    let (stored_sha, stored_bytes) =
        land::content_digest(stored, stored_name.ends_with(".gz"), content_cap(received)).map_err(
            ReceiveError::io(format!("reading the stored {stored_name}")),
        )?;
    let upload_sha = received.sha256.unwrap_or_default();
    if stored_sha == upload_sha && stored_bytes == received.content_bytes {
        return Ok(Done::quiet(Outcome::Duplicate, received.raw_bytes));
    }
    Err(ReceiveError::Overwrite {
        stored: stored_name.to_owned(),
        stored_bytes,
        stored_sha256: land::hex(&stored_sha),
        upload_bytes: received.content_bytes,
        upload_sha256: land::hex(&upload_sha),
    })
}

/// History and backup files must parse; segments were judged on the way.
fn judge_small(
    wal: &WalName,
    received: &Received,
    facts: ClusterFacts,
) -> Result<(), ReceiveError> {
    let text = || {
        std::str::from_utf8(&received.kept)
            .map_err(|_| ReceiveError::corrupt("not text: a history or backup file is text"))
    };
    match wal.kind {
        WalKind::Segment { .. } => Ok(()),
        WalKind::TimelineHistory { timeline } => {
            let entries = parse_timeline_history(text()?)
                .map_err(|e| ReceiveError::corrupt(e.to_string()))?;
            if entries.is_empty() {
                return Err(ReceiveError::corrupt(
                    "no `parent switch-point reason` line: not a timeline history file",
                ));
            }
            if let Some(entry) = entries.iter().find(|e| e.parent.0 >= timeline) {
                return Err(ReceiveError::corrupt(format!(
                    "names timeline {} as an ancestor of timeline {timeline}",
                    entry.parent.0
                )));
            }
            Ok(())
        }
        WalKind::BackupHistory { name, offset } => {
            let label = BackupLabel::parse(text()?).map_err(ReceiveError::corrupt)?;
            if label.stop_lsn.is_none() {
                return Err(ReceiveError::corrupt(
                    "no STOP WAL LOCATION line: not a finished backup's history file",
                ));
            }
            if label.start_segment != name.to_string() {
                return Err(ReceiveError::corrupt(format!(
                    "its START WAL LOCATION is in segment {}, not in the one its name gives",
                    label.start_segment
                )));
            }
            if let Some(seg_size) = facts.segment_size
                && label.start_lsn.0 % seg_size as u64 != offset as u64
            {
                return Err(ReceiveError::corrupt(format!(
                    "its START WAL LOCATION {} is not at offset {offset:08X} its name gives",
                    label.start_lsn
                )));
            }
            Ok(())
        }
    }
}
