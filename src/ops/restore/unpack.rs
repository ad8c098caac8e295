//! Unpacking a base backup's tarball (`base.tar.gz`, `pg_wal.tar.gz`, or a
//! plain `.tar`) into a data directory, safely and on two cores.
//!
//! Invariants:
//! - nothing is ever written outside `dest`: every entry is checked before it
//!   is written (no absolute path, no `..`, no entry below a symbolic link, no
//!   link target that leaves `dest`, no device or fifo), files are created
//!   with `O_CREAT|O_EXCL` (which never follows a symbolic link) after any
//!   old entry of that name is unlinked, and every parent directory is
//!   checked with `lstat` once to be a real directory, so a symbolic link
//!   already present under `dest` is never followed either;
//! - the first refused entry stops the unpack with an error naming it; what
//!   was written before stays in `dest` for the caller to roll back.
//!   [`scan_tarball`] applies the same checks without writing, so the caller
//!   can refuse before touching anything;
//! - a corrupt or truncated gzip or tar stream is an error
//!   ([`UnpackError::Corrupt`]): the gzip trailer (CRC, length) and the tar
//!   end-of-archive block must both be there;
//! - modes (permission bits only: set-id and sticky bits are dropped) and
//!   modification times are restored (not on symbolic links); directories
//!   get theirs after their contents are written;
//! - a tablespace's `pg_tblspc/<oid>` link points to an absolute path, so a
//!   base backup with tablespaces is refused until the caller maps them;
//! - nothing is fsync'ed: call [`sync_tree`] once the unpack succeeded and
//!   before the data directory is used.
//!
//! Speed: inflating is about as expensive as writing the files, so
//! [`unpack`] inflates on one thread into 1 MiB chunks handed over a bounded
//! channel, while the calling thread parses the tar stream from those chunks
//! and writes the files in large writes.

use std::collections::HashSet;
use std::fs::{self, DirBuilder, File, FileTimes, OpenOptions};
use std::io::{self, BufReader, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use flate2::read::MultiGzDecoder;
use tar::EntryType;
use thiserror::Error;

/// Size of the inflated chunks handed from the inflate thread to the writer,
/// and of the writes into files.
const CHUNK_LEN: usize = 1 << 20;
/// Chunks in flight between the two threads (the channel's bound).
const CHUNKS_IN_FLIGHT: usize = 4;
/// Read size from the compressed file.
const FILE_BUF_LEN: usize = 256 * 1024;
const BLOCK: u64 = 512;
/// How many refused entries a [`TarballPlan`] lists (all are counted).
const REFUSALS_LISTED: usize = 100;

#[derive(Debug, Error)]
pub enum UnpackError {
    #[error("cannot read {path}: {source}")]
    Open { path: PathBuf, source: io::Error },
    #[error("{path} is corrupt or truncated: {source}")]
    Corrupt { path: PathBuf, source: io::Error },
    #[error("{tarball}: refusing entry {entry:?}: {reason}")]
    Refused {
        tarball: PathBuf,
        entry: String,
        reason: Refusal,
    },
    #[error("destination {path} is not an existing directory")]
    NoDestination { path: PathBuf },
    #[error("cannot write {path} (entry {entry:?} of {tarball}): {source}")]
    Write {
        tarball: PathBuf,
        entry: String,
        path: PathBuf,
        source: io::Error,
    },
    #[error(
        "cannot give the unpacked files to uid {uid} gid {gid}: running as uid {euid}; \
         only root can change owners (run as root, or as that user without an owner)"
    )]
    OwnerNotPermitted { uid: u32, gid: u32, euid: u32 },
    #[error("cannot start the inflate thread: {0}")]
    Thread(io::Error),
    #[error("cannot sync {path}: {source}")]
    Sync { path: PathBuf, source: io::Error },
}

