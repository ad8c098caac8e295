//! The CLI and the dashboard say and do the same about the same archive.
//! Regression tests for three places where they disagreed while each face
//! assembled its own: `drill_stale` raised by `check` but not on the
//! dashboard, the segments missed during lost events checked by `verify` but
//! not by the dashboard's window, and the restore's replay timeout (30 min in
//! the CLI, 3600 s in the wizard). Both faces now call the same core code;
//! these tests drive each face as a user would and compare.

mod support;

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use clap::Parser;
use crossterm::event::{KeyCode, KeyEvent};

use walwarden::archive::catalog::{self, Observation, ScanOptions};
use walwarden::checks::drills::{DrillRecord, append_history};
use walwarden::checks::health::{ProblemCode, Status};
use walwarden::cli::{Cli, Command as CliCommand};
use walwarden::config::Config;
use walwarden::demo::{Cluster, build_demo};
use walwarden::ops::restore::request::DEFAULT_REPLAY_TIMEOUT;
use walwarden::tui::app::{App, Command, Event, Screen};

fn press(app: &mut App, code: KeyCode) -> Vec<Command> {
    app.update(Event::Key(KeyEvent::from(code)))
}

fn type_text(app: &mut App, text: &str) {
    for c in text.chars() {
        press(app, KeyCode::Char(c));
    }
}

/// One healthy client `acme`: a base backup and four segments a minute apart.
fn healthy_root(dir: &Path) -> PathBuf {
    let root = dir.join("backups");
    let now = SystemTime::now();
    let c = Cluster::new(7, 16 << 20);
    let client = root.join("acme");
    c.write_base_backup(
        &client,
        c.id(1, 3),
        c.id(1, 4),
        now - Duration::from_secs(600),
    )
    .unwrap();
    for segno in 3..=6 {
        c.archive_segment(
            &client.join("wal"),
            c.id(1, segno),
            Some(now - Duration::from_secs(60 * (7 - segno))),
        )
        .unwrap();
    }
    root
}

fn codes(problems: impl IntoIterator<Item = String>) -> Vec<String> {
    problems.into_iter().collect()
}

/// What `walwarden check --json` says of acme's problems, with this drill history.
fn cli_problems(root: &Path, home: &Path, config: &Path) -> Vec<String> {
    let (_, doc) = support::check::check_json(root, home, &["--config", &config.to_string_lossy()]);
    codes(
        support::check::first_client_problems(&doc)
            .into_iter()
            .map(|(code, _)| code),
    )
}

/// What the dashboard's row says of acme's problems, given the same history.
fn dashboard_problems(
    root: &Path,
    config: &Path,
    drills: Vec<DrillRecord>,
) -> (Vec<String>, Status) {
    let mut app = App::new(
        root.to_owned(),
        Config::load(config).unwrap(),
        SystemTime::now(),
    );
    app.update(Event::Scanned(Ok(catalog::scan(
        root,
        &ScanOptions::default(),
    )
    .unwrap())));
    app.update(Event::Drills(drills));
    let row = &app.rows[0];
    (
        codes(row.problems.iter().map(|p| p.code.as_str().to_owned())),
        row.status,
    )
}

#[test]
fn drill_stale_is_raised_by_check_and_on_the_dashboard_alike() {
    let tmp = tempfile::tempdir().unwrap();
    let root = healthy_root(tmp.path());
    let home = tmp.path().join("home");
    let config = tmp.path().join("config.toml");
    std::fs::write(&config, "[defaults]\ndrill_max_age = \"7d\"\n").unwrap();

    // No drill recorded: both faces warn.
    let stale = vec![ProblemCode::DrillStale.as_str().to_owned()];
    assert_eq!(cli_problems(&root, &home, &config), stale);
    let (on_screen, status) = dashboard_problems(&root, &config, Vec::new());
    assert_eq!(on_screen, stale, "the dashboard must warn as `check` does");
    assert_eq!(status, Status::Warning);

    // A drill that succeeded an hour ago: neither warns.
    let mut drill = DrillRecord::failed("acme", "3 databases, 1200 relations".into());
    drill.success = true;
    drill.at_unix -= 3600;
    let history = home.join("cache").join("walwarden").join("drills.json");
    append_history(&history, &drill).unwrap();
    assert_eq!(cli_problems(&root, &home, &config), Vec::<String>::new());
    let (on_screen, status) = dashboard_problems(&root, &config, vec![drill]);
    assert_eq!(on_screen, Vec::<String>::new());
    assert_eq!(status, Status::Ok);
}

const NOW_SECS: u64 = 1_795_000_000;

fn at(offset_secs: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(NOW_SECS + offset_secs)
}

