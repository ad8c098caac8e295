//! The watcher on real folders: real inotify events from a simulated
//! archiver, fed into the catalog the way the dashboard and `verify` do.
//!
//! Timing on shared CI machines is noisy, so the assertions are about count,
//! order and monotonic times; the interval checks are generous.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use walwarden::archive::catalog::{self, Applied, Catalog, CatalogError, Observer, ScanOptions};
use walwarden::archive::watch::{Arrival, RootWatcher, WalChange, WatchMode};
use walwarden::checks::health::{self, ProblemCode};
use walwarden::config::ClientPolicy;
use walwarden::demo::Cluster;

/// The simulated archiver's cadence.
const CADENCE: Duration = Duration::from_millis(150);
/// How many segments each simulated archiver ships.
const SEGMENTS: u64 = 10;
/// The longest any single wait on the event stream may take before the test fails.
const EVENT_TIMEOUT: Duration = Duration::from_secs(20);

/// A backup root with one client `acme`: a base backup of segments 3..=4 and
/// those two segments archived a minute apart, as a real client has them.
fn root_with_client(dir: &Path, client: &str, cluster: &Cluster) -> PathBuf {
    let root = dir.join("backups");
    let now = SystemTime::now();
    let client_dir = root.join(client);
    cluster
        .write_base_backup(
            &client_dir,
            cluster.id(1, 3),
            cluster.id(1, 4),
            now - Duration::from_secs(600),
        )
        .unwrap();
    for segno in 3..=4 {
        cluster
            .archive_segment(
                &client_dir.join("wal"),
                cluster.id(1, segno),
                Some(now - Duration::from_secs(60 * (5 - segno))),
            )
            .unwrap();
    }
    root
}

/// A watcher on `root`, its events, and the catalog they are applied to.
struct Harness {
    root: PathBuf,
    rx: Receiver<WalChange>,
    _watcher: RootWatcher,
    catalog: Catalog,
    /// Resolves each change as the dashboard's observer thread does.
    observer: Observer,
    /// Every change received, with what applying it did: the failure message shows it.
    log: Vec<String>,
    /// `(client, arrival)` for every `Applied::Changed { arrival: Some(..) }`, in order.
    arrivals: Vec<(String, Arrival)>,
}

impl Harness {
    /// Starts watching, then scans (the order `verify` uses: nothing falls between).
    fn start(root: &Path) -> Harness {
        let (tx, rx) = mpsc::channel();
        let watcher = RootWatcher::start(root, move |change| {
            let _ = tx.send(change);
        })
        .unwrap_or_else(|e| panic!("cannot watch {}: {e}", root.display()));
        assert_eq!(
            watcher.mode,
            WatchMode::Native,
            "inotify should be available here; the timing assertions assume native events"
        );
        let catalog = catalog::scan(root, &ScanOptions::default()).unwrap();
        Harness {
            root: root.to_owned(),
            rx,
            _watcher: watcher,
            catalog,
            observer: Observer::new(root),
            log: Vec::new(),
            arrivals: Vec::new(),
        }
    }

    fn handle(&mut self, change: WalChange) {
        let applied = self.catalog.apply(&self.observer.observe(&change));
        self.log.push(format!("{change:?} -> {applied:?}"));
        match applied {
            Applied::Changed {
                client,
                arrival: Some(arrival),
            } => self.arrivals.push((client, arrival)),
            Applied::Changed { arrival: None, .. } | Applied::Nothing => {}
            Applied::RescanClient(name) => {
                match catalog::scan_client(&self.root, &name, &ScanOptions::default()) {
                    Ok(client) => self.catalog.replace_client(client),
                    Err(CatalogError::NoSuchClient { .. }) => self.catalog.remove_client(&name),
                    Err(e) => panic!("rescan of {name} failed: {e}"),
                }
            }
            Applied::RescanAll(reason) => {
                // Legitimate (an inotify overflow), but then live arrivals are lost
                // and the counts below fail: the log says why.
                let fresh = catalog::scan(&self.root, &ScanOptions::default()).unwrap();
                for client in fresh.clients {
                    self.catalog.replace_client(client);
                }
                self.log.push(format!("full rescan: {reason}"));
            }
        }
    }

