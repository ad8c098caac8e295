//! Reading a backup root into the catalog's model.
//!
//! `scan(root)` walks every client folder (`ROOT/<client>/{base,wal}`) once:
//! one `readdir` and one `stat` per file, names classified without reading
//! them, and only the few files whose content matters opened (the head of
//! base.tar.gz, the first WAL header, `.backup` and `.history` files).
//! Clients are scanned on the worker pool, one per core. The archive is
//! read-only to walwarden: nothing here writes under the root. Symlinks are
//! followed only when they stay inside the root.

use std::ffi::OsStr;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use thiserror::Error;

use super::live::read_text;
use super::model::{Catalog, Client};
use crate::archive::base_backup;
use crate::archive::base_cache::BaseFactsCache;
use crate::archive::folder::{
    self, BaseBackup, BaseFile, BaseFileKind, FileFact, Unreadable, WalArchive,
};
use crate::archive::receiver_log;
use crate::archive::wal::WalFileKind;
use crate::pool;

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
    #[error("scanning client {client} failed unexpectedly (a bug; please report it): {message}")]
    ScanFailed { client: String, message: String },
}

impl CatalogError {
    /// What to do about it: the CLI's `hint:` line and the line under the
    /// dashboard's error, from this one place so both faces say the same.
    pub fn hint(&self) -> String {
        match self {
            CatalogError::RootMissing(_) | CatalogError::RootNotADirectory(_) => {
                "pass --root DIR, set WALWARDEN_ROOT, or set root in the config (/etc/walwarden/config.toml)"
                    .to_owned()
            }
            CatalogError::RootUnreadable { .. } => {
                "run walwarden as root (sudo): each client's folder is readable by its own user only"
                    .to_owned()
            }
            CatalogError::ScanFailed { .. } => {
                "run it again with --log-file FILE and report the log: a worker of the scan panicked"
                    .to_owned()
            }
            CatalogError::NoSuchClient { root, .. } => format!(
                "`walwarden check --root {}` lists the clients; a new one is made with `walwarden setup CLIENT`",
                crate::display::shell_quote(&root.to_string_lossy())
            ),
        }
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
    let mut clients: Vec<(usize, Client)> = Vec::with_capacity(names.len());
    pool::run(
        &names,
        pool::cores(),
        |(name, path)| scan_client_at(&guard, name, path, &cache, options),
        |index, client| clients.push((index, client)),
    )
    .map_err(|panic| CatalogError::ScanFailed {
        client: names
            .get(panic.index)
            .map_or_else(String::new, |(n, _)| n.clone()),
        message: panic.message,
    })?;
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
    let mut refusals = Vec::new();
    for listed in list_dir(guard, path, &mut unreadable).unwrap_or_default() {
        match listed {
            Listed::Dir(dir) if dir == "base" => {
                base = scan_base(
                    guard,
                    &folder::base_dir(path),
                    cache,
                    options,
                    &mut unreadable,
                )
            }
            Listed::Dir(dir) if dir == "wal" => {
                wal = scan_wal(guard, &folder::wal_dir(path), &mut unreadable)
            }
            // The receiver's own folder (state, staging, its log): not a stray.
            Listed::Dir(dir) if dir == receiver_log::OWN_DIR => {
                refusals = receiver_log::refusals(path);
            }
            Listed::Dir(dir) => stray.push(FileFact {
                name: format!("{dir}/"),
                size: 0,
                mtime: SystemTime::UNIX_EPOCH,
            }),
            Listed::File(fact) => stray.push(fact),
        }
    }
    // wal/ there but not readable (a symlink out of the root): nothing is
    // known of the WAL, which is not the same as there being none.
    let wal_dir = folder::wal_dir(path);
    if !wal.present && unreadable.iter().any(|u| u.path == wal_dir) {
        wal.present = true;
        wal.unreadable = true;
    }
    let mut client = Client::from_folder(name, path, base, wal, stray, unreadable);
    client.refusals = refusals;
    client
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
            Listed::File(fact) => {
                let text = needs_text(&fact.name).then(|| read_text(&dir.join(&fact.name)));
                wal.add_file(fact, text)
            }
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

/// Whether a wal/ file's content matters to the catalog (labels, timeline histories).
fn needs_text(name: &str) -> bool {
    matches!(
        WalFileKind::classify(name),
        WalFileKind::BackupHistory { .. } | WalFileKind::TimelineHistory { .. }
    )
}

/// The segment size comes from the first segment whose header can be read
/// (`initdb --wal-segsize` clusters differ from the 16 MiB default).
fn read_segment_size(dir: &Path, wal: &mut WalArchive) {
    let candidates: Vec<String> = wal
        .segments
        .iter()
        .filter(|s| !s.partial && s.size > 0)
        .take(3)
        .map(|s| s.file_name())
        .collect();
    for name in candidates {
        let header = base_backup::read_segment_header(&dir.join(name));
        let read = header.is_ok();
        wal.learn_header(header.map_err(|e| e.to_string()));
        if read {
            return;
        }
    }
}
