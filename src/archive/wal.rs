//! WAL arithmetic and file names: timelines, segment numbers, the names an
//! archive holds, timeline history files and the long page header.
//!
//! A segment is identified by its timeline and its absolute segment number
//! (`SegmentNo`); the 24-hex-digit file name splits that number into a "log"
//! and a "seg" part whose base depends on the segment size, so every
//! conversion between names and numbers takes the segment size.

use std::fmt;

use thiserror::Error;

/// Segment sizes PostgreSQL accepts (`initdb --wal-segsize`, 1 MiB to 1 GiB, powers of two).
pub const MIN_SEG_SIZE: u32 = 1 << 20;
pub const MAX_SEG_SIZE: u32 = 1 << 30;
pub const DEFAULT_SEG_SIZE: u32 = 16 << 20;
/// Size of `XLogLongPageHeaderData`: the first page of every segment starts with it.
pub const LONG_HEADER_LEN: usize = 40;
const XLP_LONG_HEADER: u16 = 0x0002;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum WalError {
    #[error("not a WAL segment name: {0:?}")]
    NotASegmentName(String),
    #[error("segment number {seg:#x} in {name} is out of range for a {seg_size}-byte segment size")]
    SegmentOutOfRange {
        name: String,
        seg: u32,
        seg_size: u32,
    },
    #[error("invalid WAL segment size {0}: must be a power of two from 1 MiB to 1 GiB")]
    BadSegmentSize(u32),
    #[error("WAL page header too short: {0} bytes, need {LONG_HEADER_LEN}")]
    HeaderTooShort(usize),
    #[error("first page has no long header (xlp_info {0:#06x}): not the start of a segment")]
    NotLongHeader(u16),
    #[error("unknown WAL page magic {0:#06x}: not a PostgreSQL 10-18 segment")]
    UnknownMagic(u16),
    #[error("invalid WAL page size {0}: must be a power of two from 1 KiB to 64 KiB")]
    BadPageSize(u32),
    #[error("timeline history line {line}: {reason}")]
    BadHistory { line: usize, reason: String },
}

/// A timeline ID (`xlp_tli`); timeline 1 is the one initdb starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub struct Timeline(pub u32);

/// A write-ahead log position (`XLogRecPtr`), printed as PostgreSQL does: `0/7000028`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Lsn(pub u64);

impl Lsn {
    pub fn parse(text: &str) -> Option<Lsn> {
        let (hi, lo) = text.trim().split_once('/')?;
        let hi = u32::from_str_radix(hi, 16).ok()?;
        let lo = u32::from_str_radix(lo, 16).ok()?;
        Some(Lsn(((hi as u64) << 32) | lo as u64))
    }

    pub fn segment(self, seg_size: u32) -> SegmentNo {
        SegmentNo(self.0 / seg_size as u64)
    }
}

impl fmt::Display for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:X}/{:X}", self.0 >> 32, self.0 & 0xFFFF_FFFF)
    }
}

/// An absolute segment number: the segment's start LSN divided by the segment size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SegmentNo(pub u64);

impl SegmentNo {
    pub fn next(self) -> SegmentNo {
        SegmentNo(self.0 + 1)
    }

    pub fn prev(self) -> Option<SegmentNo> {
        self.0.checked_sub(1).map(SegmentNo)
    }

    pub fn start_lsn(self, seg_size: u32) -> Lsn {
        Lsn(self.0.saturating_mul(seg_size as u64))
    }
}

pub fn validate_seg_size(seg_size: u32) -> Result<u32, WalError> {
    if seg_size.is_power_of_two() && (MIN_SEG_SIZE..=MAX_SEG_SIZE).contains(&seg_size) {
        Ok(seg_size)
    } else {
        Err(WalError::BadSegmentSize(seg_size))
    }
}

fn segments_per_xlog_id(seg_size: u32) -> u64 {
    0x1_0000_0000 / seg_size as u64
}

/// A segment as named in the archive: timeline plus segment number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SegmentId {
    pub timeline: Timeline,
    pub segment: SegmentNo,
}

/// The three 8-hex-digit fields of a segment name, before the segment size gives them meaning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RawSegmentName {
    pub timeline: u32,
    pub log: u32,
    pub seg: u32,
}

