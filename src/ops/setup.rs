//! Onboarding a client on the backup server (the tutorial's "Setting up a
//! backup server"): the client's folders, its own unprivileged user, mode 700
//! so no client reads another's backups, its key in authorized_keys with
//! `restrict`, and the lines the target server needs, ready to paste.
//!
//! [`plan`] compares what should be with what is and returns only the
//! actions that change something, so running setup twice changes nothing the
//! second time. [`apply`] runs a plan one action at a time; every action can
//! say itself as the shell command it amounts to, so the engineer sees each one
//! before it runs (and `--dry-run` shows only that).

use std::fmt;
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use thiserror::Error;

use crate::pg::local::shell_quote;

/// The folder mode the tutorial asks for: the client's user only.
pub const CLIENT_MODE: u32 = 0o700;
/// The backup root: others may pass through it to their own folder, not list it.
pub const ROOT_MODE: u32 = 0o711;
/// The production archive_timeout the tutorial recommends (one hour).
pub const PRODUCTION_ARCHIVE_TIMEOUT: u64 = 3600;
/// The archive_timeout of the 3–5 minute verification, to be undone afterwards.
pub const VERIFICATION_ARCHIVE_TIMEOUT: u64 = 60;

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

fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> SetupError {
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
    /// Its home (authorized_keys lives there); by default `/home/<user>`.
    pub home: PathBuf,
    /// The target server's public key (of its postgres user), one line.
    pub public_key: Option<PublicKey>,
}

impl SetupRequest {
    pub fn new(root: &Path, client: &str) -> Result<SetupRequest, SetupError> {
        check_client_name(client)?;
        let user = default_user(client);
        check_user_name(&user)?;
        Ok(SetupRequest {
            root: root.to_owned(),
            client: client.to_owned(),
            home: PathBuf::from("/home").join(&user),
            user,
            public_key: None,
        })
    }

    pub fn client_dir(&self) -> PathBuf {
        self.root.join(&self.client)
    }

    pub fn base_dir(&self) -> PathBuf {
        self.client_dir().join("base")
    }

    pub fn wal_dir(&self) -> PathBuf {
        self.client_dir().join("wal")
    }

