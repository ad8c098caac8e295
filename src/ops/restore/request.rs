//! What the engineer asks a restore for, and its defaults: one place, so
//! the CLI's `restore`, the dashboard's wizard and the drill build the same
//! request from the same config.

use std::path::PathBuf;
use std::time::Duration;

use crate::config::{LocalService, TargetServer};

/// What the engineer asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestoreRequest {
    pub data_dir: PathBuf,
    pub target_time: Option<String>,
    pub pg_bin: Option<PathBuf>,
    pub os_user: String,
    /// `--set KEY=VALUE`: settings for the restored instance.
    pub settings: Vec<(String, String)>,
    pub dry_run: bool,
    /// Delete the old contents instead of moving them aside (typed confirmation).
    pub purge: bool,
    /// How long to follow the log before giving up on replay.
    pub replay_timeout: Duration,
    /// The client's old server, from `[clients.NAME.target]`: stopped over SSH first.
    pub target: Option<TargetServer>,
    /// How the local instance is started and stopped; unset parts are detected.
    pub local: LocalService,
    /// Preflight checks the engineer chose to go past (`--force archive-readable`):
    /// journaled, and the log's diagnosis still names what then goes wrong.
    pub forced: Vec<String>,
    /// Go on from where an interrupted restore's journal stops (`--resume`).
    pub resume: bool,
}

/// The preflight checks `--force` may go past.
pub const FORCEABLE_CHECKS: &[&str] = &["archive-readable"];
