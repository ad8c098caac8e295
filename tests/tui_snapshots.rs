//! The dashboard's screens, rendered headless with ratatui's `TestBackend`
//! at fixed sizes and compared with insta snapshots (tests/snapshots/).
//!
//! The app is built on the demo root with an injected clock (`NOW`) and
//! driven only through `App::update` with key events, as the loop would.
//! Snapshots drop colour, so where colour carries meaning (a critical
//! status is red; NO_COLOR drops every colour) the buffer's cells are
//! checked explicitly.
//!
//! The demo is built in a temp dir whose name is random; the catalog's
//! paths are rewritten to a fixed, realistic root before the app sees them
//! so the header and the detail's "folder" line (and where they get cut at
//! 80 columns) do not depend on `$TMPDIR`. The demo is built and scanned
//! once; each test gets its own `App` on a copy of that catalog.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers, MouseButton, MouseEvent, MouseEventKind};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::buffer::Buffer;
use ratatui::style::Color;

use walwarden::archive::catalog::{self, ScanOptions};
use walwarden::archive::watch::WatchMode;
use walwarden::config::Config;
use walwarden::tui::app::{App, Command, Event, Screen};

/// 2026-11-18 11:06:40 UTC: every age on screen is measured from here.
const NOW_SECS: u64 = 1_795_000_000;
/// The root shown on screen in place of the temp dir.
const SHOWN_ROOT: &str = "/var/lib/postgresql/backups";

fn now() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(NOW_SECS)
}

/// The demo app after its first scan, and the temp dir it was built in.
struct Fixture {
    app: App,
    tmp: String,
}

/// What the first scan of the demo root gave, built once for all tests:
/// the demo writes and gzips a few hundred segments.
struct Scanned {
    catalog: catalog::Catalog,
    config: Config,
    tmp: String,
}

fn scanned() -> &'static Scanned {
    static SCANNED: OnceLock<Scanned> = OnceLock::new();
    SCANNED.get_or_init(|| {
        let tmp = tempfile::Builder::new()
            .prefix("walwarden-snap-")
            .tempdir()
            .expect("temp dir");
        let demo = walwarden::demo::build_demo(tmp.path(), now()).expect("build the demo root");
        let mut catalog =
            catalog::scan(&demo.root, &ScanOptions::default()).expect("scan the demo root");
        // The scan stamps the real clock; the header's "full scan … ago" must
        // not move. 90 s before NOW: rows live, the full scan older.
        catalog.scanned_at = now() - Duration::from_secs(90);
        let shown = PathBuf::from(SHOWN_ROOT);
        catalog.root = shown.clone();
        for client in &mut catalog.clients {
            client.path = relocate(&client.path, &demo.root, &shown);
            for item in &mut client.unreadable {
                item.path = relocate(&item.path, &demo.root, &shown);
                // cyberdyne's wal/ links to the demo's "mount" beside the root.
                item.error = item
                    .error
                    .replace(&tmp.path().display().to_string(), "/mnt");
            }
        }
        let config = Config::load(&demo.config).expect("load the demo config");
        // The app does no I/O: the files can go now.
        Scanned {
            catalog,
            config,
            tmp: tmp.path().display().to_string(),
        }
    })
}

fn demo_app() -> Fixture {
    let scanned = scanned();
    let mut app = App::new(PathBuf::from(SHOWN_ROOT), scanned.config.clone(), now());
    // As the loop starts it: inotify running, then the first scan.
    app.update(Event::Watching(Ok(WatchMode::Native)));
    let commands = app.update(Event::Scanned(Ok(scanned.catalog.clone())));
    assert!(
        commands.is_empty(),
        "a scan result asks for nothing: {commands:?}"
    );
    Fixture {
        app,
        tmp: scanned.tmp.clone(),
    }
}

fn relocate(path: &Path, from: &Path, to: &Path) -> PathBuf {
    match path.strip_prefix(from) {
        Ok(rest) => to.join(rest),
        Err(_) => path.to_owned(),
    }
}

fn press(app: &mut App, code: KeyCode) -> Vec<Command> {
    app.update(Event::Key(KeyEvent::from(code)))
}

fn type_text(app: &mut App, text: &str) {
    for c in text.chars() {
        press(app, KeyCode::Char(c));
    }
}

/// Moves the selection (with Home and Down, as a user would) onto `name`.
fn select(app: &mut App, name: &str) {
    press(app, KeyCode::Home);
    for _ in 0..app.rows.len() {
        if app.selected_row().is_some_and(|r| r.name == name) {
            return;
        }
        press(app, KeyCode::Down);
    }
    let names: Vec<&str> = app.rows.iter().map(|r| r.name.as_str()).collect();
    panic!("client {name} is not on the dashboard: {names:?}");
}

fn render(fixture: &mut Fixture, width: u16, height: u16) -> Terminal<TestBackend> {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).expect("test terminal");
    terminal
        .draw(|frame| walwarden::tui::view::draw(frame, &fixture.app))
        .expect("draw");
    terminal
}