impl RawSegmentName {
    pub fn parse(name: &str) -> Option<RawSegmentName> {
        let bytes = name.as_bytes();
        if bytes.len() != 24 || !bytes.iter().all(u8::is_ascii_hexdigit) {
            return None;
        }
        let field = |i: usize| u32::from_str_radix(&name[i * 8..i * 8 + 8], 16).ok();
        Some(RawSegmentName {
            timeline: field(0)?,
            log: field(1)?,
            seg: field(2)?,
        })
    }

    pub fn resolve(self, seg_size: u32) -> Result<SegmentId, WalError> {
        let per_id = segments_per_xlog_id(seg_size);
        if self.seg as u64 >= per_id {
            return Err(WalError::SegmentOutOfRange {
                name: self.to_string(),
                seg: self.seg,
                seg_size,
            });
        }
        Ok(SegmentId {
            timeline: Timeline(self.timeline),
            segment: SegmentNo(self.log as u64 * per_id + self.seg as u64),
        })
    }
}

impl fmt::Display for RawSegmentName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:08X}{:08X}{:08X}", self.timeline, self.log, self.seg)
    }
}

impl SegmentId {
    pub fn raw(self, seg_size: u32) -> RawSegmentName {
        let per_id = segments_per_xlog_id(seg_size);
        RawSegmentName {
            timeline: self.timeline.0,
            log: (self.segment.0 / per_id) as u32,
            seg: (self.segment.0 % per_id) as u32,
        }
    }

    /// The 24-hex-digit file name, as PostgreSQL writes it.
    pub fn file_name(self, seg_size: u32) -> String {
        self.raw(seg_size).to_string()
    }
}

/// What a file in a client's `wal/` folder is, judged by its name alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WalFileKind {
    /// A WAL segment; `partial` for the `.partial` a promoted server leaves.
    Segment {
        name: RawSegmentName,
        compressed: bool,
        partial: bool,
    },
    /// `<segment>.<offset>.backup`: written at the end of a base backup, holds its STOP location.
    BackupHistory {
        name: RawSegmentName,
        offset: u32,
        compressed: bool,
    },
    /// `<timeline>.history`: where each ancestor timeline was left.
    TimelineHistory {
        timeline: Timeline,
        compressed: bool,
    },
    /// A transfer still being written by archive_command (`.part`), with the final name it will get.
    InFlight {
        final_name: String,
    },
    Other,
}

impl WalFileKind {
    pub fn classify(file_name: &str) -> WalFileKind {
        if let Some(final_name) = file_name.strip_suffix(".part")
            && !final_name.is_empty()
        {
            // A unique part name (`NAME.12345.part`: the shell's pid in the
            // printed archive_command, a counter in the receiver) is still NAME's.
            let final_name = final_name
                .rsplit_once('.')
                .filter(|(stem, n)| {
                    !n.is_empty()
                        && n.bytes().all(|b| b.is_ascii_digit())
                        && !matches!(
                            WalFileKind::classify(stem),
                            WalFileKind::Other | WalFileKind::InFlight { .. }
                        )
                })
                .map_or(final_name, |(stem, _)| stem);
            return WalFileKind::InFlight {
                final_name: final_name.to_owned(),
            };
        }
        let (stem, compressed) = match file_name.strip_suffix(".gz") {
            Some(stem) => (stem, true),
            None => (file_name, false),
        };
        if let Some(name) = RawSegmentName::parse(stem) {
            return WalFileKind::Segment {
                name,
                compressed,
                partial: false,
            };
        }
        if let Some(name) = stem
            .strip_suffix(".partial")
            .and_then(RawSegmentName::parse)
        {
            return WalFileKind::Segment {
                name,
                compressed,
                partial: true,
            };
        }
        if let Some(rest) = stem.strip_suffix(".backup")
            && let Some((seg, offset)) = rest.split_once('.')
        {
            let offset_ok = offset.len() == 8 && offset.bytes().all(|b| b.is_ascii_hexdigit());
            if let (Some(name), true) = (RawSegmentName::parse(seg), offset_ok) {
                let offset = u32::from_str_radix(offset, 16).unwrap_or(0);
                return WalFileKind::BackupHistory {
                    name,
                    offset,
                    compressed,
                };
            }
        }
        if let Some(tli) = stem.strip_suffix(".history")
            && tli.len() == 8
            && tli.bytes().all(|b| b.is_ascii_hexdigit())
            && let Ok(tli) = u32::from_str_radix(tli, 16)
        {
            return WalFileKind::TimelineHistory {
                timeline: Timeline(tli),
                compressed,
            };
        }
        WalFileKind::Other
    }
}

