//! Applying a reviewed plan, one action at a time as the command it amounts
//! to, and the copy test: a file written as the client's user the way the
//! archive_command writes, read back and removed.

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};

use super::plan::Action;
use super::{ROOT_MODE, SetupError, io_err, lookup_ids, lookup_uid};
use crate::pg::local::shell_quote;

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
            crate::store::write_atomically(path, text.as_bytes(), crate::store::PRIVATE)
                .map_err(io_err(format!("write {}", path.display())))?;
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

/// The copy test through the receiver, as the client's key will run it:
/// `copy-test` writes, syncs, renames, reads back and removes a file in the
/// client's folders, as the client's user. Returns the command shown.
pub fn receiver_copy_test(
    user: &str,
    forced: &super::receiver_lines::ForcedCommand,
) -> Result<String, SetupError> {
    let mut command = as_user(user, &forced.program.to_string_lossy());
    command.arg("receive").arg("--root").arg(&forced.root);
    command.arg("--client").arg(&forced.client);
    if let Some(config) = &forced.config {
        command.arg("--config").arg(config);
    }
    command.env("SSH_ORIGINAL_COMMAND", "copy-test");
    let shown = format!("SSH_ORIGINAL_COMMAND=copy-test {}", forced.command_line());
    let output = command
        .stdin(Stdio::null())
        .output()
        .map_err(|e| SetupError::CopyTest {
            user: user.to_owned(),
            dir: forced.root.join(&forced.client).display().to_string(),
            detail: e.to_string(),
        })?;
    if !output.status.success() {
        return Err(SetupError::CopyTest {
            user: user.to_owned(),
            dir: forced.root.join(&forced.client).display().to_string(),
            detail: format!(
                "{}: {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            ),
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
