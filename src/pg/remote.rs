//! Commands on the target server over SSH, through the system's OpenSSH
//! client (the `openssh` crate drives `ssh`, so ~/.ssh/config, agents and
//! jump hosts work as they do on the command line).
//!
//! Host keys are always checked strictly (`StrictHostKeyChecking=yes`): an
//! unknown or changed key refuses the connection and nothing runs. Failures
//! are classified so the journal can say plainly why the old server was not
//! stopped. The restore engine is synchronous; `run_remote_blocking` runs the
//! async client on its own thread and runtime, so it works from the CLI (no
//! runtime) and from the TUI's `spawn_blocking` (a runtime on another thread).

use std::io;
use std::time::Duration;

use openssh::{ControlPersist, KnownHosts, Session, SessionBuilder};
use thiserror::Error;

use super::local::shell_quote;
use crate::config::TargetServer;

/// How long a remote command may run: `pg_ctlcluster stop` gives up after 60 s itself.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(300);

/// What a remote command printed; it exited 0.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteOutput {
    pub stdout: String,
    pub stderr: String,
}

#[derive(Debug, Error)]
pub enum RemoteError {
    #[error("{address} is unreachable: {detail}")]
    Unreachable { address: String, detail: String },
    #[error(
        "host key of {address} does not match known_hosts ({known_hosts}): refusing; if the server was reinstalled, verify and update known_hosts"
    )]
    HostKeyMismatch {
        address: String,
        known_hosts: String,
    },
    #[error(
        "host key of {address} is not in known_hosts ({known_hosts}): refusing; compare `ssh-keyscan -p {port} {host}` with `ssh-keygen -lf` of the server's key, then add it"
    )]
    HostKeyUnknown {
        address: String,
        host: String,
        port: u16,
        known_hosts: String,
    },
    #[error("{user}@{address} refused the login: {detail}")]
    AuthFailed {
        user: String,
        address: String,
        detail: String,
    },
    #[error("`{command}` on {address} failed ({status}): {stderr}")]
    CommandFailed {
        address: String,
        command: String,
        status: String,
        stderr: String,
    },
    #[error("ssh to {address}: {detail}")]
    Ssh { address: String, detail: String },
}

impl RemoteError {
    /// A host key that does not check out: the one failure that may mean an attack.
    pub fn is_host_key(&self) -> bool {
        matches!(
            self,
            RemoteError::HostKeyMismatch { .. } | RemoteError::HostKeyUnknown { .. }
        )
    }

    /// The server could not be reached at all (the usual case when it is gone).
    pub fn is_unreachable(&self) -> bool {
        matches!(self, RemoteError::Unreachable { .. })
    }
}

/// Runs `command` (a shell command line) on `target` and returns its output;
/// a non-zero exit is `CommandFailed`. The connection is closed afterwards.
pub async fn run_remote(target: &TargetServer, command: &str) -> Result<RemoteOutput, RemoteError> {
    let address = target.address();
    let builder = session_builder(target);
    // ConnectTimeout bounds the TCP connect and banner; this bounds the rest of the login.
    let login = target.connect_timeout * 2 + Duration::from_secs(5);
    let session = match tokio::time::timeout(login, builder.connect(&target.host)).await {
        Err(_) => {
            return Err(RemoteError::Unreachable {
                address,
                detail: format!("no login within {}", humantime::format_duration(login)),
            });
        }
        Ok(Err(error)) => return Err(classify_connect(target, &error)),
        Ok(Ok(session)) => session,
    };
    let result = run_in(&session, target, command).await;
    // The master connection is ours alone: always end it, whatever the command did.
    let _ = session.close().await;
    result
}

/// `run_remote` for synchronous callers, on a fresh thread with its own
/// current-thread runtime: never nested in a caller's runtime.
pub fn run_remote_blocking(
    target: &TargetServer,
    command: &str,
) -> Result<RemoteOutput, RemoteError> {
    let address = target.address();
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| RemoteError::Ssh {
                        address: address.clone(),
                        detail: format!("cannot start the ssh runtime: {e}"),
                    })?;
                runtime.block_on(run_remote(target, command))
            })
            .join()
            .unwrap_or_else(|_| {
                Err(RemoteError::Ssh {
                    address: address.clone(),
                    detail: "the ssh thread panicked".into(),
                })
            })
    })
}

