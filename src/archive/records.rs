//! The records inside one WAL segment, read just far enough to say where
//! its WAL ends and when the last transaction in it ended.
//!
//! That time is the real recovery point of a restore "to the end": a
//! `recovery_target_time` past it makes PostgreSQL 13+ stop with `recovery
//! ended before configured recovery target was reached`, and a file's mtime
//! is always later than it. Records are followed by their lengths from the
//! first one that starts in the segment, each page header checked on the way
//! (magic, page address, continuation flag) and each record's `xl_prev`
//! against the one before, so the zeroed or recycled tail of a segment ends
//! the walk instead of being read as records. Only commit and abort records
//! of the transaction resource manager are decoded (their main data starts
//! with the transaction's end time), and those never carry block references,
//! so no version-specific block header needs parsing. Pure: works on bytes.

use std::time::{Duration, SystemTime};

use crate::archive::wal::{LONG_HEADER_LEN, LongPageHeader, Lsn, WalError};

/// `SizeOfXLogShortPHD`, MAXALIGN'ed.
const SHORT_HEADER_LEN: usize = 24;
/// `SizeOfXLogRecord`.
const RECORD_HEADER_LEN: usize = 24;
const XLP_FIRST_IS_CONTRECORD: u16 = 0x0001;
const XLP_LONG_HEADER: u16 = 0x0002;
const RM_XLOG_ID: u8 = 0;
const RM_XACT_ID: u8 = 1;
const XLOG_SWITCH: u8 = 0x40;
const XLOG_XACT_OPMASK: u8 = 0x70;
const XLOG_XACT_COMMIT: u8 = 0x00;
const XLOG_XACT_ABORT: u8 = 0x20;
const XLOG_XACT_COMMIT_PREPARED: u8 = 0x30;
const XLOG_XACT_ABORT_PREPARED: u8 = 0x40;
const XLR_BLOCK_ID_DATA_SHORT: u8 = 255;
const XLR_BLOCK_ID_DATA_LONG: u8 = 254;
const XLR_BLOCK_ID_ORIGIN: u8 = 253;
const XLR_BLOCK_ID_TOPLEVEL_XID: u8 = 252;
/// 2000-01-01 00:00:00 UTC, PostgreSQL's timestamp epoch, in Unix seconds.
const PG_EPOCH_UNIX_SECS: u64 = 946_684_800;

/// A transaction's end as its commit or abort record says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TransactionEnd {
    /// Where the record starts.
    pub lsn: Lsn,
    pub time: SystemTime,
    pub committed: bool,
}

/// What walking a segment's records found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentRecords {
    pub records: u64,
    /// End of the last complete record that starts in the segment.
    pub end_of_wal: Option<Lsn>,
    /// The last commit or abort (prepared ones included, as recovery targets count them).
    pub last_transaction: Option<TransactionEnd>,
    /// The segment ends in an `XLOG_SWITCH`: nothing more was written to it.
    pub switched: bool,
}

/// Walks the records of one whole segment (`bytes` starts with its long page header).
pub fn scan_segment(bytes: &[u8]) -> Result<SegmentRecords, WalError> {
    let header = LongPageHeader::parse(bytes)?;
    let page_size = header.xlog_blcksz as usize;
    if !page_size.is_power_of_two() || !(1024..=65536).contains(&page_size) {
        return Err(WalError::BadPageSize(header.xlog_blcksz));
    }
    let len = bytes.len().min(header.seg_size as usize);
    let reader = PageReader {
        bytes: &bytes[..len],
        page_size,
        magic: header.magic,
        segment_start: header.page_addr,
    };
    let mut found = SegmentRecords {
        records: 0,
        end_of_wal: None,
        last_transaction: None,
        switched: false,
    };
    // Skip the tail of a record that began in the previous segment.
    let mut pos = LONG_HEADER_LEN;
    if header.info & XLP_FIRST_IS_CONTRECORD != 0 {
        match reader.read(pos, header.rem_len as usize, None) {
            Some((_, next)) => pos = next,
            None => return Ok(found),
        }
    }
    let mut prev: Option<u64> = None;
    loop {
        pos = maxalign(pos);
        if pos.is_multiple_of(page_size) {
            // A record starts right after the next page's header.
            match reader.page_header(pos, false) {
                Some(header_len) => pos += header_len,
                None => break,
            }
        }
        if pos + 4 > len {
            break;
        }
        let total = u32::from_le_bytes(bytes[pos..pos + 4].try_into().unwrap_or([0; 4])) as usize;
        if total < RECORD_HEADER_LEN {
            break;
        }
        let start_lsn = header.page_addr + pos as u64;
        let Some((record, next)) = reader.read(pos, total, Some(total)) else {
            break;
        };
        let xl_prev = u64::from_le_bytes(record[8..16].try_into().unwrap_or([0; 8]));
        if prev.is_some_and(|p| p != xl_prev) {
            break;
        }
        let info = record[16];
        let rmid = record[17];
        found.records += 1;
        found.end_of_wal = Some(Lsn(header.page_addr + next as u64));
        if rmid == RM_XACT_ID
            && let Some(end) = transaction_end(&record, info, Lsn(start_lsn))
        {
            found.last_transaction = Some(end);
        }
        if rmid == RM_XLOG_ID && info & 0xF0 == XLOG_SWITCH {
            found.switched = true;
            break;
        }
        prev = Some(start_lsn);
        pos = next;
    }
    Ok(found)
}

