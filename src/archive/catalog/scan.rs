//! Reading a backup root into the catalog's model.
//!
//! `scan(root)` walks every client folder (`ROOT/<client>/{base,wal}`) once:
//! one `readdir` and one `stat` per file, names classified without reading
//! them, and only the few files whose content matters opened (the head of
//! base.tar.gz, the first WAL header, `.backup` and `.history` files).
//! Clients are scanned on the worker pool, one per core. The archive is
//! read-only to walwarden: nothing here writes under the root. Links are
//! never followed (a client folder, base/, wal/ or a file that is one is
//! reported, with where it points); fifos, sockets and devices are reported
//! from their directory entry, never opened. Names are kept escaped
//! (`display::escape_name`): lossless, printable, unique.

use std::ffi::{OsStr, OsString};
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use thiserror::Error;

use super::model::{Catalog, Client};
use crate::archive::base_backup;
use crate::archive::base_cache::BaseFactsCache;
use crate::archive::folder::{
    self, BaseBackup, BaseFile, BaseFileKind, FileFact, Unreadable, UnreadableKind, WalArchive,
};
use crate::archive::receiver_log;
use crate::archive::safe_open::FileKind;
use crate::archive::wal::WalFileKind;
use crate::display;
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
    check_root(root)?;
    let mut entries = list_clients(root)?;
    if !options.only.is_empty() {
        for wanted in &options.only {
            let raw = display::unescape_name(wanted);
            if !entries.iter().any(|e| e.raw == raw) {
                return Err(CatalogError::NoSuchClient {
                    name: wanted.clone(),
                    root: root.to_owned(),
                });
            }
        }
        let wanted: Vec<OsString> = options
            .only
            .iter()
            .map(|n| display::unescape_name(n))
            .collect();
        entries.retain(|e| wanted.contains(&e.raw));
    }
    let cache = BaseFactsCache::load(options.cache.as_deref());
    let mut clients: Vec<(usize, Client)> = Vec::with_capacity(entries.len());
    pool::run(
        &entries,
        pool::cores(),
        |entry| scan_entry(entry, &cache, options),
        |index, client| clients.push((index, client)),
    )
    .map_err(|panic| CatalogError::ScanFailed {
        client: entries
            .get(panic.index)
            .map_or_else(String::new, |e| e.name.clone()),
        message: panic.message,
    })?;
    clients.sort_by_key(|(index, _)| *index);
    cache.save_if_changed();
    tracing::info!(
        root = %display::escape_path(root),
        clients = clients.len(),
        segments = clients.iter().map(|(_, c)| c.wal.segments.len()).sum::<usize>(),
        elapsed = ?scanned_at.elapsed().unwrap_or_default(),
        "scanned backup root"
    );
    Ok(Catalog {
        root: root.to_owned(),
        // A folder removed while the scan ran is no client: it would stay on
        // the dashboard until the next rescan.
        clients: clients
            .into_iter()
            .map(|(_, c)| c)
            .filter(|c| !vanished(c))
            .collect(),
        scanned_at,
    })
}

/// Re-reads one client folder (after a change, or on request); `name` is
/// its escaped name (see `display::escape_name`), as reports show it.
pub fn scan_client(root: &Path, name: &str, options: &ScanOptions) -> Result<Client, CatalogError> {
    check_root(root)?;
    let raw = display::unescape_name(name);
    let path = root.join(&raw);
    let no_such = || CatalogError::NoSuchClient {
        name: name.to_owned(),
        root: root.to_owned(),
    };
    let kind = match fs::symlink_metadata(&path) {
        Ok(meta) => FileKind::of(&meta.file_type()),
        Err(_) => return Err(no_such()),
    };
    if !matches!(kind, FileKind::Directory | FileKind::Symlink) || is_hidden(&raw) {
        return Err(no_such());
    }
    let entry = ClientEntry {
        name: display::escape_name(&raw),
        raw,
        path,
        link: kind == FileKind::Symlink,
    };
    let cache = BaseFactsCache::load(options.cache.as_deref());
    let client = scan_entry(&entry, &cache, options);
    cache.save_if_changed();
    if vanished(&client) {
        return Err(no_such());
    }
    Ok(client)
}

