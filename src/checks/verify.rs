//! The verification window: the tutorial's 3-5 minute check that a new
//! client's archiving works before it goes live, as a checklist.
//!
//! The I/O (reading tarballs and segments end to end) lives in
//! `check_base_backup` and `check_segment`; `Verification` only records
//! their outcomes and the clock, so the checklist is a pure function of
//! what happened and when, the same for the CLI and the TUI.

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::Path;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::archive::base_backup::PassOptions;
use crate::archive::base_backup::{self, BackupLabel};
use crate::archive::catalog::Client;
use crate::archive::manifest::{BackupManifest, ManifestCheck, WalRange};
use crate::archive::wal::{LONG_HEADER_LEN, LongPageHeader, RawSegmentName, WalFileKind};
use crate::checks::health::short_duration;
use crate::serde_util::time_text;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct VerifySettings {
    #[serde(serialize_with = "crate::serde_util::duration")]
    pub window: Duration,
    #[serde(serialize_with = "crate::serde_util::duration")]
    pub expect_interval: Duration,
    /// Tolerance on top of the expected interval (archive_command and ssh take time).
    #[serde(serialize_with = "crate::serde_util::duration")]
    pub slack: Duration,
    pub min_segments: usize,
}

impl Default for VerifySettings {
    fn default() -> Self {
        VerifySettings {
            window: Duration::from_secs(300),
            expect_interval: Duration::from_secs(60),
            slack: Duration::from_secs(30),
            min_segments: 3,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ItemState {
    Pending,
    Running,
    Pass,
    Fail,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChecklistItem {
    pub title: &'static str,
    pub state: ItemState,
    pub detail: String,
}

/// Bytes read so far of the bytes to read, for a progress bar.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct Progress {
    pub file: &'static str,
    pub done: u64,
    pub total: u64,
}

/// What reading both base tarballs end to end found.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct BaseCheck {
    pub label: Option<BackupLabel>,
    /// From global/pg_control inside base.tar.gz.
    #[serde(serialize_with = "crate::serde_util::opt_u64_text")]
    pub system_identifier: Option<u64>,
    pub bytes: u64,
    /// Empty when everything is fine.
    pub failures: Vec<String>,
    /// What the backup_manifest said, when there is one.
    pub manifest: Option<Box<ManifestOutcome>>,
    /// Segment file names inside pg_wal.tar.gz.
    pub pg_wal_segments: Vec<String>,
}

impl BaseCheck {
    pub fn manifest_mismatches(&self) -> &[String] {
        self.manifest.as_ref().map_or(&[], |m| &m.mismatches)
    }
}

/// The backup_manifest's verdict on base.tar.gz.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct ManifestOutcome {
    /// `base/backup_manifest`, or `base.tar.gz` when the manifest came inside it.
    pub found_in: String,
    /// One line per difference, each naming the file; the manifest's own
    /// checksum failure is one too.
    pub mismatches: Vec<String>,
    /// The WAL the backup needs, from the manifest.
    pub wal_ranges: Vec<WalRange>,
    /// Whether every file was compared: false when base.tar.gz could not be
    /// read to its end (then `base_corrupt` says why, and the manifest has
    /// not been proven either way).
    pub complete: bool,
    /// `System-Identifier` (manifest version 2, PostgreSQL 17+).
    #[serde(serialize_with = "crate::serde_util::opt_u64_text")]
    pub system_identifier: Option<u64>,
}

/// What reading one new segment end to end found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SegmentCheck {
    pub name: String,
    pub size: u64,
    /// `None` when the file is readable and (if compressed) a valid gzip stream to its end.
    pub stream_error: Option<String>,
    #[serde(skip)]
    pub header: Result<LongPageHeader, String>,
}

/// What reading a segment says about it, against the archive's facts; the
/// verification window and `check --deep` judge with this one function.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum SegmentVerdict {
    Good,
    Corrupt {
        reason: String,
    },
    Foreign {
        system_identifier: u64,
        expected: u64,
    },
    Misnamed {
        header_says: String,
    },
}