    /// Applies changes until `done` holds; fails (never hangs) after `timeout`.
    fn pump_until(&mut self, what: &str, timeout: Duration, done: impl Fn(&Harness) -> bool) {
        let deadline = Instant::now() + timeout;
        while !done(self) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                panic!(
                    "timed out after {timeout:?} waiting for {what}; changes seen:\n{}",
                    self.log.join("\n")
                );
            }
            match self.rx.recv_timeout(left.min(Duration::from_millis(100))) {
                Ok(change) => self.handle(change),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    panic!("the watcher stopped sending while waiting for {what}")
                }
            }
        }
    }

    /// Applies whatever still comes until the stream has been quiet for `quiet`
    /// (late duplicates would show up here); bounded by `EVENT_TIMEOUT`.
    fn drain(&mut self, quiet: Duration) {
        let deadline = Instant::now() + EVENT_TIMEOUT;
        while Instant::now() < deadline {
            match self.rx.recv_timeout(quiet) {
                Ok(change) => self.handle(change),
                Err(RecvTimeoutError::Timeout) => return,
                Err(RecvTimeoutError::Disconnected) => panic!("the watcher stopped sending"),
            }
        }
        panic!(
            "events kept coming for {EVENT_TIMEOUT:?}:\n{}",
            self.log.join("\n")
        );
    }

    fn arrivals_of(&self, client: &str) -> Vec<&Arrival> {
        self.arrivals
            .iter()
            .filter(|(c, _)| c == client)
            .map(|(_, a)| a)
            .collect()
    }

    fn client(&self, name: &str) -> &walwarden::archive::catalog::Client {
        self.catalog
            .client(name)
            .unwrap_or_else(|| panic!("no client {name} in the catalog"))
    }
}

/// When one simulated write began and when it was complete (renamed or closed).
struct Written {
    name: String,
    began: SystemTime,
    done: SystemTime,
}

/// Runs `write` for segments `first..first+SEGMENTS`, `CADENCE` apart, on its own thread.
fn archiver(
    first: u64,
    write: impl Fn(u64) -> String + Send + 'static,
) -> thread::JoinHandle<Vec<Written>> {
    thread::spawn(move || {
        (first..first + SEGMENTS)
            .map(|segno| {
                let began = SystemTime::now();
                let name = write(segno);
                let done = SystemTime::now();
                thread::sleep(CADENCE);
                Written { name, began, done }
            })
            .collect()
    })
}

/// Exactly one arrival per written segment, in order, each seen between its
/// write's start and shortly after its end, with sane intervals.
fn assert_arrivals_match(h: &Harness, client: &str, written: &[Written]) {
    let arrivals = h.arrivals_of(client);
    let names: Vec<&str> = arrivals.iter().map(|a| a.name.as_str()).collect();
    let expected: Vec<&str> = written.iter().map(|w| w.name.as_str()).collect();
    assert_eq!(
        names,
        expected,
        "one arrival per segment, in order; changes seen:\n{}",
        h.log.join("\n")
    );
    for (arrival, write) in arrivals.iter().zip(written) {
        assert!(arrival.live, "{} was seen by an event", arrival.name);
        assert!(
            arrival.at >= write.began,
            "{} arrived before it was written",
            arrival.name
        );
        let latency = arrival.at.duration_since(write.done).unwrap_or_default();
        assert!(
            latency < Duration::from_secs(2),
            "{} was seen {latency:?} after it was complete",
            arrival.name
        );
        assert!(arrival.size > 0, "{} has its size", arrival.name);
    }
    let intervals: Vec<Duration> = arrivals
        .windows(2)
        .map(|pair| {
            pair[1]
                .at
                .duration_since(pair[0].at)
                .unwrap_or_else(|_| panic!("{} arrived before {}", pair[1].name, pair[0].name))
        })
        .collect();
    for interval in &intervals {
        assert!(
            *interval < Duration::from_secs(2),
            "an interval of {interval:?} for a {CADENCE:?} cadence: {intervals:?}"
        );
    }
    let mut sorted = intervals.clone();
    sorted.sort();
    let median = sorted[sorted.len() / 2];
    assert!(
        median >= CADENCE / 3 && median < Duration::from_secs(1),
        "median interval {median:?} for a {CADENCE:?} cadence: {intervals:?}"
    );
}

