//! The target server's side, over SSH: what the backup server alone cannot
//! see. Its archive settings, pg_stat_archiver's counters, and the recent
//! "archive command failed" lines of its log, each with a diagnosis.
//!
//! One SSH login runs one small script (psql for the settings and counters as
//! JSON, then the log's tail), so a slow target costs one connect timeout at most.

use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::config::TargetServer;
use crate::pg::local::shell_quote;
use crate::pg::pglog::{Severity, Source, split_line};
use crate::pg::remote::{self, RemoteError};

/// Log lines read from the end of the server's log.
pub const LOG_TAIL_LINES: usize = 4000;
/// The production archive_timeout the tutorial recommends (one hour).
pub const PRODUCTION_ARCHIVE_TIMEOUT: u64 = 3600;
/// The archive_timeout of the 3–5 minute verification, to be undone afterwards.
pub const VERIFICATION_ARCHIVE_TIMEOUT: u64 = 60;
/// Failures kept for the screen and the report (newest last).
pub const FAILURES_SHOWN: usize = 5;

const LOG_MARK: &str = "@@walwarden-log@@";
const LOG_ERROR_MARK: &str = "@@walwarden-log-error@@";

#[derive(Debug, Error)]
pub enum TargetError {
    #[error(transparent)]
    Remote(#[from] RemoteError),
    #[error("{address}: psql printed no settings ({detail})")]
    Psql { address: String, detail: String },
}

/// The settings and counters read with psql (times in UTC, RFC 3339).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArchiverState {
    pub version_num: u32,
    pub wal_level: String,
    pub archive_mode: String,
    pub archive_command: String,
    /// Seconds; 0 = off.
    pub archive_timeout: u64,
    pub in_recovery: bool,
    pub archived_count: u64,
    pub last_archived_wal: Option<String>,
    pub last_archived_time: Option<String>,
    pub failed_count: u64,
    pub last_failed_wal: Option<String>,
    pub last_failed_time: Option<String>,
    pub stats_reset: Option<String>,
    pub server_now: String,
    /// pg_current_logfile() made absolute, when the logging collector runs.
    pub log_file: Option<String>,
}

impl ArchiverState {
    /// Failing now: the newest failure is later than the newest success.
    pub fn is_failing(&self) -> bool {
        match (&self.last_failed_time, &self.last_archived_time) {
            (None, _) => false,
            (Some(_), None) => true,
            // Same format and zone (UTC): the text compares as the time does.
            (Some(failed), Some(archived)) => failed > archived,
        }
    }
}

/// One "archive command failed" in the server's log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ArchiveFailure {
    /// The log line itself, prefix and all.
    pub line: String,
    /// The command, from the DETAIL line after it.
    pub command: Option<String>,
    /// What the command printed just before (ssh, gzip, sh...).
    pub output: Vec<String>,
    pub diagnosis: FailureDiagnosis,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FailureDiagnosis {
    pub code: &'static str,
    pub summary: String,
    pub fix: String,
}

/// Everything read from the target in one login.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TargetStatus {
    pub address: String,
    pub state: ArchiverState,
    /// The log file read, and the failures found in its tail (newest last).
    pub log_file: String,
    pub failures: Vec<ArchiveFailure>,
    /// Failures in the tail in all (only the last few are kept).
    pub failures_in_tail: usize,
    /// Why the log could not be read, if it could not.
    pub log_error: Option<String>,
}

impl ArchiveFailure {
    /// The segment the failed command was archiving, from its command line.
    pub fn segment(&self) -> Option<&str> {
        let command = self.command.as_deref()?;
        command
            .split(|c: char| !c.is_ascii_hexdigit())
            .find(|word| word.len() == 24)
    }
}

impl TargetStatus {
    /// Failing now, by the counters or by the log. The log matters: an
    /// archive_command exiting above 125 (ssh's 255 when it cannot connect or
    /// the host key is refused) is FATAL to the archiver, which restarts without
    /// counting it in pg_stat_archiver.failed_count.
    pub fn is_failing(&self) -> bool {
        if self.state.is_failing() {
            return true;
        }
        let newest_failed = self.failures.iter().rev().find_map(ArchiveFailure::segment);
        match (newest_failed, self.state.last_archived_wal.as_deref()) {
            (Some(failed), Some(archived)) => failed > archived,
            (Some(_), None) => true,
            (None, _) => false,
        }
    }
}

