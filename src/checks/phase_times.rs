//! The phase times a restore reports and a drill records: preflight,
//! unpack, replay (with the WAL's bytes and rate) and the server's start
//! until it accepts writes, as plain numbers (seconds, bytes) that
//! serialise as they are. A drill's are what the recovery-time estimate
//! (`rto`) is made of, with the sizes they were measured on; measuring them
//! is `ops::phases`.

use serde::{Deserialize, Serialize};

use crate::archive::catalog::Client;
use crate::archive::wal::RawSegmentName;

/// The replay: WAL handed to PostgreSQL and how fast.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct ReplayPhase {
    /// From the first request of restore_command to the last segment handed over.
    pub seconds: f64,
    pub wal_bytes: u64,
    pub segments: u64,
    /// Of `segments`, how many the prefetcher had ready.
    pub prefetched: u64,
}

impl ReplayPhase {
    /// MB (10^6 bytes) of WAL per second.
    pub fn mb_per_s(&self) -> Option<f64> {
        (self.seconds > 0.0).then(|| self.wal_bytes as f64 / 1e6 / self.seconds)
    }
}

/// Each phase's duration in seconds; `None` for a phase that did not run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct PhaseTimes {
    #[serde(default)]
    pub preflight_seconds: Option<f64>,
    #[serde(default)]
    pub unpack_seconds: Option<f64>,
    #[serde(default)]
    pub replay: Option<ReplayPhase>,
    #[serde(default)]
    pub start_to_writable_seconds: Option<f64>,
}

impl PhaseTimes {
    /// The recovery time an engineer waits: preflight, unpack and the start
    /// until writes (the replay happens inside the start).
    pub fn total_seconds(&self) -> f64 {
        [
            self.preflight_seconds,
            self.unpack_seconds,
            self.start_to_writable_seconds,
        ]
        .into_iter()
        .flatten()
        .sum()
    }

    /// `preflight 0.4 s, unpack 3.1 s, replay 12.0 s (2147 MB, 179 MB/s, 120 of 128 prefetched), start to writes 14.2 s`
    pub fn text(&self) -> String {
        let mut parts = Vec::new();
        if let Some(s) = self.preflight_seconds {
            parts.push(format!("preflight {s:.1} s"));
        }
        if let Some(s) = self.unpack_seconds {
            parts.push(format!("unpack {s:.1} s"));
        }
        if let Some(replay) = &self.replay {
            let rate = replay
                .mb_per_s()
                .map_or_else(String::new, |r| format!(", {r:.0} MB/s"));
            parts.push(format!(
                "replay {:.1} s ({:.0} MB{rate}, {} of {} prefetched)",
                replay.seconds,
                replay.wal_bytes as f64 / 1e6,
                replay.prefetched,
                replay.segments
            ));
        }
        if let Some(s) = self.start_to_writable_seconds {
            parts.push(format!("start to writes {s:.1} s"));
        }
        parts.join(", ")
    }
}

/// What a restore of a client has to move: the sizes an estimate scales by.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoreSizes {
    /// The base backup's files as stored (base.tar.gz, pg_wal.tar.gz, manifest).
    pub base_bytes: u64,
    /// WAL on the restore line from the base backup's start to the line's
    /// newest segment, as replay reads it (segments times the segment size).
    pub wal_bytes: u64,
}

impl RestoreSizes {
    /// A client's sizes today, from its scan; `None` when the WAL a restore
    /// would replay is unknown: wal/ unreadable, or no base backup to start from.
    pub fn of(client: &Client) -> Option<RestoreSizes> {
        let line = &client.continuity;
        if client.wal.unreadable || line.needed_from.is_none() {
            return None;
        }
        let number = |name: &Option<String>| {
            name.as_deref()
                .and_then(RawSegmentName::parse)
                .and_then(|n| n.resolve(line.segment_size).ok())
                .map(|id| id.segment.0)
        };
        let segments = match (number(&line.needed_from), number(&line.newest)) {
            (Some(first), Some(last)) if last >= first => last - first + 1,
            _ => 0,
        };
        Some(RestoreSizes {
            base_bytes: client.base.total_bytes(),
            wal_bytes: segments * u64::from(line.segment_size),
        })
    }
}
