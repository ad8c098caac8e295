//! The catalog: what is on the backup server, read from the file system.
//!
//! `scan(root)` walks every client folder (`ROOT/<client>/{base,wal}`) once:
//! one `readdir` and one `stat` per file, names classified without reading
//! them, and only the few files whose content matters opened (the head of
//! base.tar.gz, the first WAL header, `.backup` and `.history` files). The
//! archive is read-only to walwarden: nothing here writes under the root.
//! Symlinks are followed only when they stay inside the root.

use std::ffi::OsStr;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::SystemTime;

use thiserror::Error;

use crate::archive::base_backup::{self, BackupLabel, BaseTarFull, BaseTarHead};
use crate::archive::base_cache::BaseFactsCache;
use crate::archive::continuity::{self, Continuity};
use crate::archive::wal::{
    self, HistoryEntry, LongPageHeader, RawSegmentName, Timeline, WalFileKind,
};
use crate::archive::watch::{Arrival, CADENCE_MEMORY, Cadence, WalChange};

#[derive(Debug, Error)]
pub enum CatalogError {
    #[error("backup root {0} does not exist (set --root or WALWARDEN_ROOT)")]
    RootMissing(PathBuf),
    #[error("backup root {0} is not a directory")]
    RootNotADirectory(PathBuf),
    #[error("cannot read backup root {path}: {source}")]
    RootUnreadable { path: PathBuf, source: io::Error },
    #[error("no client named {name} under {root}")]
    NoSuchClient { name: String, root: PathBuf },
}

/// A file's name, size and modification time, as one stat gave them.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FileFact {
    pub name: String,
    pub size: u64,
    #[serde(serialize_with = "crate::serde_util::time")]
    pub mtime: SystemTime,
}

/// Something the scan could not read or would not follow.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Unreadable {
    pub path: PathBuf,
    pub error: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BaseFileKind {
    BaseTar,
    PgWalTar,
    Manifest,
    /// `<oid>.tar[.gz]`: a tablespace's contents.
    Tablespace,
    /// A tarball still being copied (`.part`).
    InFlight,
    Other,
}

