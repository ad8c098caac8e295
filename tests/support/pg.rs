//! Fixtures that run REAL PostgreSQL binaries in temp dirs under /tmp.
//!
//! * PostgreSQL refuses to run as root. When the tests run as root (CI does),
//!   every PostgreSQL command runs as an unprivileged OS user through
//!   `runuser -u USER --` (USER = `$WALWARDEN_TEST_PG_USER`, default `postgres`)
//!   and the temp dirs are chowned to that user. Otherwise commands run directly.
//! * Binaries: PostgreSQL 15 from `$WALWARDEN_PG15_BIN` or Debian's
//!   `/usr/lib/postgresql/15/bin`; other majors (14, 16, 17, 18) from the cache
//!   filled by `.ci/fetch-pg-binaries`: `$WALWARDEN_PG_CACHE/<major>/bin`, default
//!   `/var/cache/walwarden/pg` as root (root's home is 0700, the PostgreSQL user
//!   could not enter it) and `$HOME/.cache/walwarden/pg` otherwise.
//!   `$WALWARDEN_PG<major>_BIN` overrides any major.
//! * Missing binaries make the fixtures PANIC (tests fail, never skip).
//! * Servers listen on a unix socket in their temp dir only (`listen_addresses = ''`),
//!   never touch /var/lib/postgresql, and are stopped (`pg_ctl stop -m immediate`)
//!   by a Drop guard, also when the test panics.

use std::collections::BTreeMap;
use std::env;
use std::ffi::OsString;
use std::fs;
use std::hash::{BuildHasher, Hasher};
use std::io::Write;
use std::os::unix::fs::{PermissionsExt, chown};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Name of the superuser created by the fixtures' `initdb -U`.
pub const PG_SUPERUSER: &str = "postgres";

/// How long to wait for the archiver to catch up before failing.
const ARCHIVE_WAIT: Duration = Duration::from_secs(60);

/// libpq / server environment variables that could redirect a command; removed
/// from every PostgreSQL command the fixtures run.
const PG_ENV: &[&str] = &[
    "PGHOST",
    "PGHOSTADDR",
    "PGPORT",
    "PGUSER",
    "PGDATABASE",
    "PGDATA",
    "PGOPTIONS",
    "PGSERVICE",
    "PGSERVICEFILE",
    "PGPASSWORD",
    "PGPASSFILE",
    "PGSSLMODE",
    "PGTZ",
    "PGCLIENTENCODING",
    "PGAPPNAME",
    "PGCONNECT_TIMEOUT",
    "PGTARGETSESSIONATTRS",
    "PGSYSCONFDIR",
    "PGLOCALEDIR",
];

/// True when the test process runs as root (effective uid 0).
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// The unprivileged OS user PostgreSQL runs as when the tests run as root.
pub fn pg_user() -> String {
    env::var("WALWARDEN_TEST_PG_USER")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| "postgres".to_string())
}

/// (uid, gid) of [`pg_user`], looked up once with `id`.
fn pg_user_ids() -> (u32, u32) {
    static IDS: OnceLock<(u32, u32)> = OnceLock::new();
    *IDS.get_or_init(|| {
        let user = pg_user();
        let id = |flag: &str| -> u32 {
            let out = Command::new("id")
                .arg(flag)
                .arg(&user)
                .stdin(Stdio::null())
                .output()
                .unwrap_or_else(|e| panic!("cannot run `id {flag} {user}`: {e}"));
            if !out.status.success() {
                panic!(
                    "the tests run as root, so PostgreSQL must run as an unprivileged user, \
                     but OS user {user:?} does not exist ({}). Install postgresql-15 (it creates \
                     `postgres`) or set WALWARDEN_TEST_PG_USER to an existing user.",
                    String::from_utf8_lossy(&out.stderr).trim()
                );
            }
            String::from_utf8_lossy(&out.stdout)
                .trim()
                .parse()
                .unwrap_or_else(|e| panic!("`id {flag} {user}` printed no number: {e}"))
        };
        (id("-u"), id("-g"))
    })
}

