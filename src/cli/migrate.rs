//! `walwarden migrate --from CONNINFO --to CONNINFO`: the tutorial's move to
//! another major version (pg_dumpall -c, gzip, psql), with the load log read
//! for every error and both ends compared afterwards.
//! Exit 0 done, 1 not done (unaccepted errors, differences, unfinished load),
//! 2 could not run (an empty connection string, unreachable server, refused
//! preflight); a usage error (clap) exits 3, as for every subcommand.

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Args;
use color_eyre::eyre::{Result, WrapErr};

use crate::display::human_bytes;
use crate::ops::migrate::{self, End, MigratePlan, Migration, Preflight, Progress};
use crate::pg::local::PgUser;

use super::failure::Failure;

/// Exit code: the migration could not run (printed as `error:`).
const COULD_NOT_RUN: i32 = 2;

#[derive(Debug, Args)]
pub struct MigrateArgs {
    /// The old server, as a libpq connection string: "host=/run/postgresql port=5432 user=postgres"
    /// (passwords from ~/.pgpass or PGPASSWORD: walwarden never prompts)
    #[arg(long, value_name = "CONNINFO")]
    pub from: String,
    /// The new server, as a libpq connection string (its databases with the source's names are replaced)
    #[arg(long, value_name = "CONNINFO")]
    pub to: String,
    /// psql for the source (default: psql on PATH)
    #[arg(long, value_name = "DIR")]
    pub from_bin: Option<PathBuf>,
    /// psql and pg_dumpall of the new major version (default: on PATH)
    #[arg(long, value_name = "DIR")]
    pub to_bin: Option<PathBuf>,
    /// pg_dumpall from this directory instead of --to-bin's
    #[arg(long, value_name = "DIR")]
    pub dumpall_bin: Option<PathBuf>,
    /// The gzip'ed dump to write (never overwritten); the load log goes to FILE.load.log
    #[arg(long, value_name = "FILE")]
    pub dump: Option<PathBuf>,
    /// The client's name: names the dump file and the backup setup to run afterwards
    #[arg(long, value_name = "CLIENT")]
    pub client: Option<String>,
    /// Run psql and pg_dumpall as this OS user (peer authentication), e.g. postgres
    #[arg(long, value_name = "USER")]
    pub os_user: Option<String>,
    /// Call the migration done even though the load reported errors (they are still listed)
    #[arg(long)]
    pub accept_errors: bool,
    /// Replace destination databases that hold tables without asking
    #[arg(long)]
    pub yes: bool,
    /// Print the whole record as JSON on stdout
    #[arg(long)]
    pub json: bool,
}

/// Progress on stderr: one line rewritten on a terminal, a line every few
/// seconds otherwise (logs of a run under nohup stay short).
struct StderrProgress {
    terminal: bool,
    last: Option<Instant>,
    open_line: bool,
}

impl StderrProgress {
    fn due(&mut self) -> bool {
        let every = if self.terminal {
            Duration::from_millis(200)
        } else {
            Duration::from_secs(5)
        };
        let due = self.last.is_none_or(|t| t.elapsed() >= every);
        if due {
            self.last = Some(Instant::now());
        }
        due
    }

    fn show(&mut self, text: &str) {
        let text = crate::display::escape_text(text);
        if self.terminal {
            eprint!("\r\x1b[2K{text}");
            let _ = std::io::stderr().flush();
            self.open_line = true;
        } else {
            eprintln!("{text}");
        }
    }

    fn end_line(&mut self) {
        if self.open_line {
            eprintln!();
            self.open_line = false;
        }
        self.last = None;
    }
}

fn rate(bytes: u64, elapsed: Duration) -> String {
    let seconds = elapsed.as_secs_f64();
    if seconds < 0.001 {
        return String::new();
    }
    format!(", {}/s", human_bytes((bytes as f64 / seconds) as u64))
}