impl BaseFileKind {
    pub fn classify(name: &str) -> BaseFileKind {
        if name.ends_with(".part") {
            return BaseFileKind::InFlight;
        }
        let stem = name.strip_suffix(".gz").unwrap_or(name);
        match stem {
            "base.tar" => BaseFileKind::BaseTar,
            "pg_wal.tar" => BaseFileKind::PgWalTar,
            "backup_manifest" => BaseFileKind::Manifest,
            _ => match stem.strip_suffix(".tar") {
                Some(oid) if !oid.is_empty() && oid.bytes().all(|b| b.is_ascii_digit()) => {
                    BaseFileKind::Tablespace
                }
                _ => BaseFileKind::Other,
            },
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct BaseFile {
    pub kind: BaseFileKind,
    #[serde(flatten)]
    pub fact: FileFact,
}

/// The `base/` folder and what its tarballs say.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct BaseBackup {
    /// Whether `base/` exists at all.
    pub present: bool,
    pub files: Vec<BaseFile>,
    /// backup_label and PG_VERSION from the head of base.tar.gz.
    pub head: Option<BaseTarHead>,
    pub head_error: Option<String>,
    /// The first segment inside pg_wal.tar.gz and its header.
    pub pg_wal_first: Option<(String, LongPageHeader)>,
    pub pg_wal_error: Option<String>,
    /// Timeline history files inside pg_wal.tar.gz (read only for a base on a timeline above 1).
    #[serde(skip)]
    pub pg_wal_histories: Vec<(Timeline, Vec<HistoryEntry>)>,
    /// Facts from a full pass over base.tar.gz, when computed or cached.
    pub full: Option<BaseTarFull>,
}

impl BaseBackup {
    pub fn file(&self, kind: BaseFileKind) -> Option<&BaseFile> {
        self.files.iter().find(|f| f.kind == kind)
    }

    pub fn total_bytes(&self) -> u64 {
        self.files.iter().map(|f| f.fact.size).sum()
    }

    pub fn pg_version(&self) -> Option<&str> {
        self.head.as_ref()?.pg_version.as_deref()
    }

    pub fn label(&self) -> Option<&BackupLabel> {
        self.head.as_ref().map(|h| &h.label)
    }

    /// The cluster's system identifier: from pg_control when a full pass has
    /// read it, else from the WAL header in pg_wal.tar.gz (the same number).
    pub fn system_identifier(&self) -> Option<u64> {
        self.full
            .map(|f| f.system_identifier)
            .or_else(|| self.pg_wal_first.as_ref().map(|(_, h)| h.system_identifier))
    }

    /// When the backup was taken: the label's START TIME, else the tarball's mtime.
    pub fn taken_at(&self) -> Option<SystemTime> {
        self.label()
            .and_then(|l| l.start_time)
            .or_else(|| self.file(BaseFileKind::BaseTar).map(|f| f.fact.mtime))
    }
}

/// One archived segment (or `.partial`); its name is kept parsed, not as text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentFile {
    pub name: RawSegmentName,
    pub compressed: bool,
    pub partial: bool,
    pub size: u64,
    pub mtime: SystemTime,
}

impl SegmentFile {
    pub fn file_name(&self) -> String {
        let partial = if self.partial { ".partial" } else { "" };
        let gz = if self.compressed { ".gz" } else { "" };
        format!("{}{partial}{gz}", self.name)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct BackupHistoryFile {
    #[serde(flatten)]
    pub fact: FileFact,
    pub label: Result<BackupLabel, String>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TimelineHistoryFile {
    pub timeline: Timeline,
    #[serde(flatten)]
    pub fact: FileFact,
    #[serde(skip)]
    pub entries: Result<Vec<HistoryEntry>, String>,
}

/// The `wal/` folder.
#[derive(Debug, Clone, Default)]
pub struct WalArchive {
    pub present: bool,
    /// False when the folder exists but could not be listed: nothing below is known.
    pub unreadable: bool,
    /// Sorted by name, which is (timeline, segment number) order.
    pub segments: Vec<SegmentFile>,
    pub backup_files: Vec<BackupHistoryFile>,
    pub histories: Vec<TimelineHistoryFile>,
    pub in_flight: Vec<FileFact>,
    pub others: Vec<FileFact>,
    /// From the first readable segment's long header; None when no segment could be read.
    pub segment_size: Option<u32>,
    pub first_header: Option<LongPageHeader>,
    pub header_error: Option<String>,
}

impl WalArchive {
    pub fn total_bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.size).sum::<u64>()
            + self.backup_files.iter().map(|f| f.fact.size).sum::<u64>()
            + self.histories.iter().map(|f| f.fact.size).sum::<u64>()
    }

    pub fn last_arrival(&self) -> Option<SystemTime> {
        let segments = self.segments.iter().map(|s| s.mtime);
        let others = self.backup_files.iter().map(|f| f.fact.mtime);
        segments.chain(others).max()
    }

    /// Files one `wal/` entry as what its name says; segments are appended
    /// unsorted (the scan sorts once at the end).
    fn add_file(&mut self, dir: &Path, fact: FileFact) {
        match WalFileKind::classify(&fact.name) {
            WalFileKind::Segment {
                name,
                compressed,
                partial,
            } => self.segments.push(SegmentFile {
                name,
                compressed,
                partial,
                size: fact.size,
                mtime: fact.mtime,
            }),
            WalFileKind::BackupHistory { .. } => {
                let label = base_backup::read_small_text(&dir.join(&fact.name))
                    .map_err(|e| e.to_string())
                    .and_then(|text| BackupLabel::parse(&text));
                self.backup_files.push(BackupHistoryFile { fact, label });
            }
            WalFileKind::TimelineHistory { timeline, .. } => {
                let entries = base_backup::read_small_text(&dir.join(&fact.name))
                    .map_err(|e| e.to_string())
                    .and_then(|text| wal::parse_timeline_history(&text).map_err(|e| e.to_string()));
                self.histories.push(TimelineHistoryFile {
                    timeline,
                    fact,
                    entries,
                });
            }
            WalFileKind::InFlight { .. } => self.in_flight.push(fact),
            WalFileKind::Other => self.others.push(fact),
        }
    }

    fn file_count(&self) -> usize {
        self.segments.len()
            + self.backup_files.len()
            + self.histories.len()
            + self.in_flight.len()
            + self.others.len()
    }

    /// Removes whatever entry has this file name; true when something was removed.
    fn remove_file(&mut self, name: &str) -> bool {
        let before = self.file_count();
        // Only a segment-like name can be a segment's file name. The list is
        // sorted by (name, partial): look in that run alone, instead of
        // formatting every segment's name (a storm of events made that quadratic).
        if let WalFileKind::Segment {
            name: raw, partial, ..
        } = WalFileKind::classify(name)
        {
            debug_assert!(self.segments.is_sorted_by_key(|s| (s.name, s.partial)));
            let start = self
                .segments
                .partition_point(|s| (s.name, s.partial) < (raw, partial));
            let run = self.segments[start..]
                .iter()
                .take_while(|s| s.name == raw && s.partial == partial)
                .count();
            let mut kept: Vec<SegmentFile> = self.segments[start..start + run]
                .iter()
                .filter(|s| s.file_name() != name)
                .copied()
                .collect();
            if kept.len() != run {
                self.segments.splice(start..start + run, kept.drain(..));
            }
        }
        self.backup_files.retain(|f| f.fact.name != name);
        self.histories.retain(|f| f.fact.name != name);
        self.in_flight.retain(|f| f.name != name);
        self.others.retain(|f| f.name != name);
        before != self.file_count()
    }

    /// Files a finished file seen live, keeping the segment list sorted.
    /// Returns the segment, and whether a file of that name was known before.
    fn insert_live(&mut self, dir: &Path, fact: FileFact) -> Option<(SegmentFile, bool)> {
        let replaced = self.remove_file(&fact.name);
        self.in_flight
            .retain(|p| p.name.strip_suffix(".part") != Some(fact.name.as_str()));
        let count = self.segments.len();
        self.add_file(dir, fact);
        if self.segments.len() == count {
            return None;
        }
        let segment = self.segments.pop()?;
        let position = self
            .segments
            .partition_point(|s| (s.name, s.partial) < (segment.name, segment.partial));
        self.segments.insert(position, segment);
        if self.segment_size.is_none() {
            read_segment_size(dir, self);
        }
        Some((segment, replaced))
    }

    /// The segment size to use for arithmetic: the one read from a header, else the default.
    pub fn effective_segment_size(&self) -> u32 {
        self.segment_size.unwrap_or(wal::DEFAULT_SEG_SIZE)
    }
}

#[derive(Debug, Clone)]
pub struct Client {
    pub name: String,
    pub path: PathBuf,
    pub base: BaseBackup,
    pub wal: WalArchive,
    /// Files in the client folder itself that are neither base/ nor wal/.
    pub stray: Vec<FileFact>,
    pub unreadable: Vec<Unreadable>,
    /// Timelines, gaps and the recoverable window, derived from the above.
    pub continuity: Continuity,
    /// Recent arrivals: seeded from mtimes at a scan, then fed by file events.
    pub cadence: Cadence,
    /// Set when live changes made `continuity` out of date; `Catalog::refresh` clears it.
    pub stale: bool,
}

#[derive(Debug, Clone)]
pub struct Catalog {
    pub root: PathBuf,
    pub clients: Vec<Client>,
    pub scanned_at: SystemTime,
}

/// What applying a change did, and what the caller must do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    Nothing,
    /// The client's files changed; `arrival` when a new segment landed.
    Changed {
        client: String,
        arrival: Option<Arrival>,
    },
    /// Re-read this client folder (`scan_client`), then `replace_client`.
    RescanClient(String),
    /// Re-read the whole root.
    RescanAll(String),
}

impl Catalog {
    pub fn client(&self, name: &str) -> Option<&Client> {
        self.clients.iter().find(|c| c.name == name)
    }

