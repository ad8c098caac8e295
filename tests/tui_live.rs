//! The live screens, headless: file changes fed to `App::update` as the
//! event loop feeds them, with real files behind them (the observer stats
//! what lands) and an injected clock. The verification window runs its real
//! checks (`check_base_backup`, `check_segment`) on the commands the app
//! returns, as the loop's workers would.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use crossterm::event::{KeyCode, KeyEvent};
use ratatui::Terminal;
use ratatui::backend::TestBackend;

use walwarden::archive::catalog::{self, Observer, ScanOptions};
use walwarden::archive::watch::WalChange;
use walwarden::checks::integrity::{check_base_backup, check_segment};
use walwarden::checks::verify::VerifySettings;
use walwarden::config::Config;
use walwarden::demo::{Cluster, build_demo};
use walwarden::tui::app::{App, Command, Event};

const NOW_SECS: u64 = 1_795_000_000;

fn at(offset_secs: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(NOW_SECS + offset_secs)
}

/// The demo in `/tmp/walwarden-live-XXXXXX`: the random part has a fixed
/// length, so masking it keeps every line's width.
struct Live {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    app: App,
    acme: Cluster,
    /// Resolves file changes into observations, as the loop's observer thread does.
    observer: Observer,
}

fn live() -> Live {
    let tmp = tempfile::Builder::new()
        .prefix("walwarden-live-")
        .rand_bytes(6)
        .tempdir_in("/tmp")
        .unwrap();
    let demo = build_demo(tmp.path(), at(0)).unwrap();
    let mut catalog = catalog::scan(&demo.root, &ScanOptions::default()).unwrap();
    catalog.scanned_at = at(0);
    let config = Config::load(&demo.config).unwrap();
    let mut app = App::new(demo.root.clone(), config, at(0));
    // File events feed these tests, as inotify feeds the loop.
    app.update(Event::Watching(Ok(
        walwarden::archive::watch::WatchMode::Native,
    )));
    app.update(Event::Scanned(Ok(catalog)));
    Live {
        observer: Observer::new(&demo.root),
        root: demo.root,
        app,
        acme: demo.live_cluster,
        _tmp: tmp,
    }
}

impl Live {
    /// File changes as the loop delivers them: observed (stat, reads), then applied.
    fn changes(&mut self, changes: Vec<WalChange>) -> Vec<Command> {
        let observed = self.observer.observe_all(&changes);
        self.app.update(Event::Observed(observed))
    }

    fn keys(&mut self, keys: &[KeyCode]) -> Vec<Command> {
        keys.iter()
            .flat_map(|k| self.app.update(Event::Key(KeyEvent::from(*k))))
            .collect()
    }

    fn type_text(&mut self, text: &str) {
        for c in text.chars() {
            self.app
                .update(Event::Key(KeyEvent::from(KeyCode::Char(c))));
        }
    }

    /// Archives acme's segment `segno` with its mtime at `when`, and tells the app as notify would.
    fn land(&mut self, segno: u64, when: SystemTime) -> Vec<Command> {
        let wal = self.root.join("acme/wal");
        let path = self
            .acme
            .archive_segment(&wal, self.acme.id(1, segno), Some(when))
            .unwrap();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        self.changes(vec![
            WalChange::InFlight {
                client: "acme".into(),
                name: format!("{name}.part"),
                seen_at: when,
            },
            WalChange::Removed {
                client: "acme".into(),
                name: format!("{name}.part"),
            },
            WalChange::Arrived {
                client: "acme".into(),
                name,
                seen_at: when,
            },
        ])
    }

    fn screen(&mut self, width: u16, height: u16) -> String {
        let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
        terminal
            .draw(|frame| walwarden::tui::view::draw(frame, &self.app))
            .unwrap();
        let tmp_name = self
            .root
            .parent()
            .unwrap()
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        format!("{:?}", terminal.backend()).replace(&tmp_name, "walwarden-live-XXXXXX")
    }
}

