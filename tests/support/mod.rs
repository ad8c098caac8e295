//! Shared helpers for the integration tests (`mod support;` in a test file).
//!
//! - [`pg`]: fixtures that run REAL PostgreSQL binaries in temp dirs:
//!   [`make_real_backup`] (a PostgreSQL 15 base backup + gzip WAL archive, made
//!   exactly like the tutorial's setup) and [`initdb_segment`] (a fresh
//!   cluster's first WAL segment for majors 14..=18).
//!
//! Both panic (never skip) when the PostgreSQL binaries they need are missing:
//! `.ci/test` installs and fetches everything.
#![allow(dead_code, unused_imports)]

pub mod pg;

pub use pg::{
    InitdbSegment, PgCluster, RealBackup, RunningServer, initdb_segment, make_real_backup,
    make_real_backup_major, pg_bin_dir, pg_cache_dir, pg_tempdir, pg_user, pick_port,
    require_pg_bin, run_as_pg_user,
};
