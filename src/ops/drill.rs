//! Restore drills: the only proof that a backup restores is a restore.
//!
//! A drill runs the restore engine into a scratch directory (never a real
//! data directory, never stopping any server: no SSH target is passed), on
//! a free port with a private unix socket, waits for replay to reach the end
//! of the archive, asks the server a sanity question, stops it, removes the
//! scratch directory, and records the outcome in the drill history
//! (`checks::drills`), in the user's cache directory outside the backup root.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Instant, SystemTime};

use crate::archive::catalog::{self, CatalogError, Client, ScanOptions};
use crate::checks::drills::DrillRecord;
use crate::config::Config;
use crate::ops::restore::request::{DEFAULT_OS_USER, RestoreRequest};
use crate::ops::restore::steps::{self, Driver};
use crate::pg::local::{LocalError, PgUser};

/// Where drills make their scratch folder unless told otherwise.
pub const DEFAULT_SCRATCH: &str = "/var/tmp";

/// What a drill needs beyond the client: the defaults both faces use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DrillRequest {
    /// The folder the scratch data directory is made in (and removed from).
    pub scratch: PathBuf,
    /// The OS user PostgreSQL runs as.
    pub os_user: String,
    /// PostgreSQL binaries; `None`: /usr/lib/postgresql/<major>/bin.
    pub pg_bin: Option<PathBuf>,
}

impl Default for DrillRequest {
    fn default() -> Self {
        DrillRequest {
            scratch: PathBuf::from(DEFAULT_SCRATCH),
            os_user: DEFAULT_OS_USER.to_owned(),
            pg_bin: None,
        }
    }
}

/// A drill as both faces run it, and whether it was recorded.
#[derive(Debug)]
pub struct Drilled {
    pub record: DrillRecord,
    /// The history it could not be appended to, and why.
    pub not_recorded: Option<(PathBuf, std::io::Error)>,
}

/// Re-reads the client, drills it, and appends the record to `history`
/// (`checks::drills::default_history_path()` outside tests).
pub fn drill_client(
    root: &Path,
    name: &str,
    request: &DrillRequest,
    history: Option<&Path>,
    driver: &mut dyn Driver,
) -> Result<Drilled, CatalogError> {
    let client = catalog::scan_client(root, name, &ScanOptions::default())?;
    let record = drill(
        &client,
        &request.scratch,
        &request.os_user,
        request.pg_bin.clone(),
        driver,
    );
    let not_recorded = history.and_then(|path| {
        crate::checks::drills::append_history(path, &record)
            .err()
            .map(|error| (path.to_owned(), error))
    });
    Ok(Drilled {
        record,
        not_recorded,
    })
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_or(55432, |a| a.port())
}

