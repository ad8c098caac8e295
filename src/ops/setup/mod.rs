//! Onboarding a client on the backup server (the tutorial's "Setting up a
//! backup server"): the client's folders, its own unprivileged user, mode 700
//! so no client reads another's backups, its key in authorized_keys with
//! `restrict` and, by default, the receiver as its forced command (the key
//! can then only add WAL and base backups: `receiver_lines`), and the lines
//! the target server needs, ready to paste.
//!
//! [`plan`] compares what should be with what is and returns only the
//! actions that change something, so running setup twice changes nothing the
//! second time. [`apply`] runs a plan one action at a time; every action can
//! say itself as the shell command it amounts to, so the engineer sees each one
//! before it runs (and `--dry-run` shows only that).

mod apply;
mod plan;
pub mod receiver_lines;
mod target_lines;

use std::io;
use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::archive::folder;

pub use apply::{apply, copy_test};
pub use plan::{Action, existing_archive_warning, plan, refuse_without_root};
pub use target_lines::ArchiveRoute;

/// The folder mode the tutorial asks for: the client's user only.
pub const CLIENT_MODE: u32 = 0o700;
/// The backup root: others may pass through it to their own folder, not list it.
pub const ROOT_MODE: u32 = 0o711;

#[derive(Debug, Error)]
pub enum SetupError {
    #[error(
        "{0:?} is not a usable client name: use letters, digits, '-' and '_' (it names a folder and a user)"
    )]
    BadClientName(String),
    #[error(
        "{0:?} is not a usable user name: lowercase letters, digits, '-' and '_', starting with a letter, at most 32 characters"
    )]
    BadUserName(String),
    #[error(
        "{path}: not an OpenSSH public key ({why}); give the key's .pub file, as ssh-keygen wrote it"
    )]
    BadPublicKey { path: String, why: String },
    #[error("cannot read the public key {path}: {source}")]
    KeyUnreadable { path: PathBuf, source: io::Error },
    #[error("{path}: {why}")]
    Blocked { path: String, why: String },
    #[error("these actions need root; run walwarden setup with sudo:\n{0}")]
    NeedsRoot(String),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: io::Error,
    },
    #[error("`{command}` failed: {detail}")]
    Command { command: String, detail: String },
    #[error("the copy test as {user} failed in {dir}: {detail}")]
    CopyTest {
        user: String,
        dir: String,
        detail: String,
    },
}

pub(super) fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> SetupError {
    let what = what.into();
    move |source| SetupError::Io { what, source }
}

/// What the engineer asked for.
#[derive(Debug, Clone)]
pub struct SetupRequest {
    pub root: PathBuf,
    pub client: String,
    /// The client's own user; by default the client's name + `backup`, as the tutorial's `foobackup`.
    pub user: String,
    /// Its home (authorized_keys lives there): the passwd entry's when the
    /// user exists (postgres's is /var/lib/postgresql), else `/home/<user>`.
    pub home: PathBuf,
    /// The target server's public key (of its postgres user), one line.
    pub public_key: Option<PublicKey>,
    /// What the key may do on this server.
    pub access: KeyAccess,
}

/// What a client's key may do once it logs in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyAccess {
    /// Only what `walwarden receive` accepts: add WAL and base backups
    /// (append-only, verified). The default.
    Receiver(receiver_lines::ForcedCommand),
    /// The tutorial's plain shell access (`--shell-access`): the key runs any
    /// command as the client's user, `rm` included.
    Shell,
}

impl KeyAccess {
    /// The receiver run as `program` (this walwarden binary) for `client`.
    pub fn receiver(
        program: PathBuf,
        root: &Path,
        client: &str,
        config: Option<PathBuf>,
    ) -> KeyAccess {
        KeyAccess::Receiver(receiver_lines::ForcedCommand {
            program,
            root: root.to_owned(),
            client: client.to_owned(),
            config,
        })
    }
}

impl SetupRequest {
    pub fn new(root: &Path, client: &str) -> Result<SetupRequest, SetupError> {
        check_client_name(client)?;
        let user = default_user(client);
        check_user_name(&user)?;
        Ok(SetupRequest {
            root: root.to_owned(),
            client: client.to_owned(),
            home: home_of(&user),
            access: KeyAccess::receiver(this_binary(), root, client, default_config_for_receiver()),
            user,
            public_key: None,
        })
    }

    /// The client's user becomes `user`, with its home from passwd.
    pub fn set_user(&mut self, user: &str) -> Result<(), SetupError> {
        check_user_name(user)?;
        self.user = user.to_owned();
        self.home = home_of(user);
        Ok(())
    }

