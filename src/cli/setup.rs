//! `walwarden setup CLIENT`: onboard a client on this backup server, then print
//! what to paste on the target server.

use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};

use clap::Args;
use color_eyre::eyre::Result;

use crate::ops::setup::{self, ArchiveRoute, PublicKey, SetupRequest, SetupStep};

#[derive(Debug, Args)]
pub struct SetupArgs {
    /// The client's name: its folder under the root
    pub client: String,
    /// The client's own OS user on this server (default: CLIENT + "backup", as the tutorial's foobackup)
    #[arg(long)]
    pub user: Option<String>,
    /// That user's home, where its authorized_keys lives (default /home/USER)
    #[arg(long, value_name = "DIR")]
    pub home: Option<PathBuf>,
    /// The target server's public key (its postgres user's ~/.ssh/id_*.pub)
    #[arg(long, value_name = "FILE")]
    pub key: Option<PathBuf>,
    /// The address the target server reaches this backup server by (default: this host's name)
    #[arg(long, value_name = "HOST")]
    pub backup_host: Option<String>,
    /// This server's SSH port as the target reaches it, when not 22
    #[arg(long, value_name = "PORT")]
    pub ssh_port: Option<u16>,
    /// The private key the target's postgres user sends with, when not its default (goes into the commands)
    #[arg(long, value_name = "FILE")]
    pub identity: Option<PathBuf>,
    /// known_hosts file on the target, when not the postgres user's own (goes into the commands)
    #[arg(long, value_name = "FILE")]
    pub known_hosts: Option<PathBuf>,
    /// ssh config file on the target (`ssh -F`), when not the postgres user's own
    #[arg(long, value_name = "FILE")]
    pub ssh_config: Option<PathBuf>,
    /// Give the key the tutorial's plain shell access instead of the receiver
    /// (which only adds WAL and base backups, append-only and verified)
    #[arg(long)]
    pub shell_access: bool,
    /// Archive segments uncompressed (default: gzip -9 on the target, as the tutorial's production setup)
    #[arg(long)]
    pub plain: bool,
    /// archive_timeout for production, in seconds
    #[arg(long, default_value_t = crate::pg::target::PRODUCTION_ARCHIVE_TIMEOUT, value_name = "SECONDS")]
    pub archive_timeout: u64,
    /// Where pg_basebackup writes on the target before the copy
    #[arg(long, default_value = setup::DEFAULT_TARGET_SCRATCH, value_name = "DIR")]
    pub scratch: String,
    /// Only print what would change, and the target's lines
    #[arg(long)]
    pub dry_run: bool,
    /// Apply without asking
    #[arg(long)]
    pub yes: bool,
}

pub fn run(args: &SetupArgs, root: &Path, config: Option<&Path>) -> Result<i32> {
    let mut request = SetupRequest::new(root, &args.client)?;
    request.access = if args.shell_access {
        setup::KeyAccess::Shell
    } else {
        // The receiver reads the same config as this run (the client's quota).
        let config = config
            .map(Path::to_owned)
            .or_else(|| match &request.access {
                setup::KeyAccess::Receiver(forced) => forced.config.clone(),
                setup::KeyAccess::Shell => None,
            });
        setup::KeyAccess::receiver(setup::this_binary(), root, &args.client, config)
    };
    if let Some(user) = &args.user {
        setup::check_user_name(user)?;
        request.user = user.clone();
        request.home = PathBuf::from("/home").join(user);
    }
    if let Some(home) = &args.home {
        request.home = home.clone();
    }
    if let Some(path) = &args.key {
        request.public_key = Some(PublicKey::read(path)?);
    }
    let mut route = ArchiveRoute::for_request(
        &request,
        &args.backup_host.clone().unwrap_or_else(setup::this_host),
    );
    route.ssh_port = args.ssh_port;
    route.identity = args.identity.clone();
    route.known_hosts = args.known_hosts.clone();
    route.ssh_config = args.ssh_config.clone();
    route.compress = !args.plain;
    route.archive_timeout = args.archive_timeout;
    let plan = setup::plan_setup(&request, &route, &args.scratch)?;

    println!(
        "Backup server: client {} in {}, user {}",
        request.client,
        request.client_dir().display(),
        request.user
    );
    if plan.actions.is_empty() {
        println!("  nothing to change: folders, user, modes and key are already right");
    }
    for (i, action) in plan.actions.iter().enumerate() {
        println!("  {}. {action}\n       $ {}", i + 1, action.as_command());
    }
    if let Some(warning) = &plan.warning {
        println!("  WARNING: {warning}");
    }
    if request.public_key.is_none() {
        println!(
            "  (no --key: authorized_keys left as it is; rerun with --key FILE.pub from the target's postgres user)"
        );
    }

    let status = if args.dry_run {
        println!("\n--dry-run: nothing changed, no copy test run");
        0
    } else {
        setup::refuse_without_root(&plan.actions)?;
        if !plan.actions.is_empty()
            && !confirm(
                &format!("Apply these {} changes?", plan.actions.len()),
                args.yes,
            )
        {
            println!("nothing changed");
            return Ok(1);
        }
        let mut running: Option<String> = None;
        setup::apply_setup(&request, &plan.actions, &mut |step| match step {
            SetupStep::Applying(action) => running = Some(format!("while trying to {action}")),
            SetupStep::Applied(action) => {
                running = None;
                println!("  done: {action}");
            }
            SetupStep::CopyTesting(dir) => {
                if dir != request.wal_dir() {
                    println!("\nChecking that the copy works (as {}):", request.user);
                }
            }
            SetupStep::CopyTested(dir) => match request.access {
                setup::KeyAccess::Receiver(_) => println!(
                    "  ok: the receiver's copy-test wrote, synced, renamed, read back and removed a test file in {}",
                    dir.display()
                ),
                setup::KeyAccess::Shell => println!(
                    "  ok: wrote, synced, renamed, read back and removed a test file in {}",
                    dir.display()
                ),
            },
        })
        .map_err(|error| match running.take() {
            Some(context) => color_eyre::eyre::Report::new(error).wrap_err(context),
            None => error.into(),
        })?;
        0
    };

    println!("\n{}", plan.instructions);
    Ok(status)
}

/// One yes/no question on the terminal; `--yes` answers it, and without a
/// terminal the answer is no.
pub fn confirm(question: &str, yes: bool) -> bool {
    if yes {
        eprintln!("{question} yes (--yes)");
        return true;
    }
    if !std::io::stdin().is_terminal() {
        eprintln!("{question} no: not a terminal; pass --yes to confirm");
        return false;
    }
    eprint!("{question} [y/N] ");
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    if std::io::stdin().lock().read_line(&mut answer).is_err() {
        return false;
    }
    matches!(answer.trim(), "y" | "Y" | "yes")
}
