//! The corpus of real archives: one per [`Shape`], built by real PostgreSQL with
//! `tests/corpus/build.sh SHAPE OUTDIR` (read it for what each shape is), plus
//! restores of them with plain PostgreSQL ([`restore`]).
//!
//! * [`corpus`] builds a shape at most once per cache key, even when nextest runs
//!   many test processes at once: the cache lives in
//!   `$CARGO_TARGET_TMPDIR/walwarden-corpus/<script>/<shape>-<version>/`
//!   (`<script>` = hash of the builder script, `<version>` = hash of the
//!   shape's `postgres --version`), is built into a temp sibling and renamed
//!   into place under an exclusive `flock` on `<shape>-<version>.lock`, so
//!   concurrent callers wait for one build. Folders of other builder scripts
//!   untouched for an hour are removed. If the PostgreSQL user cannot enter
//!   `$CARGO_TARGET_TMPDIR` (a checkout under /root), the cache moves to
//!   `/tmp/walwarden-corpus-<hash of that path>`.
//! * The cached archive is read-only for everyone but root: restore_command
//!   runs as the PostgreSQL user and can read it, a restored server cannot
//!   archive into it. Tests must never write into it (copy it first).
//! * `facts.json` (→ [`Facts`]) holds what the builder knew: rows at the end of
//!   each timeline, the line a correct restore follows, its expected rows.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::fcntl::{Flock, FlockArg};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::pg::{PG_SUPERUSER, pg_command, pg_tempdir, pick_port, require_pg_bin, run_as_pg_user};

/// The builder script.
pub const BUILD_SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/corpus/build.sh");

/// The archive shapes of issue 10 (see `tests/corpus/build.sh`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Shape {
    /// One timeline (control case).
    Straight,
    /// A streaming standby promoted after its primary stopped: TL2 starts
    /// mid-segment, `...partial` of TL1's last segment.
    Failover,
    /// A point-in-time restore to T became production on TL2; B (after T) cut off.
    Pitr,
    /// `Pitr` without TL2's switch segment.
    PitrMissingSwitch,
    /// A test restore shipped TL2 into the folder; production goes on on TL1.
    TestBranch,
    /// Base of a server made by an earlier PITR: `recovery_target_time` and
    /// `recovery_target_action = 'pause'` in its postgresql.auto.conf.
    InheritedTargets,
    /// Base taken with `pg_basebackup -R` (standby.signal, primary_conninfo).
    StandbyBase,
    /// Base taken from a streaming standby.
    StandbyBaseFromStandby,
    /// postgresql.conf names a socket folder missing here and port 6543.
    ForeignSettings,
    /// New base taken on TL2 after a failover.
    NewBaseOnTl2,
    /// New base on TL2 of a restore promoted with archiving off:
    /// `00000002.history` only in pg_wal.tar.gz.
    NewBaseOnTl2NoHistory,
    /// `Pitr` with 1 MiB segments.
    SmallSegments,
    /// `Failover` made by PostgreSQL 17.
    PromotedPg17,
}

impl Shape {
    pub const ALL: [Shape; 13] = [
        Shape::Straight,
        Shape::Failover,
        Shape::Pitr,
        Shape::PitrMissingSwitch,
        Shape::TestBranch,
        Shape::InheritedTargets,
        Shape::StandbyBase,
        Shape::StandbyBaseFromStandby,
        Shape::ForeignSettings,
        Shape::NewBaseOnTl2,
        Shape::NewBaseOnTl2NoHistory,
        Shape::SmallSegments,
        Shape::PromotedPg17,
    ];

    /// The builder's name of the shape.
    pub fn name(self) -> &'static str {
        match self {
            Shape::Straight => "straight",
            Shape::Failover => "failover",
            Shape::Pitr => "pitr",
            Shape::PitrMissingSwitch => "pitr_missing_switch",
            Shape::TestBranch => "test_branch",
            Shape::InheritedTargets => "inherited_targets",
            Shape::StandbyBase => "standby_base",
            Shape::StandbyBaseFromStandby => "standby_base_from_standby",
            Shape::ForeignSettings => "foreign_settings",
            Shape::NewBaseOnTl2 => "new_base_on_tl2",
            Shape::NewBaseOnTl2NoHistory => "new_base_on_tl2_no_history",
            Shape::SmallSegments => "small_segments",
            Shape::PromotedPg17 => "promoted_pg17",
        }
    }

    /// The PostgreSQL major version that makes (and restores) it.
    pub fn major(self) -> u32 {
        match self {
            Shape::PromotedPg17 => 17,
            _ => 15,
        }
    }
}

