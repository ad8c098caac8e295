//! Watching the backup root with notify: file-system events turned into
//! catalog changes, and the arrival cadence of each client.
//!
//! File events are hints, not truth: an arrival is a finished file (a `.part`
//! renamed to its final name, or a final name whose writer closed it), a
//! lost event (inotify overflow) asks for a resync, and when the native
//! watcher cannot start the poll watcher takes over and `WatchMode` says so.
//! The watcher never reads or writes files, nor follows links; it only
//! names what changed.

use std::collections::VecDeque;
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, SystemTime};

use notify::event::{AccessKind, AccessMode, CreateKind, ModifyKind, RemoveKind, RenameMode};
use notify::{EventKind, RecursiveMode, Watcher};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum WatchError {
    #[error("cannot watch {path}: {source}")]
    Watch {
        path: PathBuf,
        source: notify::Error,
    },
}

/// What changed under the root, in the catalog's terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WalChange {
    /// A finished file is in `wal/` (segment, `.backup`, `.history` or anything else).
    Arrived {
        client: String,
        name: String,
        seen_at: SystemTime,
    },
    /// A `.part` file appeared: a transfer in flight.
    InFlight {
        client: String,
        name: String,
        seen_at: SystemTime,
    },
    /// A file left `wal/`.
    Removed { client: String, name: String },
    /// Something changed in the client folder outside `wal/` (a new base backup, a new folder).
    ClientChanged { client: String },
    /// Events were lost: re-read this client, or every client when `None`.
    Resync {
        client: Option<String>,
        reason: String,
    },
}

/// How trustworthy the event stream is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchMode {
    /// inotify (or the platform's native API): events as they happen.
    Native,
    /// The native watcher could not start; polling every few seconds instead.
    Polling { reason: String },
}

pub struct RootWatcher {
    _watcher: Box<dyn Watcher + Send>,
    pub mode: WatchMode,
}

/// How often the fallback poll watcher re-reads the tree.
pub const POLL_INTERVAL: Duration = Duration::from_secs(5);

impl RootWatcher {
    /// Watches `root` recursively (clients appear without a restart) and calls
    /// `sink` on notify's thread for every change. `sink` must be cheap: send it on.
    pub fn start(
        root: &Path,
        sink: impl Fn(WalChange) + Send + Sync + 'static,
    ) -> Result<RootWatcher, WatchError> {
        let sink = std::sync::Arc::new(sink);
        let root_owned = root.to_owned();
        let native_sink = sink.clone();
        let handler = move |result: notify::Result<notify::Event>| {
            for change in translate(&root_owned, result, SystemTime::now()) {
                native_sink(change);
            }
        };
        let watch_error = |source| WatchError::Watch {
            path: root.to_owned(),
            source,
        };
        // Links are never followed: a client's `ln -s / wal/x` would have
        // the watcher walk (and watch) the whole file system.
        let config = notify::Config::default().with_follow_symlinks(false);
        match notify::RecommendedWatcher::new(handler, config)
            .and_then(|mut w| w.watch(root, RecursiveMode::Recursive).map(|_| w))
        {
            Ok(watcher) => Ok(RootWatcher {
                _watcher: Box::new(watcher),
                mode: WatchMode::Native,
            }),
            Err(native_error) => {
                tracing::warn!(%native_error, "native file watching unavailable; polling");
                let root_owned = root.to_owned();
                let handler = move |result: notify::Result<notify::Event>| {
                    for change in translate(&root_owned, result, SystemTime::now()) {
                        sink(change);
                    }
                };
                let config = notify::Config::default()
                    .with_poll_interval(POLL_INTERVAL)
                    .with_follow_symlinks(false);
                let mut watcher = notify::PollWatcher::new(handler, config).map_err(watch_error)?;
                watcher
                    .watch(root, RecursiveMode::Recursive)
                    .map_err(watch_error)?;
                Ok(RootWatcher {
                    _watcher: Box::new(watcher),
                    mode: WatchMode::Polling {
                        reason: native_error.to_string(),
                    },
                })
            }
        }
    }
}

/// Where under the root a path lies; names escaped as the catalog keeps
/// them (`display::escape_name`), so no name is left out or mistaken.
enum Place {
    ClientFolder(String),
    WalFile(String, String),
    OtherInClient(String),
    Elsewhere,
}

