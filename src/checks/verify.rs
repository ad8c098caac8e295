//! The verification window: the tutorial's 3-5 minute check that a new
//! client's archiving works before it goes live, as a checklist.
//!
//! The I/O (reading tarballs and segments end to end) lives in
//! `integrity::check_base_backup` and `integrity::check_segment`;
//! `Verification` only records
//! their outcomes and the clock, so the checklist is a pure function of
//! what happened and when, the same for the CLI and the TUI.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use serde::Serialize;

use crate::archive::catalog::Client;
use crate::archive::wal::WalFileKind;
use crate::checks::integrity::{BaseCheck, Progress, SegmentCheck, SegmentVerdict};
use crate::display::{short_duration, time_text};

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
                } else if timeout == crate::pg::target::VERIFICATION_ARCHIVE_TIMEOUT || timeout == 0
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

    /// After a re-read of the client (events were lost): the new segments
    /// this window wants that no event announced, each with its path and its
    /// mtime as the arrival time. Both faces check these.
    pub fn missed_segments(&self, client: &Client) -> Vec<(PathBuf, SystemTime)> {
        let wal_dir = client.wal_dir();
        client
            .wal
            .segments
            .iter()
            .filter(|s| self.wants(&s.file_name()))
            .filter(|s| s.mtime >= self.started_at && !self.is_over(s.mtime))
            .map(|s| (wal_dir.join(s.file_name()), s.mtime))
            .collect()
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
            SegmentVerdict::NotRegular { kind } => Some(format!(
                "a {}, not a regular file: never opened",
                kind.as_str()
            )),
            SegmentVerdict::Unreadable { reason, .. } => Some(format!("cannot be read: {reason}")),
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
        // No segment asked for (--min-segments 0): a quiet window within the limit passes.
        let none_needed = self.settings.min_segments == 0;
        let state = if over && (!self.arrivals.is_empty() || none_needed) {
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
        let none_needed = self.settings.min_segments == 0;
        let state = match (n, over) {
            (0, true) if none_needed => ItemState::Pass,
            (0, true) => ItemState::Fail,
            (0, false) => ItemState::Pending,
            (_, true) => ItemState::Pass,
            (_, false) => ItemState::Running,
        };
        let detail = if n == 0 && none_needed {
            "no new segment, none required (--min-segments 0)".into()
        } else if n == 0 {
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
