//! Operations that change things, each asking before it does: the restore
//! engine (`restore`), restore drills into a scratch folder (`drill`),
//! onboarding a client (`setup`) and moving a cluster to another major
//! version (`migrate`). They stand on the archive model, the checks and
//! the PostgreSQL and SSH plumbing below them.

pub mod drill;
pub mod migrate;
pub mod restore;
pub mod setup;
