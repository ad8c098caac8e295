//! A synthetic backup root that looks like the real thing: tarballs with a
//! backup label, PG_VERSION and pg_control, segments with valid long page
//! headers, gzip'ed as archive_command writes them. Used by `walwarden demo`
//! and by the tests' fixture builder.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use flate2::Compression;
use flate2::write::GzEncoder;

use crate::archive::folder::{base_dir, wal_dir};
use crate::archive::wal::{Lsn, SegmentId, SegmentNo, Timeline, magic_for_major_version};

/// The identity of a synthetic cluster.
#[derive(Debug, Clone, Copy)]
pub struct Cluster {
    pub system_identifier: u64,
    pub major: u32,
    pub seg_size: u32,
}

impl Cluster {
    pub fn new(system_identifier: u64, seg_size: u32) -> Cluster {
        Cluster {
            system_identifier,
            major: 15,
            seg_size,
        }
    }

    /// The first 40 bytes of a segment: the long page header PostgreSQL writes.
    pub fn segment_header(&self, id: SegmentId) -> [u8; 40] {
        let mut header = [0u8; 40];
        let magic = magic_for_major_version(self.major).unwrap_or(0xD110);
        header[0..2].copy_from_slice(&magic.to_le_bytes());
        header[2..4].copy_from_slice(&0x0006u16.to_le_bytes());
        header[4..8].copy_from_slice(&id.timeline.0.to_le_bytes());
        header[8..16].copy_from_slice(&id.segment.start_lsn(self.seg_size).0.to_le_bytes());
        header[24..32].copy_from_slice(&self.system_identifier.to_le_bytes());
        header[32..36].copy_from_slice(&self.seg_size.to_le_bytes());
        header[36..40].copy_from_slice(&8192u32.to_le_bytes());
        header
    }

    /// A whole segment's bytes: the header, then zeros (an idle segment).
    pub fn segment_bytes(&self, id: SegmentId) -> Vec<u8> {
        let mut bytes = vec![0u8; self.seg_size as usize];
        bytes[..40].copy_from_slice(&self.segment_header(id));
        bytes
    }

    pub fn id(&self, timeline: u32, segment: u64) -> SegmentId {
        SegmentId {
            timeline: Timeline(timeline),
            segment: SegmentNo(segment),
        }
    }

    /// Writes `wal/<name>.gz` the way archive_command does: `.part`, sync, rename.
    pub fn archive_segment(
        &self,
        wal_dir: &Path,
        id: SegmentId,
        mtime: Option<SystemTime>,
    ) -> io::Result<PathBuf> {
        let name = format!("{}.gz", id.file_name(self.seg_size));
        write_part_then_rename(wal_dir, &name, &gzip(&self.segment_bytes(id))?, mtime)
    }

    /// Writes an uncompressed segment, as a plain `cp`-style archive_command would.
    pub fn archive_plain_segment(
        &self,
        wal_dir: &Path,
        id: SegmentId,
        mtime: Option<SystemTime>,
    ) -> io::Result<PathBuf> {
        write_part_then_rename(
            wal_dir,
            &id.file_name(self.seg_size),
            &self.segment_bytes(id),
            mtime,
        )
    }

    /// The backup label pg_basebackup writes for a backup starting at `start`.
    pub fn backup_label(&self, start: SegmentId, start_time: SystemTime) -> String {
        let lsn = Lsn(start.segment.start_lsn(self.seg_size).0 + 0x28);
        format!(
            "START WAL LOCATION: {lsn} (file {})\nCHECKPOINT LOCATION: {lsn}\nBACKUP METHOD: streamed\nBACKUP FROM: primary\nSTART TIME: {} UTC\nLABEL: base_backup\nSTART TIMELINE: {}\n",
            start.file_name(self.seg_size),
            pg_time(start_time),
            start.timeline.0
        )
    }

    /// Writes base/base.tar.gz, base/pg_wal.tar.gz and the `.backup` history
    /// file for a backup from `start` to `stop` (inclusive segments).
    pub fn write_base_backup(
        &self,
        client_dir: &Path,
        start: SegmentId,
        stop: SegmentId,
        taken: SystemTime,
    ) -> io::Result<()> {
        self.write_base_backup_with(client_dir, start, stop, taken, &[])
    }

