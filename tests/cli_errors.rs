//! How the real binary fails, and what it says about itself: refusals as
//! `error:`/`hint:` lines (never a crash report, even with RUST_BACKTRACE=1),
//! colour only on a terminal and never with NO_COLOR, usage errors exiting 3
//! for every subcommand, shell completions that bash loads, man pages that
//! `man -l` renders.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::SystemTime;

use walwarden::demo::build_demo;

const BIN: &str = env!("CARGO_BIN_EXE_walwarden");

/// The binary with a private HOME and caches, no inherited root or config.
fn walwarden(home: &Path) -> Command {
    let mut command = Command::new(BIN);
    command
        .env("HOME", home)
        .env("XDG_CACHE_HOME", home.join("cache"))
        .env("XDG_CONFIG_HOME", home.join("config"))
        .env_remove("WALWARDEN_ROOT")
        .env_remove("WALWARDEN_CONFIG")
        .env_remove("WALWARDEN_LOG")
        .env_remove("NO_COLOR");
    command
}

fn run(command: &mut Command) -> Output {
    command.output().expect("run walwarden")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn show(out: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        out.status.code(),
        text(&out.stdout),
        text(&out.stderr)
    )
}

/// What only a crash report prints.
const CRASH_MARKS: &[&str] = &[
    "Location",
    "BACKTRACE",
    "backtrace",
    "RUST_BACKTRACE",
    "COLORBT",
    "panicked",
    "src/",
];

/// A PostgreSQL "binaries" folder whose postgres only answers --version, so
/// the restore's preflight gets as far as the data directory without a real
/// PostgreSQL.
fn fake_pg_bin(dir: &Path, major: u32) -> PathBuf {
    let bin = dir.join("fake-pg-bin");
    fs::create_dir_all(&bin).unwrap();
    let postgres = bin.join("postgres");
    fs::write(
        &postgres,
        format!("#!/bin/sh\necho 'postgres (PostgreSQL) {major}.0'\n"),
    )
    .unwrap();
    fs::set_permissions(&postgres, fs::Permissions::from_mode(0o755)).unwrap();
    bin
}

struct Refusal {
    home: tempfile::TempDir,
    root: PathBuf,
    pg_bin: PathBuf,
}

impl Refusal {
    fn new() -> Refusal {
        let home = tempfile::tempdir().unwrap();
        let demo = build_demo(&home.path().join("demo"), SystemTime::now()).unwrap();
        let pg_bin = fake_pg_bin(home.path(), 15);
        Refusal {
            root: demo.root,
            home,
            pg_bin,
        }
    }

    /// `restore acme` into a data directory inside the backup root: refused by preflight.
    fn command(&self) -> Command {
        let mut command = walwarden(self.home.path());
        command
            .arg("restore")
            .arg("acme")
            .arg("--root")
            .arg(&self.root)
            .arg("--data-dir")
            .arg(self.root.join("acme").join("restored"))
            .arg("--pg-bin")
            .arg(&self.pg_bin)
            .arg("--yes");
        command
    }
}

#[test]
fn a_refused_restore_says_error_and_hint_and_no_crash_report_even_with_rust_backtrace() {
    let refusal = Refusal::new();
    let log = refusal.home.path().join("debug.log");
    let out = run(refusal
        .command()
        .arg("--log-file")
        .arg(&log)
        .env("RUST_BACKTRACE", "1")
        .env("RUST_LIB_BACKTRACE", "1"));
    let stderr = text(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(3),
        "a refusal exits 3\n{}",
        show(&out)
    );
    let error = stderr
        .lines()
        .find(|l| l.starts_with("error: "))
        .unwrap_or_else(|| panic!("no error: line\n{}", show(&out)));
    assert!(
        error.starts_with("error: preflight refused the restore of acme: "),
        "{error}"
    );
    if nix::unistd::geteuid().is_root() {
        // As root (CI) preflight reaches the data directory; otherwise it
        // refuses earlier, asking for sudo, which is a refusal all the same.
        assert!(error.contains("inside the backup root"), "{error}");
    }
    let hint = stderr
        .lines()
        .find(|l| l.starts_with("hint: "))
        .unwrap_or_else(|| panic!("no hint: line\n{}", show(&out)));
    assert!(hint.len() > "hint: ".len() + 10, "{hint}");
    for mark in CRASH_MARKS {
        assert!(
            !stderr.contains(mark),
            "{mark:?} is for bugs, not refusals\n{}",
            show(&out)
        );
    }
    assert!(!out.stderr.contains(&0x1b), "no colour into a pipe");

    // The debug log keeps the whole report, with where it came from.
    let logged = fs::read_to_string(&log).expect("the debug log was written");
    assert!(
        logged.contains("preflight refused the restore of acme"),
        "{logged}"
    );
    assert!(logged.contains("Location"), "{logged}");
    assert!(logged.contains("src/cli/restore.rs"), "{logged}");
    assert!(!logged.contains('\x1b'), "the log carries no colour");
}