/// The screen as text (TestBackend's own rendering: one quoted line per row),
/// checked never to show the temp dir.
fn screen(fixture: &mut Fixture, width: u16, height: u16) -> String {
    let terminal = render(fixture, width, height);
    let text = terminal.backend().to_string();
    let tmp = &fixture.tmp;
    assert!(
        !text.contains(tmp.as_str()),
        "the temp dir {tmp} leaked onto the screen:\n{text}"
    );
    text
}

fn buffer_lines(buffer: &Buffer) -> Vec<String> {
    let area = buffer.area;
    (area.top()..area.bottom())
        .map(|y| {
            (area.left()..area.right())
                .map(|x| buffer[(x, y)].symbol())
                .collect()
        })
        .collect()
}

#[test]
fn dashboard_80x24() {
    let mut fixture = demo_app();
    insta::assert_snapshot!(screen(&mut fixture, 80, 24));
}

#[test]
fn dashboard_160x40() {
    let mut fixture = demo_app();
    insta::assert_snapshot!(screen(&mut fixture, 160, 40));
}

#[test]
fn dashboard_while_typing_a_filter() {
    let mut fixture = demo_app();
    press(&mut fixture.app, KeyCode::Char('/'));
    type_text(&mut fixture.app, "crit");
    assert!(fixture.app.editing_filter);
    insta::assert_snapshot!(screen(&mut fixture, 80, 24));
}

#[test]
fn dashboard_filtered_by_status() {
    let mut fixture = demo_app();
    press(&mut fixture.app, KeyCode::Char('/'));
    type_text(&mut fixture.app, "crit");
    press(&mut fixture.app, KeyCode::Enter);
    assert!(!fixture.app.editing_filter);
    let names: Vec<&str> = fixture.app.rows.iter().map(|r| r.name.as_str()).collect();
    assert!(
        !names.is_empty() && names.len() < 7,
        "crit keeps some: {names:?}"
    );
    assert!(
        fixture
            .app
            .rows
            .iter()
            .all(|r| r.status == walwarden::checks::health::Status::Critical),
        "only critical clients are left: {names:?}"
    );
    insta::assert_snapshot!(screen(&mut fixture, 80, 24));
}

#[test]
fn dashboard_filtered_by_name() {
    let mut fixture = demo_app();
    press(&mut fixture.app, KeyCode::Char('/'));
    type_text(&mut fixture.app, "way");
    press(&mut fixture.app, KeyCode::Enter);
    let names: Vec<&str> = fixture.app.rows.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["wayne"]);
    insta::assert_snapshot!(screen(&mut fixture, 80, 24));
}

#[test]
fn dashboard_filter_without_match() {
    let mut fixture = demo_app();
    press(&mut fixture.app, KeyCode::Char('/'));
    type_text(&mut fixture.app, "nobody");
    press(&mut fixture.app, KeyCode::Enter);
    assert!(fixture.app.rows.is_empty());
    insta::assert_snapshot!(screen(&mut fixture, 80, 24));
}

#[test]
fn detail_of_initech_with_its_gap() {
    let mut fixture = demo_app();
    select(&mut fixture.app, "initech");
    press(&mut fixture.app, KeyCode::Enter);
    assert_eq!(
        fixture.app.screen,
        Screen::Detail {
            client: "initech".into(),
            scroll: 0
        }
    );
    insta::assert_snapshot!("detail_initech_80x24", screen(&mut fixture, 80, 24));
    insta::assert_snapshot!("detail_initech_160x40", screen(&mut fixture, 160, 40));
}

#[test]
fn detail_of_wayne_on_timeline_2_with_1mib_segments() {
    let mut fixture = demo_app();
    select(&mut fixture.app, "wayne");
    press(&mut fixture.app, KeyCode::Enter);
    insta::assert_snapshot!("detail_wayne_80x24", screen(&mut fixture, 80, 24));
    insta::assert_snapshot!("detail_wayne_160x40", screen(&mut fixture, 160, 40));
}

#[test]
fn detail_scrolls_and_esc_goes_back() {
    let mut fixture = demo_app();
    select(&mut fixture.app, "stark");
    press(&mut fixture.app, KeyCode::Enter);
    press(&mut fixture.app, KeyCode::Down);
    press(&mut fixture.app, KeyCode::Down);
    insta::assert_snapshot!("detail_stark_scrolled_80x24", screen(&mut fixture, 80, 24));
    press(&mut fixture.app, KeyCode::Esc);
    assert_eq!(fixture.app.screen, Screen::Dashboard);
    assert_eq!(
        fixture.app.selected_row().map(|r| r.name.as_str()),
        Some("stark")
    );
}

#[test]
fn help_overlay() {
    let mut fixture = demo_app();
    press(&mut fixture.app, KeyCode::Char('?'));
    assert!(fixture.app.show_help);
    insta::assert_snapshot!("help_80x24", screen(&mut fixture, 80, 24));
    insta::assert_snapshot!("help_160x40", screen(&mut fixture, 160, 40));
    press(&mut fixture.app, KeyCode::Char('?'));
    assert!(!fixture.app.show_help);
}

