//! The cheap level of segment verification, run by every ordinary `check`
//! on the segments it has not judged before: no full decompression, a few
//! KB read per file. A gzip'ed segment's trailer (ISIZE, the unpacked length
//! mod 2^32) must equal the segment size, and its first long page header,
//! inflated from the first 8 KiB only, must name this cluster and this
//! segment. An uncompressed segment must be exactly one segment long.
//! It catches truncated transfers, renamed files and other clusters'
//! segments; a flipped byte in the middle needs `check --deep`.
//!
//! What was judged is remembered per block of up to 256 segments (the
//! names that share all but the last two hex digits): a fingerprint of the
//! block's names, sizes and mtimes (and of the system identifier and the
//! segment size the verdicts depend on) plus its bad files. A re-scan of an
//! unchanged archive of 1,000,000 segments then opens no file: it hashes
//! what the scan already stat'ed and finds every fingerprint equal. A new
//! or changed file re-judges its block only. The cache is small (a few
//! hundred KB for a million files), outside the backup root.

use std::collections::{BTreeSet, HashMap};
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use serde::{Deserialize, Serialize};

use crate::archive::catalog::Client;
use crate::archive::folder::SegmentFile;
use crate::archive::safe_open;
use crate::archive::wal::{LONG_HEADER_LEN, LongPageHeader, RawSegmentName};
use crate::checks::deep::{Verdict, problem_for};
use crate::checks::health::Problem;
use crate::checks::integrity::{ReadFailure, SegmentCheck};

pub fn default_cache_path() -> Option<PathBuf> {
    dirs::cache_dir().map(|d| d.join("walwarden").join("quick-verify.json"))
}

/// How much of a gzip'ed segment is inflated: the first WAL page.
const HEAD_UNPACKED: usize = 8192;
/// How much compressed input is read for it: 8 KiB of output never takes
/// more than ~8.3 KiB of deflate input (stored blocks at worst), plus the
/// gzip header and the file name gzip stores, so one read of 16 KiB always
/// holds the first page of a complete file.
const HEAD_COMPRESSED: u64 = 16 * 1024;