/// Why an entry is not unpacked.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum Refusal {
    #[error("absolute path")]
    Absolute,
    #[error("path has a `..` component")]
    ParentDir,
    #[error("empty path")]
    Empty,
    #[error(
        "link target {target:?} leaves the destination (only relative targets whose `..` come first and stay inside are accepted)"
    )]
    LinkOutside { target: String },
    #[error("link has no target")]
    NoLinkTarget,
    #[error("{parent:?} is a symbolic link in this tarball")]
    UnderSymlink { parent: String },
    #[error("{kind} entries are not unpacked")]
    Unsupported { kind: &'static str },
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UnpackOptions {
    /// Give every entry to this uid, gid (the PostgreSQL OS user). Needs
    /// root, unless it is the current user and group (then nothing is done).
    pub owner: Option<(u32, u32)>,
}

/// Reported during [`unpack`], at most once per chunk read from the tarball,
/// and once at the end with `compressed_done == compressed_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnpackProgress {
    /// Bytes of the tarball file read so far.
    pub compressed_done: u64,
    /// The tarball file's size.
    pub compressed_total: u64,
    /// File contents written so far.
    pub bytes_written: u64,
    /// Entries written so far (files, links and directories).
    pub files: u64,
    pub elapsed: Duration,
}

impl UnpackProgress {
    /// Tarball bytes per second.
    pub fn rate(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.compressed_done as f64 / secs
        } else {
            0.0
        }
    }

    /// Time left at the rate so far; `None` before anything was read.
    pub fn eta(&self) -> Option<Duration> {
        let rate = self.rate();
        if rate <= 0.0 {
            return None;
        }
        let left = self.compressed_total.saturating_sub(self.compressed_done) as f64;
        Duration::try_from_secs_f64(left / rate).ok()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnpackSummary {
    /// Regular files written.
    pub files: u64,
    /// Directory entries of the tarball (implicit parents not counted).
    pub dirs: u64,
    /// Symbolic and hard links made.
    pub links: u64,
    /// File contents written.
    pub bytes: u64,
    pub elapsed: Duration,
}

/// What one pass over a tarball's headers found, before anything is written.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TarballPlan {
    /// The tarball file's size.
    pub compressed_bytes: u64,
    /// Sum of the regular files' sizes.
    pub unpacked_bytes: u64,
    /// Space the unpacked tree takes at least: files rounded up to 4 KiB
    /// blocks plus one block per directory (for the free-space preflight).
    pub disk_bytes: u64,
    /// Every header that names something (pax global headers excluded).
    pub entries: u64,
    pub files: u64,
    pub dirs: u64,
    pub links: u64,
    /// The first refused entries, in tarball order.
    pub refused: Vec<RefusedEntry>,
    /// How many entries are refused (`refused` lists at most 100).
    pub refused_count: u64,
}

