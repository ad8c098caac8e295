//! Reading one upload from the sender, untrusted, in one pass: the raw bytes
//! go to the `.part` file (or nowhere, when the upload is only compared with
//! a stored file), and the content (inflated when the name ends in `.gz`) is
//! judged as it streams past.
//!
//! Every read is bounded. A segment never yields more than its segment size
//! (from the client's facts, else from its own header, at most 1 GiB), and
//! its compressed form not much more; small files (`.history`, `.backup`,
//! backup_manifest, the copy test) have caps of their own; and the bytes
//! written are checked against the client's quota and the file system's
//! free space as they arrive, so an upload that would pass either stops
//! before the disk fills. A segment whose first page header is wrong stops
//! after those 40 bytes, not after 16 MiB.
//!
//! Segments are judged by the checks' own rules ([`SegmentCheck::verdict`]):
//! the page magic of PostgreSQL 10 to 18, the segment size, the system
//! identifier, and the page address of the name (a header timeline lower
//! than the name's is an ancestor's: the first segment of a timeline that
//! began inside a segment is a copy of its parent's).

use std::cell::{Cell, RefCell};
use std::fs::File;
use std::io::{self, BufReader, Read, Write};

use sha2::Digest;

use crate::archive::wal::{LONG_HEADER_LEN, LongPageHeader, MAX_SEG_SIZE, RawSegmentName};
use crate::checks::integrity::{SegmentCheck, SegmentVerdict};
use crate::ops::receive::error::ReceiveError;
use crate::ops::receive::state::ClusterFacts;

/// Read size: large enough that the inflater works in long runs (as the deep check reads).
const CHUNK: usize = 256 * 1024;
/// The largest `.history` file: a line per ancestor, ~60 bytes each.
pub const HISTORY_CAP: u64 = 1 << 20;
/// The largest `.backup` file: a backup label and its STOP lines.
pub const BACKUP_CAP: u64 = 64 * 1024;
/// The largest backup_manifest: ~140 bytes per file, room for ~1.9 million files.
pub const MANIFEST_CAP: u64 = 256 << 20;
/// The largest copy test.
pub const COPY_TEST_CAP: u64 = 1 << 20;
/// How often (bytes written) the free space is read again.
const SPACE_CHECK_EVERY: u64 = 64 << 20;
/// Writeback of the part file starts every this many bytes, while the rest
/// still arrives, so the fsync at the end waits for little.
const WRITEBACK_EVERY: u64 = 1 << 20;

/// What the content of an upload must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    Segment {
        name: RawSegmentName,
    },
    /// A small text file, kept whole (up to `cap` bytes) to be parsed after.
    Small {
        cap: u64,
    },
    /// A tarball: only its gzip stream is checked here, the rest at finish-base.
    Tarball,
}

/// The quota and the free-space reserve, checked as bytes are written.
#[derive(Debug, Clone, Copy, Default)]
pub struct SpaceRule {
    /// `(limit, bytes already used by the client)`.
    pub quota: Option<(u64, u64)>,
    /// Bytes the file system must keep free.
    pub reserve: u64,
}

/// What one pass over an upload found (all of it judged good).
#[derive(Debug, Clone, Default)]
pub struct Received {
    pub raw_bytes: u64,
    pub content_bytes: u64,
    pub header: Option<LongPageHeader>,
    /// The content of a small file.
    pub kept: Vec<u8>,
    /// SHA-256 of the content, when asked for (to compare with a stored file).
    pub sha256: Option<[u8; 32]>,
}

/// State the reading loop and the raw reader inside the decoder share.
struct Shared {
    raw: Cell<u64>,
    raw_limit: Cell<u64>,
    stopped: RefCell<Option<ReceiveError>>,
}

impl Shared {
    fn stop(&self, error: ReceiveError) -> io::Error {
        *self.stopped.borrow_mut() = Some(error);
        io::Error::other("upload stopped")
    }
}

