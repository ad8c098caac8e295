//! walwarden: the console for a PostgreSQL WAL-archive backup server.
//!
//! The tree is the architecture: each layer uses only the ones below it
//! (`tests/architecture.rs` checks it, and that nothing outside `tui/`
//! names a terminal crate).
//!
//! - [`archive`]: what is on disk, read and never written: WAL names and page
//!   headers (`wal`), base tarballs and their manifest (`base_backup`,
//!   `manifest`), one client folder's files (`folder`), the catalog of a
//!   root (`catalog`: model, scan, live apply of observed file events) and
//!   its cache of expensive facts (`base_cache`), the restore's line of
//!   timelines and gaps (`continuity`), file events and cadence (`watch`),
//!   the one way a file of the archive is opened: regular files only, never
//!   blocking, reads bounded (`safe_open`);
//! - [`config`]: settings, per-client policy, the target server, the local
//!   service; [`demo`]: a synthetic backup root for newcomers and tests;
//! - [`pg`]: talking to PostgreSQL and SSH: running as the PostgreSQL user
//!   (`local`), the log classifier (`pglog`), commands over SSH (`remote`),
//!   the target server's settings, archiver and log (`target`);
//! - [`checks`]: verdicts: health rules with problem codes (`health`), the
//!   report assembled in one place for both faces (`report`), files read to
//!   their end (`integrity`), the quick and deep checks (`quick`, `deep`),
//!   the verification window (`verify`), the target's problems (`target`),
//!   drill records and staleness (`drills`), the checks as jobs (`jobs`),
//!   Prometheus metrics (`metrics`);
//! - [`ops`]: operations that change things, each asking first: the restore
//!   engine (`restore`), restore drills (`drill`), onboarding (`setup`),
//!   moving to another major version (`migrate`);
//! - below them all: [`display`] (sizes, durations and times as people read
//!   them, names escaped as data), [`store`] (walwarden's own files, written
//!   atomically under a lock, and `store::guard`, the one check every write
//!   goes through so nothing lands in the archive), [`pool`] (the one worker
//!   pool), `serde_util`.
//!
//! The faces call the same core functions: [`cli`] (one module per
//! subcommand) and [`tui`] (the dashboard: a pure `App::update`, one key
//! table, the view, background jobs).

pub mod archive;
pub mod checks;
pub mod cli;
pub mod config;
pub mod demo;
pub mod display;
pub mod ops;
pub mod pg;
pub mod pool;
mod serde_util;
pub mod store;
pub mod tui;