    pub fn authorized_keys(&self) -> PathBuf {
        self.home.join(".ssh").join("authorized_keys")
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
        let line = key.authorized_line();
        let existing = fs::read_to_string(&path).unwrap_or_default();
        let present = existing.lines().find(|l| key_blob_of(l) == Some(&key.blob));
        match present {
            Some(old) if has_restrict(old) => {}
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

fn key_blob_of(line: &str) -> Option<&str> {
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

fn has_restrict(line: &str) -> bool {
    line.split_whitespace()
        .next()
        .is_some_and(|options| options.split(',').any(|o| o == "restrict"))
}

pub fn lookup_uid(user: &str) -> Option<u32> {
    lookup_ids(user).map(|(uid, _)| uid)
}

fn lookup_ids(user: &str) -> Option<(u32, u32)> {
    nix::unistd::User::from_name(user)
        .ok()
        .flatten()
        .map(|u| (u.uid.as_raw(), u.gid.as_raw()))
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

/// Runs one action.
pub fn apply(action: &Action) -> Result<(), SetupError> {
    match action {
        Action::CreateRoot { path } => {
            fs::create_dir_all(path).map_err(io_err(format!("create {}", path.display())))?;
            set_mode(path, ROOT_MODE)
        }
        Action::OpenRoot { path, mode } => set_mode(path, *mode),
        Action::CreateUser { name, home, client } => {
            if let Some(parent) = home.parent() {
                fs::create_dir_all(parent)
                    .map_err(io_err(format!("create {}", parent.display())))?;
            }
            // `*` (not useradd's default `!`): no password can log in, yet the
            // account is not "locked", which sshd without PAM refuses outright.
            run(Command::new("useradd")
                .args(["--create-home", "--home-dir"])
                .arg(home)
                .args(["--shell", "/bin/sh", "--user-group", "--password", "*"])
                .arg("--comment")
                .arg(format!("walwarden backups of {client}"))
                .arg(name))?;
            // useradd copies /etc/skel with the default umask; the home is the user's alone.
            set_mode(home, 0o700)
        }
        Action::CreateDir { path, user, mode } => {
            match fs::create_dir(path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(io_err(format!("create {}", path.display()))(e)),
            }
            give(path, user, *mode)
        }
        Action::Secure { path, user, mode } => give(path, user, *mode),
        Action::AuthorizeKey {
            path,
            user,
            line,
            replaces,
        } => {
            let existing = fs::read_to_string(path).unwrap_or_default();
            let mut text = match replaces {
                Some(old) => existing
                    .lines()
                    .map(|l| if l == old { line.as_str() } else { l })
                    .collect::<Vec<_>>()
                    .join("\n"),
                None => {
                    let mut text = existing.trim_end_matches('\n').to_owned();
                    if !text.is_empty() {
                        text.push('\n');
                    }
                    text.push_str(line);
                    text
                }
            };
            text.push('\n');
            write_replacing(path, text.as_bytes())?;
            give(path, user, 0o600)
        }
    }
}

fn run(command: &mut Command) -> Result<(), SetupError> {
    let shown = crate::pg::local::display(command);
    let output = command
        .stdin(Stdio::null())
        .output()
        .map_err(|e| SetupError::Command {
            command: shown.clone(),
            detail: e.to_string(),
        })?;
    if output.status.success() {
        Ok(())
    } else {
        Err(SetupError::Command {
            command: shown,
            detail: format!(
                "{}: {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            ),
        })
    }
}

fn set_mode(path: &Path, mode: u32) -> Result<(), SetupError> {
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .map_err(io_err(format!("chmod {mode:o} {}", path.display())))
}

fn give(path: &Path, user: &str, mode: u32) -> Result<(), SetupError> {
    let (uid, gid) = lookup_ids(user).ok_or_else(|| SetupError::Blocked {
        path: path.display().to_string(),
        why: format!("no OS user {user:?}"),
    })?;
    std::os::unix::fs::lchown(path, Some(uid), Some(gid))
        .map_err(io_err(format!("chown {user} {}", path.display())))?;
    set_mode(path, mode)
}

/// Writes through a temp file and a rename, so a crash never leaves half a file.
fn write_replacing(path: &Path, bytes: &[u8]) -> Result<(), SetupError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir)
        .map_err(io_err(format!("write into {}", dir.display())))?;
    tmp.write_all(bytes)
        .and_then(|()| tmp.as_file().sync_all())
        .map_err(io_err(format!("write {}", path.display())))?;
    tmp.persist(path)
        .map_err(|e| io_err(format!("write {}", path.display()))(e.error))?;
    Ok(())
}

/// The tutorial's "checking if the copy works", done properly: as the client's
/// user, a test file goes into `dir` the way the archive_command writes (a
/// `.part`, synced, renamed), is read back and compared, and is removed.
/// Returns what was shown for each step. Nothing is left behind, even on failure.
pub fn copy_test(user: &str, dir: &Path) -> Result<String, SetupError> {
    let token = format!(
        "walwarden copy test {} {}",
        std::process::id(),
        humantime::format_rfc3339_seconds(std::time::SystemTime::now())
    );
    let file = dir.join(".walwarden-copy-test");
    let f = shell_quote(&file.to_string_lossy());
    let script = format!(
        "set -e; trap 'rm -f {f} {f}.part' EXIT; test ! -e {f}; \
         printf '%s' \"$1\" > {f}.part; sync {f}.part; mv {f}.part {f}; cat {f}"
    );
    let mut command = as_user(user, "sh");
    command.args(["-c", &script, "copy-test", &token]);
    let shown = format!("sh -c {}", shell_quote(&script));
    let output = command
        .stdin(Stdio::null())
        .output()
        .map_err(|e| SetupError::CopyTest {
            user: user.to_owned(),
            dir: dir.display().to_string(),
            detail: e.to_string(),
        })?;
    let read_back = String::from_utf8_lossy(&output.stdout);
    let leftover = file.exists() || file.with_extension("part").exists();
    if !output.status.success() || read_back != token || leftover {
        return Err(SetupError::CopyTest {
            user: user.to_owned(),
            dir: dir.display().to_string(),
            detail: if !output.status.success() {
                format!(
                    "{}: {}",
                    output.status,
                    String::from_utf8_lossy(&output.stderr).trim()
                )
            } else if leftover {
                "the test file was not removed".into()
            } else {
                format!("read back {read_back:?}, wrote {token:?}")
            },
        });
    }
    Ok(shown)
}

fn as_user(user: &str, program: &str) -> Command {
    let euid = nix::unistd::geteuid();
    if euid.is_root() && lookup_uid(user) != Some(0) {
        let mut command = Command::new("runuser");
        command.args(["-u", user, "--", program]);
        command
    } else {
        Command::new(program)
    }
}

/// How the target server reaches the backup server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveRoute {
    pub user: String,
    pub backup_host: String,
    pub ssh_port: Option<u16>,
    /// `-i FILE`: the key the target's postgres user sends with, if not its default.
    pub identity: Option<PathBuf>,
    /// `-o UserKnownHostsFile=FILE`, if not the postgres user's own.
    pub known_hosts: Option<PathBuf>,
    /// `-F FILE`, if not the postgres user's ~/.ssh/config.
    pub ssh_config: Option<PathBuf>,
    pub base_dir: PathBuf,
    pub wal_dir: PathBuf,
    pub compress: bool,
    pub archive_timeout: u64,
}

impl ArchiveRoute {
    pub fn for_request(request: &SetupRequest, backup_host: &str) -> ArchiveRoute {
        ArchiveRoute {
            user: request.user.clone(),
            backup_host: backup_host.to_owned(),
            ssh_port: None,
            identity: None,
            known_hosts: None,
            ssh_config: None,
            base_dir: request.base_dir(),
            wal_dir: request.wal_dir(),
            compress: true,
            archive_timeout: PRODUCTION_ARCHIVE_TIMEOUT,
        }
    }

    /// `ssh [options] user@host`, each word quoted for the target's shell.
    fn ssh_words(&self, port_flag: &str) -> Vec<String> {
        let mut words = Vec::new();
        if let Some(config) = &self.ssh_config {
            words.push("-F".to_owned());
            words.push(shell_quote(&config.to_string_lossy()));
        }
        if let Some(port) = self.ssh_port {
            words.push(port_flag.to_owned());
            words.push(port.to_string());
        }
        if let Some(identity) = &self.identity {
            words.push("-i".to_owned());
            words.push(shell_quote(&identity.to_string_lossy()));
        }
        if let Some(known_hosts) = &self.known_hosts {
            words.push("-o".to_owned());
            words.push(shell_quote(&format!(
                "UserKnownHostsFile={}",
                known_hosts.display()
            )));
        }
        words
    }

    fn destination(&self) -> String {
        format!("{}@{}", self.user, self.backup_host)
    }

    /// The archive_command value (before postgresql.conf quoting): the
    /// tutorial's sequence, `test ! -f`, `.part`, (gzip -t), sync, rename, with
    /// paths quoted for the backup server's shell and `%` doubled except `%p`/`%f`.
    pub fn archive_command(&self) -> String {
        let wal = escape_percent(&shell_quote(&self.wal_dir.to_string_lossy()));
        let (suffix, producer) = if self.compress {
            (".gz", "gzip -c -9 %p")
        } else {
            ("", "cat %p")
        };
        let target = format!("{wal}/%f{suffix}");
        let part = format!("{target}.part");
        let mut remote = format!("set -e; test ! -f {target}; cat > {part}; ");
        if self.compress {
            remote.push_str(&format!("gzip -t {part}; "));
        }
        remote.push_str(&format!("sync {part}; mv {part} {target}"));
        let mut words = vec!["ssh".to_owned(), "-o".into(), "BatchMode=yes".into()];
        words.extend(self.ssh_words("-p").into_iter().map(|w| escape_percent(&w)));
        words.push(escape_percent(&self.destination()));
        // The remote command is one word for the target's shell: double quotes
        // when that is safe (as the tutorial writes it), else single quotes.
        let remote_word = if remote.contains(['"', '$', '`', '\\']) {
            format!("'{}'", remote.replace('\'', "'\\''"))
        } else {
            format!("\"{remote}\"")
        };
        words.push(remote_word);
        format!("{producer} | {}", words.join(" "))
    }

    /// The postgresql.conf lines for the target server.
    pub fn conf_lines(&self) -> String {
        format!(
            "wal_level = replica\n\
             archive_mode = on            # changing it needs a restart\n\
             archive_timeout = {}        # {}; set 60 only for the 3-5 minute verification, then back\n\
             archive_command = {}\n",
            self.archive_timeout,
            crate::checks::health::short_duration(std::time::Duration::from_secs(
                self.archive_timeout
            )),
            conf_quote(&self.archive_command())
        )
    }

    /// pg_basebackup on the target server into an empty scratch folder.
    pub fn basebackup_command(&self, scratch: &str) -> String {
        format!(
            "pg_basebackup --pgdata={} --format=tar --gzip --compress=9 --checkpoint=fast \
             --label=base_backup --progress --verbose --username=[trusted db user]",
            shell_quote(scratch)
        )
    }

    /// The copy of the tarballs (and the manifest, PostgreSQL 13+) to the backup server.
    pub fn copy_command(&self, scratch: &str) -> String {
        let mut words = vec!["scp".to_owned()];
        words.extend(self.ssh_words("-P"));
        for file in ["base.tar.gz", "pg_wal.tar.gz", "backup_manifest"] {
            words.push(shell_quote(&format!(
                "{}/{file}",
                scratch.trim_end_matches('/')
            )));
        }
        words.push(format!(
            "{}:{}/",
            self.destination(),
            shell_quote(&self.base_dir.to_string_lossy())
        ));
        words.join(" ")
    }
}

impl ArchiveRoute {
    /// Everything to do on the target server, in order, ready to paste.
    pub fn target_instructions(&self, client: &str, scratch: &str) -> String {
        format!(
            "On the target server of {client}:\n\
             \n1. As postgres, once: `ssh {user}@{host}` and accept the host key after checking its fingerprint \
             (the archive_command runs with BatchMode and never answers the prompt).\n\
             \n2. postgresql.conf (archive_mode needs a restart):\n\n{conf}\
             \n3. The base backup, then its copy here:\n\n    {base}\n    {copy}\n\
             \n4. For the 3-5 minute verification, set archive_timeout = {verify} and reload, run \
             `walwarden verify {client}` here, then set it back to {timeout} and reload.",
            user = self.user,
            host = self.backup_host,
            conf = self
                .conf_lines()
                .lines()
                .map(|l| format!("    {l}\n"))
                .collect::<String>(),
            base = self.basebackup_command(scratch),
            copy = self.copy_command(scratch),
            verify = VERIFICATION_ARCHIVE_TIMEOUT,
            timeout = self.archive_timeout,
        )
    }
}

fn escape_percent(text: &str) -> String {
    text.replace('%', "%%")
}

/// A postgresql.conf string value: single quotes, doubled inside.
pub fn conf_quote(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
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

    fn route() -> ArchiveRoute {
        let request = SetupRequest::new(Path::new("/var/lib/postgresql/backups"), "foo").unwrap();
        ArchiveRoute::for_request(&request, "backup1")
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
    fn compressed_archive_command_is_the_tutorials_sequence() {
        assert_eq!(
            route().archive_command(),
            "gzip -c -9 %p | ssh -o BatchMode=yes foobackup@backup1 \"set -e; \
             test ! -f /var/lib/postgresql/backups/foo/wal/%f.gz; \
             cat > /var/lib/postgresql/backups/foo/wal/%f.gz.part; \
             gzip -t /var/lib/postgresql/backups/foo/wal/%f.gz.part; \
             sync /var/lib/postgresql/backups/foo/wal/%f.gz.part; \
             mv /var/lib/postgresql/backups/foo/wal/%f.gz.part /var/lib/postgresql/backups/foo/wal/%f.gz\""
        );
    }

    #[test]
    fn plain_archive_command_has_no_gzip() {
        let mut route = route();
        route.compress = false;
        let command = route.archive_command();
        assert!(command.starts_with("cat %p | ssh"), "{command}");
        assert!(!command.contains("gzip"), "{command}");
        assert!(command.contains("mv /var/lib/postgresql/backups/foo/wal/%f.part /var/lib/postgresql/backups/foo/wal/%f\""));
    }

    #[test]
    fn awkward_paths_are_quoted_for_both_shells_and_postgresql() {
        let mut route = route();
        route.wal_dir = PathBuf::from("/srv/it's 100%/wal");
        route.ssh_port = Some(2222);
        let command = route.archive_command();
        // The remote word is single-quoted (it holds a quote); `%` is doubled for PostgreSQL.
        assert!(command.contains("-p 2222"), "{command}");
        assert!(command.contains("100%%"), "{command}");
        assert!(!command.contains("100%/"), "{command}");
        // Undo PostgreSQL's %% and check the sh words round-trip through a real shell.
        let shell_text = command
            .replace("%%", "\u{0}")
            .replace("%f", "SEG")
            .replace("%p", "pg_wal/SEG")
            .replace('\u{0}', "%");
        let remote = shell_text.split_once("backup1 ").unwrap().1;
        let out = Command::new("sh")
            .args(["-c", &format!("printf '%s' {remote}")])
            .output()
            .unwrap();
        let remote_script = String::from_utf8(out.stdout).unwrap();
        assert!(
            remote_script.contains("test ! -f '/srv/it'\\''s 100%/wal'/SEG.gz;"),
            "{remote_script}"
        );
        // postgresql.conf: single quotes doubled, and nothing else changed.
        let conf = route.conf_lines();
        let value = conf
            .lines()
            .find_map(|l| l.strip_prefix("archive_command = "))
            .unwrap();
        let unquoted = value[1..value.len() - 1].replace("''", "'");
        assert_eq!(unquoted, command);
    }

    #[test]
    fn conf_lines_name_every_setting() {
        let conf = route().conf_lines();
        for needle in [
            "wal_level = replica",
            "archive_mode = on",
            "archive_timeout = 3600",
            "archive_command = 'gzip -c -9 %p | ssh",
        ] {
            assert!(conf.contains(needle), "{needle} missing:\n{conf}");
        }
    }

    #[test]
    fn basebackup_and_copy_commands() {
        let route = route();
        let base = route.basebackup_command("/tmp/backups");
        assert!(base.contains("--format=tar --gzip --compress=9 --checkpoint=fast"));
        assert!(base.contains("--progress"));
        let copy = route.copy_command("/tmp/backups/");
        assert_eq!(
            copy,
            "scp /tmp/backups/base.tar.gz /tmp/backups/pg_wal.tar.gz /tmp/backups/backup_manifest \
             foobackup@backup1:/var/lib/postgresql/backups/foo/base/"
        );
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
