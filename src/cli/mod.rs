//! The command line: argument definitions and one module per subcommand.
//! Errors become color-eyre reports here, at the edge; expected ones carry a
//! [`failure::Failure`] (what, a hint, an exit code) that `main` prints as
//! `error:` / `hint:` lines, never as a crash.

pub mod check;
pub mod demo;
pub mod docs;
pub mod drill;
pub mod failure;
pub mod interrupt;
pub mod migrate;
pub mod receive;
pub mod restore;
pub mod setup;
pub mod verify;
pub mod wal_get;

use std::path::PathBuf;

use clap::{FromArgMatches, Parser, Subcommand};

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
    /// Build a demo backup root (in DIR, else a temporary folder) with eight clients in every state, and open the dashboard on it
    Demo(demo::DemoArgs),
    /// Move a cluster to another major version: pg_dumpall -c, psql, every load error listed, both ends compared
    Migrate(migrate::MigrateArgs),
    /// Print a shell completion script: source <(walwarden completions bash)
    Completions(docs::CompletionsArgs),
    /// Print the man page (roff), or write every page with --dir
    Man(docs::ManArgs),
    /// The forced command of a client's key: accept WAL and base backups from stdin, nothing else (reads SSH_ORIGINAL_COMMAND)
    Receive(receive::ReceiveArgs),
    /// restore_command for a restored server: hand PostgreSQL a verified WAL file, prefetching the next ones
    WalGet(wal_get::WalGetArgs),
}

impl Command {
    /// The exit code of an error this subcommand did not classify: its
    /// "could not run" (see [`docs::EXIT_STATUS`]).
    pub fn failure_code(command: Option<&Command>) -> i32 {
        match command {
            Some(Command::Migrate(_)) => 2,
            _ => 3,
        }
    }
}

/// Parses the command line. On a usage error clap's message is printed and
/// the error is the exit code: [`docs::USAGE_ERROR`] (3), or 0 for --help
/// and --version.
pub fn parse() -> Result<Cli, i32> {
    parse_from(std::env::args_os())
}

pub fn parse_from<I, T>(args: I) -> Result<Cli, i32>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let parsed = docs::command()
        .try_get_matches_from(args)
        .and_then(|matches| Cli::from_arg_matches(&matches));
    parsed.map_err(|error| {
        let _ = error.print();
        if error.exit_code() == 0 {
            0
        } else {
            docs::USAGE_ERROR
        }
    })
}

/// A catalog error as an expected failure, with its fix.
pub fn catalog_failure(error: crate::archive::catalog::CatalogError) -> failure::Failure {
    // The hint comes from the core, which the dashboard shows too.
    let hint = error.hint();
    failure::Failure::new(error.to_string()).hint(hint)
}

/// The dashboard draws on a terminal: without one it is refused up front
/// (exit 3, with what to run instead), not a crash inside the terminal setup.
pub fn need_a_terminal(what: &str, instead: &str) -> Result<(), failure::Failure> {
    use std::io::IsTerminal;
    if std::io::stdout().is_terminal() {
        return Ok(());
    }
    Err(
        failure::Failure::new(format!("{what} needs a terminal, and stdout is not one")).hint(
            format!("run it in a terminal (ssh -t for a remote one); for scripts: {instead}"),
        ),
    )
}