/// `facts.json`, written by the builder.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Facts {
    pub shape: String,
    pub description: String,
    pub major: u32,
    /// `postgres --version` of the builder's binaries.
    pub server_version: String,
    pub client: String,
    /// Bytes per WAL segment.
    pub segment_size: u64,
    /// pg_controldata's "Database system identifier" (= xlp_sysid).
    pub system_identifier: u64,
    pub base: BaseFacts,
    /// The timeline a correct restore follows to the end ("the production line").
    pub production_timeline: u32,
    /// Highest archived segment of the production timeline.
    pub production_last_segment: String,
    /// False when PostgreSQL cannot reach the production line's end from this
    /// archive (then `expected_rows` is the best a correct restore gets).
    pub production_end_reachable: bool,
    /// Every timeline in the archive, ascending.
    pub timelines: Vec<TimelineFacts>,
    /// Rows by batch a correct restore brings back.
    pub expected_rows: BTreeMap<String, u64>,
    /// Commit time of the last transaction a correct restore replays
    /// (`YYYY-MM-DD HH:MM:SS.ffffff+00`, the form of PostgreSQL's log).
    pub expected_last_commit: String,
    /// postgresql.auto.conf lines a correct restore needs besides
    /// `recovery_target_timeline = 'production_timeline'` and the reset of
    /// inherited recovery/standby settings (e.g. a stop LSN).
    pub correct_restore_settings: Vec<String>,
    pub oddity: Oddity,
}

/// From the base backup's `backup_label`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BaseFacts {
    pub start_timeline: u32,
    pub start_lsn: String,
    pub start_segment: String,
    /// "primary" or "standby".
    pub backup_from: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimelineFacts {
    pub tli: u32,
    /// From the last line of the timeline's `.history` (wal folder, else
    /// pg_wal.tar.gz); None for timeline 1 or when no history file exists.
    pub parent: Option<u32>,
    pub switch_lsn: Option<String>,
    pub switch_reason: Option<String>,
    /// Lowest/highest archived full segment of this timeline.
    pub first_segment: Option<String>,
    /// xlp_tli of `first_segment`'s first page header (an ancestor's when the
    /// timeline began inside that segment).
    pub first_segment_page_tli: Option<u32>,
    pub last_segment: Option<String>,
    /// Commit time of the timeline's last transaction.
    pub last_commit: String,
    /// `pg_current_wal_insert_lsn()` right after that commit: a restore that
    /// replayed the whole timeline has `pg_last_wal_replay_lsn() >=` this.
    pub end_lsn: String,
    /// Rows by batch on the timeline's server when it stopped.
    pub rows: BTreeMap<String, u64>,
}

/// What makes the shape special; empty for the plain ones.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Oddity {
    /// The child timeline's switch segment that was removed from wal/.
    pub missing_switch_segment: Option<String>,
    /// A stray branch beside the production line.
    pub branch_timeline: Option<u32>,
    /// restore_command / recovery_target* / primary_conninfo / primary_slot_name
    /// lines in the base's postgresql.auto.conf.
    pub inherited_settings: Vec<String>,
    /// base.tar.gz holds standby.signal.
    pub standby_signal: bool,
    /// unix_socket_directories / port named by the base's postgresql.conf.
    pub foreign_socket_dir: Option<String>,
    pub foreign_port: Option<u16>,
    /// A history file absent from wal/ but present in pg_wal.tar.gz.
    pub history_only_in_pg_wal_tar: Option<String>,
    /// `.partial` segments in wal/ (names without `.gz`).
    pub partial_segments: Vec<String>,
}

/// One built archive in the cache. Read-only: never write below `root`.
#[derive(Debug, Clone)]
pub struct Archive {
    pub shape: Shape,
    /// The archive root: `root/<client>/{base,wal}`.
    pub root: PathBuf,
    pub client: String,
    pub facts: Facts,
    /// The cache folder (root, facts.json, logs/ of the builder's servers).
    pub dir: PathBuf,
}

