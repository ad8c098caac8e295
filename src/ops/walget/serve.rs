//! One request from PostgreSQL: `%f` wanted in `%p`.
//!
//! A segment comes from the spool when the prefetcher has it ready (one
//! rename), after waiting for it when it is being written, else straight
//! from the archive, verified either way. The first segment request while
//! recovery runs starts the prefetcher. A miss is silent when it is the
//! normal end of the archive (a segment after the line's last, a segment of
//! a timeline PostgreSQL merely probes, a `.history` probe); a segment the
//! line needs that is absent is a gap and says so, and so is a parent
//! timeline's file of a number past its switch, which would stand in for
//! the child's missing one with the tail the switch abandoned. Every answer
//! is recorded in the request log.

use std::path::Path;
use std::time::{Duration, Instant};

use super::fetch::{self, FetchError, Fetched};
use super::plan::WalGetPlan;
use super::progress::{self, RequestOutcome, RequestRecord};
use super::spool::Spool;
use crate::archive::wal::{Lsn, SegmentId, SegmentNo, WalFileKind};
use crate::pg::pglog::walget_line::{RefusalCode, WalGetLine};

/// How long a request waits for the prefetcher to finish the very file it
/// is writing before fetching it itself (a 1 GiB segment takes seconds).
const IN_FLIGHT_WAIT: Duration = Duration::from_secs(30);

/// The answer to one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    Handed {
        outcome: RequestOutcome,
        bytes: u64,
    },
    /// Not in the archive; `gap` when the line needs it.
    NotFound {
        gap: bool,
        reason: String,
    },
    Refused {
        code: RefusalCode,
        reason: String,
    },
}

impl Answer {
    /// What PostgreSQL reads: 0 handed over, 1 anything else.
    pub fn exit_code(&self) -> i32 {
        match self {
            Answer::Handed { .. } => 0,
            _ => 1,
        }
    }

    /// The stderr line for the server log, when there is something to say.
    pub fn log_line(&self, file: &str) -> Option<String> {
        match self {
            Answer::Handed { .. } | Answer::NotFound { gap: false, .. } => None,
            Answer::NotFound { gap: true, reason } => {
                Some(WalGetLine::missing(file, reason).to_string())
            }
            Answer::Refused { code, reason } => {
                Some(WalGetLine::refused(file, *code, reason).to_string())
            }
        }
    }

    fn record(&self, file: &str) -> RequestRecord {
        match self {
            Answer::Handed { outcome, bytes } => RequestRecord {
                bytes: *bytes,
                ..RequestRecord::new(file, *outcome)
            },
            Answer::NotFound { gap, .. } => RequestRecord::new(
                file,
                if *gap {
                    RequestOutcome::Gap
                } else {
                    RequestOutcome::NotFound
                },
            ),
            Answer::Refused { code, reason } => RequestRecord {
                code: Some(code.as_str().to_owned()),
                detail: Some(reason.clone()),
                ..RequestRecord::new(
                    file,
                    if code.blames_the_file() {
                        RequestOutcome::Refused
                    } else {
                        RequestOutcome::Failed
                    },
                )
            },
        }
    }
}

/// Serves `file` into `dest` (relative to the data directory, where
/// PostgreSQL runs the command) and records the answer. `start_prefetcher`
/// is called when a prefetcher should run and none does.
pub fn serve(
    plan: &WalGetPlan,
    file: &str,
    dest: &Path,
    start_prefetcher: &mut dyn FnMut(),
) -> Answer {
    let started = Instant::now();
    let answer = answer(plan, file, dest, start_prefetcher);
    let record = RequestRecord {
        took_us: started.elapsed().as_micros() as u64,
        ..answer.record(file)
    }
    .with_usage();
    // Bookkeeping never fails a request: PostgreSQL's replay matters more.
    let _ = progress::append(&plan.request_log, &record);
    answer
}

