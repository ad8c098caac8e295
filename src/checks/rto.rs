//! The recovery time a client can be held to: how long a restore of it
//! would take today, estimated from its last successful drill's rates and
//! today's sizes, and the `rto_exceeded` rule when that passes the client's
//! `rto` (or no drill exists to estimate from while an `rto` is set).
//!
//! The model has three parts, each measured by the drill (its phase times):
//! - unpacking scales with the base backup's tarballs (compressed bytes, at
//!   the drill's unpack rate);
//! - replay scales with the WAL on the restore line from the base backup's
//!   start to its end (segments times the segment size: what the restore
//!   hands PostgreSQL, at the drill's replay rate);
//! - the rest is fixed: the preflight, and the server's start until it
//!   accepts writes less the replay inside it (crash-recovery set-up, the
//!   end-of-recovery checkpoint, promotion).
//!
//! With today's sizes equal to the drill's, the estimate is the drill's
//! phase total. Pure: no I/O, no clock.

use serde::Serialize;

use crate::checks::drills::DrillRecord;
use crate::checks::health::{Problem, ProblemCode, Status};
pub use crate::checks::phase_times::RestoreSizes;

/// A client's estimated recovery time, and what it was made of.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RtoEstimate {
    /// Seconds a restore to the end would take today; `None` without a
    /// drill to estimate from (`reason` says why).
    pub estimate_seconds: Option<f64>,
    /// The client's `rto`, in seconds, when set.
    pub limit_seconds: Option<f64>,
    /// When the drill the rates come from ran (RFC 3339).
    pub drill_at: Option<String>,
    /// That drill's measured time, in seconds.
    pub drill_seconds: Option<f64>,
    /// Today's sizes the estimate scales by; `None` when the WAL on the line
    /// is unknown (wal/ unreadable, no base backup to start from).
    pub sizes: Option<RestoreSizes>,
    /// The sizes that drill restored.
    pub drill_sizes: Option<RestoreSizes>,
    /// The drill's rates: compressed base bytes unpacked, and WAL replayed,
    /// in MB (10^6 bytes) a second.
    pub unpack_mb_per_s: Option<f64>,
    pub replay_mb_per_s: Option<f64>,
    /// The part that does not scale: preflight, and start until writes less replay.
    pub fixed_seconds: Option<f64>,
    /// Why there is no estimate, or what it could not scale.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl RtoEstimate {
    pub fn exceeded(&self) -> bool {
        match (self.estimate_seconds, self.limit_seconds) {
            (Some(estimate), Some(limit)) => estimate > limit,
            (None, Some(_)) => true,
            _ => false,
        }
    }

    /// `about 4m 10s (from the drill of 2026-11-25T09:00:00Z; rto 30m)`.
    pub fn text(&self) -> String {
        let limit = self
            .limit_seconds
            .map(|l| format!("; rto {}", seconds_text(l)))
            .unwrap_or_default();
        match (self.estimate_seconds, &self.drill_at) {
            (Some(estimate), Some(at)) => format!(
                "about {} (from the drill of {at}{limit})",
                seconds_text(estimate)
            ),
            _ => format!(
                "unknown: {}{limit}",
                self.note.as_deref().unwrap_or("no drill to estimate from")
            ),
        }
    }
}

/// Seconds as people read a recovery time: `45s`, `4m 10s`, `1h 5m`.
pub fn seconds_text(seconds: f64) -> String {
    let s = seconds.max(0.0).round() as u64;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m {}s", s / 60, s % 60),
        _ => format!("{}h {}m", s / 3600, s / 60 % 60),
    }
}