#[test]
fn help_overlay_on_the_detail_screen() {
    let mut fixture = demo_app();
    select(&mut fixture.app, "hooli");
    press(&mut fixture.app, KeyCode::Enter);
    press(&mut fixture.app, KeyCode::Char('?'));
    insta::assert_snapshot!(screen(&mut fixture, 80, 24));
    // Esc closes the overlay first, and only the overlay.
    press(&mut fixture.app, KeyCode::Esc);
    assert!(!fixture.app.show_help);
    assert!(matches!(fixture.app.screen, Screen::Detail { .. }));
}

#[test]
fn critical_status_cell_is_red() {
    let mut fixture = demo_app();
    let terminal = render(&mut fixture, 80, 24);
    let buffer = terminal.backend().buffer();
    let lines = buffer_lines(buffer);
    let y = lines
        .iter()
        .position(|l| l.contains("initech"))
        .expect("initech is on the dashboard") as u16;
    let x = lines[y as usize]
        .chars()
        .position(|c| c == '✖')
        .expect("initech's row has the critical badge") as u16;
    for (dx, symbol) in "✖ CRIT".chars().enumerate() {
        let cell = &buffer[(x + dx as u16, y)];
        assert_eq!(cell.symbol(), symbol.to_string());
        if symbol != ' ' {
            assert_eq!(
                cell.fg,
                Color::Red,
                "{symbol:?} of initech's status: {cell:?}"
            );
        }
    }
    // The client's name beside it keeps the default colour.
    let name_x = lines[y as usize].find("initech").unwrap();
    let name_x = lines[y as usize][..name_x].chars().count() as u16;
    assert_eq!(buffer[(name_x, y)].fg, Color::Reset);
}

#[test]
fn no_color_leaves_every_cell_uncoloured() {
    let mut fixture = demo_app();
    fixture.app.color = false;
    let check = |fixture: &mut Fixture, what: &str| {
        for (width, height) in [(80, 24), (160, 40)] {
            let terminal = render(fixture, width, height);
            let buffer = terminal.backend().buffer();
            for (i, cell) in buffer.content().iter().enumerate() {
                let (x, y) = buffer.pos_of(i);
                assert_eq!(
                    cell.fg,
                    Color::Reset,
                    "{what} {width}x{height}: fg at ({x},{y})"
                );
                assert_eq!(
                    cell.bg,
                    Color::Reset,
                    "{what} {width}x{height}: bg at ({x},{y})"
                );
            }
        }
    };
    check(&mut fixture, "dashboard");
    select(&mut fixture.app, "initech");
    press(&mut fixture.app, KeyCode::Enter);
    check(&mut fixture, "initech detail");
    press(&mut fixture.app, KeyCode::Char('?'));
    check(&mut fixture, "help");
    // Status is still told apart without colour: the badge text is there.
    press(&mut fixture.app, KeyCode::Esc);
    press(&mut fixture.app, KeyCode::Esc);
    let text = screen(&mut fixture, 80, 24);
    assert!(text.contains("✖ CRIT") && text.contains("● OK"), "{text}");
}

#[test]
fn q_quits() {
    let mut fixture = demo_app();
    assert_eq!(
        press(&mut fixture.app, KeyCode::Char('q')),
        vec![Command::Quit]
    );
    assert!(fixture.app.quit);
}

#[test]
fn q_quits_from_detail_and_help_too() {
    let mut fixture = demo_app();
    press(&mut fixture.app, KeyCode::Enter);
    press(&mut fixture.app, KeyCode::Char('?'));
    assert_eq!(
        press(&mut fixture.app, KeyCode::Char('q')),
        vec![Command::Quit]
    );
}

#[test]
fn ctrl_c_quits_even_while_typing_a_filter() {
    let mut fixture = demo_app();
    press(&mut fixture.app, KeyCode::Char('/'));
    type_text(&mut fixture.app, "q");
    assert_eq!(fixture.app.filter, "q", "q is text while typing a filter");
    let ctrl_c = KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL);
    assert_eq!(fixture.app.update(Event::Key(ctrl_c)), vec![Command::Quit]);
}

#[test]
fn selection_stays_on_its_client_after_resort() {
    let mut fixture = demo_app();
    select(&mut fixture.app, "wayne");
    let before = fixture.app.selected;
    let mut moved = false;
    for _ in 0..4 {
        press(&mut fixture.app, KeyCode::Char('s'));
        assert_eq!(
            fixture.app.selected_row().map(|r| r.name.as_str()),
            Some("wayne"),
            "sorted by {}",
            fixture.app.sort.label()
        );
        moved |= fixture.app.selected != before;
        // The highlighted row on screen is wayne's, too.
        let text = screen(&mut fixture, 80, 24);
        let marked: Vec<&str> = text.lines().filter(|l| l.contains('▶')).collect();
        assert_eq!(marked.len(), 1, "{text}");
        assert!(marked[0].contains("wayne"), "{text}");
    }
    assert!(moved, "some sort order puts wayne on another line");
    press(&mut fixture.app, KeyCode::Char('S'));
    assert_eq!(
        fixture.app.selected_row().map(|r| r.name.as_str()),
        Some("wayne")
    );
}

