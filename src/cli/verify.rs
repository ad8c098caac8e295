//! `walwarden verify CLIENT`: the verification window without a terminal
//! UI. Progress goes to stderr as it happens; the report (text to paste into
//! a ticket, or `--json`) goes to stdout at the end. Exit 0 PASS, 1 FAIL.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use clap::Args;
use color_eyre::eyre::{Result, WrapErr};
use tokio::sync::mpsc;

use crate::archive::catalog::{self, ScanOptions};
use crate::archive::watch::{RootWatcher, WalChange, WatchMode};
use crate::checks::integrity::{
    BaseCheck, Progress, SegmentCheck, check_base_backup, check_segment,
};
use crate::checks::verify::{Verification, VerifySettings};
use crate::display::short_duration;

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The client folder under the root
    pub client: String,
    /// How long to watch for new segments
    #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
    pub window: Duration,
    /// The archive_timeout set on the target server for the check
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub expect_interval: Duration,
    /// Tolerance on top of the expected interval
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub slack: Duration,
    /// New segments needed to pass
    #[arg(long, default_value_t = 3)]
    pub min_segments: usize,
    /// Print the report as JSON
    #[arg(long)]
    pub json: bool,
    /// With a target server in the config: after the window, how long to wait
    /// (re-reading it every 10 s) for archive_timeout to go back to production
    #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
    pub target_wait: Duration,
}

enum Message {
    Change(WalChange),
    Rescanned(Box<crate::archive::catalog::Client>),
    BaseProgress(Progress),
    BaseDone(BaseCheck),
    SegmentDone(SystemTime, SegmentCheck),
    TargetAtStart(crate::pg::target::TargetView),
}

pub fn run(args: &VerifyArgs, root: &Path, config: &crate::config::Config) -> Result<i32> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .wrap_err("cannot start the event loop")?;
    runtime.block_on(verify(args, root, config.target_for(&args.client)))
}