/// The sender's raw bytes: counted, bounded, written to the part file and
/// checked against the space rule on the way.
struct Raw<'a> {
    source: &'a mut dyn Read,
    sink: Option<&'a mut File>,
    shared: &'a Shared,
    space: SpaceRule,
    next_space_check: u64,
    /// Bytes of the part file whose writeback has been started.
    written_back: u64,
}

/// Starts (does not wait for) the writeback of `len` bytes at `offset`.
fn start_writeback(file: &File, offset: u64, len: u64) {
    use std::os::fd::AsRawFd;
    let (Ok(offset), Ok(len)) = (i64::try_from(offset), i64::try_from(len)) else {
        return;
    };
    // SAFETY: an fd we own for the call's duration and plain integers; the
    // call reads no memory of ours. Failure only means the final fsync
    // does all the work, so its result is ignored.
    unsafe {
        nix::libc::sync_file_range(
            file.as_raw_fd(),
            offset,
            len,
            nix::libc::SYNC_FILE_RANGE_WRITE,
        );
    }
}

impl Read for Raw<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = match self.source.read(buf) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Err(e),
            Err(e) => {
                return Err(self
                    .shared
                    .stop(ReceiveError::corrupt(format!("the upload stopped: {e}"))));
            }
        };
        let raw = self.shared.raw.get() + n as u64;
        self.shared.raw.set(raw);
        if raw > self.shared.raw_limit.get() {
            return Err(self.shared.stop(ReceiveError::corrupt(format!(
                "more than {} bytes sent: too large for this kind of file",
                self.shared.raw_limit.get()
            ))));
        }
        if let Some(sink) = self.sink.as_mut() {
            if let Some((limit, used)) = self.space.quota
                && used.saturating_add(raw) > limit
            {
                return Err(self.shared.stop(ReceiveError::Quota {
                    limit,
                    used,
                    incoming: raw,
                }));
            }
            if raw >= self.next_space_check {
                self.next_space_check = raw + SPACE_CHECK_EVERY;
                if let Ok(stat) = nix::sys::statvfs::fstatvfs(&**sink) {
                    let available = stat.blocks_available().saturating_mul(stat.fragment_size());
                    if available < self.space.reserve {
                        return Err(self.shared.stop(ReceiveError::DiskFull {
                            available,
                            reserve: self.space.reserve,
                        }));
                    }
                }
            }
            if let Err(e) = sink.write_all(&buf[..n]) {
                return Err(self
                    .shared
                    .stop(ReceiveError::io("writing the upload's .part file")(e)));
            }
            if raw - self.written_back >= WRITEBACK_EVERY {
                start_writeback(sink, self.written_back, raw - self.written_back);
                self.written_back = raw;
            }
        }
        Ok(n)
    }
}