/// What the target view shows: the status, or why there is none.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "reached", rename_all = "snake_case")]
pub enum TargetView {
    #[serde(rename = "true")]
    Reached(Box<TargetStatus>),
    #[serde(rename = "false")]
    Unreachable { address: String, error: String },
}

const STATE_SQL: &str = "select row_to_json(t) from (select \
    current_setting('server_version_num')::int as version_num, \
    current_setting('wal_level') as wal_level, \
    current_setting('archive_mode') as archive_mode, \
    current_setting('archive_command') as archive_command, \
    (select setting::bigint from pg_settings where name = 'archive_timeout') as archive_timeout, \
    pg_is_in_recovery() as in_recovery, \
    a.archived_count, a.last_archived_wal, \
    to_char(a.last_archived_time at time zone 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') as last_archived_time, \
    a.failed_count, a.last_failed_wal, \
    to_char(a.last_failed_time at time zone 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') as last_failed_time, \
    to_char(a.stats_reset at time zone 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') as stats_reset, \
    to_char(now() at time zone 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') as server_now, \
    case when pg_current_logfile() is null then null \
         when left(pg_current_logfile(), 1) = '/' then pg_current_logfile() \
         else current_setting('data_directory') || '/' || pg_current_logfile() end as log_file \
    from pg_stat_archiver a) t";

/// psql as a superuser on the target, and the prefix that reads the log as postgres.
fn psql_and_reader(target: &TargetServer) -> (String, &'static str) {
    match &target.psql_command {
        Some(command) if command.trim_start().starts_with("sudo") => {
            (command.clone(), "sudo -n -u postgres ")
        }
        Some(command) => (command.clone(), ""),
        None if target.user == "postgres" => ("psql".into(), ""),
        None => ("sudo -n -u postgres psql".into(), "sudo -n -u postgres "),
    }
}

/// The script run on the target: settings as one JSON line, a mark, the log's tail.
pub fn remote_script(target: &TargetServer) -> String {
    let (psql, reader) = psql_and_reader(target);
    let psql = format!("{psql} -X -A -t -q -d postgres");
    let log = match &target.log_file {
        Some(file) => format!("f={}", shell_quote(file)),
        None => format!(
            "f=$({psql} -c {}); [ -n \"$f\" ] || f=/var/log/postgresql/postgresql-$( {psql} -c {} )-main.log",
            shell_quote(
                "select case when pg_current_logfile() is null then '' \
                 when left(pg_current_logfile(), 1) = '/' then pg_current_logfile() \
                 else current_setting('data_directory') || '/' || pg_current_logfile() end"
            ),
            shell_quote("select current_setting('server_version_num')::int / 10000")
        ),
    };
    format!(
        "set -e; {psql} -c {sql}; echo {LOG_MARK}; {log}; echo \"$f\"; \
         {reader}tail -n {LOG_TAIL_LINES} \"$f\" 2>&1 || echo \"{LOG_ERROR_MARK} cannot read $f\"",
        sql = shell_quote(STATE_SQL),
    )
}

/// Reads the target's side. Unreachable, refused and failing are errors; the
/// caller shows them as the view's state.
pub fn fetch(target: &TargetServer) -> Result<TargetStatus, TargetError> {
    let output = remote::run_remote_blocking(target, &remote_script(target))?;
    parse_output(&target.address(), &output.stdout)
}

/// [`fetch`] as the view shows it: never an error, the SSH failure is the state.
pub fn view(target: &TargetServer) -> TargetView {
    match fetch(target) {
        Ok(status) => TargetView::Reached(Box::new(status)),
        Err(error) => TargetView::Unreachable {
            address: target.address(),
            error: error.to_string(),
        },
    }
}

pub fn parse_output(address: &str, stdout: &str) -> Result<TargetStatus, TargetError> {
    let (head, log_part) = stdout.split_once(LOG_MARK).unwrap_or((stdout, ""));
    let json = head
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with('{'))
        .ok_or_else(|| TargetError::Psql {
            address: address.to_owned(),
            detail: format!("got {:?}", head.trim()),
        })?;
    let state: ArchiverState = serde_json::from_str(json).map_err(|e| TargetError::Psql {
        address: address.to_owned(),
        detail: e.to_string(),
    })?;
    let mut lines = log_part.trim_start_matches('\n').lines();
    let log_file = lines.next().unwrap_or_default().trim().to_owned();
    let log_text: Vec<&str> = lines.collect();
    let log_error = log_text
        .iter()
        .find_map(|l| l.strip_prefix(LOG_ERROR_MARK))
        .map(|rest| {
            let why = log_text
                .iter()
                .find(|l| l.starts_with("tail:") || l.starts_with("sudo:"))
                .map_or(String::new(), |l| format!(" ({l})"));
            format!("{}{why}", rest.trim())
        });
    let (failures, failures_in_tail) = if log_error.is_some() {
        (Vec::new(), 0)
    } else {
        let all = archive_failures(&log_text.join("\n"));
        let total = all.len();
        (
            all.into_iter()
                .skip(total.saturating_sub(FAILURES_SHOWN))
                .collect(),
            total,
        )
    };
    Ok(TargetStatus {
        address: address.to_owned(),
        state,
        log_file,
        failures,
        failures_in_tail,
        log_error,
    })
}

