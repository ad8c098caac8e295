//! The client key's `authorized_keys` line with the receiver as its forced
//! command, for `setup` to write (the target server's side of the receiver,
//! its archive_command and base upload, is in `target_lines`). Pure: text
//! in, text out.
//!
//! Two quoting layers meet here. The forced command is run by the client
//! user's shell, so each word is shell-quoted; authorized_keys keeps it
//! between double quotes, where sshd reads `\"` as a quote.

use std::path::PathBuf;

use thiserror::Error;

use super::PublicKey;
use crate::pg::local::shell_quote;

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

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> PublicKey {
        PublicKey::parse(
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHx postgres@db1\n",
            "k.pub",
        )
        .unwrap()
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
}