    /// Applies one file event incrementally: a stat of the one file, never a
    /// rescan. Derived facts are recomputed by `refresh`, once per batch.
    pub fn apply(&mut self, change: &WalChange) -> Applied {
        let (client_name, name, seen_at) = match change {
            WalChange::Resync {
                client: Some(client),
                ..
            }
            | WalChange::ClientChanged { client } => {
                return Applied::RescanClient(client.clone());
            }
            WalChange::Resync {
                client: None,
                reason,
            } => return Applied::RescanAll(reason.clone()),
            WalChange::Arrived {
                client,
                name,
                seen_at,
            }
            | WalChange::InFlight {
                client,
                name,
                seen_at,
            } => (client, name, Some(*seen_at)),
            WalChange::Removed { client, name } => (client, name, None),
        };
        let Some(client) = self.clients.iter_mut().find(|c| &c.name == client_name) else {
            return Applied::RescanClient(client_name.clone());
        };
        let dir = client.path.join("wal");
        let Some(seen_at) = seen_at else {
            if !client.wal.remove_file(name) {
                return Applied::Nothing;
            }
            client.stale = true;
            return Applied::Changed {
                client: client.name.clone(),
                arrival: None,
            };
        };
        let meta = match fs::symlink_metadata(dir.join(name)) {
            Ok(meta) if meta.is_file() => meta,
            // A link or folder: the scan's rules decide about those.
            Ok(_) => return Applied::RescanClient(client.name.clone()),
            // Gone already (renamed on, removed): its own event follows.
            Err(_) => return Applied::Nothing,
        };
        let fact = FileFact {
            name: name.clone(),
            size: meta.len(),
            mtime: meta.modified().unwrap_or(seen_at),
        };
        client.wal.present = true;
        // A rescan that ran between the file landing and this event listed it
        // already (its cadence entry is the mtime): the event is still its one
        // live arrival. A file already seen live is a repeated event.
        let scanned_only = client
            .cadence
            .arrivals()
            .any(|a| a.name == *name && !a.live);
        let arrival = client
            .wal
            .insert_live(&dir, fact)
            .filter(|(s, replaced)| !s.partial && (!replaced || scanned_only))
            .map(|(segment, _)| Arrival {
                name: name.clone(),
                size: segment.size,
                at: seen_at,
                live: true,
            });
        if let Some(arrival) = &arrival {
            client.cadence.record(arrival.clone());
        }
        client.stale = true;
        Applied::Changed {
            client: client.name.clone(),
            arrival,
        }
    }

