//! walwarden: the console for a PostgreSQL WAL-archive backup server.
//!
//! The core knows nothing of terminals:
//! - [`wal`]: timelines, segment numbers, archive file names, page headers;
//! - [`base_backup`]: what base.tar.gz and pg_wal.tar.gz say, read by streaming;
//! - [`manifest`]: backup_manifest parsed, its checksum and every file's checked while streaming;
//! - [`catalog`]: scanning a backup root into clients, base backups and archives;
//! - [`continuity`]: the restore's line of timelines, gaps and the recoverable window;
//! - [`health`]: problems with codes, severities and fixes (pure, clock passed in);
//! - [`report`]: the per-root health report behind `check` and the dashboard;
//! - [`metrics`]: the report as Prometheus metrics;
//! - [`config`], [`cache`]: settings and remembered expensive facts;
//! - [`watch`]: notify events turned into catalog changes; arrival cadence;
//! - [`verify`]: the verification window checklist for a new client;
//! - [`quick`]: the cheap check of new segments (gzip trailer, first page) on every ordinary check;
//! - [`deep`]: every file read to its end, verdicts remembered per file;
//! - [`drill`]: restore drills into a scratch directory, results recorded;
//! - [`restore`]: the restore engine (plan of steps, journal, unpack, recovery config, log diagnosis);
//! - [`setup`]: onboarding a client (folders, user, key) and the target server's lines;
//! - [`target`]: the target server's archiver, settings and log, read over SSH;
//! - [`migrate`]: moving to another major version through pg_dumpall, load errors read, ends compared;
//! - [`display`]: byte sizes as people read them;
//! - [`demo`]: a synthetic backup root for newcomers and tests.
//!
//! The faces: [`cli`] (one module per subcommand) and [`tui`] (the dashboard).

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