/// The estimate for a client whose sizes today are `sizes`, from its last
/// successful drill `last` (with phase times and sizes), held to `limit`.
/// `None` when there is nothing to say: no drill and no `rto`.
pub fn estimate(
    sizes: Option<RestoreSizes>,
    last: Option<&DrillRecord>,
    limit: Option<std::time::Duration>,
) -> Option<RtoEstimate> {
    let limit_seconds = limit.map(|l| l.as_secs_f64());
    let mut out = RtoEstimate {
        estimate_seconds: None,
        limit_seconds,
        drill_at: last.map(|d| d.at.clone()),
        drill_seconds: last.map(|d| d.seconds),
        sizes,
        drill_sizes: last.and_then(|d| d.sizes),
        unpack_mb_per_s: None,
        replay_mb_per_s: None,
        fixed_seconds: None,
        note: None,
    };
    let Some(drill) = last else {
        limit?;
        out.note = Some("no successful drill to estimate from".to_owned());
        return Some(out);
    };
    // Without today's WAL extent any figure would leave out the replay: say so
    // instead of giving a confident, far too low time.
    let Some(sizes) = sizes else {
        out.note = Some(
            "the WAL a restore would replay is unknown (wal/ unreadable or no base backup)"
                .to_owned(),
        );
        return Some(out);
    };
    let phases = &drill.phases;
    let (Some(unpack), Some(start), Some(drilled)) = (
        phases.unpack_seconds,
        phases.start_to_writable_seconds,
        drill.sizes,
    ) else {
        out.note = Some(
            "the last drill recorded no phase times (it predates them): run a drill".to_owned(),
        );
        return Some(out);
    };
    let mut notes = Vec::new();
    // Unpacking: the drill's rate over today's base; a drill of an empty base keeps its time.
    let unpack_now = if drilled.base_bytes > 0 && unpack > 0.0 {
        out.unpack_mb_per_s = Some(drilled.base_bytes as f64 / 1e6 / unpack);
        unpack * sizes.base_bytes as f64 / drilled.base_bytes as f64
    } else {
        unpack
    };
    // Replay: the drill's rate over today's line; without a measurable
    // rate (too little WAL replayed) its time stays in the fixed part.
    let replay = phases.replay.filter(|r| r.seconds > 0.0 && r.wal_bytes > 0);
    let (replay_now, replay_then) = match replay {
        Some(r) => {
            let rate = r.wal_bytes as f64 / r.seconds;
            out.replay_mb_per_s = Some(rate / 1e6);
            (sizes.wal_bytes as f64 / rate, r.seconds)
        }
        None => {
            notes
                .push("the drill's replay was too short to measure a rate: WAL growth not counted");
            (0.0, 0.0)
        }
    };
    let fixed = phases.preflight_seconds.unwrap_or(0.0) + (start - replay_then).max(0.0);
    out.fixed_seconds = Some(fixed);
    out.estimate_seconds = Some(fixed + unpack_now + replay_now);
    if !notes.is_empty() {
        out.note = Some(notes.join("; "));
    }
    Some(out)
}