/// The equivalent `ssh` command line, for dry runs and the command log.
pub fn ssh_command_text(target: &TargetServer, command: &str) -> String {
    let mut words: Vec<String> = vec![
        "ssh".into(),
        "-o".into(),
        "BatchMode=yes".into(),
        "-o".into(),
        "StrictHostKeyChecking=yes".into(),
        "-o".into(),
        format!("ConnectTimeout={}", target.connect_timeout.as_secs()),
    ];
    if let Some(known_hosts) = &target.known_hosts {
        words.push("-o".into());
        words.push(format!("UserKnownHostsFile={}", known_hosts.display()));
    }
    if let Some(identity) = &target.identity {
        words.extend(["-o".into(), "IdentitiesOnly=yes".into(), "-i".into()]);
        words.push(identity.display().to_string());
    }
    words.extend([
        "-p".into(),
        target.port.to_string(),
        "-l".into(),
        target.user.clone(),
        target.host.clone(),
        command.to_owned(),
    ]);
    words
        .iter()
        .map(|w| shell_quote(w))
        .collect::<Vec<_>>()
        .join(" ")
}

fn session_builder(target: &TargetServer) -> SessionBuilder {
    let mut builder = SessionBuilder::default();
    builder
        .known_hosts_check(KnownHosts::Strict)
        .user(target.user.clone())
        .port(target.port)
        .connect_timeout(target.connect_timeout)
        .server_alive_interval(Duration::from_secs(5))
        // The control socket lives in a private temp folder, not under $HOME.
        .control_directory(std::env::temp_dir())
        // Should walwarden die before closing, the master still goes away by itself.
        .control_persist(ControlPersist::IdleFor(
            std::num::NonZeroUsize::new(60).unwrap_or(std::num::NonZeroUsize::MIN),
        ));
    if let Some(known_hosts) = &target.known_hosts {
        builder.user_known_hosts_file(known_hosts);
    }
    if let Some(identity) = &target.identity {
        builder.keyfile(identity);
    }
    builder
}

async fn run_in(
    session: &Session,
    target: &TargetServer,
    command: &str,
) -> Result<RemoteOutput, RemoteError> {
    let address = target.address();
    let failed = |detail: String| RemoteError::Ssh {
        address: address.clone(),
        detail,
    };
    let mut remote = session.raw_command(command);
    let output = match tokio::time::timeout(COMMAND_TIMEOUT, remote.output()).await {
        Err(_) => {
            return Err(RemoteError::CommandFailed {
                address: address.clone(),
                command: command.to_owned(),
                status: format!(
                    "no end within {}",
                    humantime::format_duration(COMMAND_TIMEOUT)
                ),
                stderr: String::new(),
            });
        }
        Ok(Err(openssh::Error::RemoteProcessTerminated | openssh::Error::Disconnected)) => {
            return Err(failed(
                "the connection ended before the command did (or it was killed by a signal)".into(),
            ));
        }
        Ok(Err(error)) => return Err(failed(error_text(&error))),
        Ok(Ok(output)) => output,
    };
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    if !output.status.success() {
        let status = match output.status.code() {
            // ssh's own failure code: the command may not even have started.
            Some(255) => "exit 255: ssh or the command failed".to_owned(),
            Some(code) => format!("exit {code}"),
            None => output.status.to_string(),
        };
        let text = if stderr.trim().is_empty() {
            stdout.trim()
        } else {
            stderr.trim()
        };
        return Err(RemoteError::CommandFailed {
            address,
            command: command.to_owned(),
            status,
            stderr: text.to_owned(),
        });
    }
    Ok(RemoteOutput { stdout, stderr })
}

/// The error text ssh wrote (the crate keeps it as the io::Error under `Connect`).
fn error_text(error: &openssh::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(inner) = source {
        text = inner.to_string();
        source = inner.source();
    }
    text
}

fn classify_connect(target: &TargetServer, error: &openssh::Error) -> RemoteError {
    let address = target.address();
    let text = error_text(error);
    let kind = match error {
        openssh::Error::Connect(e) => Some(e.kind()),
        _ => None,
    };
    classify(target, &address, &text, kind)
}

