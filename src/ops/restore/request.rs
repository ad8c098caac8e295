//! What the engineer asks a restore for, and its defaults: one place, so
//! the CLI's `restore`, the dashboard's wizard and the drill build the same
//! request from the same config.

use std::path::PathBuf;
use std::time::Duration;

use crate::config::{Config, LocalService, TargetServer};

/// How long the log is followed for replay to finish, unless the engineer
/// says otherwise (`--replay-timeout`): the same for the CLI, the wizard and drills.
pub const DEFAULT_REPLAY_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// The OS user PostgreSQL runs as, unless the engineer says otherwise.
pub const DEFAULT_OS_USER: &str = "postgres";

/// What the engineer asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestoreRequest {
    pub data_dir: PathBuf,
    pub target_time: Option<String>,
    /// Follow this timeline instead of the production line (`--timeline N`).
    pub timeline: Option<u32>,
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
    /// The walwarden binary the restored server runs as its restore_command
    /// (`wal-get`): this one, by its absolute path. The preflight checks the
    /// PostgreSQL user can run it.
    pub helper_exe: PathBuf,
}

/// The preflight checks `--force` may go past: the archive readable by the
/// PostgreSQL user, a line of WAL that stops short of its end (a gap or a
/// segment known to be bad), settings of the base backup that do not fit
/// this host, and `--set` values that turn off the restore's safety.
pub const FORCEABLE_CHECKS: &[&str] = &[
    "archive-readable",
    "wal-line",
    "host-settings",
    "unsafe-settings",
];

/// Settings a restore writes itself for safety or correctness: a `--set` of
/// one of them needs `--force unsafe-settings`. Archiving would write the
/// restored server's new timeline into the live archive; a restore_command
/// or recovery target of the engineer's would replace the line walwarden
/// judged; a primary_conninfo makes the server a standby of another.
pub const GUARDED_SETTINGS: &[&str] = &[
    "archive_mode",
    "archive_command",
    "archive_library",
    "restore_command",
    "recovery_target",
    "recovery_target_lsn",
    "recovery_target_name",
    "recovery_target_time",
    "recovery_target_xid",
    "recovery_target_timeline",
    "recovery_target_action",
    "primary_conninfo",
    "primary_slot_name",
    "recovery_end_command",
    "archive_cleanup_command",
];

/// Why the restore keeps a setting of `GUARDED_SETTINGS` for itself; `None`
/// for any other key. Both faces say it when refusing one.
pub fn guarded_why(key: &str) -> Option<&'static str> {
    if !GUARDED_SETTINGS.contains(&key) {
        return None;
    }
    Some(match key {
        "archive_mode" | "archive_command" | "archive_library" => {
            "archiving stays off so the restored server never writes its new timeline into the live archive; turn it on after the restore with the step the report names"
        }
        "restore_command" => "walwarden's restore_command reads the line it judged",
        "primary_conninfo" | "primary_slot_name" => {
            "it would make the restored server a standby of another server"
        }
        "recovery_end_command" | "archive_cleanup_command" => {
            "a command of the source server's could act on the archive"
        }
        _ => {
            "the recovery target and timeline come from --target-time and --timeline, checked against the archive"
        }
    })
}

impl RestoreRequest {
    /// A restore of `client` into `data_dir` with the defaults both faces
    /// start from: the client's local service and target server from the
    /// config, the PostgreSQL user `postgres`, replay followed for
    /// `DEFAULT_REPLAY_TIMEOUT`, for real, moving old contents aside.
    pub fn new(config: &Config, client: &str, data_dir: PathBuf) -> RestoreRequest {
        RestoreRequest {
            data_dir,
            target_time: None,
            timeline: None,
            pg_bin: None,
            os_user: DEFAULT_OS_USER.to_owned(),
            settings: Vec::new(),
            dry_run: false,
            purge: false,
            replay_timeout: DEFAULT_REPLAY_TIMEOUT,
            target: config.target_for(client).cloned(),
            local: config.policy_for(client).local.clone(),
            forced: Vec::new(),
            resume: false,
            helper_exe: this_binary(),
        }
    }
}

/// The walwarden binary running now, by its absolute path (what the
/// restored server runs for `wal-get`); `/usr/bin/walwarden`, the package's,
/// when the running one cannot be named.
pub fn this_binary() -> PathBuf {
    std::env::current_exe()
        .and_then(|p| p.canonicalize())
        .unwrap_or_else(|_| PathBuf::from("/usr/bin/walwarden"))
}
