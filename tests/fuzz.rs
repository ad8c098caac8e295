//! The fuzz target, a proptest harness run with every test suite (cargo-fuzz
//! needs a nightly compiler): arbitrary backup roots, as a careless
//! operator or a hostile tenant could leave them, go through everything
//! that reads a root (the scan, the quick and deep checks, the live
//! observer and apply, the report both faces assemble, the Prometheus
//! metrics); arbitrary bytes go through every parser (WAL names, timeline
//! histories, backup labels, page headers, records, manifests,
//! postgresql.conf, `--set`, target times, server log lines).
//!
//! Invariants: no panic; no hang (every run over a tree has a deadline); no
//! write anywhere in the tree (a listing with sizes and mtimes compared
//! before and after); every client folder accounted for in the report
//! (each directory or link directly under the root, under its escaped
//! name); metric series unique and printable.
//!
//! The case counts keep the suite fast; for a longer run:
//! `WALWARDEN_FUZZ_CASES=2000 cargo nextest run --test fuzz`.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::ffi::OsStr;
use std::fs;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use proptest::prelude::*;
use walwarden::archive::catalog::{self, Observation, Observer, ScanOptions};
use walwarden::archive::watch::WalChange;
use walwarden::demo::Cluster;

const SEG: u32 = 16 << 20;
const SYSTEM: u64 = 7_500_000_000_000_000_077;
/// A hang detector for one tree, not a speed claim.
const DEADLINE: Duration = Duration::from_secs(120);

