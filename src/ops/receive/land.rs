//! Putting a verified upload in place, append-only.
//!
//! An upload is written to `NAME.part` in the folder it lands in (or, when
//! another live upload of the same name holds that one, `NAME.1.part` up to
//! `NAME.7.part`), synced, and renamed to `NAME` with `renameat2(RENAME_NOREPLACE)`,
//! which fails instead of replacing a file that is already there; then the
//! folder is synced so the new name survives a crash. Nothing else ever
//! renames onto, truncates or removes a final name.
//!
//! Each part file is held with an exclusive `flock` while its upload runs.
//! A part file whose lock is free belongs to an upload that died (killed,
//! or its machine crashed): the next upload of the same name takes it over
//! and truncates it. PostgreSQL retries a failed segment until it lands, so
//! a killed upload's part file never outlives the retry; one that is never
//! retried shows on the dashboard as `stray_partial`. A refused upload's
//! part file is removed at once.

use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg, OFlag, RenameFlags, openat, renameat2};
use nix::sys::stat::{FileStat, Mode, SFlag, fstat, fstatat};
use nix::unistd::{UnlinkatFlags, unlinkat};
use sha2::Digest;

use crate::ops::receive::error::ReceiveError;
use crate::ops::receive::state::errno_io;

/// Concurrent uploads of one name, before the next is told to wait.
const PART_SLOTS: u32 = 8;

/// A part file this process holds.
pub struct Part {
    pub name: String,
    pub file: Flock<File>,
}

impl Part {
    pub fn file(&mut self) -> &mut File {
        &mut self.file
    }
}

fn part_name(final_name: &str, slot: u32) -> String {
    if slot == 0 {
        format!("{final_name}.part")
    } else {
        format!("{final_name}.{slot}.part")
    }
}

fn same_file(a: &FileStat, b: &FileStat) -> bool {
    a.st_dev == b.st_dev && a.st_ino == b.st_ino
}

/// Claims a part file for `final_name` in `dir` (see the module doc).
pub fn claim_part(dir: BorrowedFd<'_>, final_name: &str) -> Result<Part, ReceiveError> {
    for slot in 0..PART_SLOTS {
        let name = part_name(final_name, slot);
        // The path may be renamed or replaced between open and lock: a few tries per slot.
        for _ in 0..3 {
            let fd = openat(
                dir,
                name.as_str(),
                OFlag::O_RDWR | OFlag::O_CREAT | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                Mode::S_IRUSR | Mode::S_IWUSR,
            )
            .map_err(|e| ReceiveError::io(format!("creating {name}"))(errno_io(e)))?;
            let file = File::from(fd);
            let held = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
                Ok(held) => held,
                Err((_, Errno::EWOULDBLOCK)) => break, // a live upload: next slot
                Err((_, e)) => {
                    return Err(ReceiveError::io(format!("locking {name}"))(errno_io(e)));
                }
            };
            // Locked: but is it still the file at this name? An upload that
            // just finished renamed its part (now a final file) away.
            let mine = fstat(&*held).map_err(|e| ReceiveError::io(name.clone())(errno_io(e)))?;
            let here = fstatat(dir, name.as_str(), nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW);
            match here {
                Ok(here) if same_file(&mine, &here) => {}
                _ => continue,
            }
            if SFlag::from_bits_truncate(mine.st_mode) & SFlag::S_IFMT != SFlag::S_IFREG {
                return Err(ReceiveError::Misconfigured(format!(
                    "{name} is not a regular file: move it out of the folder"
                )));
            }
            // A dead upload's bytes: start again from nothing.
            held.set_len(0)
                .map_err(ReceiveError::io(format!("truncating {name}")))?;
            return Ok(Part { name, file: held });
        }
    }
    Err(ReceiveError::Busy {
        what: final_name.to_owned(),
    })
}

/// Removes a part file this process holds (a refused or duplicate upload).
pub fn discard(dir: BorrowedFd<'_>, part: Part) {
    // Unlinked while still locked, so nobody takes it over in between.
    let _ = unlinkat(dir, part.name.as_str(), UnlinkatFlags::NoRemoveDir);
    drop(part);
}

/// What happened to the rename.
pub enum Landed {
    /// The file is in place under its final name.
    Placed,
    /// A file of that name appeared while the upload ran; the part is still there.
    NameTaken,
}

/// Syncs the part, renames it to `final_name` without replacing anything,
/// and syncs the folder.
pub fn land(
    dir: BorrowedFd<'_>,
    part: &mut Part,
    final_name: &str,
) -> Result<Landed, ReceiveError> {
    part.file
        .sync_all()
        .map_err(ReceiveError::io(format!("syncing {}", part.name)))?;
    match renameat2(
        dir,
        part.name.as_str(),
        dir,
        final_name,
        RenameFlags::RENAME_NOREPLACE,
    ) {
        Ok(()) => {}
        Err(Errno::EEXIST) => return Ok(Landed::NameTaken),
        // A file system without RENAME_NOREPLACE: a hard link fails the
        // same way on an existing name, then the part name goes.
        Err(Errno::EINVAL | Errno::ENOSYS) => {
            match nix::unistd::linkat(
                dir,
                part.name.as_str(),
                dir,
                final_name,
                nix::fcntl::AtFlags::empty(),
            ) {
                Ok(()) => {
                    let _ = unlinkat(dir, part.name.as_str(), UnlinkatFlags::NoRemoveDir);
                }
                Err(Errno::EEXIST) => return Ok(Landed::NameTaken),
                Err(e) => {
                    return Err(ReceiveError::io(format!("linking {final_name}"))(errno_io(
                        e,
                    )));
                }
            }
        }
        Err(e) => {
            return Err(ReceiveError::io(format!(
                "renaming {} to {final_name}",
                part.name
            ))(errno_io(e)));
        }
    }
    sync_dir(dir).map_err(ReceiveError::io("syncing the folder"))?;
    Ok(Landed::Placed)
}