/// One line of a timeline history file: this timeline's ancestor `parent`
/// was left at `switch_point`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryEntry {
    pub parent: Timeline,
    pub switch_point: Lsn,
    pub reason: String,
}

/// Parses `NNNNNNNN.history`: tab-separated `parent  switch-LSN  reason`,
/// blank lines and `#` comments ignored (PostgreSQL copies the parent's lines
/// and adds an empty line before its own).
pub fn parse_timeline_history(text: &str) -> Result<Vec<HistoryEntry>, WalError> {
    let mut entries = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let bad = |reason: &str| WalError::BadHistory {
            line: index + 1,
            reason: reason.to_owned(),
        };
        let mut fields = line.split_whitespace();
        let parent = fields
            .next()
            .and_then(|f| f.parse::<u32>().ok())
            .ok_or_else(|| bad("parent timeline is not a number"))?;
        let switch_point = fields
            .next()
            .and_then(Lsn::parse)
            .ok_or_else(|| bad("switch point is not an LSN such as 0/16000000"))?;
        let reason = fields.collect::<Vec<_>>().join(" ");
        entries.push(HistoryEntry {
            parent: Timeline(parent),
            switch_point,
            reason,
        });
    }
    Ok(entries)
}

/// `XLogLongPageHeaderData`, little-endian, at the start of every segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct LongPageHeader {
    pub magic: u16,
    pub info: u16,
    pub timeline: u32,
    pub page_addr: u64,
    pub rem_len: u32,
    pub system_identifier: u64,
    pub seg_size: u32,
    pub xlog_blcksz: u32,
}

impl LongPageHeader {
    pub fn parse(bytes: &[u8]) -> Result<LongPageHeader, WalError> {
        if bytes.len() < LONG_HEADER_LEN {
            return Err(WalError::HeaderTooShort(bytes.len()));
        }
        let u16_at = |o: usize| u16::from_le_bytes([bytes[o], bytes[o + 1]]);
        let u32_at = |o: usize| u32::from_le_bytes(bytes[o..o + 4].try_into().unwrap_or([0; 4]));
        let u64_at = |o: usize| u64::from_le_bytes(bytes[o..o + 8].try_into().unwrap_or([0; 8]));
        let header = LongPageHeader {
            magic: u16_at(0),
            info: u16_at(2),
            timeline: u32_at(4),
            page_addr: u64_at(8),
            rem_len: u32_at(16),
            system_identifier: u64_at(24),
            seg_size: u32_at(32),
            xlog_blcksz: u32_at(36),
        };
        if header.info & XLP_LONG_HEADER == 0 {
            return Err(WalError::NotLongHeader(header.info));
        }
        if major_version_for_magic(header.magic).is_none() {
            return Err(WalError::UnknownMagic(header.magic));
        }
        validate_seg_size(header.seg_size)?;
        Ok(header)
    }

    pub fn major_version(&self) -> Option<u32> {
        major_version_for_magic(self.magic)
    }

    /// The segment this header claims to start: derived from the page address and timeline.
    pub fn segment_id(&self) -> SegmentId {
        SegmentId {
            timeline: Timeline(self.timeline),
            segment: Lsn(self.page_addr).segment(self.seg_size),
        }
    }
}

/// `XLOG_PAGE_MAGIC` per major version (each version's `access/xlog_internal.h`).
const PAGE_MAGIC: [(u32, u16); 9] = [
    (10, 0xD097),
    (11, 0xD098),
    (12, 0xD101),
    (13, 0xD106),
    (14, 0xD10D),
    (15, 0xD110),
    (16, 0xD113),
    (17, 0xD116),
    (18, 0xD118),
];

pub fn major_version_for_magic(magic: u16) -> Option<u32> {
    PAGE_MAGIC
        .iter()
        .find(|(_, m)| *m == magic)
        .map(|(v, _)| *v)
}

