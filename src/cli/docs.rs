//! What the command line says about itself: the exit status of every
//! subcommand (one table, shown in `--help`, the man pages and the README),
//! shell completions (clap_complete) and man pages (clap_mangen), all
//! generated from the clap definitions.

use std::io::Write;
use std::path::PathBuf;

use clap::{Args, CommandFactory};
use clap_complete::Shell;
use clap_mangen::Man;
use clap_mangen::roff::{Roff, bold, roman};
use color_eyre::eyre::{Result, WrapErr};

use super::Cli;
use super::failure::Failure;

/// A usage error (unknown flag, missing value, bad value), for every
/// subcommand: UNKNOWN in the monitoring-plugin convention `check` follows,
/// never 2 (clap's default), which a monitoring system reads as CRITICAL.
pub const USAGE_ERROR: i32 = 3;

/// Each subcommand's exit codes (`None`: the dashboard, no subcommand):
/// (code, a word or two for the summary in `walwarden --help`, the meaning).
pub type ExitCodes = &'static [(i32, &'static str, &'static str)];

pub const EXIT_STATUS: &[(Option<&str>, ExitCodes)] = &[
    (
        None,
        &[
            (0, "quit", "the dashboard was quit"),
            (
                3,
                "could not start",
                "it could not start (bad config, no terminal), or a usage error",
            ),
        ],
    ),
    (
        Some("check"),
        &[
            (0, "ok", "every client is ok"),
            (1, "warning", "the worst is a warning"),
            (2, "critical", "the worst is critical"),
            (
                3,
                "unknown",
                "unknown: a client could not be read, the root is missing or empty, a bad config; or a usage error",
            ),
        ],
    ),
    (
        Some("verify"),
        &[
            (0, "PASS", "PASS"),
            (1, "FAIL", "FAIL"),
            (
                3,
                "could not run",
                "it could not run (no such client, unreadable root, bad config), or a usage error",
            ),
        ],
    ),
    (
        Some("restore"),
        &[
            (
                0,
                "done",
                "restored (or: the dry run is complete, the rollback is done)",
            ),
            (
                1,
                "did not complete",
                "the restore started and did not complete: its journal says what was done; --resume goes on, --rollback undoes it",
            ),
            (
                3,
                "refused, nothing changed",
                "refused before anything was changed (preflight, bad input, no data directory), or a usage error",
            ),
            (
                130,
                "interrupted",
                "Ctrl-C: once the restored server ran, it was stopped (fast shutdown) with its wal-get helper; --resume goes on",
            ),
        ],
    ),
    (
        Some("drill"),
        &[
            (0, "passed", "the drill passed (recorded)"),
            (
                1,
                "failed",
                "the drill failed (recorded): the backup did not restore",
            ),
            (
                3,
                "could not run",
                "it could not run (no such client, no client for --next, the history could not be written), or a usage error",
            ),
            (
                130,
                "interrupted",
                "Ctrl-C: the restored server was stopped and the scratch folder removed (recorded as failed)",
            ),
        ],
    ),
    (
        Some("receive"),
        &[
            (
                0,
                "stored",
                "the upload is stored and verified, or an identical file was already there",
            ),
            (
                1,
                "refused",
                "refused, with one line on stderr (PostgreSQL logs it): nothing of the upload was kept",
            ),
            (3, "usage", "a usage error"),
        ],
    ),
    (
        Some("wal-get"),
        &[
            (
                0,
                "handed over",
                "the WAL file is verified and in place for PostgreSQL",
            ),
            (
                1,
                "not handed over",
                "not in the archive (the normal end of recovery), or refused with one line on stderr",
            ),
            (
                3,
                "usage",
                "a usage error: PostgreSQL reads it as a missing file (anything above 125 would be fatal to it), and the restore's log check then fails the restore",
            ),
        ],
    ),
    (
        Some("setup"),
        &[
            (0, "done", "done, or --dry-run"),
            (
                1,
                "declined",
                "the confirmation was declined: nothing changed",
            ),
            (
                3,
                "refused or failed",
                "refused or failed (not root, a bad name or key, the copy test failed), or a usage error",
            ),
        ],
    ),
    (
        Some("demo"),
        &[
            (0, "done", "done"),
            (
                3,
                "could not run",
                "the demo could not be built, or a usage error",
            ),
        ],
    ),
    (
        Some("migrate"),
        &[
            (0, "done", "done"),
            (
                1,
                "not done",
                "not done: unaccepted load errors, something missing or different, psql stopped early",
            ),
            (
                2,
                "could not run",
                "it could not run: a bad connection string, an unreachable server, a refused preflight; nothing was loaded",
            ),
            (3, "usage error", "a usage error"),
        ],
    ),
    (
        Some("completions"),
        &[
            (0, "done", "the script was printed"),
            (3, "usage error", "a usage error (an unknown shell)"),
        ],
    ),
    (
        Some("man"),
        &[
            (0, "done", "the page(s) were written"),
            (
                3,
                "could not run",
                "a page could not be written, or a usage error",
            ),
        ],
    ),
];