/// Reads the whole upload from `source`, writing its raw bytes to `sink`,
/// and judges its content as `expect` says. Stops at the first fault.
pub fn receive(
    source: &mut dyn Read,
    sink: Option<&mut File>,
    compressed: bool,
    expect: Expect,
    facts: ClusterFacts,
    space: SpaceRule,
    hash: bool,
) -> Result<Received, ReceiveError> {
    // Content bounds before anything is known: a segment is at most the
    // client's segment size (else the largest PostgreSQL allows).
    let mut content_limit = match expect {
        Expect::Segment { .. } => facts.segment_size.unwrap_or(MAX_SEG_SIZE) as u64,
        Expect::Small { cap } => cap,
        Expect::Tarball => u64::MAX,
    };
    let shared = Shared {
        raw: Cell::new(0),
        raw_limit: Cell::new(raw_bound(content_limit, compressed)),
        stopped: RefCell::new(None),
    };
    let raw = Raw {
        source,
        sink,
        shared: &shared,
        space,
        next_space_check: 0,
        written_back: 0,
    };
    let mut reader: Box<dyn Read + '_> = if compressed {
        Box::new(flate2::bufread::MultiGzDecoder::new(
            BufReader::with_capacity(CHUNK, raw),
        ))
    } else {
        Box::new(raw)
    };
    let mut received = Received::default();
    let mut hasher = hash.then(sha2::Sha256::new);
    let keep = matches!(expect, Expect::Small { .. });
    let mut buf = vec![0u8; CHUNK];
    let mut head: Vec<u8> = Vec::with_capacity(LONG_HEADER_LEN);
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                return Err(shared.stopped.borrow_mut().take().unwrap_or_else(|| {
                    ReceiveError::corrupt(format!("not a complete gzip stream: {e}"))
                }));
            }
        };
        let chunk = &buf[..n];
        received.content_bytes += n as u64;
        if received.content_bytes > content_limit {
            return Err(ReceiveError::corrupt(match expect {
                Expect::Segment { .. } => {
                    format!("more than {content_limit} bytes unpacked: longer than one segment")
                }
                _ => format!("more than {content_limit} bytes: too large for this kind of file"),
            }));
        }
        if let Some(hasher) = hasher.as_mut() {
            hasher.update(chunk);
        }
        if keep {
            received.kept.extend_from_slice(chunk);
        }
        if let Expect::Segment { name } = expect
            && received.header.is_none()
        {
            let wanted = (LONG_HEADER_LEN - head.len()).min(n);
            head.extend_from_slice(&chunk[..wanted]);
            if head.len() == LONG_HEADER_LEN {
                let header = judge_header(name, &head, facts)?;
                // From here on the segment size is known: bound both sides by it.
                content_limit = header.seg_size as u64;
                shared
                    .raw_limit
                    .set(raw_bound(content_limit, compressed).min(shared.raw_limit.get()));
                if received.content_bytes > content_limit {
                    return Err(ReceiveError::corrupt(format!(
                        "more than {content_limit} bytes unpacked: longer than one segment"
                    )));
                }
                received.header = Some(header);
            }
        }
    }
    received.raw_bytes = shared.raw.get();
    if received.raw_bytes == 0 {
        return Err(ReceiveError::corrupt("nothing was sent: an empty upload"));
    }
    if let Expect::Segment { .. } = expect {
        // The same wording as the deep check's for a segment of the wrong length.
        let Some(header) = received.header else {
            let reason = LongPageHeader::parse(&head)
                .err()
                .map_or_else(|| "no page header".to_owned(), |e| e.to_string());
            return Err(ReceiveError::corrupt(reason));
        };
        if received.content_bytes != header.seg_size as u64 {
            return Err(ReceiveError::corrupt(format!(
                "{} bytes unpacked, a segment has {}: truncated",
                received.content_bytes, header.seg_size
            )));
        }
    }
    received.sha256 = hasher.map(|h| h.finalize().into());
    Ok(received)
}

/// Raw bytes allowed for `content` bytes of content: incompressible data
/// can grow by 1/8 under a compressor that keeps to fixed Huffman codes
/// (9 bits for some bytes; zlib-ng's and zlib-rs's fastest level does),
/// and the gzip header may hold a file name.
fn raw_bound(content: u64, compressed: bool) -> u64 {
    if compressed {
        content
            .saturating_add(content / 8)
            .saturating_add(64 * 1024)
    } else {
        content
    }
}

