//! Operations that change things, each asking before it does: the restore
//! engine (`restore`), restore drills into a scratch folder (`drill`),
//! onboarding a client (`setup`), moving a cluster to another major
//! version (`migrate`), and the append-only receiver a client's key is
//! forced through (`receive`). They stand on the archive model, the checks and
//! the PostgreSQL and SSH plumbing below them.

pub mod drill;
pub mod migrate;
pub mod receive;
pub mod restore;
pub mod setup;