#[test]
fn dashboard_sorted_by_name() {
    let mut fixture = demo_app();
    press(&mut fixture.app, KeyCode::Char('s'));
    let names: Vec<&str> = fixture.app.rows.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "acme",
            "cyberdyne",
            "globex",
            "hooli",
            "initech",
            "stark",
            "umbrella",
            "wayne"
        ]
    );
    insta::assert_snapshot!(screen(&mut fixture, 80, 24));
}

#[test]
fn detail_of_hooli_with_an_acknowledged_gap() {
    let mut fixture = demo_app();
    select(&mut fixture.app, "hooli");
    press(&mut fixture.app, KeyCode::Enter);
    insta::assert_snapshot!("detail_hooli_160x40", screen(&mut fixture, 160, 40));
}

#[test]
fn detail_of_umbrella_without_base_backup() {
    let mut fixture = demo_app();
    select(&mut fixture.app, "umbrella");
    press(&mut fixture.app, KeyCode::Enter);
    insta::assert_snapshot!("detail_umbrella_160x40", screen(&mut fixture, 160, 40));
}

/// The detail of a client whose config names its target server: opening it
/// asks for one SSH read (not a second while the first runs); the answer, a
/// failing archiver with its log diagnosis, shows in the "Target server"
/// section and raises the client's problems.
#[test]
fn detail_shows_the_target_servers_side_once_read() {
    let scanned = scanned();
    let text = format!(
        "{}\n[clients.initech.target]\nhost = \"db-initech.example.net\"\nuser = \"postgres\"\n",
        walwarden::demo::DEMO_CONFIG
    );
    let config = Config::parse(&text, Path::new("/etc/walwarden/config.toml")).unwrap();
    let mut app = App::new(PathBuf::from(SHOWN_ROOT), config, now());
    app.update(Event::Scanned(Ok(scanned.catalog.clone())));
    select(&mut app, "initech");
    let commands = press(&mut app, KeyCode::Enter);
    assert!(
        matches!(commands.as_slice(), [Command::ReadTarget { client, target }]
            if client == "initech" && target.host == "db-initech.example.net"),
        "{commands:?}"
    );
    assert!(
        press(&mut app, KeyCode::Char('t')).is_empty(),
        "a second read while one runs"
    );
    let mut fixture = Fixture {
        app,
        tmp: scanned.tmp.clone(),
    };
    let reading = screen(&mut fixture, 160, 60);
    assert!(
        reading.contains("reading db-initech.example.net over SSH…"),
        "{reading}"
    );

    let json = r#"{"version_num":150010,"wal_level":"replica","archive_mode":"on","archive_command":"gzip -c -9 %p | ssh initechbackup@backup1 \"set -e; test ! -f /var/lib/postgresql/backups/initech/wal/%f.gz; ...\"","archive_timeout":60,"in_recovery":false,"archived_count":1042,"last_archived_wal":"000000010000000000000041","last_archived_time":"2026-11-18T10:40:00.000000Z","failed_count":17,"last_failed_wal":"000000010000000000000042","last_failed_time":"2026-11-18T11:05:00.000000Z","stats_reset":null,"server_now":"2026-11-18T11:06:40.000000Z","log_file":null}"#;
    let log = "2026-11-18 11:05:00.000 UTC [812] LOG:  checkpoint complete\n\
        sh: 1: cannot create /var/lib/postgresql/backups/initech/wal/000000010000000000000042.gz.part: Permission denied\n\
        2026-11-18 11:05:00.100 UTC [812] LOG:  archive command failed with exit code 2\n\
        2026-11-18 11:05:00.100 UTC [812] DETAIL:  The failed archive command was: gzip -c -9 pg_wal/000000010000000000000042 | ssh ...\n";
    let stdout =
        format!("{json}\n@@walwarden-log@@\n/var/log/postgresql/postgresql-15-main.log\n{log}");
    let view = walwarden::pg::target::TargetView::Reached(Box::new(
        walwarden::pg::target::parse_output("db-initech.example.net", &stdout).unwrap(),
    ));
    fixture.app.update(Event::TargetRead {
        client: "initech".into(),
        view,
    });
    let codes: Vec<&str> = fixture
        .app
        .rows
        .iter()
        .find(|r| r.name == "initech")
        .unwrap()
        .problems
        .iter()
        .map(|p| p.code.as_str())
        .collect();
    assert!(codes.contains(&"archiving_failing"), "{codes:?}");
    assert!(codes.contains(&"archive_timeout_verification"), "{codes:?}");
    let read = screen(&mut fixture, 160, 60);
    assert!(
        read.contains("1042 archived (last 000000010000000000000041, 26m ago)"),
        "{read}"
    );
    assert!(read.contains("| sh: 1: cannot create"), "{read}");
    insta::assert_snapshot!("detail_initech_target_160x60", read);
}

