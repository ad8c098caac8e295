//! The append-only receiver: what a client's key may do on the backup server.
//!
//! `walwarden receive` runs as the forced command of the client's key
//! (`restrict,command="walwarden receive --root ROOT --client NAME"`), as the
//! client's own Unix user, and reads what the client asked in
//! `SSH_ORIGINAL_COMMAND`. It accepts only the commands of [`grammar`]: a WAL
//! file by name, the files of a new base backup and their finish, and a copy
//! test. Everything else (a shell, rm, cat, scp, sftp, a listing) is refused.
//!
//! Nothing lands unverified ([`intake`]: gzip streams complete, one segment
//! exactly, the page header of this cluster and this name; [`put_wal`]:
//! history and backup files parse; [`base`]: a base backup read to its end
//! and against its manifest), nothing is ever replaced ([`land`]: part file,
//! fsync, rename without replacing, fsync of the folder), and an identical
//! re-send is accepted while a different one is refused and logged
//! ([`journal`]). A per-client quota and a free-space reserve ([`quota`])
//! stop an upload before the disk fills. [`lines`] writes the
//! authorized_keys line and the target's commands that go with it.
//!
//! The core does no terminal I/O: [`receive`] returns a [`Receipt`] that the
//! CLI face prints (one line on stderr for a refusal) and turns into an exit
//! code.

pub mod base;
pub mod error;
pub mod grammar;
pub mod intake;
pub mod journal;
pub mod land;
pub mod put_wal;
pub mod quota;
pub mod state;

use std::io::Read;
use std::path::PathBuf;
use std::time::SystemTime;

pub use error::{ReceiveError, RefusalCode};
pub use grammar::Request;
pub use journal::{LogEntry, Outcome, Refusal, refusals};
pub use state::ClientFolder;

/// Where and for whom the receiver runs (from the forced command and the config).
#[derive(Debug, Clone)]
pub struct Receiver {
    pub root: PathBuf,
    pub client: String,
    /// The client's byte limit (`quota` in the config), if any.
    pub quota: Option<u64>,
}

/// What a successful command did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Done {
    pub outcome: Outcome,
    pub bytes: Option<u64>,
    /// A line for stdout (base backups and the copy test; WAL stays quiet).
    pub say: Option<String>,
    /// Whether an accepted command is worth a log line (segments are not).
    pub log: bool,
}

impl Done {
    fn quiet(outcome: Outcome, bytes: u64) -> Done {
        Done {
            outcome,
            bytes: Some(bytes),
            say: None,
            log: outcome != Outcome::Accepted,
        }
    }
}

/// What happened to one command, for the face to print.
#[derive(Debug)]
pub struct Receipt {
    /// The command word; empty for a command outside the grammar (its message names it).
    pub command: String,
    pub subject: Option<String>,
    pub result: Result<Done, ReceiveError>,
}

impl Receipt {
    /// 0 accepted (or already there, identical), 1 refused.
    pub fn exit_code(&self) -> i32 {
        match self.result {
            Ok(_) => 0,
            Err(_) => 1,
        }
    }

    /// The one line the sender sees on stderr (and PostgreSQL logs), for a refusal:
    /// `walwarden receive: refused put-wal NAME: REASON [code]`.
    pub fn refusal_line(&self) -> Option<String> {
        let error = self.result.as_ref().err()?;
        // A command outside the grammar: its message names it.
        let what = match (self.command.as_str(), &self.subject) {
            ("", _) => String::new(),
            (command, Some(subject)) => format!(" {command} {subject}:"),
            (command, None) => format!(" {command}:"),
        };
        Some(format!(
            "walwarden receive: refused{what} {} [{}]",
            error::one_line(&error.to_string()),
            error.code().as_str()
        ))
    }
}

/// Runs what `original_command` asks, with the file's bytes on `stdin`, and
/// logs it in the client's receive log.
pub fn receive(
    receiver: &Receiver,
    original_command: Option<&str>,
    stdin: &mut dyn Read,
    now: SystemTime,
) -> Receipt {
    let request = match grammar::parse(original_command) {
        Ok(request) => request,
        Err(error) => {
            // The log names what was asked: the whole text for a command
            // outside the grammar, else its command word and argument.
            let text = original_command.map_or_else(
                || "(interactive shell)".to_owned(),
                |t| error::sanitize(t, 60),
            );
            let mut words = text.split_whitespace();
            let (command, subject) = match &error {
                ReceiveError::NotAllowed { .. } => (String::new(), None),
                _ => (
                    words.next().unwrap_or_default().to_owned(),
                    Some(words.collect::<Vec<_>>().join(" ")),
                ),
            };
            let logged = if command.is_empty() {
                text.clone()
            } else {
                command.clone()
            };
            let receipt = Receipt {
                command,
                subject: None,
                result: Err(error),
            };
            if let Ok(folder) = ClientFolder::open(&receiver.root, &receiver.client) {
                log(&folder, &logged, subject, &receipt.result, now);
            }
            return receipt;
        }
    };
    let command = request.command().to_owned();
    let subject = request.subject();
    let result = ClientFolder::open(&receiver.root, &receiver.client).and_then(|folder| {
        let result = run(&folder, receiver, &request, stdin, now);
        log(&folder, &command, subject.clone(), &result, now);
        result
    });
    Receipt {
        command,
        subject,
        result,
    }
}

fn run(
    folder: &ClientFolder,
    receiver: &Receiver,
    request: &Request,
    stdin: &mut dyn Read,
    now: SystemTime,
) -> Result<Done, ReceiveError> {
    match request {
        Request::PutWal(wal) => put_wal::put_wal(folder, receiver, wal, stdin),
        Request::PutBase { id, file } => base::put_base(folder, receiver, id, *file, stdin),
        Request::FinishBase { id } => base::finish_base(folder, id, now),
        Request::CopyTest => base::copy_test(folder, receiver, stdin),
    }
}

fn log(
    folder: &ClientFolder,
    command: &str,
    name: Option<String>,
    result: &Result<Done, ReceiveError>,
    now: SystemTime,
) {
    let entry = match result {
        Ok(done) if !done.log => return,
        Ok(done) => {
            let mut entry = LogEntry::new(now, command, name, done.outcome);
            entry.bytes = done.bytes;
            entry.reason = done.say.clone();
            entry
        }
        Err(error) => {
            let mut entry = LogEntry::new(now, command, name, Outcome::Refused);
            entry.code = Some(error.code().as_str().to_owned());
            entry.reason = Some(error::one_line(&error.to_string()));
            entry
        }
    };
    if folder.own().is_ok() {
        journal::append(&folder.path, &entry);
    }
}
