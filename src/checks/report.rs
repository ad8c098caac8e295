//! The health report of a whole backup root: what `walwarden check` prints
//! (as text or as the JSON document described in assets/check-schema.json)
//! and what the dashboard shows. Built from a catalog, a config and a clock
//! and the facts learnt beside them, in one place (`ClientReport::assemble`)
//! so both faces raise the same problems in the same order.

use std::path::PathBuf;
use std::time::SystemTime;

use serde::Serialize;

use crate::archive::base_backup::BackupLabel;
use crate::archive::catalog::{Catalog, Client};
use crate::archive::continuity::{Branch, Continuity, Gap, TimelineSpan, TimelineSummary};
use crate::archive::folder::BaseFile;
use crate::checks::health::{self, Problem, Status};
use crate::checks::recovery_point::RecoveryPoint;
use crate::config::Config;

#[derive(Debug, Clone, Serialize)]
pub struct CheckReport {
    pub root: PathBuf,
    #[serde(serialize_with = "crate::serde_util::time")]
    pub generated_at: SystemTime,
    /// The worst client status; `unknown` for a root without clients.
    pub status: Status,
    pub clients: Vec<ClientReport>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ClientReport {
    pub name: String,
    pub status: Status,
    pub base: BaseReport,
    pub wal: WalReport,
    #[serde(serialize_with = "crate::serde_util::opt_time")]
    pub restorable_to: Option<SystemTime>,
    #[serde(serialize_with = "crate::serde_util::opt_time")]
    pub restorable_from: Option<SystemTime>,
    pub problems: Vec<Problem>,
    /// The newest successful restore drill, from the drill history.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_drill: Option<crate::checks::drills::DrillRecord>,
    /// The recovery time estimated from that drill's rates and today's
    /// sizes, against the client's `rto`: present once there is a drill or an `rto`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rto: Option<crate::checks::rto::RtoEstimate>,
    /// What `check --deep` proved: present only after a deep check.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deep: Option<crate::checks::deep::DeepReport>,
    /// The target server's side: present after `check --target` for a client with a target.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<crate::pg::target::TargetView>,
}

/// What was learnt about a client beyond its folder, each from its own
/// background check or file.
#[derive(Debug, Clone, Copy, Default)]
pub struct ClientFacts<'a> {
    /// What the quick check found (gzip trailers and first pages of new segments).
    pub quick: Option<&'a crate::checks::quick::QuickFindings>,
    /// What a deep check proved, run now or remembered.
    pub deep: Option<&'a crate::checks::deep::DeepReport>,
    /// What the client's target server showed.
    pub target: Option<&'a crate::pg::target::TargetView>,
    /// The restore drills recorded on this machine (every client's).
    pub drills: &'a [crate::checks::drills::DrillRecord],
}

impl ClientReport {
    /// The one place a client's report is assembled, for `check` and the
    /// dashboard alike: the health rules on its folder, then what the quick
    /// or deep check found, what its target showed, and its drills.
    pub fn assemble(
        client: &Client,
        config: &Config,
        now: SystemTime,
        facts: ClientFacts<'_>,
    ) -> ClientReport {
        let mut report = ClientReport::build(client, config, now);
        if let Some(quick) = facts.quick {
            report.problems.extend(quick.problems.iter().cloned());
            report.status = health::status_of(&report.problems);
        }
        report.judge_line(client, &facts);
        if let Some(deep) = facts.deep {
            report.add_deep(deep.clone());
        }
        if let Some(view) = facts.target {
            report.add_target(view.clone(), &client.path);
        }
        report.add_drills(facts.drills, config.policy_for(&client.name), now);
        report.add_rto(client, config.policy_for(&client.name));
        report
    }

    /// The recovery-time estimate from the last successful drill (added by
    /// `add_drills`) and `rto_exceeded` when it passes the client's `rto`.
    fn add_rto(&mut self, client: &Client, policy: &crate::config::ClientPolicy) {
        use crate::checks::rto;
        let estimate = rto::estimate(
            rto::RestoreSizes::of(client),
            self.last_drill.as_ref(),
            policy.rto,
        );
        if let Some(problem) = estimate.as_ref().and_then(|e| rto::problem(&self.name, e)) {
            self.problems.push(problem);
            self.status = health::status_of(&self.problems);
        }
        self.rto = estimate;
    }

    /// The window as replay would go: cut at the first segment the quick or
    /// deep check found unusable (re-judged only then: the scan's analysis
    /// holds otherwise), with the last commit read from the line when it was
    /// read from this very window (a newer arrival makes it unknown until
    /// the next check).
    fn judge_line(&mut self, client: &Client, facts: &ClientFacts<'_>) {
        let mut unusable = std::collections::BTreeSet::new();
        let mut points = Vec::new();
        if let Some(quick) = facts.quick {
            unusable.extend(quick.unusable.iter().copied());
            points.extend(quick.recovery_point.as_ref());
        }
        if let Some(deep) = facts.deep {
            unusable.extend(deep.unusable.iter().copied());
            points.extend(deep.recovery_point.as_ref());
        }
        let rejudged = (!unusable.is_empty()).then(|| {
            crate::archive::continuity::analyse_with(
                &client.base,
                &client.wal,
                crate::archive::continuity::LineRequest {
                    timeline: None,
                    unusable: Some(&unusable),
                },
            )
        });
        let line = rejudged.as_ref().unwrap_or(&client.continuity);
        let point = points
            .into_iter()
            .find(|p| line.restorable_through.as_deref() == Some(p.through.as_str()));
        self.set_line(line, point);
    }

