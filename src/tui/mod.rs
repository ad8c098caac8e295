//! The dashboard: a thin face on the catalog. `app` holds the state and its
//! update function, `keymap` the key table, `view` the drawing; this module
//! runs the loop that feeds them events (keys, clock ticks, scan results)
//! and runs their side effects (scans in the background, one at a time).

pub mod app;
pub mod keymap;
pub mod onboarding;
pub mod view;
pub mod wizard;

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use color_eyre::eyre::{Result, WrapErr};
use crossterm::event::{Event as TermEvent, EventStream, KeyEventKind};
use futures::StreamExt;
use ratatui::DefaultTerminal;
use tokio::sync::mpsc;

use crate::archive::catalog::{self, Catalog, ScanOptions};
use crate::archive::watch::RootWatcher;
use crate::checks::integrity::{check_base_backup, check_segment};
use crate::checks::quick::{QuickCache, QuickInput};
use crate::config::Config;
use crate::ops::restore::journal::Outcome;
use crate::ops::restore::steps::{self, Driver, StepKind};
use app::{App, Command, Event};
use wizard::RestoreEvent;

#[derive(Debug, Clone)]
pub struct Options {
    /// How often the whole root is re-read as a safety net.
    pub resync_every: Duration,
    /// How often ages are recomputed without any file event.
    pub tick_every: Duration,
    pub cache: Option<PathBuf>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            // File events carry the live view; this full re-read is only the safety net.
            resync_every: Duration::from_secs(600),
            tick_every: Duration::from_secs(1),
            cache: crate::archive::base_cache::default_cache_path(),
        }
    }
}

impl Options {
    pub fn demo() -> Options {
        Options::default()
    }
}

/// Opens the dashboard on `root` until the user quits. The terminal is
/// restored on every way out: return, error, and (by ratatui's hook) panic.
pub fn run(root: PathBuf, config: Config, options: Options) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .wrap_err("cannot start the event loop")?;
    let mut terminal = ratatui::init();
    let result = runtime.block_on(event_loop(&mut terminal, root, config, options));
    ratatui::restore();
    runtime.shutdown_timeout(Duration::from_millis(200));
    result
}

/// Internal messages: the app's events plus the loop's own timers.
enum Message {
    App(Event),
    /// A file event, already resolved into facts by the observer thread.
    Observed(crate::archive::catalog::Observation),
    ResyncDue,
    Terminate,
}

async fn event_loop(
    terminal: &mut DefaultTerminal,
    root: PathBuf,
    config: Config,
    options: Options,
) -> Result<()> {
    let (tx, mut rx) = mpsc::unbounded_channel::<Message>();
    // Keys have their own channel, read first: they never wait behind a backlog of file events.
    let (input_tx, mut input_rx) = mpsc::unbounded_channel::<Message>();
    spawn_input(input_tx);
    spawn_timer(tx.clone(), options.tick_every, || {
        Message::App(Event::Tick(SystemTime::now()))
    });
    spawn_timer(tx.clone(), options.resync_every, || Message::ResyncDue);
    spawn_terminate_signal(tx.clone());

    let mut app = App::new(root.clone(), config, SystemTime::now());
    app.default_backup_host = crate::ops::setup::this_host();
    app.color = std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    // Watch before the first scan: a file landing in between is seen by one of them.
    // Each file event is resolved (stat, reads) on the observer's thread: this one never touches the disk.
    let observed_tx = tx.clone();
    let watch_tx = catalog::spawn_observer(&root, move |_, observation| {
        observed_tx.send(Message::Observed(observation)).is_ok()
    })
    .wrap_err("cannot start the file observer")?;
    let watcher = RootWatcher::start(&root, move |change| {
        let _ = watch_tx.send(change);
    });
    let watch_state = match &watcher {
        Ok(watcher) => Ok(watcher.mode.clone()),
        Err(error) => Err(error.to_string()),
    };
    app.update(Event::Watching(watch_state));
    let mut jobs = Jobs::new(root, options.cache.clone(), tx.clone());
    jobs.scans.request();
    loop {
        terminal.draw(|frame| view::draw(frame, &mut app))?;
        let first = tokio::select! {
            biased;
            Some(key) = input_rx.recv() => key,
            Some(other) = rx.recv() => other,
            else => break,
        };
        let mut pending = vec![first];
        while let Ok(key) = input_rx.try_recv() {
            pending.push(key);
        }
        if let Ok(next) = rx.try_recv() {
            pending.extend(drain_batch(next, &mut rx));
        }
        let mut changes = Vec::new();
        for message in pending {
            let event = match message {
                Message::Observed(observation) => {
                    changes.push(observation);
                    continue;
                }
                Message::App(event) => event,
                Message::ResyncDue => {
                    jobs.scans.request();
                    continue;
                }
                Message::Terminate => return Ok(()),
            };
            if !changes.is_empty()
                && jobs.run(app.update(Event::Observed(std::mem::take(&mut changes))))
            {
                return Ok(());
            }
            if let Event::Scanned(_) = &event {
                jobs.scans.finished();
                jobs.load_drills();
            }
            if jobs.run(app.update(event)) {
                return Ok(());
            }
        }
        if !changes.is_empty() && jobs.run(app.update(Event::Observed(changes))) {
            return Ok(());
        }
    }
    drop(watcher);
    Ok(())
}

