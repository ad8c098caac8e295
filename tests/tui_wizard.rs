//! The restore wizard, headless: the form, then a real dry run of the
//! restore engine on the demo root whose reports are fed to the app the way
//! the loop feeds them, and the screens at each stage.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, SystemTime};

use crossterm::event::{KeyCode, KeyEvent};
use ratatui::Terminal;
use ratatui::backend::TestBackend;

use walwarden::archive::catalog::{self, ScanOptions};
use walwarden::config::Config;
use walwarden::ops::restore::journal::Outcome;
use walwarden::ops::restore::steps::{self, Driver, StepKind};
use walwarden::ops::walget::progress::ReplayProgress;
use walwarden::tui::app::{App, Command, Event, Screen};
use walwarden::tui::wizard::RestoreEvent;

const NOW_SECS: u64 = 1_795_000_000;

/// Collects the engine's reports as the TUI's driver would send them.
struct Recorder(Vec<RestoreEvent>);

impl Driver for Recorder {
    fn confirm(&mut self, question: &str) -> bool {
        self.0.push(RestoreEvent::Ask(question.to_owned()));
        true
    }
    fn confirm_typed(&mut self, _: &str, _: &str) -> bool {
        false
    }
    fn step(&mut self, step: StepKind, outcome: Outcome, detail: &str) {
        self.0
            .push(RestoreEvent::Step(step, outcome, detail.to_owned()));
    }
    fn command(&mut self, text: &str) {
        self.0.push(RestoreEvent::Command(text.to_owned()));
    }
    fn progress(&mut self, step: StepKind, text: &str) {
        self.0.push(RestoreEvent::Progress(step, text.to_owned()));
    }
}

/// Runs the proposals the app asked for (what the loop's job does: the
/// core's `proposed_settings` on the client as scanned now) and feeds the
/// answer back; returns the commands that answer led to.
fn propose(root: &Path, app: &mut App, commands: Vec<Command>) -> Vec<Command> {
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
        let scanned = catalog::scan_client(root, &client, &ScanOptions::default()).unwrap();
        let result = walwarden::ops::restore::proposed_settings(&scanned, &request)
            .map_err(|e| e.to_string());
        out.extend(app.update(Event::SettingsProposed {
            client,
            data_dir,
            result,
        }));
    }
    out
}

fn screen(app: &mut App, tmp: &str) -> String {
    screen_sized(app, tmp, 120, 30)
}

fn screen_sized(app: &mut App, tmp: &str, width: u16, height: u16) -> String {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
    terminal
        .draw(|frame| walwarden::tui::view::draw(frame, app))
        .unwrap();
    let buffer = terminal.backend().buffer();
    let lines: Vec<String> = (0..buffer.area.height)
        .map(|y| {
            (0..buffer.area.width)
                .map(|x| buffer[(x, y)].symbol().to_owned())
                .collect::<String>()
        })
        .collect();
    lines.join("\n").replace(tmp, "/tmp/walwarden-wiz-XXXXXX")
}