    /// Adds the client's last successful drill, and `drill_stale` where its
    /// policy asks for drills (`drill_max_age`) and the last is too old or missing.
    fn add_drills(
        &mut self,
        history: &[crate::checks::drills::DrillRecord],
        policy: &crate::config::ClientPolicy,
        now: SystemTime,
    ) {
        let last = crate::checks::drills::last_success(history, &self.name);
        if let Some(max_age) = policy.drill_max_age
            && let Some(problem) =
                crate::checks::drills::stale_problem(&self.name, last, max_age, now)
        {
            self.problems.push(problem);
            self.status = health::status_of(&self.problems);
        }
        self.last_drill = last.cloned();
    }

    /// Adds what a deep check proved, and its problems.
    pub fn add_deep(&mut self, deep: crate::checks::deep::DeepReport) {
        self.problems.extend(deep.problems.iter().cloned());
        self.status = health::status_of(&self.problems);
        self.deep = Some(deep);
    }

    /// Adds what the client's target server showed, and its problems.
    pub fn add_target(
        &mut self,
        view: crate::pg::target::TargetView,
        client_dir: &std::path::Path,
    ) {
        self.problems
            .extend(crate::checks::target::problems(&view, client_dir));
        self.status = health::status_of(&self.problems);
        self.target = Some(view);
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct BaseReport {
    pub present: bool,
    pub files: Vec<BaseFile>,
    pub bytes: u64,
    #[serde(serialize_with = "crate::serde_util::opt_time")]
    pub taken_at: Option<SystemTime>,
    pub label: Option<BackupLabel>,
    pub pg_version: Option<String>,
    /// As a string: it does not fit a JSON number's exact range.
    pub system_identifier: Option<String>,
    /// Where the identifier was read: "pg_control" or "wal_header".
    pub system_identifier_source: Option<&'static str>,
    pub unpacked_bytes: Option<u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct WalReport {
    pub present: bool,
    /// wal/ is there but could not be read: its counts are unknown, not
    /// zero (the `unreadable` problem says why). Not in the JSON: the
    /// problem and `status: unknown` say it there.
    #[serde(skip)]
    pub unreadable: bool,
    pub segments: u64,
    pub first: Option<String>,
    pub last: Option<String>,
    #[serde(serialize_with = "crate::serde_util::opt_time")]
    pub last_arrival: Option<SystemTime>,
    pub last_arrival_age_seconds: Option<u64>,
    pub segment_size: u32,
    pub bytes: u64,
    pub in_flight: Vec<String>,
    pub timelines: Vec<TimelineSummary>,
    pub needed_from: Option<String>,
    pub consistent_at: Option<String>,
    pub restorable_through: Option<String>,
    pub gaps: Vec<Gap>,
    /// The base backup's timeline, where the restore line starts.
    pub base_timeline: Option<u32>,
    /// The timeline a restore follows to its end (the production line).
    pub target_timeline: Option<u32>,
    pub restore_line: Vec<TimelineSpan>,
    /// Timelines beside the line that left it after the base backup began.
    pub branches: Vec<Branch>,
    /// Whether the restorable run reaches the newest segment on the line.
    pub reaches_end: bool,
    /// The first segment on the line judged corrupt, foreign or misnamed (the window ends before it).
    pub stopped_at_bad: Option<String>,
    /// The last commit (or abort) on the line up to `restorable_through`: the
    /// point a restore to the end brings back. RFC 3339 to the microsecond.
    #[serde(serialize_with = "crate::serde_util::opt_time_micros")]
    pub last_commit: Option<SystemTime>,
}

impl WalReport {
    /// The window and line facts of `line` (the scan's analysis, or one
    /// re-judged with segments found unusable).
    fn set_line(&mut self, line: &Continuity) {
        self.timelines = line.timelines.clone();
        self.needed_from = line.needed_from.clone();
        self.consistent_at = line.consistent_at.clone();
        self.restorable_through = line.restorable_through.clone();
        self.gaps = line.gaps.clone();
        self.base_timeline = line.base_timeline.map(|t| t.0);
        self.target_timeline = line.target_timeline.map(|t| t.0);
        self.restore_line = line.restore_line.clone();
        self.branches = line.branches.clone();
        self.reaches_end = line.reaches_newest;
        self.stopped_at_bad = line.stopped_at_bad.clone();
    }
}

impl ClientReport {
    /// How far a restore gets, in words: "restorable to latest (last commit
    /// 2026-11-25 20:13:05.123456Z, timeline 2)" when the window reaches the
    /// line's end (a restore to the end needs no target), else the time the
    /// window ends at and why; "not restorable" without a window, unknown
    /// when wal/ could not be read.
    pub fn restorable_text(&self) -> String {
        let Some(to) = self.restorable_to else {
            if self.wal.unreadable {
                return "restorable: unknown (wal/ cannot be read)".to_owned();
            }
            return "not restorable".to_owned();
        };
        let timeline = self
            .wal
            .target_timeline
            .filter(|t| *t > 1 || self.wal.restore_line.len() > 1)
            .map(|t| format!(", timeline {t}"))
            .unwrap_or_default();
        let commit = self.wal.last_commit.map_or_else(
            || format!("last segment arrived {}", crate::display::time_text(to)),
            |c| format!("last commit {}", crate::display::rfc3339_micros(c)),
        );
        if self.wal.reaches_end {
            format!("restorable to latest ({commit}{timeline})")
        } else {
            let stop = self
                .wal
                .stopped_at_bad
                .clone()
                .or_else(|| self.wal.gaps.first().map(|g| g.first.clone()))
                .unwrap_or_else(|| "?".to_owned());
            format!("restorable only to {commit} (replay stops at {stop}{timeline})")
        }
    }

    /// The window cut where replay would stop at a segment already judged
    /// bad, and the recovery point read from the line (`last_commit`): what
    /// `check` claims a restore brings back, and what the restore's preflight uses.
    pub fn set_line(&mut self, line: &Continuity, recovery_point: Option<&RecoveryPoint>) {
        self.wal.set_line(line);
        self.restorable_to = line.restorable_to;
        self.wal.last_commit = recovery_point.map(|p| p.transaction.time);
    }
}

impl CheckReport {
    /// Every client of the catalog assembled with its facts.
    pub fn assemble<'a>(
        catalog: &Catalog,
        config: &Config,
        now: SystemTime,
        facts: impl Fn(&str) -> ClientFacts<'a>,
    ) -> CheckReport {
        let clients: Vec<ClientReport> = catalog
            .clients
            .iter()
            .map(|c| ClientReport::assemble(c, config, now, facts(&c.name)))
            .collect();
        let status = worst(&clients);
        CheckReport {
            root: catalog.root.clone(),
            generated_at: now,
            status,
            clients,
        }
    }

    pub fn exit_code(&self) -> i32 {
        self.status.exit_code()
    }
}

fn worst(clients: &[ClientReport]) -> Status {
    clients
        .iter()
        .map(|c| c.status)
        .max()
        .unwrap_or(Status::Unknown)
}

impl ClientReport {
    pub fn build(client: &Client, config: &Config, now: SystemTime) -> ClientReport {
        let problems = health::assess(client, config.policy_for(&client.name), now);
        let base = &client.base;
        let wal = &client.wal;
        let continuity = &client.continuity;
        let segments: Vec<_> = wal.segments.iter().filter(|s| !s.partial).collect();
        let last_arrival = wal.last_arrival();
        let mut report = ClientReport {
            name: client.name.clone(),
            status: health::status_of(&problems),
            base: BaseReport {
                present: base.present,
                files: base.files.clone(),
                bytes: base.total_bytes(),
                taken_at: base.taken_at(),
                label: base.label().cloned(),
                pg_version: base.pg_version().map(str::to_owned),
                system_identifier: base.system_identifier().map(|id| id.to_string()),
                system_identifier_source: match (&base.full, &base.pg_wal_first) {
                    (Some(_), _) => Some("pg_control"),
                    (None, Some(_)) => Some("wal_header"),
                    _ => None,
                },
                unpacked_bytes: base.full.map(|f| f.unpacked_bytes),
            },
            wal: WalReport {
                present: wal.present,
                unreadable: wal.unreadable,
                segments: segments.len() as u64,
                first: segments.first().map(|s| s.name.to_string()),
                last: segments.last().map(|s| s.name.to_string()),
                last_arrival,
                last_arrival_age_seconds: last_arrival
                    .map(|t| now.duration_since(t).unwrap_or_default().as_secs()),
                segment_size: continuity.segment_size,
                bytes: wal.total_bytes(),
                in_flight: wal.in_flight.iter().map(|f| f.name.clone()).collect(),
                timelines: continuity.timelines.clone(),
                needed_from: continuity.needed_from.clone(),
                consistent_at: continuity.consistent_at.clone(),
                restorable_through: continuity.restorable_through.clone(),
                gaps: continuity.gaps.clone(),
                base_timeline: None,
                target_timeline: None,
                restore_line: Vec::new(),
                branches: Vec::new(),
                reaches_end: false,
                stopped_at_bad: None,
                last_commit: None,
            },
            restorable_to: continuity.restorable_to,
            restorable_from: continuity.restorable_from,
            problems,
            deep: None,
            last_drill: None,
            rto: None,
            target: None,
        };
        report.wal.set_line(continuity);
        report
    }
}