/// Runs `cmd` as the PostgreSQL OS user and returns its output (stdin is
/// /dev/null, stdout and stderr are captured). When the process is root the
/// command is wrapped in `runuser -u USER --`, keeping its program, arguments,
/// environment changes and current dir (an `env_clear()` is not carried over).
/// Does not check the exit status; panics only when the command cannot start.
pub fn run_as_pg_user(cmd: &mut Command) -> Output {
    let result = if is_root() {
        let mut wrapped = Command::new("runuser");
        wrapped
            .arg("-u")
            .arg(pg_user())
            .arg("--")
            .arg(cmd.get_program())
            .args(cmd.get_args());
        for (key, value) in cmd.get_envs() {
            match value {
                Some(value) => wrapped.env(key, value),
                None => wrapped.env_remove(key),
            };
        }
        if let Some(dir) = cmd.get_current_dir() {
            wrapped.current_dir(dir);
        }
        wrapped.stdin(Stdio::null()).output()
    } else {
        cmd.stdin(Stdio::null()).output()
    };
    result.unwrap_or_else(|e| panic!("cannot run {cmd:?} (as {}): {e}", who()))
}

fn who() -> String {
    if is_root() {
        format!("OS user {} via runuser", pg_user())
    } else {
        "the current user".to_string()
    }
}