/// Runs `args` (the binary first) under a pseudo-terminal with `script`, so
/// stdout and stderr are a terminal; returns everything the terminal got.
fn on_a_terminal(home: &Path, args: &[&str], no_color: bool) -> Vec<u8> {
    let line = args
        .iter()
        .map(|a| format!("'{}'", a.replace('\'', "'\\''")))
        .collect::<Vec<_>>()
        .join(" ");
    let mut command = Command::new("script");
    command
        .args(["-q", "-e", "-c", &line, "/dev/null"])
        .env("HOME", home)
        .env("XDG_CACHE_HOME", home.join("cache"))
        .env("XDG_CONFIG_HOME", home.join("config"))
        .env("TERM", "xterm-256color")
        .env_remove("WALWARDEN_ROOT")
        .env_remove("WALWARDEN_CONFIG")
        .env_remove("CLICOLOR")
        .env_remove("CLICOLOR_FORCE")
        .env_remove("NO_COLOR");
    if no_color {
        command.env("NO_COLOR", "1");
    }
    let out = command
        .output()
        .expect("`script` (util-linux) runs a command on a pseudo-terminal");
    [out.stdout, out.stderr].concat()
}

#[test]
fn colour_goes_to_a_terminal_only_and_never_with_no_color() {
    let refusal = Refusal::new();
    let root = refusal.root.to_str().unwrap().to_owned();
    let data = refusal.root.join("acme/restored");
    let pg_bin = refusal.pg_bin.to_str().unwrap().to_owned();
    let refused: Vec<&str> = vec![
        BIN,
        "restore",
        "acme",
        "--root",
        &root,
        "--data-dir",
        data.to_str().unwrap(),
        "--pg-bin",
        &pg_bin,
        "--yes",
    ];
    let usage: Vec<&str> = vec![BIN, "check", "--no-such-flag"];
    for args in [&refused, &usage] {
        let home = refusal.home.path();
        // On a terminal the error is coloured: so the checks below can fail.
        let coloured = on_a_terminal(home, args, false);
        assert!(
            coloured.contains(&0x1b),
            "{:?} on a terminal: {}",
            args[1],
            text(&coloured)
        );
        assert!(text(&coloured).contains("error:"), "{}", text(&coloured));
        let plain = on_a_terminal(home, args, true);
        assert!(text(&plain).contains("error:"), "{}", text(&plain));
        assert!(
            !plain.contains(&0x1b),
            "{:?} with NO_COLOR on a terminal: {:?}",
            args[1],
            text(&plain)
        );
        // And never into a pipe.
        let out = run(Command::new(args[0])
            .args(&args[1..])
            .env_remove("NO_COLOR"));
        assert!(
            !out.stdout.contains(&0x1b) && !out.stderr.contains(&0x1b),
            "{}",
            show(&out)
        );
    }
}

fn subcommands() -> Vec<String> {
    walwarden::cli::docs::command()
        .get_subcommands()
        .map(|s| s.get_name().to_owned())
        .filter(|name| name != "help")
        .collect()
}