/// Messages handled between two frames at most: an event storm cannot starve drawing.
/// 2,000 keeps a backlog frame near 15 ms here (benches/README.md: 20,000 took 88-149 ms).
pub const MAX_BATCH: usize = 2_000;

/// Coalesces one frame's worth of messages: `first`, then whatever is already
/// queued (bounded by `MAX_BATCH`, so input stays responsive). The loop handles
/// them and draws once; public so `benches/live.rs` measures this very step.
pub fn drain_batch<T>(first: T, rx: &mut mpsc::UnboundedReceiver<T>) -> Vec<T> {
    let mut pending = vec![first];
    while pending.len() < MAX_BATCH {
        match rx.try_recv() {
            Ok(more) => pending.push(more),
            Err(_) => break,
        }
    }
    pending
}

/// Runs the app's side effects in the background; results come back as events.
struct Jobs {
    scans: ScanJobs,
    root: PathBuf,
    cache: Option<PathBuf>,
    tx: mpsc::UnboundedSender<Message>,
    /// Where the engineer's answers go while a restore waits for one.
    restore_answers: Option<std::sync::mpsc::Sender<bool>>,
}

impl Jobs {
    fn new(root: PathBuf, cache: Option<PathBuf>, tx: mpsc::UnboundedSender<Message>) -> Jobs {
        Jobs {
            scans: ScanJobs::new(root.clone(), cache.clone(), tx.clone()),
            root,
            cache,
            tx,
            restore_answers: None,
        }
    }

    /// Reads the drill history (written by `walwarden drill`) in the background.
    fn load_drills(&self) {
        let tx = self.tx.clone();
        tokio::task::spawn_blocking(move || {
            let history = crate::ops::drill::default_history_path()
                .map(|p| crate::ops::drill::load_history(&p))
                .unwrap_or_default();
            let _ = tx.send(Message::App(Event::Drills(history)));
        });
    }

    /// Starts each command; true when one of them is Quit.
    fn run(&mut self, commands: Vec<Command>) -> bool {
        for command in commands {
            let tx = self.tx.clone();
            let send = move |event: Event| {
                let _ = tx.send(Message::App(event));
            };
            match command {
                Command::Quit => return true,
                Command::AnswerRestore(yes) => {
                    if let Some(answers) = &self.restore_answers {
                        let _ = answers.send(yes);
                    }
                }
                Command::StartRestore { client, request } => {
                    let (answer_tx, answers) = std::sync::mpsc::channel();
                    self.restore_answers = Some(answer_tx);
                    let root = self.root.clone();
                    let events = self.tx.clone();
                    tokio::task::spawn_blocking(move || {
                        let send = |event: RestoreEvent| {
                            let _ = events.send(Message::App(Event::Restore(event)));
                        };
                        let result = catalog::scan_client(&root, &client, &ScanOptions::default())
                            .map_err(|e| e.to_string())
                            .and_then(|client| {
                                let mut driver = WizardDriver {
                                    send: &send,
                                    answers,
                                };
                                steps::run(&client, &request, &mut driver)
                                    .map(Box::new)
                                    .map_err(|e| e.to_string())
                            });
                        send(RestoreEvent::Finished(result));
                    });
                }
                Command::ReadTarget { client, target } => {
                    tokio::task::spawn_blocking(move || {
                        let view = crate::pg::target::view(&target);
                        send(Event::TargetRead { client, view });
                    });
                }
                Command::DeepCheck(name) => {
                    let root = self.root.clone();
                    tokio::task::spawn_blocking(move || {
                        let result = deep_check(&root, &name, &send);
                        send(Event::DeepChecked {
                            client: name,
                            result,
                        });
                    });
                }
                Command::Drill(name) => {
                    let root = self.root.clone();
                    tokio::task::spawn_blocking(move || {
                        let record = run_drill(&root, &name, &send);
                        send(Event::DrillFinished(Box::new(record)));
                    });
                }
                Command::PlanSetup(text) => {
                    let root = self.root.clone();
                    tokio::task::spawn_blocking(move || {
                        send(Event::SetupPlanned(plan_setup(&root, &text)));
                    });
                }
                Command::ApplySetup(text, actions) => {
                    let root = self.root.clone();
                    tokio::task::spawn_blocking(move || {
                        let (ok, lines) = apply_setup(&root, &text, &actions);
                        send(Event::SetupApplied { ok, lines });
                    });
                }
                Command::Rescan => self.scans.request(),
                Command::RescanClient(name) => {
                    let root = self.root.clone();
                    let options = ScanOptions {
                        cache: self.cache.clone(),
                        ..ScanOptions::default()
                    };
                    tokio::task::spawn_blocking(move || {
                        let result = catalog::scan_client(&root, &name, &options)
                            .map(Box::new)
                            .map_err(|e| e.to_string());
                        let quick = result
                            .as_ref()
                            .ok()
                            .map(|client| vec![QuickInput::owned(client)]);
                        send(Event::ClientScanned { name, result });
                        if let Some(inputs) = quick {
                            send(Event::QuickChecked(quick_check(&inputs)));
                        }
                    });
                }
                Command::CheckBase(base_dir) => {
                    tokio::task::spawn_blocking(move || {
                        let check = check_base_backup(&base_dir, &mut |p| {
                            send.clone()(Event::BaseCheckProgress(p))
                        });
                        send(Event::BaseChecked(check));
                    });
                }
                Command::CheckSegment { path, seen_at } => {
                    tokio::task::spawn_blocking(move || {
                        send(Event::SegmentChecked {
                            seen_at,
                            check: check_segment(&path),
                        });
                    });
                }
            }
        }
        false
    }
}

