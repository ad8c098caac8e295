//! Part of the preflight: the line of WAL the restore follows, judged with
//! the same verdict `check` gives (the continuity analysis, with the
//! segments the quick check found bad cutting it), the recovery target
//! placed inside the window, and the refusal when replay could not get
//! where it is asked to go. All before anything is touched.

use std::time::UNIX_EPOCH;

use super::{Runner, StepKind};
use crate::archive::continuity::{Continuity, LineRequest, OffLine};
use crate::archive::wal::Timeline;
use crate::checks::quick::{self, QuickCache, QuickInput};
use crate::checks::recovery_point::{self, RecoveryPoint};
use crate::ops::restore::error::{LineRefusal, PreflightRefusal, RestoreError};
use crate::ops::restore::journal::Outcome;
use crate::ops::restore::recovery_conf::{self, TargetTime};

/// What the preflight settled about the line and the target.
pub(super) struct LinePlan {
    pub line: Continuity,
    /// The target PostgreSQL is given; `None` replays to the line's end.
    pub target: Option<TargetTime>,
    /// The last commit or abort the line holds before its end (or its break).
    pub recovery_point: Option<RecoveryPoint>,
}

/// Why a timeline cannot be followed from the base backup, in words.
pub(crate) fn off_line_reason(off: &OffLine) -> String {
    match off {
        OffLine::HistoryMissing { timeline } => format!(
            "its history file {:08X}.history is neither in the archive nor in pg_wal.tar.gz",
            timeline.0
        ),
        OffLine::ForkedBeforeBase {
            parent,
            switch_point,
            ..
        } => format!(
            "it left timeline {} at {switch_point}, before the base backup began",
            parent.0
        ),
        OffLine::NotDescendant { .. } => {
            "its history does not pass through the base backup's timeline".to_owned()
        }
    }
}

fn micros(point: &RecoveryPoint) -> i64 {
    point
        .transaction
        .time
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

fn text_of(micros: i64) -> String {
    TargetTime::from_unix_micros(micros).map_or_else(|| "?".to_owned(), |t| t.to_string())
}

impl Runner<'_> {
    pub(super) fn plan_line(&mut self) -> Result<LinePlan, RestoreError> {
        let client = self.client;
        let request = self.request;
        // The verdict `check` gives: segments the quick check found bad end the line.
        let input = QuickInput::borrowed(client);
        let mut cache = QuickCache::load(quick::default_cache_path().as_deref());
        cache.check(&input);
        let unusable = cache.unusable(&input);
        // Remembering verdicts is a speed-up only; a restore goes on without it.
        let _ = cache.save();
        let (line, recovery_point) = recovery_point::judge_line(
            client,
            LineRequest {
                timeline: request.timeline.map(Timeline),
                unusable: Some(&unusable),
            },
        );
        let base = line.base_timeline.map_or(1, |t| t.0);
        if let (Some(off), Some(timeline)) = (&line.requested_off_line, request.timeline) {
            return Err(PreflightRefusal::Line(LineRefusal::TimelineOffLine {
                timeline,
                base,
                why: off_line_reason(off),
            })
            .into());
        }
        if request.timeline.is_none()
            && let Some(off) = &line.production_off_line
        {
            return Err(PreflightRefusal::Line(LineRefusal::ProductionOffLine {
                production: off.timeline().0,
                base,
                why: off_line_reason(off),
            })
            .into());
        }

        let asked = match &request.target_time {
            Some(text) => {
                Some(recovery_conf::parse_target_time(text).map_err(PreflightRefusal::TargetTime)?)
            }
            None => None,
        };
        let window_end = recovery_point
            .as_ref()
            .map(micros)
            .or_else(|| line.restorable_to.map(unix_micros));
        let target = match asked {
            Some(target) => {
                if let Some(from) = line.restorable_from.map(unix_micros)
                    && target.unix_micros() < from
                {
                    return Err(PreflightRefusal::TargetBeforeWindow {
                        target: target.to_string(),
                        consistent: text_of(from),
                        end: window_end.map_or_else(|| "?".to_owned(), text_of),
                    }
                    .into());
                }
                // Past the last arrival there is no WAL at all: a mistyped
                // year, or "now" for "everything". Refused with the window.
                if let Some(last_arrival) = line.restorable_to.map(unix_micros)
                    && target.unix_micros() > last_arrival
                {
                    return Err(PreflightRefusal::TargetAfterWindow {
                        target: target.to_string(),
                        consistent: line
                            .restorable_from
                            .map(unix_micros)
                            .map_or_else(|| "?".to_owned(), text_of),
                        last_commit: window_end.map_or_else(|| "?".to_owned(), text_of),
                        last_arrival: text_of(last_arrival),
                    }
                    .into());
                }
                // Between the last commit and the last arrival, a target is
                // the end: PostgreSQL 13+ would stop with "recovery ended
                // before configured recovery target was reached".
                if line.reaches_newest && window_end.is_some_and(|end| target.unix_micros() >= end)
                {
                    self.driver.progress(
                        StepKind::Preflight,
                        &format!(
                            "--target-time {target} is at or after the archive's last commit ({}): restoring to the end, with no recovery target",
                            window_end.map_or_else(|| "?".to_owned(), text_of)
                        ),
                    );
                    None
                } else {
                    Some(target)
                }
            }
            None => None,
        };

        // A line that stops short of its end: a gap, or a segment known to be bad.
        let break_at = line
            .gaps
            .first()
            .map(|gap| {
                let why = if gap.stand_ins.is_empty() {
                    format!("{} segment(s) missing from {}", gap.count, gap.first)
                } else {
                    format!(
                        "{} is missing, and PostgreSQL would read {} instead and replay what the timeline switch abandoned",
                        gap.first,
                        gap.stand_ins.join(", ")
                    )
                };
                (gap.first.clone(), why)
            })
            .or_else(|| {
                line.stopped_at_bad.as_ref().map(|bad| {
                    (
                        bad.clone(),
                        format!("{bad} is corrupt, foreign or misnamed (the quick check's verdict)"),
                    )
                })
            });
        if let Some((segment, why)) = break_at {
            let before_break = match (target, &recovery_point) {
                (Some(target), Some(point)) => target.unix_micros() <= micros(point),
                _ => false,
            };
            if !before_break {
                let refusal = LineRefusal::Broken {
                    segment,
                    why,
                    through: line
                        .restorable_through
                        .clone()
                        .unwrap_or_else(|| "the base backup".to_owned()),
                    newest: line.newest.clone().unwrap_or_else(|| "?".to_owned()),
                    before: recovery_point.as_ref().map_or_else(
                        || "no commit found before it".to_owned(),
                        |p| format!("its last commit before it is at {}", text_of(micros(p))),
                    ),
                };
                if !request.forced.iter().any(|f| f == "wal-line") {
                    return Err(PreflightRefusal::Line(refusal).into());
                }
                self.driver.progress(
                    StepKind::Preflight,
                    &format!("FORCED past (--force wal-line): {refusal}"),
                );
                self.journal
                    .record("forced", Outcome::Skipped, refusal.to_string(), None)
                    .map_err(|source| RestoreError::Journal {
                        path: self.journal.path().to_owned(),
                        source,
                    })?;
            }
        }
        Ok(LinePlan {
            line,
            target,
            recovery_point,
        })
    }
}

fn unix_micros(time: std::time::SystemTime) -> i64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}