/// After a refresh the client's archive is whole up to the last segment written.
fn assert_continuous_through(h: &mut Harness, client: &str, last: &str) {
    h.catalog.refresh();
    let c = h.client(client);
    assert!(!c.stale, "refresh cleared the stale flag");
    assert_eq!(
        c.continuity.gaps,
        vec![],
        "no gaps in {client}; changes seen:\n{}",
        h.log.join("\n")
    );
    assert_eq!(
        c.continuity.restorable_through.as_deref(),
        Some(last),
        "{client} is restorable through the last segment written"
    );
    assert_eq!(c.continuity.newest.as_deref(), Some(last));
    assert_eq!(
        c.wal.in_flight,
        vec![],
        "every .part was renamed: none may stay in flight"
    );
    let stats = c
        .cadence
        .stats()
        .expect("cadence stats after live arrivals");
    // 2 arrivals seeded from the scan's mtimes, then SEGMENTS live ones.
    assert!(
        stats.intervals >= SEGMENTS as usize,
        "cadence over {} intervals: {stats:?}",
        stats.intervals
    );
    assert!(stats.last < Duration::from_secs(2), "{stats:?}");
    assert!(stats.median < Duration::from_secs(2), "{stats:?}");
    assert!(
        c.cadence
            .landed_recently(SystemTime::now(), Duration::from_secs(30)),
        "the last arrival was live and recent"
    );
}

#[test]
fn an_archiver_writing_part_then_renaming_gives_one_arrival_per_segment() {
    let tmp = tempfile::tempdir().unwrap();
    let cluster = Cluster::new(7, 16 << 20);
    let root = root_with_client(tmp.path(), "acme", &cluster);
    let mut h = Harness::start(&root);
    assert_eq!(h.client("acme").wal.segments.len(), 2);

    let wal = root.join("acme/wal");
    let writer = archiver(5, move |segno| {
        // `.part`, write, sync, rename: what the tutorial's archive_command does.
        let path = cluster
            .archive_segment(&wal, cluster.id(1, segno), None)
            .unwrap();
        path.file_name().unwrap().to_string_lossy().into_owned()
    });
    h.pump_until("10 arrivals", EVENT_TIMEOUT, |h| {
        h.arrivals_of("acme").len() >= SEGMENTS as usize
    });
    let written = writer.join().expect("the archiver thread");
    h.drain(Duration::from_millis(500));

    assert_eq!(written[0].name, "000000010000000000000005.gz");
    assert_arrivals_match(&h, "acme", &written);
    assert_continuous_through(&mut h, "acme", "00000001000000000000000E");
    assert_eq!(h.client("acme").wal.segments.len(), 2 + SEGMENTS as usize);
}

