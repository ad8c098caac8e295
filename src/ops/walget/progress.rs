//! The request log and what is read from it: one JSON line per request
//! PostgreSQL made of the helper (what, answered how, how many bytes, how
//! long, the helper's CPU and memory), plus a line when a prefetcher starts
//! and stops. The prefetcher follows it to know where replay is; a restore
//! or a wizard reads it for the replay's progress against the line's end
//! ([`progress`]) and, afterwards, for the replay's totals ([`summarize`]).
//! Pure apart from [`append`], [`read`] and [`Tail`].

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::plan::WalGetPlan;
use crate::archive::wal::RawSegmentName;

/// How a request was answered, or a prefetcher event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RequestOutcome {
    /// Handed over from the spool (prefetched).
    Spool,
    /// Handed over, fetched directly from the archive.
    Archive,
    /// Not in the archive: the normal end of the archive, or a `.history` probe.
    NotFound,
    /// Not in the archive although the line goes on past it.
    Gap,
    /// In the archive but refused (foreign, damaged, misnamed, unreadable).
    Refused,
    /// The helper could not serve it (its plan, a write).
    Failed,
    PrefetchStart,
    PrefetchStop,
}

impl RequestOutcome {
    pub fn handed(self) -> bool {
        matches!(self, RequestOutcome::Spool | RequestOutcome::Archive)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestRecord {
    /// Milliseconds since 1970, when the answer was given.
    pub at_ms: u64,
    /// The file asked for (`%f`); empty for prefetcher events.
    #[serde(default)]
    pub file: String,
    pub outcome: RequestOutcome,
    #[serde(default)]
    pub bytes: u64,
    /// How long the answer took, in microseconds.
    #[serde(default)]
    pub took_us: u64,
    /// The diagnosis code of a refusal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// The reason of a refusal, or why a prefetcher stopped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// CPU (user + system) the process used, in microseconds.
    #[serde(default)]
    pub cpu_us: u64,
    /// Its peak resident memory, in KiB.
    #[serde(default)]
    pub max_rss_kb: u64,
    #[serde(default)]
    pub pid: u32,
}

impl RequestRecord {
    pub fn new(file: &str, outcome: RequestOutcome) -> RequestRecord {
        RequestRecord {
            at_ms: unix_ms(SystemTime::now()),
            file: file.to_owned(),
            outcome,
            bytes: 0,
            took_us: 0,
            code: None,
            detail: None,
            cpu_us: 0,
            max_rss_kb: 0,
            pid: std::process::id(),
        }
    }

    /// Stamps this process's CPU time and peak memory so far.
    pub fn with_usage(mut self) -> RequestRecord {
        use nix::sys::resource::{UsageWho, getrusage};
        if let Ok(usage) = getrusage(UsageWho::RUSAGE_SELF) {
            let micros = |t: nix::sys::time::TimeVal| {
                (t.tv_sec().max(0) as u64) * 1_000_000 + t.tv_usec().max(0) as u64
            };
            self.cpu_us = micros(usage.user_time()) + micros(usage.system_time());
            // Linux reports ru_maxrss in KiB.
            self.max_rss_kb = usage.max_rss().max(0) as u64;
        }
        self
    }
}

pub fn unix_ms(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Appends one record as one `write` (O_APPEND: lines of concurrent writers never interleave).
pub fn append(path: &Path, record: &RequestRecord) -> io::Result<()> {
    let mut line = serde_json::to_vec(record).map_err(io::Error::other)?;
    line.push(b'\n');
    OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .open(path)?
        .write_all(&line)
}

/// Every record of the log; lines that do not parse are skipped.
pub fn read(path: &Path) -> io::Result<Vec<RequestRecord>> {
    let mut text = String::new();
    File::open(path)?.read_to_string(&mut text)?;
    Ok(parse_lines(&text))
}

fn parse_lines(text: &str) -> Vec<RequestRecord> {
    text.lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// Follows the log: each call returns the records appended since the last.
#[derive(Debug)]
pub struct Tail {
    path: PathBuf,
    offset: u64,
}

impl Tail {
    pub fn new(path: &Path) -> Tail {
        Tail {
            path: path.to_owned(),
            offset: 0,
        }
    }

    pub fn new_records(&mut self) -> Vec<RequestRecord> {
        let Ok(mut file) = File::open(&self.path) else {
            return Vec::new();
        };
        let len = file.metadata().map_or(0, |m| m.len());
        if len < self.offset {
            // Truncated (a new plan was written): start over.
            self.offset = 0;
        }
        if len == self.offset || file.seek(SeekFrom::Start(self.offset)).is_err() {
            return Vec::new();
        }
        let mut bytes = Vec::new();
        if file.read_to_end(&mut bytes).is_err() {
            return Vec::new();
        }
        // Only whole lines: a line being written is read next time.
        let whole = bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
        self.offset += whole as u64;
        parse_lines(&String::from_utf8_lossy(&bytes[..whole]))
    }
}

/// The replay's totals, from the request log.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ReplayStats {
    /// Segments handed over (a segment asked twice counts twice).
    pub segments: u64,
    pub from_spool: u64,
    pub from_archive: u64,
    pub wal_bytes: u64,
    pub first_request_ms: Option<u64>,
    pub last_handed_ms: Option<u64>,
    /// The furthest segment handed over.
    pub last_segment: Option<String>,
    /// `(file, code)` of every refusal.
    pub refused: Vec<(String, String)>,
    pub gaps: Vec<String>,
    /// Time PostgreSQL spent inside the helper's answers (waiting for a
    /// segment the prefetcher was writing, or fetching it), in microseconds;
    /// process start-up not included.
    pub answer_us: u64,
    /// CPU of every helper process and prefetcher, in microseconds.
    pub helper_cpu_us: u64,
    /// The largest peak memory of any of them, in KiB.
    pub helper_max_rss_kb: u64,
    /// Why each prefetcher stopped.
    pub prefetcher_stops: Vec<String>,
}

impl ReplayStats {
    /// From the first request to the last segment handed over.
    pub fn replay_secs(&self) -> Option<f64> {
        Some(self.last_handed_ms?.saturating_sub(self.first_request_ms?) as f64 / 1000.0)
    }

    /// WAL handed over per second of replay, in MB (10^6 bytes).
    pub fn mb_per_s(&self) -> Option<f64> {
        let secs = self.replay_secs().filter(|s| *s > 0.0)?;
        Some(self.wal_bytes as f64 / 1e6 / secs)
    }
}

pub fn summarize(records: &[RequestRecord]) -> ReplayStats {
    let mut stats = ReplayStats::default();
    let mut furthest: Option<RawSegmentName> = None;
    for record in records {
        match record.outcome {
            RequestOutcome::PrefetchStart => {}
            RequestOutcome::PrefetchStop => {
                stats
                    .prefetcher_stops
                    .push(record.detail.clone().unwrap_or_default());
            }
            _ => {
                stats.first_request_ms.get_or_insert(record.at_ms);
                stats.answer_us += record.took_us;
            }
        }
        // A prefetcher's stop record carries its whole life's usage; a
        // request's, the helper process's.
        stats.helper_cpu_us += record.cpu_us;
        stats.helper_max_rss_kb = stats.helper_max_rss_kb.max(record.max_rss_kb);
        let segment = RawSegmentName::parse(&record.file);
        match record.outcome {
            outcome if outcome.handed() => {
                if let Some(name) = segment {
                    stats.segments += 1;
                    stats.wal_bytes += record.bytes;
                    stats.last_handed_ms = Some(record.at_ms);
                    if outcome == RequestOutcome::Spool {
                        stats.from_spool += 1;
                    } else {
                        stats.from_archive += 1;
                    }
                    if furthest.is_none_or(|f| (name.log, name.seg) > (f.log, f.seg)) {
                        furthest = Some(name);
                    }
                }
            }
            RequestOutcome::Refused | RequestOutcome::Failed => stats
                .refused
                .push((record.file.clone(), record.code.clone().unwrap_or_default())),
            RequestOutcome::Gap => stats.gaps.push(record.file.clone()),
            _ => {}
        }
    }
    stats.last_segment = furthest.map(|f| f.to_string());
    stats
}

/// Where replay is against the line's end, for a wizard's gauge.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReplayProgress {
    /// Segments of the line up to the furthest one handed over.
    pub replayed: u64,
    /// Segments of the line from the base backup's start to `line_end`.
    pub total: Option<u64>,
    /// The furthest segment handed over.
    pub position: Option<String>,
    /// The segment progress is measured to: the line's end, or the one a
    /// recovery target is expected to stop the replay in (`to_target`).
    pub line_end: Option<String>,
    pub to_target: bool,
    pub mb_per_s: Option<f64>,
    /// At the rate so far, the time left to the line's end.
    pub eta: Option<Duration>,
    /// Since the first request.
    pub elapsed: Duration,
}

impl ReplayProgress {
    /// 0.0 to 1.0 when the line's length is known.
    pub fn fraction(&self) -> Option<f64> {
        let total = self.total.filter(|t| *t > 0)?;
        Some((self.replayed as f64 / total as f64).min(1.0))
    }

    /// One line for people: `segment 57 of 130, 181 MB/s, about 12 s left`.
    pub fn text(&self) -> String {
        let mut text = match (self.total, &self.position) {
            (_, None) => "waiting for the first segment".to_owned(),
            (Some(total), Some(at)) if self.to_target => format!(
                "segment {} of about {total} to the target ({at})",
                self.replayed
            ),
            (Some(total), Some(at)) => format!("segment {} of {total} ({at})", self.replayed),
            (None, Some(at)) => format!("segment {} ({at})", self.replayed),
        };
        if let Some(rate) = self.mb_per_s {
            text.push_str(&format!(", {rate:.0} MB/s"));
        }
        if let Some(eta) = self.eta {
            text.push_str(&format!(", about {} s left", eta.as_secs().max(1)));
        }
        text
    }
}

/// Follows a restore's replay progress tick by tick: the plan read once,
/// and only the request log's new lines parsed each time (a long replay's
/// log grows by a line per segment; re-reading it whole every second would
/// cost the restore more the further it gets).
#[derive(Debug)]
pub struct ProgressFollower {
    plan: WalGetPlan,
    tail: Tail,
    records: Vec<RequestRecord>,
}

impl ProgressFollower {
    pub fn open(plan_path: &Path) -> Result<ProgressFollower, super::WalGetError> {
        let plan = WalGetPlan::load(plan_path)?;
        let tail = Tail::new(&plan.request_log);
        Ok(ProgressFollower {
            plan,
            tail,
            records: Vec::new(),
        })
    }

    /// The progress at `now`, with what the log gained since the last call.
    pub fn poll(&mut self, now: SystemTime) -> ReplayProgress {
        self.records.extend(self.tail.new_records());
        progress(&self.plan, &self.records, now)
    }
}

/// The replay's progress from the plan and its request log, at `now`.
pub fn progress(plan: &WalGetPlan, records: &[RequestRecord], now: SystemTime) -> ReplayProgress {
    let stats = summarize(records);
    let first = plan.first();
    let position = stats.last_segment.as_deref().and_then(|n| plan.resolve(n));
    let (last, to_target) = plan.progress_end(position.map(|p| p.segment));
    let replayed = match (position, first) {
        (Some(p), Some(f)) => p.segment.0.saturating_sub(f.0) + 1,
        (Some(_), None) => stats.segments,
        (None, _) => 0,
    };
    let total = match (first, last) {
        (Some(f), Some(l)) if l >= f => Some(l.0 - f.0 + 1),
        _ => None,
    };
    // The rate between the first and the last hand-over: waiting for the
    // first request (the server starting) is not replay.
    let handed: Vec<&RequestRecord> = records
        .iter()
        .filter(|r| r.outcome.handed() && RawSegmentName::parse(&r.file).is_some())
        .collect();
    let rate = match (handed.first(), handed.last()) {
        (Some(a), Some(b)) if b.at_ms >= a.at_ms + 500 => {
            let bytes: u64 = handed[1..].iter().map(|r| r.bytes).sum();
            Some(bytes as f64 / ((b.at_ms - a.at_ms) as f64 / 1000.0))
        }
        _ => None,
    };
    let eta = match (rate, position, last) {
        (Some(rate), Some(p), Some(l)) if rate > 0.0 => {
            let left = l.0.saturating_sub(p.segment.0) * plan.segment_size as u64;
            Some(Duration::from_secs_f64(left as f64 / rate))
        }
        _ => None,
    };
    let elapsed = stats.first_request_ms.map_or(Duration::ZERO, |f| {
        Duration::from_millis(unix_ms(now).saturating_sub(f))
    });
    ReplayProgress {
        replayed,
        total,
        position: position.map(|p| plan.file_name(p)),
        line_end: last.map(|segno| plan.file_name(plan.expected(segno))),
        to_target,
        mb_per_s: rate.map(|r| r / 1e6),
        eta,
        elapsed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::walget::plan::tests::three_timelines;

    fn record(at_ms: u64, file: &str, outcome: RequestOutcome, bytes: u64) -> RequestRecord {
        RequestRecord {
            at_ms,
            bytes,
            ..RequestRecord::new(file, outcome)
        }
    }

    #[test]
    fn the_follower_reads_each_line_of_the_log_once_and_sees_it_grow() {
        let dir = tempfile::tempdir().unwrap();
        let plan = three_timelines(dir.path());
        let plan_path = dir.path().join("data.walwarden-wal-get.json");
        plan.write(&plan_path, None).unwrap();
        let mut follower = ProgressFollower::open(&plan_path).unwrap();
        let now = UNIX_EPOCH + Duration::from_millis(5_000);
        let before = follower.poll(now);
        assert_eq!((before.replayed, before.position), (0, None), "no log yet");
        let seg = u64::from(plan.segment_size);
        for (at, name) in [
            (1_000, "000000010000000000000003"),
            (1_100, "000000010000000000000004"),
        ] {
            append(
                &plan.request_log,
                &record(at, name, RequestOutcome::Spool, seg),
            )
            .unwrap();
        }
        assert_eq!(follower.poll(now).replayed, 2);
        assert_eq!(follower.poll(now).replayed, 2, "nothing read twice");
        append(
            &plan.request_log,
            &record(
                1_200,
                "000000010000000000000005",
                RequestOutcome::Spool,
                seg,
            ),
        )
        .unwrap();
        let after = follower.poll(now);
        assert_eq!(after.replayed, 3);
        assert_eq!(after.position.as_deref(), Some("000000010000000000000005"));
        assert_eq!(
            after,
            progress(&plan, &read(&plan.request_log).unwrap(), now)
        );
    }

    #[test]
    fn progress_counts_segments_of_the_line_and_estimates_the_rest() {
        let plan = three_timelines(Path::new("/srv"));
        let seg = plan.segment_size as u64;
        let mut records = vec![
            record(1_000, "00000002.history", RequestOutcome::Archive, 40),
            record(
                1_100,
                "000000010000000000000003",
                RequestOutcome::Archive,
                seg,
            ),
        ];
        // One segment every 100 ms from segment 4 to 9 (timeline 2 from 8).
        for (i, name) in [
            "000000010000000000000004",
            "000000010000000000000005",
            "000000010000000000000006",
            "000000010000000000000007",
            "000000020000000000000008",
            "000000020000000000000009",
        ]
        .iter()
        .enumerate()
        {
            records.push(record(
                1_200 + 100 * i as u64,
                name,
                RequestOutcome::Spool,
                seg,
            ));
        }
        let now = UNIX_EPOCH + Duration::from_millis(2_000);
        let p = progress(&plan, &records, now);
        assert_eq!(p.position.as_deref(), Some("000000020000000000000009"));
        assert_eq!(p.replayed, 7, "segments 3 to 9");
        assert_eq!(p.total, Some(14), "segments 3 to 0x10");
        // 6 segments in 0.6 s: 10 segments a second, 7 left.
        let rate = p.mb_per_s.unwrap();
        assert!((rate - 10.0 * seg as f64 / 1e6).abs() < 1.0, "{rate}");
        let eta = p.eta.unwrap().as_secs_f64();
        assert!((eta - 0.7).abs() < 0.01, "{eta}");
        assert_eq!(p.elapsed, Duration::from_millis(1_000));
        assert!(
            p.text()
                .starts_with("segment 7 of 14 (000000020000000000000009)"),
            "{}",
            p.text()
        );

        records.push(RequestRecord {
            code: Some("foreign-segment".into()),
            ..record(
                1_800,
                "00000002000000000000000A",
                RequestOutcome::Refused,
                0,
            )
        });
        records.push(RequestRecord {
            detail: Some("recovery ended".into()),
            cpu_us: 5_000,
            max_rss_kb: 9_000,
            ..record(1_900, "", RequestOutcome::PrefetchStop, 0)
        });
        let stats = summarize(&records);
        assert_eq!(stats.segments, 7);
        assert_eq!((stats.from_spool, stats.from_archive), (6, 1));
        assert_eq!(stats.wal_bytes, 7 * seg);
        assert_eq!(stats.replay_secs(), Some(0.7));
        assert_eq!(
            stats.refused,
            vec![(
                "00000002000000000000000A".to_owned(),
                "foreign-segment".to_owned()
            )]
        );
        assert_eq!(stats.prefetcher_stops, vec!["recovery ended".to_owned()]);
        assert_eq!(stats.helper_max_rss_kb, 9_000);
    }

    #[test]
    fn with_a_target_progress_runs_to_the_targets_segment_until_replay_passes_it() {
        let mut plan = three_timelines(Path::new("/srv"));
        // The target is expected in segment 0xA of timeline 2.
        plan.target_segment = Some("00000002000000000000000A".into());
        let seg = plan.segment_size as u64;
        let names = [
            "000000010000000000000003",
            "000000010000000000000004",
            "000000010000000000000005",
            "000000010000000000000006",
        ];
        let mut records: Vec<RequestRecord> = names
            .iter()
            .enumerate()
            .map(|(i, name)| record(1_000 + 200 * i as u64, name, RequestOutcome::Spool, seg))
            .collect();
        let now = UNIX_EPOCH + Duration::from_millis(2_000);
        let p = progress(&plan, &records, now);
        assert_eq!(
            p.total,
            Some(8),
            "segments 3 to 0xA, not to the line's end 0x10"
        );
        assert_eq!(p.line_end.as_deref(), Some("00000002000000000000000A"));
        assert!(p.to_target);
        // 3 segments in 0.6 s: 5 a second; 4 left to 0xA.
        let eta = p.eta.unwrap().as_secs_f64();
        assert!((eta - 0.8).abs() < 0.01, "{eta}");
        assert!(
            p.text()
                .starts_with("segment 4 of about 8 to the target (000000010000000000000006)"),
            "{}",
            p.text()
        );
        // Replay went past it (arrival times misled): the line's end again.
        records.push(record(
            1_800,
            "00000002000000000000000B",
            RequestOutcome::Spool,
            seg,
        ));
        let p = progress(&plan, &records, now);
        assert_eq!(p.total, Some(14));
        assert_eq!(p.line_end.as_deref(), Some("000000030000000000000010"));
        assert!(!p.to_target);
        assert!(p.text().starts_with("segment 9 of 14 "), "{}", p.text());
        // Without a target nothing changes.
        plan.target_segment = None;
        let p = progress(&plan, &records[..4], now);
        assert_eq!((p.total, p.to_target), (Some(14), false));
    }

    #[test]
    fn the_tail_returns_whole_new_lines_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.jsonl");
        let mut tail = Tail::new(&path);
        assert!(tail.new_records().is_empty());
        append(
            &path,
            &RequestRecord::new("000000010000000000000001", RequestOutcome::Spool),
        )
        .unwrap();
        assert_eq!(tail.new_records().len(), 1);
        assert!(tail.new_records().is_empty());
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"{\"at_ms\":1,\"outcome\":\"spo")
            .unwrap();
        assert!(tail.new_records().is_empty(), "half a line waits");
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"ol\",\"file\":\"x\"}\n")
            .unwrap();
        assert_eq!(tail.new_records()[0].file, "x");
        assert_eq!(read(&path).unwrap().len(), 2);
    }
}