pub fn sync_dir(dir: BorrowedFd<'_>) -> io::Result<()> {
    nix::unistd::fsync(dir).map_err(errno_io)
}

/// A regular file's handle in `dir`, never through a symlink; `None` when absent.
pub fn open_existing(dir: BorrowedFd<'_>, name: &str) -> Result<Option<File>, ReceiveError> {
    match openat(
        dir,
        name,
        OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    ) {
        Ok(fd) => Ok(Some(File::from(fd))),
        Err(Errno::ENOENT) => Ok(None),
        // A symlink (ELOOP) or anything else under a final name is a name taken.
        Err(e) => Err(ReceiveError::io(format!("opening {name}"))(errno_io(e))),
    }
}

/// Whether `name` exists in `dir` (as anything).
pub fn exists(dir: BorrowedFd<'_>, name: &str) -> bool {
    fstatat(dir, name, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW).is_ok()
}

/// SHA-256 and length of a file's content, inflated when `compressed`,
/// reading at most `cap` content bytes (a longer file gets the hash of its
/// first `cap` bytes and a length of `cap + 1`: never equal to a valid upload).
pub fn content_digest(file: File, compressed: bool, cap: u64) -> io::Result<([u8; 32], u64)> {
    let reader = io::BufReader::with_capacity(256 * 1024, file);
    let mut reader: Box<dyn Read> = if compressed {
        Box::new(flate2::bufread::MultiGzDecoder::new(reader).take(cap + 1))
    } else {
        Box::new(reader.take(cap + 1))
    };
    let mut hasher = sha2::Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut total = 0u64;
    loop {
        match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                total += n as u64;
                hasher.update(&buf[..n]);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok((hasher.finalize().into(), total))
}

pub fn hex(digest: &[u8]) -> String {
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Re-opens a part file this process holds, for reading it from the start.
pub fn reopen(dir: BorrowedFd<'_>, name: &str) -> Result<File, ReceiveError> {
    open_existing(dir, name)?.ok_or_else(|| {
        ReceiveError::io(format!("reading {name}"))(io::Error::from(io::ErrorKind::NotFound))
    })
}

/// Makes a directory handle borrowable from an owned one (readability at call sites).
pub fn fd(owned: &OwnedFd) -> BorrowedFd<'_> {
    owned.as_fd()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn open(dir: &std::path::Path) -> OwnedFd {
        nix::fcntl::open(
            dir,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .unwrap()
    }

    #[test]
    fn landing_never_replaces_a_name() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = open(tmp.path());
        std::fs::write(tmp.path().join("A"), b"stored").unwrap();
        let mut part = claim_part(fd(&dir), "A").unwrap();
        part.file().write_all(b"new").unwrap();
        assert!(matches!(
            land(fd(&dir), &mut part, "A").unwrap(),
            Landed::NameTaken
        ));
        assert_eq!(std::fs::read(tmp.path().join("A")).unwrap(), b"stored");
        discard(fd(&dir), part);
        assert!(!tmp.path().join("A.part").exists());

        let mut part = claim_part(fd(&dir), "B").unwrap();
        part.file().write_all(b"bytes").unwrap();
        assert!(matches!(
            land(fd(&dir), &mut part, "B").unwrap(),
            Landed::Placed
        ));
        assert_eq!(std::fs::read(tmp.path().join("B")).unwrap(), b"bytes");
        assert!(!tmp.path().join("B.part").exists());
    }

    #[test]
    fn a_dead_uploads_part_is_taken_over_and_a_live_one_is_not() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = open(tmp.path());
        // Left by a killed upload: nobody holds its lock.
        std::fs::write(tmp.path().join("C.part"), b"half an upload").unwrap();
        let live = claim_part(fd(&dir), "C").unwrap();
        assert_eq!(live.name, "C.part");
        assert_eq!(
            std::fs::metadata(tmp.path().join("C.part")).unwrap().len(),
            0
        );
        // While it runs, a second upload of C gets its own part file.
        let second = claim_part(fd(&dir), "C").unwrap();
        assert_eq!(second.name, "C.1.part");
        let mut held = vec![live, second];
        for _ in 2..PART_SLOTS {
            held.push(claim_part(fd(&dir), "C").unwrap());
        }
        let busy = claim_part(fd(&dir), "C").err().unwrap();
        assert_eq!(busy.code().as_str(), "busy");
        drop(held);
    }

    #[test]
    fn a_symlink_is_never_followed() {
        let tmp = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(outside.path().join("x"), tmp.path().join("D.part")).unwrap();
        let dir = open(tmp.path());
        assert!(claim_part(fd(&dir), "D").is_err());
        assert!(!outside.path().join("x").exists());
        std::os::unix::fs::symlink(outside.path().join("y"), tmp.path().join("E")).unwrap();
        assert!(open_existing(fd(&dir), "E").is_err());
    }

    #[test]
    fn digests_compare_content_not_compression() {
        let tmp = tempfile::tempdir().unwrap();
        let content = b"the same content".repeat(1000);
        std::fs::write(tmp.path().join("p"), &content).unwrap();
        std::fs::write(tmp.path().join("g"), crate::demo::gzip(&content).unwrap()).unwrap();
        let p = content_digest(File::open(tmp.path().join("p")).unwrap(), false, 1 << 20).unwrap();
        let g = content_digest(File::open(tmp.path().join("g")).unwrap(), true, 1 << 20).unwrap();
        assert_eq!(p, g);
        let capped = content_digest(File::open(tmp.path().join("p")).unwrap(), false, 10).unwrap();
        assert_eq!(capped.1, 11);
    }
}