    /// `write_base_backup`, with more files in base.tar.gz (a
    /// postgresql.conf of the source server, say), as `(path, content)`.
    pub fn write_base_backup_with(
        &self,
        client_dir: &Path,
        start: SegmentId,
        stop: SegmentId,
        taken: SystemTime,
        extra: &[(&str, &str)],
    ) -> io::Result<()> {
        let base_dir = base_dir(client_dir);
        let wal_dir = wal_dir(client_dir);
        fs::create_dir_all(&base_dir)?;
        fs::create_dir_all(&wal_dir)?;
        let label = self.backup_label(start, taken);
        let mut control = vec![0u8; 8192];
        control[0..8].copy_from_slice(&self.system_identifier.to_le_bytes());
        control[8..12].copy_from_slice(&1300u32.to_le_bytes());
        control[12..16].copy_from_slice(&202209061u32.to_le_bytes());
        let mut base = tar::Builder::new(GzEncoder::new(Vec::new(), Compression::fast()));
        append(&mut base, "backup_label", label.as_bytes(), taken)?;
        append(&mut base, "tablespace_map", b"", taken)?;
        append(
            &mut base,
            "PG_VERSION",
            format!("{}\n", self.major).as_bytes(),
            taken,
        )?;
        append(&mut base, "global/1262", &vec![0u8; 8192], taken)?;
        append(&mut base, "base/1/1259", &vec![0u8; 65536], taken)?;
        append(
            &mut base,
            "postgresql.auto.conf",
            b"# Do not edit this file manually!\n",
            taken,
        )?;
        for (path, content) in extra {
            append(&mut base, path, content.as_bytes(), taken)?;
        }
        append(&mut base, "global/pg_control", &control, taken)?;
        let bytes = base.into_inner()?.finish()?;
        write_part_then_rename(&base_dir, "base.tar.gz", &bytes, Some(taken))?;

        let mut pg_wal = tar::Builder::new(GzEncoder::new(Vec::new(), Compression::fast()));
        for segno in start.segment.0..=stop.segment.0 {
            let id = SegmentId {
                segment: SegmentNo(segno),
                ..start
            };
            append(
                &mut pg_wal,
                &id.file_name(self.seg_size),
                &self.segment_bytes(id),
                taken,
            )?;
        }
        let bytes = pg_wal.into_inner()?.finish()?;
        write_part_then_rename(&base_dir, "pg_wal.tar.gz", &bytes, Some(taken))?;

        let stop_lsn = Lsn(stop.segment.start_lsn(self.seg_size).0 + 0x138);
        let history = format!(
            "{label}STOP WAL LOCATION: {stop_lsn} (file {})\nSTOP TIME: {} UTC\nSTOP TIMELINE: {}\n",
            stop.file_name(self.seg_size),
            pg_time(taken + Duration::from_secs(7)),
            stop.timeline.0
        );
        let name = format!("{}.{:08X}.backup.gz", start.file_name(self.seg_size), 0x28);
        write_part_then_rename(
            &wal_dir,
            &name,
            &gzip(history.as_bytes())?,
            Some(taken + Duration::from_secs(7)),
        )?;
        Ok(())
    }

    /// Writes `<tli>.history.gz` for a timeline that forked from its parent at `switch`.
    pub fn write_history(
        &self,
        wal_dir: &Path,
        timeline: u32,
        lines: &[(u32, Lsn)],
        mtime: SystemTime,
    ) -> io::Result<PathBuf> {
        let text: String = lines
            .iter()
            .map(|(parent, lsn)| format!("{parent}\t{lsn}\tno recovery target specified\n"))
            .collect();
        write_part_then_rename(
            wal_dir,
            &format!("{timeline:08X}.history.gz"),
            &gzip(text.as_bytes())?,
            Some(mtime),
        )
    }
}

fn append<W: Write>(
    builder: &mut tar::Builder<W>,
    path: &str,
    data: &[u8],
    mtime: SystemTime,
) -> io::Result<()> {
    let mut header = tar::Header::new_gnu();
    header.set_size(data.len() as u64);
    header.set_mode(0o600);
    header.set_mtime(
        mtime
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
    );
    header.set_cksum();
    builder.append_data(&mut header, path, data)
}

pub fn gzip(data: &[u8]) -> io::Result<Vec<u8>> {
    let mut encoder = GzEncoder::new(
        Vec::with_capacity(data.len() / 64 + 64),
        Compression::fast(),
    );
    encoder.write_all(data)?;
    encoder.finish()
}

/// `2026-11-25 13:08:37`, the form PostgreSQL writes in labels.
fn pg_time(time: SystemTime) -> String {
    humantime::format_rfc3339_seconds(time)
        .to_string()
        .trim_end_matches('Z')
        .replace('T', " ")
}