fn cases(default: u32) -> u32 {
    std::env::var("WALWARDEN_FUZZ_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(default)
}

/// What a file holds.
#[derive(Debug, Clone)]
enum Content {
    Empty,
    Bytes(Vec<u8>),
    /// Gzip'ed bytes: a valid stream of garbage.
    Gzip(Vec<u8>),
    /// The start of a real segment (a long page header of this cluster),
    /// then `tail`; gzip'ed when `gz`.
    Page {
        segno: u64,
        tail: Vec<u8>,
        gz: bool,
    },
    /// A sparse file of this size, never written.
    Sparse(u64),
}

/// Where a link points.
#[derive(Debug, Clone)]
enum Target {
    Slash,
    Up,
    Nowhere,
    Passwd,
    Sibling,
}

#[derive(Debug, Clone)]
enum Leaf {
    File(Content),
    Fifo,
    Link(Target),
    EmptyDir,
}

#[derive(Debug, Clone)]
enum ClientKind {
    Folder,
    Link(Target),
    File,
    Fifo,
}

#[derive(Debug, Clone)]
struct ClientSpec {
    name: Vec<u8>,
    kind: ClientKind,
    base: Option<Vec<(Vec<u8>, Leaf)>>,
    wal: Option<Vec<(Vec<u8>, Leaf)>>,
    loose: Vec<(Vec<u8>, Leaf)>,
    /// Mode 000 on the client folder (root reads it anyway; the scan must not care).
    locked: bool,
}

/// A file name: what archives hold (segments, histories, labels, tarballs)
/// and arbitrary bytes (non-UTF-8, control characters), never `/` or NUL.
fn name() -> impl Strategy<Value = Vec<u8>> {
    let segment = (
        1u32..4,
        0u64..0x30,
        prop::sample::select(vec![
            "",
            ".gz",
            ".partial",
            ".partial.gz",
            ".gz.part",
            ".part",
        ]),
    )
        .prop_map(|(tl, seg, suffix)| {
            format!("{tl:08X}{:08X}{:08X}{suffix}", seg >> 8, seg & 0xff).into_bytes()
        });
    let history = (1u32..5, any::<bool>()).prop_map(|(tl, gz)| {
        format!("{tl:08X}.history{}", if gz { ".gz" } else { "" }).into_bytes()
    });
    let backup = (0u64..0x30, any::<bool>()).prop_map(|(seg, gz)| {
        format!(
            "00000001{:08X}{:08X}.00000028.backup{}",
            seg >> 8,
            seg & 0xff,
            if gz { ".gz" } else { "" }
        )
        .into_bytes()
    });
    let fixed = prop::sample::select(vec![
        "base.tar.gz",
        "pg_wal.tar.gz",
        "backup_manifest",
        "base.tar",
        "16385.tar.gz",
        "test.txt",
        "..",
    ])
    .prop_map(|n| n.as_bytes().to_vec());
    let raw = prop::collection::vec(
        any::<u8>().prop_filter("no / nor NUL", |b| *b != b'/' && *b != 0),
        1..12,
    )
    .prop_filter("not . nor ..", |n| n != b"." && n != b"..");
    prop_oneof![3 => segment, 1 => history, 1 => backup, 1 => fixed, 2 => raw]
        .prop_filter("a real name", |n| n != b"." && n != b"..")
}

fn content() -> impl Strategy<Value = Content> {
    prop_oneof![
        Just(Content::Empty),
        prop::collection::vec(any::<u8>(), 0..2048).prop_map(Content::Bytes),
        prop::collection::vec(any::<u8>(), 0..2048).prop_map(Content::Gzip),
        (
            0u64..0x30,
            prop::collection::vec(any::<u8>(), 0..8192),
            any::<bool>()
        )
            .prop_map(|(segno, tail, gz)| Content::Page { segno, tail, gz }),
        prop::sample::select(vec![u64::from(SEG), u64::from(SEG) + 1, 1 << 30, 20 << 30])
            .prop_map(Content::Sparse),
    ]
}

fn target() -> impl Strategy<Value = Target> {
    prop_oneof![
        Just(Target::Slash),
        Just(Target::Up),
        Just(Target::Nowhere),
        Just(Target::Passwd),
        Just(Target::Sibling),
    ]
}

fn leaf() -> impl Strategy<Value = Leaf> {
    prop_oneof![
        6 => content().prop_map(Leaf::File),
        1 => Just(Leaf::Fifo),
        1 => target().prop_map(Leaf::Link),
        1 => Just(Leaf::EmptyDir),
    ]
}

fn folder() -> impl Strategy<Value = Vec<(Vec<u8>, Leaf)>> {
    prop::collection::vec((name(), leaf()), 0..8)
}

fn client_spec() -> impl Strategy<Value = ClientSpec> {
    let kind = prop_oneof![
        6 => Just(ClientKind::Folder),
        1 => target().prop_map(ClientKind::Link),
        1 => Just(ClientKind::File),
        1 => Just(ClientKind::Fifo),
    ];
    (
        prop::collection::vec(
            any::<u8>().prop_filter("no / nor NUL", |b| *b != b'/' && *b != 0),
            1..10,
        ),
        kind,
        prop::option::of(folder()),
        prop::option::of(folder()),
        prop::collection::vec((name(), leaf()), 0..3),
        prop::bool::weighted(0.1),
    )
        .prop_filter("not . nor ..", |t| t.0 != b"." && t.0 != b"..")
        .prop_map(|(name, kind, base, wal, loose, locked)| ClientSpec {
            name,
            kind,
            base,
            wal,
            loose,
            locked,
        })
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

fn make_link(path: &Path, target: &Target) {
    let to: PathBuf = match target {
        Target::Slash => "/".into(),
        Target::Up => "..".into(),
        Target::Nowhere => "nowhere-at-all".into(),
        Target::Passwd => "/etc/passwd".into(),
        Target::Sibling => ".".into(),
    };
    let _ = std::os::unix::fs::symlink(to, path);
}

fn make_leaf(cluster: &Cluster, path: &Path, leaf: &Leaf) {
    match leaf {
        Leaf::File(content) => {
            let bytes = match content {
                Content::Empty => Vec::new(),
                Content::Bytes(bytes) => bytes.clone(),
                Content::Gzip(bytes) => gzip(bytes),
                Content::Page { segno, tail, gz } => {
                    let mut bytes = cluster.segment_header(cluster.id(1, *segno)).to_vec();
                    bytes.extend_from_slice(tail);
                    if *gz { gzip(&bytes) } else { bytes }
                }
                Content::Sparse(size) => {
                    let file = fs::File::create(path).unwrap();
                    file.set_len(*size).unwrap();
                    return;
                }
            };
            fs::write(path, bytes).unwrap();
        }
        Leaf::Fifo => {
            nix::unistd::mkfifo(path, nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap()
        }
        Leaf::Link(target) => make_link(path, target),
        Leaf::EmptyDir => fs::create_dir(path).unwrap(),
    }
}

fn make_folder(cluster: &Cluster, dir: &Path, entries: &[(Vec<u8>, Leaf)]) {
    let mut seen = HashSet::new();
    for (name, leaf) in entries {
        if seen.insert(name.clone()) {
            make_leaf(cluster, &dir.join(OsStr::from_bytes(name)), leaf);
        }
    }
}

/// Builds the tree; returns the escaped names of the entries that must be clients.
fn build(root: &Path, clients: &[ClientSpec]) -> BTreeSet<String> {
    let cluster = Cluster::new(SYSTEM, SEG);
    fs::create_dir_all(root).unwrap();
    let mut expected = BTreeSet::new();
    let mut seen = HashSet::new();
    for spec in clients {
        if !seen.insert(spec.name.clone()) {
            continue;
        }
        let raw = OsStr::from_bytes(&spec.name);
        let dir = root.join(raw);
        let is_client = match &spec.kind {
            ClientKind::Folder => {
                fs::create_dir(&dir).unwrap();
                for (sub, entries) in [("base", &spec.base), ("wal", &spec.wal)] {
                    if let Some(entries) = entries {
                        fs::create_dir(dir.join(sub)).unwrap();
                        make_folder(&cluster, &dir.join(sub), entries);
                    }
                }
                make_folder(&cluster, &dir, &spec.loose);
                if spec.locked {
                    use std::os::unix::fs::PermissionsExt;
                    fs::set_permissions(&dir, fs::Permissions::from_mode(0o000)).unwrap();
                }
                true
            }
            ClientKind::Link(target) => {
                make_link(&dir, target);
                true
            }
            ClientKind::File => {
                fs::write(&dir, b"not a client").unwrap();
                false
            }
            ClientKind::Fifo => {
                nix::unistd::mkfifo(&dir, nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();
                false
            }
        };
        if is_client && spec.name.first() != Some(&b'.') {
            expected.insert(walwarden::display::escape_name(raw));
        }
    }
    expected
}

/// Every path under `dir` with its kind, size and mtime (links not followed).
fn listing(dir: &Path) -> BTreeMap<PathBuf, (String, u64, SystemTime)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(path) = stack.pop() {
        let Ok(meta) = fs::symlink_metadata(&path) else {
            continue;
        };
        if meta.is_dir() {
            for entry in fs::read_dir(&path).unwrap() {
                stack.push(entry.unwrap().path());
            }
        }
        out.insert(
            path,
            (
                format!("{:?}", meta.file_type()),
                meta.len(),
                meta.modified().unwrap(),
            ),
        );
    }
    out
}

/// Everything that reads a root, in a thread with a deadline; returns the
/// report's client names and the Prometheus text.
fn read_everything(root: &Path) -> (Vec<String>, String) {
    let root = root.to_owned();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let result = std::panic::catch_unwind(|| {
            use walwarden::checks::{deep, jobs, metrics, quick, report};
            let now = SystemTime::now();
            let mut catalog =
                catalog::scan(&root, &ScanOptions::default()).expect("the root scans");
            let inputs: Vec<_> = catalog
                .clients
                .iter()
                .map(quick::QuickInput::borrowed)
                .collect();
            let mut cache = quick::QuickCache::load(None);
            let quick: BTreeMap<String, quick::QuickFindings> = inputs
                .iter()
                .map(|input| {
                    let problems = cache.check(input);
                    let unusable = cache.unusable(input);
                    // The last commit, read from the line's newest segments' records.
                    let recovery_point = walwarden::checks::recovery_point::PointCache::load(None)
                        .point_for(&input.client, &unusable);
                    (
                        input.name().to_owned(),
                        quick::QuickFindings {
                            problems,
                            unusable,
                            recovery_point,
                        },
                    )
                })
                .collect();
            let mut deep_cache = deep::DeepCache::load(None);
            let deep: BTreeMap<String, deep::DeepReport> = catalog
                .clients
                .iter()
                .map(|c| {
                    (
                        c.name.clone(),
                        deep::verify_client(c, &mut deep_cache, now, &mut |_, _| {}),
                    )
                })
                .collect();
            let config = walwarden::config::Config::default();
            let report =
                report::CheckReport::assemble(&catalog, &config, now, |name| report::ClientFacts {
                    quick: quick.get(name),
                    deep: deep.get(name),
                    target: None,
                    drills: &[],
                });
            let metrics = metrics::prometheus(&report);
            let _ = jobs::deep_from_memory(&catalog);
            // The live half: each wal/ entry observed as an arrival, then applied.
            let mut observer = Observer::new(&root);
            let arrivals: Vec<WalChange> = catalog
                .clients
                .iter()
                .flat_map(|c| {
                    let names: Vec<String> = fs::read_dir(c.wal_dir())
                        .into_iter()
                        .flatten()
                        .flatten()
                        .map(|e| walwarden::display::escape_name(&e.file_name()))
                        .collect();
                    names.into_iter().map(|name| WalChange::Arrived {
                        client: c.name.clone(),
                        name,
                        seen_at: now,
                    })
                })
                .collect();
            for observation in observer.observe_all(&arrivals) {
                if let Observation::Present { file, .. } = &observation {
                    assert!(!file.fact.name.chars().any(char::is_control), "{file:?}");
                }
                catalog.apply(&observation);
            }
            catalog.refresh();
            let names = report
                .clients
                .iter()
                .map(|c| c.name.clone())
                .collect::<Vec<_>>();
            (names, metrics)
        });
        let _ = tx.send(result);
    });
    match rx.recv_timeout(DEADLINE) {
        Ok(Ok(done)) => done,
        Ok(Err(panic)) => std::panic::resume_unwind(panic),
        Err(_) => panic!("hung: reading the tree took longer than {DEADLINE:?}"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(24), ..ProptestConfig::default() })]

    #[test]
    fn any_tree_is_read_without_panic_hang_or_write_and_every_client_is_reported(
        clients in prop::collection::vec(client_spec(), 0..5)
    ) {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("backups");
        let expected = build(&root, &clients);
        let before = listing(tmp.path());
        let (names, metrics) = read_everything(&root);
        prop_assert_eq!(&listing(tmp.path()), &before, "nothing under the tree was written");
        let reported: BTreeSet<String> = names.iter().cloned().collect();
        prop_assert_eq!(reported.len(), names.len(), "a client reported twice: {:?}", names);
        prop_assert_eq!(&reported, &expected);
        for name in &names {
            prop_assert!(!name.chars().any(char::is_control), "{:?}", name);
            let raw = walwarden::display::unescape_name(name);
            prop_assert!(fs::symlink_metadata(root.join(raw)).is_ok(), "{} names no entry", name);
        }
        let mut series = BTreeSet::new();
        for line in metrics.lines().filter(|l| !l.starts_with('#')) {
            prop_assert!(!line.chars().any(char::is_control), "{:?}", line);
            let (series_name, _) = line.rsplit_once(' ').unwrap();
            prop_assert!(series.insert(series_name.to_owned()), "duplicate series {}", series_name);
        }
        // The locked folders are root's to remove.
        for spec in &clients {
            let dir = root.join(OsStr::from_bytes(&spec.name));
            if spec.locked && fs::symlink_metadata(&dir).is_ok_and(|m| m.is_dir()) {
                use std::os::unix::fs::PermissionsExt;
                let _ = fs::set_permissions(&dir, fs::Permissions::from_mode(0o700));
            }
        }
    }
}