/// The end time of a commit or abort record: the first field of its main data.
fn transaction_end(record: &[u8], info: u8, lsn: Lsn) -> Option<TransactionEnd> {
    let committed = match info & XLOG_XACT_OPMASK {
        XLOG_XACT_COMMIT | XLOG_XACT_COMMIT_PREPARED => true,
        XLOG_XACT_ABORT | XLOG_XACT_ABORT_PREPARED => false,
        _ => return None,
    };
    let mut at = RECORD_HEADER_LEN;
    let main_len = loop {
        match *record.get(at)? {
            XLR_BLOCK_ID_DATA_SHORT => break *record.get(at + 1)? as usize,
            XLR_BLOCK_ID_DATA_LONG => {
                break u32::from_le_bytes(record.get(at + 1..at + 5)?.try_into().ok()?) as usize;
            }
            XLR_BLOCK_ID_ORIGIN => at += 3,
            XLR_BLOCK_ID_TOPLEVEL_XID => at += 5,
            // Block references never come with a transaction's end.
            _ => return None,
        }
    };
    let main = record.get(record.len().checked_sub(main_len)?..)?;
    let micros = i64::from_le_bytes(main.get(..8)?.try_into().ok()?);
    let epoch = SystemTime::UNIX_EPOCH + Duration::from_secs(PG_EPOCH_UNIX_SECS);
    let time = if micros >= 0 {
        epoch.checked_add(Duration::from_micros(micros as u64))?
    } else {
        epoch.checked_sub(Duration::from_micros(micros.unsigned_abs()))?
    };
    Some(TransactionEnd {
        lsn,
        time,
        committed,
    })
}

fn maxalign(pos: usize) -> usize {
    (pos + 7) & !7
}

/// Reads the byte stream of records across the pages of one segment.
struct PageReader<'a> {
    bytes: &'a [u8],
    page_size: usize,
    magic: u16,
    segment_start: u64,
}

