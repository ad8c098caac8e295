//! Verdicts on the archive: the health rules and their problem codes
//! (`health`), the report both faces show (`report`), the cheap and the deep
//! integrity checks (`quick`, `deep`), the verification window for a new
//! client (`verify`), and the report as Prometheus metrics (`metrics`).
//! Checks read the archive and the target server; they change nothing.

pub mod deep;
pub mod health;
pub mod metrics;
pub mod quick;
pub mod report;
pub mod verify;