#[test]
fn the_wizard_runs_a_dry_run_through_every_step() {
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(NOW_SECS);
    let tmp = tempfile::Builder::new()
        .prefix("walwarden-wiz-")
        .rand_bytes(6)
        .tempdir_in("/tmp")
        .unwrap();
    // The PostgreSQL user must be able to read the archive: the preflight checks it as that user.
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let tmp_name = tmp.path().display().to_string();
    let demo = walwarden::demo::build_demo(tmp.path(), now).unwrap();
    let mut catalog = catalog::scan(&demo.root, &ScanOptions::default()).unwrap();
    catalog.scanned_at = now;
    let mut app = App::new(demo.root.clone(), Config::load(&demo.config).unwrap(), now);
    app.update(Event::Scanned(Ok(catalog)));
    for c in "/acme".chars() {
        app.update(Event::Key(KeyEvent::from(KeyCode::Char(c))));
    }
    app.update(Event::Key(KeyEvent::from(KeyCode::Enter)));
    // The form opens and asks for the settings this host needs.
    let commands = app.update(Event::Key(KeyEvent::from(KeyCode::Char('R'))));
    assert_eq!(app.screen, Screen::Restore);
    let commands = propose(&demo.root, &mut app, commands);
    assert!(commands.is_empty(), "{commands:?}");
    let data_dir = tmp.path().join("restored");
    for c in data_dir.display().to_string().chars() {
        app.update(Event::Key(KeyEvent::from(KeyCode::Char(c))));
    }
    let form = screen(&mut app, &tmp_name);
    assert!(form.contains("[x] print what would happen"), "{form}");
    // acme's postgresql.conf names a socket folder this host lacks: the
    // real proposal fills the field, with why.
    let wizard = app.wizard.as_ref().unwrap();
    assert!(
        wizard.settings.contains("unix_socket_directories="),
        "{}",
        wizard.settings
    );
    let joined: String = form
        .lines()
        .map(str::trim_end)
        .collect::<Vec<_>>()
        .join(" ");
    assert!(
        joined.contains("socket folder /run/postgresql-acme does not exist here"),
        "{form}"
    );

    // Enter: the proposals for this data directory first, then the dry run.
    let commands = app.update(Event::Key(KeyEvent::from(KeyCode::Enter)));
    let commands = propose(&demo.root, &mut app, commands);
    let [Command::StartRestore { client, request }] = commands.as_slice() else {
        panic!("{commands:?}")
    };
    assert_eq!(client, "acme");
    assert!(request.dry_run);
    assert!(
        request
            .settings
            .iter()
            .any(|(k, _)| k == "unix_socket_directories"),
        "{:?}",
        request.settings
    );
    // What the loop's worker does: re-read the client, run the engine, report.
    let scanned = catalog::scan_client(&demo.root, client, &ScanOptions::default()).unwrap();
    let mut recorder = Recorder(Vec::new());
    let result = steps::run(&scanned, request, &mut recorder);
    assert!(result.is_ok(), "{result:?}");
    for event in recorder.0 {
        app.update(Event::Restore(event));
    }
    app.update(Event::Restore(RestoreEvent::Finished(
        result.map(Box::new).map_err(|e| e.to_string()),
    )));
    let done = screen(&mut app, &tmp_name);
    let wizard = app.wizard.as_ref().unwrap();
    assert!(
        wizard.steps.iter().all(|(_, outcome, _)| outcome.is_some()),
        "every step reported: {:?}",
        wizard.steps
    );
    assert!(
        wizard
            .commands
            .iter()
            .any(|c| c.starts_with("tar xzf") && c.contains("pg_wal")),
        "{:?}",
        wizard.commands
    );
    assert!(!data_dir.exists(), "a dry run creates nothing");
    assert!(done.contains("finished"), "{done}");
    // The journal path is named at the end; its timestamp-free form keeps the snapshot stable.
    insta::assert_snapshot!("wizard_dry_run_finished_120x30", done);

    // A long step's progress shows as a gauge (a real restore reports unpacking, then replay).
    app.update(Event::Restore(RestoreEvent::Gauge(
        StepKind::FollowLog,
        0.5,
        "replayed 000000010000000000000012".into(),
    )));
    let with_gauge = screen(&mut app, &tmp_name);
    assert!(
        with_gauge.contains("replayed 000000010000000000000012: 50%"),
        "{with_gauge}"
    );

    // The helper's progress, as the restore's thread delivers it once a
    // second: segments of the line's end, the rate, the time left; the
    // gauge follows it.
    app.update(Event::Restore(RestoreEvent::Replay(ReplayProgress {
        replayed: 57,
        total: Some(130),
        position: Some("000000010000000000000039".into()),
        line_end: Some("000000010000000000000082".into()),
        to_target: false,
        mb_per_s: Some(181.4),
        eta: Some(Duration::from_secs(12)),
        elapsed: Duration::from_secs(5),
    })));
    let with_replay = screen_sized(&mut app, &tmp_name, 80, 24);
    let progress_lines: Vec<&str> = with_replay
        .lines()
        .filter(|l| l.contains("replay"))
        .map(str::trim_end)
        .collect();
    insta::assert_snapshot!("wizard_replay_progress_80x24", progress_lines.join("\n"));

    app.update(Event::Key(KeyEvent::from(KeyCode::Esc)));
    assert_eq!(app.screen, Screen::Dashboard);
    assert!(app.wizard.is_none());
}

