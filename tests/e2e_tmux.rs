//! End to end: the real `walwarden` binary on the demo root, in a detached
//! tmux session at a fixed size, driven with `send-keys` and read with
//! `capture-pane`. Every wait polls the screen until what is expected shows
//! up (or a deadline passes); nothing sleeps for a fixed time.
//!
//! Each test has its own tmux server (`-L` with a unique socket name, no
//! config file), so a user's tmux is never touched; a guard kills that
//! server even when the test panics. The dashboard runs in a shell in the
//! pane, so that after quitting we can check the terminal was handed back:
//! the main screen is back, the cursor shows, the tty is cooked again, and
//! the prompt runs commands.
//!
//! tmux is required: without it these tests fail, they do not skip.

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use tempfile::TempDir;

const BIN: &str = env!("CARGO_BIN_EXE_walwarden");
const WIDTH: u16 = 120;
const HEIGHT: u16 = 30;
const PROMPT: &str = "e2e$ ";
const DEADLINE: Duration = Duration::from_secs(20);
const POLL: Duration = Duration::from_millis(50);
const CLIENTS: [&str; 8] = [
    "acme",
    "cyberdyne",
    "globex",
    "hooli",
    "initech",
    "stark",
    "umbrella",
    "wayne",
];

/// A private tmux server with one session running bash, killed on drop.
struct Tmux {
    socket: String,
    /// The socket file, removed after the server is killed.
    socket_path: Option<std::path::PathBuf>,
    /// HOME and XDG_CACHE_HOME of the shell, and the demo root.
    dir: TempDir,
}

impl Tmux {
    fn start(test: &str) -> Tmux {
        require_tmux();
        let dir = tempfile::Builder::new()
            .prefix("walwarden-e2e-")
            .tempdir()
            .expect("temp dir");
        let mut tmux = Tmux {
            socket: format!("walwarden-e2e-{}-{test}", std::process::id()),
            socket_path: None,
            dir,
        };
        let home = tmux.dir.path().display().to_string();
        let cache = tmux.dir.path().join(".cache").display().to_string();
        let ps1 = format!("PS1={PROMPT}");
        let (width, height) = (WIDTH.to_string(), HEIGHT.to_string());
        tmux.run(&[
            "new-session",
            "-d",
            "-s",
            "e2e",
            "-x",
            &width,
            "-y",
            &height,
            "-e",
            &format!("HOME={home}"),
            "-e",
            &format!("XDG_CACHE_HOME={cache}"),
            "-e",
            &ps1,
            // bash writes its history into HOME when the server's kill
            // hangs it up, racing the temp dir's removal: it left one
            // folder in /tmp per test. Empty HISTFILE: nothing saved.
            "-e",
            "HISTFILE=",
            "bash",
            "--norc",
            "--noprofile",
        ]);
        tmux.socket_path = Some(tmux.pane_format("#{socket_path}").into());
        tmux.wait_for("the shell's first prompt", |screen| {
            screen.contains(PROMPT.trim_end())
        });
        tmux
    }

    /// Runs a tmux command on this server; panics with tmux's words when it fails.
    fn run(&self, args: &[&str]) -> Output {
        let output = self.command(args).output().expect("tmux runs");
        assert!(
            output.status.success(),
            "tmux {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr)
        );
        output
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new("tmux");
        // No user config; the server's environment is ours, minus what
        // would change walwarden's behaviour or nest tmux.
        command
            .args(["-u", "-L", &self.socket, "-f", "/dev/null"])
            .args(args)
            .env_remove("TMUX")
            .env_remove("NO_COLOR")
            .env_remove("WALWARDEN_ROOT")
            .env_remove("WALWARDEN_CONFIG")
            .env_remove("WALWARDEN_LOG");
        command
    }

    /// Types `text` as is (no key names).
    fn type_text(&self, text: &str) {
        self.run(&["send-keys", "-t", "e2e", "-l", text]);
    }

