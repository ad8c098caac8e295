//! Moving a cluster to another PostgreSQL major version, the way the
//! tutorial's last section does it: physical backups only restore onto the
//! same major, so the data goes through `pg_dumpall -c` and psql.
//!
//! The steps, each a function the CLI calls in turn:
//! - [`preflight`]: both ends answer, the move is not a downgrade, they are
//!   not one cluster, pg_dumpall can read the source, the dump file is new,
//!   and which destination databases holding tables the load will replace;
//! - [`dump`]: `pg_dumpall -c --if-exists` gzip'ed into a new file, with progress;
//! - [`load`]: the file fed to psql on the destination, its whole output kept
//!   in `FILE.load.log` and read for errors ([`loadlog`]);
//! - [`verify`]: databases, roles and exact row counts compared ([`inventory`]).
//!
//! psql's stdout is block-buffered into the log while its stderr is not, so
//! an error can sit some lines before the command tags printed around it; the
//! dump line psql names is the exact pointer.
//!
//! [`Migration::problems`] is the verdict: the migration is done only when
//! psql finished, everything arrived, and every unexpected error in the load
//! log was accepted by the engineer. Nothing here writes outside the dump
//! file and its log; the destination is changed only by [`load`].

pub mod inventory;
pub mod loadlog;

use std::fs::{File, OpenOptions};
use std::io::{self, BufReader, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use flate2::Compression;
use flate2::read::MultiGzDecoder;
use flate2::write::GzEncoder;
use serde::Serialize;
use thiserror::Error;

use crate::pg::local::{PgUser, parse_major};
use inventory::{Counts, Inventory, Verification};
use loadlog::LoadLog;

#[derive(Debug, Error)]
pub enum MigrateError {
    #[error("{0}")]
    Refused(String),
    #[error("cannot run {program}: {source}")]
    Spawn { program: PathBuf, source: io::Error },
    #[error("{end}: {message}")]
    Query { end: &'static str, message: String },
    #[error(
        "pg_dumpall failed ({status}); nothing was loaded and the partial dump was removed: {stderr}"
    )]
    Dump { status: String, stderr: String },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> MigrateError + '_ {
    move |source| MigrateError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// One end of the migration: how to reach it and whose client programs to use.
#[derive(Debug, Clone)]
pub struct End {
    /// `source` or `destination`, for messages.
    pub name: &'static str,
    /// A libpq connection string, `host=/run/postgresql port=5433 user=postgres`
    /// or `postgresql://...`; its dbname, when missing, is `postgres`.
    pub conninfo: String,
    /// Directory of psql (and pg_dumpall); default: the ones on PATH.
    pub bin: Option<PathBuf>,
    /// Run the client programs as this OS user (peer authentication on Debian's sockets).
    pub os_user: Option<PgUser>,
}

impl End {
    pub fn program(&self, name: &str) -> PathBuf {
        match &self.bin {
            Some(dir) => dir.join(name),
            None => PathBuf::from(name),
        }
    }

    /// A client program for this end. Environment settings only fill in what
    /// the connection string leaves out: the tutorial loads into `postgres`.
    /// Programs run with `-w`: a password prompt in the middle of a dump or a
    /// load would hang it; passwords come from ~/.pgpass or PGPASSWORD.
    pub fn command(&self, name: &str) -> Command {
        let program = self.program(name);
        let mut command = match &self.os_user {
            Some(user) => user.command(&program),
            None => Command::new(&program),
        };
        command
            .env("PGDATABASE", "postgres")
            .env("PGAPPNAME", "walwarden migrate");
        if std::env::var_os("PGCONNECT_TIMEOUT").is_none() {
            command.env("PGCONNECT_TIMEOUT", "10");
        }
        command
    }
}

/// What to migrate where.
#[derive(Debug, Clone)]
pub struct MigratePlan {
    pub source: End,
    pub destination: End,
    /// Directory of the pg_dumpall to use; default: the destination's.
    pub dumpall_bin: Option<PathBuf>,
    /// The gzip'ed dump to write; it must not exist.
    pub dump_file: PathBuf,
}

impl MigratePlan {
    /// `FILE.load.log`, next to the dump.
    pub fn load_log(&self) -> PathBuf {
        let mut name = self.dump_file.as_os_str().to_owned();
        name.push(".load.log");
        PathBuf::from(name)
    }

    /// pg_dumpall from the destination's binaries unless told otherwise:
    /// PostgreSQL's upgrade docs recommend the newer version's pg_dump and
    /// pg_dumpall, which know how to read the older server and write SQL the
    /// newer one accepts (an older pg_dumpall knows nothing of later changes).
    pub fn dumpall(&self) -> End {
        let mut end = self.source.clone();
        end.bin = self
            .dumpall_bin
            .clone()
            .or_else(|| self.destination.bin.clone());
        end
    }
}

/// Reports on long steps; the CLI prints them. All methods default to nothing.
pub trait Progress {
    fn step(&mut self, _text: &str) {}
    /// `sql` bytes read from pg_dumpall, `written` gzip'ed bytes in the file.
    fn dumped(&mut self, _sql: u64, _written: u64, _elapsed: Duration) {}
    /// `read` of `total` bytes of the dump file fed to psql.
    fn loaded(&mut self, _read: u64, _total: u64, _elapsed: Duration) {}
}

impl Progress for () {}

/// What the preflight found; nothing has been changed yet.
#[derive(Debug, Clone, Serialize)]
pub struct Preflight {
    pub source: Inventory,
    pub destination: Inventory,
    pub dumpall: PathBuf,
    /// `pg_dumpall --version`.
    pub dumpall_version: String,
    /// Things to know that do not stop the migration.
    pub notes: Vec<String>,
    /// Destination databases that hold user tables and that the load drops and
    /// re-creates (their names are on the source too): (name, tables, rows).
    pub replaced: Vec<(String, usize, u64)>,
}

/// Both ends checked, nothing changed. Refuses a downgrade, two ends that
/// are one cluster, a pg_dumpall older than the source, and an existing dump file.
pub fn preflight(plan: &MigratePlan) -> Result<Preflight, MigrateError> {
    guard_paths(plan)?;
    if plan.dump_file.exists() {
        return Err(MigrateError::Refused(format!(
            "{} exists already: walwarden never overwrites a dump (choose another --dump)",
            plan.dump_file.display()
        )));
    }
    let log = plan.load_log();
    if log.exists() {
        return Err(MigrateError::Refused(format!(
            "{} exists already: move it away or choose another --dump",
            log.display()
        )));
    }
    let source = inventory::inventory(&plan.source)?;
    let destination = inventory::inventory(&plan.destination)?;
    let mut notes = Vec::new();
    let (from, to) = (source.major(), destination.major());
    if to < from {
        return Err(MigrateError::Refused(format!(
            "the destination runs PostgreSQL {} and the source {}: a dump of a newer major \
             version is not meant to load into an older one (it may use features the older \
             server lacks); migrate to {from} or later",
            destination.version, source.version
        )));
    }
    if source.system_identifier == destination.system_identifier {
        return Err(MigrateError::Refused(format!(
            "source and destination have the same system identifier {}: they are one cluster \
             (or a physical copy of it), and the load would drop the source's databases",
            source.system_identifier
        )));
    }
    // pg_dumpall -c reconnects around postgres and template1 before dropping
    // them, but drops every other database from where psql starts.
    let start = &destination.database;
    if start != "postgres" && start != "template1" && source.databases.contains(start) {
        return Err(MigrateError::Refused(format!(
            "the destination connection opens database {start:?}, which the dump drops and \
             re-creates: it cannot drop the database it runs in; connect to postgres \
             (dbname=postgres in --to)"
        )));
    }
    if to == from {
        notes.push(format!(
            "both ends run PostgreSQL {from}: a physical restore (walwarden restore) would also do, \
             and keeps the WAL history; the dump goes on as asked"
        ));
    }
    let dumpall_end = plan.dumpall();
    let dumpall = dumpall_end.program("pg_dumpall");
    let dumpall_version = program_version(&dumpall_end, "pg_dumpall")?;
    let dumpall_major = parse_major(&dumpall_version).unwrap_or(0);
    if dumpall_major < from {
        return Err(MigrateError::Refused(format!(
            "{} is {dumpall_version:?}, older than the source's PostgreSQL {from}: pg_dumpall \
             refuses newer servers; point --to-bin (or --dumpall-bin) at PostgreSQL {to}'s binaries",
            dumpall.display()
        )));
    }
    if dumpall_major < to {
        notes.push(format!(
            "{} is PostgreSQL {dumpall_major}'s; PostgreSQL recommends the destination's ({to}) for dumps to load there",
            dumpall.display()
        ));
    }
    let shared: Vec<String> = source
        .databases
        .iter()
        .filter(|db| destination.databases.contains(db))
        .cloned()
        .collect();
    let counts = inventory::count_rows(&plan.destination, &shared)?;
    let replaced = shared
        .iter()
        .filter_map(|db| {
            let tables: Vec<u64> = counts
                .iter()
                .filter(|(key, _)| &key.0 == db)
                .map(|(_, rows)| *rows)
                .collect();
            (!tables.is_empty()).then(|| (db.clone(), tables.len(), tables.iter().sum()))
        })
        .collect();
    Ok(Preflight {
        source,
        destination,
        dumpall,
        dumpall_version,
        notes,
        replaced,
    })
}

fn program_version(end: &End, name: &str) -> Result<String, MigrateError> {
    let program = end.program(name);
    let output = end
        .command(name)
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .map_err(|source| MigrateError::Spawn {
            program: program.clone(),
            source,
        })?;
    if !output.status.success() {
        return Err(MigrateError::Refused(format!(
            "{} --version failed ({}): {}",
            program.display(),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

/// A writer that counts what passes through it, readable from another thread.
struct Counted<W> {
    inner: W,
    bytes: Arc<AtomicU64>,
}

impl<W: Write> Write for Counted<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.bytes.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// A reader that counts what passes through it.
struct CountedReader<R> {
    inner: R,
    bytes: u64,
}

impl<R: Read> Read for CountedReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.bytes += n as u64;
        Ok(n)
    }
}

const CHUNK: usize = 256 * 1024;

#[derive(Debug, Clone, Serialize)]
pub struct DumpStats {
    pub file: PathBuf,
    pub sql_bytes: u64,
    pub file_bytes: u64,
    pub seconds: f64,
    /// What pg_dumpall wrote to stderr (warnings), if anything.
    pub messages: String,
}

/// The dump and its load log are walwarden's files: never inside the
/// backup root, nor the root itself or a folder holding it.
fn guard_paths(plan: &MigratePlan) -> Result<(), MigrateError> {
    for (path, what) in [
        (plan.dump_file.clone(), "--dump"),
        (plan.load_log(), "the load log"),
    ] {
        crate::store::guard::check_write(&path, what)
            .map_err(|refused| MigrateError::Refused(refused.to_string()))?;
    }
    Ok(())
}

/// Runs `pg_dumpall -c --if-exists` on the source into a new gzip file.
/// `--if-exists` keeps the DROPs quiet on a destination that lacks the objects.
/// On any failure the partial file is removed.
pub fn dump(plan: &MigratePlan, progress: &mut dyn Progress) -> Result<DumpStats, MigrateError> {
    let path = &plan.dump_file;
    guard_paths(plan)?;
    // 0600: the dump holds every row and the roles' password hashes.
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| match e.kind() {
            io::ErrorKind::AlreadyExists => MigrateError::Refused(format!(
                "{} exists already: walwarden never overwrites a dump",
                path.display()
            )),
            _ => io_error(path)(e),
        })?;
    let result = write_dump(plan, file, progress);
    if result.is_err() {
        let _ = std::fs::remove_file(path);
    }
    result
}

fn write_dump(
    plan: &MigratePlan,
    file: File,
    progress: &mut dyn Progress,
) -> Result<DumpStats, MigrateError> {
    let path = &plan.dump_file;
    let end = plan.dumpall();
    let program = end.program("pg_dumpall");
    let started = Instant::now();
    let mut child = end
        .command("pg_dumpall")
        .args(["--clean", "--if-exists", "--no-password", "-d"])
        .arg(&end.conninfo)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| MigrateError::Spawn {
            program: program.clone(),
            source,
        })?;
    let stderr = child.stderr.take().map(|mut stderr| {
        std::thread::spawn(move || {
            let mut text = Vec::new();
            let _ = stderr.read_to_end(&mut text);
            String::from_utf8_lossy(&text).into_owned()
        })
    });
    // Compression runs on its own thread, as gzip does in the tutorial's
    // pipeline: pg_dumpall keeps producing while the previous chunk is packed.
    let written = Arc::new(AtomicU64::new(0));
    let (chunks, received) = mpsc::sync_channel::<Vec<u8>>(8);
    let compressor = {
        let written = Arc::clone(&written);
        std::thread::spawn(move || -> io::Result<()> {
            let mut encoder = GzEncoder::new(
                Counted {
                    inner: file,
                    bytes: written,
                },
                Compression::default(),
            );
            for chunk in received {
                encoder.write_all(&chunk)?;
            }
            encoder.finish()?.inner.sync_all()
        })
    };
    let mut sql_bytes = 0u64;
    let copied = (|| -> io::Result<()> {
        let Some(mut stdout) = child.stdout.take() else {
            return Ok(());
        };
        let mut buf = vec![0u8; CHUNK];
        loop {
            let n = match stdout.read(&mut buf) {
                Ok(0) => return Ok(()),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if chunks.send(buf[..n].to_vec()).is_err() {
                // The compressor stopped on an error; joining it below says which.
                return Ok(());
            }
            sql_bytes += n as u64;
            progress.dumped(
                sql_bytes,
                written.load(Ordering::Relaxed),
                started.elapsed(),
            );
        }
    })();
    drop(chunks);
    let compressed = compressor
        .join()
        .unwrap_or_else(|_| Err(io::Error::other("the compression thread panicked")));
    if copied.is_err() || compressed.is_err() {
        // Writing failed (disk full?): stop pg_dumpall rather than let it run on.
        let _ = child.kill();
    }
    let status = child.wait().map_err(|source| MigrateError::Spawn {
        program: program.clone(),
        source,
    })?;
    let messages = stderr
        .and_then(|t| t.join().ok())
        .unwrap_or_default()
        .trim()
        .to_owned();
    compressed.map_err(io_error(path))?;
    copied.map_err(io_error(path))?;
    if !status.success() {
        return Err(MigrateError::Dump {
            status: status.to_string(),
            stderr: messages,
        });
    }
    Ok(DumpStats {
        file: path.clone(),
        sql_bytes,
        file_bytes: written.load(Ordering::Relaxed),
        seconds: started.elapsed().as_secs_f64(),
        messages,
    })
}

#[derive(Debug, Clone, Serialize)]
pub struct LoadOutcome {
    pub log_file: PathBuf,
    /// psql's exit code (None: killed by a signal). Not 0: the load did not run to its end.
    pub psql_exit: Option<i32>,
    pub seconds: f64,
    pub log: LoadLog,
}

/// Feeds the dump to `psql -X -v ON_ERROR_STOP=0 -f -` on the destination, as
/// the tutorial does (a failed statement does not stop the rest), with stdout
/// and stderr both in `FILE.load.log`, then reads that log. `load_user` is
/// the role psql connects as (its errors of `pg_dumpall -c` are expected).
pub fn load(
    plan: &MigratePlan,
    load_user: &str,
    progress: &mut dyn Progress,
) -> Result<LoadOutcome, MigrateError> {
    let dump_path = &plan.dump_file;
    let log_path = plan.load_log();
    guard_paths(plan)?;
    let dump = File::open(dump_path).map_err(io_error(dump_path))?;
    let total = dump.metadata().map_err(io_error(dump_path))?.len();
    let log = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&log_path)
        .map_err(io_error(&log_path))?;
    // One open file for both streams: lines land in the order psql writes them.
    let log_err = log.try_clone().map_err(io_error(&log_path))?;
    let end = &plan.destination;
    let program = end.program("psql");
    let started = Instant::now();
    let mut child = end
        .command("psql")
        .args(["-X", "-w", "-v", "ON_ERROR_STOP=0", "-d"])
        .arg(&end.conninfo)
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(log)
        .stderr(log_err)
        .spawn()
        .map_err(|source| MigrateError::Spawn {
            program: program.clone(),
            source,
        })?;
    let mut reader = MultiGzDecoder::new(CountedReader {
        inner: BufReader::with_capacity(CHUNK, dump),
        bytes: 0,
    });
    let mut damaged = None;
    if let Some(mut stdin) = child.stdin.take() {
        let mut buf = vec![0u8; CHUNK];
        loop {
            let n = match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    damaged = Some(e);
                    break;
                }
            };
            // psql gone (the log says why): stop feeding, the status tells.
            if stdin.write_all(&buf[..n]).is_err() {
                break;
            }
            progress.loaded(reader.get_ref().bytes, total, started.elapsed());
        }
        // Dropping stdin ends psql's input.
    }
    let status = child.wait().map_err(|source| MigrateError::Spawn {
        program: program.clone(),
        source,
    })?;
    if let Some(e) = damaged {
        return Err(MigrateError::Refused(format!(
            "{} is damaged after {} bytes ({e}): psql ran only the part before it, the \
             destination is partly loaded (see {})",
            dump_path.display(),
            reader.get_ref().bytes,
            log_path.display()
        )));
    }
    let parsed = loadlog::read(
        BufReader::new(File::open(&log_path).map_err(io_error(&log_path))?),
        load_user,
    )
    .map_err(io_error(&log_path))?;
    Ok(LoadOutcome {
        log_file: log_path,
        psql_exit: status.code(),
        seconds: started.elapsed().as_secs_f64(),
        log: parsed,
    })
}

