//! `walwarden wal-get %f %p`: the restore_command a restore and a drill write
//! into the restored server's recovery configuration, instead of the
//! tutorial's `gunzip -c` per segment.
//!
//! It answers PostgreSQL's requests from a plan the restore writes beside the
//! data directory (`plan`: the archive folder, the base backup's system
//! identifier, the segment size and the restore's line of timelines). Each
//! request (`serve`) hands over the file from a spool of segments already
//! decompressed and verified (`spool`) or fetches it directly (`fetch`); the
//! first one starts a detached prefetcher (`prefetch`) that keeps the next
//! segments of the line ready on the other core(s), within a bounded spool,
//! and stops, leaving nothing behind, when recovery ends, the server dies or
//! requests stop coming. Every file is verified before PostgreSQL sees it: a
//! whole gzip stream of exactly one segment, whose first page header names
//! this segment (its timeline may be an ancestor's) and this database
//! system. A refusal is one stderr line the log classifier names
//! ([`crate::pg::pglog::walget_line`]); a miss past the archive's end is silent.
//! Each request is recorded in a request log (`progress`) from which the
//! replay's progress and its rate are read; once recovery is over the
//! restore calls `finish` for the totals and to remove what is left.
//!
//! Exit statuses: 0 handed over, 1 for everything else. Never above 125 and
//! never a signal of its own: PostgreSQL treats those as FATAL.

pub mod fetch;
pub mod finish;
pub mod plan;
pub mod prefetch;
pub mod progress;
pub mod serve;
pub mod spool;

use std::path::PathBuf;

use thiserror::Error;

pub use plan::{PlanOptions, PlanParts, WalGetPlan};

#[derive(Debug, Error)]
pub enum WalGetError {
    #[error("cannot read the wal-get plan {path}: {source}")]
    PlanRead {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a usable wal-get plan: {reason}")]
    PlanInvalid { path: PathBuf, reason: String },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{0:?} is not valid UTF-8 or holds a control character: restore_command cannot name it"
    )]
    UnquotablePath(PathBuf),
    #[error(
        "no system identifier is known for the base backup: wal-get cannot tell a foreign segment (read base.tar.gz fully first)"
    )]
    NoSystemIdentifier,
    #[error("the restore line is empty: no timeline to follow")]
    EmptyLine,
    /// A removal the store's guard refused: it would reach into the archive.
    #[error(transparent)]
    Archive(#[from] crate::store::guard::GuardError),
    #[error("cannot start the prefetcher: {0}")]
    Spawn(std::io::Error),
}