impl SegmentCheck {
    /// Judges what was read: a stream that does not read to its end, a bad
    /// header or another segment size is corrupt; another system identifier is
    /// foreign (the root cause, so it comes before the name); a header naming
    /// another segment is misnamed. `None` skips that comparison.
    pub fn verdict(&self, expected_sysid: Option<u64>, seg_size: Option<u32>) -> SegmentVerdict {
        if let Some(error) = &self.stream_error {
            return SegmentVerdict::Corrupt {
                reason: format!("not a valid stream: {error}"),
            };
        }
        let header = match &self.header {
            Ok(header) => header,
            Err(reason) => {
                return SegmentVerdict::Corrupt {
                    reason: reason.clone(),
                };
            }
        };
        if let Some(expected) = seg_size.filter(|s| *s != header.seg_size) {
            return SegmentVerdict::Corrupt {
                reason: format!(
                    "segment size {} in its header, the archive's is {expected}",
                    header.seg_size
                ),
            };
        }
        if let Some(expected) = expected_sysid.filter(|e| *e != header.system_identifier) {
            return SegmentVerdict::Foreign {
                system_identifier: header.system_identifier,
                expected,
            };
        }
        let stem = self.name.get(..24).unwrap_or(&self.name);
        let named = RawSegmentName::parse(stem).and_then(|raw| raw.resolve(header.seg_size).ok());
        // A timeline's first segment after a switch inside a segment is a copy
        // of the parent's up to the switch point, so its first page carries
        // an ancestor's timeline: only the page address must match, and the
        // header's timeline may not be newer than the name's.
        let header_id = header.segment_id();
        let matches = named.is_some_and(|id| {
            id.segment == header_id.segment && header_id.timeline <= id.timeline
        });
        if !matches {
            return SegmentVerdict::Misnamed {
                header_says: header.segment_id().file_name(header.seg_size),
            };
        }
        SegmentVerdict::Good
    }
}

/// Reads base.tar(.gz) and pg_wal.tar(.gz) to their very end: every gzip
/// CRC checked, the backup label and pg_control read on the way.
pub fn check_base_backup(base_dir: &Path, progress: &mut dyn FnMut(Progress)) -> BaseCheck {
    let mut check = BaseCheck::default();
    for (label, names) in [
        ("base.tar.gz", ["base.tar.gz", "base.tar"]),
        ("pg_wal.tar.gz", ["pg_wal.tar.gz", "pg_wal.tar"]),
    ] {
        let Some(path) = names.iter().map(|n| base_dir.join(n)).find(|p| p.is_file()) else {
            check
                .failures
                .push(format!("{label} is missing from {}", base_dir.display()));
            continue;
        };
        let mut report = |done, total| {
            progress(Progress {
                file: label,
                done,
                total,
            })
        };
        let is_base = label == "base.tar.gz";
        // A manifest beside the tarballs is checked while base.tar.gz streams past.
        let beside = base_dir.join("backup_manifest");
        let mut manifest_check = None;
        if is_base && let Ok(bytes) = std::fs::read(&beside) {
            let mut outcome = ManifestOutcome {
                found_in: "base/backup_manifest".into(),
                ..ManifestOutcome::default()
            };
            match BackupManifest::parse(&bytes) {
                Ok(manifest) => {
                    outcome.wal_ranges = manifest.wal_ranges.clone();
                    outcome.system_identifier = manifest.system_identifier;
                    manifest_check = Some(ManifestCheck::new(&manifest));
                }
                Err(e) => outcome.mismatches.push(e.to_string()),
            }
            check.manifest = Some(Box::new(outcome));
        }
        let options = PassOptions {
            manifest: manifest_check.as_mut(),
            crc_every_file: is_base && check.manifest.is_none(),
        };
        match base_backup::read_tarball_checked(&path, options, &mut report) {
            Ok(found) => {
                check.bytes += found.compressed_bytes;
                if !is_base {
                    check.pg_wal_segments = found.wal_segments;
                    continue;
                }
                if let (Some(manifest), Some(outcome)) = (manifest_check, check.manifest.as_mut()) {
                    outcome.mismatches.extend(manifest.finish());
                    outcome.complete = true;
                } else if let Some(bytes) = &found.manifest_entry {
                    check.manifest = Some(Box::new(embedded_manifest(bytes, &found.file_crcs)));
                }
                check.label = found.label;
                check.system_identifier = found.control.map(|(sysid, _, _)| sysid);
                if let Some(outcome) = check.manifest.as_mut()
                    && let (Some(listed), Some(actual)) =
                        (outcome.system_identifier, check.system_identifier)
                    && listed != actual
                {
                    outcome.mismatches.push(format!(
                        "backup_manifest is for database system {listed}, global/pg_control in base.tar.gz says {actual}"
                    ));
                }
                if check.label.is_none() {
                    check
                        .failures
                        .push(format!("{} holds no backup_label", path.display()));
                }
                if check.system_identifier.is_none() {
                    check
                        .failures
                        .push(format!("{} holds no global/pg_control", path.display()));
                }
            }
            Err(e) => check.failures.push(e.to_string()),
        }
    }
    check
}

