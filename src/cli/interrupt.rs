//! Ctrl-C once a restored server runs (the restore's and the drill's): from
//! then on SIGINT only raises a flag, which the restore engine reads
//! (`Driver::interrupted`) to stop that server (fast shutdown) and its
//! `wal-get` helper before walwarden exits. Before that, and after, Ctrl-C
//! ends walwarden as it does by default.

use std::sync::atomic::{AtomicBool, Ordering};

use crate::ops::restore::journal::Outcome;
use crate::ops::restore::steps::StepKind;

/// Set by the SIGINT handler while armed.
static CTRL_C: AtomicBool = AtomicBool::new(false);

extern "C" fn on_sigint(_: nix::libc::c_int) {
    // Async-signal-safe: one atomic store; the engine reads it.
    CTRL_C.store(true, Ordering::SeqCst);
}

/// From now on Ctrl-C asks the engine to stop the server (`true`), or ends
/// walwarden as it does by default (`false`).
pub fn stops_the_server(armed: bool) {
    use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};
    let handler = if armed {
        SigHandler::Handler(on_sigint)
    } else {
        SigHandler::SigDfl
    };
    let action = SigAction::new(handler, SaFlags::SA_RESTART, SigSet::empty());
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    let _ = unsafe { sigaction(Signal::SIGINT, &action) };
}

/// Arms the handler when a step report says the restored server runs: it
/// was started, or a resumed restore found it still running.
pub fn arm_on(step: StepKind, outcome: &Outcome, dry_run: bool) {
    if step == StepKind::Start && matches!(outcome, Outcome::Done | Outcome::Skipped) && !dry_run {
        stops_the_server(true);
    }
}

/// Whether Ctrl-C was pressed while armed.
pub fn requested() -> bool {
    CTRL_C.load(Ordering::SeqCst)
}