/// The root must be a readable directory (given by the engineer, it may be a link).
fn check_root(root: &Path) -> Result<(), CatalogError> {
    match fs::metadata(root) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            Err(CatalogError::RootMissing(root.to_owned()))
        }
        Err(source) => Err(CatalogError::RootUnreadable {
            path: root.to_owned(),
            source,
        }),
        Ok(meta) if !meta.is_dir() => Err(CatalogError::RootNotADirectory(root.to_owned())),
        Ok(_) => Ok(()),
    }
}

/// A folder (or a link) directly under the root: a client.
#[derive(Debug, Clone)]
struct ClientEntry {
    /// Escaped for display and addressing (`display::escape_name`).
    name: String,
    /// The name's bytes on disk.
    raw: OsString,
    path: PathBuf,
    /// A symlink: reported, never followed.
    link: bool,
}

fn is_hidden(name: &OsStr) -> bool {
    name.as_bytes().first() == Some(&b'.')
}

/// Client folders: every directory directly under the root, and every link
/// there too (reported as a client that is not followed, so no folder
/// goes unaccounted for).
fn list_clients(root: &Path) -> Result<Vec<ClientEntry>, CatalogError> {
    let entries = fs::read_dir(root).map_err(|source| CatalogError::RootUnreadable {
        path: root.to_owned(),
        source,
    })?;
    let mut clients = Vec::new();
    for entry in entries.flatten() {
        let raw = entry.file_name();
        if is_hidden(&raw) {
            continue;
        }
        let kind = entry.file_type().map(|t| FileKind::of(&t));
        let link = match kind {
            Ok(FileKind::Directory) => false,
            Ok(FileKind::Symlink) => true,
            _ => continue,
        };
        clients.push(ClientEntry {
            name: display::escape_name(&raw),
            path: entry.path(),
            raw,
            link,
        });
    }
    clients.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(clients)
}

/// Whether a client's folder was gone by the time it was listed.
fn vanished(client: &Client) -> bool {
    client
        .unreadable
        .iter()
        .any(|u| u.path == client.path && u.kind == UnreadableKind::Gone)
}

/// An entry's name as the catalog keeps it: the string itself when it is
/// plain (the hot path: a million segment names), escaped otherwise.
fn entry_name(raw: OsString) -> String {
    match raw.into_string() {
        Ok(name)
            if !name
                .bytes()
                .any(|b| b < 0x20 || b == 0x7f || b == b'\\' || b >= 0x80) =>
        {
            name
        }
        Ok(name) => display::escape_name(OsStr::new(&name)),
        Err(raw) => display::escape_name(&raw),
    }
}

/// A link, as the problem names it: where it points (and whether that is
/// outside the root); it is never followed.
fn link_unreadable(path: &Path) -> Unreadable {
    let target = fs::read_link(path)
        .map(|t| display::escape_path(&t))
        .unwrap_or_else(|e| format!("unreadable: {e}"));
    Unreadable {
        path: path.to_owned(),
        error: format!("to {target}"),
        kind: UnreadableKind::Link,
    }
}

/// One directory entry after its stat: a file or a folder; anything else
/// (links, fifos, sockets, devices, errors) lands in `unreadable`.
enum Listed {
    File(FileFact),
    Dir(String),
}

/// Lists a directory with one stat per regular file; links and special
/// files are reported, never followed nor opened.
fn list_dir(dir: &Path, unreadable: &mut Vec<Unreadable>) -> Option<Vec<Listed>> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) => {
            unreadable.push(Unreadable::from_io(dir, &e));
            return None;
        }
    };
    let mut listed = Vec::new();
    for entry in entries {
        let entry = match entry {
            Ok(entry) => entry,
            Err(e) => {
                unreadable.push(Unreadable::from_io(dir, &e));
                continue;
            }
        };
        let kind = match entry.file_type() {
            Ok(t) => FileKind::of(&t),
            Err(e) => {
                unreadable.push(Unreadable::from_io(&entry.path(), &e));
                continue;
            }
        };
        match kind {
            FileKind::Directory => listed.push(Listed::Dir(entry_name(entry.file_name()))),
            FileKind::Regular => match entry.metadata() {
                Ok(meta) => listed.push(Listed::File(FileFact {
                    name: entry_name(entry.file_name()),
                    size: meta.len(),
                    mtime: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
                })),
                Err(e) => unreadable.push(Unreadable::from_io(&entry.path(), &e)),
            },
            FileKind::Symlink => unreadable.push(link_unreadable(&entry.path())),
            kind => unreadable.push(Unreadable {
                path: entry.path(),
                error: format!("a {}", kind.as_str()),
                kind: UnreadableKind::NotRegular(kind),
            }),
        }
    }
    Some(listed)
}

