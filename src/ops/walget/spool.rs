//! The prefetch spool: a folder beside the data directory holding segments
//! (and `.history` files) already decompressed and verified, under their own
//! names. A file is written as `.<name>.part` and renamed when complete and
//! verified, so a name without the dot is always whole and good; the helper
//! hands it to PostgreSQL with one rename (same file system as pg_wal).
//!
//! `.prefetch.lock` is held (flock) by the one running prefetcher and holds
//! its pid, so the helper can tell whether one runs and a restore can find
//! it. The spool is removed whole when the prefetcher stops.
//!
//! The PostgreSQL user can swap the spool's path for a link (its parent is
//! the data directory's, which that user may write). Whatever reads, writes
//! or removes files in the spool therefore works on a [`Spool::pinned`]
//! folder: opened once without following a link, its files named through
//! the open descriptor, so a swap after that cannot steer a removal or a
//! rename into another folder (the archive); the prefetcher stops when it
//! sees the path no longer names the folder it holds.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg, OFlag};
use nix::sys::stat::Mode;
use nix::unistd::{UnlinkatFlags, unlinkat};

const LOCK: &str = ".prefetch.lock";

#[derive(Debug, Clone)]
pub struct Spool {
    /// The folder's path, or `/proc/self/fd/N` when pinned.
    dir: PathBuf,
    /// The open folder a pinned spool's names resolve in.
    pin: Option<Arc<OwnedFd>>,
}

/// The prefetcher's hold on the spool; released when dropped.
pub struct PrefetchLock {
    _held: Flock<File>,
}

impl Spool {
    /// The spool by its path: for making it ([`Spool::ensure`]), looking
    /// for its prefetcher and removing it ([`Spool::remove`] never follows a
    /// link); everything else goes through [`Spool::pinned`].
    pub fn new(dir: &Path) -> Spool {
        Spool {
            dir: dir.to_owned(),
            pin: None,
        }
    }