#[test]
fn after_a_resync_the_dashboard_checks_the_segments_no_event_announced() {
    let tmp = tempfile::tempdir().unwrap();
    let demo = build_demo(tmp.path(), at(0)).unwrap();
    let mut scanned = catalog::scan(&demo.root, &ScanOptions::default()).unwrap();
    scanned.scanned_at = at(0);
    let mut app = App::new(
        demo.root.clone(),
        Config::load(&demo.config).unwrap(),
        at(0),
    );
    app.update(Event::Scanned(Ok(scanned)));
    press(&mut app, KeyCode::Char('/'));
    type_text(&mut app, "acme");
    press(&mut app, KeyCode::Enter);
    let opened = press(&mut app, KeyCode::Char('v'));
    assert_eq!(app.screen, Screen::Verify, "{opened:?}");

    // Two segments land while events are lost: the watcher only says so.
    let wal = demo.root.join("acme").join("wal");
    let landed: Vec<PathBuf> = [(27, 30), (28, 90)]
        .iter()
        .map(|(segno, secs)| {
            demo.live_cluster
                .archive_segment(&wal, demo.live_cluster.id(1, *segno), Some(at(*secs)))
                .unwrap()
        })
        .collect();
    app.update(Event::Tick(at(100)));
    let rescan = app.update(Event::Observed(vec![Observation::RescanClient(
        "acme".into(),
    )]));
    assert_eq!(rescan, vec![Command::RescanClient("acme".into())]);

    // The loop re-reads the client; the window must check what it missed.
    let client = catalog::scan_client(&demo.root, "acme", &ScanOptions::default()).unwrap();
    let verification = app.verification.clone().expect("the window is open");
    let cli_rule = verification.missed_segments(&client);
    let commands = app.update(Event::ClientScanned {
        name: "acme".into(),
        result: Ok(Box::new(client)),
    });
    let checked: Vec<(PathBuf, SystemTime)> = commands
        .into_iter()
        .filter_map(|c| match c {
            Command::CheckSegment { path, seen_at } => Some((path, seen_at)),
            _ => None,
        })
        .collect();
    assert_eq!(
        checked.iter().map(|(p, _)| p.clone()).collect::<Vec<_>>(),
        landed,
        "the dashboard must check the segments the events missed"
    );
    assert_eq!(
        checked, cli_rule,
        "and exactly as `walwarden verify` does, timed by their mtimes"
    );
}

#[test]
fn the_wizard_and_the_restore_cli_start_from_the_same_request() {
    let tmp = tempfile::tempdir().unwrap();
    let demo = build_demo(tmp.path(), at(0)).unwrap();
    // The demo's config, with a configured start command for acme.
    let config_text = std::fs::read_to_string(&demo.config).unwrap().replace(
        "[clients.acme]\n",
        "[clients.acme]\nlocal_start_command = \"systemctl start postgresql@15-main\"\n",
    );
    assert!(config_text.contains("local_start_command"));
    let config_path = tmp.path().join("with-local.toml");
    std::fs::write(&config_path, config_text).unwrap();
    let config = Config::load(&config_path).unwrap();

    // The CLI, with nothing but the client and the data directory.
    let cli = Cli::try_parse_from(["walwarden", "restore", "acme", "--data-dir", "/srv/pg/main"])
        .unwrap();
    let Some(CliCommand::Restore(args)) = cli.command else {
        panic!("not a restore")
    };
    let from_cli = walwarden::cli::restore::request_for(&args, &config, "/srv/pg/main".into());

    // The wizard, with the same data directory typed into its form.
    let mut scanned = catalog::scan(&demo.root, &ScanOptions::default()).unwrap();
    scanned.scanned_at = at(0);
    let mut app = App::new(demo.root.clone(), config.clone(), at(0));
    app.update(Event::Scanned(Ok(scanned)));
    press(&mut app, KeyCode::Char('/'));
    type_text(&mut app, "acme");
    press(&mut app, KeyCode::Enter);
    let asked = press(&mut app, KeyCode::Char('R'));
    // The loop's job: the core's proposals, fed back.
    let propose = |app: &mut App, commands: Vec<Command>| -> Vec<Command> {
        let mut out = Vec::new();
        for command in commands {
            let Command::ProposeSettings {
                client,
                data_dir,
                request,
            } = command
            else {
                out.push(command);
                continue;
            };
            let scanned =
                catalog::scan_client(&demo.root, &client, &ScanOptions::default()).unwrap();
            let result = walwarden::ops::restore::proposed_settings(&scanned, &request)
                .map_err(|e| e.to_string());
            out.extend(app.update(Event::SettingsProposed {
                client,
                data_dir,
                result,
            }));
        }
        out
    };
    assert!(propose(&mut app, asked).is_empty());
    type_text(&mut app, "/srv/pg/main");
    let asked = press(&mut app, KeyCode::Enter);
    let started = propose(&mut app, asked);
    let [Command::StartRestore { client, request }] = started.as_slice() else {
        panic!("the form did not start a restore: {started:?}")
    };
    assert_eq!(client, "acme");
    let mut from_wizard = (**request).clone();

    // The settings the wizard pre-filled are those the CLI's preflight
    // proposes as --set for the same request: one core function.
    let acme = catalog::scan_client(&demo.root, "acme", &ScanOptions::default()).unwrap();
    let proposed = walwarden::ops::restore::proposed_settings(&acme, &from_cli).unwrap();
    assert!(
        proposed
            .settings
            .iter()
            .any(|(k, _)| k == "unix_socket_directories"),
        "{proposed:?}"
    );
    assert_eq!(from_wizard.settings, proposed.settings);
    from_wizard.settings = from_cli.settings.clone();

    assert_eq!(from_cli.replay_timeout, DEFAULT_REPLAY_TIMEOUT);
    assert_eq!(from_wizard.replay_timeout, DEFAULT_REPLAY_TIMEOUT);
    assert!(from_wizard.dry_run, "the wizard rehearses first");
    from_wizard.dry_run = from_cli.dry_run;
    assert_eq!(
        from_wizard, from_cli,
        "apart from the rehearsal, both faces ask the engine for the same restore"
    );
    assert_eq!(
        from_cli.local.start.as_deref(),
        Some("systemctl start postgresql@15-main")
    );
}