/// Who "the tutorial" is, wherever help text names it.
pub const TUTORIAL: &str = "\"The tutorial\" is the team's procedure \"Setting up Continuous PostgreSQL \
Backups\": per-client continuous archiving for PostgreSQL 10 (one folder and one OS user per \
client on this backup server, archive_command over ssh, pg_basebackup, a 3-5 minute check, the \
manual restore, pg_dumpall between major versions). It is not shipped with walwarden.";

/// The exit codes of one subcommand (or of the dashboard).
pub fn exit_status(command: Option<&str>) -> ExitCodes {
    EXIT_STATUS
        .iter()
        .find(|(name, _)| *name == command)
        .map_or(&[], |(_, codes)| codes)
}

fn exit_status_text(command: Option<&str>) -> String {
    let mut text = String::from("Exit status:\n");
    for (code, _, meaning) in exit_status(command) {
        text.push_str(&format!("  {code}  {meaning}\n"));
    }
    text
}

/// Subcommands whose help names the tutorial.
const NAMES_THE_TUTORIAL: &[&str] = &["verify", "setup", "migrate"];

/// The clap command with each subcommand's exit status (and, where the
/// tutorial is named, who it is) after its help. Parse, complete and
/// document through this, not `Cli::command()`.
pub fn command() -> clap::Command {
    let mut top_help =
        String::from("Exit status (each subcommand's --help and man page say more):\n");
    for (name, codes) in EXIT_STATUS {
        let list: Vec<String> = codes
            .iter()
            .filter(|(_, short, _)| *short != "usage error")
            .map(|(code, short, _)| format!("{code} {short}"))
            .collect();
        let name = name.unwrap_or("(dashboard)");
        top_help.push_str(&format!("  {name:<12} {}\n", list.join(", ")));
    }
    top_help.push_str(&format!(
        "  A usage error (unknown flag, missing value) exits {USAGE_ERROR}, for every subcommand.\n\n{TUTORIAL}"
    ));
    let mut command = Cli::command().after_help(top_help);
    let names: Vec<String> = command
        .get_subcommands()
        .map(|s| s.get_name().to_owned())
        .collect();
    for name in names {
        let mut text = exit_status_text(Some(&name));
        if NAMES_THE_TUTORIAL.contains(&name.as_str()) {
            text.push('\n');
            text.push_str(TUTORIAL);
        }
        command = command.mut_subcommand(&name, |sub| sub.after_help(text.trim_end().to_owned()));
    }
    command
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to complete for
    #[arg(value_enum)]
    pub shell: Shell,
}

/// Prints the completion script for `shell` on stdout.
pub fn completions(args: &CompletionsArgs) -> Result<i32> {
    let mut command = command();
    let mut out = std::io::stdout().lock();
    clap_complete::generate(args.shell, &mut command, "walwarden", &mut out);
    out.flush().wrap_err("cannot print the completions")?;
    Ok(0)
}