/// How much of a segment file is read per call: large enough that the
/// inflater works in long runs (an 8 KiB `io::copy` buffer costs ~10 % more
/// calls into zlib-rs), small enough that two workers stay in L2.
const READ_CHUNK: usize = 256 * 1024;

/// A manifest found inside base.tar.gz (it comes last): compared with the
/// sizes and CRC-32Cs kept while the files streamed past. A manifest with
/// another algorithm gets its sizes compared; its checksums would need a
/// second pass.
fn embedded_manifest(bytes: &[u8], files: &[(String, u64, u32)]) -> ManifestOutcome {
    let mut outcome = ManifestOutcome {
        found_in: "base.tar.gz".into(),
        ..ManifestOutcome::default()
    };
    let manifest = match BackupManifest::parse(bytes) {
        Ok(manifest) => manifest,
        Err(e) => {
            outcome.mismatches.push(e.to_string());
            return outcome;
        }
    };
    outcome.wal_ranges = manifest.wal_ranges.clone();
    outcome.system_identifier = manifest.system_identifier;
    let mut check = ManifestCheck::new(&manifest);
    for (path, size, crc) in files {
        if let Some((index, _)) = check.begin(path) {
            check.end_with_crc32c(index, *size, *crc);
        }
    }
    outcome.mismatches = check.finish();
    outcome.complete = true;
    outcome
}