    /// Recomputes the derived facts of every client changed since the last refresh.
    pub fn refresh(&mut self) {
        for client in self.clients.iter_mut().filter(|c| c.stale) {
            client.continuity = continuity::analyse(&client.base, &client.wal);
            client.stale = false;
        }
    }

    /// Puts a re-read client in place (or adds a new one), keeping the arrivals seen live.
    pub fn replace_client(&mut self, mut client: Client) {
        match self.clients.iter_mut().find(|c| c.name == client.name) {
            Some(old) => {
                client.cadence.keep_live_from(&old.cadence);
                *old = client;
            }
            None => {
                let position = self.clients.partition_point(|c| c.name < client.name);
                self.clients.insert(position, client);
            }
        }
    }

    /// After a full rescan: every client keeps the arrivals `old` saw live
    /// (a rescan only knows mtimes).
    pub fn keep_live_arrivals_from(&mut self, old: &Catalog) {
        for client in &mut self.clients {
            if let Some(before) = old.client(&client.name) {
                client.cadence.keep_live_from(&before.cadence);
            }
        }
    }

    /// Drops a client whose folder disappeared.
    pub fn remove_client(&mut self, name: &str) {
        self.clients.retain(|c| c.name != name);
    }
}

/// How much the scan may read beyond names and stats.
#[derive(Debug, Clone, Default)]
pub struct ScanOptions {
    /// Where full-pass facts (pg_control) are remembered between runs.
    pub cache: Option<PathBuf>,
    /// Decompress whole base tarballs whose facts are not cached yet.
    pub compute_full_facts: bool,
    /// Scan only these clients (all when empty).
    pub only: Vec<String>,
}

/// Scans the whole root. Clients are scanned in parallel, one thread per core.
pub fn scan(root: &Path, options: &ScanOptions) -> Result<Catalog, CatalogError> {
    let scanned_at = SystemTime::now();
    let guard = RootGuard::new(root)?;
    let mut names = list_clients(root)?;
    if !options.only.is_empty() {
        for wanted in &options.only {
            if !names.iter().any(|(n, _)| n == wanted) {
                return Err(CatalogError::NoSuchClient {
                    name: wanted.clone(),
                    root: root.to_owned(),
                });
            }
        }
        names.retain(|(n, _)| options.only.contains(n));
    }
    let cache = BaseFactsCache::load(options.cache.as_deref());
    let next = AtomicUsize::new(0);
    let threads = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .min(names.len().max(1));
    let mut clients: Vec<(usize, Client)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut done = Vec::new();
                    loop {
                        let index = next.fetch_add(1, Ordering::Relaxed);
                        let Some((name, path)) = names.get(index) else {
                            break;
                        };
                        done.push((index, scan_client_at(&guard, name, path, &cache, options)));
                    }
                    done
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap_or_default())
            .collect()
    });
    clients.sort_by_key(|(index, _)| *index);
    cache.save_if_changed();
    tracing::info!(
        root = %root.display(),
        clients = clients.len(),
        segments = clients.iter().map(|(_, c)| c.wal.segments.len()).sum::<usize>(),
        elapsed = ?scanned_at.elapsed().unwrap_or_default(),
        "scanned backup root"
    );
    Ok(Catalog {
        root: root.to_owned(),
        clients: clients.into_iter().map(|(_, c)| c).collect(),
        scanned_at,
    })
}