/// Each client's proof from the deep cache; nothing when no deep check ever ran.
fn deep_from_memory(catalog: &Catalog) -> Vec<(String, crate::checks::deep::DeepReport)> {
    let cache =
        crate::checks::deep::DeepCache::load(crate::checks::deep::default_cache_path().as_deref());
    if cache.is_empty() {
        return Vec::new();
    }
    catalog
        .clients
        .iter()
        .filter_map(|c| {
            Some((
                c.name.clone(),
                crate::checks::deep::proven_from_memory(c, &cache)?,
            ))
        })
        .collect()
}

/// The quick check of the scanned clients' segments, remembered in the
/// shared quick cache (what `check` uses too).
fn quick_check(inputs: &[QuickInput<'_>]) -> Vec<(String, Vec<crate::checks::health::Problem>)> {
    let mut cache = QuickCache::load(crate::checks::quick::default_cache_path().as_deref());
    let results = inputs
        .iter()
        .map(|input| (input.name.clone(), cache.check(input)))
        .collect();
    // Failing to remember costs only a re-read next time.
    let _ = cache.save();
    results
}

/// Single-flight scans: a request while one runs is remembered and runs
/// once the current one ends, however many requests came in between.
struct ScanJobs {
    root: PathBuf,
    cache: Option<PathBuf>,
    tx: mpsc::UnboundedSender<Message>,
    running: bool,
    again: bool,
    first_done: bool,
}

impl ScanJobs {
    fn new(root: PathBuf, cache: Option<PathBuf>, tx: mpsc::UnboundedSender<Message>) -> ScanJobs {
        ScanJobs {
            root,
            cache,
            tx,
            running: false,
            again: false,
            first_done: false,
        }
    }

    fn request(&mut self) {
        if self.running {
            self.again = true;
            return;
        }
        self.running = true;
        // The first scan skips full decompressions so the dashboard fills at once.
        let options = ScanOptions {
            cache: self.cache.clone(),
            compute_full_facts: self.first_done,
            only: Vec::new(),
        };
        let root = self.root.clone();
        let tx = self.tx.clone();
        tokio::task::spawn_blocking(move || {
            let result = catalog::scan(&root, &options).map_err(|e| e.to_string());
            // How far earlier deep checks (here or `check --deep` from cron)
            // proved each client: cache lookups only, no file opened.
            let proven = result
                .as_ref()
                .map_or_else(|_| Vec::new(), deep_from_memory);
            // Copied out so the dashboard gets the catalog at once; the quick
            // check follows (the first one of a big archive takes minutes).
            let quick: Vec<_> = result
                .as_ref()
                .map(|c| c.clients.iter().map(QuickInput::owned).collect())
                .unwrap_or_default();
            let _ = tx.send(Message::App(Event::Scanned(result)));
            if !proven.is_empty() {
                let _ = tx.send(Message::App(Event::DeepRemembered(proven)));
            }
            if !quick.is_empty() {
                let _ = tx.send(Message::App(Event::QuickChecked(quick_check(&quick))));
            }
        });
    }

    fn finished(&mut self) {
        self.running = false;
        let first = !self.first_done;
        self.first_done = true;
        if self.again || first {
            self.again = false;
            self.request();
        }
    }
}

fn spawn_input(tx: mpsc::UnboundedSender<Message>) {
    tokio::spawn(async move {
        let mut events = EventStream::new();
        while let Some(Ok(event)) = events.next().await {
            let message = match event {
                TermEvent::Key(key) if key.kind != KeyEventKind::Release => {
                    Message::App(Event::Key(key))
                }
                TermEvent::Resize(..) => Message::App(Event::Resize),
                _ => continue,
            };
            if tx.send(message).is_err() {
                break;
            }
        }
    });
}

fn spawn_timer(tx: mpsc::UnboundedSender<Message>, every: Duration, make: fn() -> Message) {
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(every);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        interval.tick().await;
        loop {
            interval.tick().await;
            if tx.send(make()).is_err() {
                break;
            }
        }
    });
}

