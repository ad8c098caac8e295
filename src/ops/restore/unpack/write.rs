//! Writing the checked entries under the destination: files created with
//! `O_CREAT|O_EXCL` after any old entry is unlinked, parents checked once
//! with `lstat`, modes and times restored, directories' last; progress
//! metered by the compressed bytes read.

use std::collections::HashSet;
use std::fs::{self, DirBuilder, File, FileTimes, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use super::checks::{Action, Checked};
use super::stream::{Header, TarEntry};
use super::{UnpackError, UnpackProgress, UnpackSummary};

/// Progress bookkeeping; reports only when more of the tarball was read.
pub(super) struct Meter<'p> {
    pub(super) start: Instant,
    pub(super) compressed: Arc<AtomicU64>,
    pub(super) compressed_total: u64,
    pub(super) bytes_written: u64,
    pub(super) files: u64,
    pub(super) last_compressed: u64,
    pub(super) report: &'p mut dyn FnMut(UnpackProgress),
}

impl Meter<'_> {
    fn tick(&mut self) {
        let done = self
            .compressed
            .load(Ordering::Relaxed)
            .min(self.compressed_total);
        if done != self.last_compressed {
            self.last_compressed = done;
            self.send(done);
        }
    }

    pub(super) fn finish(&mut self) {
        self.send(self.compressed_total);
    }

    fn send(&mut self, compressed_done: u64) {
        (self.report)(UnpackProgress {
            compressed_done,
            compressed_total: self.compressed_total,
            bytes_written: self.bytes_written,
            files: self.files,
            elapsed: self.start.elapsed(),
        });
    }
}

/// Writes checked entries under `dest`.
pub(super) struct TreeWriter<'a> {
    pub(super) tarball: &'a Path,
    pub(super) dest: &'a Path,
    pub(super) owner: Option<(u32, u32)>,
    /// Directories (relative) known to be real directories, not links.
    pub(super) known_dirs: HashSet<PathBuf>,
    /// Directory entries whose mode and mtime are applied at the end.
    pub(super) deferred_dirs: Vec<(PathBuf, u32, u64)>,
    pub(super) buf: Vec<u8>,
    pub(super) summary: UnpackSummary,
}