    /// The folder at `dir` held open, a link refused rather than followed
    /// (`ELOOP`, `ENOTDIR`): every file name below resolves in this folder
    /// whatever `dir` names later.
    pub fn pinned(dir: &Path) -> io::Result<Spool> {
        let fd = nix::fcntl::open(
            dir,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(io::Error::from)?;
        let through = PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()));
        // Names resolve through /proc: without it mounted, no pinned spool.
        if !fs::metadata(&through).is_ok_and(|m| m.is_dir()) {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "/proc/self/fd is not available",
            ));
        }
        Ok(Spool {
            dir: through,
            pin: Some(Arc::new(fd)),
        })
    }

    /// Whether `path` still names the pinned folder (not a link, not another
    /// folder); always true for a spool by path.
    pub fn still_at(&self, path: &Path) -> bool {
        use std::os::unix::fs::MetadataExt;
        let Ok(now) = fs::symlink_metadata(path) else {
            return false;
        };
        if !now.is_dir() {
            return false;
        }
        match &self.pin {
            None => true,
            Some(fd) => nix::sys::stat::fstat(fd.as_ref())
                .is_ok_and(|held| held.st_dev == now.dev() && held.st_ino == now.ino()),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where a complete, verified file waits.
    pub fn ready(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Where a file is written before it is complete and verified.
    pub fn partial(&self, name: &str) -> PathBuf {
        self.dir.join(format!(".{name}.part"))
    }

    /// Makes the folder (mode 0700) when missing.
    pub fn ensure(&self) -> io::Result<()> {
        match fs::DirBuilder::new().mode(0o700).create(&self.dir) {
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
            other => other,
        }
    }

    /// Moves the ready file `name` to `dest`; `None` when the spool does not
    /// have it. A rename when both are on one file system, else a copy.
    pub fn take(&self, name: &str, dest: &Path) -> io::Result<Option<u64>> {
        let ready = self.ready(name);
        let size = match fs::symlink_metadata(&ready) {
            Ok(meta) if meta.is_file() => meta.len(),
            // Not a file the prefetcher wrote (a link, a folder): not ours to hand over.
            Ok(_) => return Ok(None),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        match fs::rename(&ready, dest) {
            Ok(()) => Ok(Some(size)),
            // The prefetcher removed it meanwhile (it stopped, or evicted it).
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) if e.kind() == io::ErrorKind::CrossesDevices => {
                let copied = fs::copy(&ready, dest)?;
                let _ = fs::remove_file(&ready);
                Ok(Some(copied))
            }
            Err(e) => Err(e),
        }
    }

    pub fn is_in_flight(&self, name: &str) -> bool {
        self.partial(name).exists()
    }

    /// Takes the prefetcher's lock without waiting: `None` when another
    /// prefetcher holds it. Writes this process's pid into it.
    pub fn lock_prefetcher(&self) -> io::Result<Option<PrefetchLock>> {
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .read(true)
            .mode(0o600)
            // A link planted as the lock is not written through.
            .custom_flags(nix::libc::O_NOFOLLOW)
            .open(self.dir.join(LOCK))?;
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(mut held) => {
                held.set_len(0)?;
                held.write_all(std::process::id().to_string().as_bytes())?;
                Ok(Some(PrefetchLock { _held: held }))
            }
            Err((_, nix::errno::Errno::EWOULDBLOCK)) => Ok(None),
            Err((_, errno)) => Err(io::Error::from(errno)),
        }
    }

    /// The pid of the prefetcher holding the lock, if one does.
    pub fn prefetcher(&self) -> Option<u32> {
        let path = self.dir.join(LOCK);
        let file = OpenOptions::new()
            .read(true)
            .custom_flags(nix::libc::O_NOFOLLOW)
            .open(&path)
            .ok()?;
        match Flock::lock(file, FlockArg::LockSharedNonblock) {
            // Nobody holds it: no prefetcher.
            Ok(_) => None,
            Err((mut file, _)) => {
                let mut text = String::new();
                file.read_to_string(&mut text).ok()?;
                text.trim().parse().ok()
            }
        }
    }

    /// Complete files in the spool, with their sizes.
    pub fn ready_files(&self) -> io::Result<Vec<(String, u64)>> {
        let mut files = Vec::new();
        for entry in fs::read_dir(&self.dir)? {
            let entry = entry?;
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            if name.starts_with('.') {
                continue;
            }
            files.push((name, entry.metadata().map_or(0, |m| m.len())));
        }
        Ok(files)
    }

    /// Removes every file and then the folder. A folder the PostgreSQL user
    /// may not remove (its parent is not theirs) stays, empty, for the
    /// restore to remove. A missing folder is fine.
    ///
    /// Root runs this at the end of a restore on a path whose parent the
    /// PostgreSQL user may write, so it never follows a link: a link (or a
    /// file) where the folder should be loses its own name and nothing else;
    /// the folder is opened with `O_NOFOLLOW` and its entries unlinked
    /// relative to that descriptor, so a folder swapped for a link after the
    /// check still cannot steer a removal elsewhere. Subfolders (the spool
    /// makes none) are left alone.
    pub fn remove(&self) -> io::Result<()> {
        // Pinned: the held folder's files only; the folder (moved away from
        // the spool's path, or still there) is left to the path's owner.
        if let Some(pin) = &self.pin {
            return unlink_entries(pin);
        }
        match fs::symlink_metadata(&self.dir) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
            Ok(meta) if !meta.is_dir() => return ignore_missing(fs::remove_file(&self.dir)),
            Ok(_) => {}
        }
        let folder = match nix::fcntl::open(
            &self.dir,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        ) {
            Ok(fd) => fd,
            Err(Errno::ENOENT) => return Ok(()),
            // Swapped for a link or a file since the check: only its name goes.
            Err(Errno::ELOOP | Errno::ENOTDIR) => {
                return ignore_missing(fs::remove_file(&self.dir));
            }
            Err(errno) => return Err(io::Error::from(errno)),
        };
        unlink_entries(&folder)?;
        drop(folder);
        match fs::remove_dir(&self.dir) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied => Ok(()),
            other => other,
        }
    }
}

/// Unlinks the entries of the open `folder` (the one opened, not whatever
/// its path names now), the lock last: a helper looking meanwhile still
/// sees the prefetcher. `unlinkat` takes a link's own name, never its
/// target; subfolders (the spool makes none) stay.
fn unlink_entries(folder: &OwnedFd) -> io::Result<()> {
    let listing = PathBuf::from(format!("/proc/self/fd/{}", folder.as_raw_fd()));
    let mut names: Vec<_> = fs::read_dir(&listing)?
        .filter_map(Result::ok)
        .map(|entry| entry.file_name())
        .filter(|name| name != LOCK)
        .collect();
    names.push(LOCK.into());
    for name in names {
        match unlinkat(folder, name.as_os_str(), UnlinkatFlags::NoRemoveDir) {
            Ok(()) | Err(Errno::ENOENT | Errno::EISDIR) => {}
            Err(errno) => return Err(io::Error::from(errno)),
        }
    }
    Ok(())
}