/// Judges a segment's first page header against its name and the client,
/// with the checks' verdict.
pub fn judge_header(
    name: RawSegmentName,
    head: &[u8],
    facts: ClusterFacts,
) -> Result<LongPageHeader, ReceiveError> {
    let header = LongPageHeader::parse(head).map_err(|e| ReceiveError::corrupt(e.to_string()))?;
    let check = SegmentCheck {
        name: name.to_string(),
        size: 0,
        stream_error: None,
        header: Ok(header),
    };
    match check.verdict(facts.system_identifier, facts.segment_size) {
        SegmentVerdict::Good => Ok(header),
        SegmentVerdict::Corrupt { reason } => Err(ReceiveError::corrupt(reason)),
        SegmentVerdict::Foreign {
            system_identifier,
            expected,
        } => Err(ReceiveError::Foreign {
            found: system_identifier,
            expected,
        }),
        SegmentVerdict::Misnamed { header_says } => Err(ReceiveError::Misnamed { header_says }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::demo::Cluster;

    const SEG: u32 = 1 << 20;

    fn facts(sysid: u64) -> ClusterFacts {
        ClusterFacts {
            system_identifier: Some(sysid),
            segment_size: Some(SEG),
        }
    }

    fn segment_upload(
        bytes: &[u8],
        name: &str,
        compressed: bool,
        facts: ClusterFacts,
    ) -> Result<Received, ReceiveError> {
        let mut source = bytes;
        receive(
            &mut source,
            None,
            compressed,
            Expect::Segment {
                name: RawSegmentName::parse(name).unwrap(),
            },
            facts,
            SpaceRule::default(),
            false,
        )
    }

    #[test]
    fn a_whole_segment_passes_gzip_or_plain() {
        let cluster = Cluster::new(42, SEG);
        let id = cluster.id(1, 7);
        let bytes = cluster.segment_bytes(id);
        let name = id.file_name(SEG);
        let plain = segment_upload(&bytes, &name, false, facts(42)).unwrap();
        assert_eq!(plain.content_bytes, SEG as u64);
        let gz = crate::demo::gzip(&bytes).unwrap();
        let received = segment_upload(&gz, &name, true, facts(42)).unwrap();
        assert_eq!(received.raw_bytes, gz.len() as u64);
        assert_eq!(received.header.unwrap().system_identifier, 42);
        // Nothing known about the client yet: the segment teaches it.
        assert!(segment_upload(&gz, &name, true, ClusterFacts::default()).is_ok());
    }

    #[test]
    fn faults_are_named() {
        let cluster = Cluster::new(42, SEG);
        let id = cluster.id(1, 7);
        let bytes = cluster.segment_bytes(id);
        let name = id.file_name(SEG);
        let gz = crate::demo::gzip(&bytes).unwrap();
        let code = |result: Result<Received, ReceiveError>| result.unwrap_err().code().as_str();
        assert_eq!(
            code(segment_upload(&gz[..gz.len() - 9], &name, true, facts(42))),
            "corrupt_upload"
        );
        assert_eq!(
            code(segment_upload(
                &bytes[..SEG as usize - 1],
                &name,
                false,
                facts(42)
            )),
            "corrupt_upload"
        );
        assert_eq!(
            code(segment_upload(&gz, &name, true, facts(43))),
            "foreign_segment"
        );
        assert_eq!(
            code(segment_upload(
                &gz,
                &cluster.id(1, 8).file_name(SEG),
                true,
                facts(42)
            )),
            "misnamed_segment"
        );
        // A header timeline above the name's is no switch segment.
        let later = crate::demo::gzip(&cluster.segment_bytes(cluster.id(3, 7))).unwrap();
        assert_eq!(
            code(segment_upload(
                &later,
                &cluster.id(2, 7).file_name(SEG),
                true,
                facts(42)
            )),
            "misnamed_segment"
        );
        assert_eq!(
            code(segment_upload(&[], &name, true, facts(42))),
            "corrupt_upload"
        );
        assert_eq!(
            code(segment_upload(b"not gzip at all", &name, true, facts(42))),
            "corrupt_upload"
        );
        // Another segment size than the client's.
        let big = Cluster::new(42, 2 * SEG);
        let big_bytes = crate::demo::gzip(&big.segment_bytes(big.id(1, 7))).unwrap();
        let error = segment_upload(
            &big_bytes,
            &big.id(1, 7).file_name(2 * SEG),
            true,
            facts(42),
        )
        .unwrap_err();
        assert_eq!(error.code().as_str(), "corrupt_upload", "{error}");
    }

    #[test]
    fn the_switch_segment_of_a_new_timeline_carries_its_parents_timeline() {
        let cluster = Cluster::new(42, SEG);
        // Timeline 2 began inside segment 8: its copy starts with timeline 1's header.
        let parent = crate::demo::gzip(&cluster.segment_bytes(cluster.id(1, 8))).unwrap();
        let name = cluster.id(2, 8).file_name(SEG);
        assert!(segment_upload(&parent, &name, true, facts(42)).is_ok());
        // The page address must still be the name's.
        let wrong = crate::demo::gzip(&cluster.segment_bytes(cluster.id(1, 9))).unwrap();
        assert!(segment_upload(&wrong, &name, true, facts(42)).is_err());
    }

    #[test]
    fn a_bomb_stops_at_one_segment_and_a_bad_header_at_forty_bytes() {
        let cluster = Cluster::new(42, SEG);
        let id = cluster.id(1, 7);
        let mut long = cluster.segment_bytes(id);
        long.extend(std::iter::repeat_n(0u8, 64 * SEG as usize));
        let gz = crate::demo::gzip(&long).unwrap();
        let error = segment_upload(&gz, &id.file_name(SEG), true, facts(42)).unwrap_err();
        assert!(
            error.to_string().contains("longer than one segment"),
            "{error}"
        );

        // A source that would go on for ever: the bad header ends it.
        struct Endless(u64);
        impl Read for Endless {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                self.0 += buf.len() as u64;
                buf.fill(0xAB);
                Ok(buf.len())
            }
        }
        let mut endless = Endless(0);
        let result = receive(
            &mut endless,
            None,
            false,
            Expect::Segment {
                name: RawSegmentName::parse(&id.file_name(SEG)).unwrap(),
            },
            facts(42),
            SpaceRule::default(),
            false,
        );
        assert!(result.is_err());
        assert!(endless.0 <= CHUNK as u64, "read {} bytes", endless.0);
    }

    #[test]
    fn the_quota_stops_the_writing() {
        let dir = tempfile::tempdir().unwrap();
        let mut part = File::create(dir.path().join("x.part")).unwrap();
        let bytes = vec![7u8; 300_000];
        let mut source = &bytes[..];
        let error = receive(
            &mut source,
            Some(&mut part),
            false,
            Expect::Tarball,
            ClusterFacts::default(),
            SpaceRule {
                quota: Some((250_000, 100_000)),
                reserve: 0,
            },
            false,
        )
        .unwrap_err();
        assert_eq!(error.code().as_str(), "quota_exceeded", "{error}");
        let written = std::fs::metadata(dir.path().join("x.part")).unwrap().len();
        assert!(written <= 150_000, "{written} bytes written past the quota");
    }

    #[test]
    fn small_files_are_capped() {
        let text = vec![b'1'; 2000];
        let mut source = &text[..];
        let error = receive(
            &mut source,
            None,
            false,
            Expect::Small { cap: 1000 },
            ClusterFacts::default(),
            SpaceRule::default(),
            true,
        )
        .unwrap_err();
        assert!(error.to_string().contains("too large"), "{error}");
        let mut source = &text[..500];
        let received = receive(
            &mut source,
            None,
            false,
            Expect::Small { cap: 1000 },
            ClusterFacts::default(),
            SpaceRule::default(),
            true,
        )
        .unwrap();
        assert_eq!(received.kept.len(), 500);
        assert!(received.sha256.is_some());
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
        #[test]
        fn arbitrary_uploads_are_a_verdict_never_a_panic(
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..2048),
            gzip_magic in proptest::prelude::any::<bool>(),
        ) {
            let mut bytes = bytes;
            if gzip_magic && bytes.len() >= 2 {
                bytes[0] = 0x1f;
                bytes[1] = 0x8b;
            }
            let _ = segment_upload(&bytes, "000000010000000000000007", true, facts(1));
            let _ = segment_upload(&bytes, "000000010000000000000007", false, facts(1));
        }
    }
}