/// Runs the side effects the loop would, feeding their results back.
fn run_commands(app: &mut App, commands: Vec<Command>) {
    for command in commands {
        match command {
            Command::CheckBase(dir) => {
                let check = check_base_backup(&dir, &mut |_| {});
                app.update(Event::BaseChecked(check));
            }
            Command::CheckSegment { path, seen_at } => {
                app.update(Event::SegmentChecked {
                    seen_at,
                    check: check_segment(&path),
                });
            }
            other => panic!("unexpected command {other:?}"),
        }
    }
}

#[test]
fn arrivals_land_in_the_detail_and_mark_the_dashboard_row() {
    let mut live = live();
    live.app.update(Event::Tick(at(5)));
    for (i, segno) in (27..=29u64).enumerate() {
        let commands = live.land(segno, at(30 + i as u64 * 60));
        assert!(
            commands.is_empty(),
            "a plain arrival needs no rescan: {commands:?}"
        );
    }
    // A transfer still in flight.
    let part = live.root.join("acme/wal/00000001000000000000001E.gz.part");
    std::fs::write(&part, b"\x1f\x8b").unwrap();
    walwarden::demo::set_mtime(&part, at(150)).unwrap();
    live.changes(vec![WalChange::InFlight {
        client: "acme".into(),
        name: "00000001000000000000001E.gz.part".into(),
        seen_at: at(150),
    }]);
    live.app.update(Event::Tick(at(151)));

    let client = live.app.catalog.as_ref().unwrap().client("acme").unwrap();
    let seen: Vec<&str> = client
        .cadence
        .arrivals()
        .filter(|a| a.live)
        .map(|a| a.name.as_str())
        .collect();
    assert_eq!(
        seen,
        [
            "00000001000000000000001B.gz",
            "00000001000000000000001C.gz",
            "00000001000000000000001D.gz"
        ]
    );
    assert_eq!(client.wal.in_flight.len(), 1);
    assert_eq!(
        client.continuity.restorable_through.as_deref(),
        Some("00000001000000000000001D")
    );

    // Within three seconds of the last landing the row is marked; later it is not.
    live.app.update(Event::Tick(at(156)));
    let dashboard = live.screen(120, 14);
    let row = dashboard
        .lines()
        .find(|l| l.contains("acme"))
        .unwrap()
        .to_owned();
    assert!(!row.contains('◆'), "the last landing was 6 s ago: {row}");
    live.land(0x1E, at(160));
    live.app.update(Event::Tick(at(161)));
    let dashboard = live.screen(120, 14);
    let row = dashboard.lines().find(|l| l.contains("acme")).unwrap();
    assert!(row.contains('◆'), "just landed: {row}");
    insta::assert_snapshot!("live_dashboard_120x14", dashboard);

    live.type_text("/acme");
    live.keys(&[KeyCode::Enter, KeyCode::Enter, KeyCode::End]);
    insta::assert_snapshot!("live_detail_of_acme_100x40", live.screen(100, 40));
}

#[test]
fn the_verification_window_passes_with_segments_from_the_same_cluster() {
    let mut live = live();
    live.app.verify_settings = VerifySettings {
        window: Duration::from_secs(180),
        expect_interval: Duration::from_secs(60),
        slack: Duration::from_secs(15),
        min_segments: 3,
    };
    live.type_text("/acme");
    let commands = live.keys(&[KeyCode::Enter, KeyCode::Char('v')]);
    assert!(
        matches!(commands.as_slice(), [Command::CheckBase(dir)] if dir.ends_with("acme/base")),
        "{commands:?}"
    );
    run_commands(&mut live.app, commands);
    for (i, segno) in (27..=29u64).enumerate() {
        let when = at(50 + i as u64 * 55);
        let commands = live.land(segno, when);
        assert_eq!(
            commands.len(),
            1,
            "each new segment is checked: {commands:?}"
        );
        run_commands(&mut live.app, commands);
    }
    live.app.update(Event::Tick(at(120)));
    insta::assert_snapshot!("verify_running_100x30", live.screen(100, 30));
    live.app.update(Event::Tick(at(181)));
    let report = live.app.verification.as_ref().unwrap().report(at(181));
    assert!(report.passed, "{}", report.to_text());
    let screen = live.screen(100, 30);
    assert!(screen.contains("verify acme PASS"), "{screen}");
    insta::assert_snapshot!("verify_passed_100x30", screen);
}

