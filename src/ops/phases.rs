//! Where a restore's time goes, phase by phase, for the restore report and
//! the drill record: preflight, unpack, replay (with the WAL's bytes and
//! rate) and the server's start until it accepts writes. A recovery-time
//! estimate is made of these rates, so they are kept as plain numbers
//! (seconds, bytes) that serialise as they are.
//!
//! [`PhaseClock`] measures with a monotonic clock; the replay's bytes come
//! from the wal-get request log ([`ReplayPhase::from_stats`]).

use std::time::{Duration, Instant};

use crate::ops::walget::progress::ReplayStats;

/// A phase of a restore.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Phase {
    Preflight,
    Unpack,
    /// From the server's start until it accepts writes (promoted, out of recovery).
    StartToWritable,
}

pub use crate::checks::phase_times::{PhaseTimes, ReplayPhase};

impl ReplayPhase {
    /// From the helper's request log; `None` when no segment was handed over.
    pub fn from_stats(stats: &ReplayStats) -> Option<ReplayPhase> {
        (stats.segments > 0).then(|| ReplayPhase {
            seconds: stats.replay_secs().unwrap_or(0.0),
            wal_bytes: stats.wal_bytes,
            segments: stats.segments,
            prefetched: stats.from_spool,
        })
    }
}

/// Times phases as they begin and end.
#[derive(Debug, Clone, Default)]
pub struct PhaseClock {
    running: Vec<(Phase, Instant)>,
    times: PhaseTimes,
}

impl PhaseClock {
    pub fn begin(&mut self, phase: Phase) {
        self.begin_at(phase, Instant::now());
    }

    pub fn end(&mut self, phase: Phase) {
        self.end_at(phase, Instant::now());
    }

    pub fn begin_at(&mut self, phase: Phase, at: Instant) {
        self.running.retain(|(p, _)| *p != phase);
        self.running.push((phase, at));
    }

    /// Ends a phase that began; ending one that did not is ignored. A phase
    /// run twice (a resumed restore) adds up.
    pub fn end_at(&mut self, phase: Phase, at: Instant) {
        let Some(index) = self.running.iter().position(|(p, _)| *p == phase) else {
            return;
        };
        let (_, began) = self.running.remove(index);
        let seconds = at.saturating_duration_since(began).as_secs_f64();
        let slot = match phase {
            Phase::Preflight => &mut self.times.preflight_seconds,
            Phase::Unpack => &mut self.times.unpack_seconds,
            Phase::StartToWritable => &mut self.times.start_to_writable_seconds,
        };
        *slot = Some(slot.unwrap_or(0.0) + seconds);
    }

    pub fn set_replay(&mut self, replay: Option<ReplayPhase>) {
        self.times.replay = replay;
    }

    pub fn times(&self) -> PhaseTimes {
        self.times
    }

    /// How long a phase has been running (for a wizard's clock).
    pub fn running_for(&self, phase: Phase, now: Instant) -> Option<Duration> {
        self.running
            .iter()
            .find(|(p, _)| *p == phase)
            .map(|(_, began)| now.saturating_duration_since(*began))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_add_up_and_read_as_one_line() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let mut clock = PhaseClock::default();
        clock.begin_at(Phase::Preflight, at(0));
        clock.end_at(Phase::Preflight, at(400));
        clock.begin_at(Phase::Unpack, at(400));
        clock.end_at(Phase::Unpack, at(3_500));
        clock.end_at(Phase::StartToWritable, at(3_600));
        clock.begin_at(Phase::StartToWritable, at(3_600));
        assert_eq!(
            clock.running_for(Phase::StartToWritable, at(4_600)),
            Some(Duration::from_secs(1))
        );
        clock.end_at(Phase::StartToWritable, at(17_800));
        let stats = ReplayStats {
            segments: 128,
            from_spool: 120,
            wal_bytes: 128 << 24,
            first_request_ms: Some(1_000),
            last_handed_ms: Some(13_000),
            ..ReplayStats::default()
        };
        clock.set_replay(ReplayPhase::from_stats(&stats));
        let times = clock.times();
        assert!((times.total_seconds() - 17.7).abs() < 1e-9);
        assert_eq!(
            times.text(),
            "preflight 0.4 s, unpack 3.1 s, replay 12.0 s (2147 MB, 179 MB/s, 120 of 128 \
             prefetched), start to writes 14.2 s"
        );
        let json = serde_json::to_string(&times).unwrap();
        assert_eq!(serde_json::from_str::<PhaseTimes>(&json).unwrap(), times);
        assert_eq!(ReplayPhase::from_stats(&ReplayStats::default()), None);
    }
}
