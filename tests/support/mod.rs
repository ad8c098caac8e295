//! Shared helpers for the integration tests (`mod support;` in a test file).
//!
//! - [`pg`]: fixtures that run REAL PostgreSQL binaries in temp dirs:
//!   [`make_real_backup`] (a PostgreSQL 15 base backup + gzip WAL archive, made
//!   exactly like the tutorial's setup) and [`initdb_segment`] (a fresh
//!   cluster's first WAL segment for majors 14..=18).
//! - [`corpus`]: archives of the shapes real fleets produce (failover, PITR,
//!   test branch, ...), built by real PostgreSQL with `tests/corpus/build.sh`
//!   and cached per test run, with their facts; plain restores of them.
//! - [`check`]: `walwarden check --json` on a root, and its first client's problems.
//! - [`sshd`]: a throwaway OpenSSH server on loopback with its own keys and
//!   known_hosts files ([`sshd::TestSshd`]).
//!
//! All panic (never skip) when the binaries they need (PostgreSQL, sshd) are
//! missing: `.ci/test` installs and fetches everything.
#![allow(dead_code, unused_imports)]

pub mod check;
pub mod corpus;
pub mod pg;
pub mod sshd;

pub use pg::{
    InitdbSegment, PgCluster, RealBackup, RunningServer, initdb_segment, make_real_backup,
    make_real_backup_major, pg_bin_dir, pg_cache_dir, pg_tempdir, pg_user, pick_port,
    require_pg_bin, run_as_pg_user,
};
