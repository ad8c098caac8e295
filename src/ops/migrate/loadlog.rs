//! Reading psql's output from loading a pg_dumpall script: the part of the
//! tutorial a person does by eye ("view the recovery log"), done for every line.
//!
//! psql runs with `ON_ERROR_STOP=0`, so a failed statement does not stop the
//! load: the log is the only record of it. Errors look like
//! `psql:<stdin>:26: ERROR:  current user cannot be dropped`, followed by
//! unprefixed `DETAIL:`/`HINT:`/`CONTEXT:` lines. psql's own failures (a lost
//! connection, an unknown backslash command) say `error:` in lower case.
//! Every one is listed; the two that `pg_dumpall -c` causes on any cluster
//! are marked expected, never dropped.

use std::io::BufRead;

use serde::Serialize;

/// One error reported in the load log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LoadError {
    /// 1-based line in the load log.
    pub log_line: usize,
    /// The line of the dump script psql was running, when it says.
    pub script_line: Option<u64>,
    /// `ERROR`, `FATAL`, `PANIC`, or `error` (psql's own).
    pub severity: String,
    /// The message after the severity, e.g. `role "x" already exists`.
    pub message: String,
    /// The lines that followed it: DETAIL, HINT, CONTEXT, LINE and caret lines.
    pub detail: Vec<String>,
    /// Why this error is harmless, when it is one `pg_dumpall -c` always causes.
    pub expected: Option<String>,
}

impl LoadError {
    /// The error as psql printed it, on one line.
    pub fn text(&self) -> String {
        format!("{}:  {}", self.severity, self.message)
    }
}

/// What the load log holds, in numbers and the errors themselves.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct LoadLog {
    pub lines: usize,
    pub warnings: usize,
    pub errors: Vec<LoadError>,
}

impl LoadLog {
    /// Errors that no rule marks harmless: each needs a person's decision.
    pub fn unexpected(&self) -> impl Iterator<Item = &LoadError> {
        self.errors.iter().filter(|e| e.expected.is_none())
    }

    pub fn unexpected_count(&self) -> usize {
        self.unexpected().count()
    }
}

const SEVERITIES: [&str; 4] = ["ERROR", "FATAL", "PANIC", "error"];
const CONTINUATIONS: [&str; 7] = [
    "DETAIL:",
    "HINT:",
    "CONTEXT:",
    "QUERY:",
    "LINE ",
    "LOCATION:",
    "WHERE:",
];

/// Reads a load log. `load_user` is the role psql connected as on the
/// destination: `pg_dumpall -c` drops and creates every role, that one
/// included, and both statements fail harmlessly for it.
pub fn read(reader: impl BufRead, load_user: &str) -> std::io::Result<LoadLog> {
    let mut log = LoadLog::default();
    let mut reader = reader;
    let mut buf = Vec::new();
    // Whether the previous line belonged to an error, so continuations attach to it.
    let mut in_error = false;
    loop {
        buf.clear();
        if reader.read_until(b'\n', &mut buf)? == 0 {
            break;
        }
        log.lines += 1;
        let line = String::from_utf8_lossy(&buf);
        let line = line.trim_end_matches(['\n', '\r']);
        let (script_line, message) = split_location(line);
        if let Some((severity, text)) = severity_of(message) {
            log.errors.push(LoadError {
                log_line: log.lines,
                script_line,
                severity: severity.to_owned(),
                message: text.to_owned(),
                detail: Vec::new(),
                expected: expected_reason(severity, text, load_user),
            });
            in_error = true;
            continue;
        }
        if message.starts_with("WARNING:") {
            log.warnings += 1;
        }
        let continues = script_line.is_none()
            && (CONTINUATIONS.iter().any(|c| line.starts_with(c))
                || (line.starts_with(' ') && !line.trim().is_empty()));
        match log.errors.last_mut() {
            Some(last) if in_error && continues => last.detail.push(line.to_owned()),
            _ => in_error = false,
        }
    }
    Ok(log)
}

/// Splits `psql:<stdin>:26: ERROR: ...` into (Some(26), `ERROR: ...`) and
/// `psql: error: ...` into (None, `error: ...`). Other lines pass unchanged.
fn split_location(line: &str) -> (Option<u64>, &str) {
    let Some(rest) = line.strip_prefix("psql:") else {
        return (None, line);
    };
    if let Some(message) = rest.strip_prefix(' ') {
        return (None, message);
    }
    // The source name may hold colons (a file path); the first `:N: ` ends it.
    let mut from = 0;
    while let Some(colon) = rest[from..].find(':').map(|i| from + i) {
        let after = &rest[colon + 1..];
        let digits = after.bytes().take_while(u8::is_ascii_digit).count();
        if digits > 0 && after[digits..].starts_with(": ") {
            let number = after[..digits].parse().ok();
            return (number, &after[digits + 2..]);
        }
        from = colon + 1;
    }
    (None, line)
}

fn severity_of(message: &str) -> Option<(&'static str, &str)> {
    SEVERITIES.iter().find_map(|severity| {
        let rest = message.strip_prefix(severity)?.strip_prefix(':')?;
        Some((*severity, rest.trim_start()))
    })
}

