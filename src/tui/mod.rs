//! The dashboard: a thin face on the core. `app` holds the state and its
//! pure update function, `keymap` the key table, `view` the drawing, `jobs`
//! the background work (core functions on tokio's blocking pool). This
//! module runs the loop that feeds them: keys and mouse clicks, clock ticks,
//! file events already observed off this thread, job results, the screen's
//! size; and it owns the terminal, handed back as it was on every way out.

pub mod app;
mod jobs;
pub mod keymap;
pub mod onboarding;
pub mod view;
pub mod wizard;

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use color_eyre::eyre::{Result, WrapErr};
use crossterm::event::{Event as TermEvent, EventStream, KeyEventKind, MouseEventKind};
use futures::StreamExt;
use ratatui::DefaultTerminal;
use tokio::sync::mpsc;

use crate::archive::catalog::{self, Observation};
use crate::archive::watch::RootWatcher;
use crate::config::Config;
use app::{App, Event};
use jobs::{JobKey, Jobs};

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

/// Opens the dashboard on `root` until the user quits. The terminal is
/// restored on every way out: return, error, a signal (SIGTERM, SIGHUP end
/// the loop), and a panic of the UI thread (our hook, in place of ratatui's:
/// mouse reports off, raw mode and the alternate screen left).
pub fn run(root: PathBuf, config: Config, options: Options) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .wrap_err("cannot start the event loop")?;
    let report_hook = std::panic::take_hook();
    let mut terminal = ratatui::init();
    // ratatui's hook restores the terminal on any thread's panic; a
    // background job's panic is caught and reported in a popup while the
    // dashboard goes on, so only a panic on this (the UI) thread hands the
    // terminal back, mouse reports included, before the report prints.
    drop(std::panic::take_hook());
    let ui_thread = std::thread::current().id();
    std::panic::set_hook(Box::new(move |info| {
        if std::thread::current().id() == ui_thread {
            mouse_off();
            ratatui::restore();
        }
        report_hook(info);
    }));
    // Without mouse reports the dashboard still works: keys do everything.
    let _ = crossterm::execute!(std::io::stdout(), ClicksAndWheel);
    let result = runtime.block_on(event_loop(&mut terminal, root, config, options));
    // The whole terminal back at once (the mouse and the cursor too) before
    // waiting for background jobs to wind down, so the shell never sees a
    // hidden cursor or mouse reports typed at its prompt.
    mouse_off();
    let _ = terminal.show_cursor();
    drop(terminal);
    ratatui::restore();
    runtime.shutdown_timeout(Duration::from_millis(200));
    result
}

/// Turns every mouse report mode off (crossterm's DisableMouseCapture
/// resets all of them, whichever were on).
fn mouse_off() {
    let _ = crossterm::execute!(std::io::stdout(), crossterm::event::DisableMouseCapture);
}

/// Mouse reports for clicks and the wheel only (xterm's 1000 in SGR form,
/// 1006): not crossterm's EnableMouseCapture, whose any-motion mode would
/// send an event for every cell the pointer crosses.
struct ClicksAndWheel;

impl crossterm::Command for ClicksAndWheel {
    fn write_ansi(&self, f: &mut impl std::fmt::Write) -> std::fmt::Result {
        f.write_str("\x1b[?1000h\x1b[?1006h")
    }
}

/// Internal messages: the app's events plus the loop's own.
enum Message {
    App(Event),
    /// A file event, already resolved into facts by the observer thread.
    Observed(Observation),
    /// A background job has delivered: another of its kind may start.
    JobDone(JobKey),
    /// The terminal changed size: measure and draw again.
    Resized,
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
    jobs.run(vec![app::Command::Rescan]);
    loop {
        let viewport = view::measure(&app, terminal.size()?);
        if viewport != app.viewport {
            app.update(Event::Viewport(viewport));
        }
        terminal.draw(|frame| view::draw(frame, &app))?;
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
        let mut observed = Vec::new();
        for message in pending {
            let event = match message {
                Message::Observed(observation) => {
                    observed.push(observation);
                    continue;
                }
                Message::App(event) => event,
                Message::JobDone(key) => {
                    jobs.finished(key);
                    continue;
                }
                Message::Resized => continue,
                Message::ResyncDue => {
                    jobs.run(vec![app::Command::Rescan]);
                    continue;
                }
                Message::Terminate => return Ok(()),
            };
            // File events keep their order with the events around them.
            if !observed.is_empty()
                && jobs.run(app.update(Event::Observed(std::mem::take(&mut observed))))
            {
                return Ok(());
            }
            if jobs.run(app.update(event)) {
                return Ok(());
            }
        }
        if !observed.is_empty() && jobs.run(app.update(Event::Observed(observed))) {
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

fn spawn_input(tx: mpsc::UnboundedSender<Message>) {
    tokio::spawn(async move {
        let mut events = EventStream::new();
        while let Some(Ok(event)) = events.next().await {
            let message = match event {
                TermEvent::Key(key) if key.kind != KeyEventKind::Release => {
                    Message::App(Event::Key(key))
                }
                // Presses and the wheel; releases and drags mean nothing here.
                TermEvent::Mouse(mouse)
                    if matches!(
                        mouse.kind,
                        MouseEventKind::Down(_)
                            | MouseEventKind::ScrollDown
                            | MouseEventKind::ScrollUp
                    ) =>
                {
                    Message::App(Event::Mouse {
                        event: mouse,
                        at: SystemTime::now(),
                    })
                }
                TermEvent::Resize(..) => Message::Resized,
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