fn spawn_terminate_signal(tx: mpsc::UnboundedSender<Message>) {
    tokio::spawn(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut term), Ok(mut hup)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::hangup()),
        ) else {
            return;
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = hup.recv() => {}
        }
        let _ = tx.send(Message::Terminate);
    });
}

/// The engine's face in the TUI: reports become events; a question waits
/// for the engineer's answer from the wizard screen.
struct WizardDriver<'a> {
    send: &'a dyn Fn(RestoreEvent),
    answers: std::sync::mpsc::Receiver<bool>,
}

impl Driver for WizardDriver<'_> {
    fn confirm(&mut self, question: &str) -> bool {
        (self.send)(RestoreEvent::Ask(question.to_owned()));
        // A closed screen (the app quit) is a no: nothing destructive without an answer.
        self.answers.recv().unwrap_or(false)
    }

    fn confirm_typed(&mut self, _prompt: &str, _expected: &str) -> bool {
        // The wizard never purges; moving aside is its only way to clear.
        false
    }

    fn step(&mut self, step: StepKind, outcome: Outcome, detail: &str) {
        (self.send)(RestoreEvent::Step(step, outcome, detail.to_owned()));
    }

    fn command(&mut self, text: &str) {
        (self.send)(RestoreEvent::Command(text.to_owned()));
    }

    fn progress(&mut self, step: StepKind, text: &str) {
        (self.send)(RestoreEvent::Progress(step, text.to_owned()));
    }

    fn gauge(&mut self, step: StepKind, ratio: f64, label: &str) {
        (self.send)(RestoreEvent::Gauge(step, ratio, label.to_owned()));
    }
}

/// The new-client screen's plan: what `walwarden setup --dry-run` would show.
fn plan_setup(
    root: &std::path::Path,
    text: &onboarding::SetupText,
) -> Result<onboarding::Planned, String> {
    use crate::ops::setup::{self, ArchiveRoute, PublicKey};
    let mut request = setup_request(root, text)?;
    let key_file = text.key_file.trim();
    if !key_file.is_empty() {
        let content = std::fs::read_to_string(key_file)
            .map_err(|e| format!("cannot read the public key {key_file}: {e}"))?;
        request.public_key = Some(PublicKey::parse(&content, key_file).map_err(|e| e.to_string())?);
    }
    let actions = setup::plan(&request).map_err(|e| e.to_string())?;
    let euid = nix::unistd::geteuid().as_raw();
    let needs_root = actions
        .iter()
        .filter(|a| a.needs_root(euid))
        .map(|a| a.to_string())
        .collect();
    let host = Some(text.backup_host.trim())
        .filter(|h| !h.is_empty())
        .map_or_else(setup::this_host, str::to_owned);
    let route = ArchiveRoute::for_request(&request, &host);
    Ok(onboarding::Planned {
        actions,
        needs_root,
        instructions: route.target_instructions(&request.client, "/tmp/backups"),
        warning: setup::existing_archive_warning(&request),
    })
}

/// The form's request: the client, and the user's home when one is typed.
fn setup_request(
    root: &std::path::Path,
    text: &onboarding::SetupText,
) -> Result<crate::ops::setup::SetupRequest, String> {
    let mut request = crate::ops::setup::SetupRequest::new(root, text.client.trim())
        .map_err(|e| e.to_string())?;
    let home = text.home.trim();
    if !home.is_empty() {
        if !home.starts_with('/') {
            return Err(format!("the home {home:?} must be an absolute path"));
        }
        request.home = PathBuf::from(home);
    }
    Ok(request)
}