async fn verify(
    args: &VerifyArgs,
    root: &Path,
    target: Option<&crate::config::TargetServer>,
) -> Result<i32> {
    let settings = VerifySettings {
        window: args.window,
        expect_interval: args.expect_interval,
        slack: args.slack,
        min_segments: args.min_segments,
    };
    let (tx, mut rx) = mpsc::unbounded_channel::<Message>();
    // Watch before the scan: a segment landing in between is then seen by one of them.
    let watch_tx = tx.clone();
    let watcher = RootWatcher::start(root, move |change| {
        let _ = watch_tx.send(Message::Change(change));
    })
    .wrap_err("cannot watch the backup root")?;
    if let WatchMode::Polling { reason } = &watcher.mode {
        eprintln!(
            "note: native file events unavailable ({reason}); polling, arrival times are approximate"
        );
    }
    let options = ScanOptions {
        cache: crate::archive::base_cache::default_cache_path(),
        ..ScanOptions::default()
    };
    let client =
        catalog::scan_client(root, &args.client, &options).map_err(super::catalog_failure)?;
    let mut verification = Verification::new(&client, settings, SystemTime::now());
    verification.target_expected = target.is_some();
    let wal_dir: PathBuf = client.wal_dir();
    say(
        args,
        &format!(
            "verifying {} for {} (expect a segment every {} + {} slack, at least {}); Ctrl-C ends early",
            client.name,
            short_duration(settings.window),
            short_duration(settings.expect_interval),
            short_duration(settings.slack),
            settings.min_segments
        ),
    );

    let base_dir = client.base_dir();
    let base_tx = tx.clone();
    tokio::task::spawn_blocking(move || {
        let progress_tx = base_tx.clone();
        let check = check_base_backup(&base_dir, &mut |p| {
            let _ = progress_tx.send(Message::BaseProgress(p));
        });
        let _ = base_tx.send(Message::BaseDone(check));
    });

    if let Some(target) = target.cloned() {
        let target_tx = tx.clone();
        tokio::task::spawn_blocking(move || {
            let _ = target_tx.send(Message::TargetAtStart(crate::pg::target::view(&target)));
        });
    }

    // The window's report waits for this read too (bounded by connect_timeout).
    let mut pending_target_read = target.is_some();
    let mut pending_segments = 0usize;
    let mut last_quarter_said = std::collections::HashMap::new();
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        let now = SystemTime::now();
        if verification.is_over(now)
            && verification.base.is_some()
            && pending_segments == 0
            && !pending_target_read
        {
            break;
        }
        tokio::select! {
            _ = &mut ctrl_c => {
                verification.end_early(SystemTime::now());
                say(args, "ended early by Ctrl-C");
                break;
            }
            _ = ticker.tick() => {
                let remaining = verification.remaining(SystemTime::now()).as_secs();
                if remaining > 0 && remaining.is_multiple_of(30) {
                    say(args, &format!("{} left, {} new segments so far", short_duration(Duration::from_secs(remaining)), verification.arrivals.len()));
                }
            }
            Some(message) = rx.recv() => match message {
                Message::Change(WalChange::Arrived { client, name, seen_at }) if client == verification.client && verification.wants(&name) && !verification.is_over(seen_at) => {
                    pending_segments += 1;
                    let path = wal_dir.join(&name);
                    let segment_tx = tx.clone();
                    tokio::task::spawn_blocking(move || {
                        let _ = segment_tx.send(Message::SegmentDone(seen_at, check_segment(&path)));
                    });
                }
                // Events were lost (or the folder changed wholesale): re-read it, and
                // check every new segment the events did not announce, timed by its mtime.
                Message::Change(WalChange::Resync { client, reason }) if client.as_deref().is_none_or(|c| c == verification.client) => {
                    say(args, &format!("re-reading {}: {reason}", verification.client));
                    let rescan_tx = tx.clone();
                    let (root, name) = (root.to_owned(), verification.client.clone());
                    tokio::task::spawn_blocking(move || {
                        if let Ok(client) = catalog::scan_client(&root, &name, &ScanOptions::default()) {
                            let _ = rescan_tx.send(Message::Rescanned(Box::new(client)));
                        }
                    });
                }
                Message::Change(_) => {}
                Message::Rescanned(client) => {
                    for (path, seen_at) in verification.missed_segments(&client) {
                        pending_segments += 1;
                        let segment_tx = tx.clone();
                        tokio::task::spawn_blocking(move || {
                            let _ = segment_tx.send(Message::SegmentDone(seen_at, check_segment(&path)));
                        });
                    }
                }
                Message::TargetAtStart(view) => {
                    pending_target_read = false;
                    verification.target_read_at_start(&view);
                    if let Some(warning) = &verification.target_warning {
                        say(args, &format!("WARNING, target: {warning}"));
                    }
                }
                Message::BaseProgress(progress) => {
                    let quarter = progress.done * 4 / progress.total.max(1);
                    if last_quarter_said.get(progress.file).is_none_or(|said| quarter > *said) {
                        last_quarter_said.insert(progress.file, quarter);
                        say(args, &format!("reading {}: {}%", progress.file, quarter * 25));
                    }
                    verification.base_progress = Some(progress);
                }
                Message::BaseDone(check) => {
                    let verdict = if check.failures.is_empty() { "ok".to_owned() } else { check.failures.join("; ") };
                    say(args, &format!("base backup: {verdict}"));
                    verification.base_checked(check);
                }
                Message::SegmentDone(at, check) => {
                    pending_segments -= 1;
                    let name = check.name.clone();
                    verification.segment_checked(at, check);
                    if let Some(arrival) = verification.arrivals.iter().find(|a| a.name == name) {
                        let interval = arrival.interval.map_or(String::new(), |i| format!(" +{}", short_duration(i)));
                        let verdict = arrival.failure.as_deref().unwrap_or("ok");
                        say(args, &format!("arrived {name}{interval}: {verdict}"));
                    }
                }
            },
        }
    }
    drop(watcher);
    if let Some(target) = target {
        await_target(args, target, &mut verification).await;
    }
    let report = verification.report(SystemTime::now());
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", crate::display::escape_text(&report.to_text()));
    }
    Ok(if report.passed { 0 } else { 1 })
}

/// After the window: reads the target until archive_timeout is back to
/// production (or `--target-wait` passes, or Ctrl-C), saying what it sees.
async fn await_target(
    args: &VerifyArgs,
    target: &crate::config::TargetServer,
    verification: &mut Verification,
) {
    say(
        args,
        &format!(
            "window over: set archive_timeout back to production on {} and reload; reading it every 10 s for up to {} (Ctrl-C stops waiting)",
            target.address(),
            short_duration(args.target_wait)
        ),
    );
    let deadline = tokio::time::Instant::now() + args.target_wait;
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        let server = target.clone();
        let read = tokio::task::spawn_blocking(move || crate::pg::target::view(&server));
        let view = tokio::select! {
            _ = &mut ctrl_c => break,
            view = read => match view {
                Ok(view) => view,
                Err(_) => break,
            },
        };
        verification.target_read(SystemTime::now(), view);
        if let Some(item) = verification.items(SystemTime::now()).last() {
            say(args, &format!("target: {}", item.detail));
        }
        if verification.target_settled() || tokio::time::Instant::now() >= deadline {
            break;
        }
        tokio::select! {
            _ = &mut ctrl_c => break,
            _ = tokio::time::sleep(Duration::from_secs(10)) => {}
        }
    }
}

fn say(args: &VerifyArgs, line: &str) {
    if !args.json {
        eprintln!("{}", crate::display::escape_text(line));
    }
}