/// Both ends' databases, roles and row counts, compared. Counts cover the
/// source's databases; the source should be idle (the tutorial stops its
/// consumers) or its counts will have moved on since the dump.
pub fn verify(plan: &MigratePlan) -> Result<Verification, MigrateError> {
    let source = inventory::inventory(&plan.source)?;
    let destination = inventory::inventory(&plan.destination)?;
    let source_counts = inventory::count_rows(&plan.source, &source.databases)?;
    let present: Vec<String> = source
        .databases
        .iter()
        .filter(|db| destination.databases.contains(db))
        .cloned()
        .collect();
    let dest_counts: Counts = inventory::count_rows(&plan.destination, &present)?;
    Ok(inventory::compare(
        &source,
        &source_counts,
        &destination,
        &dest_counts,
    ))
}

/// The whole record of one migration.
#[derive(Debug, Clone, Serialize)]
pub struct Migration {
    pub preflight: Preflight,
    pub dump: DumpStats,
    pub load: LoadOutcome,
    pub verification: Verification,
}

/// Runs dump, load and verification after a preflight the caller accepted.
pub fn migrate(
    plan: &MigratePlan,
    preflight: Preflight,
    progress: &mut dyn Progress,
) -> Result<Migration, MigrateError> {
    progress.step("dumping the source with pg_dumpall -c");
    let dump = dump(plan, progress)?;
    progress.step("loading the dump with psql on the destination");
    let load = load(plan, &preflight.destination.user, progress)?;
    progress.step("comparing databases, roles and row counts");
    let verification = verify(plan)?;
    Ok(Migration {
        preflight,
        dump,
        load,
        verification,
    })
}