    pub fn client_dir(&self) -> PathBuf {
        self.root.join(&self.client)
    }

    pub fn base_dir(&self) -> PathBuf {
        folder::base_dir(&self.client_dir())
    }

    pub fn wal_dir(&self) -> PathBuf {
        folder::wal_dir(&self.client_dir())
    }

    pub fn authorized_keys(&self) -> PathBuf {
        self.home.join(".ssh").join("authorized_keys")
    }
}

/// Where `user`'s authorized_keys lives: its passwd home when it exists
/// (`getpwnam`), else `/home/<user>`, where useradd will make it.
pub fn home_of(user: &str) -> PathBuf {
    match nix::unistd::User::from_name(user) {
        Ok(Some(entry)) => entry.dir,
        _ => PathBuf::from("/home").join(user),
    }
}

/// `foo` → `foobackup`, lower-cased, as the tutorial names it.
pub fn default_user(client: &str) -> String {
    format!("{}backup", client.to_ascii_lowercase().replace('.', "-"))
}

fn check_client_name(client: &str) -> Result<(), SetupError> {
    let ok = !client.is_empty()
        && !client.starts_with(['.', '-'])
        && client
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(SetupError::BadClientName(client.to_owned()))
    }
}

/// Debian's useradd accepts more; this is the portable subset (NAME_REGEX).
pub fn check_user_name(user: &str) -> Result<(), SetupError> {
    let ok = (1..=32).contains(&user.len())
        && user.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && user
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(SetupError::BadUserName(user.to_owned()))
    }
}

/// An OpenSSH public key line: `type base64 [comment]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey {
    pub kind: String,
    pub blob: String,
    pub comment: String,
}

impl PublicKey {
    /// Reads and parses a `.pub` file.
    pub fn read(path: &Path) -> Result<PublicKey, SetupError> {
        let text = std::fs::read_to_string(path).map_err(|source| SetupError::KeyUnreadable {
            path: path.to_owned(),
            source,
        })?;
        PublicKey::parse(&text, &path.display().to_string())
    }

    pub fn parse(text: &str, path: &str) -> Result<PublicKey, SetupError> {
        let bad = |why: &str| SetupError::BadPublicKey {
            path: path.to_owned(),
            why: why.to_owned(),
        };
        if text.contains("PRIVATE KEY") {
            return Err(bad(
                "this is a private key: never copy it off the target server",
            ));
        }
        let line = text
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty() && !l.starts_with('#'))
            .ok_or_else(|| bad("the file is empty"))?;
        let mut words = line.split_whitespace();
        let kind = words.next().unwrap_or_default();
        let known = kind.starts_with("ssh-")
            || kind.starts_with("ecdsa-sha2-")
            || kind.starts_with("sk-ssh-")
            || kind.starts_with("sk-ecdsa-");
        if !known {
            return Err(bad(&format!("unknown key type {kind:?}")));
        }
        let blob = words.next().ok_or_else(|| bad("no key after the type"))?;
        let base64 = blob
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+/=".contains(&b));
        if !base64 || blob.len() < 16 {
            return Err(bad("the key is not base64"));
        }
        Ok(PublicKey {
            kind: kind.to_owned(),
            blob: blob.to_owned(),
            comment: words.collect::<Vec<_>>().join(" "),
        })
    }

    /// The authorized_keys line: `restrict` = no pty, no forwarding, no agent, no X11;
    /// commands still run, which the archive_command needs.
    pub fn authorized_line(&self) -> String {
        let mut line = format!("restrict {} {}", self.kind, self.blob);
        if !self.comment.is_empty() {
            line.push(' ');
            line.push_str(&self.comment);
        }
        line
    }
}

pub fn lookup_uid(user: &str) -> Option<u32> {
    lookup_ids(user).map(|(uid, _)| uid)
}

pub(super) fn lookup_ids(user: &str) -> Option<(u32, u32)> {
    nix::unistd::User::from_name(user)
        .ok()
        .flatten()
        .map(|u| (u.uid.as_raw(), u.gid.as_raw()))
}

/// Where pg_basebackup writes on the target before the copy, unless told otherwise.
pub const DEFAULT_TARGET_SCRATCH: &str = "/tmp/backups";

/// A setup as both faces show it before asking: what would change here,
/// what of it needs root, and the target's lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetupPlan {
    pub actions: Vec<Action>,
    /// Actions that need root when walwarden is not root, as "what: command".
    pub needs_root: Vec<String>,
    /// What to paste on the target server.
    pub instructions: String,
    /// Something to know before applying (an archive already in wal/).
    pub warning: Option<String>,
}