/// Runs one drill of `client` inside `scratch_parent` (a new folder is made and removed there).
pub fn drill(
    client: &Client,
    scratch_parent: &Path,
    os_user: &str,
    pg_bin: Option<PathBuf>,
    driver: &mut dyn Driver,
) -> DrillRecord {
    let started = Instant::now();
    let now = SystemTime::now();
    let mut record = DrillRecord {
        client: client.name.clone(),
        at: crate::display::time_text(now),
        at_unix: now
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        success: false,
        detail: String::new(),
        seconds: 0.0,
        reached: None,
        reached_segment: None,
        last_commit: None,
        phases: Default::default(),
        sizes: crate::checks::rto::RestoreSizes::of(client),
    };
    // A drill proves the whole archive: a gap means replay would stop short of its end.
    if let Some(gap) = client.continuity.gaps.first() {
        record.detail = format!(
            "replay would stop at {} ({} missing from {}): the archive cannot be restored to its end ({})",
            client
                .continuity
                .restorable_through
                .as_deref()
                .unwrap_or("the base backup"),
            gap.count,
            gap.first,
            client.continuity.newest.as_deref().unwrap_or("?")
        );
        return record;
    }
    // Checked before anything is made there: a scratch folder inside the
    // archive (or holding it) is refused, not created and removed again.
    if let Some(root) = client.path.parent() {
        crate::store::guard::protect(root);
    }
    let scratch_parent = match crate::store::guard::check_write(scratch_parent, "--scratch") {
        Ok(_) => match std::path::absolute(scratch_parent) {
            Ok(path) => path,
            Err(e) => {
                record.detail = format!(
                    "--scratch {}: {e}",
                    crate::display::escape_path(scratch_parent)
                );
                return record;
            }
        },
        Err(refused) => {
            record.detail = refused.to_string();
            return record;
        }
    };
    let scratch = match tempfile::Builder::new()
        .prefix("walwarden-drill-")
        .tempdir_in(&scratch_parent)
    {
        Ok(dir) => dir,
        Err(e) => {
            record.detail = format!(
                "cannot make a scratch folder in {}: {e}",
                scratch_parent.display()
            );
            return record;
        }
    };
    // The scratch folder is the PostgreSQL user's: its socket and lock files go there.
    if let Ok(user) = PgUser::lookup(os_user) {
        let _ = std::os::unix::fs::chown(scratch.path(), Some(user.uid), Some(user.gid));
    }
    let data = scratch.path().join("data");
    let port = free_port();
    let socket_dir = scratch.path().to_string_lossy().into_owned();
    // Not from the config: always pg_ctl on the scratch folder, never a
    // configured service, and no target server (a drill never stops any).
    let request = RestoreRequest {
        pg_bin: pg_bin.clone(),
        os_user: os_user.to_owned(),
        settings: vec![
            ("port".into(), port.to_string()),
            ("unix_socket_directories".into(), socket_dir.clone()),
            ("listen_addresses".into(), String::new()),
        ],
        ..RestoreRequest::new(&Config::default(), &client.name, data.clone())
    };
    let result = steps::run(client, &request, driver);
    record.seconds = started.elapsed().as_secs_f64();
    match &result {
        Ok(summary) => {
            record.phases = summary.phases;
            record.reached = summary.last_replayed_transaction.clone();
            record.reached_segment = summary.reached_segment.clone();
            record.last_commit = summary.last_replayed_transaction.clone();
            // Passing means reaching the archive's end along the line, not just answering.
            let end = client.continuity.newest.as_deref();
            // Segment numbers, whatever the timeline (the 16 hex digits after it).
            let number = |name: &str| name.get(8..24).map(str::to_owned);
            let at_end = summary
                .reached_segment
                .as_deref()
                .and_then(number)
                .is_some_and(|reached| end.and_then(number).is_some_and(|end| reached >= end));
            let commit_matches = summary.archive_last_commit.is_none()
                || summary.archive_last_commit == summary.last_replayed_transaction;
            if !at_end || !commit_matches || summary.in_recovery != Some(false) {
                record.detail = format!(
                    "the restored server did not reach the archive's end: replay reached {} (the line ends at {}), last commit {} (the archive's is {}), {}",
                    summary.reached_segment.as_deref().unwrap_or("nothing"),
                    end.unwrap_or("?"),
                    summary
                        .last_replayed_transaction
                        .as_deref()
                        .unwrap_or("none"),
                    summary.archive_last_commit.as_deref().unwrap_or("unknown"),
                    if summary.in_recovery == Some(false) {
                        "promoted"
                    } else {
                        "not promoted"
                    }
                );
            } else {
                match sanity_query(
                    os_user,
                    &socket_dir,
                    port,
                    &pg_bin_for(pg_bin.as_deref(), client),
                ) {
                    Ok(answer) => {
                        record.success = true;
                        record.detail = answer;
                    }
                    Err(error) => {
                        record.detail =
                            format!("the restored server does not answer the sanity query: {error}")
                    }
                }
            }
        }
        Err(error) => record.detail = error.to_string(),
    }
    stop_server(os_user, &data, pg_bin.as_deref(), client);
    // A failed restore may leave its helper's plan (the engine keeps it while
    // the server recovers): with the server stopped, end it here.
    let plan = crate::ops::walget::plan::plan_path(&data);
    if plan.exists() {
        let _ = crate::ops::walget::finish::finish(&plan);
    }
    // The scratch folder goes with `scratch`; the journal beside `data` inside it too.
    drop(scratch);
    record
}

fn pg_bin_for(pg_bin: Option<&Path>, client: &Client) -> PathBuf {
    let major = client
        .base
        .pg_version()
        .and_then(|v| v.parse().ok())
        .unwrap_or(15);
    pg_bin
        .map(Path::to_owned)
        .unwrap_or_else(|| crate::pg::local::default_pg_bin(major))
}

/// Why the restored server did not answer the sanity query.
#[derive(Debug, thiserror::Error)]
enum SanityError {
    #[error(transparent)]
    User(#[from] LocalError),
    #[error("{0}")]
    CannotRun(std::io::Error),
    /// What psql printed on stderr.
    #[error("{0}")]
    Refused(String),
}

/// Lists databases and counts relations on the restored server.
fn sanity_query(
    os_user: &str,
    socket_dir: &str,
    port: u16,
    pg_bin: &Path,
) -> Result<String, SanityError> {
    let user = PgUser::lookup(os_user)?;
    let mut command = user.command(pg_bin.join("psql"));
    command
        .args(["-X", "-A", "-t", "-h", socket_dir, "-p", &port.to_string(), "-d", "postgres", "-c"])
        .arg("select (select count(*) from pg_database where not datistemplate) || ' databases, ' || (select count(*) from pg_class) || ' relations'");
    let output = command.output().map_err(SanityError::CannotRun)?;
    if !output.status.success() {
        return Err(SanityError::Refused(
            String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        ));
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

fn stop_server(os_user: &str, data: &Path, pg_bin: Option<&Path>, client: &Client) {
    if !data.join("postmaster.pid").exists() {
        return;
    }
    if let Ok(user) = PgUser::lookup(os_user) {
        let mut command: Command = user.command(pg_bin_for(pg_bin, client).join("pg_ctl"));
        command
            .arg("-D")
            .arg(data)
            .args(["stop", "-m", "immediate", "-w"]);
        let _ = command.output();
    }
}
