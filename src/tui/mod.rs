//! The dashboard: a thin face on the catalog. `app` holds the state and its
//! update function, `keymap` the key table, `view` the drawing; this module
//! runs the loop that feeds them events (keys, clock ticks, scan results)
//! and runs their side effects (scans in the background, one at a time).

pub mod app;
pub mod keymap;
pub mod view;

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use color_eyre::eyre::{Result, WrapErr};
use crossterm::event::{Event as TermEvent, EventStream, KeyEventKind};
use futures::StreamExt;
use ratatui::DefaultTerminal;
use tokio::sync::mpsc;

use crate::catalog::{self, ScanOptions};
use crate::config::Config;
use app::{App, Command, Event};

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
            resync_every: Duration::from_secs(60),
            tick_every: Duration::from_secs(1),
            cache: crate::cache::default_cache_path(),
        }
    }
}

impl Options {
    /// The demo's live client delivers every few seconds: re-read often.
    pub fn demo() -> Options {
        Options {
            resync_every: Duration::from_secs(2),
            ..Options::default()
        }
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
    spawn_input(tx.clone());
    spawn_timer(tx.clone(), options.tick_every, || {
        Message::App(Event::Tick(SystemTime::now()))
    });
    spawn_timer(tx.clone(), options.resync_every, || Message::ResyncDue);
    spawn_terminate_signal(tx.clone());

    let mut app = App::new(root.clone(), config, SystemTime::now());
    app.color = std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let mut scans = ScanJobs::new(root, options.cache.clone(), tx.clone());
    scans.request();
    loop {
        terminal.draw(|frame| view::draw(frame, &mut app))?;
        let Some(first) = rx.recv().await else { break };
        // Coalesce: handle everything already queued, then draw once.
        let mut pending = vec![first];
        while let Ok(more) = rx.try_recv() {
            pending.push(more);
        }
        for message in pending {
            let commands = match message {
                Message::App(event) => {
                    if let Event::Scanned(_) = &event {
                        scans.finished();
                    }
                    app.update(event)
                }
                Message::ResyncDue => vec![Command::Rescan],
                Message::Terminate => vec![Command::Quit],
            };
            for command in commands {
                match command {
                    Command::Rescan => scans.request(),
                    Command::Quit => return Ok(()),
                }
            }
        }
    }
    Ok(())
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
            let _ = tx.send(Message::App(Event::Scanned(result)));
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