/// Re-reads one client folder (after a change, or on request).
pub fn scan_client(root: &Path, name: &str, options: &ScanOptions) -> Result<Client, CatalogError> {
    let guard = RootGuard::new(root)?;
    let path = root.join(name);
    if fs::symlink_metadata(&path).is_err() {
        return Err(CatalogError::NoSuchClient {
            name: name.to_owned(),
            root: root.to_owned(),
        });
    }
    let cache = BaseFactsCache::load(options.cache.as_deref());
    let client = scan_client_at(&guard, name, &path, &cache, options);
    cache.save_if_changed();
    Ok(client)
}

/// Knows the canonical root, to refuse symlinks that lead out of it.
struct RootGuard {
    canonical: PathBuf,
}

impl RootGuard {
    fn new(root: &Path) -> Result<RootGuard, CatalogError> {
        match fs::metadata(root) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(CatalogError::RootMissing(root.to_owned()));
            }
            Err(source) => {
                return Err(CatalogError::RootUnreadable {
                    path: root.to_owned(),
                    source,
                });
            }
            Ok(meta) if !meta.is_dir() => {
                return Err(CatalogError::RootNotADirectory(root.to_owned()));
            }
            Ok(_) => {}
        }
        let canonical = fs::canonicalize(root).map_err(|source| CatalogError::RootUnreadable {
            path: root.to_owned(),
            source,
        })?;
        Ok(RootGuard { canonical })
    }

    /// Metadata of `path`, following a symlink only when its target stays inside the root.
    fn metadata(&self, path: &Path, entry_type: fs::FileType) -> Result<fs::Metadata, String> {
        if entry_type.is_symlink() {
            let target = fs::canonicalize(path).map_err(|e| format!("broken symlink: {e}"))?;
            if !target.starts_with(&self.canonical) {
                return Err(format!(
                    "symlink to {} leads outside the backup root; not followed",
                    target.display()
                ));
            }
        }
        fs::metadata(path).map_err(|e| e.to_string())
    }
}

