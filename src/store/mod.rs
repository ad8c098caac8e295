//! walwarden's own files, outside the backup root: the caches and the drill
//! history in the user's cache folder, the Prometheus textfile, a client
//! user's authorized_keys.
//!
//! Every path written here is checked by [`guard`] first: nothing of
//! walwarden's may land inside the backup root, be it, or contain it.
//!
//! Every such write goes through `write_atomically`: a temporary file with a
//! unique name in the same folder, synced, renamed over the old file, then
//! the folder synced. A crash leaves the old file or the new one, never half
//! of one, and two writers never share a temporary. Read-modify-write (the
//! drill history) and cache saves hold `Lock`, an advisory `flock` on a
//! sidecar `.lock` file, so a cron `check` beside the dashboard cannot
//! interleave with it.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use nix::fcntl::{Flock, FlockArg};
use serde::Serialize;
use serde::de::DeserializeOwned;

pub mod guard;

/// Mode for files anyone may read (umask still applies), as `fs::write` makes them.
pub const SHARED: u32 = 0o666;
/// Mode for files only their owner reads (an authorized_keys).
pub const PRIVATE: u32 = 0o600;

/// Writes `bytes` to `path` atomically (see the module's doc), creating the
/// new file with `mode` (less the umask). The parent folder must exist.
pub fn write_atomically(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    guard::check_write(path, "the file")?;
    let dir = parent_of(path);
    let temporary = unique_temporary(path);
    let written = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&temporary)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        drop(file);
        fs::rename(&temporary, path)
    })();
    if let Err(error) = written {
        let _ = fs::remove_file(&temporary);
        return Err(error);
    }
    // The rename is durable only once the folder's entry is on disk.
    File::open(dir)?.sync_all()
}

/// `.NAME.PID.N.tmp` beside `path`: unique per process and per write, hidden
/// from anything that lists the folder for its real files.
fn unique_temporary(path: &Path) -> PathBuf {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let name = path
        .file_name()
        .map_or_else(|| "walwarden".into(), |n| n.to_string_lossy());
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    parent_of(path).join(format!(".{name}.{}.{n}.tmp", std::process::id()))
}

fn parent_of(path: &Path) -> &Path {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    }
}

/// An advisory exclusive lock on `<path>.lock`, released when dropped.
pub struct Lock {
    _held: Flock<File>,
}

impl Lock {
    /// Waits for the lock of `path` (its sidecar is created when missing).
    pub fn acquire(path: &Path) -> io::Result<Lock> {
        guard::check_write(path, "the lock of")?;
        let mut sidecar = path.as_os_str().to_owned();
        sidecar.push(".lock");
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(SHARED)
            .open(PathBuf::from(sidecar))?;
        let held = Flock::lock(file, FlockArg::LockExclusive)
            .map_err(|(_, errno)| io::Error::from(errno))?;
        Ok(Lock { _held: held })
    }
}

/// A JSON file of ours (caches, history) read back; missing or unreadable
/// means starting empty: it only costs a re-read or a re-check.
pub fn read_json_or_default<T: DeserializeOwned + Default>(path: Option<&Path>) -> T {
    path.and_then(|p| fs::read(p).ok())
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or_default()
}

/// Writes `value` as JSON under the file's lock, atomically; makes the
/// parent folder when missing.
pub fn write_json<T: Serialize>(path: &Path, value: &T) -> io::Result<()> {
    guard::check_write(path, "the file")?;
    fs::create_dir_all(parent_of(path))?;
    let _lock = Lock::acquire(path)?;
    write_json_locked(path, value)
}

/// Reads, changes and writes back a JSON file while holding its lock, so
/// two processes updating it at once both keep their change.
pub fn update_json<T: Serialize + DeserializeOwned + Default>(
    path: &Path,
    change: impl FnOnce(&mut T),
) -> io::Result<()> {
    guard::check_write(path, "the file")?;
    fs::create_dir_all(parent_of(path))?;
    let _lock = Lock::acquire(path)?;
    let mut value = read_json_or_default(Some(path));
    change(&mut value);
    write_json_locked(path, &value)
}

fn write_json_locked<T: Serialize>(path: &Path, value: &T) -> io::Result<()> {
    let bytes = serde_json::to_vec(value).map_err(io::Error::other)?;
    write_atomically(path, &bytes, SHARED)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_atomic_write_replaces_the_file_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("facts.json");
        write_atomically(&path, b"old", SHARED).unwrap();
        write_atomically(&path, b"new", SHARED).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"new");
        let names: Vec<String> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, vec!["facts.json".to_owned()]);
    }

    #[test]
    fn concurrent_updates_under_the_lock_all_land() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("history.json");
        std::thread::scope(|scope| {
            for i in 0..8u32 {
                let path = &path;
                scope.spawn(move || {
                    for j in 0..10u32 {
                        update_json(path, |list: &mut Vec<u32>| list.push(i * 100 + j)).unwrap();
                    }
                });
            }
        });
        let mut list: Vec<u32> = read_json_or_default(Some(&path));
        list.sort_unstable();
        let expected: Vec<u32> = (0..8u32)
            .flat_map(|i| (0..10u32).map(move |j| i * 100 + j))
            .collect();
        assert_eq!(list, expected, "an update was lost");
    }

    #[test]
    fn a_private_file_is_created_without_group_or_other_access() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("authorized_keys");
        write_atomically(&path, b"ssh-ed25519 AAAA x\n", PRIVATE).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
}