/// Arbitrary text with the shapes the parsers look for mixed in.
fn text() -> impl Strategy<Value = String> {
    let line = prop_oneof![
        any::<String>(),
        "(START|STOP|CHECKPOINT) (WAL )?LOCATION: [0-9A-F/]{0,20}( \\(file [0-9A-F]{0,26}\\))?",
        "(START|STOP) TIME: [0-9: -]{0,22}(UTC|CET)?",
        "START TIMELINE: [0-9]{0,12}",
        "[0-9]{0,12}\t[0-9A-F]{0,9}/[0-9A-F]{0,9}\t.{0,20}",
        "[a-z_]{1,20} ?= ?'?[^\n]{0,30}'?( #.*)?",
        "include(_if_exists|_dir)? '[^\n]{0,20}'",
        "[0-9-]{0,10} [0-9:.]{0,15} UTC \\[[0-9]{1,6}\\] (LOG|FATAL|ERROR|PANIC):  .{0,60}",
    ];
    prop::collection::vec(line, 0..12).prop_map(|lines| lines.join("\n"))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(256), ..ProptestConfig::default() })]

    #[test]
    fn every_parser_takes_any_text_without_panic(text in text()) {
        use walwarden::archive::base_backup::BackupLabel;
        use walwarden::archive::wal::{self, Lsn, RawSegmentName, WalFileKind};
        use walwarden::ops::restore::{host_settings, recovery_conf};
        let _ = BackupLabel::parse(&text);
        let _ = wal::parse_timeline_history(&text);
        let _ = host_settings::parse_conf(&text);
        let _ = walwarden::archive::manifest::BackupManifest::parse(text.as_bytes());
        for line in text.lines() {
            let _ = WalFileKind::classify(line);
            let _ = RawSegmentName::parse(line).map(|raw| (raw.resolve(SEG), raw.resolve(1 << 30)));
            let _ = Lsn::parse(line);
            let _ = recovery_conf::parse_set(line);
            let _ = recovery_conf::parse_target_time(line);
            let _ = walwarden::pg::pglog::classify(line);
            let shown = walwarden::display::escape_str(line);
            prop_assert_eq!(walwarden::display::unescape_name(&shown), OsStr::new(line));
        }
    }

    #[test]
    fn page_headers_and_records_take_any_bytes_without_panic(
        segno in 0u64..0x40,
        flips in prop::collection::vec((0usize..65536, any::<u8>()), 0..32),
        cut in 0usize..65536,
        noise in prop::collection::vec(any::<u8>(), 0..4096),
    ) {
        use walwarden::archive::wal::LongPageHeader;
        let cluster = Cluster::new(SYSTEM, SEG);
        // A real segment's first pages (headers, records), mangled here and there.
        let mut bytes = cluster.segment_bytes(cluster.id(1, segno));
        bytes.truncate(65536);
        for (at, byte) in flips {
            bytes[at] = byte;
        }
        bytes.truncate(cut.max(1));
        let _ = LongPageHeader::parse(&bytes);
        let _ = walwarden::archive::records::scan_segment(&bytes);
        let _ = LongPageHeader::parse(&noise);
        let _ = walwarden::archive::records::scan_segment(&noise);
    }
}