/// The new-client screen: N opens the form, Enter asks the loop for a plan
/// (nothing changes yet), the plan shows each action with its command and
/// the target server's lines, and y asks for exactly the reviewed actions.
#[test]
fn new_client_screen_form_then_plan() {
    use walwarden::ops::setup::{Action, ArchiveRoute, SetupPlan, SetupRequest};
    let mut fixture = demo_app();
    fixture.app.default_backup_host = "backup1.example.net".into();
    press(&mut fixture.app, KeyCode::Char('N'));
    assert_eq!(fixture.app.screen, Screen::NewClient);
    type_text(&mut fixture.app, "acme");
    insta::assert_snapshot!("new_client_form_100x24", screen(&mut fixture, 100, 24));
    let commands = press(&mut fixture.app, KeyCode::Enter);
    let [Command::PlanSetup(text)] = commands.as_slice() else {
        panic!("Enter did not ask for a plan: {commands:?}")
    };
    assert_eq!(
        (text.client.as_str(), text.backup_host.as_str()),
        ("acme", "backup1.example.net")
    );

    let request = SetupRequest::new(Path::new(SHOWN_ROOT), "acme").unwrap();
    let actions = vec![
        Action::CreateUser {
            name: request.user.clone(),
            home: request.home.clone(),
            client: "acme".into(),
        },
        Action::CreateDir {
            path: request.client_dir(),
            user: request.user.clone(),
            mode: 0o700,
        },
        Action::CreateDir {
            path: request.base_dir(),
            user: request.user.clone(),
            mode: 0o700,
        },
        Action::CreateDir {
            path: request.wal_dir(),
            user: request.user.clone(),
            mode: 0o700,
        },
    ];
    let route = ArchiveRoute::for_request(&request, "backup1.example.net");
    fixture.app.update(Event::SetupPlanned(Ok(SetupPlan {
        actions: actions.clone(),
        needs_root: Vec::new(),
        instructions: route.target_instructions("acme", "/tmp/backups"),
        warning: None,
    })));
    let review = screen(&mut fixture, 120, 50);
    assert!(
        review.contains("$ useradd --create-home --home-dir /home/acmebackup"),
        "{review}"
    );
    assert!(
        review
            .contains("archive_command = 'gzip -c %p | ssh -o BatchMode=yes -o ConnectTimeout=10")
            && review.contains("''put-wal %f.gz'''"),
        "{review}"
    );
    insta::assert_snapshot!("new_client_review_120x50", review);
    let commands = press(&mut fixture.app, KeyCode::Char('y'));
    let [Command::ApplySetup(_, asked)] = commands.as_slice() else {
        panic!("y did not apply: {commands:?}")
    };
    assert_eq!(asked, &actions);
    let commands = fixture.app.update(Event::SetupApplied {
        ok: true,
        lines: vec!["done: create /var/lib/postgresql/backups/acme".into()],
    });
    assert_eq!(
        commands,
        vec![Command::Rescan],
        "the new client shows at once"
    );
    press(&mut fixture.app, KeyCode::Esc);
    assert_eq!(fixture.app.screen, Screen::Dashboard);
}

/// `d` asks the loop for a deep check and opens the client's detail, which
/// shows the progress, then the result; its problems join the client's.
/// `D` asks first; only `y` starts a drill.
#[test]
fn deep_check_progress_and_drill_confirmation() {
    use walwarden::checks::health::{Problem, ProblemCode, Status};
    let mut fixture = demo_app();
    select(&mut fixture.app, "stark");
    let commands = press(&mut fixture.app, KeyCode::Char('d'));
    assert_eq!(commands, vec![Command::DeepCheck("stark".into())]);
    assert!(
        press(&mut fixture.app, KeyCode::Char('d')).is_empty(),
        "one check at a time"
    );
    fixture.app.update(Event::DeepProgress {
        client: "stark".into(),
        done: 12,
        total: 48,
    });
    let progress = screen(&mut fixture, 120, 30);
    assert!(progress.contains("12 of 48 files read (25%)"), "{progress}");
    insta::assert_snapshot!("deep_check_progress_120x30", progress);
    let report = walwarden::checks::deep::DeepReport {
        files_checked: 48,
        files_remembered: 0,
        verified_through: Some("000000010000000000000010".into()),
        verified_at: Some(now()),
        manifest_verified: None,
        problems: vec![Problem::new(
            ProblemCode::CorruptSegment,
            Status::Critical,
            "000000010000000000000011.gz: gzip stream ends early",
            "copy the segment again from the target's pg_wal",
        )],
        ..Default::default()
    };
    fixture.app.update(Event::DeepChecked {
        client: "stark".into(),
        result: Ok(Box::new(report)),
    });
    let done = screen(&mut fixture, 120, 30);
    assert!(
        done.contains("verified through 000000010000000000000010: 48 files read now"),
        "{done}"
    );
    assert!(done.contains("corrupt_segment"), "{done}");

    assert!(press(&mut fixture.app, KeyCode::Char('D')).is_empty());
    let asking = screen(&mut fixture, 100, 30);
    assert!(asking.contains("Restore drill of stark"), "{asking}");
    assert!(
        press(&mut fixture.app, KeyCode::Char('x')).is_empty(),
        "other keys do not answer"
    );
    assert_eq!(
        press(&mut fixture.app, KeyCode::Char('y')),
        vec![Command::Drill("stark".into())]
    );
    assert!(fixture.app.confirm.is_none());
    assert!(fixture.app.jobs["stark"].drill_running);
}