/// Writes `dir/name.part`, syncs it, renames it to `dir/name`: what archive_command does.
pub fn write_part_then_rename(
    dir: &Path,
    name: &str,
    bytes: &[u8],
    mtime: Option<SystemTime>,
) -> io::Result<PathBuf> {
    let part = dir.join(format!("{name}.part"));
    let path = dir.join(name);
    let mut file = File::create(&part)?;
    file.write_all(bytes)?;
    if let Some(mtime) = mtime {
        file.set_modified(mtime)?;
    }
    file.sync_all()?;
    drop(file);
    fs::rename(&part, &path)?;
    Ok(path)
}

pub fn set_mtime(path: &Path, mtime: SystemTime) -> io::Result<()> {
    File::options().write(true).open(path)?.set_modified(mtime)
}

/// The demo's clients and the config that goes with them.
pub struct DemoRoot {
    pub root: PathBuf,
    pub config: PathBuf,
    /// The client that keeps receiving segments while the demo runs.
    pub live_client: String,
    pub live_cluster: Cluster,
    pub next_live_segment: SegmentId,
}

/// acme's server configuration, as its base backup carries it.
pub const ACME_POSTGRESQL_CONF: &str = "# acme's primary (db-acme-1)
listen_addresses = 'localhost'
port = 5432
unix_socket_directories = '/run/postgresql-acme'
shared_buffers = 128MB
";

pub const DEMO_CONFIG: &str = r#"# walwarden demo configuration
[defaults]
archive_timeout = "1h"
stale_grace = "10m"
partial_grace = "10m"

[clients.acme]
archive_timeout = "1m"
stale_grace = "30s"

[clients.hooli]
[[clients.hooli.acknowledged_gaps]]
from = "000000010000000000000005"
note = "lost when the NFS mount hung on 2026-10-02; customer accepts restores only up to it until the next base backup"
"#;

