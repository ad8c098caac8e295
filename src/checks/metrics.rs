//! The health report as Prometheus metrics (text exposition format), for
//! `walwarden check --format prometheus` or node_exporter's textfile
//! collector (`--textfile PATH`, written atomically).

use std::fmt::Write;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::checks::health::Status;
use crate::checks::report::CheckReport;

fn seconds(time: SystemTime) -> f64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Label values escaped as the exposition format wants: `\`, `"` and newlines.
fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

struct Family {
    name: &'static str,
    help: &'static str,
    kind: &'static str,
}

const FAMILIES: [Family; 15] = [
    Family {
        name: "walwarden_client_status",
        help: "Client health: 0 ok, 1 warning, 2 critical, 3 unknown.",
        kind: "gauge",
    },
    Family {
        name: "walwarden_last_arrival_timestamp_seconds",
        help: "When the newest WAL file arrived (mtime).",
        kind: "gauge",
    },
    Family {
        name: "walwarden_restorable_to_timestamp_seconds",
        help: "The newest moment a restore brings back.",
        kind: "gauge",
    },
    Family {
        name: "walwarden_last_commit_timestamp_seconds",
        help: "The last commit a restore to the end brings back, read from the WAL (absent when unknown).",
        kind: "gauge",
    },
    Family {
        name: "walwarden_wal_gaps",
        help: "Runs of missing segments a restore needs.",
        kind: "gauge",
    },
    Family {
        name: "walwarden_wal_segments",
        help: "Archived segments.",
        kind: "gauge",
    },
    Family {
        name: "walwarden_wal_bytes",
        help: "Bytes in the WAL archive.",
        kind: "gauge",
    },
    Family {
        name: "walwarden_base_backup_bytes",
        help: "Bytes in the base backup folder.",
        kind: "gauge",
    },
    Family {
        name: "walwarden_problems",
        help: "Problems that count toward the status, by code.",
        kind: "gauge",
    },
    Family {
        name: "walwarden_deep_verified_timestamp_seconds",
        help: "When check --deep last read the archive.",
        kind: "gauge",
    },
    Family {
        name: "walwarden_deep_failures",
        help: "Files check --deep found damaged or foreign.",
        kind: "gauge",
    },
    Family {
        name: "walwarden_last_drill_timestamp_seconds",
        help: "When the last successful restore drill ran.",
        kind: "gauge",
    },
    Family {
        name: "walwarden_last_drill_duration_seconds",
        help: "How long the last successful restore drill took (measured).",
        kind: "gauge",
    },
    Family {
        name: "walwarden_restore_estimate_seconds",
        help: "A restore's time today, estimated from the last drill's rates and today's sizes (absent without one).",
        kind: "gauge",
    },
    Family {
        name: "walwarden_rto_seconds",
        help: "The recovery time the client is held to (its rto; absent when unset).",
        kind: "gauge",
    },
];

pub fn prometheus(report: &CheckReport) -> String {
    let mut samples: Vec<(&str, String, f64)> = Vec::new();
    for client in &report.clients {
        let c = format!("client=\"{}\"", label(&client.name));
        let status = match client.status {
            Status::Ok => 0.0,
            Status::Warning => 1.0,
            Status::Critical => 2.0,
            Status::Unknown => 3.0,
        };
        samples.push(("walwarden_client_status", c.clone(), status));
        if let Some(t) = client.wal.last_arrival {
            samples.push((
                "walwarden_last_arrival_timestamp_seconds",
                c.clone(),
                seconds(t),
            ));
        }
        if let Some(t) = client.restorable_to {
            samples.push((
                "walwarden_restorable_to_timestamp_seconds",
                c.clone(),
                seconds(t),
            ));
        }
        if let Some(t) = client.wal.last_commit {
            samples.push((
                "walwarden_last_commit_timestamp_seconds",
                c.clone(),
                seconds(t),
            ));
        }
        samples.push((
            "walwarden_wal_gaps",
            c.clone(),
            client.wal.gaps.len() as f64,
        ));
        samples.push((
            "walwarden_wal_segments",
            c.clone(),
            client.wal.segments as f64,
        ));
        samples.push(("walwarden_wal_bytes", c.clone(), client.wal.bytes as f64));
        samples.push((
            "walwarden_base_backup_bytes",
            c.clone(),
            client.base.bytes as f64,
        ));
        let mut codes: Vec<&str> = client
            .problems
            .iter()
            .filter(|p| p.counts())
            .map(|p| p.code.as_str())
            .collect();
        codes.sort_unstable();
        for code in codes
            .iter()
            .copied()
            .collect::<std::collections::BTreeSet<_>>()
        {
            let count = codes.iter().filter(|c| **c == code).count();
            samples.push((
                "walwarden_problems",
                format!("{c},code=\"{code}\""),
                count as f64,
            ));
        }
        if let Some(drill) = &client.last_drill {
            samples.push((
                "walwarden_last_drill_timestamp_seconds",
                c.clone(),
                drill.at_unix as f64,
            ));
            samples.push((
                "walwarden_last_drill_duration_seconds",
                c.clone(),
                drill.seconds,
            ));
        }
        if let Some(rto) = &client.rto {
            if let Some(estimate) = rto.estimate_seconds {
                samples.push(("walwarden_restore_estimate_seconds", c.clone(), estimate));
            }
            if let Some(limit) = rto.limit_seconds {
                samples.push(("walwarden_rto_seconds", c.clone(), limit));
            }
        }
        if let Some(deep) = &client.deep {
            if let Some(t) = deep.verified_at {
                samples.push((
                    "walwarden_deep_verified_timestamp_seconds",
                    c.clone(),
                    seconds(t),
                ));
            }
            samples.push((
                "walwarden_deep_failures",
                c.clone(),
                deep.problems.len() as f64,
            ));
        }
    }
    let mut out = String::new();
    for family in &FAMILIES {
        let rows: Vec<_> = samples
            .iter()
            .filter(|(name, _, _)| *name == family.name)
            .collect();
        if rows.is_empty() {
            continue;
        }
        let _ = writeln!(out, "# HELP {} {}", family.name, family.help);
        let _ = writeln!(out, "# TYPE {} {}", family.name, family.kind);
        for (name, labels, value) in rows {
            let _ = writeln!(out, "{name}{{{labels}}} {value}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