/// What lies beneath the overlays: everything a leaked key could change.
fn beneath(app: &App) -> String {
    format!(
        "{:?} selected={} filter={:?} editing={} sort={} reversed={} wizard={:?} onboarding={} verification={} jobs={:?}",
        app.screen,
        app.selected,
        app.filter,
        app.editing_filter,
        app.sort.label(),
        app.sort_reversed,
        app.wizard
            .as_ref()
            .map(|w| (w.data_dir.clone(), w.focus, w.phase.clone())),
        app.onboarding.is_some(),
        app.verification.is_some(),
        app.jobs.keys().collect::<Vec<_>>(),
    )
}

/// Regression: `j` with the help open closed the help and moved the
/// selection. Every overlay (the help, the error popup, a question) now
/// consumes every key: for each overlay and every key the table binds
/// anywhere (plus a few letters), the screen beneath does not change, no
/// work starts, and the overlay closes only by one of its own keys.
#[test]
fn no_key_leaks_through_an_overlay() {
    use walwarden::tui::keymap::{Action, BINDINGS, Scope};
    let mut keys: Vec<KeyCode> = BINDINGS
        .iter()
        .flat_map(|b| b.keys.iter().copied())
        .collect();
    keys.extend("ajxz0 ".chars().map(KeyCode::Char));
    keys.dedup();
    type Setup = fn(&mut App);
    let overlays: [(&str, Scope, Setup); 6] = [
        ("help on the dashboard", Scope::Help, |app| {
            press(app, KeyCode::Down);
            press(app, KeyCode::Char('?'));
        }),
        ("help on a detail", Scope::Help, |app| {
            press(app, KeyCode::Enter);
            press(app, KeyCode::Char('?'));
        }),
        ("error popup on the dashboard", Scope::Error, |app| {
            press(app, KeyCode::Down);
            app.last_error = Some("the rescan failed".into());
        }),
        ("error popup over the restore form", Scope::Error, |app| {
            press(app, KeyCode::Char('R'));
            type_text(app, "/srv");
            app.last_error = Some("a job failed".into());
        }),
        ("error popup over a question", Scope::Error, |app| {
            press(app, KeyCode::Char('D'));
            app.last_error = Some("a job failed".into());
        }),
        ("drill question", Scope::Confirm, |app| {
            press(app, KeyCode::Down);
            press(app, KeyCode::Char('D'));
        }),
    ];
    for (what, scope, setup) in overlays {
        for key in &keys {
            let mut fixture = demo_app();
            let app = &mut fixture.app;
            setup(app);
            assert_eq!(app.key_scope(), scope, "{what}");
            let before = beneath(app);
            let confirm_before = app.confirm.clone();
            let commands = press(app, *key);
            let own = walwarden::tui::keymap::action_in(scope, KeyEvent::from(*key));
            match own {
                Some(Action::Quit) => assert_eq!(commands, vec![Command::Quit], "{what}: {key:?}"),
                Some(Action::Yes) => {
                    assert!(!commands.is_empty(), "{what}: {key:?} answers yes");
                    continue;
                }
                _ => assert!(commands.is_empty(), "{what}: {key:?} started {commands:?}"),
            }
            assert_eq!(beneath(app), before, "{what}: {key:?} leaked through");
            let still_open = app.key_scope() == scope;
            assert_eq!(
                still_open,
                own.is_none() || own == Some(Action::Quit),
                "{what}: {key:?} (own action {own:?}) closed the overlay: {still_open}"
            );
            if scope == Scope::Error {
                assert_eq!(app.confirm, confirm_before, "{what}: {key:?}");
            }
        }
    }
}

/// The header says two things apart: how the rows are kept current (file
/// events, polling, nothing) and when the last full scan ran. Each state at
/// 80 columns (the root dropped: it does not fit) and 160 (the root shown).
#[test]
fn header_tells_live_rows_from_the_full_scan() {
    let header = |fixture: &mut Fixture, width: u16| {
        screen(fixture, width, 24)
            .lines()
            .next()
            .unwrap_or_default()
            .trim_end_matches(['"', ' '])
            .trim_start_matches('"')
            .to_owned()
    };
    let mut out = String::new();
    let mut fixture = demo_app();
    let mut record = |fixture: &mut Fixture, what: &str| {
        for width in [80, 160] {
            out.push_str(&format!("{what} at {width}:\n{}\n", header(fixture, width)));
        }
    };
    record(&mut fixture, "inotify");
    let native = header(&mut fixture, 160);
    assert!(
        native.contains("rows live (file events) · full scan 1m 30s ago"),
        "{native}"
    );
    press(&mut fixture.app, KeyCode::Char('r'));
    record(&mut fixture, "inotify, rescanning");
    fixture.app.update(Event::Watching(Ok(WatchMode::Polling {
        reason: "inotify watch limit reached".into(),
    })));
    fixture.app.scanning = false;
    record(&mut fixture, "polling");
    fixture.app.update(Event::Watching(Err(
        "cannot watch /var/lib/postgresql/backups".into(),
    )));
    record(&mut fixture, "not watching");
    let mut first = App::new(PathBuf::from(SHOWN_ROOT), scanned().config.clone(), now());
    first.update(Event::Watching(Ok(WatchMode::Native)));
    let mut first = Fixture {
        app: first,
        tmp: fixture.tmp.clone(),
    };
    record(&mut first, "before the first scan");
    insta::assert_snapshot!(out);
}