impl TarballPlan {
    pub fn is_safe(&self) -> bool {
        self.refused_count == 0
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefusedEntry {
    /// The entry's name as written in the tarball.
    pub entry: String,
    pub reason: Refusal,
}

/// Safe plans already scanned by this process, by path, size and mtime.
type PlanKey = (PathBuf, u64, SystemTime);
static SAFE_PLANS: std::sync::Mutex<Vec<(PlanKey, TarballPlan)>> =
    std::sync::Mutex::new(Vec::new());

/// [`scan_tarball`], remembered within this process for an unchanged file:
/// the wizard's real run after its dry run does not inflate the tarball again
/// before unpacking it. Only safe plans are remembered, and [`unpack`] applies
/// the same checks again as it writes, so the memo never weakens them.
fn plan_key(path: &Path) -> Option<PlanKey> {
    let meta = fs::metadata(path).ok()?;
    Some((path.to_owned(), meta.len(), meta.modified().ok()?))
}

pub fn scan_tarball_remembered(path: &Path) -> Result<TarballPlan, UnpackError> {
    let key = plan_key(path);
    if let Some(key) = &key
        && let Ok(plans) = SAFE_PLANS.lock()
        && let Some((_, plan)) = plans.iter().find(|(k, _)| k == key)
    {
        return Ok(plan.clone());
    }
    let plan = scan_tarball(path)?;
    if let Some(key) = key
        && plan.is_safe()
        && let Ok(mut plans) = SAFE_PLANS.lock()
    {
        plans.retain(|(k, _)| k.0 != key.0);
        plans.push((key, plan.clone()));
    }
    Ok(plan)
}

/// Whether this process holds a safe plan for `path` as it is now.
pub fn plan_remembered(path: &Path) -> bool {
    let Some(key) = plan_key(path) else {
        return false;
    };
    SAFE_PLANS
        .lock()
        .is_ok_and(|plans| plans.iter().any(|(k, _)| *k == key))
}

/// Reads every header of `path` (inflating all of it) and applies the checks
/// [`unpack`] applies, without writing anything.
pub fn scan_tarball(path: &Path) -> Result<TarballPlan, UnpackError> {
    let compressed = Arc::new(AtomicU64::new(0));
    let (source, compressed_bytes) = open_source(path, &compressed)?;
    let mut plan = TarballPlan {
        compressed_bytes,
        ..TarballPlan::default()
    };
    let mut checks = EntryChecks::default();
    with_stream(path, source, Pipeline::TwoThreads, |reader| {
        for_each_entry(reader, path, |entry, header| {
            let checked = match checks.check(&header) {
                Ok(checked) => checked,
                Err(reason) => {
                    plan.entries += 1;
                    plan.refused_count += 1;
                    if plan.refused.len() < REFUSALS_LISTED {
                        plan.refused.push(RefusedEntry {
                            entry: header.name(),
                            reason,
                        });
                    }
                    return Ok(());
                }
            };
            match checked.map(|c| c.action) {
                None => return Ok(()),
                Some(Action::File) => {
                    plan.files += 1;
                    plan.unpacked_bytes += entry.size();
                    plan.disk_bytes += entry.size().div_ceil(4096) * 4096;
                }
                Some(Action::Dir) => {
                    plan.dirs += 1;
                    plan.disk_bytes += 4096;
                }
                Some(Action::Symlink(_) | Action::HardLink(_)) => plan.links += 1,
            }
            plan.entries += 1;
            Ok(())
        })
    })?;
    Ok(plan)
}

/// Unpacks `tarball` (gzip'ed when its name ends in `.gz`) into the existing
/// directory `dest`, inflating on a second thread. See the module notes for
/// what is refused; nothing is fsync'ed (call [`sync_tree`] afterwards).
pub fn unpack(
    tarball: &Path,
    dest: &Path,
    options: &UnpackOptions,
    progress: &mut dyn FnMut(UnpackProgress),
) -> Result<UnpackSummary, UnpackError> {
    unpack_with(tarball, dest, options, progress, Pipeline::TwoThreads)
}

/// [`unpack`] on the calling thread alone; kept for the comparison in
/// `benches/unpack.rs`.
#[doc(hidden)]
pub fn unpack_single_threaded(
    tarball: &Path,
    dest: &Path,
    options: &UnpackOptions,
    progress: &mut dyn FnMut(UnpackProgress),
) -> Result<UnpackSummary, UnpackError> {
    unpack_with(tarball, dest, options, progress, Pipeline::OneThread)
}

/// fsyncs every file and directory under `dest` (symbolic links are not
/// followed), so an unpacked tree survives a crash. [`unpack`] leaves this
/// to the caller: one pass at the end lets the kernel write back in bulk.
pub fn sync_tree(dest: &Path) -> Result<(), UnpackError> {
    let sync = |path: &Path| {
        File::open(path)
            .and_then(|f| f.sync_all())
            .map_err(|source| UnpackError::Sync {
                path: path.to_owned(),
                source,
            })
    };
    // Directories are synced after their contents, so pending (dir, listed)
    // pairs are revisited once their children are done.
    let mut stack = vec![(dest.to_owned(), false)];
    while let Some((dir, listed)) = stack.pop() {
        if listed {
            sync(&dir)?;
            continue;
        }
        stack.push((dir.clone(), true));
        let listing = fs::read_dir(&dir).map_err(|source| UnpackError::Sync {
            path: dir.clone(),
            source,
        })?;
        for item in listing {
            let item = item.map_err(|source| UnpackError::Sync {
                path: dir.clone(),
                source,
            })?;
            let kind = item.file_type().map_err(|source| UnpackError::Sync {
                path: item.path(),
                source,
            })?;
            if kind.is_dir() {
                stack.push((item.path(), false));
            } else if kind.is_file() {
                sync(&item.path())?;
            }
        }
    }
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pipeline {
    OneThread,
    TwoThreads,
}

fn unpack_with(
    tarball: &Path,
    dest: &Path,
    options: &UnpackOptions,
    progress: &mut dyn FnMut(UnpackProgress),
    pipeline: Pipeline,
) -> Result<UnpackSummary, UnpackError> {
    if !fs::metadata(dest).is_ok_and(|m| m.is_dir()) {
        return Err(UnpackError::NoDestination {
            path: dest.to_owned(),
        });
    }
    let owner = owner_to_apply(options.owner)?;
    let compressed = Arc::new(AtomicU64::new(0));
    let (source, compressed_total) = open_source(tarball, &compressed)?;
    let mut meter = Meter {
        start: Instant::now(),
        compressed: Arc::clone(&compressed),
        compressed_total,
        bytes_written: 0,
        files: 0,
        last_compressed: u64::MAX,
        report: progress,
    };
    let mut writer = TreeWriter {
        tarball,
        dest,
        owner,
        known_dirs: HashSet::new(),
        deferred_dirs: Vec::new(),
        buf: vec![0; CHUNK_LEN],
        summary: UnpackSummary {
            files: 0,
            dirs: 0,
            links: 0,
            bytes: 0,
            elapsed: Duration::ZERO,
        },
    };
    let mut checks = EntryChecks::default();
    with_stream(tarball, source, pipeline, |reader| {
        for_each_entry(reader, tarball, |entry, header| {
            let checked = checks
                .check(&header)
                .map_err(|reason| UnpackError::Refused {
                    tarball: tarball.to_owned(),
                    entry: header.name(),
                    reason,
                })?;
            if let Some(checked) = checked {
                writer.apply(entry, &header, checked, &mut meter)?;
            }
            Ok(())
        })
    })?;
    writer.finish_dirs()?;
    writer.summary.elapsed = meter.start.elapsed();
    meter.finish();
    Ok(writer.summary)
}

/// Decides up front whether ownership can be given, so a non-root run fails
/// before writing anything rather than at the first file.
fn owner_to_apply(owner: Option<(u32, u32)>) -> Result<Option<(u32, u32)>, UnpackError> {
    unsafe extern "C" {
        safe fn geteuid() -> u32;
        safe fn getegid() -> u32;
    }
    let Some((uid, gid)) = owner else {
        return Ok(None);
    };
    let euid = geteuid();
    if euid == 0 {
        Ok(Some((uid, gid)))
    } else if uid == euid && gid == getegid() {
        // New files already belong to the current user and group.
        Ok(None)
    } else if uid == euid {
        // A user may give files to a group it belongs to; chown says if not.
        Ok(Some((uid, gid)))
    } else {
        Err(UnpackError::OwnerNotPermitted { uid, gid, euid })
    }
}

/// Counts the bytes read from the tarball file, for progress.
struct CountingReader {
    file: File,
    count: Arc<AtomicU64>,
}

impl Read for CountingReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.file.read(buf)?;
        self.count.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

type Source = Box<dyn Read + Send>;

/// Opens the tarball: inflated when its name ends in `.gz`, read as is otherwise.
fn open_source(path: &Path, count: &Arc<AtomicU64>) -> Result<(Source, u64), UnpackError> {
    let open_err = |source| UnpackError::Open {
        path: path.to_owned(),
        source,
    };
    let file = File::open(path).map_err(open_err)?;
    let total = file.metadata().map_err(open_err)?.len();
    let counted = BufReader::with_capacity(
        FILE_BUF_LEN,
        CountingReader {
            file,
            count: Arc::clone(count),
        },
    );
    let source: Source = if path.extension().is_some_and(|e| e == "gz") {
        Box::new(MultiGzDecoder::new(counted))
    } else {
        Box::new(counted)
    };
    Ok((source, total))
}

/// Runs `body` over the tarball's inflated bytes, then reads the stream to
/// its end so the gzip trailer (CRC and length) is checked.
fn with_stream<T>(
    tarball: &Path,
    source: Source,
    pipeline: Pipeline,
    body: impl FnOnce(&mut dyn Read) -> Result<T, UnpackError>,
) -> Result<T, UnpackError> {
    let run = |reader: &mut dyn Read| {
        let value = body(reader)?;
        io::copy(reader, &mut io::sink()).map_err(|source| UnpackError::Corrupt {
            path: tarball.to_owned(),
            source,
        })?;
        Ok(value)
    };
    match pipeline {
        Pipeline::OneThread => {
            let mut source = source;
            run(&mut source)
        }
        Pipeline::TwoThreads => thread::scope(|scope| {
            let (chunks_tx, chunks_rx) = sync_channel(CHUNKS_IN_FLIGHT);
            let (spare_tx, spare_rx) = sync_channel(CHUNKS_IN_FLIGHT + 2);
            thread::Builder::new()
                .name("walwarden-inflate".into())
                .spawn_scoped(scope, move || {
                    inflate_into_chunks(source, chunks_tx, spare_rx)
                })
                .map_err(UnpackError::Thread)?;
            // Dropping the reader (on success or error) makes the inflate
            // thread's next send fail, so it stops and the scope can end.
            let mut reader = ChunkReader {
                chunks: chunks_rx,
                spare: spare_tx,
                chunk: Vec::new(),
                pos: 0,
                ended: false,
                failed: false,
            };
            run(&mut reader)
        }),
    }
}

enum ChunkMsg {
    Data(Vec<u8>),
    Failed(io::Error),
    End,
}

/// The inflate thread: fills whole chunks (reusing the ones handed back) and
/// sends them until the stream ends, fails, or the reader goes away.
fn inflate_into_chunks(mut source: Source, chunks: SyncSender<ChunkMsg>, spare: Receiver<Vec<u8>>) {
    loop {
        let mut buf = spare.try_recv().unwrap_or_default();
        buf.resize(CHUNK_LEN, 0);
        let mut filled = 0;
        while filled < CHUNK_LEN {
            match source.read(&mut buf[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    let _ = chunks.send(ChunkMsg::Failed(e));
                    return;
                }
            }
        }
        buf.truncate(filled);
        let last = filled < CHUNK_LEN;
        if filled > 0 && chunks.send(ChunkMsg::Data(buf)).is_err() {
            return;
        }
        if last {
            let _ = chunks.send(ChunkMsg::End);
            return;
        }
    }
}

/// The writer's side of the channel: a plain `Read` over the chunks.
struct ChunkReader {
    chunks: Receiver<ChunkMsg>,
    spare: SyncSender<Vec<u8>>,
    chunk: Vec<u8>,
    pos: usize,
    ended: bool,
    /// Set once the stream failed, so no later read mistakes it for its end.
    failed: bool,
}

impl Read for ChunkReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.chunk.len() {
            if self.failed {
                return Err(io::Error::other("the stream failed earlier"));
            }
            if self.ended || out.is_empty() {
                return Ok(0);
            }
            let used = std::mem::take(&mut self.chunk);
            if used.capacity() > 0 {
                let _ = self.spare.try_send(used);
            }
            self.pos = 0;
            match self.chunks.recv() {
                Ok(ChunkMsg::Data(chunk)) => self.chunk = chunk,
                Ok(ChunkMsg::End) => self.ended = true,
                Ok(ChunkMsg::Failed(e)) => {
                    self.failed = true;
                    return Err(e);
                }
                Err(_) => {
                    self.failed = true;
                    return Err(io::Error::other("the inflate thread stopped early"));
                }
            }
        }
        let n = out.len().min(self.chunk.len() - self.pos);
        out[..n].copy_from_slice(&self.chunk[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// Counts the bytes the tar parser consumed, to tell a proper end-of-archive
/// block from a stream that simply stops between two entries.
struct Tally<'a> {
    inner: &'a mut dyn Read,
    consumed: u64,
}

impl Read for Tally<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.consumed += n as u64;
        Ok(n)
    }
}

/// One header as the checks see it.
struct Header {
    path: PathBuf,
    kind: EntryType,
    link: Option<PathBuf>,
}

impl Header {
    fn name(&self) -> String {
        self.path.to_string_lossy().into_owned()
    }
}

type TarEntry<'a, 'b, 'c> = tar::Entry<'a, &'b mut Tally<'c>>;

/// Parses the tar stream and calls `visit` for every entry, then requires
/// the end-of-archive block.
fn for_each_entry(
    reader: &mut dyn Read,
    tarball: &Path,
    mut visit: impl FnMut(&mut TarEntry<'_, '_, '_>, Header) -> Result<(), UnpackError>,
) -> Result<(), UnpackError> {
    let corrupt = |source| UnpackError::Corrupt {
        path: tarball.to_owned(),
        source,
    };
    let mut tally = Tally {
        inner: reader,
        consumed: 0,
    };
    let mut end_of_last_entry = 0;
    {
        let mut archive = tar::Archive::new(&mut tally);
        for entry in archive.entries().map_err(corrupt)? {
            let mut entry = entry.map_err(corrupt)?;
            end_of_last_entry = entry.raw_file_position() + entry.size().div_ceil(BLOCK) * BLOCK;
            let header = Header {
                path: entry.path().map_err(corrupt)?.into_owned(),
                kind: entry.header().entry_type(),
                link: entry.link_name().map_err(corrupt)?.map(|l| l.into_owned()),
            };
            visit(&mut entry, header)?;
        }
    }
    if tally.consumed < end_of_last_entry + BLOCK {
        return Err(corrupt(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the tar stream ends without its end-of-archive block",
        )));
    }
    Ok(())
}

/// What a checked entry asks for, at `rel` (relative to `dest`, normalised).
enum Action {
    File,
    Dir,
    /// The target as written in the tarball.
    Symlink(PathBuf),
    /// The target, relative to `dest`.
    HardLink(PathBuf),
}

struct Checked {
    rel: PathBuf,
    action: Action,
}

/// The checks shared by [`scan_tarball`] and [`unpack`]. They remember the
/// symbolic links seen so far: nothing may be written below one.
#[derive(Default)]
struct EntryChecks {
    symlinks: HashSet<PathBuf>,
}

impl EntryChecks {
    /// `Ok(None)`: nothing to do (a pax global header, or `./` itself).
    fn check(&mut self, header: &Header) -> Result<Option<Checked>, Refusal> {
        let kind = header.kind;
        if kind == EntryType::XGlobalHeader {
            return Ok(None);
        }
        let rel = relative_path(&header.path)?;
        if rel.as_os_str().is_empty() {
            // `./`: dest itself, whose mode and owner the caller decides.
            return match kind {
                EntryType::Directory => Ok(None),
                _ => Err(Refusal::Empty),
            };
        }
        self.refuse_below_symlink(&rel)?;
        let action = match kind {
            EntryType::Regular | EntryType::Continuous => Action::File,
            EntryType::Directory if self.symlinks.contains(&rel) => {
                return Err(Refusal::UnderSymlink {
                    parent: rel.to_string_lossy().into_owned(),
                });
            }
            EntryType::Directory => Action::Dir,
            EntryType::Symlink => {
                // Remembered even when refused, so what follows below it is
                // refused too.
                self.symlinks.insert(rel.clone());
                let target = header.link.as_deref().ok_or(Refusal::NoLinkTarget)?;
                check_symlink_target(&rel, target)?;
                Action::Symlink(target.to_owned())
            }
            EntryType::Link => {
                let target = header.link.as_deref().ok_or(Refusal::NoLinkTarget)?;
                let outside = || Refusal::LinkOutside {
                    target: target.to_string_lossy().into_owned(),
                };
                let target_rel = relative_path(target).map_err(|_| outside())?;
                if target_rel.as_os_str().is_empty() {
                    return Err(outside());
                }
                self.refuse_below_symlink(&target_rel)?;
                Action::HardLink(target_rel)
            }
            EntryType::Char => return Err(unsupported("character device")),
            EntryType::Block => return Err(unsupported("block device")),
            EntryType::Fifo => return Err(unsupported("fifo")),
            EntryType::GNUSparse => return Err(unsupported("sparse file")),
            _ => return Err(unsupported("unknown type")),
        };
        if !matches!(action, Action::Symlink(_)) {
            // A file or link replaces an earlier symbolic link of that name.
            self.symlinks.remove(&rel);
        }
        Ok(Some(Checked { rel, action }))
    }

    fn refuse_below_symlink(&self, rel: &Path) -> Result<(), Refusal> {
        if self.symlinks.is_empty() {
            return Ok(());
        }
        match rel.ancestors().skip(1).find(|a| self.symlinks.contains(*a)) {
            Some(parent) => Err(Refusal::UnderSymlink {
                parent: parent.to_string_lossy().into_owned(),
            }),
            None => Ok(()),
        }
    }
}

fn unsupported(kind: &'static str) -> Refusal {
    Refusal::Unsupported { kind }
}

/// An entry's name relative to `dest`: `./` components dropped, absolute
/// paths and `..` refused.
fn relative_path(path: &Path) -> Result<PathBuf, Refusal> {
    let mut rel = PathBuf::new();
    for component in path.components() {
        match component {
            Component::Normal(part) => rel.push(part),
            Component::CurDir => {}
            Component::ParentDir => return Err(Refusal::ParentDir),
            Component::RootDir | Component::Prefix(_) => return Err(Refusal::Absolute),
        }
    }
    Ok(rel)
}

/// A symbolic link at `rel` may point to `target` when the target is
/// relative, its `..` components all come first, and they do not climb above
/// `dest`. That form resolves the same whatever the links below it are
/// (`a/..` would depend on whether `a` is itself a link), and since nothing
/// is written below a link, the link's own directory is a real one.
fn check_symlink_target(rel: &Path, target: &Path) -> Result<(), Refusal> {
    let outside = || Refusal::LinkOutside {
        target: target.to_string_lossy().into_owned(),
    };
    if target.as_os_str().is_empty() {
        return Err(outside());
    }
    let mut depth = rel.components().count().saturating_sub(1);
    let mut descended = false;
    for component in target.components() {
        match component {
            Component::Normal(_) => {
                depth += 1;
                descended = true;
            }
            Component::CurDir => {}
            Component::ParentDir if !descended && depth > 0 => depth -= 1,
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => {
                return Err(outside());
            }
        }
    }
    Ok(())
}

/// Progress bookkeeping; reports only when more of the tarball was read.
struct Meter<'p> {
    start: Instant,
    compressed: Arc<AtomicU64>,
    compressed_total: u64,
    bytes_written: u64,
    files: u64,
    last_compressed: u64,
    report: &'p mut dyn FnMut(UnpackProgress),
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

    fn finish(&mut self) {
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
struct TreeWriter<'a> {
    tarball: &'a Path,
    dest: &'a Path,
    owner: Option<(u32, u32)>,
    /// Directories (relative) known to be real directories, not links.
    known_dirs: HashSet<PathBuf>,
    /// Directory entries whose mode and mtime are applied at the end.
    deferred_dirs: Vec<(PathBuf, u32, u64)>,
    buf: Vec<u8>,
    summary: UnpackSummary,
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

    fn apply(
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
    fn finish_dirs(&mut self) -> Result<(), UnpackError> {
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

fn not_a_dir() -> io::Error {
    io::Error::new(
        io::ErrorKind::NotADirectory,
        "exists and is not a directory (a symbolic link is never followed)",
    )
}

/// Runs `make` at `path`; when something non-directory is already there, it
/// is unlinked (never followed) and `make` runs once more.
fn replace_with<T>(path: &Path, make: impl Fn(&Path) -> io::Result<T>) -> io::Result<T> {
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
fn read_exactly(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<()> {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn header(path: &str, kind: EntryType, link: Option<&str>) -> Header {
        Header {
            path: PathBuf::from(path),
            kind,
            link: link.map(PathBuf::from),
        }
    }

    #[test]
    fn relative_paths_drop_dot_and_refuse_escapes() {
        let cases: &[(&str, Result<&str, Refusal>)] = &[
            ("base/1/1259", Ok("base/1/1259")),
            ("./pg_wal/archive_status/", Ok("pg_wal/archive_status")),
            ("./", Ok("")),
            ("a//b/./c", Ok("a/b/c")),
            ("../evil", Err(Refusal::ParentDir)),
            ("a/../../evil", Err(Refusal::ParentDir)),
            ("/abs/evil", Err(Refusal::Absolute)),
        ];
        for (input, want) in cases {
            let got = relative_path(Path::new(input));
            assert_eq!(got, want.clone().map(PathBuf::from), "{input}");
        }
    }

    #[test]
    fn symlink_targets_must_stay_inside() {
        let ok = [
            ("link", "target"),
            ("pg_wal/link", "../global/x"),
            ("a/b/link", "../../c"),
            ("a/link", ".."),
            ("link", "./a/b"),
        ];
        for (rel, target) in ok {
            assert_eq!(
                check_symlink_target(Path::new(rel), Path::new(target)),
                Ok(()),
                "{rel} -> {target}"
            );
        }
        let refused = [
            ("link", "/etc"),
            ("link", ".."),
            ("a/link", "../.."),
            ("link", "a/../.."),
            // `a/..` depends on whether `a` is a link: refused.
            ("link", "a/../b"),
            ("link", ""),
        ];
        for (rel, target) in refused {
            assert!(
                matches!(
                    check_symlink_target(Path::new(rel), Path::new(target)),
                    Err(Refusal::LinkOutside { .. })
                ),
                "{rel} -> {target}"
            );
        }
    }

    #[test]
    fn nothing_below_a_symlink_even_a_refused_one() {
        let mut checks = EntryChecks::default();
        let link = checks.check(&header("link", EntryType::Symlink, Some("/etc")));
        assert!(matches!(link, Err(Refusal::LinkOutside { .. })));
        let below = checks.check(&header("link/passwd", EntryType::Regular, None));
        assert_eq!(
            below.err(),
            Some(Refusal::UnderSymlink {
                parent: "link".into()
            })
        );
        let as_dir = checks.check(&header("link", EntryType::Directory, None));
        assert!(matches!(as_dir, Err(Refusal::UnderSymlink { .. })));
        // A file replacing the link clears it.
        assert!(
            checks
                .check(&header("link", EntryType::Regular, None))
                .is_ok()
        );
        assert!(
            checks
                .check(&header("link/x", EntryType::Regular, None))
                .is_ok()
        );
    }

    #[test]
    fn hard_links_stay_inside_and_specials_are_refused() {
        let mut checks = EntryChecks::default();
        let inside = checks.check(&header("b", EntryType::Link, Some("./a/file")));
        assert!(matches!(
            inside,
            Ok(Some(Checked { action: Action::HardLink(ref t), .. })) if t == Path::new("a/file")
        ));
        for target in ["/etc/shadow", "../x", ""] {
            let got = checks.check(&header("b", EntryType::Link, Some(target)));
            assert!(matches!(got, Err(Refusal::LinkOutside { .. })), "{target}");
        }
        for kind in [EntryType::Char, EntryType::Block, EntryType::Fifo] {
            assert!(matches!(
                checks.check(&header("dev", kind, None)),
                Err(Refusal::Unsupported { .. })
            ));
        }
        assert!(matches!(
            checks.check(&header("./", EntryType::Directory, None)),
            Ok(None)
        ));
        assert_eq!(
            checks.check(&header("./", EntryType::Regular, None)).err(),
            Some(Refusal::Empty)
        );
    }

    #[test]
    fn rate_and_eta() {
        let mut p = UnpackProgress {
            compressed_done: 0,
            compressed_total: 300,
            bytes_written: 0,
            files: 0,
            elapsed: Duration::ZERO,
        };
        assert_eq!(p.rate(), 0.0);
        assert_eq!(p.eta(), None);
        p.compressed_done = 100;
        p.elapsed = Duration::from_secs(2);
        assert_eq!(p.rate(), 50.0);
        assert_eq!(p.eta(), Some(Duration::from_secs(4)));
    }
}
