//! The health report of a whole backup root: what `walwarden check` prints
//! (as text or as the JSON document described in assets/check-schema.json)
//! and what the dashboard shows. Built from a catalog, a config and a clock.

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
    pub last_drill: Option<crate::ops::drill::DrillRecord>,
    /// What `check --deep` proved: present only after a deep check.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deep: Option<crate::checks::deep::DeepReport>,
    /// The target server's side: present after `check --target` for a client with a target.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<crate::pg::target::TargetView>,
}

impl ClientReport {
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
    /// Adds each client's last successful drill, and `drill_stale` where the
    /// config asks for drills (`drill_max_age`) and the last is too old or missing.
    pub fn add_drills(&mut self, history: &[crate::ops::drill::DrillRecord], config: &Config) {
        let now_unix = self
            .generated_at
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        for report in &mut self.clients {
            let last = crate::ops::drill::last_success(history, &report.name).cloned();
            if let Some(max_age) = config.policy_for(&report.name).drill_max_age {
                let age = last.as_ref().map(|d| now_unix.saturating_sub(d.at_unix));
                if age.is_none_or(|a| a > max_age.as_secs()) {
                    let when = last
                        .as_ref()
                        .map_or("never".to_owned(), |d| format!("last succeeded {}", d.at));
                    report.problems.push(Problem::new(
                        crate::checks::health::ProblemCode::DrillStale,
                        Status::Warning,
                        format!(
                            "no successful restore drill within {} ({when})",
                            crate::display::short_duration(max_age)
                        ),
                        format!(
                            "run `walwarden drill {}`: only a restore proves the backup restores",
                            report.name
                        ),
                    ));
                    report.status = health::status_of(&report.problems);
                }
            }
            report.last_drill = last;
        }
        self.refresh_status();
    }

    /// Adds a client's deep-check findings: its problems count toward its status and the root's.
    pub fn add_deep(&mut self, client: &str, deep: crate::checks::deep::DeepReport) {
        if let Some(report) = self.clients.iter_mut().find(|c| c.name == client) {
            report.add_deep(deep);
        }
        self.refresh_status();
    }

    /// Adds what the client's target server showed, and its problems.
    pub fn add_target(&mut self, client: &str, view: crate::pg::target::TargetView) {
        let client_dir = self.root.join(client);
        if let Some(report) = self.clients.iter_mut().find(|c| c.name == client) {
            report.add_target(view, &client_dir);
        }
        self.refresh_status();
    }

    /// The client's window re-judged with the segments found unusable, and its recovery point.
    pub fn set_line(
        &mut self,
        client: &str,
        line: &Continuity,
        recovery_point: Option<&RecoveryPoint>,
    ) {
        if let Some(report) = self.clients.iter_mut().find(|c| c.name == client) {
            report.set_line(line, recovery_point);
        }
    }

    /// Adds problems found by reading files (the quick check of new segments).
    pub fn add_problems(&mut self, client: &str, problems: Vec<crate::checks::health::Problem>) {
        if let Some(report) = self.clients.iter_mut().find(|c| c.name == client) {
            report.problems.extend(problems);
            report.status = health::status_of(&report.problems);
        }
        self.refresh_status();
    }

    /// The root's status is its worst client's; unknown for a root without clients.
    fn refresh_status(&mut self) {
        self.status = worst(&self.clients);
    }

    pub fn build(catalog: &Catalog, config: &Config, now: SystemTime) -> CheckReport {
        let clients: Vec<ClientReport> = catalog
            .clients
            .iter()
            .map(|c| ClientReport::build(c, config, now))
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
            target: None,
        };
        report.wal.set_line(continuity);
        report
    }
}