fn ignore_missing(result: io::Result<()>) -> io::Result<()> {
    match result {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ready_file_is_taken_once_and_the_lock_admits_one_prefetcher() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::new(&dir.path().join("spool"));
        spool.ensure().unwrap();
        spool.ensure().unwrap();
        fs::write(spool.partial("000000010000000000000007"), b"half").unwrap();
        assert!(spool.is_in_flight("000000010000000000000007"));
        fs::write(spool.ready("000000010000000000000008"), b"whole").unwrap();
        assert_eq!(
            spool.ready_files().unwrap(),
            vec![("000000010000000000000008".to_owned(), 5)]
        );
        let dest = dir.path().join("RECOVERYXLOG");
        assert_eq!(
            spool.take("000000010000000000000008", &dest).unwrap(),
            Some(5)
        );
        assert_eq!(fs::read(&dest).unwrap(), b"whole");
        assert_eq!(spool.take("000000010000000000000008", &dest).unwrap(), None);

        assert_eq!(spool.prefetcher(), None);
        let held = spool.lock_prefetcher().unwrap();
        assert!(held.is_some());
        assert!(spool.lock_prefetcher().unwrap().is_none());
        assert_eq!(spool.prefetcher(), Some(std::process::id()));
        drop(held);
        assert_eq!(spool.prefetcher(), None);
        spool.remove().unwrap();
        assert!(!spool.dir().exists());
        spool.remove().unwrap();
    }

    /// Links planted inside a pinned spool (the PostgreSQL user can): the
    /// lock is not taken through one, a ready-named one is not handed over,
    /// and emptying the held folder unlinks the links, not their targets.
    #[test]
    fn links_inside_the_spool_are_never_followed() {
        let dir = tempfile::tempdir().unwrap();
        let archived = dir.path().join("000000010000000000000003.gz");
        fs::write(&archived, b"wal").unwrap();
        let path = dir.path().join("main.walwarden-spool");
        Spool::new(&path).ensure().unwrap();
        let spool = Spool::pinned(&path).unwrap();
        std::os::unix::fs::symlink(&archived, path.join(LOCK)).unwrap();
        assert!(
            spool.lock_prefetcher().is_err(),
            "ELOOP, not the archive file"
        );
        assert_eq!(spool.prefetcher(), None);
        std::os::unix::fs::symlink(&archived, spool.ready("000000010000000000000003")).unwrap();
        let dest = dir.path().join("RECOVERYXLOG");
        assert_eq!(spool.take("000000010000000000000003", &dest).unwrap(), None);
        assert!(fs::symlink_metadata(&dest).is_err());
        spool.remove().unwrap();
        assert_eq!(fs::read(&archived).unwrap(), b"wal");
        assert!(
            spool.ready_files().unwrap().is_empty(),
            "the held folder is emptied"
        );
        assert!(
            path.is_dir(),
            "a pinned spool leaves the folder to the path's owner"
        );
    }

    /// A spool replaced by a link (anyone running as the PostgreSQL user can
    /// do it): removing it takes the link's name only, never the files of the
    /// folder it points at.
    #[test]
    fn removing_a_spool_that_is_a_link_leaves_its_target_alone() {
        let dir = tempfile::tempdir().unwrap();
        let archive = dir.path().join("backups/acme/wal");
        fs::create_dir_all(&archive).unwrap();
        fs::write(archive.join("000000010000000000000003.gz"), b"wal").unwrap();
        fs::write(archive.join(LOCK), b"1").unwrap();
        let spool = Spool::new(&dir.path().join("main.walwarden-spool"));
        std::os::unix::fs::symlink(&archive, spool.dir()).unwrap();
        spool.remove().unwrap();
        assert!(
            fs::symlink_metadata(spool.dir()).is_err(),
            "the link is gone"
        );
        assert!(archive.join("000000010000000000000003.gz").exists());
        assert!(archive.join(LOCK).exists());
        // A file where the folder should be: its name goes, a link inside a
        // real spool goes as a link.
        fs::write(spool.dir(), b"x").unwrap();
        spool.remove().unwrap();
        assert!(!spool.dir().exists());
        spool.ensure().unwrap();
        std::os::unix::fs::symlink(
            archive.join("000000010000000000000003.gz"),
            spool.ready("000000010000000000000003"),
        )
        .unwrap();
        spool.remove().unwrap();
        assert!(!spool.dir().exists());
        assert_eq!(
            fs::read(archive.join("000000010000000000000003.gz")).unwrap(),
            b"wal"
        );
    }
}
