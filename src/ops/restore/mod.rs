//! The restore engine: a client's base backup and WAL archive brought back
//! as a running PostgreSQL in a data directory, as explicit steps.
//!
//! Each step has a preflight (refuse before touching anything), an action,
//! a verification, and a journal entry (`journal`). Destructive steps ask
//! the `Driver` first; `dry_run` prints every command and file change and
//! changes nothing. The CLI and the TUI wizard are two drivers of the same
//! engine (`steps::run`). Nothing here writes under the backup root.
//!
//! - `unpack`: safe, two-core extraction of the tarballs;
//! - `recovery_conf`: recovery.conf (10, 11) or recovery.signal (12+);
//! - `journal`: the record next to the data directory.
//!
//! Running as the PostgreSQL user, the log classifier and SSH live in [`crate::pg`].

pub mod journal;
pub mod recovery_conf;
pub mod steps;
pub mod unpack;

use std::path::PathBuf;

use thiserror::Error;

#[derive(Debug, Error)]
pub enum RestoreError {
    #[error("preflight refused the restore: {0}")]
    Preflight(String),
    #[error("{step}: {message}")]
    Step { step: &'static str, message: String },
    #[error("cancelled at {0}: nothing further was changed")]
    Cancelled(&'static str),
    #[error("journal {path}: {source}")]
    Journal {
        path: PathBuf,
        source: std::io::Error,
    },
}