fn place(root: &Path, path: &Path) -> Place {
    let Ok(relative) = path.strip_prefix(root) else {
        return Place::Elsewhere;
    };
    let parts: Vec<&std::ffi::OsStr> = relative
        .components()
        .map(|c| match c {
            Component::Normal(p) => Some(p),
            _ => None,
        })
        .collect::<Option<Vec<_>>>()
        .unwrap_or_default();
    let hidden = |name: &std::ffi::OsStr| name.as_encoded_bytes().first() == Some(&b'.');
    let name = |part: &std::ffi::OsStr| crate::display::escape_name(part);
    match parts.as_slice() {
        [client] if !hidden(client) => Place::ClientFolder(name(client)),
        [client, wal, file] if !hidden(client) && *wal == "wal" => {
            Place::WalFile(name(client), name(file))
        }
        // The receiver's own folder: only its log says something new (a
        // refusal); its state and quota files change with every upload.
        [client, own, file]
            if !hidden(client)
                && *own == crate::archive::receiver_log::OWN_DIR
                && file
                    .as_encoded_bytes()
                    .starts_with(crate::archive::receiver_log::LOG_FILE.as_bytes()) =>
        {
            Place::OtherInClient(name(client))
        }
        [_, own, ..] if *own == crate::archive::receiver_log::OWN_DIR => Place::Elsewhere,
        [client, ..] if !hidden(client) => Place::OtherInClient(name(client)),
        _ => Place::Elsewhere,
    }
}

/// Turns one notify event into catalog changes. Pure: the clock is passed in.
pub fn translate(
    root: &Path,
    result: notify::Result<notify::Event>,
    seen_at: SystemTime,
) -> Vec<WalChange> {
    let event = match result {
        Ok(event) => event,
        Err(error) => {
            return vec![WalChange::Resync {
                client: None,
                reason: format!("watch error: {error}"),
            }];
        }
    };
    if event.need_rescan() {
        return vec![WalChange::Resync {
            client: None,
            reason: "file events were lost (queue overflow)".into(),
        }];
    }
    let mut changes = Vec::new();
    for path in &event.paths {
        let change = match (place(root, path), event.kind) {
            (Place::WalFile(client, name), kind) => wal_change(&client, &name, kind, seen_at),
            (
                Place::ClientFolder(client),
                EventKind::Create(_)
                | EventKind::Remove(_)
                | EventKind::Modify(ModifyKind::Name(_)),
            ) => Some(WalChange::ClientChanged { client }),
            (Place::OtherInClient(client), kind) if is_structural(kind) => {
                Some(WalChange::ClientChanged { client })
            }
            _ => None,
        };
        changes.extend(change);
    }
    changes
}

/// Events that change what a folder holds (not data written into an open file).
fn is_structural(kind: EventKind) -> bool {
    matches!(
        kind,
        EventKind::Create(_)
            | EventKind::Remove(_)
            | EventKind::Modify(ModifyKind::Name(RenameMode::To | RenameMode::From))
            | EventKind::Access(AccessKind::Close(AccessMode::Write))
    )
}

fn wal_change(client: &str, name: &str, kind: EventKind, seen_at: SystemTime) -> Option<WalChange> {
    let client = client.to_owned();
    let name = name.to_owned();
    let in_flight = name.ends_with(".part");
    // rsync and friends write hidden temporaries, then rename them into place.
    let hidden = name.starts_with('.');
    match kind {
        _ if hidden => None,
        EventKind::Create(CreateKind::File | CreateKind::Any) if in_flight => {
            Some(WalChange::InFlight {
                client,
                name,
                seen_at,
            })
        }
        // A final name is finished when its writer closes it (cp, scp) or when it is renamed into place.
        EventKind::Access(AccessKind::Close(AccessMode::Write)) if !in_flight => {
            Some(WalChange::Arrived {
                client,
                name,
                seen_at,
            })
        }
        EventKind::Modify(ModifyKind::Name(RenameMode::To)) if in_flight => {
            Some(WalChange::InFlight {
                client,
                name,
                seen_at,
            })
        }
        EventKind::Modify(ModifyKind::Name(RenameMode::To)) => Some(WalChange::Arrived {
            client,
            name,
            seen_at,
        }),
        EventKind::Modify(ModifyKind::Name(RenameMode::From))
        | EventKind::Remove(RemoveKind::File | RemoveKind::Any) => {
            Some(WalChange::Removed { client, name })
        }
        _ => None,
    }
}

