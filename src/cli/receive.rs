//! `walwarden receive`: the forced command of a client's key. sshd runs it
//! as the client's user with what the client asked in `SSH_ORIGINAL_COMMAND`
//! and the file on stdin; the core decides (see `ops::receive`). This face
//! prints one line: a refusal on stderr (the sender's stderr, so PostgreSQL's
//! log), a base backup's or copy test's result on stdout, nothing for a WAL
//! file that landed. Exit 0 accepted, 1 refused.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use clap::Args;

use crate::config::Config;
use crate::ops::receive::{self, Receipt, ReceiveError, Receiver};

#[derive(Debug, Args)]
pub struct ReceiveArgs {
    /// The client whose folder (ROOT/NAME) this key writes into
    #[arg(long, value_name = "NAME")]
    pub client: String,
}

/// Whether `flag` was written on the command line (not taken from the environment).
fn on_command_line(flag: &str) -> bool {
    let prefix = format!("{flag}=");
    std::env::args_os().any(|a| a == flag || a.to_string_lossy().starts_with(&prefix))
}

fn receiver(
    args: &ReceiveArgs,
    root: Option<&Path>,
    config: Option<&Path>,
) -> Result<Receiver, ReceiveError> {
    // The forced command's own arguments are the only source: a variable in
    // the session's environment must not move the receiver elsewhere.
    let root: PathBuf = root
        .filter(|_| on_command_line("--root"))
        .map(Path::to_owned)
        .ok_or_else(|| {
            ReceiveError::Misconfigured(
                "the forced command must name the backup root with --root".into(),
            )
        })?;
    let config = config.filter(|_| on_command_line("--config"));
    let config = Config::discover(config)
        .map_err(|e| ReceiveError::Misconfigured(format!("cannot load the configuration: {e}")))?;
    Ok(Receiver {
        quota: config.policy_for(&args.client).quota,
        root,
        client: args.client.clone(),
    })
}

/// Runs one command from sshd; returns the exit code.
pub fn run(args: &ReceiveArgs, root: Option<&Path>, config: Option<&Path>) -> i32 {
    let original = std::env::var("SSH_ORIGINAL_COMMAND").ok();
    let receipt = match receiver(args, root, config) {
        Ok(receiver) => receive::receive(
            &receiver,
            original.as_deref(),
            &mut std::io::stdin().lock(),
            SystemTime::now(),
        ),
        Err(error) => Receipt {
            command: "receive".into(),
            subject: None,
            result: Err(error),
        },
    };
    // The sender may be gone: a failed write changes nothing.
    if let Some(line) = receipt.refusal_line() {
        let _ = writeln!(std::io::stderr(), "{line}");
    }
    if let Ok(done) = &receipt.result
        && let Some(say) = &done.say
    {
        let _ = writeln!(std::io::stdout(), "{say}");
    }
    receipt.exit_code()
}
