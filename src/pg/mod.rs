//! Talking to PostgreSQL and to other servers: its configuration files'
//! string syntax (`conf`), running commands as the
//! PostgreSQL OS user and finding its binaries (`local`), classifying the
//! server log's lines (`pglog`), commands over SSH with strict host keys
//! (`remote`), and reading the target server's archiver, settings and log
//! (`target`). The line `walwarden wal-get` writes into the server log when
//! it refuses a WAL file is part of the classifier (`pglog::walget_line`).

pub mod conf;
pub mod local;
pub mod pglog;
pub mod remote;
pub mod target;