#[test]
fn usage_errors_exit_3_for_every_subcommand() {
    let home = tempfile::tempdir().unwrap();
    let names = subcommands();
    assert!(names.len() >= 9, "{names:?}");
    let mut cases: Vec<Vec<String>> = vec![vec!["--no-such-flag".into()]];
    for name in &names {
        cases.push(vec![name.clone(), "--no-such-flag".into()]);
    }
    cases.push(vec!["restore".into()]); // CLIENT missing
    cases.push(vec!["drill".into()]); // CLIENT or --next missing
    cases.push(vec!["drill".into(), "acme".into(), "--next".into()]);
    cases.push(vec!["check".into(), "--format".into(), "yaml".into()]);
    cases.push(vec![
        "verify".into(),
        "c".into(),
        "--window".into(),
        "soon".into(),
    ]);
    cases.push(vec!["migrate".into(), "--from".into(), "host=a".into()]); // --to missing
    cases.push(vec!["completions".into(), "tcsh".into()]);
    for args in cases {
        let out = run(walwarden(home.path()).args(&args));
        assert_eq!(
            out.status.code(),
            Some(3),
            "walwarden {args:?}: a usage error is UNKNOWN (3)\n{}",
            show(&out)
        );
        assert!(text(&out.stderr).contains("error:"), "{}", show(&out));
        for mark in CRASH_MARKS {
            assert!(!text(&out.stderr).contains(mark), "{}", show(&out));
        }
    }
}

#[test]
fn help_and_version_exit_0_and_help_documents_the_exit_status() {
    let home = tempfile::tempdir().unwrap();
    let out = run(walwarden(home.path()).arg("--version"));
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let out = run(walwarden(home.path()).arg("--help"));
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let help = text(&out.stdout);
    assert!(help.contains("Exit status"), "{help}");
    assert!(
        help.contains("check        0 ok, 1 warning, 2 critical, 3 unknown"),
        "{help}"
    );
    assert!(help.contains("\"The tutorial\" is"), "{help}");
    for name in subcommands() {
        let out = run(walwarden(home.path()).args([&name, "--help"]));
        assert_eq!(out.status.code(), Some(0), "{}", show(&out));
        let help = text(&out.stdout);
        assert!(
            help.contains("Exit status:\n  0  "),
            "{name} --help:\n{help}"
        );
        assert!(help.contains("usage error"), "{name} --help:\n{help}");
    }
    let out = run(walwarden(home.path()).args(["verify", "--help"]));
    assert!(
        text(&out.stdout).contains("\"The tutorial\" is"),
        "{}",
        show(&out)
    );
}

#[test]
fn drill_next_without_any_client_is_refused_with_a_hint() {
    let home = tempfile::tempdir().unwrap();
    let empty = home.path().join("empty-root");
    fs::create_dir(&empty).unwrap();
    let out = run(walwarden(home.path())
        .args(["drill", "--next", "--root"])
        .arg(&empty));
    assert_eq!(out.status.code(), Some(3), "{}", show(&out));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("error: no client to drill under"),
        "{stderr}"
    );
    assert!(stderr.contains("hint: "), "{stderr}");
}

#[test]
fn a_missing_root_is_an_error_with_a_hint_not_a_report() {
    let home = tempfile::tempdir().unwrap();
    let out = run(walwarden(home.path())
        .args(["check", "--root"])
        .arg(home.path().join("no-such-root")));
    assert_eq!(out.status.code(), Some(3), "{}", show(&out));
    let stderr = text(&out.stderr);
    assert!(stderr.starts_with("error: backup root "), "{stderr}");
    assert!(stderr.contains("\nhint: pass --root DIR"), "{stderr}");
    assert!(!stderr.contains("Location"), "{stderr}");
}

