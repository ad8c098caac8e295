//! Talking to PostgreSQL and to other servers: running commands as the
//! PostgreSQL OS user and finding its binaries (`local`), classifying the
//! server log's lines (`pglog`), commands over SSH with strict host keys
//! (`remote`), and reading the target server's archiver, settings and log
//! (`target`).

pub mod local;
pub mod pglog;
pub mod remote;
pub mod target;