/// The errors `pg_dumpall -c` produces on every destination: its script drops
/// and re-creates all roles, and the role running the load can neither drop
/// itself nor be created again. Its ALTER ROLE right after still applies the
/// source's attributes. Nothing else is excused.
fn expected_reason(severity: &str, message: &str, load_user: &str) -> Option<String> {
    if severity != "ERROR" {
        return None;
    }
    if message == "current user cannot be dropped" {
        return Some(format!(
            "pg_dumpall -c drops every role, and {load_user}, which runs the load, cannot drop itself"
        ));
    }
    if message == format!("role \"{load_user}\" already exists") {
        return Some(format!(
            "{load_user} runs the load, so it exists already; the ALTER ROLE after it applies the source's attributes"
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const FRESH: &str = "SET\nSET\nDROP DATABASE\n\
psql:<stdin>:25: NOTICE:  role \"app_owner\" does not exist, skipping\n\
DROP ROLE\n\
psql:<stdin>:26: ERROR:  current user cannot be dropped\n\
DROP ROLE\nCREATE ROLE\nALTER ROLE\n\
psql:<stdin>:36: ERROR:  role \"postgres\" already exists\n\
ALTER ROLE\n";

    #[test]
    fn a_fresh_cluster_gives_two_expected_errors() {
        let log = read(FRESH.as_bytes(), "postgres").unwrap();
        assert_eq!(log.lines, 11);
        assert_eq!(log.errors.len(), 2);
        assert_eq!(log.unexpected_count(), 0);
        assert_eq!(log.errors[0].log_line, 6);
        assert_eq!(log.errors[0].script_line, Some(26));
        assert_eq!(log.errors[0].message, "current user cannot be dropped");
        assert_eq!(log.errors[1].log_line, 10);
        assert_eq!(log.errors[1].script_line, Some(36));
        assert_eq!(
            log.errors[1].text(),
            "ERROR:  role \"postgres\" already exists"
        );
    }

    #[test]
    fn another_role_existing_is_not_excused() {
        // The same text loaded as another user: the postgres line is a real error there.
        let log = read(FRESH.as_bytes(), "admin").unwrap();
        assert_eq!(log.unexpected_count(), 1);
        assert_eq!(log.unexpected().next().unwrap().script_line, Some(36));
    }

    #[test]
    fn details_attach_to_their_error() {
        let text = "DROP DATABASE\n\
psql:<stdin>:25: ERROR:  role \"app_owner\" cannot be dropped because some objects depend on it\n\
DETAIL:  owner of database other_db\n\
psql:<stdin>:26: ERROR:  current user cannot be dropped\n\
DROP ROLE\n\
psql:/tmp/a:b/dump.sql:120: ERROR:  syntax error at or near \"CREAT\"\n\
LINE 1: CREAT TABLE x ();\n        ^\n\
CREATE TABLE\n\
psql:<stdin>:300: WARNING:  no privileges were granted for \"t\"\n\
DETAIL:  not attached to anything\n";
        let log = read(text.as_bytes(), "postgres").unwrap();
        assert_eq!(log.errors.len(), 3);
        assert_eq!(log.warnings, 1);
        assert_eq!(
            log.errors[0].detail,
            vec!["DETAIL:  owner of database other_db"]
        );
        assert!(log.errors[0].expected.is_none());
        assert!(log.errors[1].expected.is_some());
        assert!(log.errors[1].detail.is_empty());
        assert_eq!(log.errors[2].script_line, Some(120));
        assert_eq!(log.errors[2].message, "syntax error at or near \"CREAT\"");
        assert_eq!(log.errors[2].detail.len(), 2);
    }

    #[test]
    fn psql_s_own_failures_count() {
        let text = "psql:<stdin>:5: error: invalid command \\restrict\n\
psql:<stdin>:250: error: connection to server on socket \"/tmp/.s.PGSQL.5432\" failed: FATAL:  database \"shop\" does not exist\n\
psql: error: connection to server on socket \"/tmp/x\" failed: No such file or directory\n\
FATAL:  terminating connection due to administrator command\n\
server closed the connection unexpectedly\n";
        let log = read(text.as_bytes(), "postgres").unwrap();
        let severities: Vec<&str> = log.errors.iter().map(|e| e.severity.as_str()).collect();
        assert_eq!(severities, ["error", "error", "error", "FATAL"]);
        assert_eq!(log.errors[0].script_line, Some(5));
        assert_eq!(log.errors[2].script_line, None);
        assert_eq!(log.unexpected_count(), 4);
    }

    #[test]
    fn output_that_mentions_errors_is_not_one() {
        let text = "INSERT 0 1\n ERROR: in a result row\nNOTICE:  ERROR: quoted\nerrors: 0\n";
        let log = read(text.as_bytes(), "postgres").unwrap();
        assert!(log.errors.is_empty(), "{:?}", log.errors);
    }

    #[test]
    fn invalid_utf8_and_crlf_do_not_stop_the_reading() {
        let text = b"psql:<stdin>:7: ERROR:  bad byte \xff here\r\nSET\n";
        let log = read(&text[..], "postgres").unwrap();
        assert_eq!(log.errors.len(), 1);
        assert!(log.errors[0].message.starts_with("bad byte"));
        assert!(log.errors[0].message.ends_with("here"));
    }

    #[test]
    fn locations_split() {
        assert_eq!(
            split_location("psql:<stdin>:26: ERROR: x"),
            (Some(26), "ERROR: x")
        );
        assert_eq!(split_location("psql: error: y"), (None, "error: y"));
        assert_eq!(split_location("CREATE ROLE"), (None, "CREATE ROLE"));
        assert_eq!(split_location("psql:nonsense"), (None, "psql:nonsense"));
        assert_eq!(split_location("psql:"), (None, "psql:"));
    }
}