impl Progress for StderrProgress {
    fn step(&mut self, text: &str) {
        self.end_line();
        eprintln!("{text}…");
    }
    fn dumped(&mut self, sql: u64, written: u64, elapsed: Duration) {
        if self.due() {
            self.show(&format!(
                "  dumped {} of SQL, {} written{}",
                human_bytes(sql),
                human_bytes(written),
                rate(sql, elapsed)
            ));
        }
    }
    fn loaded(&mut self, read: u64, total: u64, elapsed: Duration) {
        if self.due() {
            let percent = (read * 100).checked_div(total).unwrap_or(100);
            self.show(&format!(
                "  loaded {} of {} ({percent}%){}",
                human_bytes(read),
                human_bytes(total),
                rate(read, elapsed)
            ));
        }
    }
}

fn plan(args: &MigrateArgs) -> Result<MigratePlan, String> {
    let os_user = match &args.os_user {
        Some(name) => Some(PgUser::lookup(name).map_err(|e| e.to_string())?),
        None => None,
    };
    for (flag, value) in [("--from", &args.from), ("--to", &args.to)] {
        if value.trim().is_empty() {
            return Err(format!(
                "{flag} is empty: give a connection string such as \"host=/run/postgresql port=5432 user=postgres\""
            ));
        }
    }
    let dump_file = args.dump.clone().unwrap_or_else(|| {
        migrate::default_dump_name(args.client.as_deref(), std::time::SystemTime::now())
    });
    Ok(MigratePlan {
        source: End {
            name: "source",
            conninfo: args.from.clone(),
            bin: args.from_bin.clone(),
            os_user: os_user.clone(),
        },
        destination: End {
            name: "destination",
            conninfo: args.to.clone(),
            bin: args.to_bin.clone(),
            os_user,
        },
        dumpall_bin: args.dumpall_bin.clone(),
        dump_file,
    })
}

fn confirm_replace(args: &MigrateArgs, preflight: &Preflight) -> bool {
    if preflight.replaced.is_empty() || args.yes {
        return true;
    }
    eprintln!("The load drops and re-creates these destination databases, which hold data now:");
    for (db, tables, rows) in &preflight.replaced {
        eprintln!(
            "  {}: {tables} table(s), {rows} row(s)",
            crate::display::escape_text(db)
        );
    }
    if !std::io::stdin().is_terminal() {
        eprintln!("not a terminal: pass --yes to replace them");
        return false;
    }
    eprint!("Replace them? [y/N] ");
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    if std::io::stdin().lock().read_line(&mut answer).is_err() {
        return false;
    }
    matches!(answer.trim(), "y" | "Y" | "yes")
}

pub fn run(args: &MigrateArgs) -> Result<i32> {
    let plan = match plan(args) {
        Ok(plan) => plan,
        Err(message) => return Err(Failure::new(message).code(COULD_NOT_RUN).into()),
    };
    let preflight = match migrate::preflight(&plan) {
        Ok(p) => p,
        Err(error) => return Err(Failure::new(error.to_string()).code(COULD_NOT_RUN).into()),
    };
    eprintln!(
        "source PostgreSQL {} → destination PostgreSQL {}; pg_dumpall: {} ({})",
        preflight.source.version,
        preflight.destination.version,
        preflight.dumpall.display(),
        preflight.dumpall_version
    );
    for note in &preflight.notes {
        eprintln!("note: {note}");
    }
    if !confirm_replace(args, &preflight) {
        return Err(Failure::new(
            "nothing was changed: replacing those databases was not confirmed",
        )
        .hint("answer yes on a terminal, or pass --yes")
        .code(COULD_NOT_RUN)
        .into());
    }
    let mut progress = StderrProgress {
        terminal: std::io::stderr().is_terminal(),
        last: None,
        open_line: false,
    };
    let migration = match migrate::migrate(&plan, preflight, &mut progress) {
        Ok(m) => m,
        Err(error) => {
            progress.end_line();
            return Err(Failure::new(error.to_string()).code(COULD_NOT_RUN).into());
        }
    };
    progress.end_line();
    let problems = migration.problems(args.accept_errors);
    if args.json {
        let record = serde_json::json!({
            "done": problems.is_empty(),
            "problems": problems,
            "migration": migration,
        });
        println!(
            "{}",
            serde_json::to_string_pretty(&record).wrap_err("cannot print the record")?
        );
    } else {
        print_report(&migration, &problems, args);
    }
    Ok(if problems.is_empty() { 0 } else { 1 })
}