/// Plans `request` (reading the machine, changing nothing) and writes the
/// target's lines for `route`, with pg_basebackup writing into `scratch`.
pub fn plan_setup(
    request: &SetupRequest,
    route: &ArchiveRoute,
    scratch: &str,
) -> Result<SetupPlan, SetupError> {
    let actions = plan(request)?;
    let euid = nix::unistd::geteuid().as_raw();
    let needs_root = actions
        .iter()
        .filter(|a| a.needs_root(euid))
        .map(|a| a.to_string())
        .collect();
    Ok(SetupPlan {
        actions,
        needs_root,
        instructions: route.target_instructions(&request.client, scratch),
        warning: existing_archive_warning(request),
    })
}

/// Where applying a plan is, for the face to say as it goes.
#[derive(Debug, Clone, Copy)]
pub enum SetupStep<'a> {
    /// This action is about to run.
    Applying(&'a Action),
    Applied(&'a Action),
    /// The copy test is about to run in this folder.
    CopyTesting(&'a Path),
    CopyTested(&'a Path),
}

/// Runs the reviewed `actions` in order, then the copy test in base/ and
/// wal/ as the client's user; stops at the first failure. `step` hears
/// each step before and after it runs.
pub fn apply_setup(
    request: &SetupRequest,
    actions: &[Action],
    step: &mut dyn FnMut(SetupStep<'_>),
) -> Result<(), SetupError> {
    for action in actions {
        step(SetupStep::Applying(action));
        apply(action)?;
        step(SetupStep::Applied(action));
    }
    match &request.access {
        KeyAccess::Receiver(forced) => {
            // What the key can do is what the receiver does: test that.
            let dir = request.client_dir();
            step(SetupStep::CopyTesting(&dir));
            apply::receiver_copy_test(&request.user, forced)?;
            step(SetupStep::CopyTested(&dir));
        }
        KeyAccess::Shell => {
            for dir in [request.base_dir(), request.wal_dir()] {
                step(SetupStep::CopyTesting(&dir));
                copy_test(&request.user, &dir)?;
                step(SetupStep::CopyTested(&dir));
            }
        }
    }
    Ok(())
}

/// The walwarden binary running now, as the forced command names it
/// (absolute: sshd runs it with a short PATH).
pub fn this_binary() -> PathBuf {
    crate::ops::restore::request::this_binary()
}

/// The config the receiver reads (its quota): the system's, when there is one.
fn default_config_for_receiver() -> Option<PathBuf> {
    let system = PathBuf::from("/etc/walwarden/config.toml");
    system.is_file().then_some(system)
}

/// This machine's host name, the default `--backup-host`.
pub fn this_host() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_existing_users_home_comes_from_passwd() {
        assert_eq!(home_of("root"), PathBuf::from("/root"));
        assert_eq!(
            home_of("walwarden-no-such-user"),
            PathBuf::from("/home/walwarden-no-such-user")
        );
        let mut request = SetupRequest::new(Path::new("/b"), "acme").unwrap();
        request.set_user("root").unwrap();
        assert_eq!(
            request.authorized_keys(),
            PathBuf::from("/root/.ssh/authorized_keys")
        );
    }

    #[test]
    fn default_user_follows_the_tutorial() {
        assert_eq!(default_user("foo"), "foobackup");
        assert_eq!(default_user("Acme.eu"), "acme-eubackup");
        assert!(SetupRequest::new(Path::new("/r"), "../x").is_err());
        assert!(SetupRequest::new(Path::new("/r"), "a b").is_err());
        assert!(SetupRequest::new(Path::new("/r"), "").is_err());
        assert!(check_user_name("9abc").is_err());
        assert!(check_user_name("root-x").is_ok());
    }

    #[test]
    fn public_keys_parse_and_private_keys_are_refused() {
        let key = PublicKey::parse(
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBmuLDMQvFTj postgres@db1\n",
            "k.pub",
        )
        .unwrap();
        assert_eq!(
            key.authorized_line(),
            "restrict ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBmuLDMQvFTj postgres@db1"
        );
        let private = PublicKey::parse("-----BEGIN OPENSSH PRIVATE KEY-----\nabc\n", "k");
        assert!(matches!(private, Err(SetupError::BadPublicKey { .. })));
        assert!(PublicKey::parse("", "k").is_err());
        assert!(PublicKey::parse("hello world", "k").is_err());
        assert!(PublicKey::parse("ssh-rsa not*base64!", "k").is_err());
    }
}
