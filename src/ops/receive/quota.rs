//! How many bytes a client's folder holds, for its quota, and how much the
//! file system must keep free.
//!
//! Summing a `wal/` of a million files costs a second or two, too much per
//! segment, so the sum of `wal/` is remembered in `.walwarden/usage.json`
//! with the folder's mtime. While the mtime is the one remembered, nobody
//! but the receiver changed the folder, and each landing adds its file's
//! size under the usage lock (the rename happens inside it). Anything else
//! (an operator removing files, a clock step) changes the mtime and the next
//! upload sums the folder again; so does a sum older than ten minutes. The
//! rest of the client folder (base/, .walwarden/: a few files) is summed
//! every time. Without a quota none of this runs.

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::ops::receive::state::OWN_DIR;

const USAGE_FILE: &str = "usage.json";
/// A remembered sum older than this is summed again.
const USAGE_MAX_AGE: Duration = Duration::from_secs(600);
/// The most the file system's reserve asks for.
const RESERVE_CAP: u64 = 1 << 30;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Usage {
    wal_bytes: u64,
    wal_mtime_ns: u128,
    counted_at: u64,
}

/// Bytes the file system keeps free for everyone else: 1 % of it, at most 1 GiB.
pub fn reserve_for(total_bytes: u64) -> u64 {
    (total_bytes / 100).min(RESERVE_CAP)
}

/// The reserve of the file system holding `path` (0 when it cannot be read).
pub fn reserve_at(path: &Path) -> u64 {
    nix::sys::statvfs::statvfs(path).map_or(0, |s| {
        reserve_for(s.blocks().saturating_mul(s.fragment_size()))
    })
}

fn mtime_ns(meta: &fs::Metadata) -> u128 {
    meta.modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos())
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Sum of the sizes of the regular files under `dir`, symlinks not followed.
pub fn sum_tree(dir: &Path) -> io::Result<u64> {
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        for entry in entries {
            let entry = entry?;
            let Ok(meta) = entry.metadata() else {
                continue; // removed while summing
            };
            if meta.is_dir() {
                stack.push(entry.path());
            } else if meta.is_file() {
                total += meta.size();
            }
        }
    }
    Ok(total)
}

/// The client's usage, with the `wal/` sum remembered between uploads.
pub struct UsageBook {
    client_dir: PathBuf,
}

impl UsageBook {
    pub fn new(client_dir: &Path) -> UsageBook {
        UsageBook {
            client_dir: client_dir.to_owned(),
        }
    }

    fn path(&self) -> PathBuf {
        self.client_dir.join(OWN_DIR).join(USAGE_FILE)
    }

    /// Bytes the client's folder holds now.
    pub fn used(&self) -> io::Result<u64> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(self.client_dir.join(OWN_DIR))?;
        let wal = self.client_dir.join("wal");
        let wal_meta = fs::metadata(&wal)?;
        let remembered: Usage = crate::store::read_json_or_default(Some(&self.path()));
        let fresh = remembered.wal_mtime_ns == mtime_ns(&wal_meta)
            && now_secs().saturating_sub(remembered.counted_at) < USAGE_MAX_AGE.as_secs();
        let wal_bytes = if fresh {
            remembered.wal_bytes
        } else {
            // The mtime before the sum: a change during it shows next time.
            let usage = Usage {
                wal_mtime_ns: mtime_ns(&wal_meta),
                wal_bytes: sum_tree(&wal)?,
                counted_at: now_secs(),
            };
            let _lock = crate::store::Lock::acquire(&self.path())?;
            self.write(&usage);
            usage.wal_bytes
        };
        let mut rest = 0;
        for entry in fs::read_dir(&self.client_dir)? {
            let entry = entry?;
            if entry.file_name() == "wal" {
                continue;
            }
            let meta = entry.metadata()?;
            if meta.is_dir() {
                rest += sum_tree(&entry.path())?;
            } else if meta.is_file() {
                rest += meta.size();
            }
        }
        Ok(wal_bytes + rest)
    }

    /// Runs `place` (the rename of `bytes` into wal/) under the usage lock
    /// and adds them to the remembered sum when nobody else changed wal/.
    pub fn landing<T>(&self, bytes: u64, place: impl FnOnce() -> T) -> io::Result<T> {
        let wal = self.client_dir.join("wal");
        let _lock = crate::store::Lock::acquire(&self.path())?;
        let before = mtime_ns(&fs::metadata(&wal)?);
        let placed = place();
        let mut usage: Usage = crate::store::read_json_or_default(Some(&self.path()));
        if usage.wal_mtime_ns == before {
            usage.wal_bytes += bytes;
            usage.wal_mtime_ns = mtime_ns(&fs::metadata(&wal)?);
            self.write(&usage);
        }
        Ok(placed)
    }

    /// A cache write: no sync (losing it costs one sum), atomic by rename.
    fn write(&self, usage: &Usage) {
        let Ok(bytes) = serde_json::to_vec(usage) else {
            return;
        };
        let path = self.path();
        let temporary = path.with_extension(format!("{}.tmp", std::process::id()));
        if fs::write(&temporary, bytes).is_ok() && fs::rename(&temporary, &path).is_err() {
            let _ = fs::remove_file(&temporary);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reserve_is_one_percent_up_to_a_gibibyte() {
        assert_eq!(reserve_for(10 << 30), (10u64 << 30) / 100);
        assert_eq!(reserve_for(1 << 40), 1 << 30);
    }

    #[test]
    fn usage_is_remembered_and_summed_again_after_outside_changes() {
        let tmp = tempfile::tempdir().unwrap();
        let client = tmp.path();
        fs::create_dir_all(client.join("wal")).unwrap();
        fs::create_dir_all(client.join("base")).unwrap();
        fs::create_dir_all(client.join(OWN_DIR)).unwrap();
        fs::write(client.join("wal/a"), vec![0u8; 1000]).unwrap();
        fs::write(client.join("base/base.tar.gz"), vec![0u8; 500]).unwrap();
        let book = UsageBook::new(client);
        let first = book.used().unwrap();
        assert!(first >= 1500, "{first}");
        // A landing through the book is added without a new sum.
        book.landing(300, || {
            fs::write(client.join("wal/b"), vec![0u8; 300]).unwrap()
        })
        .unwrap();
        let after = book.used().unwrap();
        // The cache file itself may have grown by a digit or two.
        assert!(
            (after as i64 - first as i64 - 300).abs() < 20,
            "{first} -> {after}"
        );
        // An operator's removal changes wal/'s mtime: summed again.
        std::thread::sleep(Duration::from_millis(20));
        fs::remove_file(client.join("wal/a")).unwrap();
        let removed = book.used().unwrap();
        assert!(
            (after as i64 - removed as i64 - 1000).abs() < 20,
            "{after} -> {removed}"
        );
    }
}