/// `rto_exceeded` (a warning) for `client` when `estimate` passes its limit.
pub fn problem(client: &str, estimate: &RtoEstimate) -> Option<Problem> {
    if !estimate.exceeded() {
        return None;
    }
    let limit = estimate
        .limit_seconds
        .map_or_else(String::new, seconds_text);
    Some(match estimate.estimate_seconds {
        Some(seconds) => Problem::new(
            ProblemCode::RtoExceeded,
            Status::Warning,
            format!(
                "a restore would take about {} today, more than its rto of {limit} (rates of the drill of {})",
                seconds_text(seconds),
                estimate.drill_at.as_deref().unwrap_or("?")
            ),
            format!(
                "take a new base backup (less WAL to replay), restore on faster disks, or raise rto for {client} if it is acceptable; `walwarden drill {client}` measures it again"
            ),
        ),
        None => Problem::new(
            ProblemCode::RtoExceeded,
            Status::Warning,
            format!(
                "its rto is {limit} but no restore time can be estimated: {}",
                estimate.note.as_deref().unwrap_or("no drill")
            ),
            format!("run `walwarden drill {client}`: its phase times give the estimate"),
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::phase_times::{PhaseTimes, ReplayPhase};
    use std::time::Duration;

    fn drill(sizes: RestoreSizes) -> DrillRecord {
        DrillRecord {
            client: "acme".into(),
            at: "2026-11-25T09:00:00Z".into(),
            at_unix: 0,
            success: true,
            detail: String::new(),
            seconds: 64.0,
            reached: None,
            reached_segment: None,
            last_commit: None,
            phases: PhaseTimes {
                preflight_seconds: Some(1.0),
                unpack_seconds: Some(10.0),
                replay: Some(ReplayPhase {
                    seconds: 40.0,
                    wal_bytes: 4_000_000_000,
                    segments: 239,
                    prefetched: 230,
                }),
                start_to_writable_seconds: Some(50.0),
            },
            sizes: Some(sizes),
        }
    }

    const THEN: RestoreSizes = RestoreSizes {
        base_bytes: 1_000_000_000,
        wal_bytes: 4_000_000_000,
    };

    #[test]
    fn unchanged_sizes_give_the_drills_phase_total_and_growth_scales_each_part() {
        let same = estimate(Some(THEN), Some(&drill(THEN)), None).unwrap();
        assert_eq!(same.estimate_seconds, Some(61.0), "1 + 10 + 50");
        assert_eq!(same.fixed_seconds, Some(11.0), "preflight 1 + (50 - 40)");
        assert_eq!(same.unpack_mb_per_s, Some(100.0));
        assert_eq!(same.replay_mb_per_s, Some(100.0));
        assert!(!same.exceeded());

        let grown = RestoreSizes {
            base_bytes: 2_000_000_000,
            wal_bytes: 8_000_000_000,
        };
        let more = estimate(
            Some(grown),
            Some(&drill(THEN)),
            Some(Duration::from_secs(90)),
        )
        .unwrap();
        assert_eq!(more.estimate_seconds, Some(11.0 + 20.0 + 80.0));
        assert!(more.exceeded());
        let problem = problem("acme", &more).unwrap();
        assert_eq!(problem.code, ProblemCode::RtoExceeded);
        assert_eq!(problem.severity, Status::Warning);
        assert!(problem.message.contains("1m 51s"), "{}", problem.message);
        assert!(problem.message.contains("1m 30s"), "{}", problem.message);
    }

    #[test]
    fn without_a_drill_an_rto_is_a_problem_and_nothing_is_said_without_one() {
        assert_eq!(estimate(Some(THEN), None, None), None);
        let none = estimate(Some(THEN), None, Some(Duration::from_secs(1800))).unwrap();
        assert!(none.exceeded());
        assert!(
            none.text().starts_with("unknown: no successful drill"),
            "{}",
            none.text()
        );
        let problem = problem("acme", &none).unwrap();
        assert!(
            problem.message.contains("no successful drill"),
            "{}",
            problem.message
        );

        let mut old = drill(THEN);
        old.phases = PhaseTimes::default();
        let old = estimate(Some(THEN), Some(&old), Some(Duration::from_secs(1800))).unwrap();
        assert_eq!(old.estimate_seconds, None);
        assert!(old.note.unwrap().contains("predates"));

        let unknown = estimate(None, Some(&drill(THEN)), Some(Duration::from_secs(1800))).unwrap();
        assert_eq!(unknown.estimate_seconds, None, "no WAL extent, no figure");
        assert!(
            unknown.exceeded(),
            "an rto that cannot be checked is a problem"
        );
        assert!(unknown.text().contains("unknown"), "{}", unknown.text());
    }

    #[test]
    fn a_drill_with_too_little_replay_keeps_its_start_time_fixed() {
        let mut short = drill(THEN);
        short.phases.replay = Some(ReplayPhase {
            seconds: 0.0,
            wal_bytes: 16 << 20,
            segments: 1,
            prefetched: 0,
        });
        let e = estimate(Some(THEN), Some(&short), None).unwrap();
        assert_eq!(e.estimate_seconds, Some(61.0));
        assert_eq!(e.replay_mb_per_s, None);
        assert!(e.note.unwrap().contains("too short"));
        assert_eq!(seconds_text(3725.0), "1h 2m");
        assert_eq!(seconds_text(59.4), "59s");
    }
}