/// Sorts ssh's messages into what the journal needs to say. ssh only reports
/// text; these are OpenSSH's wordings (checked against 9.2).
fn classify(
    target: &TargetServer,
    address: &str,
    text: &str,
    kind: Option<io::ErrorKind>,
) -> RemoteError {
    let address = address.to_owned();
    let detail = last_line(text);
    let known_hosts = target.known_hosts_text();
    if text.contains("REMOTE HOST IDENTIFICATION HAS CHANGED")
        || (text.contains("Host key for") && text.contains("has changed"))
    {
        return RemoteError::HostKeyMismatch {
            address,
            known_hosts,
        };
    }
    if text.contains("Host key verification failed") || text.contains("host key is known for") {
        return RemoteError::HostKeyUnknown {
            address,
            host: target.host.clone(),
            port: target.port,
            known_hosts,
        };
    }
    if kind == Some(io::ErrorKind::PermissionDenied) || text.contains("Permission denied (") {
        return RemoteError::AuthFailed {
            user: target.user.clone(),
            address,
            detail,
        };
    }
    if kind == Some(io::ErrorKind::NotFound) && !text.contains(':') {
        return RemoteError::Ssh {
            address,
            detail: format!("cannot run ssh ({detail}): install openssh-client"),
        };
    }
    let unreachable = [
        "Connection refused",
        "timed out",
        "No route to host",
        "Network is unreachable",
        "Could not resolve hostname",
        "Name or service not known",
        "Connection closed by",
        "Connection reset by",
    ];
    if matches!(
        kind,
        Some(io::ErrorKind::ConnectionRefused | io::ErrorKind::TimedOut)
    ) || unreachable.iter().any(|u| text.contains(u))
    {
        return RemoteError::Unreachable { address, detail };
    }
    RemoteError::Ssh { address, detail }
}

fn last_line(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty())
        .unwrap_or("no message from ssh")
        .trim_start_matches("ssh: ")
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target() -> TargetServer {
        let mut target = TargetServer::new("127.0.0.1", "postgres");
        target.port = 40022;
        target
    }

    #[test]
    fn ssh_messages_are_classified() {
        let t = target();
        let a = t.address();
        let changed = "@@@@\n@    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @\n...\nHost key for [127.0.0.1]:40022 has changed and you have requested strict checking.\nHost key verification failed.";
        let error = classify(&t, &a, changed, Some(io::ErrorKind::ConnectionAborted));
        assert!(
            matches!(error, RemoteError::HostKeyMismatch { .. }),
            "{error:?}"
        );
        assert!(
            error
                .to_string()
                .starts_with("host key of 127.0.0.1:40022 does not match known_hosts"),
            "{error}"
        );
        let unknown = "No ED25519 host key is known for [127.0.0.1]:40022 and you have requested strict checking.\nHost key verification failed.";
        assert!(matches!(
            classify(&t, &a, unknown, None),
            RemoteError::HostKeyUnknown { .. }
        ));
        let refused = "ssh: connect to host 127.0.0.1 port 40022: Connection refused";
        let error = classify(&t, &a, refused, Some(io::ErrorKind::ConnectionRefused));
        assert!(error.is_unreachable());
        assert!(error.to_string().contains("Connection refused"), "{error}");
        let banner =
            "Connection timed out during banner exchange\nConnection to 10.0.0.1 port 22 timed out";
        assert!(classify(&t, &a, banner, None).is_unreachable());
        let auth = "postgres@127.0.0.1: Permission denied (publickey).";
        assert!(matches!(
            classify(&t, &a, auth, Some(io::ErrorKind::PermissionDenied)),
            RemoteError::AuthFailed { .. }
        ));
    }

    #[test]
    fn the_dry_run_command_reads_like_ssh() {
        let mut t = target();
        t.known_hosts = Some("/etc/walwarden/known_hosts".into());
        t.stop_command = "pg_ctlcluster {major} main stop".into();
        assert_eq!(
            ssh_command_text(&t, &t.stop_command_for(15)),
            "ssh -o BatchMode=yes -o StrictHostKeyChecking=yes -o ConnectTimeout=10 -o UserKnownHostsFile=/etc/walwarden/known_hosts -p 40022 -l postgres 127.0.0.1 'pg_ctlcluster 15 main stop'"
        );
    }
}
