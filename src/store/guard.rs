//! The archive is untouchable: the one check every path walwarden writes,
//! moves or deletes goes through, whatever the flags.
//!
//! A path is refused when, once made absolute and its symlinks resolved
//! (the longest existing ancestor is canonicalized, the rest taken as
//! written), it is inside, equal to, or a parent of a protected folder:
//! the backup root (and so every client folder under it). Roots are
//! protected for the whole process once named ([`protect`]): the faces name
//! theirs as they start, and the restore and the drill name the root of the
//! client they work on, so no writer below them can forget it. The store's
//! own writes ([`super::write_atomically`], [`super::write_json`], the
//! locks) check every path too: a cache or a textfile is refused like a
//! data directory is.
//!
//! `walwarden setup` writes under the root on purpose (it makes a client's
//! folders) and the demo builds its own root: neither goes through here.

use std::io;
use std::path::{Component, Path, PathBuf};
use std::sync::Mutex;

use thiserror::Error;

/// Why a path may not be written.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum GuardError {
    #[error(
        "{what} {} is inside the backup root {}: walwarden never writes into the archive",
        crate::display::escape_path(.path), crate::display::escape_path(.root)
    )]
    Inside {
        what: String,
        path: PathBuf,
        root: PathBuf,
    },
    #[error(
        "{what} {} is the backup root itself: walwarden never writes into the archive",
        crate::display::escape_path(.path)
    )]
    Equal { what: String, path: PathBuf },
    #[error(
        "{what} {} contains the backup root {}: writing, moving or deleting it would take the archive with it",
        crate::display::escape_path(.path), crate::display::escape_path(.root)
    )]
    Contains {
        what: String,
        path: PathBuf,
        root: PathBuf,
    },
    #[error("{what} {}: cannot make the path absolute: {reason}", crate::display::escape_path(.path))]
    Unresolvable {
        what: String,
        path: PathBuf,
        reason: String,
    },
}

impl From<GuardError> for io::Error {
    fn from(error: GuardError) -> io::Error {
        io::Error::new(io::ErrorKind::PermissionDenied, error)
    }
}

/// The canonical folders no write may touch, for the whole process.
static PROTECTED: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// Protects `root` (resolved as [`resolve`] does) from every write of this
/// process from now on. A root that does not exist yet holds nothing to
/// protect but is remembered as written, made absolute.
pub fn protect(root: &Path) {
    let Ok(resolved) = resolve(root) else {
        return;
    };
    if let Ok(mut protected) = PROTECTED.lock()
        && !protected.contains(&resolved)
    {
        protected.push(resolved);
    }
}

/// The folders protected so far.
pub fn protected() -> Vec<PathBuf> {
    PROTECTED.lock().map(|p| p.clone()).unwrap_or_default()
}

/// `path` made absolute (against the current folder) with its symlinks
/// resolved component by component, as the kernel would: each existing
/// prefix canonicalized (so `link/..` is the link target's parent), the
/// components that do not exist (and so are no links) taken as written.
pub fn resolve(path: &Path) -> io::Result<PathBuf> {
    resolve_within(path, 0)
}

/// How many dangling links deep a path is followed (the kernel's own limit).
const MAX_LINKS: u32 = 40;

fn resolve_within(path: &Path, links: u32) -> io::Result<PathBuf> {
    let absolute = std::path::absolute(path)?;
    let mut resolved = PathBuf::from("/");
    for component in absolute.components() {
        match component {
            Component::RootDir | Component::Prefix(_) => resolved = PathBuf::from("/"),
            Component::CurDir => {}
            Component::ParentDir => {
                resolved.pop();
            }
            Component::Normal(name) => {
                let next = resolved.join(name);
                resolved = match std::fs::canonicalize(&next) {
                    Ok(canonical) => canonical,
                    // A dangling link: a write through it creates its target.
                    Err(_) => match std::fs::read_link(&next) {
                        Ok(target) if links < MAX_LINKS => {
                            resolve_within(&resolved.join(target), links + 1)?
                        }
                        _ => next,
                    },
                };
            }
        }
    }
    Ok(resolved)
}

/// Checks that `path` (`what` names it in the refusal: "--data-dir", "the
/// textfile") may be written, moved or deleted: see the module's doc.
/// Returns it absolute and resolved, the form to go on with.
pub fn check_write(path: &Path, what: &str) -> Result<PathBuf, GuardError> {
    check_write_against(path, what, &protected())
}

/// [`check_write`] against these roots only (and not the process's).
pub fn check_write_against(
    path: &Path,
    what: &str,
    roots: &[PathBuf],
) -> Result<PathBuf, GuardError> {
    let resolved = resolve(path).map_err(|e| GuardError::Unresolvable {
        what: what.to_owned(),
        path: path.to_owned(),
        reason: e.to_string(),
    })?;
    for root in roots {
        let root = resolve(root).unwrap_or_else(|_| root.clone());
        if resolved == root {
            return Err(GuardError::Equal {
                what: what.to_owned(),
                path: path.to_owned(),
            });
        }
        if resolved.starts_with(&root) {
            return Err(GuardError::Inside {
                what: what.to_owned(),
                path: path.to_owned(),
                root,
            });
        }
        if root.starts_with(&resolved) {
            return Err(GuardError::Contains {
                what: what.to_owned(),
                path: path.to_owned(),
                root,
            });
        }
    }
    Ok(resolved)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inside_equal_and_parent_are_refused_through_links_and_dots() {
        let tmp = tempfile::tempdir().unwrap();
        let base = tmp.path().canonicalize().unwrap();
        let root = base.join("x/D/root");
        std::fs::create_dir_all(root.join("acme/wal")).unwrap();
        std::os::unix::fs::symlink(&root, base.join("alias")).unwrap();
        let roots = vec![root.clone()];
        let refused = |p: &Path| check_write_against(p, "--data-dir", &roots).unwrap_err();
        assert!(matches!(
            refused(&base.join("x/D")),
            GuardError::Contains { .. }
        ));
        assert!(matches!(
            refused(Path::new("/")),
            GuardError::Contains { .. }
        ));
        assert!(matches!(refused(&root), GuardError::Equal { .. }));
        assert!(matches!(
            refused(&root.join("acme/wal/000000010000000000000003.gz")),
            GuardError::Inside { .. }
        ));
        // Through a link, and through a folder that does not exist yet.
        assert!(matches!(
            refused(&base.join("alias/acme/new/../x")),
            GuardError::Inside { .. }
        ));
        assert!(matches!(
            refused(&base.join("x/D/nothing/../root/acme")),
            GuardError::Inside { .. }
        ));
        // A dangling link whose target would be created inside the root.
        std::os::unix::fs::symlink(root.join("acme/new-file"), base.join("dangling")).unwrap();
        assert!(matches!(
            refused(&base.join("dangling")),
            GuardError::Inside { .. }
        ));
        let fine = check_write_against(&base.join("x/D.walwarden-restore.jsonl"), "j", &roots);
        assert_eq!(fine, Ok(base.join("x/D.walwarden-restore.jsonl")));
        assert!(check_write_against(&base.join("x/Droot"), "d", &roots).is_ok());
    }
}