fn answer(
    plan: &WalGetPlan,
    file: &str,
    dest: &Path,
    start_prefetcher: &mut dyn FnMut(),
) -> Answer {
    // Files are taken only from the folder itself, held open: a link put in
    // its place (the PostgreSQL user can) is not followed, and the segment
    // comes from the archive instead.
    let pinned = || Spool::pinned(&plan.spool_dir).ok();
    match WalFileKind::classify(file) {
        WalFileKind::Segment {
            name,
            compressed: false,
            partial: false,
        } => match name.resolve(plan.segment_size) {
            Ok(id) => {
                let by_path = Spool::new(&plan.spool_dir);
                let wanted = plan.recovery_in_progress() && by_path.prefetcher().is_none();
                // Made here when missing: the restore made it, but a
                // prefetcher that stopped (idle, paused at a target) removed it.
                let made = wanted && by_path.ensure().is_ok();
                let spool = pinned();
                // Not started where it could not work (a link in its place,
                // no /proc): it would stop at once, one process per request.
                if made && spool.is_some() {
                    start_prefetcher();
                }
                segment(plan, spool.as_ref(), id, file, dest)
            }
            // A name that makes no sense for this segment size: not ours to judge.
            Err(_) => other(plan, file, dest),
        },
        WalFileKind::TimelineHistory {
            compressed: false, ..
        } => {
            if let Some(spool) = pinned()
                && let Ok(Some(bytes)) = spool.take(file, dest)
            {
                return Answer::Handed {
                    outcome: RequestOutcome::Spool,
                    bytes,
                };
            }
            answered(fetch::fetch_history(plan, file, dest), file)
        }
        _ => other(plan, file, dest),
    }
}