/// Runs `cmd` as the PostgreSQL user and panics with its output unless it
/// exits 0. Returns stdout. `context` is appended to the panic message.
fn run_ok(cmd: &mut Command, what: &str, context: &dyn Fn() -> String) -> String {
    let out = run_as_pg_user(cmd);
    if !out.status.success() {
        panic!(
            "{what} failed ({}), run as {}:\n  {cmd:?}\n--- stdout ---\n{}\n--- stderr ---\n{}{}",
            out.status,
            who(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            context()
        );
    }
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Where `.ci/fetch-pg-binaries` puts majors other than Debian's 15:
/// `$WALWARDEN_PG_CACHE`, else `/var/cache/walwarden/pg` as root, else
/// `$HOME/.cache/walwarden/pg`. Keep in sync with that script.
pub fn pg_cache_dir() -> PathBuf {
    if let Some(dir) = env::var_os("WALWARDEN_PG_CACHE").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    match env::var_os("HOME").filter(|h| !h.is_empty()) {
        Some(home) if !is_root() => PathBuf::from(home).join(".cache/walwarden/pg"),
        _ => PathBuf::from("/var/cache/walwarden/pg"),
    }
}

fn is_executable(path: &Path) -> bool {
    fs::metadata(path)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

fn has_server_bins(dir: &Path) -> bool {
    ["initdb", "postgres", "pg_ctl", "pg_controldata"]
        .iter()
        .all(|b| is_executable(&dir.join(b)))
}

/// Candidate bin dirs for `major`, in search order.
fn bin_dir_candidates(major: u32) -> Vec<PathBuf> {
    if let Some(dir) = env::var_os(format!("WALWARDEN_PG{major}_BIN")).filter(|d| !d.is_empty()) {
        // An explicit setting is the only place looked at.
        return vec![PathBuf::from(dir)];
    }
    vec![
        PathBuf::from(format!("/usr/lib/postgresql/{major}/bin")),
        pg_cache_dir().join(major.to_string()).join("bin"),
    ]
}

/// The directory holding `initdb`, `postgres`, `pg_ctl`, ... of PostgreSQL
/// `major`, if present: `$WALWARDEN_PG<major>_BIN` when set (and only it),
/// else `/usr/lib/postgresql/<major>/bin` (Debian's 15), else
/// `<pg_cache_dir()>/<major>/bin` (from `.ci/fetch-pg-binaries`).
pub fn pg_bin_dir(major: u32) -> Option<PathBuf> {
    bin_dir_candidates(major)
        .into_iter()
        .find(|dir| has_server_bins(dir))
}

/// Like [`pg_bin_dir`] but panics with instructions when the binaries are
/// missing, do not run as the PostgreSQL user, or are of another major.
pub fn require_pg_bin(major: u32) -> PathBuf {
    let Some(bin) = pg_bin_dir(major) else {
        let looked: Vec<String> = bin_dir_candidates(major)
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        let how = if major == 15 {
            "install Debian's postgresql-15 and postgresql-client-15 (`.ci/test` does), \
             or set WALWARDEN_PG15_BIN"
                .to_string()
        } else {
            format!(
                "run `.ci/fetch-pg-binaries {major}` (`.ci/test` does), or set \
                 WALWARDEN_PG{major}_BIN / WALWARDEN_PG_CACHE"
            )
        };
        panic!(
            "PostgreSQL {major} binaries not found (need initdb, postgres, pg_ctl, \
             pg_controldata); looked in: {}. To fix: {how}.",
            looked.join(", ")
        );
    };
    let out = run_as_pg_user(pg_command(&bin, "postgres").arg("--version"));
    let version = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if !out.status.success() {
        panic!(
            "PostgreSQL {major} binaries in {} do not run as {}: {} {}\n(If they lie under a \
             directory that user cannot enter, such as /root, point WALWARDEN_PG_CACHE at a \
             world-readable place and re-run .ci/fetch-pg-binaries.)",
            bin.display(),
            who(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let found_major = parse_version_major(&version);
    if found_major != Some(major) {
        panic!(
            "{} holds {version:?}, not PostgreSQL {major}",
            bin.join("postgres").display()
        );
    }
    bin
}

/// `postgres (PostgreSQL) 15.20 (Debian 15.20-0+deb12u1)` -> 15.
fn parse_version_major(version: &str) -> Option<u32> {
    let rest = version.split(") ").nth(1)?;
    let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
    digits.parse().ok()
}

/// A `Command` for PostgreSQL program `prog` in `bin`, with libpq's environment
/// variables removed, `LC_ALL=C` (stable, untranslated output) and, for the
/// relocatable PyPI builds, their `lib/` first in `LD_LIBRARY_PATH`.
pub fn pg_command(bin: &Path, prog: &str) -> Command {
    let mut cmd = Command::new(bin.join(prog));
    for var in PG_ENV {
        cmd.env_remove(var);
    }
    cmd.env("LC_ALL", "C");
    let lib = bin.parent().map(|p| p.join("lib"));
    if let Some(lib) = lib.filter(|lib| lib.join("libpq.so.5").exists()) {
        let mut path = OsString::from(lib.as_os_str());
        if let Some(old) = env::var_os("LD_LIBRARY_PATH").filter(|o| !o.is_empty()) {
            path.push(":");
            path.push(old);
        }
        cmd.env("LD_LIBRARY_PATH", path);
    }
    cmd
}

/// Gives `path` to the PostgreSQL user (when root) with mode `mode`.
pub fn give_to_pg_user(path: &Path, mode: u32) {
    if is_root() {
        let (uid, gid) = pg_user_ids();
        chown(path, Some(uid), Some(gid))
            .unwrap_or_else(|e| panic!("chown {} to {}: {e}", path.display(), pg_user()));
    }
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {:o} {}: {e}", mode, path.display()));
}

/// Creates directory `path` (its parent must exist) owned by the PostgreSQL user.
fn mkdir_for_pg(path: &Path) {
    fs::create_dir(path).unwrap_or_else(|e| panic!("mkdir {}: {e}", path.display()));
    give_to_pg_user(path, 0o755);
}

/// A temp dir under /tmp owned by the PostgreSQL user (mode 0755), e.g. for
/// [`PgCluster::initdb`].
pub fn pg_tempdir(prefix: &str) -> tempfile::TempDir {
    let tmp = tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in("/tmp")
        .unwrap_or_else(|e| panic!("cannot create a temp dir in /tmp: {e}"));
    give_to_pg_user(tmp.path(), 0o755);
    tmp
}

fn random_u64() -> u64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.finish()
}

/// A port in 20000..=60999 whose unix socket lock name is free in /tmp and
/// whose TCP port is free on 127.0.0.1 (the server uses neither, but this keeps
/// `ps` and logs unambiguous).
pub fn pick_port() -> u16 {
    for _ in 0..100 {
        let port = 20000 + (random_u64() % 41000) as u16;
        let lock = PathBuf::from(format!("/tmp/.s.PGSQL.{port}.lock"));
        if !lock.exists() && std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port found in 20000..=60999");
}

fn tail(path: &Path, lines: usize) -> String {
    match fs::read_to_string(path) {
        Ok(text) => {
            let all: Vec<&str> = text.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        Err(e) => format!("(cannot read {}: {e})", path.display()),
    }
}

/// Parses `pg_controldata` output into "key" -> "value".
pub fn parse_controldata(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|line| {
            let (k, v) = line.split_once(':')?;
            Some((k.trim().to_string(), v.trim().to_string()))
        })
        .collect()
}

/// One cluster's data directory plus the settings to run a server on it.
#[derive(Debug, Clone)]
pub struct PgCluster {
    pub major: u32,
    /// Dir with the binaries (`initdb`, `postgres`, `psql`, ...).
    pub bin: PathBuf,
    pub data_dir: PathBuf,
    /// The server's unix socket directory (`-h` for clients).
    pub socket_dir: PathBuf,
    pub port: u16,
    /// `pg_ctl -l` log file.
    pub log_file: PathBuf,
}

impl PgCluster {
    /// `initdb` (trust auth, superuser `postgres`, UTF8, C locale, no sync)
    /// into `dir/data`; `dir` must be writable by the PostgreSQL user (see
    /// the temp dirs made here). Socket dir = `dir`, log = `dir/server.log`.
    /// Appends `listen_addresses = ''`, the port and the socket dir to
    /// postgresql.conf.
    pub fn initdb(major: u32, bin: &Path, dir: &Path, extra_args: &[String]) -> PgCluster {
        let data_dir = dir.join("data");
        let cluster = PgCluster {
            major,
            bin: bin.to_path_buf(),
            data_dir: data_dir.clone(),
            socket_dir: dir.to_path_buf(),
            port: pick_port(),
            log_file: dir.join("server.log"),
        };
        run_ok(
            cluster
                .cmd("initdb")
                .arg("-D")
                .arg(&data_dir)
                .args([
                    "-A",
                    "trust",
                    "-U",
                    PG_SUPERUSER,
                    "-E",
                    "UTF8",
                    "--locale=C",
                    "--no-sync",
                ])
                .args(extra_args),
            &format!("initdb (PostgreSQL {major})"),
            &String::new,
        );
        cluster.append_conf(&format!(
            "\n# walwarden test fixture\nlisten_addresses = ''\nport = {}\nunix_socket_directories = '{}'\nlog_line_prefix = '%m [%p] '\n",
            cluster.port,
            cluster.socket_dir.display()
        ));
        cluster
    }

    /// A command for program `prog` of this cluster's binaries (see [`pg_command`]).
    pub fn cmd(&self, prog: &str) -> Command {
        pg_command(&self.bin, prog)
    }

    /// Appends `text` to DATA/postgresql.conf.
    pub fn append_conf(&self, text: &str) {
        let path = self.data_dir.join("postgresql.conf");
        let mut f = fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
        f.write_all(text.as_bytes())
            .unwrap_or_else(|e| panic!("append to {}: {e}", path.display()));
    }

    /// The last `lines` lines of the server log.
    pub fn log_tail(&self, lines: usize) -> String {
        tail(&self.log_file, lines)
    }

    fn log_context(&self) -> String {
        format!(
            "\n--- last lines of {} ---\n{}",
            self.log_file.display(),
            self.log_tail(40)
        )
    }

    /// `pg_ctl -w start -l LOG`; the returned guard stops the server when dropped.
    pub fn start(&self) -> RunningServer {
        // Armed before pg_ctl runs: a half-started server is stopped too.
        let server = RunningServer {
            cluster: self.clone(),
            stopped: false,
        };
        run_ok(
            self.cmd("pg_ctl")
                .arg("-D")
                .arg(&self.data_dir)
                .arg("-l")
                .arg(&self.log_file)
                .args(["-w", "-t", "60", "start"]),
            &format!("pg_ctl start (PostgreSQL {})", self.major),
            &|| self.log_context(),
        );
        server
    }

    /// `pg_controldata -D DATA` parsed into "key" -> "value".
    pub fn controldata(&self) -> BTreeMap<String, String> {
        let text = run_ok(
            self.cmd("pg_controldata").arg("-D").arg(&self.data_dir),
            "pg_controldata",
            &String::new,
        );
        parse_controldata(&text)
    }

    /// "Database system identifier" of pg_controldata.
    pub fn system_identifier(&self) -> u64 {
        let cd = self.controldata();
        controldata_u64(&cd, "Database system identifier")
    }
}

fn controldata_u64(cd: &BTreeMap<String, String>, key: &str) -> u64 {
    cd.get(key)
        .unwrap_or_else(|| panic!("pg_controldata printed no {key:?}: {cd:#?}"))
        .parse()
        .unwrap_or_else(|e| panic!("pg_controldata {key:?} is not a number: {e}"))
}

/// A started server. Dropping it runs `pg_ctl stop -m immediate` unless it was
/// already stopped with [`RunningServer::stop`].
#[derive(Debug)]
pub struct RunningServer {
    pub cluster: PgCluster,
    stopped: bool,
}

impl RunningServer {
    fn client(&self, prog: &str) -> Command {
        let c = &self.cluster;
        let mut cmd = c.cmd(prog);
        cmd.arg("-h")
            .arg(&c.socket_dir)
            .arg("-p")
            .arg(c.port.to_string())
            .arg("-U")
            .arg(PG_SUPERUSER);
        cmd
    }

    /// Runs `sql` with `psql -X -At -v ON_ERROR_STOP=1` on database `postgres`;
    /// returns stdout with the trailing newline removed. Panics on error.
    pub fn psql(&self, sql: &str) -> String {
        let out = run_ok(
            self.client("psql")
                .args([
                    "-X",
                    "-q",
                    "-A",
                    "-t",
                    "-v",
                    "ON_ERROR_STOP=1",
                    "-d",
                    "postgres",
                    "-c",
                ])
                .arg(sql),
            &format!("psql -c {sql:?}"),
            &|| self.cluster.log_context(),
        );
        out.trim_end_matches('\n').to_string()
    }

    /// `pgbench ARGS postgres`. Panics on error.
    pub fn pgbench(&self, args: &[&str]) -> String {
        run_ok(
            self.client("pgbench").args(args).arg("postgres"),
            &format!("pgbench {}", args.join(" ")),
            &|| self.cluster.log_context(),
        )
    }

    /// `select pg_walfile_name(pg_switch_wal())`: the segment just completed.
    pub fn switch_wal(&self) -> String {
        self.psql("select pg_walfile_name(pg_switch_wal())")
    }

    /// Waits (bounded) until `wal_dir/<segment>.gz` exists and pg_stat_archiver
    /// reports it (or a later name) as last archived.
    pub fn wait_archived(&self, wal_dir: &Path, segment: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let target = wal_dir.join(format!("{segment}.gz"));
        loop {
            let last = self.psql(
                "select coalesce(last_archived_wal, '') || ' archived=' || archived_count \
                 || ' failed=' || failed_count || ' last_failed=' || coalesce(last_failed_wal, '') \
                 from pg_stat_archiver",
            );
            let archived = last.split(' ').next().unwrap_or("");
            if target.exists() && archived.len() >= 24 && &archived[..24] >= segment {
                return;
            }
            if Instant::now() > deadline {
                let mut names: Vec<String> = fs::read_dir(wal_dir)
                    .map(|rd| {
                        rd.filter_map(|e| e.ok())
                            .map(|e| e.file_name().to_string_lossy().into_owned())
                            .collect()
                    })
                    .unwrap_or_default();
                names.sort();
                panic!(
                    "segment {segment} was not archived within {timeout:?}; pg_stat_archiver: \
                     {last}; {} holds {names:?}{}",
                    wal_dir.display(),
                    self.cluster.log_context()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `pg_ctl stop -m fast -w` (archives what is ready, writes a shutdown checkpoint).
    pub fn stop(mut self) {
        self.stop_with("fast");
    }

    fn stop_with(&mut self, mode: &str) {
        let c = &self.cluster;
        run_ok(
            c.cmd("pg_ctl")
                .arg("-D")
                .arg(&c.data_dir)
                .args(["-m", mode, "-w", "-t", "60", "stop"]),
            &format!("pg_ctl stop -m {mode}"),
            &|| c.log_context(),
        );
        // Only now: when the stop failed, Drop still tries `-m immediate`.
        self.stopped = true;
    }
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        if self.stopped || !self.cluster.data_dir.join("postmaster.pid").exists() {
            return;
        }
        self.stopped = true;
        let c = &self.cluster;
        // Never panic in drop (it may run during a panic): report and go on.
        let out = run_as_pg_user(c.cmd("pg_ctl").arg("-D").arg(&c.data_dir).args([
            "-m",
            "immediate",
            "-w",
            "-t",
            "60",
            "stop",
        ]));
        if !out.status.success() {
            eprintln!(
                "warning: pg_ctl stop -m immediate on {} failed: {}",
                c.data_dir.display(),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

/// A real base backup plus WAL archive, made by a real PostgreSQL server with
/// the tutorial's setup (see [`make_real_backup`]). The server is stopped.
#[derive(Debug)]
pub struct RealBackup {
    /// Owns everything below; deleted on drop.
    pub tmp: tempfile::TempDir,
    /// Backup root: `root/<client>/base/{base.tar.gz,pg_wal.tar.gz,backup_manifest}`
    /// and `root/<client>/wal/<segment>.gz` (+ `<segment>.<offset>.backup.gz`).
    pub root: PathBuf,
    pub client: String,
    /// The (stopped) primary's data directory.
    pub data_dir: PathBuf,
    /// pg_controldata "Database system identifier" (= xlp_sysid of every segment).
    pub system_identifier: u64,
    /// Major version (from DATA/PG_VERSION).
    pub pg_major: u32,
    /// backup_label's `START WAL LOCATION: ... (file <this>)`.
    pub start_segment: String,
    /// Highest segment name in the wal folder after the server stopped.
    pub last_archived: String,
    /// The segment named by the last `pg_walfile_name(pg_switch_wal())`;
    /// `last_archived >= last_switched`.
    pub last_switched: String,
    /// Full backup_label text.
    pub backup_label: String,
    /// pg_controldata of the stopped primary ("Latest checkpoint's REDO WAL file", ...).
    pub controldata: BTreeMap<String, String>,
    /// `postgres --version` of the server that made it.
    pub server_version: String,
    /// The primary (stopped); `cluster.start()` runs it again.
    pub cluster: PgCluster,
}

impl RealBackup {
    /// `root/<client>`.
    pub fn client_dir(&self) -> PathBuf {
        self.root.join(&self.client)
    }
    /// `root/<client>/base`.
    pub fn base_dir(&self) -> PathBuf {
        self.client_dir().join("base")
    }
    /// `root/<client>/wal`.
    pub fn wal_dir(&self) -> PathBuf {
        self.client_dir().join("wal")
    }
    /// Sorted names of the files in the wal folder.
    pub fn wal_files(&self) -> Vec<String> {
        list_names(&self.wal_dir())
    }

    /// Sorted names of the gzip'ed segments in the wal folder (`<24 hex>.gz`).
    pub fn archived_segments(&self) -> Vec<String> {
        self.wal_files()
            .into_iter()
            .filter(|n| n.strip_suffix(".gz").is_some_and(is_segment_name))
            .collect()
    }
}

fn list_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read_dir {}: {e}", dir.display()))
        .map(|e| {
            e.unwrap_or_else(|e| panic!("read_dir {}: {e}", dir.display()))
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    names.sort();
    names
}

fn is_segment_name(name: &str) -> bool {
    name.len() == 24
        && name
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b))
}

/// A real PostgreSQL **15** backup for client `client` (see [`make_real_backup_major`]).
pub fn make_real_backup(client: &str) -> RealBackup {
    make_real_backup_major(15, client)
}

/// A real backup made by PostgreSQL `major`, following the tutorial on a
/// local folder: initdb; `wal_level = replica`, `archive_mode = on`,
/// `archive_timeout = 60`, the tutorial's gzip `archive_command` writing into
/// `ROOT/CLIENT/wal`, autovacuum off (fewer stray WAL writes); start;
/// `pgbench -i -s 1`; `pg_switch_wal()`; `pg_basebackup --format=tar --gzip
/// --checkpoint=fast --label=base_backup -D ROOT/CLIENT/base`; `pgbench -t 200`;
/// `pg_switch_wal()`; one insert; `pg_switch_wal()`; wait (≤ 60 s) for the
/// archiver; fast stop. Takes a few seconds.
pub fn make_real_backup_major(major: u32, client: &str) -> RealBackup {
    assert!(
        !client.is_empty()
            && client
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
            && client != "."
            && client != "..",
        "client name {client:?} must be [A-Za-z0-9_.-]+"
    );
    let bin = require_pg_bin(major);
    let tmp = pg_tempdir("walwarden-pg-backup-");
    let root = tmp.path().join("backups");
    let client_dir = root.join(client);
    let base_dir = client_dir.join("base");
    let wal_dir = client_dir.join("wal");
    for dir in [&root, &client_dir, &base_dir, &wal_dir] {
        mkdir_for_pg(dir);
    }

    // Step timings go to stderr: the harness shows them when a test fails.
    let t0 = Instant::now();
    let step = |what: &str| {
        eprintln!(
            "[pg fixture {major}] {:>6.2}s {what}",
            t0.elapsed().as_secs_f64()
        )
    };
    step(&format!("backup fixture in {}", tmp.path().display()));
    let cluster = PgCluster::initdb(major, &bin, tmp.path(), &[]);
    step("initdb done");
    let w = wal_dir.display();
    let archive_command = format!(
        "test ! -f {w}/%f.gz && gzip -c -9 %p > {w}/%f.gz.part && gzip -t {w}/%f.gz.part \
         && sync {w}/%f.gz.part && mv {w}/%f.gz.part {w}/%f.gz"
    );
    cluster.append_conf(&format!(
        "wal_level = replica\narchive_mode = on\narchive_timeout = 60\narchive_command = '{archive_command}'\nautovacuum = off\n"
    ));

    // Declared after `tmp`: dropped (server stopped) before the dir is removed.
    let server = cluster.start();
    step("server started");
    server.pgbench(&["-i", "-s", "1", "-q"]);
    step("pgbench -i done");
    server.switch_wal();
    run_ok(
        server
            .client("pg_basebackup")
            .args([
                "--format=tar",
                "--gzip",
                "--checkpoint=fast",
                "--label=base_backup",
                "-D",
            ])
            .arg(&base_dir),
        "pg_basebackup",
        &|| cluster.log_context(),
    );
    step("pg_basebackup done");
    server.pgbench(&["-t", "200"]);
    step("pgbench -t 200 done");
    server.switch_wal();
    server.psql(
        "create table walwarden_marker (id int primary key, note text, ts timestamptz default clock_timestamp());
         insert into walwarden_marker (id, note) values (1, 'after-pgbench')",
    );
    let last_switched = server.switch_wal();
    server.wait_archived(&wal_dir, &last_switched, ARCHIVE_WAIT);
    step(&format!("{last_switched} archived"));
    server.stop();
    step("server stopped");

    let controldata = cluster.controldata();
    let system_identifier = controldata_u64(&controldata, "Database system identifier");
    let pg_version = fs::read_to_string(cluster.data_dir.join("PG_VERSION"))
        .unwrap_or_else(|e| panic!("read PG_VERSION: {e}"));
    let pg_major: u32 = pg_version
        .trim()
        .parse()
        .unwrap_or_else(|e| panic!("PG_VERSION {pg_version:?}: {e}"));
    assert_eq!(pg_major, major, "PG_VERSION of the new cluster");

    let base_tar = base_dir.join("base.tar.gz");
    let out = Command::new("tar")
        .arg("xzOf")
        .arg(&base_tar)
        .arg("backup_label")
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run tar: {e}"));
    assert!(
        out.status.success(),
        "tar xzOf {} backup_label: {}",
        base_tar.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let backup_label = String::from_utf8_lossy(&out.stdout).into_owned();
    let start_segment = backup_label
        .lines()
        .find_map(|l| l.strip_prefix("START WAL LOCATION: "))
        .and_then(|rest| rest.split_once("(file ")?.1.strip_suffix(')'))
        .unwrap_or_else(|| {
            panic!("no START WAL LOCATION (file ...) in backup_label:\n{backup_label}")
        })
        .to_string();

    let last_archived = list_names(&wal_dir)
        .iter()
        .filter_map(|n| n.strip_suffix(".gz"))
        .filter(|n| is_segment_name(n))
        .max()
        .unwrap_or_else(|| panic!("no archived segment in {}", wal_dir.display()))
        .to_string();
    assert!(
        last_archived >= last_switched,
        "last archived {last_archived} < last switched {last_switched}"
    );

    let server_version =
        String::from_utf8_lossy(&run_as_pg_user(cluster.cmd("postgres").arg("--version")).stdout)
            .trim()
            .to_string();

    RealBackup {
        data_dir: cluster.data_dir.clone(),
        tmp,
        root,
        client: client.to_string(),
        system_identifier,
        pg_major,
        start_segment,
        last_archived,
        last_switched,
        backup_label,
        controldata,
        server_version,
        cluster,
    }
}

/// A WAL segment of a freshly initdb'd cluster (no server started).
#[derive(Debug)]
pub struct InitdbSegment {
    /// Owns the cluster; deleted on drop.
    pub tmp: tempfile::TempDir,
    pub major: u32,
    /// `DATA/pg_wal/<segment_name>`: `000000010000000000000001` with the default
    /// 16 MiB segments. With small `--wal-segsize` (1, 2, 4 MiB) initdb writes more
    /// than one segment and removes/recycles the first ones, so this is the
    /// segment of the latest checkpoint's REDO point (pg_controldata "Latest
    /// checkpoint's REDO WAL file"), the one segment sure to start with a valid
    /// long page header. (Later files in pg_wal may be recycled segments whose
    /// headers still carry their old address.)
    pub segment: PathBuf,
    /// File name of `segment` (24 hex digits).
    pub segment_name: String,
    /// pg_controldata "Database system identifier" of that version.
    pub system_identifier: u64,
    /// pg_controldata "Bytes per WAL segment".
    pub seg_size: u32,
    pub data_dir: PathBuf,
    /// pg_controldata "WAL block size".
    pub wal_block_size: u32,
    pub controldata: BTreeMap<String, String>,
}

/// `initdb` with PostgreSQL `major` (optionally `--wal-segsize=MB`) and returns
/// its WAL segment (see [`InitdbSegment::segment`]). Panics when that major's
/// binaries are missing.
pub fn initdb_segment(major: u32, wal_segsize_mb: Option<u32>) -> InitdbSegment {
    let bin = require_pg_bin(major);
    let tmp = pg_tempdir(&format!("walwarden-pg{major}-initdb-"));
    let extra: Vec<String> = wal_segsize_mb
        .map(|mb| format!("--wal-segsize={mb}"))
        .into_iter()
        .collect();
    let cluster = PgCluster::initdb(major, &bin, tmp.path(), &extra);
    let controldata = cluster.controldata();
    let segment_name = controldata
        .get("Latest checkpoint's REDO WAL file")
        .filter(|n| is_segment_name(n))
        .unwrap_or_else(|| panic!("pg_controldata printed no REDO WAL file: {controldata:#?}"))
        .clone();
    let segment = cluster.data_dir.join("pg_wal").join(&segment_name);
    assert!(
        segment.is_file(),
        "initdb (PostgreSQL {major}) left no {}",
        segment.display()
    );
    let system_identifier = controldata_u64(&controldata, "Database system identifier");
    let seg_size = controldata_u64(&controldata, "Bytes per WAL segment") as u32;
    let wal_block_size = controldata_u64(&controldata, "WAL block size") as u32;
    InitdbSegment {
        data_dir: cluster.data_dir.clone(),
        tmp,
        major,
        segment,
        segment_name,
        system_identifier,
        seg_size,
        wal_block_size,
        controldata,
    }
}