/// Every "archive command failed" in `log`, with the command (from the DETAIL
/// line after) and what the command printed just before (lines no server
/// wrote), diagnosed.
pub fn archive_failures(log: &str) -> Vec<ArchiveFailure> {
    let mut failures: Vec<ArchiveFailure> = Vec::new();
    let mut tool_output: Vec<String> = Vec::new();
    let mut awaiting_detail = false;
    for line in log.lines() {
        let parsed = split_line(line);
        match parsed.source {
            Source::Server(Severity::Continuation) if awaiting_detail => {
                if let Some(command) = parsed
                    .message
                    .strip_prefix("The failed archive command was: ")
                    && let Some(last) = failures.last_mut()
                {
                    last.command = Some(command.to_owned());
                }
                awaiting_detail = false;
            }
            Source::Server(_) => {
                awaiting_detail = false;
                if parsed.message.starts_with("archive command failed")
                    || parsed.message.starts_with("archive command was terminated")
                {
                    let output = std::mem::take(&mut tool_output);
                    let diagnosis = diagnose(parsed.message, &output);
                    failures.push(ArchiveFailure {
                        line: line.to_owned(),
                        command: None,
                        output,
                        diagnosis,
                    });
                    awaiting_detail = true;
                } else {
                    tool_output.clear();
                }
            }
            Source::Tool(_) | Source::Unknown => {
                let text = line.trim();
                if !text.is_empty() {
                    tool_output.push(text.to_owned());
                    if tool_output.len() > 5 {
                        tool_output.remove(0);
                    }
                }
            }
        }
    }
    failures
}

fn diagnosis(code: &'static str, summary: &str, fix: &str) -> FailureDiagnosis {
    FailureDiagnosis {
        code,
        summary: summary.to_owned(),
        fix: fix.to_owned(),
    }
}

/// Names what went wrong from what the command printed.
pub fn diagnose(message: &str, output: &[String]) -> FailureDiagnosis {
    if let Some(found) = output.iter().rev().find_map(|line| receiver_refusal(line)) {
        return found;
    }
    let text = output.join("\n");
    let has = |needle: &str| text.contains(needle);
    if has("Host key verification failed") || has("REMOTE HOST IDENTIFICATION HAS CHANGED") {
        diagnosis(
            "host-key",
            "ssh does not trust the backup server's host key (never accepted, or it changed)",
            "as postgres on the target: `ssh USER@BACKUPHOST` once, compare the fingerprint with the backup server's `ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub`, accept",
        )
    } else if has("Permission denied (publickey") || has("Too many authentication failures") {
        diagnosis(
            "ssh-key-refused",
            "the backup server refused the target's key",
            "on the backup server: `walwarden setup CLIENT --key postgres-key.pub` (the target's postgres user's public key)",
        )
    } else if has("No space left on device") || has("Disk quota exceeded") {
        diagnosis(
            "disk-full",
            "no space left (on the backup server's archive, or the target's temp)",
            "free space on the backup server's archive filesystem (`df -h ROOT`); archiving resumes by itself",
        )
    } else if has("Permission denied") || has("Read-only file system") {
        diagnosis(
            "archive-permission",
            "the client's user cannot write into its wal folder",
            "on the backup server: `walwarden setup CLIENT` (puts owner and mode 700 back)",
        )
    } else if has("Connection refused")
        || has("Connection timed out")
        || has("No route to host")
        || has("Could not resolve hostname")
        || has("Network is unreachable")
        || has("Connection closed")
    {
        diagnosis(
            "backup-host-unreachable",
            "the target cannot reach the backup server over SSH",
            "check the backup host's address in archive_command, its sshd and the firewall between",
        )
    } else if has("command not found") || has("not found") {
        diagnosis(
            "command-missing",
            "a program in archive_command is missing on one side",
            "install it (gzip, ssh, sync) or fix its path in archive_command",
        )
    } else if has("is already archived with other content") {
        diagnosis(
            "archive-conflict",
            "a file of that name is already in the archive with other content: another server (a restored copy, an old primary) archives into this client's folder, or this server's timeline collides with it",
            "find the server whose archive_command writes into this folder and stop its archiving; never delete the archived file to make room",
        )
    } else if has("arrived incomplete")
        || has("unexpected end of file")
        || has("not in gzip format")
        || has("crc error")
    {
        diagnosis(
            "bad-transfer",
            "the segment arrived damaged (gzip -t failed on the backup server)",
            "nothing to fix if it retries fine; if it repeats, check the network and the disks",
        )
    } else if message.contains("exit code 1") && output.is_empty() {
        diagnosis(
            "already-archived",
            "exit code 1 and no message: most often `test ! -f` refusing a segment already in the archive (another server archiving into this client's folder, or a restored copy still archiving)",
            "find which server writes this timeline; a restored server must not archive into the old client's folder",
        )
    } else if message.contains("terminated by signal") {
        diagnosis(
            "command-killed",
            "the archive command was killed (a timeout or the server stopping)",
            "usually harmless: PostgreSQL retries the segment",
        )
    } else {
        diagnosis(
            "archive-command-failed",
            "the archive command failed",
            "run the failed command as postgres on the target to see its error",
        )
    }
}

