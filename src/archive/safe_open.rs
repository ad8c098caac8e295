//! Opening a file of the archive, whose content and kind a client's own
//! user controls: the one way every reader of the catalog, the checks and
//! the restore opens one.
//!
//! - Only a regular file is opened: the entry is `lstat`ed first (a named
//!   pipe, a socket or a device is never even opened: opening some devices
//!   acts), then opened with `O_NOFOLLOW | O_NONBLOCK | O_NOCTTY` (a link
//!   fails, a pipe swapped in meanwhile cannot block), and the descriptor
//!   is `fstat`ed. Anything else is a [`NotRegular`] error naming its kind.
//! - Every read is bounded: small files ([`read_capped`], [`read_text_capped`])
//!   have a cap, a WAL segment ([`SegmentReader`]) never yields more than
//!   its segment size plus one byte (a gzip bomb is called corrupt after
//!   that, not inflated to its end) and reads at most what a compressed
//!   segment can weigh; a file too large to be a segment is judged from its
//!   size without reading it.

use std::fs::{File, OpenOptions};
use std::io::{self, BufReader, Read};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use flate2::bufread::MultiGzDecoder;
use thiserror::Error;

/// What a directory entry is, as `lstat` says (links are not followed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FileKind {
    Regular,
    Directory,
    Symlink,
    Fifo,
    Socket,
    CharDevice,
    BlockDevice,
    Unknown,
}

impl FileKind {
    pub fn of(file_type: &std::fs::FileType) -> FileKind {
        if file_type.is_file() {
            FileKind::Regular
        } else if file_type.is_dir() {
            FileKind::Directory
        } else if file_type.is_symlink() {
            FileKind::Symlink
        } else if file_type.is_fifo() {
            FileKind::Fifo
        } else if file_type.is_socket() {
            FileKind::Socket
        } else if file_type.is_char_device() {
            FileKind::CharDevice
        } else if file_type.is_block_device() {
            FileKind::BlockDevice
        } else {
            FileKind::Unknown
        }
    }

    /// The kind as `find -type` people read it: "fifo", "socket", "character device".
    pub fn as_str(self) -> &'static str {
        match self {
            FileKind::Regular => "regular file",
            FileKind::Directory => "directory",
            FileKind::Symlink => "symlink",
            FileKind::Fifo => "fifo (named pipe)",
            FileKind::Socket => "socket",
            FileKind::CharDevice => "character device",
            FileKind::BlockDevice => "block device",
            FileKind::Unknown => "file of an unknown kind",
        }
    }
}

/// A path that is not a regular file, so it was not opened (or was closed
/// at once): carried inside an `io::Error`, found again with [`not_regular`].
#[derive(Debug, Clone, Error, PartialEq, Eq)]
#[error("{} is a {}, not a regular file: never opened", crate::display::escape_path(.path), .kind.as_str())]
pub struct NotRegular {
    pub path: PathBuf,
    pub kind: FileKind,
}

/// A file larger than what it may be: not read (or not read further).
#[derive(Debug, Clone, Error, PartialEq, Eq)]
#[error("{} is larger than {limit} bytes, more than a {what} can be: not read", crate::display::escape_path(.path))]
pub struct TooLarge {
    pub path: PathBuf,
    pub limit: u64,
    pub what: &'static str,
}

/// The `NotRegular` inside an error from this module, if that is what it is.
pub fn not_regular(error: &io::Error) -> Option<&NotRegular> {
    error.get_ref()?.downcast_ref::<NotRegular>()
}

/// Whether an error (of this module or any file call) is a refused permission.
pub fn is_permission_denied(error: &io::Error) -> bool {
    error.kind() == io::ErrorKind::PermissionDenied
}

fn refuse(path: &Path, kind: FileKind) -> io::Error {
    io::Error::other(NotRegular {
        path: path.to_owned(),
        kind,
    })
}

/// Opens `path` for reading if, and only if, it is a regular file (see the
/// module's doc); returns it with its size.
pub fn open_regular(path: &Path) -> io::Result<(File, u64)> {
    let kind = FileKind::of(&std::fs::symlink_metadata(path)?.file_type());
    if kind != FileKind::Regular {
        return Err(refuse(path, kind));
    }
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc_flags())
        .open(path)
        .map_err(|error| {
            // O_NOFOLLOW on a link (swapped in since the lstat) fails with ELOOP.
            if error.raw_os_error() == Some(nix::errno::Errno::ELOOP as i32) {
                refuse(path, FileKind::Symlink)
            } else {
                error
            }
        })?;
    let meta = file.metadata()?;
    let kind = FileKind::of(&meta.file_type());
    if kind != FileKind::Regular {
        return Err(refuse(path, kind));
    }
    Ok((file, meta.len()))
}

fn libc_flags() -> i32 {
    use nix::fcntl::OFlag;
    (OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_NOCTTY).bits()
}

/// Reads at most `take` bytes from `reader` into `out`; true when there was more.
fn read_bounded(reader: impl Read, take: u64, out: &mut Vec<u8>) -> io::Result<bool> {
    reader.take(take + 1).read_to_end(out)?;
    if out.len() as u64 > take {
        out.truncate(take as usize);
        return Ok(true);
    }
    Ok(false)
}

/// The whole of a small regular file, refused when larger than `cap`.
pub fn read_capped(path: &Path, cap: u64, what: &'static str) -> io::Result<Vec<u8>> {
    read_small(path, cap, what, false)
}

