//! What onboarding would change: the actions that bring the backup server
//! to what a `SetupRequest` asks (root, user, folders, modes, key), compared
//! with what is there, so a second run plans nothing. Reads, never writes.

use std::fmt;
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::{CLIENT_MODE, ROOT_MODE, SetupError, SetupRequest, io_err, lookup_ids, lookup_uid};
use crate::pg::local::shell_quote;

/// One change to the backup server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// The backup root itself, owned by root.
    CreateRoot { path: PathBuf },
    /// Let other users pass through the root (x, not r) to their own folder.
    OpenRoot { path: PathBuf, mode: u32 },
    CreateUser {
        name: String,
        home: PathBuf,
        client: String,
    },
    CreateDir {
        path: PathBuf,
        user: String,
        mode: u32,
    },
    /// An existing path with the wrong owner or mode.
    Secure {
        path: PathBuf,
        user: String,
        mode: u32,
    },
    /// Append (or, for a key present without `restrict`, replace) the key's line.
    AuthorizeKey {
        path: PathBuf,
        user: String,
        line: String,
        replaces: Option<String>,
    },
}

impl Action {
    /// The shell command this action amounts to, as the engineer would type it.
    pub fn as_command(&self) -> String {
        let q = |p: &Path| shell_quote(&p.to_string_lossy());
        match self {
            Action::CreateRoot { path } => {
                format!("install -d -o root -g root -m {ROOT_MODE:o} {}", q(path))
            }
            Action::OpenRoot { path, mode } => format!("chmod {mode:o} {}", q(path)),
            Action::CreateUser { name, home, client } => format!(
                "useradd --create-home --home-dir {} --shell /bin/sh --user-group --password '*' --comment {} {name}",
                q(home),
                shell_quote(&format!("walwarden backups of {client}"))
            ),
            Action::CreateDir { path, user, mode } => {
                format!("install -d -o {user} -g {user} -m {mode:o} {}", q(path))
            }
            Action::Secure { path, user, mode } => {
                format!("chown {user}: {p} && chmod {mode:o} {p}", p = q(path))
            }
            Action::AuthorizeKey {
                path,
                user,
                line,
                replaces: None,
            } => format!(
                "printf '%s\\n' {} >> {}  # as {user}, mode 600",
                shell_quote(line),
                q(path)
            ),
            Action::AuthorizeKey {
                path,
                user,
                line,
                replaces: Some(old),
            } => format!(
                "# in {} (as {user}): replace the line {} with {}",
                q(path),
                shell_quote(old),
                shell_quote(line)
            ),
        }
    }