#[test]
fn an_archiver_writing_final_names_directly_gives_one_arrival_per_segment() {
    let tmp = tempfile::tempdir().unwrap();
    let cluster = Cluster::new(7, 16 << 20);
    let root = root_with_client(tmp.path(), "acme", &cluster);
    let mut h = Harness::start(&root);

    let wal = root.join("acme/wal");
    let writer = archiver(5, move |segno| {
        // cp/scp style: the final name is created, written in many chunks, closed.
        let id = cluster.id(1, segno);
        let name = id.file_name(cluster.seg_size);
        let mut file = File::create(wal.join(&name)).unwrap();
        for chunk in cluster.segment_bytes(id).chunks(1 << 20) {
            file.write_all(chunk).unwrap();
        }
        file.sync_all().unwrap();
        drop(file);
        name
    });
    h.pump_until("10 arrivals", EVENT_TIMEOUT, |h| {
        h.arrivals_of("acme").len() >= SEGMENTS as usize
    });
    let written = writer.join().expect("the archiver thread");
    h.drain(Duration::from_millis(500));

    assert_eq!(written[0].name, "000000010000000000000005");
    assert_arrivals_match(&h, "acme", &written);
    for arrival in h.arrivals_of("acme") {
        assert_eq!(
            arrival.size,
            16 << 20,
            "{} was complete when seen",
            arrival.name
        );
    }
    assert_continuous_through(&mut h, "acme", "00000001000000000000000E");
    let segments = &h.client("acme").wal.segments;
    assert_eq!(segments.len(), 2 + SEGMENTS as usize);
    assert!(
        segments[2..]
            .iter()
            .all(|s| !s.compressed && s.size == 16 << 20)
    );
}

#[test]
fn a_new_client_folder_is_picked_up() {
    let tmp = tempfile::tempdir().unwrap();
    let cluster = Cluster::new(7, 16 << 20);
    let root = root_with_client(tmp.path(), "acme", &cluster);
    let mut h = Harness::start(&root);
    assert!(h.catalog.client("newclient").is_none());

    // What setting up a new client does: the folders first, then archiving starts.
    let wal = root.join("newclient/wal");
    fs::create_dir_all(&wal).unwrap();
    h.pump_until("the new client in the catalog", EVENT_TIMEOUT, |h| {
        h.catalog.client("newclient").is_some_and(|c| c.wal.present)
    });
    assert!(
        h.log
            .iter()
            .any(|l| l.contains("ClientChanged { client: \"newclient\" }")
                && l.contains("RescanClient(\"newclient\")")),
        "the folder's creation was a ClientChanged that asked for a rescan:\n{}",
        h.log.join("\n")
    );
    // notify adds the watch on a new folder right after reporting it; give it
    // that moment (an archive_command's first segment comes much later).
    thread::sleep(Duration::from_millis(300));
    h.drain(Duration::from_millis(200));

    let other = Cluster::new(99, 16 << 20);
    other
        .write_base_backup(
            &root.join("newclient"),
            other.id(1, 2),
            other.id(1, 2),
            SystemTime::now(),
        )
        .unwrap();
    other.archive_segment(&wal, other.id(1, 2), None).unwrap();
    h.pump_until("an arrival for newclient", EVENT_TIMEOUT, |h| {
        !h.arrivals_of("newclient").is_empty()
    });
    h.drain(Duration::from_millis(500));

    let arrivals: Vec<&str> = h
        .arrivals_of("newclient")
        .iter()
        .map(|a| a.name.as_str())
        .collect();
    assert_eq!(arrivals, vec!["000000010000000000000002.gz"]);
    h.catalog.refresh();
    let client = h.client("newclient");
    assert_eq!(client.path, root.join("newclient"));
    let names: Vec<String> = client.wal.segments.iter().map(|s| s.file_name()).collect();
    assert_eq!(names, vec!["000000010000000000000002.gz"]);
    assert!(
        client.base.present && client.base.head.is_some(),
        "the base backup written after the folder was read by a rescan"
    );
    assert_eq!(
        client.continuity.restorable_through.as_deref(),
        Some("000000010000000000000002")
    );
    // The clients stay sorted and the old one is untouched.
    let names: Vec<&str> = h.catalog.clients.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, vec!["acme", "newclient"]);
    assert!(h.arrivals_of("acme").is_empty());
}