#[derive(Debug, Args)]
pub struct ManArgs {
    /// Print this subcommand's page (walwarden-COMMAND(1)) instead of walwarden(1)
    #[arg(value_name = "COMMAND")]
    pub page: Option<String>,
    /// Write every page (walwarden.1 and walwarden-COMMAND.1) into this folder instead of printing one
    #[arg(long, value_name = "DIR", conflicts_with = "page")]
    pub dir: Option<PathBuf>,
}

/// `walwarden man`: roff on stdout, or every page into `--dir`.
pub fn man(args: &ManArgs) -> Result<i32> {
    if let Some(dir) = &args.dir {
        for name in page_names() {
            let path = dir.join(format!("{}.1", page_file_stem(name.as_deref())));
            let mut file = std::fs::File::create(&path)
                .wrap_err_with(|| format!("cannot write {}", path.display()))?;
            render_page(name.as_deref(), &mut file)
                .wrap_err_with(|| format!("cannot write {}", path.display()))?;
        }
        return Ok(0);
    }
    let known = page_names();
    if let Some(page) = &args.page
        && !known.contains(&Some(page.clone()))
    {
        let list: Vec<String> = known.into_iter().flatten().collect();
        return Err(Failure::new(format!("no man page for {page:?}"))
            .hint(format!("the subcommands are: {}", list.join(", ")))
            .code(USAGE_ERROR)
            .into());
    }
    let mut out = std::io::stdout().lock();
    render_page(args.page.as_deref(), &mut out).wrap_err("cannot print the man page")?;
    out.flush().wrap_err("cannot print the man page")?;
    Ok(0)
}

/// `None` (walwarden.1) and every visible subcommand.
fn page_names() -> Vec<Option<String>> {
    std::iter::once(None)
        .chain(
            command()
                .get_subcommands()
                .filter(|s| !s.is_hide_set())
                .map(|s| Some(s.get_name().to_owned())),
        )
        .collect()
}

fn page_file_stem(page: Option<&str>) -> String {
    match page {
        None => "walwarden".to_owned(),
        Some(name) => format!("walwarden-{name}"),
    }
}