impl Archive {
    pub fn client_dir(&self) -> PathBuf {
        self.root.join(&self.client)
    }
    pub fn base_dir(&self) -> PathBuf {
        self.client_dir().join("base")
    }
    pub fn wal_dir(&self) -> PathBuf {
        self.client_dir().join("wal")
    }
    /// Sorted file names in wal/.
    pub fn wal_files(&self) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(self.wal_dir())
            .unwrap_or_else(|e| panic!("read_dir {}: {e}", self.wal_dir().display()))
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }
    /// The facts of timeline `tli` (panics when the archive has none).
    pub fn timeline(&self, tli: u32) -> &TimelineFacts {
        self.facts
            .timelines
            .iter()
            .find(|t| t.tli == tli)
            .unwrap_or_else(|| panic!("{:?} has no timeline {tli}", self.shape))
    }
    /// The production line's facts.
    pub fn production(&self) -> &TimelineFacts {
        self.timeline(self.facts.production_timeline)
    }
    /// Copies the client folder into `dest/<client>` (for tests that change
    /// an archive); `dest` must exist.
    pub fn copy_client_to(&self, dest: &Path) -> PathBuf {
        let out = Command::new("cp")
            .arg("-a")
            .arg(self.client_dir())
            .arg(dest)
            .stdin(Stdio::null())
            .output()
            .expect("run cp");
        assert!(
            out.status.success(),
            "cp -a: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        dest.join(&self.client)
    }
}

/// Where the cache lives: `$CARGO_TARGET_TMPDIR/walwarden-corpus` when the
/// PostgreSQL user can enter it, else a folder in /tmp named after that path.
fn cache_base() -> PathBuf {
    let target_tmp = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let preferred = target_tmp.join("walwarden-corpus");
    fs::create_dir_all(&preferred)
        .unwrap_or_else(|e| panic!("mkdir -p {}: {e}", preferred.display()));
    fs::set_permissions(&preferred, fs::Permissions::from_mode(0o755))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", preferred.display()));
    let enters = run_as_pg_user(
        Command::new("test")
            .arg("-x")
            .arg(&preferred)
            .arg("-a")
            .arg("-r")
            .arg(&preferred),
    )
    .status
    .success();
    if enters {
        return preferred;
    }
    let hash = hex(&Sha256::digest(target_tmp.to_string_lossy().as_bytes())[..6]);
    let fallback = PathBuf::from(format!("/tmp/walwarden-corpus-{hash}"));
    eprintln!(
        "note: the PostgreSQL user cannot enter {}; the corpus cache is {}",
        preferred.display(),
        fallback.display()
    );
    fs::create_dir_all(&fallback).unwrap_or_else(|e| panic!("mkdir {}: {e}", fallback.display()));
    fs::set_permissions(&fallback, fs::Permissions::from_mode(0o755))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", fallback.display()));
    fallback
}