impl Migration {
    /// Why the migration is not done; empty when it is. Unexpected load
    /// errors count unless `accept_errors`; an unfinished load or anything
    /// missing on the destination always counts.
    pub fn problems(&self, accept_errors: bool) -> Vec<String> {
        let mut problems = Vec::new();
        if self.load.psql_exit != Some(0) {
            problems.push(format!(
                "psql did not finish the load (exit {}): see {}",
                self.load
                    .psql_exit
                    .map_or("by a signal".to_owned(), |c| c.to_string()),
                self.load.log_file.display()
            ));
        }
        let unexpected = self.load.log.unexpected_count();
        if unexpected > 0 && !accept_errors {
            problems.push(format!(
                "{unexpected} error(s) in the load were not accepted: fix their causes and migrate \
                 again onto a fresh destination, or accept them with --accept-errors"
            ));
        }
        if !self.verification.equal() {
            problems.push("the destination differs from the source (listed above)".to_owned());
        }
        problems
    }
}

/// The default dump file: `walwarden-migrate-CLIENT-YYYYMMDDTHHMMSSZ.sql.gz`
/// in the current directory.
pub fn default_dump_name(client: Option<&str>, now: std::time::SystemTime) -> PathBuf {
    let stamp: String = humantime::format_rfc3339_seconds(now)
        .to_string()
        .chars()
        .filter(|c| *c != '-' && *c != ':')
        .collect();
    let client: String = client
        .unwrap_or("cluster")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect();
    PathBuf::from(format!("walwarden-migrate-{client}-{stamp}.sql.gz"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dump_names_are_safe_and_stamped() {
        let t = std::time::UNIX_EPOCH + Duration::from_secs(1_795_000_000);
        let name = default_dump_name(Some("shop/eu 1"), t);
        assert_eq!(
            name,
            PathBuf::from("walwarden-migrate-shop_eu_1-20261118T110640Z.sql.gz")
        );
        assert!(
            default_dump_name(None, t)
                .to_string_lossy()
                .starts_with("walwarden-migrate-cluster-")
        );
    }

    fn migration(psql_exit: Option<i32>, log: &str, equal: bool) -> Migration {
        let inventory = Inventory {
            version_num: 150014,
            version: "15.14".into(),
            user: "postgres".into(),
            database: "postgres".into(),
            system_identifier: "1".into(),
            databases: vec!["postgres".into()],
            roles: vec!["postgres".into()],
        };
        let mut verification = Verification::default();
        if !equal {
            verification.missing_roles.push("app".into());
        }
        Migration {
            preflight: Preflight {
                source: inventory.clone(),
                destination: inventory,
                dumpall: "pg_dumpall".into(),
                dumpall_version: "pg_dumpall (PostgreSQL) 17.2".into(),
                notes: Vec::new(),
                replaced: Vec::new(),
            },
            dump: DumpStats {
                file: "d.sql.gz".into(),
                sql_bytes: 1,
                file_bytes: 1,
                seconds: 0.0,
                messages: String::new(),
            },
            load: LoadOutcome {
                log_file: "d.sql.gz.load.log".into(),
                psql_exit,
                seconds: 0.0,
                log: loadlog::read(log.as_bytes(), "postgres").unwrap(),
            },
            verification,
        }
    }

    const EXPECTED_ONLY: &str = "psql:<stdin>:26: ERROR:  current user cannot be dropped\n";
    const ONE_REAL: &str = "psql:<stdin>:26: ERROR:  current user cannot be dropped\n\
psql:<stdin>:90: ERROR:  extension \"adminpack\" is not available\n";

    #[test]
    fn done_means_finished_complete_and_every_error_accepted() {
        assert!(
            migration(Some(0), EXPECTED_ONLY, true)
                .problems(false)
                .is_empty()
        );
        let m = migration(Some(0), ONE_REAL, true);
        assert_eq!(m.problems(false).len(), 1);
        assert!(m.problems(false)[0].contains("1 error(s)"));
        assert!(m.problems(true).is_empty(), "accepted");
    }

    #[test]
    fn accepting_errors_never_excuses_a_short_load_or_missing_things() {
        assert_eq!(
            migration(Some(2), EXPECTED_ONLY, true).problems(true).len(),
            1
        );
        assert_eq!(migration(None, EXPECTED_ONLY, true).problems(true).len(), 1);
        assert_eq!(migration(Some(0), ONE_REAL, false).problems(true).len(), 1);
        assert_eq!(migration(Some(0), ONE_REAL, false).problems(false).len(), 2);
    }

    #[test]
    fn the_load_log_sits_next_to_the_dump() {
        let end = End {
            name: "source",
            conninfo: String::new(),
            bin: None,
            os_user: None,
        };
        let plan = MigratePlan {
            source: end.clone(),
            destination: End {
                bin: Some("/opt/pg17/bin".into()),
                ..end
            },
            dumpall_bin: None,
            dump_file: "/tmp/x.sql.gz".into(),
        };
        assert_eq!(plan.load_log(), PathBuf::from("/tmp/x.sql.gz.load.log"));
        assert_eq!(
            plan.dumpall().program("pg_dumpall"),
            PathBuf::from("/opt/pg17/bin/pg_dumpall")
        );
        assert_eq!(plan.dumpall().conninfo, plan.source.conninfo);
    }
}