/// Client folders: every directory (or in-root symlink to one) directly under the root.
fn list_clients(root: &Path) -> Result<Vec<(String, PathBuf)>, CatalogError> {
    let entries = fs::read_dir(root).map_err(|source| CatalogError::RootUnreadable {
        path: root.to_owned(),
        source,
    })?;
    let mut clients = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        let is_dir = match entry.file_type() {
            Ok(t) if t.is_dir() => true,
            Ok(t) if t.is_symlink() => fs::metadata(&path).is_ok_and(|m| m.is_dir()),
            _ => false,
        };
        if is_dir && !entry.file_name().to_string_lossy().starts_with('.') {
            clients.push((display_name(&entry.file_name()), path));
        }
    }
    clients.sort();
    Ok(clients)
}

fn display_name(name: &OsStr) -> String {
    name.to_string_lossy().into_owned()
}

/// One directory entry after its stat: a file, a directory, or something unreadable.
enum Listed {
    File(FileFact),
    Dir(String),
}

/// Lists a directory with one stat per entry; problems land in `unreadable`.
fn list_dir(
    guard: &RootGuard,
    dir: &Path,
    unreadable: &mut Vec<Unreadable>,
) -> Option<Vec<Listed>> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) => {
            unreadable.push(Unreadable {
                path: dir.to_owned(),
                error: e.to_string(),
            });
            return None;
        }
    };
    let mut listed = Vec::new();
    for entry in entries {
        let entry = match entry {
            Ok(entry) => entry,
            Err(e) => {
                unreadable.push(Unreadable {
                    path: dir.to_owned(),
                    error: e.to_string(),
                });
                continue;
            }
        };
        // One allocation per entry: the OsString becomes the String, and the
        // full path is built only for symlinks and errors (hot loop: 1M files).
        let name = match entry.file_name().into_string() {
            Ok(name) => name,
            Err(os_name) => {
                // Not UTF-8: surely not a WAL file; keep it visible under a lossy name.
                listed.push(Listed::File(FileFact {
                    name: display_name(&os_name),
                    size: 0,
                    mtime: SystemTime::UNIX_EPOCH,
                }));
                continue;
            }
        };
        let entry_type = match entry.file_type() {
            Ok(t) => t,
            Err(e) => {
                unreadable.push(Unreadable {
                    path: entry.path(),
                    error: e.to_string(),
                });
                continue;
            }
        };
        if entry_type.is_dir() {
            listed.push(Listed::Dir(name));
            continue;
        }
        let meta = if entry_type.is_symlink() {
            guard.metadata(&entry.path(), entry_type)
        } else {
            entry.metadata().map_err(|e| e.to_string())
        };
        match meta {
            Ok(meta) if meta.is_dir() => listed.push(Listed::Dir(name)),
            Ok(meta) => listed.push(Listed::File(FileFact {
                name,
                size: meta.len(),
                mtime: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
            })),
            Err(error) => unreadable.push(Unreadable {
                path: entry.path(),
                error,
            }),
        }
    }
    Some(listed)
}

