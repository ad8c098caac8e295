//! The command line: argument definitions and one module per subcommand.
//! Errors become color-eyre reports here, at the edge.

pub mod check;
pub mod demo;
pub mod drill;
pub mod migrate;
pub mod restore;
pub mod setup;
pub mod verify;
pub mod wal_get;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "walwarden",
    version,
    about = "Console for a PostgreSQL WAL-archive backup server"
)]
pub struct Cli {
    /// Backup root holding one folder per client
    #[arg(long, global = true, env = "WALWARDEN_ROOT", value_name = "DIR")]
    pub root: Option<PathBuf>,
    /// Config file (default: /etc/walwarden/config.toml, else the user's config dir)
    #[arg(long, global = true, env = "WALWARDEN_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Write a debug log to this file
    #[arg(long, global = true, env = "WALWARDEN_LOG", value_name = "FILE")]
    pub log_file: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print each client's health; exit 0 ok, 1 warning, 2 critical, 3 unknown
    Check(check::CheckArgs),
    /// Watch a client for a while and check that its archiving works (the tutorial's 3-5 minute check)
    Verify(verify::VerifyArgs),
    /// Restore a client's backup into a data directory, step by step
    Restore(restore::RestoreArgs),
    /// Restore a client into a scratch directory to prove its backup restores, then remove it
    Drill(drill::DrillArgs),
    /// Onboard a client: folders, its own user, mode 700, its key; print the target server's lines
    Setup(setup::SetupArgs),
    /// Build a demo backup root (in DIR, else a temporary folder) and open the dashboard on it
    Demo(demo::DemoArgs),
    /// Move a cluster to another major version: pg_dumpall -c, psql, every load error listed, both ends compared
    Migrate(migrate::MigrateArgs),
    /// restore_command for a restored server: hand PostgreSQL a verified WAL file, prefetching the next ones
    WalGet(wal_get::WalGetArgs),
}
