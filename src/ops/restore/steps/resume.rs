//! Resuming an interrupted restore: which steps its journal says finished
//! (since the last restore that completed or was rolled back), so they are
//! not run again, and what the attempt asked for, so the rest runs with the
//! same settings.

use super::StepKind;
use crate::ops::restore::error::PreflightRefusal;
use crate::ops::restore::journal::{Entry, JournaledRequest, Outcome};

/// What the journal of an interrupted restore says was finished.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resumed {
    pub done: Vec<StepKind>,
    /// What the attempt asked for (journals older than this record have none).
    pub request: Option<JournaledRequest>,
}

impl Resumed {
    /// The steps finished since the last restore that completed or was rolled
    /// back; refused when there is nothing to resume.
    pub fn from_journal(entries: &[Entry]) -> Result<Resumed, PreflightRefusal> {
        let from = entries
            .iter()
            .rposition(|e| {
                e.step == "rollback" || (e.step == "report" && e.outcome == Outcome::Done)
            })
            .map_or(0, |i| i + 1);
        let attempt = &entries[from..];
        if attempt.is_empty() {
            return Err(PreflightRefusal::NothingToResume);
        }
        let done = StepKind::ALL
            .iter()
            .copied()
            .filter(|step| {
                attempt.iter().any(|e| {
                    e.step == step.id()
                        && (e.outcome == Outcome::Done
                            || (*step == StepKind::StopRemote && e.outcome == Outcome::Skipped))
                })
            })
            .collect();
        let request = attempt.iter().rev().find_map(|e| e.request.clone());
        Ok(Resumed { done, request })
    }

    pub fn has(&self, step: StepKind) -> bool {
        self.done.contains(&step)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(step: &str, outcome: Outcome) -> Entry {
        Entry {
            at: "2026-11-25T16:00:00Z".into(),
            step: step.into(),
            outcome,
            detail: String::new(),
            moved_aside_to: None,
            request: None,
        }
    }

    #[test]
    fn resume_counts_only_the_unfinished_attempt() {
        let finished = vec![
            entry("preflight", Outcome::Done),
            entry("unpack", Outcome::Done),
            entry("report", Outcome::Done),
        ];
        assert!(Resumed::from_journal(&finished).is_err());
        assert!(Resumed::from_journal(&[]).is_err());
        let mut interrupted = finished.clone();
        interrupted.extend([
            entry("preflight", Outcome::Done),
            entry("stop-remote", Outcome::Skipped),
            entry("clear", Outcome::Done),
            entry("unpack", Outcome::Started),
        ]);
        let resumed = Resumed::from_journal(&interrupted).unwrap();
        assert_eq!(
            resumed.done,
            vec![StepKind::Preflight, StepKind::StopRemote, StepKind::Clear]
        );
        assert!(
            !resumed.has(StepKind::Unpack),
            "an unpack that only started is redone"
        );
        interrupted.push(entry("rollback", Outcome::Done));
        assert!(
            Resumed::from_journal(&interrupted).is_err(),
            "rolled back: nothing to resume"
        );
    }
}
