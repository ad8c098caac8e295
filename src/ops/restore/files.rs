//! Files the restore writes into the data directory, as PostgreSQL wants
//! them: owned by its OS user, mode 0700 folders and 0600 files, synced.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::error::StepFailure;
use crate::pg::local::PgUser;

/// The nearest existing folder at or above `path`.
pub(super) fn existing_ancestor(path: &Path) -> PathBuf {
    path.ancestors()
        .find(|p| p.exists())
        .unwrap_or(Path::new("/"))
        .to_owned()
}

pub(super) fn remove(path: &Path) -> std::io::Result<()> {
    if fs::symlink_metadata(path)?.is_dir() {
        fs::remove_dir_all(path)
    } else {
        fs::remove_file(path)
    }
}

/// Mode 0700, owned by the PostgreSQL user: what initdb makes, and what postgres insists on.
pub(super) fn prepare_dir(dir: &Path, user: &PgUser) -> Result<(), StepFailure> {
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
        .map_err(StepFailure::io("chmod", dir))?;
    chown(dir, user)
}

/// Gives `copy` the owner, group and mode of `original`: a folder made to
/// hold another's contents must not open them to more users than before.
pub(super) fn keep_owner_and_mode(original: &Path, copy: &Path) -> Result<(), StepFailure> {
    let meta = fs::metadata(original).map_err(StepFailure::io("read", original))?;
    std::os::unix::fs::chown(copy, Some(meta.uid()), Some(meta.gid())).map_err(|source| {
        StepFailure::Chown {
            path: copy.to_owned(),
            user: meta.uid().to_string(),
            source,
        }
    })?;
    fs::set_permissions(copy, fs::Permissions::from_mode(meta.mode() & 0o7777))
        .map_err(StepFailure::io("chmod", copy))
}

pub(super) fn chown(path: &Path, user: &PgUser) -> Result<(), StepFailure> {
    if fs::metadata(path).is_ok_and(|m| m.uid() == user.uid) {
        return Ok(());
    }
    std::os::unix::fs::chown(path, Some(user.uid), Some(user.gid)).map_err(|source| {
        StepFailure::Chown {
            path: path.to_owned(),
            user: user.name.clone(),
            source,
        }
    })
}

pub(super) fn write_owned(
    path: &Path,
    bytes: &[u8],
    user: &PgUser,
    append: bool,
) -> Result<(), StepFailure> {
    use std::io::Write;
    let mut file = fs::OpenOptions::new()
        .create(true)
        .write(true)
        .append(append)
        .truncate(!append)
        .open(path)
        .map_err(StepFailure::io("write", path))?;
    file.write_all(bytes)
        .map_err(StepFailure::io("write", path))?;
    file.sync_all().map_err(StepFailure::io("sync", path))?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o600))
        .map_err(StepFailure::io("chmod", path))?;
    chown(path, user)
}