pub fn magic_for_major_version(major: u32) -> Option<u16> {
    PAGE_MAGIC
        .iter()
        .find(|(v, _)| *v == major)
        .map(|(_, m)| *m)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SIZES: [u32; 4] = [1 << 20, 16 << 20, 64 << 20, 1 << 30];

    #[test]
    fn parses_the_names_an_archive_holds() {
        let seg = RawSegmentName {
            timeline: 1,
            log: 0,
            seg: 7,
        };
        assert_eq!(
            WalFileKind::classify("000000010000000000000007.gz"),
            WalFileKind::Segment {
                name: seg,
                compressed: true,
                partial: false
            }
        );
        assert_eq!(
            WalFileKind::classify("000000010000000000000007"),
            WalFileKind::Segment {
                name: seg,
                compressed: false,
                partial: false
            }
        );
        assert_eq!(
            WalFileKind::classify("000000010000000000000007.partial.gz"),
            WalFileKind::Segment {
                name: seg,
                compressed: true,
                partial: true
            }
        );
        assert_eq!(
            WalFileKind::classify("000000010000000000000007.00000028.backup.gz"),
            WalFileKind::BackupHistory {
                name: seg,
                offset: 0x28,
                compressed: true
            }
        );
        assert_eq!(
            WalFileKind::classify("00000002.history.gz"),
            WalFileKind::TimelineHistory {
                timeline: Timeline(2),
                compressed: true
            }
        );
        assert_eq!(
            WalFileKind::classify("000000010000000000000004.gz.part"),
            WalFileKind::InFlight {
                final_name: "000000010000000000000004.gz".into()
            }
        );
        for other in [
            "test.txt",
            "",
            ".part",
            "00000001000000000000000G",
            "0000000100000000000000071",
            "2.history",
        ] {
            assert_eq!(WalFileKind::classify(other), WalFileKind::Other, "{other}");
        }
    }

    #[test]
    fn segment_numbers_wrap_at_the_log_boundary() {
        let raw = RawSegmentName {
            timeline: 1,
            log: 0,
            seg: 0xFF,
        };
        let id = raw.resolve(16 << 20).unwrap();
        assert_eq!(id.segment.next().0, 0x100);
        let next = SegmentId {
            segment: id.segment.next(),
            ..id
        };
        assert_eq!(next.file_name(16 << 20), "000000010000000100000000");
        // With 1 GiB segments a log holds only 4 segments.
        let big = RawSegmentName {
            timeline: 3,
            log: 2,
            seg: 3,
        }
        .resolve(1 << 30)
        .unwrap();
        assert_eq!(big.segment, SegmentNo(11));
        assert_eq!(
            SegmentId {
                segment: SegmentNo(12),
                ..big
            }
            .file_name(1 << 30),
            "000000030000000300000000"
        );
        assert!(
            RawSegmentName {
                timeline: 1,
                log: 0,
                seg: 4
            }
            .resolve(1 << 30)
            .is_err()
        );
    }

    #[test]
    fn reads_the_pg15_header_from_the_facts_file() {
        let bytes: [u8; 40] = [
            0x10, 0xd1, 0x02, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x07, 0x00, 0x00,
            0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xb9, 0x1f, 0x23, 0x85,
            0xa9, 0xdc, 0x06, 0x6b, 0x00, 0x00, 0x00, 0x01, 0x00, 0x20, 0x00, 0x00,
        ];
        let header = LongPageHeader::parse(&bytes).unwrap();
        assert_eq!(header.major_version(), Some(15));
        assert_eq!(header.system_identifier, 7712094032559808441);
        assert_eq!(header.seg_size, 16 << 20);
        assert_eq!(header.xlog_blcksz, 8192);
        assert_eq!(
            header.segment_id().file_name(header.seg_size),
            "000000010000000000000007"
        );
        assert_eq!(
            LongPageHeader::parse(&bytes[..20]),
            Err(WalError::HeaderTooShort(20))
        );
        let mut short_header = bytes;
        short_header[2] = 0x01;
        assert_eq!(
            LongPageHeader::parse(&short_header),
            Err(WalError::NotLongHeader(1))
        );
    }

    #[test]
    fn parses_history_files_with_blank_lines() {
        let text = "1\t0/16000000\tno recovery target specified\n\n2\t0/12B0F130\tbefore 2026-11-25 13:09:59.293641+00\n";
        let entries = parse_timeline_history(text).unwrap();
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[1].parent, Timeline(2));
        assert_eq!(entries[1].switch_point, Lsn(0x12B0F130));
        assert_eq!(entries[1].switch_point.to_string(), "0/12B0F130");
        assert!(parse_timeline_history("x\t0/1\n").is_err());
        assert!(parse_timeline_history("1\tnot-an-lsn\n").is_err());
    }

    #[test]
    fn a_unique_part_name_is_still_its_files() {
        for (part, final_name) in [
            (
                "000000010000000000000007.gz.12345.part",
                "000000010000000000000007.gz",
            ),
            (
                "000000010000000000000007.3.part",
                "000000010000000000000007",
            ),
            ("00000002.history.gz.77.part", "00000002.history.gz"),
            (
                "000000010000000000000007.gz.part",
                "000000010000000000000007.gz",
            ),
            ("notes.1.part", "notes.1"),
        ] {
            assert_eq!(
                WalFileKind::classify(part),
                WalFileKind::InFlight {
                    final_name: final_name.to_owned()
                },
                "{part}"
            );
        }
    }

    proptest! {
        #[test]
        fn segment_names_round_trip(tli in 1u32..=u32::MAX, segno in 0u64..(1u64 << 40), size_index in 0usize..4) {
            let seg_size = SIZES[size_index];
            let max = (u32::MAX as u64 + 1) * segments_per_xlog_id(seg_size);
            let id = SegmentId { timeline: Timeline(tli), segment: SegmentNo(segno % max) };
            let name = id.file_name(seg_size);
            let raw = RawSegmentName::parse(&name).unwrap();
            prop_assert_eq!(raw.resolve(seg_size).unwrap(), id);
            prop_assert_eq!(WalFileKind::classify(&format!("{name}.gz")), WalFileKind::Segment { name: raw, compressed: true, partial: false });
        }

        #[test]
        fn next_and_prev_are_inverse(segno in 1u64..u64::MAX, size_index in 0usize..4) {
            let seg_size = SIZES[size_index];
            let s = SegmentNo(segno);
            prop_assert_eq!(s.prev().unwrap().next(), s);
            // The name of next() is the lexical successor within a timeline.
            let per_id = segments_per_xlog_id(seg_size);
            let a = SegmentId { timeline: Timeline(1), segment: SegmentNo(segno % (per_id * 0xFFFF)) };
            let b = SegmentId { segment: a.segment.next(), ..a };
            prop_assert!(a.file_name(seg_size) < b.file_name(seg_size));
        }

        #[test]
        fn classify_keeps_what_it_parses(name in "[0-9A-Fa-f.a-z]{0,40}") {
            match WalFileKind::classify(&name) {
                WalFileKind::Segment { name: raw, .. } | WalFileKind::BackupHistory { name: raw, .. } => {
                    prop_assert!(name.to_ascii_uppercase().starts_with(&raw.to_string()));
                }
                WalFileKind::InFlight { final_name } => prop_assert!(
                    name.starts_with(&final_name) && name.ends_with(".part"),
                    "{} -> {}", name, final_name
                ),
                WalFileKind::TimelineHistory { timeline, .. } => {
                    let expected = format!("{:08X}.HISTORY", timeline.0);
                    prop_assert!(name.to_ascii_uppercase().starts_with(&expected));
                }
                WalFileKind::Other => {}
            }
        }

        #[test]
        fn page_header_parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            if let Ok(header) = LongPageHeader::parse(&bytes) {
                // What a parsed header offers is total too.
                let _ = header.segment_id().file_name(header.seg_size);
                let _ = header.major_version();
            }
        }

        #[test]
        fn page_header_parse_never_panics_near_a_valid_one(at in 0usize..40, byte in any::<u8>(), len in 0usize..=40) {
            let mut bytes = [0u8; 40];
            bytes[0..2].copy_from_slice(&0xD110u16.to_le_bytes());
            bytes[2..4].copy_from_slice(&0x0006u16.to_le_bytes());
            bytes[4..8].copy_from_slice(&1u32.to_le_bytes());
            bytes[8..16].copy_from_slice(&0x0700_0000u64.to_le_bytes());
            bytes[32..36].copy_from_slice(&(16u32 << 20).to_le_bytes());
            bytes[36..40].copy_from_slice(&8192u32.to_le_bytes());
            bytes[at] = byte;
            if let Ok(header) = LongPageHeader::parse(&bytes[..len]) {
                let _ = header.segment_id().file_name(header.seg_size);
            }
        }

        #[test]
        fn history_and_lsn_parsers_never_panic(text in "\\PC{0,200}") {
            let _ = parse_timeline_history(&text);
            let _ = Lsn::parse(&text);
            let _ = RawSegmentName::parse(&text);
        }

        #[test]
        fn lsn_display_parses_back(value in any::<u64>()) {
            prop_assert_eq!(Lsn::parse(&Lsn(value).to_string()), Some(Lsn(value)));
        }
    }
}