fn segment(
    plan: &WalGetPlan,
    spool: Option<&Spool>,
    id: SegmentId,
    file: &str,
    dest: &Path,
) -> Answer {
    if let Some(switch) = plan.abandoned_tail(id) {
        return abandoned(plan, id, switch);
    }
    let deadline = Instant::now() + IN_FLIGHT_WAIT;
    while let Some(spool) = spool {
        match spool.take(file, dest) {
            Ok(Some(bytes)) => {
                return Answer::Handed {
                    outcome: RequestOutcome::Spool,
                    bytes,
                };
            }
            Ok(None) => {}
            // An unusable spool is no reason to fail: the archive is still there.
            Err(_) => break,
        }
        let writing = spool.is_in_flight(file) && spool.prefetcher().is_some();
        if !writing || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let gap = is_gap(plan, id);
    match fetch::fetch_segment(plan, id, file, dest) {
        Err(FetchError::NotInArchive) if gap => Answer::NotFound {
            gap: true,
            reason: format!(
                "not in {}, yet the restore's line goes on to {}",
                plan.archive_dir.display(),
                plan.last_segment.as_deref().unwrap_or("a later segment")
            ),
        },
        Err(FetchError::AbandonedTail { switch }) => abandoned(plan, id, switch),
        result => answered(result, file),
    }
}

/// A missing segment is a gap when the line needs exactly this file: the
/// expected timeline for its number, from the base backup's start up to
/// the line's last segment.
fn is_gap(plan: &WalGetPlan, id: SegmentId) -> bool {
    plan.expected(id.segment) == id && in_line(plan, id.segment)
}

fn in_line(plan: &WalGetPlan, segment: SegmentNo) -> bool {
    plan.first().is_none_or(|f| segment >= f) && plan.last().is_some_and(|l| segment <= l)
}

/// A parent's file from its switch segment on (PostgreSQL asks for it when
/// the child's file of that number is missing): never handed over, whether
/// the archive has it or not. Inside the line it is answered as the gap it
/// would paper over, with the line's usual `missing ... (wal-gap)`: the
/// child's file is what is missing, the log follower already stops the
/// replay's story there, and no new code is needed for a file that is not
/// itself at fault. Past the line's end it is the usual silent miss.
fn abandoned(plan: &WalGetPlan, id: SegmentId, switch: Lsn) -> Answer {
    let next = plan
        .line
        .iter()
        .find(|t| t.timeline > id.timeline.0)
        .map_or(0, |t| t.timeline);
    Answer::NotFound {
        gap: in_line(plan, id.segment),
        reason: format!(
            "timeline {} ends at {switch} on the restore's line, so its file of this number holds \
             what the switch to timeline {next} abandoned and is never replayed; the line needs {}",
            id.timeline.0,
            plan.file_name(plan.expected(id.segment))
        ),
    }
}

fn other(plan: &WalGetPlan, file: &str, dest: &Path) -> Answer {
    answered(fetch::fetch_other(plan, file, dest), file)
}

fn answered(result: Result<Fetched, FetchError>, file: &str) -> Answer {
    match result {
        Ok(fetched) => Answer::Handed {
            outcome: RequestOutcome::Archive,
            bytes: fetched.bytes,
        },
        Err(FetchError::NotInArchive) => Answer::NotFound {
            gap: false,
            reason: format!("{file} is not in the archive"),
        },
        Err(FetchError::Refused { code, reason }) => Answer::Refused { code, reason },
        // Only segments have a tail, and `segment` answers for those.
        Err(FetchError::AbandonedTail { switch }) => Answer::NotFound {
            gap: false,
            reason: format!("{file} lies past its timeline's switch at {switch}"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::demo::{Cluster, gzip};
    use crate::ops::walget::plan::tests::{SEG, three_timelines};

    /// The three-timeline plan with its archive and data folders made, and
    /// the cluster its segments come from.
    fn case() -> (tempfile::TempDir, WalGetPlan, Cluster) {
        let dir = tempfile::tempdir().unwrap();
        let plan = three_timelines(dir.path());
        std::fs::create_dir_all(&plan.archive_dir).unwrap();
        std::fs::create_dir_all(&plan.data_dir).unwrap();
        let cluster = Cluster::new(plan.system_identifier, SEG);
        (dir, plan, cluster)
    }

    #[test]
    fn misses_are_silent_at_the_end_and_named_inside_the_line() {
        let (_dir, plan, cluster) = case();
        let dest = plan.data_dir.join("RECOVERYXLOG");
        let mut started = 0;
        let mut ask = |file: &str| serve(&plan, file, &dest, &mut || started += 1);

        // Inside the line (3..=0x10 on the expected timelines): a gap.
        let gap = ask("000000020000000000000009");
        assert_eq!(gap.exit_code(), 1);
        let line = gap.log_line("000000020000000000000009").unwrap();
        assert!(
            line.contains("missing 000000020000000000000009 (wal-gap)"),
            "{line}"
        );
        // The parent's file of that number, past its switch, is no stand-in:
        // the same gap.
        let tail = ask("000000010000000000000009");
        let line = tail.log_line("000000010000000000000009").unwrap();
        assert!(
            line.contains(
                "missing 000000010000000000000009 (wal-gap): timeline 1 ends at 0/8800000"
            ),
            "{line}"
        );
        // After the line's end, history probes, before the backup: silent.
        for quiet in [
            "000000030000000000000011",
            "00000004.history",
            "000000010000000000000002",
        ] {
            let answer = ask(quiet);
            assert_eq!(answer.exit_code(), 1, "{quiet}");
            assert_eq!(answer.log_line(quiet), None, "{quiet}");
        }
        // Outside recovery (no recovery.signal) no prefetcher is started.
        cluster
            .archive_segment(&plan.archive_dir, cluster.id(1, 3), None)
            .unwrap();
        assert_eq!(ask("000000010000000000000003").exit_code(), 0);
        std::fs::write(plan.data_dir.join("recovery.signal"), b"").unwrap();
        cluster
            .archive_segment(&plan.archive_dir, cluster.id(1, 4), None)
            .unwrap();
        assert_eq!(ask("000000010000000000000004").exit_code(), 0);
        // Not for a history request either.
        std::fs::write(
            plan.archive_dir.join("00000002.history.gz"),
            gzip(b"1\t0/8800000\tx\n").unwrap(),
        )
        .unwrap();
        assert_eq!(ask("00000002.history").exit_code(), 0);
        assert_eq!(started, 1);

        let records = progress::read(&plan.request_log).unwrap();
        let outcomes: Vec<RequestOutcome> = records.iter().map(|r| r.outcome).collect();
        use RequestOutcome::*;
        assert_eq!(
            outcomes,
            [
                Gap, Gap, NotFound, NotFound, NotFound, Archive, Archive, Archive
            ]
        );
        assert!(records.iter().all(|r| r.cpu_us > 0 || r.max_rss_kb > 0));
    }

    #[test]
    fn a_spooled_segment_is_taken_and_a_refusal_is_one_named_line() {
        let dir = tempfile::tempdir().unwrap();
        let plan = three_timelines(dir.path());
        std::fs::create_dir_all(&plan.archive_dir).unwrap();
        std::fs::create_dir_all(&plan.data_dir).unwrap();
        let spool = Spool::new(&plan.spool_dir);
        spool.ensure().unwrap();
        std::fs::write(spool.ready("000000010000000000000005"), b"ready").unwrap();
        let dest = plan.data_dir.join("RECOVERYXLOG");
        let answer = serve(&plan, "000000010000000000000005", &dest, &mut || {});
        assert_eq!(
            answer,
            Answer::Handed {
                outcome: RequestOutcome::Spool,
                bytes: 5
            }
        );
        let foreign = Cluster::new(99, SEG);
        foreign
            .archive_segment(&plan.archive_dir, foreign.id(1, 6), None)
            .unwrap();
        let answer = serve(&plan, "000000010000000000000006", &dest, &mut || {});
        let line = answer.log_line("000000010000000000000006").unwrap();
        assert!(
            line.starts_with("walwarden wal-get: refused 000000010000000000000006 (foreign-segment): system identifier 99"),
            "{line}"
        );
        assert!(!line.contains('\n'));
        assert!(!dest.exists(), "nothing is left for PostgreSQL to read");
    }

    /// Timeline 1 left for timeline 2 mid-segment 8 (0/8800000). When
    /// timeline 2's 8 is missing PostgreSQL asks for timeline 1's 8, which
    /// verifies (a good segment of this system, named right) but holds what
    /// the switch abandoned: refused as the gap, never spooled; timeline
    /// 1's 7 and timeline 2's 8 are served.
    #[test]
    fn a_parents_file_past_its_switch_is_refused_as_the_gap_it_would_hide() {
        let (_dir, plan, cluster) = case();
        for (tli, segno) in [(1, 7), (1, 8), (1, 9), (2, 8)] {
            cluster
                .archive_segment(&plan.archive_dir, cluster.id(tli, segno), None)
                .unwrap();
        }
        let dest = plan.data_dir.join("RECOVERYXLOG");
        let ask = |file: &str| {
            let _ = std::fs::remove_file(&dest);
            serve(&plan, file, &dest, &mut || {})
        };
        for tail in ["000000010000000000000008", "000000010000000000000009"] {
            let answer = ask(tail);
            assert!(
                matches!(answer, Answer::NotFound { gap: true, .. }),
                "{tail}: {answer:?}"
            );
            let line = answer.log_line(tail).unwrap();
            assert!(
                line.starts_with(&format!(
                    "walwarden wal-get: missing {tail} (wal-gap): timeline 1 ends at 0/8800000"
                )),
                "{line}"
            );
            assert!(line.contains("timeline 2 abandoned"), "{line}");
            assert!(!dest.exists(), "nothing is left for PostgreSQL to read");
        }
        assert_eq!(ask("000000010000000000000007").exit_code(), 0);
        assert_eq!(ask("000000020000000000000008").exit_code(), 0);
        // Nothing in the crate fetches it either (the prefetcher's path).
        std::fs::remove_file(&dest).unwrap();
        let id = cluster.id(1, 8);
        assert_eq!(
            fetch::fetch_segment(&plan, id, &plan.file_name(id), &dest),
            Err(FetchError::AbandonedTail {
                switch: Lsn(0x0880_0000)
            })
        );
        assert!(!dest.exists());
    }
}