/// Runs the reviewed plan, then the copy test as the client's user.
fn apply_setup(
    root: &std::path::Path,
    text: &onboarding::SetupText,
    actions: &[crate::ops::setup::Action],
) -> (bool, Vec<String>) {
    use crate::ops::setup;
    let mut lines = Vec::new();
    for action in actions {
        match setup::apply(action) {
            Ok(()) => lines.push(format!("done: {action}")),
            Err(error) => {
                lines.push(format!("FAILED: {action}: {error}"));
                return (false, lines);
            }
        }
    }
    let request = match setup_request(root, text) {
        Ok(request) => request,
        Err(error) => return (false, vec![error]),
    };
    for dir in [request.base_dir(), request.wal_dir()] {
        match setup::copy_test(&request.user, &dir) {
            Ok(_) => lines.push(format!(
                "ok: the copy test as {} wrote, read back and removed a file in {}",
                request.user,
                dir.display()
            )),
            Err(error) => {
                lines.push(format!("FAILED: {error}"));
                return (false, lines);
            }
        }
    }
    (true, lines)
}

/// A deep check of one client, as `check --deep` does it, progress sent as it goes.
fn deep_check(
    root: &std::path::Path,
    name: &str,
    send: &(dyn Fn(Event) + Send + Sync),
) -> Result<Box<crate::checks::deep::DeepReport>, String> {
    let options = ScanOptions {
        cache: crate::archive::base_cache::default_cache_path(),
        ..ScanOptions::default()
    };
    let client = catalog::scan_client(root, name, &options).map_err(|e| e.to_string())?;
    let mut cache =
        crate::checks::deep::DeepCache::load(crate::checks::deep::default_cache_path().as_deref());
    let mut last_sent = std::time::Instant::now();
    let report = crate::checks::deep::verify_client(
        &client,
        &mut cache,
        SystemTime::now(),
        &mut |done, total| {
            // A few updates a second are enough for a gauge.
            if done == total || last_sent.elapsed() >= std::time::Duration::from_millis(200) {
                last_sent = std::time::Instant::now();
                send(Event::DeepProgress {
                    client: name.to_owned(),
                    done,
                    total,
                });
            }
        },
    );
    cache
        .save()
        .map_err(|e| format!("checked, but cannot remember the results: {e}"))?;
    Ok(Box::new(report))
}

/// The drill engine's reports as lines on the detail screen; a drill only
/// writes in its scratch folder, so it confirms its own steps.
struct DrillLines<'a> {
    client: String,
    send: &'a (dyn Fn(Event) + Send + Sync),
}

impl DrillLines<'_> {
    fn say(&self, line: String) {
        (self.send)(Event::DrillLine {
            client: self.client.clone(),
            line,
        });
    }
}

impl crate::ops::restore::steps::Driver for DrillLines<'_> {
    fn confirm(&mut self, _question: &str) -> bool {
        true
    }
    fn confirm_typed(&mut self, _prompt: &str, _expected: &str) -> bool {
        false
    }
    fn step(
        &mut self,
        step: crate::ops::restore::steps::StepKind,
        outcome: crate::ops::restore::journal::Outcome,
        detail: &str,
    ) {
        self.say(format!("{} — {outcome:?}: {detail}", step.title()));
    }
    fn command(&mut self, text: &str) {
        self.say(format!("$ {text}"));
    }
    fn progress(&mut self, _step: crate::ops::restore::steps::StepKind, text: &str) {
        self.say(text.to_owned());
    }
}

/// A restore drill with `walwarden drill`'s defaults, recorded in the history.
fn run_drill(
    root: &std::path::Path,
    name: &str,
    send: &(dyn Fn(Event) + Send + Sync),
) -> crate::ops::drill::DrillRecord {
    let mut driver = DrillLines {
        client: name.to_owned(),
        send,
    };
    let mut record = match catalog::scan_client(root, name, &ScanOptions::default()) {
        Ok(client) => crate::ops::drill::drill(
            &client,
            std::path::Path::new("/var/tmp"),
            "postgres",
            None,
            &mut driver,
        ),
        Err(error) => {
            crate::ops::drill::DrillRecord::failed(name, format!("cannot read the client: {error}"))
        }
    };
    if let Some(path) = crate::ops::drill::default_history_path()
        && let Err(error) = crate::ops::drill::append_history(&path, &record)
    {
        record
            .detail
            .push_str(&format!(" (not recorded in {}: {error})", path.display()));
    }
    record
}