/// A refusal by the backup server's receiver (`walwarden receive`), as its
/// stderr reaches the target's log: `walwarden receive: refused … [code]`.
/// The code (the receiver's `RefusalCode`) says what happened.
pub fn receiver_refusal(line: &str) -> Option<FailureDiagnosis> {
    let text = line.trim();
    let rest = &text[text.find("walwarden receive: refused")?..];
    let code = rest
        .strip_suffix(']')
        .and_then(|r| r.rsplit_once('['))
        .map(|(_, code)| code)?;
    let (code, summary, fix) = match code {
        "rejected_overwrite" => (
            "receiver-overwrite",
            "the backup server already holds a different file of this name and kept it",
            "another server (a restored copy, a rebuilt replica) archives into this client's folder, or this server's timeline was reused: find it, stop its archiving; the refusal is in ROOT/CLIENT/.walwarden/receive.log",
        ),
        "foreign_segment" | "foreign_base" => (
            "receiver-foreign",
            "the backup server refused WAL from another database system than this client's",
            "check that archive_command names this server's own client; a rebuilt cluster (initdb, pg_upgrade) needs a new client folder (`walwarden setup NEWNAME`)",
        ),
        "corrupt_upload" | "misnamed_segment" => (
            "receiver-bad-upload",
            "the backup server refused a damaged or misnamed WAL file",
            "nothing to fix if the retry lands; if it repeats, run the archive_command by hand as postgres and check pg_wal's file",
        ),
        "quota_exceeded" => (
            "receiver-quota",
            "the client's quota on the backup server is used up",
            "on the backup server: raise `quota` under [clients.NAME] in the config, or move old backups out; archiving resumes by itself",
        ),
        "disk_full" => (
            "disk-full",
            "the backup server's archive file system is full",
            "free space on the backup server's archive filesystem (`df -h ROOT`); archiving resumes by itself",
        ),
        "not_allowed" | "bad_name" => (
            "receiver-wrong-command",
            "the backup server's receiver refused the command: archive_command is not the one for the receiver",
            "paste the archive_command `walwarden setup CLIENT` prints (it sends `put-wal %f.gz`)",
        ),
        "busy" => (
            "receiver-busy",
            "the same file was being uploaded by several connections at once",
            "usually a hung earlier attempt: PostgreSQL retries; check the network if it repeats",
        ),
        "misconfigured" => (
            "receiver-misconfigured",
            "the backup server's receiver is set up wrong for this key",
            "on the backup server: `walwarden setup CLIENT` (folders, owner, the key's forced command) and a valid config",
        ),
        _ => (
            "receiver-refused",
            "the backup server's receiver refused the file",
            "read the receiver's message above, and ROOT/CLIENT/.walwarden/receive.log on the backup server",
        ),
    };
    Some(diagnosis(code, summary, fix))
}