/// Reads a segment's gzip trailer and first page: see the module doc.
pub fn check_segment_quickly(path: &Path, seg_size: u32) -> SegmentCheck {
    let name = path
        .file_name()
        .map(crate::display::escape_name)
        .unwrap_or_default();
    let mut head = Vec::with_capacity(HEAD_UNPACKED);
    let mut size = 0;
    let stream = (|| -> io::Result<()> {
        let (file, file_size) = safe_open::open_regular(path)?;
        size = file_size;
        if !name.ends_with(".gz") {
            // Judged from its size first: a 20 GB sparse file is not read at all.
            if size != seg_size as u64 {
                return Err(io::Error::other(format!(
                    "{size} bytes, a segment has {seg_size}"
                )));
            }
            file.take(LONG_HEADER_LEN as u64).read_to_end(&mut head)?;
            return Ok(());
        }
        // 10-byte header, at least 2 bytes of deflate, 8-byte trailer.
        if size < 20 {
            return Err(io::Error::other(format!(
                "{size} bytes: too short to be a gzip'ed segment"
            )));
        }
        let mut trailer = [0u8; 4];
        file.read_exact_at(&mut trailer, size - 4)?;
        let isize = u32::from_le_bytes(trailer);
        // ISIZE is the length mod 2^32, exact for segments (1 GiB at most).
        if isize != seg_size {
            return Err(io::Error::other(format!(
                "its gzip trailer says {isize} bytes unpacked, a segment has {seg_size}: truncated or not one whole segment"
            )));
        }
        let mut compressed = Vec::with_capacity(HEAD_COMPRESSED as usize);
        (&file).take(HEAD_COMPRESSED).read_to_end(&mut compressed)?;
        flate2::bufread::GzDecoder::new(&compressed[..])
            .take(HEAD_UNPACKED as u64)
            .read_to_end(&mut head)
            .map(|_| ())
            .or_else(|e| {
                // The 16 KiB ends mid-stream: expected, once the first page is out.
                if e.kind() == io::ErrorKind::UnexpectedEof && head.len() >= LONG_HEADER_LEN {
                    Ok(())
                } else {
                    Err(e)
                }
            })
    })();
    let header = LongPageHeader::parse(&head).map_err(|e| e.to_string());
    SegmentCheck {
        name,
        size,
        stream_error: stream.err().map(|e| ReadFailure::of(&e)),
        header,
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Block {
    fingerprint: u64,
    /// Bad files of the block and their verdicts, in name order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    bad: Vec<(String, Verdict)>,
    /// Set instead of `bad` when every file of the block has this verdict
    /// (a broken archive_command makes thousands of identical bad files).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    all: Option<Verdict>,
}

/// Consecutive bad files with the same verdict: one problem, not thousands.
/// Files are consecutive when nothing lies between them in the archive's
/// sorted segment list.
struct Run {
    first: String,
    last: String,
    count: u64,
    /// Index (in the client's segment list) of the run's last file.
    end: usize,
    verdict: Verdict,
}

fn push_run(
    runs: &mut Vec<Run>,
    name: &str,
    at: usize,
    count: u64,
    first_at: usize,
    first: &str,
    verdict: &Verdict,
) {
    if let Some(run) = runs.last_mut()
        && run.end + 1 == first_at
        && run.verdict == *verdict
    {
        run.last = name.to_owned();
        run.count += count;
        run.end = at;
        return;
    }
    runs.push(Run {
        first: first.to_owned(),
        last: name.to_owned(),
        count,
        end: at,
        verdict: verdict.clone(),
    });
}

/// What the quick check found of a client: its problems, the segments it
/// judged unusable (a restore's line stops at the first), and the recovery
/// point read from the line they leave.
#[derive(Debug, Clone, Default)]
pub struct QuickFindings {
    pub problems: Vec<Problem>,
    pub unusable: BTreeSet<RawSegmentName>,
    pub recovery_point: Option<crate::checks::recovery_point::RecoveryPoint>,
}

/// The client a quick check judges: borrowed by `check`, owned by the
/// dashboard's background job (the catalog goes to the event loop at once).
#[derive(Debug, Clone)]
pub struct QuickInput<'a> {
    pub client: std::borrow::Cow<'a, Client>,
}

impl QuickInput<'_> {
    pub fn borrowed(client: &Client) -> QuickInput<'_> {
        QuickInput {
            client: std::borrow::Cow::Borrowed(client),
        }
    }

    pub fn owned(client: &Client) -> QuickInput<'static> {
        QuickInput {
            client: std::borrow::Cow::Owned(client.clone()),
        }
    }

    pub fn name(&self) -> &str {
        &self.client.name
    }
}

#[derive(Debug, Default)]
pub struct QuickCache {
    path: Option<PathBuf>,
    clients: HashMap<String, HashMap<String, Block>>,
    changed: bool,
    /// Files opened since the cache was loaded (for tests and the bench).
    pub files_read: u64,
}

impl QuickCache {
    /// Loads the cache; a missing or unreadable file is an empty cache.
    pub fn load(path: Option<&Path>) -> QuickCache {
        let clients = crate::store::read_json_or_default(path);
        QuickCache {
            path: path.map(Path::to_owned),
            clients,
            changed: false,
            files_read: 0,
        }
    }

    pub fn save(&self) -> io::Result<()> {
        let (Some(path), true) = (&self.path, self.changed) else {
            return Ok(());
        };
        crate::store::write_json(path, &self.clients)
    }

    /// Judges the client's segments not judged before; returns the problems
    /// of all its segments (remembered or new), one per bad file.
    pub fn check_client(&mut self, client: &Client) -> Vec<Problem> {
        self.check(&QuickInput::borrowed(client))
    }