/// One man page: clap_mangen's sections from the clap definitions, then
/// EXIT STATUS, ENVIRONMENT, FILES and SEE ALSO from the same tables.
pub fn render_page(page: Option<&str>, out: &mut dyn Write) -> std::io::Result<()> {
    let mut top = command();
    top.build();
    let version = env!("CARGO_PKG_VERSION");
    let cmd = match page {
        None => top.clone(),
        Some(name) => top
            .find_subcommand(name)
            .cloned()
            .ok_or_else(|| std::io::Error::other(format!("no subcommand {name}")))?
            .display_name(page_file_stem(page))
            .version(version),
    };
    // The help's "Exit status" text is rendered below as a proper section.
    let cmd = cmd.after_help(None::<&str>).after_long_help(None::<&str>);
    let man = Man::new(cmd)
        .source(format!("walwarden {version}"))
        .manual("walwarden manual");
    man.render_title(out)?;
    man.render_name_section(out)?;
    man.render_synopsis_section(out)?;
    man.render_description_section(out)?;
    man.render_options_section(out)?;
    if page.is_none() {
        man.render_subcommands_section(out)?;
    }
    let mut roff = Roff::new();
    roff.control("SH", ["EXIT STATUS"]);
    let sections: Vec<(Option<&str>, ExitCodes)> = match page {
        Some(name) => vec![(Some(name), exit_status(Some(name)))],
        None => EXIT_STATUS.iter().map(|(n, c)| (*n, *c)).collect(),
    };
    for (name, codes) in sections {
        if page.is_none() {
            let title = name.map_or("walwarden (the dashboard)".to_owned(), |n| {
                format!("walwarden {n}")
            });
            roff.control("SS", [title.as_str()]);
        }
        for (code, _, meaning) in codes {
            roff.control("TP", []);
            roff.text([bold(code.to_string())]);
            roff.text([roman(*meaning)]);
        }
    }
    roff.control("PP", []);
    roff.text([roman(format!(
        "A usage error (unknown flag, missing or bad value) exits {USAGE_ERROR} for every subcommand. \
         A refusal prints \"error:\" and, when one helps, \"hint:\"; source locations and \
         backtraces are printed only for bugs (panics) and written to the --log-file debug log."
    ))]);
    roff.control("SH", ["ENVIRONMENT"]);
    for (name, meaning) in [
        ("WALWARDEN_ROOT", "the backup root, as --root"),
        ("WALWARDEN_CONFIG", "the config file, as --config"),
        ("WALWARDEN_LOG", "the debug log, as --log-file"),
        (
            "NO_COLOR",
            "when set and not empty, no colour anywhere (colour goes only to a terminal anyway)",
        ),
        (
            "XDG_CACHE_HOME",
            "where caches and the drill history live (XDG_CACHE_HOME/walwarden, default ~/.cache/walwarden); the packaged systemd units set /var/lib, so theirs are in /var/lib/walwarden",
        ),
    ] {
        roff.control("TP", []);
        roff.text([bold(name)]);
        roff.text([roman(meaning)]);
    }
    roff.control("SH", ["FILES"]);
    for (name, meaning) in [
        (
            "/etc/walwarden/config.toml",
            "the config, unless --config; then ~/.config/walwarden/config.toml",
        ),
        (
            "/var/lib/postgresql/backups",
            "the default backup root: ROOT/CLIENT/base and ROOT/CLIENT/wal",
        ),
        (
            "~/.cache/walwarden/drills.json",
            "the drill history (check reports each client's last successful drill)",
        ),
    ] {
        roff.control("TP", []);
        roff.text([bold(name)]);
        roff.text([roman(meaning)]);
    }
    roff.control("SH", ["NOTES"]);
    roff.text([roman(TUTORIAL)]);
    roff.control("SH", ["SEE ALSO"]);
    let mut see_also: Vec<String> = page_names()
        .into_iter()
        .filter(|n| n.as_deref() != page)
        .map(|n| format!("{}(1)", page_file_stem(n.as_deref())))
        .collect();
    see_also.extend(["systemctl(1)".to_owned(), "pg_basebackup(1)".to_owned()]);
    roff.text([roman(see_also.join(", "))]);
    roff.to_writer(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_subcommand_has_its_exit_status_and_usage_errors_are_three() {
        let command = command();
        for sub in command.get_subcommands() {
            let codes = exit_status(Some(sub.get_name()));
            assert!(
                !codes.is_empty(),
                "{} has no exit status in the table",
                sub.get_name()
            );
            assert!(
                codes
                    .iter()
                    .any(|(code, _, meaning)| *code == USAGE_ERROR
                        && meaning.contains("usage error")),
                "{}: the usage error is not documented",
                sub.get_name()
            );
            let help = sub
                .get_after_help()
                .map(|h| h.to_string())
                .unwrap_or_default();
            assert!(
                help.starts_with("Exit status:"),
                "{}: {help}",
                sub.get_name()
            );
        }
        // Every row of the table names a real subcommand.
        for (name, _) in EXIT_STATUS {
            if let Some(name) = name {
                assert!(command.find_subcommand(name).is_some(), "{name}");
            }
        }
    }

    #[test]
    fn check_keeps_the_monitoring_convention() {
        let codes: Vec<i32> = exit_status(Some("check"))
            .iter()
            .map(|(c, _, _)| *c)
            .collect();
        assert_eq!(codes, [0, 1, 2, 3]);
    }

    #[test]
    fn the_man_page_has_its_sections() {
        let mut page = Vec::new();
        render_page(None, &mut page).unwrap();
        let page = String::from_utf8(page).unwrap();
        for section in [
            ".TH walwarden",
            ".SH NAME",
            ".SH \"EXIT STATUS\"",
            ".SH NOTES",
            "drill",
        ] {
            assert!(page.contains(section), "{section} missing");
        }
        let mut check = Vec::new();
        render_page(Some("check"), &mut check).unwrap();
        let check = String::from_utf8(check).unwrap();
        assert!(check.contains(".TH walwarden-check"), "{check}");
        assert!(check.contains("\\-\\-textfile"), "{check}");
    }
}
