//! The tarball as a stream: inflated inline, or on a second thread into
//! chunks handed over a bounded channel, and parsed as tar, with the
//! end-of-archive block and the gzip trailer required.

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread;

use flate2::read::MultiGzDecoder;
use tar::EntryType;

use super::{BLOCK, CHUNK_LEN, CHUNKS_IN_FLIGHT, FILE_BUF_LEN, UnpackError};

/// Where the inflating runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Pipeline {
    OneThread,
    TwoThreads,
}

impl Pipeline {
    /// Two threads whenever there are two cores to run them: with 128 KiB
    /// chunks handed back for reuse, the hand-off costs less than the
    /// overlap brings even on data that inflates cheaply (pgbench's 18.7:1
    /// tarball: 0.12x `tar xzf` on two threads, 0.17x on one; random text's
    /// 2:1: 0.32x against 0.34x; benches/README.md).
    pub(super) fn for_this_machine() -> Pipeline {
        match std::thread::available_parallelism() {
            Ok(cores) if cores.get() >= 2 => Pipeline::TwoThreads,
            _ => Pipeline::OneThread,
        }
    }
}

/// Counts the bytes read from the tarball file, for progress.
pub(super) struct CountingReader {
    pub(super) file: File,
    pub(super) count: Arc<AtomicU64>,
}

impl Read for CountingReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.file.read(buf)?;
        self.count.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

pub(super) type Source = Box<dyn Read + Send>;

/// Opens the tarball: inflated when its name ends in `.gz`, read as is otherwise.
pub(super) fn open_source(
    path: &Path,
    count: &Arc<AtomicU64>,
) -> Result<(Source, u64), UnpackError> {
    let open_err = |source| UnpackError::Open {
        path: path.to_owned(),
        source,
    };
    // The tarball lies in the archive, which its client's user controls: a
    // regular file only (a fifo swapped in would block the restore).
    let (file, total) = crate::archive::safe_open::open_regular(path).map_err(open_err)?;
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
/// its end so the gzip trailer (CRC and length) is checked. Returns
/// `body`'s value and whether the inflating ran on a second thread.
pub(super) fn with_stream<T>(
    tarball: &Path,
    source: Source,
    pipeline: Pipeline,
    body: impl FnOnce(&mut dyn Read) -> Result<T, UnpackError>,
) -> Result<(T, bool), UnpackError> {
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
            Ok((run(&mut source)?, false))
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
            // thread's next send fail, so the thread stops and the scope
            // can end.
            let mut reader = ChunkReader {
                chunks: chunks_rx,
                spare: spare_tx,
                chunk: Vec::new(),
                pos: 0,
                ended: false,
                failed: false,
            };
            Ok((run(&mut reader)?, true))
        }),
    }
}

pub(super) enum ChunkMsg {
    Data(Vec<u8>),
    Failed(io::Error),
    End,
}

/// The inflate thread: fills whole chunks (reusing the ones handed back) and
/// sends them until the stream ends, fails, or the reader goes away.
pub(super) fn inflate_into_chunks(
    mut source: Source,
    chunks: SyncSender<ChunkMsg>,
    spare: Receiver<Vec<u8>>,
) {
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
pub(super) struct ChunkReader {
    pub(super) chunks: Receiver<ChunkMsg>,
    pub(super) spare: SyncSender<Vec<u8>>,
    pub(super) chunk: Vec<u8>,
    pub(super) pos: usize,
    pub(super) ended: bool,
    /// Set once the stream failed, so no later read mistakes it for its end.
    pub(super) failed: bool,
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
pub(super) struct Tally<'a> {
    pub(super) inner: &'a mut dyn Read,
    pub(super) consumed: u64,
}

impl Read for Tally<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.consumed += n as u64;
        Ok(n)
    }
}

/// One header as the checks see it.
pub(super) struct Header {
    pub(super) path: PathBuf,
    pub(super) kind: EntryType,
    pub(super) link: Option<PathBuf>,
}

impl Header {
    pub(super) fn name(&self) -> String {
        self.path.to_string_lossy().into_owned()
    }
}

pub(super) type TarEntry<'a, 'b, 'c> = tar::Entry<'a, &'b mut Tally<'c>>;

/// Parses the tar stream and calls `visit` for every entry, then requires
/// the end-of-archive block.
pub(super) fn for_each_entry(
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