/// One segment's arrival as the cadence sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Arrival {
    pub name: String,
    pub size: u64,
    pub at: SystemTime,
    /// Seen by an event (true) or taken from the file's mtime at a scan (false).
    pub live: bool,
}

/// A client's recent arrivals and the intervals between them.
#[derive(Debug, Clone, Default)]
pub struct Cadence {
    recent: VecDeque<Arrival>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CadenceStats {
    pub last: Duration,
    /// The current rate: the median of the last `RECENT_INTERVALS` intervals.
    pub recent: Duration,
    /// The median over everything remembered (up to `CADENCE_MEMORY` arrivals).
    pub median: Duration,
    pub max: Duration,
    pub intervals: usize,
}

/// How many arrivals a client remembers: enough for a sparkline and a stable median.
pub const CADENCE_MEMORY: usize = 64;

/// The intervals the current rate is the median of. A median of five
/// follows a new rate after three arrivals (it is then the majority) and
/// does not move for one late or early segment; the median of the whole
/// memory took dozens of arrivals to notice a client gone from one segment
/// a minute to one every 5 s.
pub const RECENT_INTERVALS: usize = 5;

impl Cadence {
    /// Seeds from the newest segments' mtimes, oldest first.
    pub fn seeded(arrivals: impl IntoIterator<Item = Arrival>) -> Cadence {
        let mut cadence = Cadence::default();
        for arrival in arrivals {
            cadence.record(arrival);
        }
        cadence
    }

    /// Adds an arrival, keeping the list in time order and bounded.
    pub fn record(&mut self, arrival: Arrival) {
        if let Some(known) = self.recent.iter_mut().find(|a| a.name == arrival.name) {
            // An event's time beats a scan's mtime for the same file.
            if arrival.live && !known.live {
                *known = arrival;
            }
            return;
        }
        let position = self
            .recent
            .iter()
            .rposition(|a| a.at <= arrival.at)
            .map_or(0, |p| p + 1);
        self.recent.insert(position, arrival);
        while self.recent.len() > CADENCE_MEMORY {
            self.recent.pop_front();
        }
    }

    /// Takes over the arrivals `other` saw live (event times beat scanned mtimes).
    pub fn keep_live_from(&mut self, other: &Cadence) {
        for arrival in other.arrivals().filter(|a| a.live) {
            self.record(arrival.clone());
        }
    }

    pub fn arrivals(&self) -> impl DoubleEndedIterator<Item = &Arrival> + ExactSizeIterator {
        self.recent.iter()
    }

    pub fn last(&self) -> Option<&Arrival> {
        self.recent.back()
    }

    /// Intervals between consecutive arrivals, oldest first.
    pub fn intervals(&self) -> Vec<Duration> {
        self.recent
            .iter()
            .zip(self.recent.iter().skip(1))
            .map(|(a, b)| b.at.duration_since(a.at).unwrap_or_default())
            .collect()
    }

    pub fn stats(&self) -> Option<CadenceStats> {
        let intervals = self.intervals();
        let last = *intervals.last()?;
        let recent = median(&intervals[intervals.len().saturating_sub(RECENT_INTERVALS)..])?;
        let mut sorted = intervals.clone();
        sorted.sort_unstable();
        Some(CadenceStats {
            last,
            recent,
            median: median(&sorted)?,
            max: *sorted.last()?,
            intervals: sorted.len(),
        })
    }

