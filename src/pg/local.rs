//! The local PostgreSQL: its binaries and major version, and running its
//! commands as the OS user it runs as (walwarden is often run with sudo;
//! PostgreSQL refuses to run as root).

use std::path::{Path, PathBuf};
use std::process::Command;

use thiserror::Error;

/// Why the local PostgreSQL's user or binaries cannot be used.
#[derive(Debug, Error)]
pub enum LocalError {
    #[error("no OS user named {0:?} (set --os-user to the user PostgreSQL runs as)")]
    NoSuchUser(String),
    #[error("PostgreSQL must not run as root: pass --os-user postgres (or the user it runs as)")]
    RootUser,
    #[error("cannot run {program}: {source} (point --pg-bin at the PostgreSQL binaries)")]
    CannotRun {
        program: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read a version from {program}: {output:?}")]
    NoVersion { program: PathBuf, output: String },
}

/// The OS user PostgreSQL runs as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgUser {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
}

impl PgUser {
    pub fn lookup(name: &str) -> Result<PgUser, LocalError> {
        let user = nix::unistd::User::from_name(name)
            .ok()
            .flatten()
            .ok_or_else(|| LocalError::NoSuchUser(name.to_owned()))?;
        if user.uid.is_root() {
            return Err(LocalError::RootUser);
        }
        Ok(PgUser {
            name: name.to_owned(),
            uid: user.uid.as_raw(),
            gid: user.gid.as_raw(),
        })
    }

    /// A command run as this user: through `runuser` when walwarden is root,
    /// directly when walwarden already is this user.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        if nix::unistd::geteuid().is_root() {
            let mut command = Command::new("runuser");
            command.arg("-u").arg(&self.name).arg("--").arg(program);
            // walwarden's own folder may be closed to that user, or absent in
            // a unit's sandbox (private /tmp): psql then warns "could not
            // change directory" on stderr. Every path given is absolute.
            command.current_dir("/");
            command
        } else {
            Command::new(program)
        }
    }

    /// Whether walwarden can act as this user (root, or the user itself).
    pub fn can_act_as(&self) -> bool {
        let euid = nix::unistd::geteuid();
        euid.is_root() || euid.as_raw() == self.uid
    }
}

/// Whether a postmaster named by `data/postmaster.pid` is alive.
pub fn postmaster_alive(data: &Path) -> bool {
    std::fs::read_to_string(data.join("postmaster.pid"))
        .ok()
        .and_then(|t| t.lines().next()?.trim().parse::<i32>().ok())
        .is_some_and(|pid| nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok())
}

/// Debian's layout: `/usr/lib/postgresql/<major>/bin`.
pub fn default_pg_bin(major: u32) -> PathBuf {
    PathBuf::from(format!("/usr/lib/postgresql/{major}/bin"))
}

/// The major version of the server binaries in `pg_bin`, from `postgres --version`
/// (`postgres (PostgreSQL) 15.20 (Debian 15.20-0+deb12u1)`).
pub fn server_major(pg_bin: &Path) -> Result<u32, LocalError> {
    let postgres = pg_bin.join("postgres");
    let output = Command::new(&postgres)
        .arg("--version")
        .output()
        .map_err(|source| LocalError::CannotRun {
            program: postgres.clone(),
            source,
        })?;
    let text = String::from_utf8_lossy(&output.stdout);
    parse_major(&text).ok_or_else(|| LocalError::NoVersion {
        program: postgres,
        output: text.into_owned(),
    })
}

pub fn parse_major(version_output: &str) -> Option<u32> {
    let number = version_output
        .split_whitespace()
        .find(|w| w.chars().next().is_some_and(|c| c.is_ascii_digit()))?;
    number.split(['.', 'b', 'r', 'd']).next()?.parse().ok()
}

/// Quoting lives with the other display text; many callers name it here.
pub use crate::display::shell_quote;

/// How a command reads on screen.
pub fn display(command: &Command) -> String {
    std::iter::once(command.get_program())
        .chain(command.get_args())
        .map(|w| shell_quote(&w.to_string_lossy()))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_major_versions() {
        assert_eq!(
            parse_major("postgres (PostgreSQL) 15.20 (Debian 15.20-0+deb12u1)\n"),
            Some(15)
        );
        assert_eq!(parse_major("postgres (PostgreSQL) 18.1\n"), Some(18));
        assert_eq!(parse_major("postgres (PostgreSQL) 17beta2\n"), Some(17));
        assert_eq!(parse_major("nonsense"), None);
    }

    #[test]
    fn quotes_for_the_shell() {
        assert_eq!(
            shell_quote("/var/lib/postgresql/15/main"),
            "/var/lib/postgresql/15/main"
        );
        assert_eq!(shell_quote("it's here"), "'it'\\''s here'");
        assert_eq!(shell_quote(""), "''");
    }
}
