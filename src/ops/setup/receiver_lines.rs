//! The lines that go with the receiver, for `setup` to write and print:
//! the client key's `authorized_keys` line with the forced command, the
//! target server's `archive_command` (ssh with connect and keep-alive
//! timeouts, quoted for postgresql.conf) and its base backup upload.
//! Pure: text in, text out.
//!
//! Three quoting layers meet here. The forced command is run by the client
//! user's shell, so each word is shell-quoted; authorized_keys keeps it
//! between double quotes, where sshd reads `\"` as a quote. The
//! archive_command is a postgresql.conf string: PostgreSQL replaces `%p`,
//! `%f` and `%%`, so a `%` of a path is doubled, and the whole value sits
//! between single quotes where `'` is doubled and a backslash escapes.

use std::path::PathBuf;

use thiserror::Error;

use super::{ArchiveRoute, PublicKey};
use crate::pg::local::shell_quote;

pub use super::target_lines::SSH_OPTIONS;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum LineError {
    #[error("{what} holds a line break, which an authorized_keys line cannot: {text:?}")]
    LineBreak { what: &'static str, text: String },
}

/// The forced command of a client's key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForcedCommand {
    /// The walwarden binary on the backup server (absolute: sshd's PATH is short).
    pub program: PathBuf,
    pub root: PathBuf,
    pub client: String,
    pub config: Option<PathBuf>,
}

impl ForcedCommand {
    /// `walwarden receive --root ROOT --client NAME [--config FILE]`, each
    /// word quoted for the client user's shell.
    pub fn command_line(&self) -> String {
        let mut words = vec![
            shell_quote(&self.program.to_string_lossy()),
            "receive".to_owned(),
            "--root".to_owned(),
            shell_quote(&self.root.to_string_lossy()),
            "--client".to_owned(),
            shell_quote(&self.client),
        ];
        if let Some(config) = &self.config {
            words.push("--config".to_owned());
            words.push(shell_quote(&config.to_string_lossy()));
        }
        words.join(" ")
    }
}

/// `restrict,command="…" TYPE KEY [COMMENT]`: no pty, no forwarding, and
/// whatever the key asks, the receiver runs.
pub fn authorized_keys_line(key: &PublicKey, forced: &ForcedCommand) -> Result<String, LineError> {
    let command = forced.command_line();
    for (what, text) in [
        ("the forced command", command.as_str()),
        ("the key's comment", key.comment.as_str()),
    ] {
        if text.contains(['\n', '\r']) {
            return Err(LineError::LineBreak {
                what,
                text: text.to_owned(),
            });
        }
    }
    let mut line = format!(
        "restrict,command=\"{}\" {} {}",
        command.replace('"', "\\\""),
        key.kind,
        key.blob
    );
    if !key.comment.is_empty() {
        line.push(' ');
        line.push_str(&key.comment);
    }
    Ok(line)
}

/// The key part of an authorized_keys line (`TYPE BLOB`), whatever its options.
pub fn key_of_line(line: &str) -> Option<(String, String)> {
    let words = split_options_aware(line.trim());
    let at = words.iter().position(|w| {
        w.starts_with("ssh-")
            || w.starts_with("ecdsa-sha2-")
            || w.starts_with("sk-ssh-")
            || w.starts_with("sk-ecdsa-")
    })?;
    Some((words[at].clone(), words.get(at + 1)?.clone()))
}

/// Splits an authorized_keys line on spaces outside double quotes.
fn split_options_aware(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if quoted && chars.peek() == Some(&'"') => {
                word.push('"');
                chars.next();
            }
            '"' => {
                quoted = !quoted;
                word.push(c);
            }
            c if c.is_whitespace() && !quoted => {
                if !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
            }
            c => word.push(c),
        }
    }
    if !word.is_empty() {
        words.push(word);
    }
    words
}

pub use super::conf_quote;

/// The archive_command value (before postgresql.conf quoting): the
/// segment (gzip'ed unless `route.compress` is off) piped to the receiver.
pub fn archive_command(route: &ArchiveRoute) -> String {
    let ssh = route.ssh_prefix(true).join(" ");
    if route.compress {
        format!("gzip -c %p | {ssh} 'put-wal %f.gz'")
    } else {
        format!("{ssh} 'put-wal %f' < %p")
    }
}

/// `archive_command = '…'`, ready for postgresql.conf.
pub fn archive_command_setting(route: &ArchiveRoute) -> String {
    format!("archive_command = {}", conf_quote(&archive_command(route)))
}