/// The form, pure: the proposals arrive as an event (fixed here, so the
/// screen does not depend on this machine), fill the settings field and say
/// why; the engineer's edit is kept; a guarded key is refused in the form.
#[test]
fn the_wizard_form_pre_fills_the_settings_this_host_needs() {
    use walwarden::ops::restore::SettingsProposal;
    use walwarden::ops::restore::host_settings::HostMismatch;
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(NOW_SECS);
    let tmp = tempfile::Builder::new()
        .prefix("walwarden-wiz-")
        .rand_bytes(6)
        .tempdir_in("/tmp")
        .unwrap();
    let tmp_name = tmp.path().display().to_string();
    let demo = walwarden::demo::build_demo(tmp.path(), now).unwrap();
    let mut catalog = catalog::scan(&demo.root, &ScanOptions::default()).unwrap();
    catalog.scanned_at = now;
    let mut app = App::new(demo.root.clone(), Config::load(&demo.config).unwrap(), now);
    app.update(Event::Watching(Ok(
        walwarden::archive::watch::WatchMode::Native,
    )));
    app.update(Event::Scanned(Ok(catalog)));
    for c in "/acme".chars() {
        app.update(Event::Key(KeyEvent::from(KeyCode::Char(c))));
    }
    app.update(Event::Key(KeyEvent::from(KeyCode::Enter)));
    let commands = app.update(Event::Key(KeyEvent::from(KeyCode::Char('R'))));
    let [
        Command::ProposeSettings {
            client,
            data_dir,
            request,
        },
    ] = commands.as_slice()
    else {
        panic!("the form did not ask for proposals: {commands:?}")
    };
    assert_eq!((client.as_str(), data_dir.as_str()), ("acme", ""));
    assert!(request.settings.is_empty());
    let asking = screen(&mut app, &tmp_name);
    assert!(
        asking.contains("checking the base backup's settings against this host"),
        "{asking}"
    );
    let found = |key: &str, value: &str, why: &str, proposal: (&str, &str)| HostMismatch {
        key: key.into(),
        value: value.into(),
        from: "postgresql.conf".into(),
        why: why.into(),
        proposal: Some((proposal.0.into(), proposal.1.into())),
    };
    let findings = vec![
        found(
            "unix_socket_directories",
            "/run/postgresql-acme",
            "socket folder /run/postgresql-acme does not exist here",
            ("unix_socket_directories", "/var/run/postgresql"),
        ),
        found(
            "port",
            "5432",
            "port 5432 is taken by another server here",
            ("port", "54321"),
        ),
    ];
    let commands = app.update(Event::SettingsProposed {
        client: "acme".into(),
        data_dir: String::new(),
        result: Ok(SettingsProposal {
            settings: walwarden::ops::restore::host_settings::proposed_pairs(&findings),
            findings,
        }),
    });
    assert!(commands.is_empty());
    for c in "/var/lib/postgresql/15/main".chars() {
        app.update(Event::Key(KeyEvent::from(KeyCode::Char(c))));
    }
    let wizard = app.wizard.as_ref().unwrap();
    assert_eq!(
        wizard.settings,
        "unix_socket_directories=/var/run/postgresql, port=54321"
    );
    let form = screen(&mut app, &tmp_name);
    insta::assert_snapshot!("wizard_form_120x30", form);
    insta::assert_snapshot!(
        "wizard_form_80x24",
        screen_sized(&mut app, &tmp_name, 80, 24)
    );

    // A guarded setting typed into the field is refused there, with why.
    for _ in 0..3 {
        app.update(Event::Key(KeyEvent::from(KeyCode::Tab)));
    }
    for c in ", restore_command=cp".chars() {
        app.update(Event::Key(KeyEvent::from(KeyCode::Char(c))));
    }
    let commands = app.update(Event::Key(KeyEvent::from(KeyCode::Enter)));
    assert!(
        commands
            .iter()
            .all(|c| !matches!(c, Command::StartRestore { .. })),
        "{commands:?}"
    );
    let refused = screen(&mut app, &tmp_name);
    assert!(
        refused.contains("restore_command is the restore's own to set"),
        "{refused}"
    );
}