/// How long ago an RFC 3339 UTC time from the target was, by this machine's clock.
pub fn age_of(time: &str, now: SystemTime) -> Option<Duration> {
    let at = humantime::parse_rfc3339_weak(time.trim_end_matches('Z')).ok()?;
    Some(now.duration_since(at).unwrap_or_default())
}

/// The target's side in a few lines: settings, counters, the newest failure.
pub fn summary_lines(view: &TargetView, now: SystemTime) -> Vec<String> {
    let status = match view {
        TargetView::Unreachable { address, error } => {
            return vec![format!("target {address}: NOT REACHED: {error}")];
        }
        TargetView::Reached(status) => status,
    };
    let state = &status.state;
    let ago = |time: &Option<String>| {
        time.as_deref()
            .and_then(|t| age_of(t, now))
            .map_or(String::new(), |d| {
                format!(", {} ago", crate::display::short_duration(d))
            })
    };
    let mut lines = vec![
        format!(
            "target {}: PostgreSQL {}, wal_level {}, archive_mode {}, archive_timeout {}{}",
            status.address,
            state.version_num / 10000,
            state.wal_level,
            state.archive_mode,
            crate::display::short_duration(std::time::Duration::from_secs(state.archive_timeout)),
            if state.in_recovery {
                " (in recovery)"
            } else {
                ""
            }
        ),
        format!(
            "archiver: {} archived (last {}{}), {} failed (last {}{})",
            state.archived_count,
            state.last_archived_wal.as_deref().unwrap_or("none"),
            ago(&state.last_archived_time),
            state.failed_count,
            state.last_failed_wal.as_deref().unwrap_or("none"),
            ago(&state.last_failed_time),
        ),
    ];
    match (&status.log_error, status.failures.last()) {
        (Some(error), _) => lines.push(format!("log {}: {error}", status.log_file)),
        (None, Some(failure)) => {
            lines.push(format!(
                "log {}: {} archive failures in its last {} lines; newest: {} [{}]",
                status.log_file,
                status.failures_in_tail,
                LOG_TAIL_LINES,
                failure.diagnosis.summary,
                failure.diagnosis.code
            ));
            for output in &failure.output {
                lines.push(format!("  | {output}"));
            }
            lines.push(format!("  fix: {}", failure.diagnosis.fix));
        }
        (None, None) => lines.push(format!("log {}: no archive failures", status.log_file)),
    }
    lines
}

/// A target's side as tests build it: a healthy archiver's state and a log tail with failures.
#[cfg(test)]
pub(crate) mod fixtures {
    use super::*;

    pub const LOG: &str = "\
2026-11-25 13:11:50.001 UTC [9012] LOG:  checkpoint starting: time
Host key verification failed.
2026-11-25 13:11:53.068 UTC [9012] LOG:  archive command failed with exit code 255
2026-11-25 13:11:53.068 UTC [9012] DETAIL:  The failed archive command was: gzip -c -9 pg_wal/00000001000000000000000B | ssh -o BatchMode=yes foo@backup \"...\"
2026-11-25 13:11:54.083 UTC [9012] WARNING:  archiving write-ahead log file \"00000001000000000000000B\" failed too many times, will try again later
2026-11-25 13:12:53.068 UTC [9012] LOG:  archive command failed with exit code 1
2026-11-25 13:12:53.068 UTC [9012] DETAIL:  The failed archive command was: test ! -f /b/foo/wal/00000001000000000000000B.gz && gzip
sh: 1: cannot create /b/foo/wal/00000001000000000000000C.gz.part: Permission denied
2026-11-25 13:13:53.068 UTC [9012] LOG:  archive command failed with exit code 2
2026-11-25 13:13:53.069 UTC [9012] DETAIL:  The failed archive command was: x
";

    pub fn state() -> ArchiverState {
        ArchiverState {
            version_num: 150010,
            wal_level: "replica".into(),
            archive_mode: "on".into(),
            archive_command: "gzip -c -9 %p | ssh foo@b \"... /b/foo/wal/%f.gz\"".into(),
            archive_timeout: 3600,
            in_recovery: false,
            archived_count: 10,
            last_archived_wal: Some("00000001000000000000000A".into()),
            last_archived_time: Some("2026-11-25T13:10:00.000000Z".into()),
            failed_count: 0,
            last_failed_wal: None,
            last_failed_time: None,
            stats_reset: None,
            server_now: "2026-11-25T13:20:00.000000Z".into(),
            log_file: None,
        }
    }

    pub fn reached(state: ArchiverState) -> TargetView {
        with_log(state, "")
    }