    /// [`QuickCache::check_client`] on what the check needs of a client.
    pub fn check(&mut self, client: &QuickInput<'_>) -> Vec<Problem> {
        let client = &*client.client;
        let Some(seg_size) = client.wal.segment_size else {
            return Vec::new();
        };
        let expected_sysid = client.base.system_identifier();
        let wal_dir = crate::archive::folder::wal_dir(&client.path);
        // Zero-byte files are reported as missing by the ordinary rules; partial ones are not segments yet.
        let eligible = |s: &&SegmentFile| !s.partial && s.size > 0;
        let segments: &[SegmentFile] = &client.wal.segments;
        // Keyed by the client's folder: two roots may both have a client1
        // (escaped, not lossy: names that differ only in non-UTF-8 bytes differ here too).
        let cache_key = crate::display::escape_path(&client.path);
        let remembered = self.clients.remove(&cache_key).unwrap_or_default();
        let mut blocks = HashMap::new();
        let mut runs: Vec<Run> = Vec::new();
        let mut start = 0;
        for group in segments.chunk_by(|a, b| block_of(a) == block_of(b)) {
            let group_start = start;
            start += group.len();
            let count = group.iter().filter(eligible).count();
            let (Some(first), Some(last)) = (
                group.iter().position(|s| eligible(&s)),
                group.iter().rposition(|s| eligible(&s)),
            ) else {
                continue;
            };
            let key = block_key(block_of(&group[0]));
            let fingerprint = fingerprint(group.iter().filter(eligible), expected_sysid, seg_size);
            let block = match remembered.get(&key) {
                Some(block) if block.fingerprint == fingerprint => block.clone(),
                _ => {
                    self.changed = true;
                    self.files_read += count as u64;
                    let mut bad: Vec<(String, Verdict)> = group
                        .iter()
                        .filter(eligible)
                        .filter_map(|s| {
                            let name = s.file_name();
                            let verdict = check_segment_quickly(&wal_dir.join(&name), seg_size)
                                .verdict(expected_sysid, Some(seg_size));
                            (verdict != Verdict::Good).then_some((name, verdict))
                        })
                        .collect();
                    let all = (bad.len() == count && bad.windows(2).all(|w| w[0].1 == w[1].1))
                        .then(|| bad.first().map(|b| b.1.clone()))
                        .flatten();
                    if all.is_some() {
                        bad.clear();
                    }
                    // What could not be read is judged again next time: a
                    // chmod changes no size or mtime the fingerprint sees.
                    let about_access = bad
                        .iter()
                        .map(|(_, v)| v)
                        .chain(&all)
                        .any(Verdict::is_about_access);
                    Block {
                        fingerprint: if about_access { 0 } else { fingerprint },
                        bad,
                        all,
                    }
                }
            };
            if let Some(verdict) = &block.all {
                push_run(
                    &mut runs,
                    &group[last].file_name(),
                    group_start + last,
                    count as u64,
                    group_start + first,
                    &group[first].file_name(),
                    verdict,
                );
            } else {
                let mut index = group_start;
                for (name, verdict) in &block.bad {
                    // `bad` is in name order, like the group.
                    while index < start && segments[index].file_name() != *name {
                        index += 1;
                    }
                    push_run(&mut runs, name, index, 1, index, name, verdict);
                }
            }
            blocks.insert(key, block);
        }
        let problems = runs
            .iter()
            .filter_map(|run| {
                let name = if run.count == 1 {
                    run.first.clone()
                } else {
                    format!("{} .. wal/{} ({} files)", run.first, run.last, run.count)
                };
                problem_for(&name, &run.verdict)
            })
            .collect();
        self.changed |= blocks.len() != remembered.len();
        self.clients.insert(cache_key, blocks);
        problems
    }
}

