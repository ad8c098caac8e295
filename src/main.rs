//! The `walwarden` binary: installs error reporting, parses arguments and
//! hands off to a CLI subcommand or the dashboard.
//!
//! Errors are rendered here, at the edge: an expected failure (a refusal, bad
//! input, something missing) prints `error: ...` and maybe `hint: ...` and
//! exits with the subcommand's documented code; the full color-eyre report
//! (source location, backtrace when RUST_BACKTRACE/RUST_LIB_BACKTRACE ask for
//! one) goes only to the `--log-file` debug log. color-eyre's panic report
//! stays for real bugs.

use color_eyre::config::{HookBuilder, Theme};
use color_eyre::eyre::{Result, WrapErr};

use walwarden::cli::failure::{self, Failure};
use walwarden::cli::{Cli, Command};
use walwarden::config::Config;

fn main() {
    let styled = failure::stderr_styled();
    install_hooks(styled);
    let cli = match walwarden::cli::parse() {
        Ok(cli) => cli,
        Err(code) => std::process::exit(code),
    };
    let default_code = Command::failure_code(cli.command.as_ref());
    let code = match run(&cli) {
        Ok(code) => code,
        Err(report) => {
            tracing::error!("{}", failure::strip_ansi(&format!("{report:?}")));
            let (text, code) = failure::render(&report, default_code, styled);
            eprintln!("{text}");
            code
        }
    };
    std::process::exit(code);
}

/// color-eyre's hooks, themed only when stderr is a terminal without
/// NO_COLOR. Its panic report also goes to the debug log.
fn install_hooks(styled: bool) {
    let theme = if styled { Theme::dark() } else { Theme::new() };
    let (panic_hook, eyre_hook) = HookBuilder::default().theme(theme).into_hooks();
    // Only fails when a hook is already installed; then that one reports.
    let _ = eyre_hook.install();
    std::panic::set_hook(Box::new(move |info| {
        let report = panic_hook.panic_report(info).to_string();
        tracing::error!("panic: {}", failure::strip_ansi(&report));
        eprintln!("{report}");
    }));
}

fn run(cli: &Cli) -> Result<i32> {
    if let Some(path) = &cli.log_file {
        init_log(path)?;
    }
    match &cli.command {
        Some(Command::Demo(args)) => return walwarden::cli::demo::run(args),
        // Needs no backup root or config: both ends are given on the command line.
        Some(Command::Migrate(args)) => return walwarden::cli::migrate::run(args),
        Some(Command::Completions(args)) => return walwarden::cli::docs::completions(args),
        Some(Command::Man(args)) => return walwarden::cli::docs::man(args),
        _ => {}
    }
    // Run by sshd for a client's key: one line on stderr, never a report.
    if let Some(Command::Receive(args)) = &cli.command {
        return Ok(walwarden::cli::receive::run(
            args,
            cli.root.as_deref(),
            cli.config.as_deref(),
        ));
    }
    let config = Config::discover(cli.config.as_deref()).map_err(|error| {
        Failure::new(format!("cannot load the configuration: {error}")).hint(
            "fix or remove the file it names; every setting is explained in \
                 assets/config.example.toml (the package installs it, commented out, as \
                 /etc/walwarden/config.toml)",
        )
    })?;
    let root = config.root(cli.root.as_deref());
    match &cli.command {
        Some(Command::Check(args)) => walwarden::cli::check::run(args, &root, &config),
        Some(Command::Verify(args)) => walwarden::cli::verify::run(args, &root, &config),
        Some(Command::Restore(args)) => walwarden::cli::restore::run(args, &root, &config),
        Some(Command::Drill(args)) => walwarden::cli::drill::run(args, &root),
        Some(Command::Setup(args)) => {
            walwarden::cli::setup::run(args, &root, cli.config.as_deref())
        }
        Some(
            Command::Demo(_)
            | Command::Migrate(_)
            | Command::Completions(_)
            | Command::Man(_)
            | Command::Receive(_),
        ) => Ok(0),
        None => {
            walwarden::cli::need_a_terminal("the dashboard", "walwarden check")?;
            walwarden::tui::run(root, config, walwarden::tui::Options::default()).map(|_| 0)
        }
    }
}

fn init_log(path: &std::path::Path) -> Result<()> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .wrap_err_with(|| format!("cannot open the log file {}", path.display()))?;
    tracing_subscriber::fmt()
        .with_writer(std::sync::Mutex::new(file))
        .with_ansi(false)
        .init();
    Ok(())
}
