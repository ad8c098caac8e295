//! The archive_command `walwarden setup` prints, run by a real PostgreSQL 15
//! through a real sshd on loopback, in the situations that break the
//! tutorial's `test ! -f` command: a retry after a lost exit status (the
//! same file again), another server's file under the same name, and a
//! backup server that stops answering. Plus: postgresql.conf reads the
//! printed line back exactly, backslashes and quotes in the path included.
//! Fails, not skips, without PostgreSQL or sshd.

mod support;

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use support::pg::{give_to_pg_user, pg_command};
use support::sshd::TestSshd;
use support::{PgCluster, RunningServer, pg_tempdir, require_pg_bin, run_as_pg_user};
use walwarden::ops::setup::ArchiveRoute;

const WAIT: Duration = Duration::from_secs(120);

/// A target server (PostgreSQL 15 as the PostgreSQL user) archiving with
/// the printed command into `wal/` of a temp backup root, over `sshd`.
struct Target {
    _tmp: tempfile::TempDir,
    wal: PathBuf,
    route: ArchiveRoute,
    cluster: PgCluster,
}

fn target(sshd: &TestSshd, wal_name: &str) -> Target {
    let tmp = pg_tempdir("walwarden-archive-command-");
    let wal = tmp.path().join("backups").join(wal_name).join("wal");
    fs::create_dir_all(&wal).unwrap();
    // The target's postgres user sends with its own copy of the key and trusts the host key.
    let key = tmp.path().join("id_ed25519");
    fs::copy(&sshd.client_key, &key).unwrap();
    let known_hosts = tmp.path().join("known_hosts");
    fs::copy(&sshd.known_hosts, &known_hosts).unwrap();
    for file in [&key, &known_hosts] {
        give_to_pg_user(file, 0o600);
    }
    let route = ArchiveRoute {
        user: sshd.user.clone(),
        backup_host: "127.0.0.1".into(),
        ssh_port: Some(sshd.port),
        identity: Some(key),
        known_hosts: Some(known_hosts),
        ssh_config: Some(PathBuf::from("/dev/null")),
        base_dir: wal.with_file_name("base"),
        wal_dir: wal.clone(),
        compress: true,
        archive_timeout: 60,
        // The tutorial's shell access (`setup --shell-access`); the receiver has its own tests.
        via_receiver: false,
    };
    let bin = require_pg_bin(15);
    let cluster = PgCluster::initdb(15, &bin, tmp.path(), &[]);
    cluster.append_conf(&route.conf_lines());
    Target {
        _tmp: tmp,
        wal,
        route,
        cluster,
    }
}

/// (archived_count, failed_count) of pg_stat_archiver.
fn archiver(server: &RunningServer) -> (u64, u64) {
    let text = server.psql("select archived_count || ' ' || failed_count from pg_stat_archiver");
    let (archived, failed) = text.split_once(' ').unwrap();
    (archived.parse().unwrap(), failed.parse().unwrap())
}