/// Removes the caches of other builder scripts not touched for an hour (a
/// run of the current script never uses them).
fn prune_old_scripts(base: &Path, current: &str) {
    let Ok(entries) = fs::read_dir(base) else {
        return;
    };
    for entry in entries.flatten() {
        let old = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > Duration::from_secs(3600));
        if old && entry.file_name() != current && entry.path().is_dir() {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The archive of `shape`, built on first use (see the module doc). Panics
/// with the builder's log when the build fails, and when PostgreSQL binaries
/// of the shape's major are missing.
pub fn corpus(shape: Shape) -> Archive {
    let major = shape.major();
    let bin = require_pg_bin(major);
    let version = String::from_utf8_lossy(
        &run_as_pg_user(pg_command(&bin, "postgres").arg("--version")).stdout,
    )
    .trim()
    .to_string();
    let script = fs::read(BUILD_SCRIPT).unwrap_or_else(|e| panic!("read {BUILD_SCRIPT}: {e}"));
    let script_key = hex(&Sha256::digest(&script)[..8]);
    let version_key = hex(&Sha256::digest(version.as_bytes())[..4]);

    let base = cache_base();
    let key_dir = base.join(&script_key);
    fs::create_dir_all(&key_dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", key_dir.display()));
    fs::set_permissions(&key_dir, fs::Permissions::from_mode(0o755))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", key_dir.display()));
    prune_old_scripts(&base, &script_key);
    let name = format!("{}-{version_key}", shape.name());
    let dir = key_dir.join(&name);
    let lock_path = key_dir.join(format!("{name}.lock"));
    let lock_file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .unwrap_or_else(|e| panic!("open {}: {e}", lock_path.display()));
    let _lock = Flock::lock(lock_file, FlockArg::LockExclusive)
        .unwrap_or_else(|(_, e)| panic!("flock {}: {e}", lock_path.display()));

    if !dir.join("facts.json").is_file() {
        build(shape, &bin, &dir);
    }
    let facts_path = dir.join("facts.json");
    let text = fs::read_to_string(&facts_path)
        .unwrap_or_else(|e| panic!("read {}: {e}", facts_path.display()));
    let facts: Facts = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{} does not parse: {e}\n{text}", facts_path.display()));
    assert_eq!(facts.shape, shape.name(), "{}", facts_path.display());
    assert_eq!(facts.major, major, "{}", facts_path.display());
    Archive {
        shape,
        root: dir.join("root"),
        client: facts.client.clone(),
        facts,
        dir,
    }
}

/// Runs the builder into a temp sibling of `dir` and renames it into place.
/// The caller holds the shape's lock.
fn build(shape: Shape, bin: &Path, dir: &Path) {
    let key_dir = dir.parent().unwrap();
    let name = dir.file_name().unwrap().to_string_lossy().into_owned();
    // Leftovers of a build that died (its process no longer holds the lock).
    let stale_prefix = format!(".build-{name}-");
    for entry in fs::read_dir(key_dir).unwrap().flatten() {
        if entry
            .file_name()
            .to_string_lossy()
            .starts_with(&stale_prefix)
        {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
    let tmp = key_dir.join(format!("{stale_prefix}{}", std::process::id()));
    let log_path = key_dir.join(format!("{name}.build.log"));
    let log = fs::File::create(&log_path)
        .unwrap_or_else(|e| panic!("create {}: {e}", log_path.display()));
    let started = Instant::now();
    let status = Command::new("bash")
        .arg(BUILD_SCRIPT)
        .arg(shape.name())
        .arg(&tmp)
        .env(format!("WALWARDEN_PG{}_BIN", shape.major()), bin)
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .status()
        .unwrap_or_else(|e| panic!("cannot run bash {BUILD_SCRIPT}: {e}"));
    let log_text = fs::read_to_string(&log_path).unwrap_or_default();
    if !status.success() {
        let _ = fs::remove_dir_all(&tmp);
        panic!(
            "building corpus shape {} failed ({status}) after {:?}; log {}:\n{log_text}",
            shape.name(),
            started.elapsed(),
            log_path.display()
        );
    }
    fs::rename(&tmp, dir)
        .unwrap_or_else(|e| panic!("rename {} -> {}: {e}", tmp.display(), dir.display()));
    eprintln!(
        "built corpus shape {} in {:.1} s ({})",
        shape.name(),
        started.elapsed().as_secs_f64(),
        dir.display()
    );
}

// ---------------------------------------------------------------------------
// Restoring an archive with plain PostgreSQL
// ---------------------------------------------------------------------------

/// How [`restore`] prepares the data directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RestoreMode {
    /// The tutorial: base.tar.gz into DATA, pg_wal.tar.gz into DATA/pg_wal,
    /// `recovery.signal`, `restore_command` appended to postgresql.auto.conf.
    /// Nothing else, except the restore's own port and socket folder on the
    /// command line when `own_socket` (a fleet's socket folder rarely exists
    /// on the backup server).
    Plain { own_socket: bool },
    /// As `Plain { own_socket: true }`, plus: standby.signal removed; inherited
    /// `recovery_target*`, `primary_conninfo`, `primary_slot_name` and
    /// `restore_command` lines dropped from postgresql.auto.conf;
    /// `recovery_target_timeline` set to the production line; archiving off;
    /// the facts' `correct_restore_settings`.
    Correct,
}

/// Where a restored server settled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settled {
    /// Recovery ended; the server accepts writes.
    Promoted,
    /// Paused in recovery (`pg_get_wal_replay_pause_state() = 'paused'`).
    Paused,
    /// In recovery as a standby that cannot reach its primary.
    Standby,
    /// `pg_ctl start` failed; the log's first FATAL line.
    FailedToStart { fatal: String },
}

/// A restored data directory and, unless it failed to start, its running
/// server (stopped with `pg_ctl stop -m immediate` on drop).
pub struct Restored {
    pub tmp: tempfile::TempDir,
    pub bin: PathBuf,
    pub data_dir: PathBuf,
    pub socket_dir: PathBuf,
    pub port: u16,
    pub log_file: PathBuf,
    pub settled: Settled,
}

impl std::fmt::Debug for Restored {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Restored")
            .field("data_dir", &self.data_dir)
            .field("settled", &self.settled)
            .finish()
    }
}

const SETTLE_TIMEOUT: Duration = Duration::from_secs(90);

/// Restores `archive` into a new temp dir as the PostgreSQL user, starts it
/// (`pg_ctl -w`) and waits (bounded, by polling) until it settles: promoted,
/// paused, a standby that failed to reach its primary, or failed to start.
pub fn restore(archive: &Archive, mode: RestoreMode) -> Restored {
    let bin = require_pg_bin(archive.shape.major());
    let tmp = pg_tempdir("walwarden-corpus-restore-");
    let data_dir = tmp.path().join("data");
    let run = |cmd: &mut Command, what: &str| {
        let out = run_as_pg_user(cmd);
        assert!(
            out.status.success(),
            "{what} failed: {}{}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
    };
    run(
        Command::new("mkdir").arg("-m").arg("700").arg(&data_dir),
        "mkdir DATA",
    );
    let base = archive.base_dir();
    run(
        Command::new("tar")
            .arg("xzf")
            .arg(base.join("base.tar.gz"))
            .arg("-C")
            .arg(&data_dir),
        "tar xzf base.tar.gz",
    );
    run(
        Command::new("tar")
            .arg("xzf")
            .arg(base.join("pg_wal.tar.gz"))
            .arg("-C")
            .arg(data_dir.join("pg_wal")),
        "tar xzf pg_wal.tar.gz",
    );
    let auto_conf = data_dir.join("postgresql.auto.conf");
    let mut conf = fs::read_to_string(&auto_conf)
        .unwrap_or_else(|e| panic!("read {}: {e}", auto_conf.display()));
    if mode == RestoreMode::Correct {
        let standby_signal = data_dir.join("standby.signal");
        if standby_signal.exists() {
            fs::remove_file(&standby_signal).unwrap();
        }
        conf = conf
            .lines()
            .filter(|line| {
                let key = line.trim_start();
                ![
                    "recovery_target",
                    "primary_conninfo",
                    "primary_slot_name",
                    "restore_command",
                ]
                .iter()
                .any(|k| key.starts_with(k))
            })
            .map(|l| format!("{l}\n"))
            .collect();
    }
    let wal = archive.wal_dir();
    conf.push_str(&format!(
        "restore_command = 'gunzip -c {}/%f.gz > %p'\n",
        wal.display()
    ));
    if mode == RestoreMode::Correct {
        conf.push_str(&format!(
            "recovery_target_timeline = '{}'\narchive_mode = 'off'\n",
            archive.facts.production_timeline
        ));
        for line in &archive.facts.correct_restore_settings {
            conf.push_str(line);
            conf.push('\n');
        }
    }
    // Written as root, then handed back to the PostgreSQL user (tar made it theirs).
    fs::write(&auto_conf, conf).unwrap_or_else(|e| panic!("write {}: {e}", auto_conf.display()));
    super::pg::give_to_pg_user(&auto_conf, 0o600);
    let signal = data_dir.join("recovery.signal");
    fs::File::create(&signal).unwrap().flush().unwrap();
    super::pg::give_to_pg_user(&signal, 0o600);

    let port = pick_port();
    let socket_dir = tmp.path().to_path_buf();
    let log_file = tmp.path().join("server.log");
    let mut restored = Restored {
        bin: bin.clone(),
        data_dir: data_dir.clone(),
        socket_dir: socket_dir.clone(),
        port,
        log_file: log_file.clone(),
        settled: Settled::Promoted,
        tmp,
    };
    let own_socket = !matches!(mode, RestoreMode::Plain { own_socket: false });
    let mut start = pg_command(&bin, "pg_ctl");
    start
        .arg("-D")
        .arg(&data_dir)
        .arg("-l")
        .arg(&log_file)
        .args(["-w", "-t", "60"]);
    if own_socket {
        start
            .arg("-o")
            .arg(format!("-p {port} -k {}", socket_dir.display()));
    }
    start.arg("start");
    let out = run_as_pg_user(&mut start);
    if !out.status.success() {
        let log = restored.log();
        let fatal = log
            .lines()
            .find_map(|l| l.split_once("FATAL:  ").map(|(_, m)| m.to_string()))
            .unwrap_or_else(|| {
                panic!(
                    "pg_ctl start failed without a FATAL line: {}\n--- log ---\n{log}",
                    String::from_utf8_lossy(&out.stdout)
                )
            });
        restored.settled = Settled::FailedToStart { fatal };
        return restored;
    }
    restored.settled = restored.wait_settled();
    restored
}

/// "X/Y" -> u64.
pub fn parse_lsn(lsn: &str) -> u64 {
    let (hi, lo) = lsn
        .trim()
        .split_once('/')
        .unwrap_or_else(|| panic!("not an LSN: {lsn:?}"));
    (u64::from_str_radix(hi, 16).unwrap() << 32) | u64::from_str_radix(lo, 16).unwrap()
}

impl Restored {
    /// The whole server log.
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log_file).unwrap_or_else(|e| format!("(no log: {e})"))
    }

    /// Runs `sql` with psql; Err(stderr) when it fails.
    pub fn try_psql(&self, sql: &str) -> Result<String, String> {
        let out = run_as_pg_user(
            pg_command(&self.bin, "psql")
                .arg("-h")
                .arg(&self.socket_dir)
                .arg("-p")
                .arg(self.port.to_string())
                .args([
                    "-U",
                    PG_SUPERUSER,
                    "-X",
                    "-q",
                    "-A",
                    "-t",
                    "-v",
                    "ON_ERROR_STOP=1",
                ])
                .args(["-d", "postgres", "-c"])
                .arg(sql),
        );
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout)
                .trim_end_matches('\n')
                .to_string())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    /// Runs `sql`; panics with the server log when it fails.
    pub fn psql(&self, sql: &str) -> String {
        self.try_psql(sql).unwrap_or_else(|e| {
            panic!(
                "psql -c {sql:?} failed: {e}\n--- server log ---\n{}",
                self.log()
            )
        })
    }

    fn wait_settled(&self) -> Settled {
        let deadline = Instant::now() + SETTLE_TIMEOUT;
        loop {
            if let Ok(state) = self.try_psql(
                "select case when not pg_is_in_recovery() then 'promoted' \
                 when pg_get_wal_replay_pause_state() = 'paused' then 'paused' \
                 else 'recovering' end",
            ) {
                match state.as_str() {
                    "promoted" => return Settled::Promoted,
                    "paused" => return Settled::Paused,
                    _ if self
                        .log()
                        .contains("could not connect to the primary server") =>
                    {
                        return Settled::Standby;
                    }
                    _ => {}
                }
            }
            if Instant::now() > deadline {
                panic!(
                    "restored server in {} did not settle within {SETTLE_TIMEOUT:?}\n--- server log ---\n{}",
                    self.data_dir.display(),
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Rows of `fleet` by batch.
    pub fn rows(&self) -> BTreeMap<String, u64> {
        self.psql("select batch || ' ' || count(*) from fleet group by batch order by batch")
            .lines()
            .map(|l| {
                let (batch, n) = l.rsplit_once(' ').unwrap();
                (batch.to_string(), n.parse().unwrap())
            })
            .collect()
    }

    /// The timeline a promoted server writes on.
    pub fn timeline(&self) -> u32 {
        let name = self.psql("select pg_walfile_name(pg_current_wal_lsn())");
        u32::from_str_radix(&name[..8], 16).unwrap()
    }

    /// `pg_last_wal_replay_lsn()` (stays at the last record replayed after promotion).
    pub fn replay_lsn(&self) -> u64 {
        parse_lsn(&self.psql("select pg_last_wal_replay_lsn()"))
    }

    pub fn system_identifier(&self) -> u64 {
        self.psql("select system_identifier from pg_control_system()")
            .parse()
            .unwrap()
    }
}

impl Drop for Restored {
    fn drop(&mut self) {
        if !self.data_dir.join("postmaster.pid").exists() {
            return;
        }
        let out = run_as_pg_user(
            pg_command(&self.bin, "pg_ctl")
                .arg("-D")
                .arg(&self.data_dir)
                .args(["-m", "immediate", "-w", "-t", "60", "stop"]),
        );
        if !out.status.success() {
            eprintln!(
                "warning: pg_ctl stop -m immediate on {} failed: {}",
                self.data_dir.display(),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}