    /// Sends keys by tmux name: `Enter`, `Escape`, `C-c`.
    fn key(&self, name: &str) {
        self.run(&["send-keys", "-t", "e2e", name]);
    }

    fn capture(&self) -> String {
        let output = self.run(&["capture-pane", "-p", "-t", "e2e"]);
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// A pane flag, such as `alternate_on` or `cursor_flag`.
    fn pane_format(&self, format: &str) -> String {
        let output = self.run(&["display-message", "-p", "-t", "e2e", format]);
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    }

    /// Polls the screen until `ready` holds; returns that screen.
    fn wait_for(&self, what: &str, ready: impl Fn(&str) -> bool) -> String {
        let start = Instant::now();
        loop {
            let screen = self.capture();
            if ready(&screen) {
                return screen;
            }
            if start.elapsed() > DEADLINE {
                panic!(
                    "waited {DEADLINE:?} for {what}; the screen ({WIDTH}x{HEIGHT}) shows:\n{}",
                    framed(&screen)
                );
            }
            std::thread::sleep(POLL);
        }
    }

    /// Builds the demo root with the binary and starts the dashboard on it
    /// from the shell; waits until all the demo's clients are listed.
    fn open_dashboard(&self) -> String {
        build_demo(&self.dir.path().join("demo"), self.dir.path());
        self.start_dashboard()
    }

    /// Runs the binary on the demo root already built (as open_dashboard does).
    fn start_dashboard(&self) -> String {
        let dir = self.dir.path().join("demo");
        self.type_text(&format!(
            "{} --root {} --config {}",
            quote(Path::new(BIN)),
            quote(&dir.join("backups")),
            quote(&dir.join("walwarden.toml"))
        ));
        self.key("Enter");
        self.wait_for("the dashboard with the 8 demo clients", |screen| {
            screen.contains(" 8 clients · rows live")
                && screen.contains("STATUS")
                && CLIENTS.iter().all(|c| listed(screen, c))
        })
    }

    /// After the dashboard quit: the shell has the terminal back, as it was.
    fn assert_shell_is_back(&self) {
        self.wait_for("the shell's prompt after quitting", |screen| {
            self.pane_format("#{alternate_on}") == "0" && screen.contains(PROMPT.trim_end())
        });
        assert_eq!(
            self.pane_format("#{cursor_flag}"),
            "1",
            "the cursor is shown again"
        );
        self.type_text("echo READY-$((40+2))");
        self.key("Enter");
        let screen = self.wait_for("the shell to run a command (READY-42)", |screen| {
            screen.contains("READY-42")
        });
        assert!(
            !screen.contains("STATUS") && !screen.contains("? help"),
            "the dashboard is gone from the screen:\n{}",
            framed(&screen)
        );
        // Raw mode is off: canonical input and echo are back.
        self.type_text(
            "stty -a | tr ' ;' '\\n\\n' | grep -Ex 'icanon|echo' | sort | tr '\\n' + | sed 's/^/TTY=/'; echo",
        );
        self.key("Enter");
        self.wait_for("stty to report a cooked tty", |screen| {
            screen.contains("TTY=echo+icanon+")
        });
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        // Best effort, also while panicking; the temp dir goes after this.
        let _ = self
            .command(&["kill-server"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
        if let Some(path) = &self.socket_path {
            let _ = std::fs::remove_file(path);
        }
    }
}

fn require_tmux() {
    match Command::new("tmux").arg("-V").output() {
        Ok(output) if output.status.success() => {}
        Ok(output) => panic!(
            "`tmux -V` failed ({}): the end-to-end tests need a working tmux",
            output.status
        ),
        Err(error) => panic!(
            "tmux is required for the end-to-end tests and was not found ({error}): \
             install it (e.g. `apt-get install tmux`)"
        ),
    }
}

/// `walwarden demo DIR --no-tui`, with HOME pointing into the temp dir.
fn build_demo(dir: &Path, home: &Path) {
    let output = Command::new(BIN)
        .arg("demo")
        .arg(dir)
        .arg("--no-tui")
        .env("HOME", home)
        .env("XDG_CACHE_HOME", home.join(".cache"))
        .env_remove("WALWARDEN_LOG")
        .output()
        .expect("run walwarden demo");
    assert!(
        output.status.success(),
        "walwarden demo {} --no-tui failed: {}",
        dir.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(dir.join("backups").is_dir() && dir.join("walwarden.toml").is_file());
}

/// Single-quoted for the shell.
fn quote(path: &Path) -> String {
    format!("'{}'", path.display().to_string().replace('\'', r"'\''"))
}

/// True when `client` is a row of the table: a word on a line below the
/// header line (which shows the root path, a random temp dir name).
fn listed(screen: &str, client: &str) -> bool {
    screen
        .lines()
        .skip(1)
        .any(|line| line.split_whitespace().any(|word| word == client))
}

fn framed(screen: &str) -> String {
    let rule = "-".repeat(WIDTH as usize);
    format!("{rule}\n{}\n{rule}", screen.trim_end_matches('\n'))
}

#[test]
fn dashboard_filter_detail_help_and_quit() {
    let tmux = Tmux::start("keys");
    let screen = tmux.open_dashboard();
    // The demo's client whose wal/ links out of the root is UNKNOWN, not CRIT.
    assert!(
        screen
            .lines()
            .any(|l| l.contains("cyberdyne") && l.contains("? UNKN") && l.contains("unreadable")),
        "{}",
        framed(&screen)
    );

    tmux.type_text("/glo");
    tmux.key("Enter");
    let screen = tmux.wait_for("the filter to keep only globex", |screen| {
        screen.contains(" 1 of 8 clients · ") && screen.contains("filter: glo")
    });
    let shown: Vec<&str> = CLIENTS
        .iter()
        .copied()
        .filter(|c| listed(&screen, c))
        .collect();
    assert_eq!(
        shown,
        ["globex"],
        "only globex is listed:\n{}",
        framed(&screen)
    );

    tmux.key("Escape");
    tmux.wait_for("Esc to clear the filter", |screen| {
        screen.contains(" 8 clients · rows live") && CLIENTS.iter().all(|c| listed(screen, c))
    });

    // The selection stayed on globex, the row the filter left.
    tmux.key("Enter");
    let screen = tmux.wait_for("globex's detail", |screen| {
        screen.contains("Base backup") && screen.contains("WAL archive")
    });
    let title = screen.lines().nth(1).unwrap_or_default();
    assert!(
        title.contains("globex") && title.contains("CRIT"),
        "the detail's title names the client and its status:\n{}",
        framed(&screen)
    );
    assert!(screen.contains("Esc/⌫/←/h back"), "{}", framed(&screen));

    tmux.key("Escape");
    tmux.wait_for("the dashboard again", |screen| {
        screen.contains("STATUS") && !screen.contains("Base backup")
    });

    tmux.type_text("?");
    tmux.wait_for("the help overlay", |screen| {
        screen.contains("keys · ?/Esc close") && screen.contains("Client detail")
    });
    // Regression: `j` closed the help and moved the selection. The overlay
    // consumes it; `?` then closes the help, and the selection is still on
    // globex. (No wait can prove a key did nothing, so the `?` after it is
    // the marker: keys are handled in order.)
    tmux.type_text("j");
    tmux.type_text("?");
    let screen = tmux.wait_for("the help overlay to close", |screen| {
        !screen.contains("keys · ?/Esc close") && screen.contains("STATUS")
    });
    let selected: Vec<&str> = screen.lines().filter(|l| l.contains('▶')).collect();
    assert!(
        selected.len() == 1 && selected[0].contains("globex"),
        "the selection stayed on globex:\n{}",
        framed(&screen)
    );

    tmux.type_text("q");
    tmux.assert_shell_is_back();
}

#[test]
fn ctrl_c_quits_and_restores_the_terminal() {
    let tmux = Tmux::start("ctrl-c");
    tmux.open_dashboard();
    tmux.key("C-c");
    tmux.assert_shell_is_back();
}

#[test]
fn ctrl_c_quits_while_typing_a_filter() {
    let tmux = Tmux::start("ctrl-c-filter");
    tmux.open_dashboard();
    tmux.type_text("/ac");
    tmux.wait_for("the filter being typed", |screen| {
        screen.contains("filter: ac")
    });
    tmux.key("C-c");
    tmux.assert_shell_is_back();
}

/// A segment archived while the dashboard runs shows up without a keypress:
/// notify's event reaches the screen (issue 3).
#[test]
fn a_segment_arriving_appears_on_screen() {
    let tmux = Tmux::start("live");
    tmux.open_dashboard();
    tmux.type_text("/acme");
    tmux.key("Enter");
    tmux.key("Enter");
    tmux.wait_for("acme's detail", |screen| screen.contains("WAL archive"));
    let name = "00000001000000000000001B.gz";
    let screen = tmux.capture();
    assert!(
        !screen.contains(name),
        "not there before it is archived:\n{}",
        framed(&screen)
    );
    // The demo's acme cluster: archive its next segment the way archive_command does.
    let acme = walwarden::demo::Cluster::new(7712094032559808441, 16 << 20);
    let wal = tmux.dir.path().join("demo/backups/acme/wal");
    acme.archive_segment(&wal, acme.id(1, 0x1B), None)
        .expect("archive a segment");
    let screen = tmux.wait_for("replay to reach the new segment", |screen| {
        screen.contains("replay reaches 00000001000000000000001B")
    });
    assert!(
        screen.contains("25 segments"),
        "the count moved on:\n{}",
        framed(&screen)
    );
    tmux.type_text("G");
    tmux.wait_for(
        "the new segment in the live arrivals, seen by an event",
        |screen| {
            screen
                .lines()
                .any(|line| line.contains(name) && line.contains("seen"))
        },
    );
    tmux.key("Escape");
    let screen = tmux.wait_for("the dashboard", |screen| screen.contains("STATUS"));
    // The landing mark lasts 3 s: too short to assert on a loaded machine; tui_live checks it with a fixed clock.
    assert!(
        screen
            .lines()
            .any(|l| l.contains("acme") && l.contains(" 25 ")),
        "acme's row counts 25 segments:\n{}",
        framed(&screen)
    );
    tmux.type_text("q");
    tmux.assert_shell_is_back();
}

/// The restore wizard in the real binary, as a dry run: the form, every step
/// reported, nothing created (issue 4).
#[test]
fn the_restore_wizard_dry_run_in_the_real_binary() {
    use std::os::unix::fs::PermissionsExt;
    let tmux = Tmux::start("wizard");
    // The preflight reads the archive as the PostgreSQL user: let it through the temp dir.
    std::fs::set_permissions(tmux.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    tmux.open_dashboard();
    tmux.type_text("/acme");
    tmux.key("Enter");
    tmux.type_text("R");
    // The form opens and fills the settings this host needs, worked out in
    // the background: acme's postgresql.conf names a socket folder that is
    // not here.
    tmux.wait_for("the wizard's form with the proposed settings", |screen| {
        screen.contains("restore acme · set up")
            && screen.contains("settings KEY=VALUE,…  unix_socket_directories=")
    });
    let data_dir = tmux.dir.path().join("restored");
    tmux.type_text(&data_dir.display().to_string());
    tmux.key("Enter");
    // With them the dry run passes the preflight's host-settings check
    // (without them it would refuse: the socket folder).
    let screen = tmux.wait_for("the dry run to finish", |screen| {
        screen.contains("restore acme · finished") || screen.contains("restore acme · FAILED")
    });
    assert!(
        screen.contains("restore acme · finished"),
        "{}",
        framed(&screen)
    );
    assert!(
        screen.contains("9. verify and report"),
        "{}",
        framed(&screen)
    );
    assert!(!screen.contains("[FAIL]"), "{}", framed(&screen));
    assert!(!data_dir.exists(), "a dry run creates nothing");
    tmux.key("Escape");
    tmux.wait_for("the dashboard", |screen| screen.contains("STATUS"));
    tmux.type_text("q");
    tmux.assert_shell_is_back();
}

/// `d` on the real binary runs a deep check in the background and shows its
/// result in the client's detail; `D` asks before a drill and `n` runs nothing.
#[test]
fn deep_check_and_drill_confirmation_in_the_real_binary() {
    let tmux = Tmux::start("deep");
    tmux.open_dashboard();
    tmux.type_text("/stark");
    tmux.key("Enter");
    tmux.wait_for("the filter to keep stark", |screen| {
        screen.contains(" 1 of 8 clients · ")
    });
    tmux.type_text("d");
    let screen = tmux.wait_for("the deep check's result in stark's detail", |screen| {
        screen.contains("Deep check") && screen.contains("verified through")
    });
    let line = screen
        .lines()
        .find(|l| l.contains("verified through"))
        .unwrap_or_default()
        .to_owned();
    assert!(
        line.contains("files read now") && line.contains("0 remembered"),
        "a first deep check reads everything:\n{}",
        framed(&screen)
    );
    // A second run remembers every file it proved.
    tmux.type_text("d");
    tmux.wait_for("the second deep check, from memory", |screen| {
        screen.contains("0 files read now")
    });

    tmux.type_text("D");
    tmux.wait_for("the drill confirmation", |screen| {
        screen.contains("Restore drill of stark") && screen.contains("y yes")
    });
    tmux.type_text("n");
    let screen = tmux.wait_for("the confirmation to close", |screen| {
        !screen.contains("Restore drill of stark")
    });
    assert!(
        !screen.contains("running (the archive is only read"),
        "{}",
        framed(&screen)
    );
    tmux.type_text("q");
    tmux.assert_shell_is_back();

    // Started again on the same root, the dashboard remembers how far stark
    // was proven, without reading a file.
    tmux.start_dashboard();
    tmux.type_text("/stark");
    tmux.key("Enter");
    tmux.wait_for("the filter to keep stark", |screen| {
        screen.contains(" 1 of 8 clients · ")
    });
    tmux.key("Enter");
    tmux.wait_for("stark's detail with the remembered proof", |screen| {
        screen.contains("verified through")
            && screen.contains("remembered from earlier deep checks")
    });
    tmux.type_text("q");
    tmux.assert_shell_is_back();
}

/// `N` on the real binary: the new-client form, and Enter plans in the
/// background against the real root (nothing changes) and shows each action
/// with its command and the archive_command to paste; Esc goes back.
#[test]
fn new_client_screen_plans_without_changing_anything() {
    let tmux = Tmux::start("new-client");
    tmux.open_dashboard();
    let root = tmux.dir.path().join("demo").join("backups");
    tmux.type_text("N");
    tmux.wait_for("the new-client form", |screen| {
        screen.contains("new client · form") && screen.contains("backup host")
    });
    tmux.type_text("zeta");
    // The user's home, fourth field: inside the test's own folder.
    let home = tmux.dir.path().join("home").join("zetabackup");
    for _ in 0..3 {
        tmux.key("Tab");
    }
    tmux.type_text(home.to_str().unwrap());
    tmux.key("Enter");
    let screen = tmux.wait_for("the plan", |screen| {
        screen.contains("new client · review") && screen.contains("$ useradd")
    });
    let joined: String = screen.lines().map(str::trim_end).collect();
    assert!(
        joined.contains(&format!("--home-dir {}", home.display())),
        "{}",
        framed(&screen)
    );
    assert!(
        screen.contains("create the unprivileged user zetabackup"),
        "{}",
        framed(&screen)
    );
    assert!(
        !root.join("zeta").exists(),
        "planning created the client folder"
    );
    assert!(
        walwarden::ops::setup::lookup_uid("zetabackup").is_none(),
        "planning created the user"
    );
    tmux.key("Escape");
    tmux.wait_for("the form again", |screen| {
        screen.contains("new client · form")
    });
    tmux.key("Escape");
    tmux.wait_for("the dashboard", |screen| screen.contains("STATUS"));
    tmux.type_text("q");
    tmux.assert_shell_is_back();
}

/// `N` then `y` on the real binary, as root: the client's folders and user
/// are made, the copy test runs as that user, and the new client appears on
/// the dashboard. The user is removed afterwards.
#[test]
fn new_client_screen_applies_the_plan_as_root() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    assert!(
        walwarden::ops::setup::lookup_uid("root") == Some(0) && nix::unistd::geteuid().is_root(),
        "this test creates an OS user and must run as root (CI does)"
    );
    let tmux = Tmux::start("new-client-apply");
    std::fs::set_permissions(tmux.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    tmux.open_dashboard();
    let client = format!("ww{:05x}", std::process::id() & 0xfffff);
    let user = format!("{client}backup");
    struct Remove(String);
    impl Drop for Remove {
        fn drop(&mut self) {
            let _ = Command::new("userdel").arg(&self.0).status();
        }
    }
    let _remove = Remove(user.clone());
    let home = tmux.dir.path().join("home").join(&user);
    tmux.type_text("N");
    tmux.wait_for("the new-client form", |screen| {
        screen.contains("new client · form")
    });
    tmux.type_text(&client);
    for _ in 0..3 {
        tmux.key("Tab");
    }
    tmux.type_text(home.to_str().unwrap());
    tmux.key("Enter");
    tmux.wait_for("the plan", |screen| screen.contains("Apply 4 changes"));
    tmux.type_text("y");
    let screen = tmux.wait_for("the results", |screen| {
        screen.contains("new client · done") || screen.contains("new client · FAILED")
    });
    assert!(screen.contains("new client · done"), "{}", framed(&screen));
    // The key's forced command is the receiver: one copy test, through it.
    assert_eq!(
        screen.matches("ok: the copy test as").count(),
        1,
        "{}",
        framed(&screen)
    );
    let wal = tmux
        .dir
        .path()
        .join("demo/backups")
        .join(&client)
        .join("wal");
    let meta = std::fs::metadata(&wal).unwrap();
    assert_eq!(
        (Some(meta.uid()), meta.mode() & 0o7777),
        (walwarden::ops::setup::lookup_uid(&user), 0o700)
    );
    tmux.key("Enter");
    tmux.wait_for("the dashboard with the new client", |screen| {
        screen.contains(" 9 clients · ") && listed(screen, &client)
    });
    tmux.type_text("q");
    tmux.assert_shell_is_back();
}

/// Started on a root that does not exist, the real binary says so on
/// screen with the fix `walwarden check` prints (it showed "scanning …" for
/// ever), and quits cleanly.
#[test]
fn a_missing_root_is_said_on_screen_with_its_fix() {
    let tmux = Tmux::start("missing-root");
    let missing = tmux.dir.path().join("not-mounted");
    tmux.type_text(&format!(
        "{} --root {} --config /dev/null",
        quote(Path::new(BIN)),
        quote(&missing)
    ));
    tmux.key("Enter");
    let screen = tmux.wait_for("the root's error and its fix", |screen| {
        let joined: String = screen.lines().map(str::trim_end).collect();
        joined.contains("does not exist") && joined.contains("hint: pass --root DIR")
    });
    assert!(
        screen.contains("CANNOT READ THE ROOT") && !screen.contains("scanning"),
        "{}",
        framed(&screen)
    );
    tmux.type_text("q");
    tmux.assert_shell_is_back();
}

impl Tmux {
    /// The pane's mouse reporting modes (xterm 1000, 1002, 1003, 1006), as tmux sees them.
    fn mouse_modes(&self) -> String {
        self.pane_format(
            "#{mouse_standard_flag}#{mouse_button_flag}#{mouse_all_flag}#{mouse_sgr_flag}",
        )
    }

    /// A left click at the 0-based cell (x, y), as a terminal reports it
    /// (SGR mouse: press then release); `times` clicks in one write.
    fn click(&self, x: u16, y: u16, times: usize) {
        let one = format!("\x1b[<0;{};{}M\x1b[<0;{};{}m", x + 1, y + 1, x + 1, y + 1);
        self.type_text(&one.repeat(times));
    }

    /// One notch of the wheel (down or up) at (x, y).
    fn wheel(&self, x: u16, y: u16, down: bool) {
        let button = if down { 65 } else { 64 };
        self.type_text(&format!("\x1b[<{button};{};{}M", x + 1, y + 1));
    }
}

/// The screen line a client's row is on (below the header line).
fn row_of(screen: &str, client: &str) -> u16 {
    screen
        .lines()
        .position(|line| {
            line.split_whitespace().any(|w| w == client) && !line.contains("walwarden")
        })
        .unwrap_or_else(|| panic!("{client} is not listed:\n{}", framed(screen))) as u16
}

/// The real binary with the mouse: it turns clicks and the wheel on (not
/// motion), a click selects a row, a double click opens it, the wheel
/// scrolls the detail; after quitting every mouse mode is off again.
#[test]
fn mouse_clicks_and_wheel_in_the_real_binary_and_off_after_quitting() {
    let tmux = Tmux::start("mouse");
    assert_eq!(tmux.mouse_modes(), "0000", "no mouse mode before");
    let screen = tmux.open_dashboard();
    assert_eq!(
        tmux.mouse_modes(),
        "1001",
        "clicks and the wheel in SGR form, no motion reports"
    );
    let y = row_of(&screen, "stark");
    tmux.click(12, y, 1);
    tmux.wait_for("the click to select stark", |screen| {
        screen
            .lines()
            .any(|l| l.contains('▶') && l.contains("stark"))
    });
    tmux.click(12, y, 2);
    tmux.wait_for("the double click to open stark's detail", |screen| {
        screen.lines().nth(1).is_some_and(|l| l.contains("stark")) && screen.contains("Base backup")
    });
    let first_line = |screen: &str| screen.lines().nth(2).unwrap_or_default().to_owned();
    let top = first_line(&tmux.capture());
    tmux.wheel(12, 10, true);
    tmux.wait_for("the wheel to scroll the detail", |screen| {
        first_line(screen) != top
    });
    tmux.wheel(12, 10, false);
    tmux.wait_for("the wheel back up", |screen| first_line(screen) == top);
    tmux.type_text("q");
    tmux.assert_shell_is_back();
    assert_eq!(
        tmux.mouse_modes(),
        "0000",
        "mouse reports off after quitting"
    );
}

/// Ended by SIGTERM (a closing ssh session, systemd), the dashboard hands
/// the terminal back as on `q`: mouse reports off, cursor shown, tty cooked.
#[test]
fn sigterm_restores_the_terminal_and_the_mouse() {
    let tmux = Tmux::start("sigterm");
    tmux.open_dashboard();
    assert_eq!(tmux.mouse_modes(), "1001");
    let shell = tmux.pane_format("#{pane_pid}");
    let children = Command::new("pgrep")
        .args(["-P", &shell])
        .output()
        .expect("pgrep runs");
    let pid = String::from_utf8_lossy(&children.stdout)
        .lines()
        .next()
        .expect("the dashboard runs under the pane's shell")
        .trim()
        .to_owned();
    let status = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill runs");
    assert!(status.success());
    tmux.assert_shell_is_back();
    assert_eq!(
        tmux.mouse_modes(),
        "0000",
        "mouse reports off after SIGTERM"
    );
}