fn scan_entry(entry: &ClientEntry, cache: &BaseFactsCache, options: &ScanOptions) -> Client {
    let mut unreadable = Vec::new();
    let mut stray = Vec::new();
    let mut base = BaseBackup::default();
    let mut wal = WalArchive::default();
    let mut refusals = Vec::new();
    let path = &entry.path;
    // What the client folder's own listing could not read (a base/ or wal/
    // that is a link) counts below as much as what the folders' scans could not.
    let before = unreadable.len();
    let listed = if entry.link {
        unreadable.push(link_unreadable(path));
        None
    } else {
        list_dir(path, &mut unreadable)
    };
    let Some(listed) = listed else {
        // Nothing of the folder is known: no claim of a missing base or WAL.
        base.unreadable = true;
        wal.unreadable = true;
        return Client::from_folder(&entry.name, path, base, wal, stray, unreadable);
    };
    for listed in listed {
        match listed {
            Listed::Dir(dir) if dir == "base" => {
                base = scan_base(&folder::base_dir(path), cache, options, &mut unreadable)
            }
            Listed::Dir(dir) if dir == "wal" => {
                wal = scan_wal(&folder::wal_dir(path), &mut unreadable)
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
    // A base/ or wal/ that is a link or no folder at all is unknown, not missing.
    for item in &unreadable[before..] {
        if item.path == folder::base_dir(path) {
            base.unreadable = true;
        }
        if item.path == folder::wal_dir(path) {
            wal.unreadable = true;
        }
    }
    let mut client = Client::from_folder(&entry.name, path, base, wal, stray, unreadable);
    client.refusals = refusals;
    client
}

fn scan_base(
    dir: &Path,
    cache: &BaseFactsCache,
    options: &ScanOptions,
    unreadable: &mut Vec<Unreadable>,
) -> BaseBackup {
    let mut base = BaseBackup {
        present: true,
        ..BaseBackup::default()
    };
    let Some(listed) = list_dir(dir, unreadable) else {
        base.unreadable = true;
        return base;
    };
    for listed in listed {
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
            Err(e) => match access_error(&e) {
                Some(source) => unreadable.push(Unreadable::from_io(&path, source)),
                None => base.head_error = Some(e.to_string()),
            },
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
            Err(e) => match access_error(&e) {
                Some(source) => unreadable.push(Unreadable::from_io(&path, source)),
                None => base.pg_wal_error = Some(e.to_string()),
            },
        }
        if base.label().is_some_and(|l| l.start_timeline > 1) {
            // The error, if any, was reported above from the same file.
            base.pg_wal_histories = base_backup::read_pg_wal_histories(&path).unwrap_or_default();
        }
    }
    base
}

fn scan_wal(dir: &Path, unreadable: &mut Vec<Unreadable>) -> WalArchive {
    let mut wal = WalArchive {
        present: true,
        ..WalArchive::default()
    };
    let Some(listed) = list_dir(dir, unreadable) else {
        wal.unreadable = true;
        return wal;
    };
    wal.segments.reserve(listed.len());
    for listed in listed {
        match listed {
            Listed::File(fact) => {
                let text = needs_text(&fact.name).then(|| {
                    let path = dir.join(&fact.name);
                    base_backup::read_small_text(&path).map_err(|e| {
                        if let Some(source) = access_error(&e) {
                            unreadable.push(Unreadable::from_io(&path, source));
                        }
                        e.to_string()
                    })
                });
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

/// The error of a read that failed for want of access (a permission, a
/// file that is no regular one, the system), not for what the file holds:
/// reported as such, never as a damaged backup.
fn access_error(error: &base_backup::BaseBackupError) -> Option<&io::Error> {
    match error {
        base_backup::BaseBackupError::Io { source, .. }
            if source.raw_os_error().is_some()
                || crate::archive::safe_open::not_regular(source).is_some() =>
        {
            Some(source)
        }
        _ => None,
    }
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