/// Started on a root that does not exist, the dashboard says so with the
/// fix `walwarden check` prints, instead of "scanning …" for ever.
#[test]
fn a_missing_root_is_said_with_its_fix() {
    let missing = PathBuf::from("/srv/backups-not-mounted");
    let mut app = App::new(missing.clone(), scanned().config.clone(), now());
    app.update(Event::Watching(Err(format!(
        "cannot watch {}: No such file or directory",
        missing.display()
    ))));
    let error = catalog::scan(&missing, &ScanOptions::default()).expect_err("no such root");
    let hint = error.hint();
    app.update(Event::Scanned(Err(error)));
    assert!(!app.scanning);
    assert!(
        app.last_error.is_none(),
        "said on the screen, not in a popup"
    );
    let mut fixture = Fixture {
        app,
        tmp: scanned().tmp.clone(),
    };
    let wide = screen(&mut fixture, 160, 40);
    assert!(
        wide.contains("error: backup root /srv/backups-not-mounted does not exist"),
        "{wide}"
    );
    assert!(wide.contains(&format!("hint: {hint}")), "{wide}");
    assert!(!wide.contains("scanning"), "{wide}");
    insta::assert_snapshot!("root_missing_80x24", screen(&mut fixture, 80, 24));
    insta::assert_snapshot!("root_missing_160x40", wide);
    // `r` tries again.
    assert_eq!(
        press(&mut fixture.app, KeyCode::Char('r')),
        vec![Command::Rescan]
    );
}

/// A root that stops being readable after the first scan (an unmounted
/// disk): the rows stay, marked as the last scan's, under the error and its fix.
#[test]
fn a_root_lost_after_the_first_scan_keeps_its_rows_under_the_error() {
    let mut fixture = demo_app();
    let error = catalog::scan(
        Path::new("/srv/backups-not-mounted"),
        &ScanOptions::default(),
    )
    .expect_err("no such root");
    fixture.app.update(Event::Scanned(Err(error)));
    assert_eq!(fixture.app.rows.len(), fixture.app.total_clients);
    let text = screen(&mut fixture, 80, 24);
    assert!(text.contains("full scan FAILED"), "{text}");
    insta::assert_snapshot!("root_lost_80x24", text);
}

/// The loop's first steps on a screen of this size: measure, then tell the app.
fn measured(fixture: &mut Fixture, width: u16, height: u16) {
    let viewport =
        walwarden::tui::view::measure(&fixture.app, ratatui::layout::Size::new(width, height));
    fixture.app.update(Event::Viewport(viewport));
}

fn mouse(
    app: &mut App,
    kind: MouseEventKind,
    column: u16,
    row: u16,
    at: SystemTime,
) -> Vec<Command> {
    app.update(Event::Mouse {
        event: MouseEvent {
            kind,
            column,
            row,
            modifiers: KeyModifiers::NONE,
        },
        at,
    })
}

fn click(app: &mut App, column: u16, row: u16, at: SystemTime) -> Vec<Command> {
    mouse(
        app,
        MouseEventKind::Down(MouseButton::Left),
        column,
        row,
        at,
    )
}

/// The screen line a client's row is drawn on.
fn line_of(text: &str, name: &str) -> u16 {
    text.lines()
        .skip(2)
        .position(|l| l.split_whitespace().any(|w| w == name))
        .map(|i| i as u16 + 2)
        .unwrap_or_else(|| panic!("{name} is not drawn:\n{text}"))
}