    pub fn with_log(state: ArchiverState, log: &str) -> TargetView {
        TargetView::Reached(Box::new(TargetStatus {
            address: "db".into(),
            state,
            log_file: "/var/log/x.log".into(),
            failures: archive_failures(log),
            failures_in_tail: archive_failures(log).len(),
            log_error: None,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::{LOG, state};
    use super::*;

    #[test]
    fn failures_are_found_with_their_command_output_and_diagnosis() {
        let failures = archive_failures(LOG);
        assert_eq!(failures.len(), 3);
        assert_eq!(failures[0].output, vec!["Host key verification failed."]);
        assert_eq!(failures[0].diagnosis.code, "host-key");
        assert!(
            failures[0]
                .command
                .as_deref()
                .unwrap()
                .starts_with("gzip -c -9 pg_wal/00000001000000000000000B")
        );
        // The checkpoint line before the stderr line is not part of the failure.
        assert_eq!(failures[1].output, Vec::<String>::new());
        assert_eq!(failures[1].diagnosis.code, "already-archived");
        assert_eq!(failures[2].diagnosis.code, "archive-permission");
        assert_eq!(failures[2].command.as_deref(), Some("x"));
    }

    #[test]
    fn diagnoses_name_the_usual_causes() {
        let code = |line: &str| {
            diagnose(
                "archive command failed with exit code 255",
                &[line.to_owned()],
            )
            .code
        };
        assert_eq!(
            code("foo@b: Permission denied (publickey)."),
            "ssh-key-refused"
        );
        assert_eq!(
            code("cat: write error: No space left on device"),
            "disk-full"
        );
        assert_eq!(
            code("ssh: connect to host 10.0.0.9 port 22: Connection refused"),
            "backup-host-unreachable"
        );
        assert_eq!(
            code("ssh: Could not resolve hostname backup: Name or service not known"),
            "backup-host-unreachable"
        );
        assert_eq!(
            code("gzip: /b/foo/wal/x.gz.part: unexpected end of file"),
            "bad-transfer"
        );
        assert_eq!(
            code(
                "walwarden: /b/foo/wal/000000010000000000000007.gz is already archived with other content: not overwritten"
            ),
            "archive-conflict"
        );
        assert_eq!(
            code("walwarden: 000000010000000000000007.gz arrived incomplete"),
            "bad-transfer"
        );
        assert_eq!(
            code("Connection timed out during banner exchange"),
            "backup-host-unreachable"
        );
        assert_eq!(code("something else"), "archive-command-failed");
    }

    #[test]
    fn output_parses_and_bad_output_is_an_error_not_a_panic() {
        let json = serde_json::to_string(&state()).unwrap();
        let stdout = format!("{json}\n{LOG_MARK}\n/var/log/pg.log\n{LOG}");
        let status = parse_output("db", &stdout).unwrap();
        assert_eq!(status.state, state());
        assert_eq!(status.log_file, "/var/log/pg.log");
        assert_eq!(status.failures_in_tail, 3);
        let unreadable = format!(
            "{json}\n{LOG_MARK}\n/var/log/pg.log\ntail: cannot open '/var/log/pg.log' for reading: Permission denied\n{LOG_ERROR_MARK} cannot read /var/log/pg.log\n"
        );
        let status = parse_output("db", &unreadable).unwrap();
        assert!(
            status
                .log_error
                .as_deref()
                .unwrap()
                .contains("Permission denied")
        );
        for junk in [
            "",
            "psql: error: connection refused",
            "{not json",
            "{\"version_num\": \"x\"}",
        ] {
            assert!(parse_output("db", junk).is_err(), "{junk:?}");
        }
    }

    #[test]
    fn the_script_quotes_the_configured_commands() {
        let mut target = TargetServer::new("db", "admin");
        let script = remote_script(&target);
        assert!(
            script.contains(
                "sudo -n -u postgres psql -X -A -t -q -d postgres -c 'select row_to_json"
            ),
            "{script}"
        );
        assert!(
            script.contains("sudo -n -u postgres tail -n 4000"),
            "{script}"
        );
        target.user = "postgres".into();
        target.log_file = Some("/var/log/it's.log".into());
        let script = remote_script(&target);
        assert!(script.starts_with("set -e; psql -X"), "{script}");
        assert!(script.contains("f='/var/log/it'\\''s.log'"), "{script}");
        assert!(!script.contains("sudo"), "{script}");
    }
}