/// Reads a segment to its end (validating gzip when compressed) and parses its header.
pub fn check_segment(path: &Path) -> SegmentCheck {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    let mut head = Vec::with_capacity(LONG_HEADER_LEN);
    let stream = (|| -> io::Result<u64> {
        let file = BufReader::with_capacity(READ_CHUNK, File::open(path)?);
        let mut reader: Box<dyn Read> = if name.ends_with(".gz") {
            Box::new(flate2::bufread::MultiGzDecoder::new(file))
        } else {
            Box::new(file)
        };
        let mut buf = vec![0u8; READ_CHUNK];
        let mut unpacked = 0u64;
        loop {
            let n = match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if head.len() < LONG_HEADER_LEN {
                let wanted = (LONG_HEADER_LEN - head.len()).min(n);
                head.extend_from_slice(&buf[..wanted]);
            }
            unpacked += n as u64;
        }
        Ok(unpacked)
    })();
    let header = LongPageHeader::parse(&head).map_err(|e| e.to_string());
    let stream_error = match stream {
        Err(e) => Some(e.to_string()),
        Ok(unpacked) => match &header {
            Ok(h) if unpacked != h.seg_size as u64 => Some(format!(
                "{unpacked} bytes unpacked, a segment has {}",
                h.seg_size
            )),
            _ => None,
        },
    };
    SegmentCheck {
        name,
        size,
        stream_error,
        header,
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VerifiedArrival {
    pub name: String,
    #[serde(serialize_with = "crate::serde_util::time")]
    pub at: SystemTime,
    /// Since the previous arrival (since the window opened, for the first).
    #[serde(serialize_with = "crate::serde_util::opt_duration")]
    pub interval: Option<Duration>,
    pub check: SegmentCheck,
    /// Why this segment fails item 4, if it does.
    pub failure: Option<String>,
}

/// One verification window over one client.
#[derive(Debug, Clone)]
pub struct Verification {
    pub client: String,
    pub settings: VerifySettings,
    pub started_at: SystemTime,
    /// The client's last arrival before the window, for the record.
    pub previous_arrival: Option<SystemTime>,
    /// Segments already archived when the window opened (they do not count as new).
    known: std::collections::HashSet<String>,
    pub base_progress: Option<Progress>,
    pub base: Option<BaseCheck>,
    pub arrivals: Vec<VerifiedArrival>,
    /// Set when the engineer ended the window early.
    pub ended_early_at: Option<SystemTime>,
    /// The client's config names its target server: after the window,
    /// archive_timeout must be back to production there (checked over SSH).
    pub target_expected: bool,
    /// The target as last read after the window, and when.
    pub target: Option<(SystemTime, crate::pg::target::TargetView)>,
    /// What the target showed as the window opened, when it needs saying.
    pub target_warning: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct VerifyReport {
    pub client: String,
    pub passed: bool,
    #[serde(serialize_with = "crate::serde_util::time")]
    pub started_at: SystemTime,
    #[serde(serialize_with = "crate::serde_util::time")]
    pub ended_at: SystemTime,
    pub ended_early: bool,
    pub settings: VerifySettings,
    pub items: Vec<ChecklistItem>,
    pub arrivals: Vec<VerifiedArrival>,
    /// What the target showed as the window opened, when it needed saying.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_warning: Option<String>,
    pub reminder: &'static str,
}

pub const REMINDER: &str = "Reminder: set archive_timeout on the target server back to its production value (1h to 1 day) and reload PostgreSQL (select pg_reload_conf()).";

impl Verification {
    pub fn new(client: &Client, settings: VerifySettings, now: SystemTime) -> Verification {
        let known = client.wal.segments.iter().map(|s| s.file_name()).collect();
        Verification {
            client: client.name.clone(),
            settings,
            started_at: now,
            previous_arrival: client
                .wal
                .segments
                .iter()
                .filter(|s| !s.partial)
                .map(|s| s.mtime)
                .max(),
            known,
            base_progress: None,
            base: None,
            arrivals: Vec::new(),
            ended_early_at: None,
            target_expected: false,
            target: None,
            target_warning: None,
        }
    }

    /// A read of the target as the window opens: warns when segments cannot
    /// arrive at the expected cadence (archive_timeout not lowered, archiving
    /// off or failing), so the engineer fixes it before waiting five minutes.
    pub fn target_read_at_start(&mut self, view: &crate::pg::target::TargetView) {
        use crate::pg::target::TargetView;
        let TargetView::Reached(status) = view else {
            return;
        };
        let state = &status.state;
        let expected = self.settings.expect_interval + self.settings.slack;
        self.target_warning = if state.archive_mode == "off" {
            Some(
                "archive_mode is off on the target: nothing will arrive; set it on and restart"
                    .into(),
            )
        } else if status.is_failing() {
            let why = status
                .failures
                .last()
                .map_or("see the target's log".to_owned(), |f| {
                    f.diagnosis.summary.clone()
                });
            Some(format!(
                "archiving is failing on the target right now: {why}"
            ))
        } else if state.archive_timeout == 0
            || Duration::from_secs(state.archive_timeout) > expected
        {
            Some(format!(
                "archive_timeout on the target is {}: set it to {} and reload for the window, or segments arrive only as WAL fills them",
                if state.archive_timeout == 0 {
                    "0 (off)".to_owned()
                } else {
                    short_duration(Duration::from_secs(state.archive_timeout))
                },
                short_duration(self.settings.expect_interval)
            ))
        } else {
            None
        };
    }

    /// A read of the target server: only reads after the window count.
    pub fn target_read(&mut self, at: SystemTime, view: crate::pg::target::TargetView) {
        if self.target_expected && self.is_over(at) {
            self.target = Some((at, view));
        }
    }

    /// Whether the target's last read passes: archive_timeout back to
    /// production and archiving not failing.
    pub fn target_settled(&self) -> bool {
        self.target_item(true)
            .is_some_and(|item| item.state == ItemState::Pass)
    }

    fn target_item(&self, over: bool) -> Option<ChecklistItem> {
        use crate::pg::target::TargetView;
        if !self.target_expected {
            return None;
        }
        let title = "archive_timeout back to production on the target";
        let (state, detail) = match &self.target {
            None if !over => (
                ItemState::Pending,
                "read over SSH after the window: set archive_timeout back then".to_owned(),
            ),
            None => (
                ItemState::Running,
                "reading the target over SSH…".to_owned(),
            ),
            Some((_, TargetView::Unreachable { address, error })) => (
                ItemState::Fail,
                format!("could not read {address} to confirm: {error}"),
            ),
            Some((_, TargetView::Reached(status))) => {
                let timeout = status.state.archive_timeout;
                if status.is_failing() {
                    let why = status
                        .failures
                        .last()
                        .map_or("see the target's log".to_owned(), |f| {
                            f.diagnosis.summary.clone()
                        });
                    (
                        ItemState::Fail,
                        format!("archiving is failing on the target: {why}"),
                    )
                } else if timeout == crate::ops::setup::VERIFICATION_ARCHIVE_TIMEOUT || timeout == 0
                {
                    (
                        ItemState::Fail,
                        format!(
                            "archive_timeout is {timeout} s on the target: set it to the production value (3600 to 86400) and reload"
                        ),
                    )
                } else {
                    (
                        ItemState::Pass,
                        format!(
                            "archive_timeout {} on the target; {} archived, {} failed",
                            short_duration(Duration::from_secs(timeout)),
                            status.state.archived_count,
                            status.state.failed_count
                        ),
                    )
                }
            }
        };
        Some(ChecklistItem {
            title,
            state,
            detail,
        })
    }

    /// Whether a finished file in wal/ is a new segment this window must check.
    pub fn wants(&self, name: &str) -> bool {
        matches!(
            WalFileKind::classify(name),
            WalFileKind::Segment { partial: false, .. }
        ) && !self.known.contains(name)
            && !self.arrivals.iter().any(|a| a.name == name)
            && self.ended_early_at.is_none()
    }

    pub fn base_checked(&mut self, check: BaseCheck) {
        self.base = Some(check);
        // Segments checked while the tarballs were still being read are judged now.
        for index in 0..self.arrivals.len() {
            self.arrivals[index].failure = self.segment_failure(&self.arrivals[index].check);
        }
    }

    pub fn segment_checked(&mut self, at: SystemTime, check: SegmentCheck) {
        if !self.wants(&check.name) {
            return;
        }
        // The window opens the first interval: what came before was under the old archive_timeout.
        let previous = self.arrivals.last().map_or(self.started_at, |a| a.at);
        let interval = Some(at.duration_since(previous).unwrap_or_default());
        let failure = self.segment_failure(&check);
        self.arrivals.push(VerifiedArrival {
            name: check.name.clone(),
            at,
            interval,
            check,
            failure,
        });
    }

    /// Why a segment fails item 4, without its name (the lists name it).
    fn segment_failure(&self, check: &SegmentCheck) -> Option<String> {
        // Before the base is read (minutes on a big one) the system identifier
        // is not compared yet: `base_checked` judges again.
        let expected = self.base.as_ref().and_then(|b| b.system_identifier);
        match check.verdict(expected, None) {
            SegmentVerdict::Good if self.base.is_some() && expected.is_none() => {
                Some("no base backup system identifier to compare with".into())
            }
            SegmentVerdict::Good => None,
            SegmentVerdict::Corrupt { reason } => Some(reason),
            SegmentVerdict::Foreign {
                system_identifier,
                expected,
            } => Some(format!(
                "from another database system (system identifier {system_identifier}, the base backup's is {expected}): check archive_command's paths on the target server"
            )),
            SegmentVerdict::Misnamed { header_says } => {
                Some(format!("misnamed: its header says it is {header_says}"))
            }
        }
    }

    pub fn end_early(&mut self, now: SystemTime) {
        self.ended_early_at.get_or_insert(now);
    }

    pub fn ends_at(&self) -> SystemTime {
        self.started_at + self.settings.window
    }

    pub fn is_over(&self, now: SystemTime) -> bool {
        self.ended_early_at.is_some() || now >= self.ends_at()
    }

    pub fn remaining(&self, now: SystemTime) -> Duration {
        if self.ended_early_at.is_some() {
            return Duration::ZERO;
        }
        self.ends_at().duration_since(now).unwrap_or_default()
    }

    fn interval_limit(&self) -> Duration {
        self.settings.expect_interval + self.settings.slack
    }

    /// The checklist as of `now`: items still open are Running until the window is over.
    pub fn items(&self, now: SystemTime) -> Vec<ChecklistItem> {
        let over = self.is_over(now);
        let end = self.ended_early_at.unwrap_or(now.min(self.ends_at()));
        let mut items = vec![
            self.base_item(),
            self.count_item(over),
            self.interval_item(over, end),
            self.validity_item(over),
        ];
        items.extend(self.target_item(over));
        items
    }

    fn base_item(&self) -> ChecklistItem {
        let title = "base backup present, readable, with a backup label";
        let (state, detail) = match (&self.base, &self.base_progress) {
            (Some(base), _)
                if base.failures.is_empty() && base.manifest_mismatches().is_empty() =>
            {
                (
                    ItemState::Pass,
                    format!(
                        "valid to the end · label {:?} · system {}",
                        base.label.as_ref().map_or("", |l| l.label.as_str()),
                        base.system_identifier.map_or("?".into(), |s| s.to_string())
                    ),
                )
            }
            (Some(base), _) => (
                ItemState::Fail,
                base.failures
                    .iter()
                    .chain(base.manifest_mismatches())
                    .cloned()
                    .collect::<Vec<_>>()
                    .join("; "),
            ),
            (None, Some(p)) => (
                ItemState::Running,
                format!("reading {}: {}%", p.file, p.done * 100 / p.total.max(1)),
            ),
            (None, None) => (ItemState::Running, "reading the tarballs".into()),
        };
        ChecklistItem {
            title,
            state,
            detail,
        }
    }

    fn count_item(&self, over: bool) -> ChecklistItem {
        let title = "new segments arrive during the window";
        let n = self.arrivals.len();
        let need = self.settings.min_segments;
        let detail = format!("{n} new, at least {need} needed");
        let state = match (n >= need, over) {
            (true, _) => ItemState::Pass,
            (false, true) => ItemState::Fail,
            (false, false) => ItemState::Running,
        };
        ChecklistItem {
            title,
            state,
            detail,
        }
    }

    fn interval_item(&self, over: bool, end: SystemTime) -> ChecklistItem {
        let title = "no interval longer than expected";
        let limit = self.interval_limit();
        let closed = self
            .arrivals
            .iter()
            .filter_map(|a| a.interval.map(|i| (i, a.name.as_str())));
        let worst = closed.max_by_key(|(i, _)| *i);
        // The interval still open counts too: silence is the failure this item exists for.
        let open_since = self.arrivals.last().map_or(self.started_at, |a| a.at);
        let open = end.duration_since(open_since).unwrap_or_default();
        let limit_text = format!(
            "limit {} = {} expected + {} slack",
            short_duration(limit),
            short_duration(self.settings.expect_interval),
            short_duration(self.settings.slack)
        );
        if let Some((interval, name)) = worst.filter(|(i, _)| *i > limit) {
            return ChecklistItem {
                title,
                state: ItemState::Fail,
                detail: format!("{} before {name}; {limit_text}", short_duration(interval)),
            };
        }
        if open > limit {
            return ChecklistItem {
                title,
                state: ItemState::Fail,
                detail: format!("nothing arrived for {}; {limit_text}", short_duration(open)),
            };
        }
        let longest = worst.map_or(open, |(i, _)| i.max(open));
        let state = if over && !self.arrivals.is_empty() {
            ItemState::Pass
        } else if over {
            ItemState::Fail
        } else {
            ItemState::Running
        };
        ChecklistItem {
            title,
            state,
            detail: format!("longest {}; {limit_text}", short_duration(longest)),
        }
    }

    fn validity_item(&self, over: bool) -> ChecklistItem {
        let title = "each new segment valid and from this database system";
        let failures: Vec<String> = self
            .arrivals
            .iter()
            .filter_map(|a| a.failure.as_ref().map(|f| format!("{}: {f}", a.name)))
            .collect();
        if !failures.is_empty() {
            return ChecklistItem {
                title,
                state: ItemState::Fail,
                detail: failures.join("; "),
            };
        }
        let n = self.arrivals.len();
        let state = match (n, over) {
            (0, true) => ItemState::Fail,
            (0, false) => ItemState::Pending,
            (_, true) => ItemState::Pass,
            (_, false) => ItemState::Running,
        };
        let detail = if n == 0 {
            "no new segment yet".into()
        } else {
            format!("{n} of {n} valid")
        };
        ChecklistItem {
            title,
            state,
            detail,
        }
    }

    pub fn report(&self, now: SystemTime) -> VerifyReport {
        let items = self.items(now);
        VerifyReport {
            client: self.client.clone(),
            passed: items.iter().all(|i| i.state == ItemState::Pass),
            started_at: self.started_at,
            ended_at: self.ended_early_at.unwrap_or(now.min(self.ends_at())),
            ended_early: self.ended_early_at.is_some(),
            settings: self.settings,
            items,
            arrivals: self.arrivals.clone(),
            target_warning: self.target_warning.clone(),
            reminder: REMINDER,
        }
    }
}

impl VerifyReport {
    /// Plain text to paste into a ticket.
    pub fn to_text(&self) -> String {
        let mut out = format!(
            "walwarden verify {}: {}\nwindow {} .. {}{}; expected interval {} (+{} slack); at least {} new segments\n",
            self.client,
            if self.passed { "PASS" } else { "FAIL" },
            time_text(self.started_at),
            time_text(self.ended_at),
            if self.ended_early {
                " (ended early)"
            } else {
                ""
            },
            short_duration(self.settings.expect_interval),
            short_duration(self.settings.slack),
            self.settings.min_segments
        );
        if let Some(warning) = &self.target_warning {
            out.push_str(&format!("target at the start: {warning}\n"));
        }
        for (index, item) in self.items.iter().enumerate() {
            let state = match item.state {
                ItemState::Pass => "PASS",
                ItemState::Fail => "FAIL",
                ItemState::Running | ItemState::Pending => "....",
            };
            out.push_str(&format!(
                "[{state}] {}. {}: {}\n",
                index + 1,
                item.title,
                item.detail
            ));
        }
        if !self.arrivals.is_empty() {
            out.push_str("new segments:\n");
        }
        for arrival in &self.arrivals {
            let interval = arrival
                .interval
                .map_or("—".into(), |i| format!("+{}", short_duration(i)));
            let verdict = if arrival.failure.is_some() {
                "  BAD"
            } else {
                ""
            };
            out.push_str(&format!(
                "  {}  {}  {} bytes  {interval}{verdict}\n",
                time_text(arrival.at),
                arrival.name,
                arrival.check.size
            ));
        }
        out.push_str(self.reminder);
        out.push('\n');
        out
    }
}