    /// Whether this action needs root when walwarden runs as `euid`.
    pub fn needs_root(&self, euid: u32) -> bool {
        match self {
            Action::CreateRoot { .. } | Action::CreateUser { .. } => euid != 0,
            Action::OpenRoot { path, .. } => {
                euid != 0 && fs::metadata(path).map(|m| m.uid() != euid).unwrap_or(true)
            }
            Action::CreateDir { user, .. }
            | Action::Secure { user, .. }
            | Action::AuthorizeKey { user, .. } => {
                euid != 0 && lookup_uid(user).is_none_or(|uid| uid != euid)
            }
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = match self {
            Action::CreateRoot { path } => format!("create the backup root {}", path.display()),
            Action::OpenRoot { path, mode } => format!(
                "let client users pass through {} (mode {mode:o}: enter, not list)",
                path.display()
            ),
            Action::CreateUser { name, home, .. } => format!(
                "create the unprivileged user {name} (home {}, no password, not a sudoer)",
                home.display()
            ),
            Action::CreateDir { path, user, mode } => {
                format!("create {} owned by {user}, mode {mode:o}", path.display())
            }
            Action::Secure { path, user, mode } => {
                format!("give {} to {user}, mode {mode:o}", path.display())
            }
            Action::AuthorizeKey {
                path,
                replaces: None,
                ..
            } => format!(
                "authorize the target's key in {} (restrict)",
                path.display()
            ),
            Action::AuthorizeKey {
                path,
                replaces: Some(_),
                ..
            } => format!(
                "add `restrict` to the target's key already in {}",
                path.display()
            ),
        };
        f.write_str(&text)
    }
}

/// The actions that bring the backup server to what `request` asks, in order;
/// empty when it already is.
pub fn plan(request: &SetupRequest) -> Result<Vec<Action>, SetupError> {
    let mut actions = Vec::new();
    let root = &request.root;
    match fs::metadata(root) {
        Ok(meta) if !meta.is_dir() => {
            return Err(SetupError::Blocked {
                path: root.display().to_string(),
                why: "the backup root exists and is not a folder".into(),
            });
        }
        Ok(meta) => {
            // Client users must pass through the root to reach their folder.
            if meta.mode() & 0o001 == 0 {
                actions.push(Action::OpenRoot {
                    path: root.clone(),
                    mode: (meta.mode() & 0o7777) | 0o001,
                });
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            actions.push(Action::CreateRoot { path: root.clone() })
        }
        Err(e) => return Err(io_err(format!("read {}", root.display()))(e)),
    }
    if let Some(parent) = root.parent() {
        check_ancestors_passable(parent)?;
    }

    let user_exists = lookup_uid(&request.user).is_some();
    if !user_exists {
        actions.push(Action::CreateUser {
            name: request.user.clone(),
            home: request.home.clone(),
            client: request.client.clone(),
        });
    } else if lookup_uid(&request.user) == Some(0) {
        return Err(SetupError::BadUserName(format!(
            "{} (it is root: each client needs its own unprivileged user)",
            request.user
        )));
    }

    for dir in [request.client_dir(), request.base_dir(), request.wal_dir()] {
        actions.extend(secure_dir(&dir, &request.user, CLIENT_MODE, user_exists)?);
    }

    if let Some(key) = &request.public_key {
        let ssh_dir = request.home.join(".ssh");
        // A new user's home is created by useradd; .ssh may be missing either way.
        actions.extend(secure_dir(&ssh_dir, &request.user, 0o700, user_exists)?);
        let path = request.authorized_keys();
        let line = match &request.access {
            super::KeyAccess::Receiver(forced) => {
                super::receiver_lines::authorized_keys_line(key, forced).map_err(|e| {
                    SetupError::Blocked {
                        path: path.display().to_string(),
                        why: e.to_string(),
                    }
                })?
            }
            super::KeyAccess::Shell => key.authorized_line(),
        };
        let existing = fs::read_to_string(&path).unwrap_or_default();
        let present = existing.lines().find(|l| key_blob_of(l) == Some(&key.blob));
        // The key's line as wanted: an existing one is replaced when it gives
        // the key other powers (a shell key moved to the receiver, or back).
        let wanted = |old: &str| match &request.access {
            super::KeyAccess::Receiver(_) => old.trim() == line,
            super::KeyAccess::Shell => has_restrict(old) && !old.contains("command="),
        };
        match present {
            Some(old) if wanted(old) => {}
            Some(old) => actions.push(Action::AuthorizeKey {
                path: path.clone(),
                user: request.user.clone(),
                line,
                replaces: Some(old.to_owned()),
            }),
            None => actions.push(Action::AuthorizeKey {
                path: path.clone(),
                user: request.user.clone(),
                line,
                replaces: None,
            }),
        }
        if path.exists() {
            actions.extend(secure_dir_like(&path, &request.user, 0o600)?);
        }
    }
    Ok(actions)
}

fn secure_dir(
    dir: &Path,
    user: &str,
    mode: u32,
    user_exists: bool,
) -> Result<Vec<Action>, SetupError> {
    match fs::symlink_metadata(dir) {
        Ok(meta) if meta.file_type().is_symlink() || !meta.is_dir() => Err(SetupError::Blocked {
            path: dir.display().to_string(),
            why: "exists and is not a folder (a symlink is refused too)".into(),
        }),
        Ok(_) if !user_exists => Ok(vec![Action::Secure {
            path: dir.to_owned(),
            user: user.to_owned(),
            mode,
        }]),
        Ok(_) => secure_dir_like(dir, user, mode),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(vec![Action::CreateDir {
            path: dir.to_owned(),
            user: user.to_owned(),
            mode,
        }]),
        Err(e) => Err(io_err(format!("read {}", dir.display()))(e)),
    }
}

/// `Secure` when the existing `path` is not owned by `user` with `mode`.
fn secure_dir_like(path: &Path, user: &str, mode: u32) -> Result<Vec<Action>, SetupError> {
    let meta = fs::symlink_metadata(path).map_err(io_err(format!("read {}", path.display())))?;
    let (uid, gid) = lookup_ids(user).unwrap_or((u32::MAX, u32::MAX));
    if meta.uid() == uid && meta.gid() == gid && meta.mode() & 0o7777 == mode {
        Ok(Vec::new())
    } else {
        Ok(vec![Action::Secure {
            path: path.to_owned(),
            user: user.to_owned(),
            mode,
        }])
    }
}

/// Every folder above the root must let others through, or no client user can
/// reach its folder; walwarden does not change folders it does not own.
fn check_ancestors_passable(mut dir: &Path) -> Result<(), SetupError> {
    loop {
        if let Ok(meta) = fs::metadata(dir)
            && meta.mode() & 0o001 == 0
        {
            return Err(SetupError::Blocked {
                path: dir.display().to_string(),
                why: format!(
                    "mode {:o}: other users cannot pass through it to the backup root; \
                     `chmod o+x {}` or choose a root elsewhere",
                    meta.mode() & 0o7777,
                    shell_quote(&dir.to_string_lossy())
                ),
            });
        }
        match dir.parent() {
            Some(parent) => dir = parent,
            None => return Ok(()),
        }
    }
}

pub(super) fn key_blob_of(line: &str) -> Option<&str> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let words: Vec<&str> = line.split_whitespace().collect();
    // Options come first when the first word is not a key type.
    let kind_at = words
        .iter()
        .position(|w| w.starts_with("ssh-") || w.starts_with("ecdsa-") || w.starts_with("sk-"))?;
    words.get(kind_at + 1).copied()
}

pub(super) fn has_restrict(line: &str) -> bool {
    line.split_whitespace()
        .next()
        .is_some_and(|options| options.split(',').any(|o| o == "restrict"))
}

/// A warning when the client's wal/ already holds segments: a new cluster
/// (a new server, or one migrated with pg_dumpall) starts its WAL names again
/// at 000000010000000000000001, so `test ! -f` would refuse its segments, or
/// worse, two systems' segments would mix in one folder.
pub fn existing_archive_warning(request: &SetupRequest) -> Option<String> {
    let segments = fs::read_dir(request.wal_dir())
        .ok()?
        .flatten()
        .filter(|e| {
            matches!(
                crate::archive::wal::WalFileKind::classify(&e.file_name().to_string_lossy()),
                crate::archive::wal::WalFileKind::Segment { .. }
            )
        })
        .count();
    (segments > 0).then(|| {
        format!(
            "{} already holds {segments} WAL segments: if this is a new database system (a new server, or a pg_dumpall migration), move the old folder aside first (`mv {} {}.old-$(date +%F)`), or its segments would be refused or mixed with the old ones",
            request.wal_dir().display(),
            shell_quote(&request.client_dir().to_string_lossy()),
            shell_quote(&request.client_dir().to_string_lossy()),
        )
    })
}

/// The actions of `plan` that need root, as one message, when not root.
pub fn refuse_without_root(actions: &[Action]) -> Result<(), SetupError> {
    let euid = nix::unistd::geteuid().as_raw();
    let needing: Vec<String> = actions
        .iter()
        .filter(|a| a.needs_root(euid))
        .map(|a| format!("  {a}:  {}", a.as_command()))
        .collect();
    if needing.is_empty() {
        Ok(())
    } else {
        Err(SetupError::NeedsRoot(needing.join("\n")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_lines_are_matched_by_blob_whatever_their_options() {
        assert_eq!(key_blob_of("ssh-rsa AAAAB3Nza c"), Some("AAAAB3Nza"));
        assert_eq!(
            key_blob_of("restrict,command=\"x\" ssh-rsa AAAAB3Nza c"),
            Some("AAAAB3Nza")
        );
        assert_eq!(key_blob_of("# ssh-rsa AAAA"), None);
        assert!(has_restrict("restrict ssh-rsa AAAA"));
        assert!(has_restrict("no-pty,restrict ssh-rsa AAAA"));
        assert!(!has_restrict("ssh-rsa AAAA restrict"));
    }
}
