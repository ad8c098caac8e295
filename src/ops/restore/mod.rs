//! The restore engine: a client's base backup and WAL archive brought back
//! as a running PostgreSQL in a data directory, as explicit steps.
//!
//! Each step has a preflight (refuse before touching anything), an action,
//! a verification, and a journal entry (`journal`). Destructive steps ask
//! the `Driver` first; `dry_run` prints every command and file change and
//! changes nothing. The CLI and the TUI wizard are two drivers of the same
//! engine (`steps::run`). Nothing here writes under the backup root.
//!
//! - `request`: what the engineer asks for, with the defaults both faces use;
//! - `steps`: the runner, the nine steps, and what an interrupted restore's
//!   journal says was finished; `service` controls the local instance;
//!   `proposed_settings` (re-exported here): the settings this host needs,
//!   worked out before a restore, as its preflight would judge them;
//! - `unpack`: safe, two-core extraction of the tarballs;
//! - `recovery_conf`: recovery.conf (10, 11) or recovery.signal (12+);
//! - `host_settings`: the base backup's settings that cannot work on this host, with their fix;
//! - `replay`: replay followed in the server's log, the verdict;
//! - `journal`: the record next to the data directory, and the rollback;
//! - `error`: why a restore stopped, typed.
//!
//! Running as the PostgreSQL user, the log classifier and SSH live in [`crate::pg`].

pub mod error;
mod files;
pub mod host_settings;
pub mod journal;
pub mod recovery_conf;
pub mod replay;
pub mod request;
mod service;
pub mod steps;
pub mod unpack;

pub use steps::{SettingsProposal, proposed_settings};