impl TreeWriter<'_> {
    fn write_err(&self, rel: &Path, path: &Path) -> impl FnOnce(io::Error) -> UnpackError {
        let (tarball, entry, path) = (
            self.tarball.to_owned(),
            rel.to_string_lossy().into_owned(),
            path.to_owned(),
        );
        move |source| UnpackError::Write {
            tarball,
            entry,
            path,
            source,
        }
    }

    pub(super) fn apply(
        &mut self,
        entry: &mut TarEntry<'_, '_, '_>,
        header: &Header,
        checked: Checked,
        meter: &mut Meter<'_>,
    ) -> Result<(), UnpackError> {
        let rel = checked.rel;
        let full = self.dest.join(&rel);
        let corrupt = |source| UnpackError::Corrupt {
            path: self.tarball.to_owned(),
            source,
        };
        let mode = entry.header().mode().map_err(corrupt)? & 0o777;
        let mtime = entry.header().mtime().map_err(corrupt)?;
        self.ensure_parents(&rel)?;
        match checked.action {
            Action::File => {
                self.write_file(entry, header, &rel, &full, mode, mtime, meter)?;
                self.summary.files += 1;
            }
            Action::Dir => {
                self.ensure_dir(&rel)?;
                self.deferred_dirs.push((rel, mode, mtime));
                self.summary.dirs += 1;
            }
            Action::Symlink(target) => {
                replace_with(&full, |p| std::os::unix::fs::symlink(&target, p))
                    .map_err(self.write_err(&rel, &full))?;
                if let Some((uid, gid)) = self.owner {
                    std::os::unix::fs::lchown(&full, Some(uid), Some(gid))
                        .map_err(self.write_err(&rel, &full))?;
                }
                self.summary.links += 1;
            }
            Action::HardLink(target) => {
                // The target's parents must be real directories too, or
                // link(2) would reach through a link already under dest.
                self.ensure_parents_exist(&target)?;
                let source = self.dest.join(&target);
                replace_with(&full, |p| fs::hard_link(&source, p))
                    .map_err(self.write_err(&rel, &full))?;
                self.summary.links += 1;
            }
        }
        meter.files += 1;
        meter.tick();
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn write_file(
        &mut self,
        entry: &mut TarEntry<'_, '_, '_>,
        header: &Header,
        rel: &Path,
        full: &Path,
        mode: u32,
        mtime: u64,
        meter: &mut Meter<'_>,
    ) -> Result<(), UnpackError> {
        let mut options = OpenOptions::new();
        // create_new is O_CREAT|O_EXCL: it never follows a symbolic link.
        options.write(true).create_new(true).mode(0o600);
        let mut file =
            replace_with(full, |p| options.open(p)).map_err(self.write_err(rel, full))?;
        let mut left = entry.size();
        while left > 0 {
            let want = left.min(self.buf.len() as u64) as usize;
            let chunk = &mut self.buf[..want];
            read_exactly(entry, chunk).map_err(|source| UnpackError::Corrupt {
                path: self.tarball.to_owned(),
                source: io::Error::new(
                    source.kind(),
                    format!("entry {:?}: {source}", header.name()),
                ),
            })?;
            file.write_all(chunk).map_err(self.write_err(rel, full))?;
            left -= want as u64;
            self.summary.bytes += want as u64;
            meter.bytes_written += want as u64;
            meter.tick();
        }
        self.finish_meta(&file, mode, mtime)
            .map_err(self.write_err(rel, full))
    }

    /// Owner first: chown may clear mode bits.
    fn finish_meta(&self, file: &File, mode: u32, mtime: u64) -> io::Result<()> {
        use std::os::unix::fs::PermissionsExt;
        if let Some((uid, gid)) = self.owner {
            std::os::unix::fs::fchown(file, Some(uid), Some(gid))?;
        }
        file.set_permissions(fs::Permissions::from_mode(mode))?;
        let mtime = SystemTime::UNIX_EPOCH + Duration::from_secs(mtime);
        file.set_times(FileTimes::new().set_modified(mtime))
    }

    /// Creates the missing parents of `rel` (mode 0700, given to the owner)
    /// and checks the existing ones are real directories.
    fn ensure_parents(&mut self, rel: &Path) -> Result<(), UnpackError> {
        let Some(parent) = rel.parent() else {
            return Ok(());
        };
        if parent.as_os_str().is_empty() || self.known_dirs.contains(parent) {
            return Ok(());
        }
        let missing: Vec<PathBuf> = parent
            .ancestors()
            .take_while(|a| !a.as_os_str().is_empty() && !self.known_dirs.contains(*a))
            .map(Path::to_owned)
            .collect();
        for dir in missing.iter().rev() {
            self.ensure_dir(dir)?;
        }
        Ok(())
    }

    /// Like [`Self::ensure_parents`] for a hard link's target, without creating.
    fn ensure_parents_exist(&mut self, rel: &Path) -> Result<(), UnpackError> {
        for dir in rel
            .ancestors()
            .skip(1)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
        {
            if dir.as_os_str().is_empty() || self.known_dirs.contains(dir) {
                continue;
            }
            let full = self.dest.join(dir);
            let meta = fs::symlink_metadata(&full).map_err(self.write_err(rel, &full))?;
            if !meta.is_dir() {
                return Err(self.write_err(rel, &full)(not_a_dir()));
            }
            self.known_dirs.insert(dir.to_owned());
        }
        Ok(())
    }

    /// Makes `rel` a directory, or checks that it is one (not a link to one).
    fn ensure_dir(&mut self, rel: &Path) -> Result<(), UnpackError> {
        if self.known_dirs.contains(rel) {
            return Ok(());
        }
        let full = self.dest.join(rel);
        match DirBuilder::new().mode(0o700).create(&full) {
            Ok(()) => {
                if let Some((uid, gid)) = self.owner {
                    std::os::unix::fs::chown(&full, Some(uid), Some(gid))
                        .map_err(self.write_err(rel, &full))?;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                let meta = fs::symlink_metadata(&full).map_err(self.write_err(rel, &full))?;
                if !meta.is_dir() {
                    return Err(self.write_err(rel, &full)(not_a_dir()));
                }
            }
            Err(e) => return Err(self.write_err(rel, &full)(e)),
        }
        self.known_dirs.insert(rel.to_owned());
        Ok(())
    }

    /// Modes and mtimes of directory entries, once nothing more is written
    /// into them; in reverse order, so a directory is done after the ones
    /// below it (a parent's mode could otherwise bar a non-root caller).
    pub(super) fn finish_dirs(&mut self) -> Result<(), UnpackError> {
        let mut done = HashSet::new();
        for (rel, mode, mtime) in std::mem::take(&mut self.deferred_dirs).into_iter().rev() {
            // A directory listed twice takes its last entry's mode and time.
            if !done.insert(rel.clone()) {
                continue;
            }
            let full = self.dest.join(&rel);
            File::open(&full)
                .and_then(|dir| self.finish_meta(&dir, mode, mtime))
                .map_err(self.write_err(&rel, &full))?;
        }
        Ok(())
    }
}

pub(super) fn not_a_dir() -> io::Error {
    io::Error::new(
        io::ErrorKind::NotADirectory,
        "exists and is not a directory (a symbolic link is never followed)",
    )
}

/// Runs `make` at `path`; when something non-directory is already there, it
/// is unlinked (never followed) and `make` runs once more.
pub(super) fn replace_with<T>(path: &Path, make: impl Fn(&Path) -> io::Result<T>) -> io::Result<T> {
    match make(path) {
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            if fs::symlink_metadata(path)?.is_dir() {
                return Err(io::Error::new(
                    io::ErrorKind::IsADirectory,
                    "a directory is in the way",
                ));
            }
            fs::remove_file(path)?;
            make(path)
        }
        other => other,
    }
}

/// Fills `buf` completely; a stream that ends first is truncated.
pub(super) fn read_exactly(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<()> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the data ends early",
                ));
            }
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
