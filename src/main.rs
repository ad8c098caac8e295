//! The `walwarden` binary: installs error reporting, parses arguments and
//! hands off to a CLI subcommand or the dashboard.

use clap::Parser;
use color_eyre::eyre::{Result, WrapErr};

use walwarden::cli::{Cli, Command};
use walwarden::config::Config;

fn main() {
    let code = match run() {
        Ok(code) => code,
        Err(report) => {
            eprintln!("walwarden: {report:?}");
            3
        }
    };
    std::process::exit(code);
}

fn run() -> Result<i32> {
    let cli = Cli::parse();
    // PostgreSQL's restore_command: as its OS user, before any config is read
    // (it may not be readable) and with only exit statuses 0 and 1.
    if let Some(Command::WalGet(args)) = &cli.command {
        return Ok(walwarden::cli::wal_get::run(args));
    }
    color_eyre::install()?;
    if let Some(path) = &cli.log_file {
        init_log(path)?;
    }
    if let Some(Command::Demo(args)) = &cli.command {
        return walwarden::cli::demo::run(args);
    }
    // Needs no backup root or config: both ends are given on the command line.
    if let Some(Command::Migrate(args)) = &cli.command {
        return walwarden::cli::migrate::run(args);
    }
    let config =
        Config::discover(cli.config.as_deref()).wrap_err("cannot load the configuration")?;
    let root = config.root(cli.root.as_deref());
    match &cli.command {
        Some(Command::Check(args)) => walwarden::cli::check::run(args, &root, &config),
        Some(Command::Verify(args)) => walwarden::cli::verify::run(args, &root, &config),
        Some(Command::Restore(args)) => walwarden::cli::restore::run(args, &root, &config),
        Some(Command::Drill(args)) => walwarden::cli::drill::run(args, &root),
        Some(Command::Setup(args)) => walwarden::cli::setup::run(args, &root),
        Some(Command::Demo(_)) | Some(Command::Migrate(_)) | Some(Command::WalGet(_)) => Ok(0),
        None => walwarden::tui::run(root, config, walwarden::tui::Options::default()).map(|_| 0),
    }
}

fn init_log(path: &std::path::Path) -> Result<()> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .wrap_err_with(|| format!("cannot open log file {}", path.display()))?;
    tracing_subscriber::fmt()
        .with_writer(std::sync::Mutex::new(file))
        .with_ansi(false)
        .init();
    Ok(())
}