fn scan_client_at(
    guard: &RootGuard,
    name: &str,
    path: &Path,
    cache: &BaseFactsCache,
    options: &ScanOptions,
) -> Client {
    let mut unreadable = Vec::new();
    let mut stray = Vec::new();
    let mut base = BaseBackup::default();
    let mut wal = WalArchive::default();
    for listed in list_dir(guard, path, &mut unreadable).unwrap_or_default() {
        match listed {
            Listed::Dir(dir) if dir == "base" => {
                base = scan_base(guard, &path.join("base"), cache, options, &mut unreadable)
            }
            Listed::Dir(dir) if dir == "wal" => {
                wal = scan_wal(guard, &path.join("wal"), &mut unreadable)
            }
            Listed::Dir(dir) => stray.push(FileFact {
                name: format!("{dir}/"),
                size: 0,
                mtime: SystemTime::UNIX_EPOCH,
            }),
            Listed::File(fact) => stray.push(fact),
        }
    }
    let continuity = continuity::analyse(&base, &wal);
    let newest = wal
        .segments
        .iter()
        .rev()
        .filter(|s| !s.partial)
        .take(CADENCE_MEMORY);
    let cadence = Cadence::seeded(newest.map(|s| Arrival {
        name: s.file_name(),
        size: s.size,
        at: s.mtime,
        live: false,
    }));
    Client {
        name: name.to_owned(),
        path: path.to_owned(),
        base,
        wal,
        stray,
        unreadable,
        continuity,
        cadence,
        stale: false,
    }
}

fn scan_base(
    guard: &RootGuard,
    dir: &Path,
    cache: &BaseFactsCache,
    options: &ScanOptions,
    unreadable: &mut Vec<Unreadable>,
) -> BaseBackup {
    let mut base = BaseBackup {
        present: true,
        ..BaseBackup::default()
    };
    for listed in list_dir(guard, dir, unreadable).unwrap_or_default() {
        let fact = match listed {
            Listed::File(fact) => fact,
            Listed::Dir(name) => FileFact {
                name: format!("{name}/"),
                size: 0,
                mtime: SystemTime::UNIX_EPOCH,
            },
        };
        base.files.push(BaseFile {
            kind: BaseFileKind::classify(&fact.name),
            fact,
        });
    }
    base.files.sort_by(|a, b| a.fact.name.cmp(&b.fact.name));
    if let Some(tar) = base
        .file(BaseFileKind::BaseTar)
        .filter(|f| f.fact.size > 0)
        .cloned()
    {
        let path = dir.join(&tar.fact.name);
        match base_backup::read_base_head(&path) {
            Ok(head) => base.head = Some(head),
            Err(e) => base.head_error = Some(e.to_string()),
        }
        base.full = cache.get_or_compute(&path, &tar.fact, options.compute_full_facts);
    }
    if let Some(tar) = base
        .file(BaseFileKind::PgWalTar)
        .filter(|f| f.fact.size > 0)
    {
        let path = dir.join(&tar.fact.name);
        match base_backup::read_pg_wal_first_header(&path) {
            Ok(first) => base.pg_wal_first = Some(first),
            Err(e) => base.pg_wal_error = Some(e.to_string()),
        }
        if base.label().is_some_and(|l| l.start_timeline > 1) {
            // The error, if any, was reported above from the same file.
            base.pg_wal_histories = base_backup::read_pg_wal_histories(&path).unwrap_or_default();
        }
    }
    base
}

fn scan_wal(guard: &RootGuard, dir: &Path, unreadable: &mut Vec<Unreadable>) -> WalArchive {
    let mut wal = WalArchive {
        present: true,
        ..WalArchive::default()
    };
    let Some(listed) = list_dir(guard, dir, unreadable) else {
        wal.unreadable = true;
        return wal;
    };
    wal.segments.reserve(listed.len());
    for listed in listed {
        match listed {
            Listed::File(fact) => wal.add_file(dir, fact),
            Listed::Dir(name) => wal.others.push(FileFact {
                name: format!("{name}/"),
                size: 0,
                mtime: SystemTime::UNIX_EPOCH,
            }),
        }
    }
    wal.segments.sort_unstable_by_key(|a| (a.name, a.partial));
    wal.segments.dedup_by(|b, a| {
        a.name == b.name && a.partial == b.partial && {
            // Both NAME and NAME.gz present: keep one, note the other as unexpected.
            wal.others.push(FileFact {
                name: b.file_name(),
                size: b.size,
                mtime: b.mtime,
            });
            true
        }
    });
    wal.backup_files
        .sort_by(|a, b| a.fact.name.cmp(&b.fact.name));
    wal.histories.sort_by_key(|h| h.timeline);
    read_segment_size(dir, &mut wal);
    wal
}