impl PageReader<'_> {
    /// The length of the header of the page starting at `pos`, if it is one
    /// of this segment's pages whose continuation flag says `continued`.
    fn page_header(&self, pos: usize, continued: bool) -> Option<usize> {
        let page = self.bytes.get(pos..pos + SHORT_HEADER_LEN)?;
        let magic = u16::from_le_bytes([page[0], page[1]]);
        let info = u16::from_le_bytes([page[2], page[3]]);
        let addr = u64::from_le_bytes(page[8..16].try_into().ok()?);
        if magic != self.magic
            || addr != self.segment_start + pos as u64
            || (info & XLP_FIRST_IS_CONTRECORD != 0) != continued
        {
            return None;
        }
        Some(if info & XLP_LONG_HEADER != 0 {
            LONG_HEADER_LEN
        } else {
            SHORT_HEADER_LEN
        })
    }

    /// `count` bytes of record from `pos`, skipping the headers of the pages
    /// it continues on; the bytes (when `keep` asks for them) and the
    /// position after them. `None` when the segment ends first or a page is
    /// not a continuation.
    fn read(&self, mut pos: usize, count: usize, keep: Option<usize>) -> Option<(Vec<u8>, usize)> {
        let mut out = Vec::with_capacity(keep.unwrap_or(0).min(self.bytes.len()));
        let mut left = count;
        while left > 0 {
            if pos.is_multiple_of(self.page_size) {
                pos += self.page_header(pos, true)?;
            }
            let page_end = (pos / self.page_size + 1) * self.page_size;
            let take = left.min(page_end - pos);
            let chunk = self.bytes.get(pos..pos + take)?;
            if keep.is_some() {
                out.extend_from_slice(chunk);
            }
            pos += take;
            left -= take;
        }
        Some((out, pos))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A synthetic segment: long header then the given records laid out as PostgreSQL does.
    fn segment(records: &[Vec<u8>], page_size: usize, pages: usize) -> Vec<u8> {
        let mut bytes = vec![0u8; page_size * pages];
        let start = 0x0700_0000u64;
        let put_header = |bytes: &mut Vec<u8>, page: usize, continued: bool| {
            let at = page * page_size;
            let long = page == 0;
            let mut info = if long { XLP_LONG_HEADER } else { 0 };
            if continued {
                info |= XLP_FIRST_IS_CONTRECORD;
            }
            bytes[at..at + 2].copy_from_slice(&0xD110u16.to_le_bytes());
            bytes[at + 2..at + 4].copy_from_slice(&info.to_le_bytes());
            bytes[at + 4..at + 8].copy_from_slice(&1u32.to_le_bytes());
            bytes[at + 8..at + 16].copy_from_slice(&(start + at as u64).to_le_bytes());
            if long {
                bytes[at + 24..at + 32].copy_from_slice(&42u64.to_le_bytes());
                bytes[at + 32..at + 36].copy_from_slice(&(1u32 << 20).to_le_bytes());
                bytes[at + 36..at + 40].copy_from_slice(&(page_size as u32).to_le_bytes());
            }
            if long {
                LONG_HEADER_LEN
            } else {
                SHORT_HEADER_LEN
            }
        };
        let mut pos = put_header(&mut bytes, 0, false);
        let mut prev = 0u64;
        for record in records {
            pos = maxalign(pos);
            if pos.is_multiple_of(page_size) {
                pos += put_header(&mut bytes, pos / page_size, false);
            }
            let mut record = record.clone();
            record[8..16].copy_from_slice(&prev.to_le_bytes());
            prev = start + pos as u64;
            let mut rest = &record[..];
            while !rest.is_empty() {
                if pos.is_multiple_of(page_size) {
                    pos += put_header(&mut bytes, pos / page_size, true);
                }
                let page_end = (pos / page_size + 1) * page_size;
                let take = rest.len().min(page_end - pos);
                bytes[pos..pos + take].copy_from_slice(&rest[..take]);
                pos += take;
                rest = &rest[take..];
            }
        }
        for page in 1..pages {
            if bytes[page * page_size..page * page_size + 2] == [0, 0] {
                put_header(&mut bytes, page, false);
            }
        }
        bytes
    }

    fn record(rmid: u8, info: u8, main: &[u8], padding: usize) -> Vec<u8> {
        let mut body = vec![0u8; padding];
        if main.len() < 256 {
            body.push(XLR_BLOCK_ID_DATA_SHORT);
            body.push(main.len() as u8);
        } else {
            body.push(XLR_BLOCK_ID_DATA_LONG);
            body.extend_from_slice(&(main.len() as u32).to_le_bytes());
        }
        body.extend_from_slice(main);
        let total = RECORD_HEADER_LEN + body.len();
        let mut record = vec![0u8; RECORD_HEADER_LEN];
        record[0..4].copy_from_slice(&(total as u32).to_le_bytes());
        record[16] = info;
        record[17] = rmid;
        record.extend_from_slice(&body);
        record
    }

    fn commit(micros: i64) -> Vec<u8> {
        let mut main = micros.to_le_bytes().to_vec();
        main.extend_from_slice(&[0; 8]);
        record(RM_XACT_ID, XLOG_XACT_COMMIT, &main, 0)
    }

    #[test]
    fn finds_the_last_commit_across_page_boundaries() {
        let filler = record(10, 0, &[7u8; 600], 0);
        let mut records: Vec<Vec<u8>> = (0..30).map(|_| filler.clone()).collect();
        records.push(commit(1_000_000));
        records.extend((0..5).map(|_| filler.clone()));
        records.push(commit(86_400 * 1_000_000));
        records.push(record(RM_XACT_ID, XLOG_XACT_ABORT, &2i64.to_le_bytes(), 0));
        records.push(filler.clone());
        let bytes = segment(&records, 8192, 8);
        let found = scan_segment(&bytes).unwrap();
        assert_eq!(found.records, records.len() as u64);
        let last = found.last_transaction.unwrap();
        assert!(!last.committed);
        // The abort before the filler is the last transaction's end.
        assert_eq!(
            last.time,
            SystemTime::UNIX_EPOCH
                + Duration::from_secs(PG_EPOCH_UNIX_SECS)
                + Duration::from_micros(2)
        );
        assert!(!found.switched);
    }

    #[test]
    fn a_switch_ends_the_walk_and_a_bad_prev_link_stops_it() {
        let records = vec![
            commit(5),
            record(RM_XLOG_ID, XLOG_SWITCH, &[], 0),
            commit(99),
        ];
        let found = scan_segment(&segment(&records, 8192, 2)).unwrap();
        assert!(found.switched);
        assert_eq!(found.records, 2);
        let mut bytes = segment(&[commit(5), commit(6), commit(7)], 8192, 2);
        // Break the third record's link to the second: the walk ends after two.
        let third = maxalign(LONG_HEADER_LEN + 2 * maxalign(commit(0).len()));
        bytes[third + 8] ^= 0xFF;
        let found = scan_segment(&bytes).unwrap();
        assert_eq!(found.records, 2);
        assert_eq!(
            found.last_transaction.unwrap().time,
            SystemTime::UNIX_EPOCH
                + Duration::from_secs(PG_EPOCH_UNIX_SECS)
                + Duration::from_micros(6)
        );
    }

    #[test]
    fn garbage_never_panics() {
        let mut bytes = segment(&[commit(5)], 8192, 2);
        for i in (LONG_HEADER_LEN..bytes.len()).step_by(97) {
            bytes[i] = bytes[i].wrapping_mul(31).wrapping_add(i as u8);
            let _ = scan_segment(&bytes);
            let _ = scan_segment(&bytes[..i]);
        }
    }
}