/// A click selects the row under it; a second click on it within half a
/// second opens it (one later does not); the wheel moves the selection on
/// the dashboard and scrolls the detail. All through the same actions as
/// the keys, and nothing reaches under an overlay.
#[test]
fn mouse_selects_opens_and_scrolls() {
    let mut fixture = demo_app();
    measured(&mut fixture, 80, 24);
    let text = screen(&mut fixture, 80, 24);
    let stark = line_of(&text, "stark");
    let t0 = now();
    assert!(click(&mut fixture.app, 12, stark, t0).is_empty());
    assert_eq!(
        fixture.app.selected_row().map(|r| r.name.as_str()),
        Some("stark")
    );
    insta::assert_snapshot!(
        "mouse_click_selects_stark_80x24",
        screen(&mut fixture, 80, 24)
    );
    // A second click a second later is another single click.
    assert!(click(&mut fixture.app, 12, stark, t0 + Duration::from_secs(1)).is_empty());
    assert_eq!(fixture.app.screen, Screen::Dashboard);
    // Clicks off the rows (the header line, the title, empty lines below) select nothing.
    for y in [0, 1, 2, 22] {
        click(&mut fixture.app, 12, y, t0);
        assert_eq!(
            fixture.app.selected_row().map(|r| r.name.as_str()),
            Some("stark"),
            "line {y}"
        );
    }
    // The wheel moves the selection like ↓/↑.
    mouse(&mut fixture.app, MouseEventKind::ScrollDown, 12, stark, t0);
    let below = fixture.app.selected;
    mouse(&mut fixture.app, MouseEventKind::ScrollUp, 12, stark, t0);
    assert_eq!(fixture.app.selected + 1, below);
    // A double click opens.
    let t1 = t0 + Duration::from_secs(5);
    click(&mut fixture.app, 12, stark, t1);
    click(&mut fixture.app, 12, stark, t1 + Duration::from_millis(300));
    assert_eq!(
        fixture.app.screen,
        Screen::Detail {
            client: "stark".into(),
            scroll: 0
        }
    );
    // The wheel scrolls the detail, three lines a notch, within its end.
    measured(&mut fixture, 80, 24);
    mouse(&mut fixture.app, MouseEventKind::ScrollDown, 12, 10, t1);
    assert!(
        matches!(fixture.app.screen, Screen::Detail { scroll: 3, .. }),
        "{:?}",
        fixture.app.screen
    );
    insta::assert_snapshot!(
        "mouse_wheel_scrolls_the_detail_80x24",
        screen(&mut fixture, 80, 24)
    );
    for _ in 0..100 {
        mouse(&mut fixture.app, MouseEventKind::ScrollDown, 12, 10, t1);
    }
    let Screen::Detail { scroll, .. } = fixture.app.screen else {
        panic!("left the detail")
    };
    assert_eq!(scroll, fixture.app.viewport.detail_max_scroll);
    // Under the help nothing moves.
    press(&mut fixture.app, KeyCode::Char('?'));
    let before = beneath(&fixture.app);
    mouse(&mut fixture.app, MouseEventKind::ScrollUp, 12, 10, t1);
    click(&mut fixture.app, 12, 10, t1);
    assert_eq!(beneath(&fixture.app), before);
    assert!(fixture.app.show_help);
}

/// On a short screen the list scrolls to keep the selection in view, and a
/// click selects the client drawn under it, not the one at that index.
#[test]
fn a_click_on_a_scrolled_list_selects_the_row_drawn_there() {
    let mut fixture = demo_app();
    measured(&mut fixture, 160, 9);
    let rows = fixture.app.viewport.list_rows as usize;
    assert!(
        rows < fixture.app.rows.len(),
        "the list must not fit: {rows} rows"
    );
    press(&mut fixture.app, KeyCode::End);
    let text = screen(&mut fixture, 160, 9);
    let last = fixture.app.rows.last().unwrap().name.clone();
    assert!(
        text.lines().any(|l| l.contains('▶') && l.contains(&last)),
        "{text}"
    );
    insta::assert_snapshot!("scrolled_list_160x9", text.clone());
    let top = fixture.app.viewport.list_top;
    let first_drawn = text
        .lines()
        .nth(top as usize)
        .and_then(|l| {
            fixture
                .app
                .rows
                .iter()
                .find(|r| l.contains(&format!(" {} ", r.name)))
        })
        .map(|r| r.name.clone())
        .expect("a row on the first list line");
    assert_ne!(first_drawn, fixture.app.rows[0].name, "scrolled");
    click(&mut fixture.app, 20, top, now());
    assert_eq!(
        fixture.app.selected_row().map(|r| r.name.clone()),
        Some(first_drawn)
    );
}

/// The demo's UNKNOWN client: cyberdyne's wal/ is a symlink to a mount
/// outside the root, which walwarden never follows. Its row says UNKN (in
/// magenta), not CRIT; its detail says why and what to do.
#[test]
fn detail_of_cyberdyne_whose_wal_walwarden_cannot_read() {
    use walwarden::checks::health::Status;
    let mut fixture = demo_app();
    let row = fixture
        .app
        .rows
        .iter()
        .find(|r| r.name == "cyberdyne")
        .expect("cyberdyne is on the dashboard");
    assert_eq!(row.status, Status::Unknown);
    let codes: Vec<&str> = row.problems.iter().map(|p| p.code.as_str()).collect();
    assert_eq!(codes, ["unreadable"]);
    let terminal = render(&mut fixture, 80, 24);
    let buffer = terminal.backend().buffer();
    let lines = buffer_lines(buffer);
    let y = lines.iter().position(|l| l.contains("cyberdyne")).unwrap() as u16;
    let x = lines[y as usize].chars().position(|c| c == '?').unwrap() as u16;
    assert_eq!(buffer[(x, y)].fg, Color::Magenta);
    select(&mut fixture.app, "cyberdyne");
    press(&mut fixture.app, KeyCode::Enter);
    let wide = screen(&mut fixture, 160, 40);
    assert!(
        wide.contains("is a symlink (to ../../nfs/cyberdyne/wal): links are never followed"),
        "{wide}"
    );
    insta::assert_snapshot!("detail_cyberdyne_80x24", screen(&mut fixture, 80, 24));
    insta::assert_snapshot!("detail_cyberdyne_160x40", wide);
}