/// The segment size comes from the first segment whose header can be read
/// (`initdb --wal-segsize` clusters differ from the 16 MiB default).
fn read_segment_size(dir: &Path, wal: &mut WalArchive) {
    for segment in wal
        .segments
        .iter()
        .filter(|s| !s.partial && s.size > 0)
        .take(3)
    {
        match base_backup::read_segment_header(&dir.join(segment.file_name())) {
            Ok(header) => {
                wal.segment_size = Some(header.seg_size);
                wal.first_header = Some(header);
                wal.header_error = None;
                return;
            }
            Err(e) => wal.header_error = Some(e.to_string()),
        }
    }
}

/// The path of a segment file inside its client's wal/ folder.
pub fn segment_path(client: &Client, segment: &SegmentFile) -> PathBuf {
    client.path.join("wal").join(segment.file_name())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removing_a_file_takes_exactly_that_segment() {
        let segment = |name: &str, compressed, partial| SegmentFile {
            name: RawSegmentName::parse(name).unwrap(),
            compressed,
            partial,
            size: 1,
            mtime: SystemTime::UNIX_EPOCH,
        };
        let a = "000000010000000000000A0B";
        let b = "000000010000000000000A0C";
        let mut wal = WalArchive {
            segments: vec![
                segment(a, false, false),
                segment(a, true, false),
                segment(a, true, true),
                segment(b, true, false),
            ],
            others: vec![FileFact {
                name: format!("{b}.gz"),
                size: 1,
                mtime: SystemTime::UNIX_EPOCH,
            }],
            ..WalArchive::default()
        };
        let names = |wal: &WalArchive| -> Vec<String> {
            wal.segments.iter().map(SegmentFile::file_name).collect()
        };
        // A name that only parses to the segment (lowercase) is not its file name.
        assert!(!wal.remove_file(&a.to_lowercase()));
        assert!(!wal.remove_file("000000010000000000000A0D"));
        assert!(wal.remove_file(&format!("{a}.gz")));
        assert_eq!(
            names(&wal),
            vec![a.to_owned(), format!("{a}.partial.gz"), format!("{b}.gz")]
        );
        assert!(wal.remove_file(&format!("{a}.partial.gz")));
        assert!(wal.remove_file(&format!("{b}.gz")));
        assert_eq!(names(&wal), vec![a.to_owned()]);
        assert!(wal.others.is_empty());
    }

    #[test]
    fn classifies_base_folder_files() {
        assert_eq!(BaseFileKind::classify("base.tar.gz"), BaseFileKind::BaseTar);
        assert_eq!(BaseFileKind::classify("base.tar"), BaseFileKind::BaseTar);
        assert_eq!(
            BaseFileKind::classify("pg_wal.tar.gz"),
            BaseFileKind::PgWalTar
        );
        assert_eq!(
            BaseFileKind::classify("backup_manifest"),
            BaseFileKind::Manifest
        );
        assert_eq!(
            BaseFileKind::classify("16385.tar.gz"),
            BaseFileKind::Tablespace
        );
        assert_eq!(
            BaseFileKind::classify("base.tar.gz.part"),
            BaseFileKind::InFlight
        );
        assert_eq!(BaseFileKind::classify("test.txt"), BaseFileKind::Other);
        assert_eq!(BaseFileKind::classify(".tar.gz"), BaseFileKind::Other);
    }
}