/// The report for people; names from the servers (databases, roles,
/// tables, the load log's lines) are data, escaped when printed.
fn print_report(m: &Migration, problems: &[String], args: &MigrateArgs) {
    let mut out = String::new();
    report_text(&mut out, m, problems, args);
    print!("{}", crate::display::escape_text(&out));
}

fn report_text(out: &mut String, m: &Migration, problems: &[String], args: &MigrateArgs) {
    use std::fmt::Write as _;
    let _ = writeln!(
        out,
        "dump: {} ({} of SQL, {} gzip'ed) in {:.1} s",
        m.dump.file.display(),
        human_bytes(m.dump.sql_bytes),
        human_bytes(m.dump.file_bytes),
        m.dump.seconds
    );
    if !m.dump.messages.is_empty() {
        let _ = writeln!(out, "pg_dumpall said: {}", m.dump.messages);
    }
    let log = &m.load.log;
    let _ = writeln!(
        out,
        "load: psql exit {} in {:.1} s; full output ({} lines) in {}",
        m.load
            .psql_exit
            .map_or("by a signal".to_owned(), |c| c.to_string()),
        m.load.seconds,
        log.lines,
        m.load.log_file.display()
    );
    let unexpected = log.unexpected_count();
    let _ = writeln!(
        out,
        "{} ERROR(s) in the load log: {unexpected} to look at, {} expected; {} warning(s)",
        log.errors.len(),
        log.errors.len() - unexpected,
        log.warnings
    );
    for error in log.unexpected() {
        print_error(out, "  ", error);
    }
    for error in log.errors.iter().filter(|e| e.expected.is_some()) {
        print_error(out, "  expected: ", error);
        if let Some(why) = &error.expected {
            let _ = writeln!(out, "      ({why})");
        }
    }
    let v = &m.verification;
    let _ = writeln!(
        out,
        "compared: {} database(s), {} role(s), {} table(s), {} row(s) on the source",
        v.databases, v.roles, v.tables, v.rows
    );
    for db in &v.missing_databases {
        let _ = writeln!(out, "  database {db} is missing on the destination");
    }
    for role in &v.missing_roles {
        let _ = writeln!(out, "  role {role} is missing on the destination");
    }
    for d in &v.differences {
        let count = |c: Option<u64>| c.map_or("no table".to_owned(), |n| format!("{n} rows"));
        let _ = writeln!(
            out,
            "  {}: {}.{}: source {}, destination {}",
            d.database,
            d.schema,
            d.table,
            count(d.source),
            count(d.destination)
        );
    }
    if !v.extra_databases.is_empty() || !v.extra_roles.is_empty() {
        let _ = writeln!(
            out,
            "  only on the destination (there before, left alone): databases [{}], roles [{}]",
            v.extra_databases.join(", "),
            v.extra_roles.join(", ")
        );
    }
    if v.equal() {
        let _ = writeln!(out, "  equal on both sides");
    }
    if problems.is_empty() {
        if unexpected > 0 {
            let _ = writeln!(
                out,
                "migration DONE, with {unexpected} error(s) accepted (--accept-errors)"
            );
        } else {
            let _ = writeln!(out, "migration DONE");
        }
    } else {
        let _ = writeln!(out, "migration NOT DONE:");
        for problem in problems {
            let _ = writeln!(out, "  - {problem}");
        }
    }
    let client = args.client.as_deref().unwrap_or("CLIENT");
    let _ = writeln!(
        out,
        "Reminder: the new server has no backups yet, and the old ones cannot restore onto it \
         (another major version). On the backup server, run `walwarden setup {client} --key \
         <the new server's postgres public key>` and put the lines it prints on the new server \
         (archive_command, a first pg_basebackup), then `walwarden verify {client}`. The old \
         cluster's WAL in {client}/wal would clash with the new one's (its names start again \
         at 000000010000000000000001): move that folder aside first. Then switch the services \
         to the new address."
    );
}

fn print_error(out: &mut String, prefix: &str, error: &migrate::loadlog::LoadError) {
    use std::fmt::Write as _;
    let place = match error.script_line {
        Some(n) => format!("log line {}, dump line {n}", error.log_line),
        None => format!("log line {}", error.log_line),
    };
    let _ = writeln!(out, "{prefix}{place}: {}", error.text());
    for line in &error.detail {
        let _ = writeln!(out, "      {line}");
    }
}
