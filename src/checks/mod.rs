//! Verdicts on the archive: the health rules and their problem codes
//! (`health`), the report both faces show (`report`), files read to their
//! end and judged (`integrity`), the cheap and the deep checks built on that
//! (`quick`, `deep`), the recovery point a restore to the end brings back
//! (`recovery_point`), the verification window for a new
//! client (`verify`), the target server's side judged (`target`), the record
//! of restore drills and their staleness (`drills`), a restore's phase
//! times (`phase_times`) and the recovery time estimated from the last
//! drill's (`rto`), the checks as jobs both faces run (`jobs`), and the
//! report as Prometheus metrics (`metrics`).
//! Checks read the archive and the target server; they change nothing.

pub mod deep;
pub mod drills;
pub mod health;
pub mod integrity;
pub mod jobs;
pub mod metrics;
pub mod phase_times;
pub mod quick;
pub mod recovery_point;
pub mod report;
pub mod rto;
pub mod target;
pub mod verify;