/// A small regular file, inflated with `inflate`: refused when the file or
/// what it inflates to passes `cap`.
fn read_small(path: &Path, cap: u64, what: &'static str, inflate: bool) -> io::Result<Vec<u8>> {
    let (file, size) = open_regular(path)?;
    let too_large = || {
        io::Error::other(TooLarge {
            path: path.to_owned(),
            limit: cap,
            what,
        })
    };
    if size > cap {
        return Err(too_large());
    }
    let mut bytes = Vec::with_capacity(if inflate { 0 } else { size as usize });
    let more = if inflate {
        let decoder = MultiGzDecoder::new(BufReader::new(file.take(cap)));
        read_bounded(decoder, cap, &mut bytes)?
    } else {
        read_bounded(file, cap, &mut bytes)?
    };
    if more {
        return Err(too_large());
    }
    Ok(bytes)
}

/// A small text file (a `.history`, a `.backup`), inflated when its name
/// ends in `.gz`: at most `cap` bytes read and at most `cap` bytes of text.
pub fn read_text_capped(path: &Path, cap: u64, what: &'static str) -> io::Result<String> {
    let gz = path.extension().is_some_and(|e| e == "gz");
    let bytes = read_small(path, cap, what, gz)?;
    String::from_utf8(bytes).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "{} is not text (not UTF-8)",
                crate::display::escape_path(path)
            ),
        )
    })
}

/// The most a gzip'ed segment of `seg_size` bytes can weigh: deflate's
/// stored blocks add 5 bytes per 64 KiB at worst; a generous allowance on
/// top covers the gzip header with a stored file name and the trailer.
pub fn max_compressed_segment(seg_size: u32) -> u64 {
    u64::from(seg_size) + u64::from(seg_size) / 1024 + (1 << 20)
}

/// PostgreSQL's largest segment size (`initdb --wal-segsize` accepts 1 to 1024 MB).
pub const MAX_SEGMENT_SIZE: u32 = 1 << 30;

/// A WAL segment's bytes, inflated when gzip'ed, bounded: see the module's doc.
pub struct SegmentReader {
    inner: Box<dyn Read + Send>,
    /// The file's size on disk.
    pub size: u64,
}

impl SegmentReader {
    /// Opens the segment at `path` (gzip'ed when its name ends in `.gz`) of
    /// `seg_size` bytes (`None`: the largest PostgreSQL allows). A file
    /// larger than any such segment can be is refused from its size, unread.
    pub fn open(path: &Path, seg_size: Option<u32>) -> io::Result<SegmentReader> {
        let seg_size = seg_size.unwrap_or(MAX_SEGMENT_SIZE);
        let (file, size) = open_regular(path)?;
        let gz = path.extension().is_some_and(|e| e == "gz");
        let limit = if gz {
            max_compressed_segment(seg_size)
        } else {
            u64::from(seg_size)
        };
        if size > limit {
            return Err(io::Error::other(TooLarge {
                path: path.to_owned(),
                limit,
                what: if gz { "gzip'ed segment" } else { "segment" },
            }));
        }
        let input = BufReader::with_capacity(256 * 1024, file.take(limit));
        let inner: Box<dyn Read + Send> = if gz {
            Box::new(MultiGzDecoder::new(input).take(u64::from(seg_size) + 1))
        } else {
            Box::new(input.take(u64::from(seg_size) + 1))
        };
        Ok(SegmentReader { inner, size })
    }
}

impl Read for SegmentReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read(buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fifo_a_link_and_a_device_are_refused_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("00000002.history");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
        let error = open_regular(&fifo).unwrap_err();
        assert_eq!(not_regular(&error).map(|e| e.kind), Some(FileKind::Fifo));
        assert!(error.to_string().contains("fifo"), "{error}");
        let link = dir.path().join("link");
        std::os::unix::fs::symlink("/etc/hostname", &link).unwrap();
        let error = open_regular(&link).unwrap_err();
        assert_eq!(not_regular(&error).map(|e| e.kind), Some(FileKind::Symlink));
        let error = open_regular(Path::new("/dev/null")).unwrap_err();
        assert_eq!(
            not_regular(&error).map(|e| e.kind),
            Some(FileKind::CharDevice)
        );
        let error = read_text_capped(&fifo, 1024, "history file").unwrap_err();
        assert!(not_regular(&error).is_some(), "{error}");
    }

    #[test]
    fn a_gzip_bomb_yields_one_byte_past_the_segment_size() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("000000010000000000000001.gz");
        let seg = 1u32 << 20;
        // 64 MiB of zeros: a segment size of 1 MiB must stop it long before.
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        let zeros = vec![0u8; 1 << 20];
        for _ in 0..64 {
            std::io::Write::write_all(&mut encoder, &zeros).unwrap();
        }
        std::fs::write(&path, encoder.finish().unwrap()).unwrap();
        let mut out = Vec::new();
        SegmentReader::open(&path, Some(seg))
            .unwrap()
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out.len() as u64, u64::from(seg) + 1);
    }

    #[test]
    fn a_huge_sparse_file_is_judged_from_its_size() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["000000010000000000000001", "000000010000000000000001.gz"] {
            let path = dir.path().join(name);
            let file = File::create(&path).unwrap();
            file.set_len(20 << 30).unwrap();
            let error = SegmentReader::open(&path, Some(16 << 20))
                .err()
                .expect("refused");
            assert!(error.to_string().contains("larger than"), "{error}");
        }
        let small = dir.path().join("small");
        std::fs::write(&small, vec![b'x'; 100]).unwrap();
        assert!(read_capped(&small, 99, "label").is_err());
        assert_eq!(read_capped(&small, 100, "label").unwrap().len(), 100);
    }
}