fn wait_for(what: &str, server: &RunningServer, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !done() {
        assert!(
            Instant::now() < deadline,
            "{what} did not happen within {WAIT:?}\n--- server log ---\n{}",
            server.cluster.log_tail(40)
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Marks `segment` as not archived yet, as after an archive_command whose
/// success PostgreSQL never heard of: the archiver sends it again.
fn archive_again(cluster: &PgCluster, segment: &str) {
    let status = cluster.data_dir.join("pg_wal/archive_status");
    let out = run_as_pg_user(
        Command::new("mv")
            .arg(status.join(format!("{segment}.done")))
            .arg(status.join(format!("{segment}.ready"))),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn ready(cluster: &PgCluster, segment: &str) -> bool {
    cluster
        .data_dir
        .join(format!("pg_wal/archive_status/{segment}.ready"))
        .exists()
}

#[test]
fn a_retry_after_a_lost_exit_status_succeeds_and_other_content_is_refused() {
    let sshd = TestSshd::start();
    let target = target(&sshd, "retry");
    let server = target.cluster.start();
    server.psql("create table t as select g from generate_series(1, 1000) g");
    let first = server.switch_wal();
    server.wait_archived(&target.wal, &first, WAIT);
    let archived = target.wal.join(format!("{first}.gz"));
    let original = fs::read(&archived).unwrap();

    // The copy landed but PostgreSQL did not hear so: the same file comes again.
    archive_again(&target.cluster, &first);
    let (_, failed_before) = archiver(&server);
    server.switch_wal();
    wait_for("the retry of the identical file", &server, || {
        !ready(&target.cluster, &first)
    });
    assert_eq!(
        archiver(&server).1,
        failed_before,
        "an identical retry is a success"
    );
    assert_eq!(fs::read(&archived).unwrap(), original);

    // Another server's file under that name: refused, said in the log, kept as it is.
    let mut other = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    other.write_all(b"another server's segment").unwrap();
    let other = other.finish().unwrap();
    fs::write(&archived, &other).unwrap();
    archive_again(&target.cluster, &first);
    server.switch_wal();
    wait_for("the refusal", &server, || {
        archiver(&server).1 > failed_before
    });
    let log = target.cluster.log_tail(200);
    assert!(
        log.contains("already archived with other content: not overwritten"),
        "{log}"
    );
    assert_eq!(fs::read(&archived).unwrap(), other, "never overwritten");
    assert!(
        ready(&target.cluster, &first),
        "still waiting to be archived"
    );
    let leftovers: Vec<String> = fs::read_dir(&target.wal)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".part"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    server.stop();
}

#[test]
fn a_backup_server_that_stops_answering_fails_the_command_instead_of_hanging() {
    let sshd = TestSshd::start();
    let target = target(&sshd, "frozen");
    let server = target.cluster.start();
    server.psql("create table t as select g from generate_series(1, 1000) g");
    let first = server.switch_wal();
    server.wait_archived(&target.wal, &first, WAIT);

    sshd.freeze();
    let (_, failed_before) = archiver(&server);
    server.psql("insert into t select g from generate_series(1, 1000) g");
    let second = server.switch_wal();
    // ConnectTimeout ends the attempt; PostgreSQL counts it or logs ssh's 255.
    wait_for(
        "a failed attempt against the silent server",
        &server,
        || {
            archiver(&server).1 > failed_before
                || target
                    .cluster
                    .log_tail(50)
                    .contains("archive command failed with exit code 255")
        },
    );
    sshd.thaw();
    server.wait_archived(&target.wal, &second, WAIT);
    server.stop();
}

#[test]
fn postgresql_reads_the_printed_line_back_with_quotes_and_backslashes() {
    let sshd = TestSshd::start();
    let mut target = target(&sshd, "plain");
    target.route.wal_dir = PathBuf::from("/srv/o'brien's \\ backups 100%/wal");
    let line = target.route.conf_lines();
    let conf = target.cluster.data_dir.join("postgresql.conf");
    let mut text = fs::read_to_string(&conf).unwrap();
    text.push_str(&line);
    fs::write(&conf, text).unwrap();
    let read = read_setting(
        &target.cluster.bin,
        &target.cluster.data_dir,
        "archive_command",
    );
    assert_eq!(read, target.route.archive_command());
    assert!(
        target.route.expanded_archive_command_len() < 1023,
        "PostgreSQL 15 would cut it"
    );
}

/// `postgres -C NAME -D DATA`, as the PostgreSQL user.
fn read_setting(bin: &Path, data: &Path, name: &str) -> String {
    let out = run_as_pg_user(
        pg_command(bin, "postgres")
            .arg("-C")
            .arg(name)
            .arg("-D")
            .arg(data),
    );
    assert!(
        out.status.success(),
        "postgres -C refused the printed lines: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .trim_end_matches('\n')
        .to_owned()
}