#[test]
fn the_verification_window_fails_on_a_foreign_segment_and_on_silence() {
    let mut live = live();
    live.app.verify_settings = VerifySettings {
        window: Duration::from_secs(180),
        expect_interval: Duration::from_secs(60),
        slack: Duration::from_secs(15),
        min_segments: 2,
    };
    live.type_text("/acme");
    let commands = live.keys(&[KeyCode::Enter, KeyCode::Char('v')]);
    run_commands(&mut live.app, commands);
    let commands = live.land(27, at(40));
    run_commands(&mut live.app, commands);
    // Another cluster's segment, named as acme's next one: what `test ! -f` guards against.
    let stranger = Cluster::new(12345, 16 << 20);
    let wal = live.root.join("acme/wal");
    stranger
        .archive_segment(&wal, stranger.id(1, 28), Some(at(90)))
        .unwrap();
    let commands = live.changes(vec![WalChange::Arrived {
        client: "acme".into(),
        name: "00000001000000000000001C.gz".into(),
        seen_at: at(90),
    }]);
    run_commands(&mut live.app, commands);
    live.app.update(Event::Tick(at(181)));
    let report = live.app.verification.as_ref().unwrap().report(at(181));
    assert!(!report.passed);
    let item4 = &report.items[3];
    assert!(
        item4.detail.contains("another database system") && item4.detail.contains("12345"),
        "{}",
        item4.detail
    );
    let item3 = &report.items[2];
    // The window ends at 180 s; the last segment (the foreign one) came at 90 s.
    assert!(
        item3.detail.contains("nothing arrived for 1m 30s"),
        "silence fails the intervals: {}",
        item3.detail
    );
    insta::assert_snapshot!("verify_failed_100x30", live.screen(100, 30));

    // Esc leaves the finished window.
    live.keys(&[KeyCode::Esc]);
    assert!(live.app.verification.is_none());
}

#[test]
fn an_event_storm_is_applied_in_one_batch() {
    let mut live = live();
    let wal = live.root.join("acme/wal");
    let mut changes = Vec::new();
    for segno in 27..527u64 {
        // Plain segments are enough for the catalog; writing 500 gzip streams would only slow the test.
        let name = live.acme.id(1, segno).file_name(16 << 20);
        std::fs::write(
            wal.join(&name),
            live.acme.segment_header(live.acme.id(1, segno)),
        )
        .unwrap();
        changes.push(WalChange::Arrived {
            client: "acme".into(),
            name,
            seen_at: at(10 + segno),
        });
    }
    let commands = live.changes(changes);
    assert!(commands.is_empty());
    let client = live.app.catalog.as_ref().unwrap().client("acme").unwrap();
    assert_eq!(client.wal.segments.len(), 24 + 500);
    assert!(
        !client.stale,
        "derived facts were refreshed after the batch"
    );
    assert_eq!(
        client.continuity.restorable_through.as_deref(),
        Some(live.acme.id(1, 526).file_name(16 << 20).as_str())
    );
    assert_eq!(
        client.cadence.arrivals().len(),
        walwarden::archive::watch::CADENCE_MEMORY
    );
}