impl QuickCache {
    /// The segments of a client judged bad (corrupt, foreign, misnamed) by
    /// the last [`QuickCache::check`] of it: a restore's replay stops at the
    /// first of them on its line, so the window ends before it.
    pub fn unusable(&self, client: &QuickInput<'_>) -> BTreeSet<RawSegmentName> {
        let client = &*client.client;
        let cache_key = crate::display::escape_path(&client.path);
        let Some(blocks) = self.clients.get(&cache_key) else {
            return BTreeSet::new();
        };
        let mut bad = BTreeSet::new();
        for group in client
            .wal
            .segments
            .chunk_by(|a, b| block_of(a) == block_of(b))
        {
            let Some(block) = blocks.get(&block_key(block_of(&group[0]))) else {
                continue;
            };
            if block.all.is_some() {
                bad.extend(
                    group
                        .iter()
                        .filter(|s| !s.partial && s.size > 0)
                        .map(|s| s.name),
                );
            }
            bad.extend(
                block
                    .bad
                    .iter()
                    .filter_map(|(name, _)| RawSegmentName::parse(name.get(..24)?)),
            );
        }
        bad
    }
}

/// The segment name without its last two hex digits: up to 256 neighbours.
fn block_of(segment: &SegmentFile) -> (u32, u32, u32) {
    (
        segment.name.timeline,
        segment.name.log,
        segment.name.seg >> 8,
    )
}

fn block_key((timeline, log, seg): (u32, u32, u32)) -> String {
    format!("{timeline:08X}{log:08X}{seg:06X}")
}

/// FNV-1a over what the verdicts depend on: stable across builds, unlike std's hasher.
fn fingerprint<'a>(
    group: impl Iterator<Item = &'a SegmentFile>,
    expected_sysid: Option<u64>,
    seg_size: u32,
) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut feed = |bytes: &[u8]| {
        for byte in bytes {
            hash ^= *byte as u64;
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    };
    feed(&expected_sysid.unwrap_or(0).to_le_bytes());
    feed(&seg_size.to_le_bytes());
    for segment in group {
        let mtime = segment
            .mtime
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        feed(&segment.name.timeline.to_le_bytes());
        feed(&segment.name.log.to_le_bytes());
        feed(&segment.name.seg.to_le_bytes());
        feed(&[segment.compressed as u8]);
        feed(&segment.size.to_le_bytes());
        feed(&mtime.to_le_bytes());
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SEG: u32 = 16 << 20;

    fn judge(bytes: &[u8], name: &str) -> Verdict {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        check_segment_quickly(&path, SEG).verdict(Some(1), Some(SEG))
    }

    #[test]
    fn a_whole_segment_passes_and_a_cut_one_fails_on_its_trailer() {
        let cluster = crate::demo::Cluster::new(1, SEG);
        let id = cluster.id(1, 7);
        let gz = crate::demo::gzip(&cluster.segment_bytes(id)).unwrap();
        let name = format!("{}.gz", id.file_name(SEG));
        assert_eq!(judge(&gz, &name), Verdict::Good);
        let cut = judge(&gz[..gz.len() - 1], &name);
        assert!(
            matches!(&cut, Verdict::Corrupt { reason } if reason.contains("trailer")),
            "{cut:?}"
        );
        let plain = judge(
            &cluster.segment_bytes(id)[..SEG as usize / 2],
            &id.file_name(SEG),
        );
        assert!(matches!(plain, Verdict::Corrupt { .. }), "{plain:?}");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn arbitrary_bytes_are_a_verdict_never_a_panic(
            bytes in proptest::collection::vec(any::<u8>(), 0..4096),
            gzip_magic in any::<bool>(),
        ) {
            let mut bytes = bytes;
            if gzip_magic && bytes.len() >= 2 {
                bytes[0] = 0x1f;
                bytes[1] = 0x8b;
            }
            let _ = judge(&bytes, "000000010000000000000007.gz");
            let _ = judge(&bytes, "000000010000000000000007");
        }
    }
}