/// Builds the demo root in `dir` (`dir/backups` and `dir/walwarden.toml`,
/// and `dir/nfs`, the "mount" one client's WAL is symlinked to), timed
/// relative to `now`: eight clients, every status among them.
pub fn build_demo(dir: &Path, now: SystemTime) -> io::Result<DemoRoot> {
    let root = dir.join("backups");
    fs::create_dir_all(&root)?;
    let minutes = |m: u64| now - Duration::from_secs(m * 60);
    let mb16 = 16 << 20;

    // acme: healthy, archiving every minute, live in the demo. Its server's
    // postgresql.conf names a socket folder this host lacks: the restore
    // wizard proposes the setting that makes it start here.
    let acme = Cluster::new(7712094032559808441, mb16);
    let dir_acme = root.join("acme");
    acme.write_base_backup_with(
        &dir_acme,
        acme.id(1, 7),
        acme.id(1, 8),
        minutes(21),
        &[("postgresql.conf", ACME_POSTGRESQL_CONF)],
    )?;
    for segno in 3..=26u64 {
        acme.archive_segment(
            &wal_dir(&dir_acme),
            acme.id(1, segno),
            Some(minutes(27 - segno)),
        )?;
    }

    // globex: archiving stopped three hours ago with a one-hour archive_timeout: critical.
    let globex = Cluster::new(7690000000000000001, mb16);
    let dir_globex = root.join("globex");
    globex.write_base_backup(
        &dir_globex,
        globex.id(1, 0x40),
        globex.id(1, 0x41),
        minutes(60 * 26),
    )?;
    for segno in 0x40..=0x52u64 {
        globex.archive_segment(
            &wal_dir(&dir_globex),
            globex.id(1, segno),
            Some(minutes(180 + (0x52 - segno) * 70)),
        )?;
    }

    // initech: a gap after the base backup: restorable only to before it.
    let initech = Cluster::new(7701111111111111111, mb16);
    let dir_initech = root.join("initech");
    initech.write_base_backup(
        &dir_initech,
        initech.id(1, 2),
        initech.id(1, 3),
        minutes(600),
    )?;
    for segno in (2..=20u64).filter(|s| !(9..=11).contains(s)) {
        initech.archive_segment(
            &wal_dir(&dir_initech),
            initech.id(1, segno),
            Some(minutes(600 - segno * 28)),
        )?;
    }

    // hooli: an old gap, acknowledged in the config; otherwise fine.
    let hooli = Cluster::new(7702222222222222222, mb16);
    let dir_hooli = root.join("hooli");
    fs::create_dir_all(wal_dir(&dir_hooli))?;
    for segno in (1..=14u64).filter(|s| *s != 5) {
        hooli.archive_segment(
            &wal_dir(&dir_hooli),
            hooli.id(1, segno),
            Some(minutes(360 - segno * 25)),
        )?;
    }
    hooli.write_base_backup(&dir_hooli, hooli.id(1, 1), hooli.id(1, 2), minutes(400))?;

    // umbrella: WAL arrives, but nobody copied the base backup over.
    let umbrella = Cluster::new(7703333333333333333, mb16);
    let dir_umbrella = root.join("umbrella");
    fs::create_dir_all(base_dir(&dir_umbrella))?;
    fs::create_dir_all(wal_dir(&dir_umbrella))?;
    for segno in 1..=6u64 {
        umbrella.archive_segment(
            &wal_dir(&dir_umbrella),
            umbrella.id(1, segno),
            Some(minutes(50 - segno * 5)),
        )?;
    }

    // wayne: 1 MiB segments (initdb --wal-segsize=1) and a restore that moved it to timeline 2.
    let wayne = Cluster::new(7704444444444444444, 1 << 20);
    let dir_wayne = root.join("wayne");
    let wayne_wal = wal_dir(&dir_wayne);
    wayne.write_base_backup(
        &dir_wayne,
        wayne.id(1, 0x10),
        wayne.id(1, 0x11),
        minutes(300),
    )?;
    for segno in 0x10..=0x18u64 {
        wayne.archive_segment(
            &wayne_wal,
            wayne.id(1, segno),
            Some(minutes(300 - (segno - 0x10) * 10)),
        )?;
    }
    wayne.write_history(&wayne_wal, 2, &[(1, Lsn(0x19 << 20))], minutes(160))?;
    for segno in 0x19..=0x24u64 {
        wayne.archive_segment(
            &wayne_wal,
            wayne.id(2, segno),
            Some(minutes(147 - (segno - 0x19) * 12)),
        )?;
    }

    // stark: healthy archive, but an interrupted transfer and the copy test's leftover.
    let stark = Cluster::new(7705555555555555555, mb16);
    let dir_stark = root.join("stark");
    stark.write_base_backup(&dir_stark, stark.id(1, 4), stark.id(1, 5), minutes(61))?;
    for segno in 4..=9u64 {
        stark.archive_segment(
            &wal_dir(&dir_stark),
            stark.id(1, segno),
            Some(minutes(60 - (segno - 4) * 10)),
        )?;
    }
    let part = wal_dir(&dir_stark).join(format!("{}.gz.part", stark.id(1, 10).file_name(mb16)));
    fs::write(&part, b"\x1f\x8b")?;
    set_mtime(&part, minutes(35))?;
    let leftover = wal_dir(&dir_stark).join("test.txt");
    fs::write(&leftover, b"test\n")?;
    set_mtime(&leftover, minutes(2000))?;

    // cyberdyne: healthy, but its wal/ was moved to an NFS mount and
    // symlinked back: walwarden never follows a link out of the root, so it
    // cannot tell whether archiving works: unknown. (A symlink, not a
    // folder of another owner, so the demo shows it when run as root too.)
    let cyberdyne = Cluster::new(7706666666666666666, mb16);
    let dir_cyberdyne = root.join("cyberdyne");
    let mount = dir.join("nfs").join("cyberdyne").join("wal");
    fs::create_dir_all(&mount)?;
    fs::create_dir_all(&dir_cyberdyne)?;
    let link = wal_dir(&dir_cyberdyne);
    if fs::symlink_metadata(&link).is_err() {
        std::os::unix::fs::symlink(Path::new("../../nfs/cyberdyne/wal"), &link)?;
    }
    cyberdyne.write_base_backup(
        &dir_cyberdyne,
        cyberdyne.id(1, 3),
        cyberdyne.id(1, 4),
        minutes(180),
    )?;
    for segno in 3..=20u64 {
        cyberdyne.archive_segment(
            &mount,
            cyberdyne.id(1, segno),
            Some(minutes(180 - (segno - 3) * 10)),
        )?;
    }

    let config = dir.join("walwarden.toml");
    fs::write(&config, DEMO_CONFIG)?;
    Ok(DemoRoot {
        root,
        config,
        live_client: "acme".into(),
        live_cluster: acme,
        next_live_segment: acme.id(1, 27),
    })
}

/// Keeps the live client receiving a segment every `every` until `stop` is set.
pub fn feed_live_client(
    demo: &DemoRoot,
    every: Duration,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<()> {
    let wal_dir = wal_dir(&demo.root.join(&demo.live_client));
    let cluster = demo.live_cluster;
    let mut next = demo.next_live_segment;
    std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            let mut waited = Duration::ZERO;
            while waited < every && !stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(100));
                waited += Duration::from_millis(100);
            }
            if stop.load(Ordering::Relaxed)
                || cluster.archive_segment(&wal_dir, next, None).is_err()
            {
                break;
            }
            next = SegmentId {
                segment: next.segment.next(),
                ..next
            };
        }
    })
}