#[test]
fn bash_loads_the_completions_and_completes_subcommands() {
    let home = tempfile::tempdir().unwrap();
    let out = run(walwarden(home.path()).args(["completions", "bash"]));
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let script = home.path().join("walwarden.bash");
    fs::write(&script, &out.stdout).unwrap();
    let bash = Command::new("bash")
        .arg("-c")
        .arg(
            r#"source "$1" && complete -p walwarden \
               && COMP_WORDS=(walwarden dri) COMP_CWORD=1 COMP_LINE="walwarden dri" COMP_POINT=13 \
               && _walwarden walwarden dri walwarden && echo "completions: ${COMPREPLY[*]}""#,
        )
        .arg("bash")
        .arg(&script)
        .output()
        .expect("run bash");
    let said = text(&bash.stdout);
    assert!(bash.status.success(), "{}\n{}", said, text(&bash.stderr));
    assert!(said.contains("-F _walwarden walwarden"), "{said}");
    assert!(said.contains("completions: drill"), "{said}");

    // Also through process substitution, as the README says.
    let bash = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "source <('{BIN}' completions bash) && complete -p walwarden"
        ))
        .output()
        .expect("run bash");
    assert!(bash.status.success(), "{}", text(&bash.stderr));

    let zsh = run(walwarden(home.path()).args(["completions", "zsh"]));
    assert!(
        text(&zsh.stdout).starts_with("#compdef walwarden"),
        "{}",
        show(&zsh)
    );
    let fish = run(walwarden(home.path()).args(["completions", "fish"]));
    assert!(
        text(&fish.stdout).contains("complete -c walwarden"),
        "{}",
        show(&fish)
    );
}

/// `man -l FILE`, plain text, 80 columns.
fn man(page: &Path) -> Output {
    Command::new("man")
        .arg("-l")
        .arg(page)
        .env("MANPAGER", "cat")
        .env("PAGER", "cat")
        .env("MANWIDTH", "80")
        .env("MAN_KEEP_FORMATTING", "")
        .output()
        .expect("man (man-db) is needed to check the man pages: apt-get install man-db")
}

#[test]
fn the_man_pages_render_with_man() {
    let home = tempfile::tempdir().unwrap();
    let out = run(walwarden(home.path()).arg("man"));
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let page = home.path().join("walwarden.1");
    fs::write(&page, &out.stdout).unwrap();
    let rendered = man(&page);
    let shown = text(&rendered.stdout);
    assert!(rendered.status.success(), "{}", text(&rendered.stderr));
    assert!(
        text(&rendered.stderr).trim().is_empty(),
        "troff warnings: {}",
        text(&rendered.stderr)
    );
    for heading in [
        "NAME",
        "SYNOPSIS",
        "SUBCOMMANDS",
        "EXIT STATUS",
        "ENVIRONMENT",
        "FILES",
    ] {
        assert!(shown.contains(heading), "{heading} missing:\n{shown}");
    }
    assert!(shown.contains("walwarden-drill(1)"), "{shown}");

    // Every page --dir writes renders too, one per subcommand.
    let dir = home.path().join("man1");
    fs::create_dir(&dir).unwrap();
    let out = run(walwarden(home.path()).args(["man", "--dir"]).arg(&dir));
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    for name in subcommands() {
        let page = dir.join(format!("walwarden-{name}.1"));
        let rendered = man(&page);
        assert!(
            rendered.status.success(),
            "{}: {}",
            page.display(),
            text(&rendered.stderr)
        );
        let shown = text(&rendered.stdout);
        assert!(shown.contains(&format!("walwarden-{name}")), "{shown}");
        assert!(shown.contains("EXIT STATUS"), "{shown}");
    }
    let out = run(walwarden(home.path()).args(["man", "nonsense"]));
    assert_eq!(out.status.code(), Some(3), "{}", show(&out));
    assert!(
        text(&out.stderr).contains("hint: the subcommands are:"),
        "{}",
        show(&out)
    );
}

#[test]
fn the_dashboard_without_a_terminal_is_refused_not_a_crash() {
    let home = tempfile::tempdir().unwrap();
    let root = home.path().join("root");
    fs::create_dir(&root).unwrap();
    let out = run(walwarden(home.path())
        .arg("--root")
        .arg(&root)
        .stdin(std::process::Stdio::null()));
    assert_eq!(out.status.code(), Some(3), "{}", show(&out));
    let stderr = text(&out.stderr);
    assert!(
        stderr.starts_with("error: the dashboard needs a terminal"),
        "{stderr}"
    );
    assert!(stderr.contains("hint: "), "{stderr}");
    for mark in CRASH_MARKS {
        assert!(!stderr.contains(mark), "{}", show(&out));
    }
}
