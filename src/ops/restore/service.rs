//! The local instance's service: how this restore stops and starts the
//! PostgreSQL on the data directory (configured command lines, Debian's
//! `pg_ctlcluster` when /etc/postgresql names the directory, else `pg_ctl`
//! as the PostgreSQL user), and whether a postmaster is alive there.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use super::request::RestoreRequest;
use crate::pg::local;

/// How this restore controls the local instance, resolved at preflight.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum ServiceControl {
    /// `pg_ctl -D DATA [-l LOG] start|stop` as the PostgreSQL user.
    PgCtl,
    /// Shell command lines run as walwarden (placeholders filled in).
    Commands {
        start: String,
        stop: String,
        /// Where they come from, for the journal ("configured", "Debian cluster 15/main").
        why: String,
    },
}

/// The Debian cluster (`/etc/postgresql/MAJOR/NAME/postgresql.conf`) whose
/// `data_directory` is `data_dir`, if any.
pub fn debian_cluster(etc: &Path, major: u32, data_dir: &Path) -> Option<String> {
    let dir = etc.join(major.to_string());
    let wanted = fs::canonicalize(data_dir).unwrap_or_else(|_| data_dir.to_owned());
    fs::read_dir(dir).ok()?.flatten().find_map(|entry| {
        let conf = fs::read_to_string(entry.path().join("postgresql.conf")).ok()?;
        let named = conf.lines().find_map(|line| {
            let line = line.split('#').next()?.trim();
            let (key, value) = line.split_once('=')?;
            (key.trim() == "data_directory").then(|| value.trim().trim_matches('\'').to_owned())
        })?;
        let named = PathBuf::from(named);
        let named = fs::canonicalize(&named).unwrap_or(named);
        (named == wanted).then(|| entry.file_name().to_string_lossy().into_owned())
    })
}

/// The local instance's control and the log its start writes.
pub(super) fn resolve_service(
    request: &RestoreRequest,
    major: u32,
    pg_bin: &Path,
    default_log: PathBuf,
) -> (ServiceControl, PathBuf) {
    let data = &request.data_dir;
    let local = &request.local;
    if local.start.is_some() || local.stop.is_some() {
        let log = local.log.clone().unwrap_or(default_log);
        let pg_ctl = |verb: &str| {
            format!(
                "runuser -u {} -- {{pg_bin}}/pg_ctl -D {{data}} {verb}",
                request.os_user
            )
        };
        let start = local
            .start
            .clone()
            .unwrap_or_else(|| pg_ctl("-l {log} -W start"));
        let stop = local
            .stop
            .clone()
            .unwrap_or_else(|| pg_ctl("stop -m fast -w -t 120"));
        let fill = |text: &str| fill_placeholders(text, data, &log, major, pg_bin);
        return (
            ServiceControl::Commands {
                start: fill(&start),
                stop: fill(&stop),
                why: "configured".into(),
            },
            log,
        );
    }
    if let Some(cluster) = debian_cluster(Path::new("/etc/postgresql"), major, data) {
        let log = local.log.clone().unwrap_or_else(|| {
            PathBuf::from(format!(
                "/var/log/postgresql/postgresql-{major}-{cluster}.log"
            ))
        });
        return (
            ServiceControl::Commands {
                start: format!("pg_ctlcluster {major} {cluster} start"),
                stop: format!("pg_ctlcluster {major} {cluster} stop -m fast"),
                why: format!("Debian cluster {major}/{cluster}"),
            },
            log,
        );
    }
    (
        ServiceControl::PgCtl,
        local.log.clone().unwrap_or(default_log),
    )
}

pub(super) use crate::pg::local::postmaster_alive;

/// A configured command line, run by `sh -c` as walwarden.
pub(super) fn shell(line: &str) -> Command {
    let mut command = Command::new("sh");
    command.arg("-c").arg(line);
    command
}

/// A service manager's stop may return before the postmaster has gone.
pub(super) fn wait_for_pid_file_gone(pid_file: &Path, within: Duration) {
    let deadline = Instant::now() + within;
    while pid_file.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `text` with `{data}`, `{log}`, `{major}` and `{pg_bin}` filled in, shell-quoted.
pub(super) fn fill_placeholders(
    text: &str,
    data: &Path,
    log: &Path,
    major: u32,
    pg_bin: &Path,
) -> String {
    let quote = |p: &Path| local::shell_quote(&p.to_string_lossy());
    text.replace("{data}", &quote(data))
        .replace("{log}", &quote(log))
        .replace("{major}", &major.to_string())
        .replace("{pg_bin}", &quote(pg_bin))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_debian_cluster_is_found_by_its_data_directory() {
        let etc = tempfile::tempdir().unwrap();
        let data = tempfile::tempdir().unwrap();
        let cluster = etc.path().join("15").join("main");
        fs::create_dir_all(&cluster).unwrap();
        fs::write(
            cluster.join("postgresql.conf"),
            format!(
                "# comment\nport = 5432\ndata_directory = '{}'\t\t# use data in another directory\n",
                data.path().display()
            ),
        )
        .unwrap();
        assert_eq!(
            debian_cluster(etc.path(), 15, data.path()),
            Some("main".into())
        );
        assert_eq!(debian_cluster(etc.path(), 16, data.path()), None);
        assert_eq!(
            debian_cluster(etc.path(), 15, Path::new("/srv/other")),
            None
        );
    }

    #[test]
    fn placeholders_are_filled_and_quoted() {
        let line = fill_placeholders(
            "{pg_bin}/pg_ctl -D {data} -l {log} start # {major}",
            Path::new("/srv/my data"),
            Path::new("/var/log/pg.log"),
            15,
            Path::new("/usr/lib/postgresql/15/bin"),
        );
        assert_eq!(
            line,
            "/usr/lib/postgresql/15/bin/pg_ctl -D '/srv/my data' -l /var/log/pg.log start # 15"
        );
    }
}