    /// Whether an arrival was seen live within `within` of `now` (the dashboard marks the row).
    pub fn landed_recently(&self, now: SystemTime, within: Duration) -> bool {
        self.recent
            .back()
            .is_some_and(|a| a.live && now.duration_since(a.at).map_or(true, |age| age <= within))
    }
}

/// The middle value (the upper one of two middles); `None` when empty.
fn median(intervals: &[Duration]) -> Option<Duration> {
    let mut sorted = intervals.to_vec();
    sorted.sort_unstable();
    sorted.get(sorted.len() / 2).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(kind: EventKind, paths: &[&str]) -> notify::Result<notify::Event> {
        let mut event = notify::Event::new(kind);
        for path in paths {
            event = event.add_path(PathBuf::from(path));
        }
        Ok(event)
    }

    #[test]
    fn a_rename_from_part_is_one_arrival() {
        let root = Path::new("/r");
        let t = SystemTime::UNIX_EPOCH;
        let create = translate(
            root,
            event(
                EventKind::Create(CreateKind::File),
                &["/r/foo/wal/A.gz.part"],
            ),
            t,
        );
        assert_eq!(
            create,
            vec![WalChange::InFlight {
                client: "foo".into(),
                name: "A.gz.part".into(),
                seen_at: t
            }]
        );
        let close = translate(
            root,
            event(
                EventKind::Access(AccessKind::Close(AccessMode::Write)),
                &["/r/foo/wal/A.gz.part"],
            ),
            t,
        );
        assert_eq!(close, vec![]);
        let from = translate(
            root,
            event(
                EventKind::Modify(ModifyKind::Name(RenameMode::From)),
                &["/r/foo/wal/A.gz.part"],
            ),
            t,
        );
        assert_eq!(
            from,
            vec![WalChange::Removed {
                client: "foo".into(),
                name: "A.gz.part".into()
            }]
        );
        let to = translate(
            root,
            event(
                EventKind::Modify(ModifyKind::Name(RenameMode::To)),
                &["/r/foo/wal/A.gz"],
            ),
            t,
        );
        assert_eq!(
            to,
            vec![WalChange::Arrived {
                client: "foo".into(),
                name: "A.gz".into(),
                seen_at: t
            }]
        );
        // notify also reports the pair; it must not count twice.
        let both = translate(
            root,
            event(
                EventKind::Modify(ModifyKind::Name(RenameMode::Both)),
                &["/r/foo/wal/A.gz.part", "/r/foo/wal/A.gz"],
            ),
            t,
        );
        assert_eq!(both, vec![]);
    }

    #[test]
    fn data_writes_are_ignored_and_overflow_asks_for_a_resync() {
        let root = Path::new("/r");
        let t = SystemTime::UNIX_EPOCH;
        let write = translate(
            root,
            event(
                EventKind::Modify(ModifyKind::Data(notify::event::DataChange::Any)),
                &["/r/foo/wal/A"],
            ),
            t,
        );
        assert_eq!(write, vec![]);
        let overflow =
            Ok(notify::Event::new(EventKind::Other).set_flag(notify::event::Flag::Rescan));
        assert!(matches!(
            translate(root, overflow, t).as_slice(),
            [WalChange::Resync { client: None, .. }]
        ));
        let new_client = translate(
            root,
            event(EventKind::Create(CreateKind::Folder), &["/r/bar"]),
            t,
        );
        assert_eq!(
            new_client,
            vec![WalChange::ClientChanged {
                client: "bar".into()
            }]
        );
        let base = translate(
            root,
            event(
                EventKind::Modify(ModifyKind::Name(RenameMode::To)),
                &["/r/bar/base/base.tar.gz"],
            ),
            t,
        );
        assert_eq!(
            base,
            vec![WalChange::ClientChanged {
                client: "bar".into()
            }]
        );
        assert_eq!(
            translate(
                root,
                event(EventKind::Create(CreateKind::File), &["/elsewhere/x"]),
                t
            ),
            vec![]
        );
    }

    #[test]
    fn the_receivers_own_files_are_quiet_except_its_log() {
        let root = Path::new("/r");
        let at = SystemTime::UNIX_EPOCH;
        let closed = EventKind::Access(AccessKind::Close(AccessMode::Write));
        let renamed = EventKind::Modify(ModifyKind::Name(RenameMode::To));
        for (kind, path) in [
            (renamed, "/r/c1/.walwarden/state.json"),
            (renamed, "/r/c1/.walwarden/usage.json"),
            (closed, "/r/c1/.walwarden/staging/b1/base.tar.gz.part"),
        ] {
            assert_eq!(translate(root, event(kind, &[path]), at), vec![], "{path}");
        }
        assert_eq!(
            translate(root, event(closed, &["/r/c1/.walwarden/receive.log"]), at),
            vec![WalChange::ClientChanged {
                client: "c1".into()
            }]
        );
    }

    #[test]
    fn cadence_keeps_order_and_reports_intervals() {
        let t = |s: u64| SystemTime::UNIX_EPOCH + Duration::from_secs(s);
        let arrival = |name: &str, at| Arrival {
            name: name.into(),
            size: 1,
            at,
            live: true,
        };
        let mut cadence = Cadence::seeded([
            arrival("a", t(0)),
            arrival("b", t(60)),
            arrival("d", t(200)),
        ]);
        cadence.record(arrival("c", t(120)));
        cadence.record(arrival("c", t(130)));
        let names: Vec<&str> = cadence.arrivals().map(|a| a.name.as_str()).collect();
        assert_eq!(names, vec!["a", "b", "c", "d"]);
        let stats = cadence.stats().unwrap();
        assert_eq!(stats.last, Duration::from_secs(80));
        assert_eq!(stats.max, Duration::from_secs(80));
        assert_eq!(stats.median, Duration::from_secs(60));
        assert!(cadence.landed_recently(t(205), Duration::from_secs(10)));
        assert!(!cadence.landed_recently(t(300), Duration::from_secs(10)));
        for i in 0..100 {
            cadence.record(arrival(&format!("z{i:03}"), t(1000 + i)));
        }
        assert_eq!(cadence.arrivals().len(), CADENCE_MEMORY);
    }

    /// Regression: a client receiving a segment every 5 s showed a cadence
    /// of 1m, the median of its older history. The current rate follows
    /// within three arrivals; one late segment does not move it.
    #[test]
    fn the_current_rate_follows_recent_arrivals() {
        let t = |s: u64| SystemTime::UNIX_EPOCH + Duration::from_secs(s);
        let arrival = |i: u64, at: SystemTime| Arrival {
            name: format!("{i:024X}"),
            size: 1,
            at,
            live: true,
        };
        // 40 segments a minute apart (seeded from mtimes at a scan).
        let mut cadence = Cadence::seeded((0..40).map(|i| arrival(i, t(i * 60))));
        let stats = cadence.stats().unwrap();
        assert_eq!(
            (stats.recent, stats.median),
            (Duration::from_secs(60), Duration::from_secs(60))
        );
        let mut at = 39 * 60;
        let mut recent = Vec::new();
        for i in 40..46 {
            at += 5;
            cadence.record(arrival(i, t(at)));
            recent.push(cadence.stats().unwrap().recent.as_secs());
        }
        assert_eq!(recent, vec![60, 60, 5, 5, 5, 5], "after three 5 s arrivals");
        assert_eq!(
            cadence.stats().unwrap().median,
            Duration::from_secs(60),
            "the long median still remembers the old rate"
        );
        // One segment 50 s late, then the 5 s rate again: the current rate holds.
        at += 50;
        cadence.record(arrival(46, t(at)));
        assert_eq!(cadence.stats().unwrap().recent, Duration::from_secs(5));
        assert_eq!(cadence.stats().unwrap().last, Duration::from_secs(50));
        // And back to a minute: three arrivals to follow.
        for i in 47..50 {
            at += 60;
            cadence.record(arrival(i, t(at)));
        }
        assert_eq!(cadence.stats().unwrap().recent, Duration::from_secs(60));
    }

    #[test]
    fn the_current_rate_of_few_arrivals_is_what_there_is() {
        let t = |s: u64| SystemTime::UNIX_EPOCH + Duration::from_secs(s);
        let arrival = |name: &str, at| Arrival {
            name: name.into(),
            size: 1,
            at,
            live: false,
        };
        assert_eq!(Cadence::seeded([arrival("a", t(0))]).stats(), None);
        let two = Cadence::seeded([arrival("a", t(0)), arrival("b", t(30))]);
        assert_eq!(two.stats().unwrap().recent, Duration::from_secs(30));
        let three = Cadence::seeded([arrival("a", t(0)), arrival("b", t(30)), arrival("c", t(40))]);
        // Two intervals, 30 s and 10 s: the upper middle, as for the long median.
        assert_eq!(three.stats().unwrap().recent, Duration::from_secs(30));
    }
}