#[test]
fn a_segment_a_rescan_listed_before_its_event_still_arrives_once() {
    let tmp = tempfile::tempdir().unwrap();
    let cluster = Cluster::new(7, 16 << 20);
    let root = root_with_client(tmp.path(), "acme", &cluster);
    let mut h = Harness::start(&root);

    let name = "000000010000000000000005.gz";
    cluster
        .archive_segment(&root.join("acme/wal"), cluster.id(1, 5), None)
        .unwrap();
    // A rescan of the client (a ClientChanged for a new base backup, say) runs
    // before the segment's own event is applied: the consumer lags behind.
    let rescanned = catalog::scan_client(&root, "acme", &ScanOptions::default()).unwrap();
    h.catalog.replace_client(rescanned);
    let scanned = h.client("acme").cadence.arrivals().find(|a| a.name == name);
    assert!(
        scanned.is_some_and(|a| !a.live),
        "the rescan listed the segment from its mtime"
    );

    h.pump_until("the segment's arrival", EVENT_TIMEOUT, |h| {
        !h.arrivals_of("acme").is_empty()
    });
    h.drain(Duration::from_millis(500));
    let arrivals: Vec<&str> = h
        .arrivals_of("acme")
        .iter()
        .map(|a| a.name.as_str())
        .collect();
    assert_eq!(
        arrivals,
        vec![name],
        "the event is the segment's one live arrival:\n{}",
        h.log.join("\n")
    );
    let client = h.client("acme");
    assert!(
        client.cadence.arrivals().any(|a| a.name == name && a.live),
        "the event's time replaced the mtime in the cadence"
    );
    assert_eq!(
        client.cadence.arrivals().filter(|a| a.name == name).count(),
        1
    );

    // A repeated event for the same file (a writer closing it again) is no second arrival.
    let again = WalChange::Arrived {
        client: "acme".into(),
        name: name.into(),
        seen_at: SystemTime::now(),
    };
    assert_eq!(
        h.catalog.apply(&h.observer.observe(&again)),
        Applied::Changed {
            client: "acme".into(),
            arrival: None
        }
    );
}

fn policy_with_partial_grace(grace: Duration) -> ClientPolicy {
    ClientPolicy {
        partial_grace: grace,
        ..ClientPolicy::default()
    }
}

#[test]
fn a_part_file_that_never_completes_is_in_flight_then_a_stray_partial() {
    let tmp = tempfile::tempdir().unwrap();
    let cluster = Cluster::new(7, 16 << 20);
    let root = root_with_client(tmp.path(), "acme", &cluster);
    let mut h = Harness::start(&root);

    // An archive_command (or scp) that dies mid-transfer: a `.part` written, closed, never renamed.
    let name = "000000010000000000000005.gz.part";
    let bytes = walwarden::demo::gzip(&cluster.segment_bytes(cluster.id(1, 5))).unwrap();
    let mut file = File::create(root.join("acme/wal").join(name)).unwrap();
    file.write_all(&bytes[..bytes.len() / 2]).unwrap();
    drop(file);
    let written = SystemTime::now();

    h.pump_until("the .part in flight", EVENT_TIMEOUT, |h| {
        h.catalog
            .client("acme")
            .is_some_and(|c| c.wal.in_flight.iter().any(|p| p.name == name))
    });
    h.drain(Duration::from_millis(500));
    assert!(
        h.arrivals.is_empty(),
        "a .part is no arrival, even when its writer closes it:\n{}",
        h.log.join("\n")
    );
    h.catalog.refresh();
    let client = h.client("acme");
    assert_eq!(client.wal.in_flight.len(), 1);
    assert_eq!(client.wal.segments.len(), 2, "the .part is not a segment");
    assert_eq!(
        client.continuity.restorable_through.as_deref(),
        Some("000000010000000000000004")
    );

    let grace = Duration::from_secs(60);
    let policy = policy_with_partial_grace(grace);
    let stray = |now: SystemTime| {
        health::assess(client, &policy, now)
            .into_iter()
            .filter(|p| p.code == ProblemCode::StrayPartial)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        stray(written),
        vec![],
        "a fresh .part is a transfer in flight, not a problem"
    );
    let later = stray(written + grace + Duration::from_secs(1));
    assert_eq!(later.len(), 1, "{later:?}");
    assert!(later[0].message.contains(name), "{}", later[0].message);
    assert_eq!(later[0].code.as_str(), "stray_partial");
}