/// The target's base backup, then its upload and finish, for a person to
/// paste on the target server as postgres: pg_basebackup into `scratch`,
/// then one subshell that sends each file with `put-base` under an ID made
/// of the time, and `finish-base` (which verifies it and makes it current).
pub fn base_upload_commands(route: &ArchiveRoute, scratch: &str) -> Vec<String> {
    let ssh = route.ssh_prefix(false).join(" ");
    vec![
        route.basebackup_command(scratch),
        format!(
            "(set -e; cd {}; id=$(date -u +%Y%m%dT%H%M%SZ); \
             for f in base.tar.gz pg_wal.tar.gz backup_manifest; do \
             if [ -f \"$f\" ]; then {ssh} \"put-base $id $f\" < \"$f\"; fi; done; \
             {ssh} \"finish-base $id\")",
            shell_quote(scratch)
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn key() -> PublicKey {
        PublicKey::parse(
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHx postgres@db1\n",
            "k.pub",
        )
        .unwrap()
    }

    fn route() -> ArchiveRoute {
        let request =
            crate::ops::setup::SetupRequest::new(Path::new("/var/lib/postgresql/backups"), "shop")
                .unwrap();
        ArchiveRoute::for_request(&request, "backup1")
    }

    #[test]
    fn the_authorized_keys_line_forces_the_receiver() {
        let forced = ForcedCommand {
            program: "/usr/bin/walwarden".into(),
            root: "/var/lib/postgresql/backups".into(),
            client: "shop".into(),
            config: None,
        };
        assert_eq!(
            authorized_keys_line(&key(), &forced).unwrap(),
            "restrict,command=\"/usr/bin/walwarden receive --root /var/lib/postgresql/backups --client shop\" ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHx postgres@db1"
        );
        // Odd paths are quoted for the shell, and their double quotes for sshd.
        let odd = ForcedCommand {
            root: "/srv/my \"backups\"".into(),
            config: Some("/etc/walwarden/it's.toml".into()),
            ..forced.clone()
        };
        let line = authorized_keys_line(&key(), &odd).unwrap();
        assert_eq!(
            line,
            "restrict,command=\"/usr/bin/walwarden receive --root '/srv/my \\\"backups\\\"' --client shop --config '/etc/walwarden/it'\\''s.toml'\" ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHx postgres@db1"
        );
        assert_eq!(
            key_of_line(&line),
            Some(("ssh-ed25519".into(), "AAAAC3NzaC1lZDI1NTE5AAAAIHx".into()))
        );
        let broken = ForcedCommand {
            root: "/srv/a\nb".into(),
            ..forced
        };
        assert!(authorized_keys_line(&key(), &broken).is_err());
    }

    #[test]
    fn the_archive_command_sends_to_the_receiver_with_timeouts() {
        let mut route = route();
        assert_eq!(
            archive_command(&route),
            "gzip -c %p | ssh -o BatchMode=yes -o ConnectTimeout=10 -o ServerAliveInterval=15 -o ServerAliveCountMax=3 shopbackup@backup1 'put-wal %f.gz'"
        );
        assert_eq!(
            archive_command_setting(&route),
            "archive_command = 'gzip -c %p | ssh -o BatchMode=yes -o ConnectTimeout=10 -o ServerAliveInterval=15 -o ServerAliveCountMax=3 shopbackup@backup1 ''put-wal %f.gz'''"
        );
        route.compress = false;
        route.ssh_port = Some(2222);
        route.identity = Some("/var/lib/postgresql/.ssh/100%_key".into());
        route.known_hosts = Some("/etc/walwarden/known hosts".into());
        assert_eq!(
            archive_command(&route),
            "ssh -o BatchMode=yes -o ConnectTimeout=10 -o ServerAliveInterval=15 -o ServerAliveCountMax=3 -p 2222 -i /var/lib/postgresql/.ssh/100%%_key -o 'UserKnownHostsFile=/etc/walwarden/known hosts' shopbackup@backup1 'put-wal %f' < %p"
        );
        assert_eq!(conf_quote("a'b\\c"), "'a''b\\\\c'");
    }

    #[test]
    fn the_base_upload_puts_each_file_then_finishes() {
        let lines = base_upload_commands(&route(), "/tmp/backup now");
        assert_eq!(lines.len(), 2);
        assert!(
            lines[0].starts_with("pg_basebackup --pgdata='/tmp/backup now' --format=tar --gzip"),
            "{}",
            lines[0]
        );
        assert!(lines[1].contains("cd '/tmp/backup now';"), "{}", lines[1]);
        assert!(
            lines[1].contains("\"put-base $id $f\" < \"$f\""),
            "{}",
            lines[1]
        );
        assert!(
            lines[1].ends_with("shopbackup@backup1 \"finish-base $id\")"),
            "{}",
            lines[1]
        );
    }
}
