//! Remembers facts that cost a full decompression of a base tarball
//! (pg_control's system identifier, the unpacked size), keyed by path,
//! size and mtime, so a restart never pays for them again.
//!
//! The cache lives outside the backup root (the archive is read-only to
//! walwarden): by default in the user's cache directory.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::archive::base_backup::{self, BaseTarFull};
use crate::archive::folder::FileFact;

pub fn default_cache_path() -> Option<PathBuf> {
    dirs::cache_dir().map(|d| d.join("walwarden").join("base-facts.json"))
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
struct Entry {
    size: u64,
    mtime_ns: u128,
    facts: BaseTarFull,
}

#[derive(Debug, Default)]
pub struct BaseFactsCache {
    path: Option<PathBuf>,
    entries: Mutex<HashMap<String, Entry>>,
    changed: Mutex<bool>,
}

fn mtime_ns(time: SystemTime) -> u128 {
    time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos())
}

impl BaseFactsCache {
    /// Loads the cache; a missing or unreadable file is an empty cache.
    pub fn load(path: Option<&Path>) -> BaseFactsCache {
        let entries = crate::store::read_json_or_default(path);
        BaseFactsCache {
            path: path.map(Path::to_owned),
            entries: Mutex::new(entries),
            changed: Mutex::new(false),
        }
    }

    /// The cached facts for this tarball, or (when `compute`) a full pass over it.
    pub fn get_or_compute(
        &self,
        tarball: &Path,
        fact: &FileFact,
        compute: bool,
    ) -> Option<BaseTarFull> {
        // Escaped, not lossy: two clients whose names differ only in bytes that
        // are not UTF-8 must not share a key.
        let key = crate::display::escape_path(tarball);
        let wanted = (fact.size, mtime_ns(fact.mtime));
        if let Ok(entries) = self.entries.lock()
            && let Some(entry) = entries.get(&key).filter(|e| (e.size, e.mtime_ns) == wanted)
        {
            return Some(entry.facts);
        }
        if !compute {
            return None;
        }
        let facts = base_backup::read_base_full(tarball).ok()?;
        if let Ok(mut entries) = self.entries.lock() {
            entries.insert(
                key,
                Entry {
                    size: wanted.0,
                    mtime_ns: wanted.1,
                    facts,
                },
            );
            if let Ok(mut changed) = self.changed.lock() {
                *changed = true;
            }
        }
        Some(facts)
    }

    /// Writes the cache back when something new was computed; failures only cost a recomputation.
    pub fn save_if_changed(&self) {
        let changed = self.changed.lock().map(|c| *c).unwrap_or(false);
        let (Some(path), true) = (&self.path, changed) else {
            return;
        };
        let Ok(entries) = self.entries.lock() else {
            return;
        };
        // Failing to remember costs only a full pass next time.
        let _ = crate::store::write_json(path, &*entries);
    }
}