#[test]
fn the_last_drill_shows_on_the_dashboard_and_in_the_detail() {
    let mut live = live();
    let drill = walwarden::checks::drills::DrillRecord {
        client: "acme".into(),
        at: "2026-11-18T09:06:40Z".into(),
        at_unix: NOW_SECS - 2 * 3600,
        success: true,
        detail: "1 databases, 417 relations".into(),
        seconds: 7.2,
        reached: None,
        reached_segment: None,
        last_commit: None,
        phases: Default::default(),
        sizes: None,
    };
    live.app.update(Event::Drills(vec![drill]));
    let dashboard = live.screen(170, 14);
    assert!(dashboard.contains("DRILL"), "{dashboard}");
    let acme = dashboard.lines().find(|l| l.contains("acme")).unwrap();
    assert!(acme.contains(" 2h "), "acme drilled 2h ago: {acme}");
    let globex = dashboard.lines().find(|l| l.contains("globex")).unwrap();
    assert!(globex.contains("never"), "{globex}");
    live.type_text("/acme");
    live.keys(&[KeyCode::Enter, KeyCode::Enter]);
    let detail = live.screen(120, 60);
    assert!(
        detail.contains(
            "last successful restore drill 2h ago (7 s to restore; 1 databases, 417 relations)"
        ),
        "{detail}"
    );
}

/// Regression: acme, archiving a segment a minute for half an hour, then
/// one every 5 s (the demo's live feed) showed a cadence of `1m` for dozens
/// of arrivals: the median of its whole history. The CADENCE cell follows
/// the current rate once three intervals are at it: the first arrival's
/// interval still spans the old minute.
#[test]
fn a_client_now_archiving_every_5s_shows_5s_within_four_arrivals() {
    let mut live = live();
    let cadence_cell = |live: &mut Live| {
        let dashboard = live.screen(120, 14);
        let row = dashboard
            .lines()
            .find(|l| l.contains("acme"))
            .unwrap()
            .to_owned();
        // CADENCE is the rate, then the sparkline: the word before the bars.
        let words: Vec<&str> = row.split_whitespace().collect();
        let bars = words
            .iter()
            .position(|w| w.chars().all(|c| ('▁'..='█').contains(&c)))
            .unwrap_or_else(|| panic!("no sparkline in {row}"));
        words[bars - 1].to_owned()
    };
    assert_eq!(cadence_cell(&mut live), "1m");
    let mut cells = Vec::new();
    for (i, segno) in (27..=30u64).enumerate() {
        let when = at(5 + i as u64 * 5);
        live.land(segno, when);
        live.app.update(Event::Tick(when));
        cells.push(cadence_cell(&mut live));
    }
    assert_eq!(cells, ["1m", "1m", "1m", "5s"]);
}

/// Issue 13: an upload the receiver refused shows in the client's detail
/// (when, what, why) and raises its status; the receiver's own folder is no stray.
#[test]
fn a_refused_upload_shows_in_the_detail_and_raises_the_status() {
    let mut live = live();
    let own = live.root.join("acme/.walwarden");
    std::fs::create_dir_all(&own).unwrap();
    let mut entry = walwarden::archive::receiver_log::LogEntry::new(
        at(0) - Duration::from_secs(600),
        "put-wal",
        Some("000000010000000000000017.gz".into()),
        walwarden::archive::receiver_log::Outcome::Refused,
    );
    entry.code = Some("rejected_overwrite".into());
    entry.reason = Some("already archived with other content (sha256 aa.. vs bb..)".into());
    let mut line = serde_json::to_string(&entry).unwrap();
    line.push('\n');
    std::fs::write(own.join("receive.log"), line).unwrap();
    let mut catalog = catalog::scan(&live.root, &ScanOptions::default()).unwrap();
    catalog.scanned_at = at(0);
    live.app.update(Event::Scanned(Ok(catalog)));
    let dashboard = live.screen(170, 14);
    let acme = dashboard.lines().find(|l| l.contains("acme")).unwrap();
    assert!(
        acme.contains("CRIT") && acme.contains("rejected_overwrite"),
        "{acme}"
    );
    live.type_text("/acme");
    live.keys(&[KeyCode::Enter, KeyCode::Enter]);
    let detail = live.screen(140, 80);
    assert!(
        detail.contains("Refused uploads (the receiver's log)"),
        "{detail}"
    );
    assert!(
        detail.contains("put-wal 000000010000000000000017.gz [rejected_overwrite]")
            && detail.contains("already archived with other content"),
        "{detail}"
    );
    assert!(!detail.contains("unexpected file .walwarden/"), "{detail}");
}
