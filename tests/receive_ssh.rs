//! The receiver behind a real sshd, as a client's key reaches it: real OS
//! users made by `walwarden setup` (removed afterwards), a throwaway sshd on
//! loopback reading each user's own authorized_keys with StrictModes, the
//! forced-command line from `receiver_lines::authorized_keys_line`, and a real
//! PostgreSQL 15 whose archive_command is `ArchiveRoute::archive_command_setting` (through the receiver).
//! Then, with that same key, everything else a compromised client would try.
//! Runs as root (CI does); fails, never skips, without sshd or PostgreSQL.

mod receive_common;
mod support;

use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use receive_common::{WALWARDEN, gzip_level, snapshot, text};
use support::pg::{
    PgCluster, give_to_pg_user, is_root, pg_tempdir, require_pg_bin, run_as_pg_user,
};
use support::sshd::{SshdOptions, TestSshd, keygen};
use walwarden::archive::watch::{RootWatcher, WalChange};
use walwarden::ops::setup::receiver_lines::{ForcedCommand, authorized_keys_line};
use walwarden::ops::setup::{ArchiveRoute, PublicKey, SetupRequest};

/// An OS user made by setup: its processes (sshd sessions) stopped by pid,
/// then the user and its group removed.
struct UserGuard(String);

impl Drop for UserGuard {
    fn drop(&mut self) {
        if let Some(uid) = walwarden::ops::setup::lookup_uid(&self.0) {
            for pid in pids_of_uid(uid) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
        let _ = Command::new("userdel")
            .arg(&self.0)
            .stderr(Stdio::null())
            .status();
    }
}

fn pids_of_uid(uid: u32) -> Vec<i32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            fs::read_to_string(format!("/proc/{pid}/status"))
                .ok()
                .and_then(|s| {
                    let line = s.lines().find(|l| l.starts_with("Uid:"))?;
                    line.split_whitespace().nth(1)?.parse::<u32>().ok()
                })
                == Some(uid)
        })
        .collect()
}

fn unique_client(tag: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("ww{tag}{:05x}", (std::process::id() ^ nanos) & 0xfffff)
}

fn give_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

fn setup(root: &Path, client: &str, home: &Path, extra: &[&str]) {
    let out = Command::new(WALWARDEN)
        .args(["--config", "/dev/null", "--root"])
        .arg(root)
        .args(["setup", client, "--home"])
        .arg(home)
        .args(extra)
        .args(["--yes"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "setup {client}: {}", text(&out));
}

/// The client's key, as a compromised target would use it.
struct Key {
    identity: PathBuf,
    known_hosts: PathBuf,
    port: u16,
    user: String,
}

impl Key {
    fn options(&self) -> Vec<String> {
        vec![
            "-F".into(),
            "/dev/null".into(),
            "-i".into(),
            self.identity.display().to_string(),
            "-o".into(),
            format!("UserKnownHostsFile={}", self.known_hosts.display()),
            "-o".into(),
            "BatchMode=yes".into(),
        ]
    }

    fn ssh(&self) -> Command {
        let mut command = Command::new("ssh");
        command
            .args(self.options())
            .args(["-p", &self.port.to_string()])
            .arg(format!("{}@127.0.0.1", self.user));
        command
    }

    fn run(&self, remote: Option<&str>, input: &[u8]) -> Output {
        let mut command = self.ssh();
        if let Some(remote) = remote {
            command.arg(remote);
        }
        feed(command, input)
    }
}

fn feed(mut command: Command, input: &[u8]) -> Output {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let output = child.wait_with_output().unwrap();
    let _ = writer.join();
    output
}

fn inflate(path: &Path) -> Vec<u8> {
    let mut bytes = Vec::new();
    flate2::read::MultiGzDecoder::new(fs::File::open(path).unwrap())
        .read_to_end(&mut bytes)
        .unwrap();
    bytes
}

#[test]
fn postgresql_archives_through_the_receiver_and_its_key_can_do_nothing_else() {
    assert!(
        is_root(),
        "this test creates OS users: run it as root (CI does)"
    );
    let bin = require_pg_bin(15);
    let tmp = tempfile::Builder::new()
        .prefix("walwarden-receive-ssh-")
        .tempdir()
        .unwrap();
    give_mode(tmp.path(), 0o755);
    // The binary where the client's user can run it, as /usr/bin/walwarden would be.
    let program = tmp.path().join("walwarden");
    fs::copy(WALWARDEN, &program).unwrap();
    give_mode(&program, 0o755);
    let root = tmp.path().join("backups");
    let client = unique_client("r");
    let user = format!("{client}backup");
    let _guard = UserGuard(user.clone());
    let other = unique_client("o");
    let other_user = format!("{other}backup");
    let _other_guard = UserGuard(other_user.clone());

    let pg_side = pg_tempdir("walwarden-receive-target-");
    let key = keygen(pg_side.path(), "id_ed25519");
    let sshd = TestSshd::start_with(SshdOptions {
        own_keys_for: Some(vec![user.clone(), other_user.clone()]),
    });
    let known_hosts = pg_side.path().join("known_hosts");
    fs::copy(&sshd.known_hosts, &known_hosts).unwrap();
    for file in [&key, &known_hosts] {
        give_to_pg_user(file, 0o600);
    }
    let home = tmp.path().join("home").join(&user);
    let key_pub = key.with_extension("pub");
    setup(&root, &client, &home, &["--key", key_pub.to_str().unwrap()]);
    setup(
        &root,
        &other,
        &tmp.path().join("home").join(&other_user),
        &[],
    );
    let secret = root
        .join(&other)
        .join("wal")
        .join("000000010000000000000001.gz");
    fs::write(&secret, gzip_level(b"the other client's data", 6)).unwrap();

    // The receiver's line in place of setup's plain `restrict` one (setup
    // will write it itself): sshd reads it with StrictModes on.
    let public = PublicKey::parse(&fs::read_to_string(&key_pub).unwrap(), "key").unwrap();
    let line = authorized_keys_line(
        &public,
        &ForcedCommand {
            program: program.clone(),
            root: root.clone(),
            client: client.clone(),
            config: None,
        },
    )
    .unwrap();
    let authorized = home.join(".ssh/authorized_keys");
    fs::write(&authorized, format!("{line}\n")).unwrap();
    assert_eq!(fs::metadata(&authorized).unwrap().mode() & 0o777, 0o600);

    // The dashboard's live view, watching the root while segments arrive.
    let changes: Arc<Mutex<Vec<WalChange>>> = Arc::default();
    let seen = changes.clone();
    let _watcher = RootWatcher::start(&root, move |c| seen.lock().unwrap().push(c)).unwrap();

    let mut route =
        ArchiveRoute::for_request(&SetupRequest::new(&root, &client).unwrap(), "127.0.0.1");
    route.ssh_port = Some(sshd.port);
    route.identity = Some(key.clone());
    route.known_hosts = Some(known_hosts.clone());
    route.ssh_config = Some("/dev/null".into());
    let cluster = PgCluster::initdb(15, &bin, pg_side.path(), &[]);
    cluster.append_conf(&format!(
        "wal_level = replica\narchive_mode = on\narchive_timeout = 60\n{}\n",
        route.archive_command_setting()
    ));
    let server = cluster.start();
    let wal_dir = root.join(&client).join("wal");
    server.psql("create table t as select g from generate_series(1, 10000) g");
    let first = server.switch_wal();
    server.wait_archived(&wal_dir, &first, Duration::from_secs(60));
    server.psql("insert into t select g from generate_series(1, 10000) g");
    let second = server.switch_wal();
    server.wait_archived(&wal_dir, &second, Duration::from_secs(60));
    let stats = server.psql("select archived_count || ' ' || failed_count from pg_stat_archiver");
    let (archived, failed) = stats.trim().split_once(' ').unwrap();
    assert!(archived.parse::<u32>().unwrap() >= 2, "{stats}");
    assert_eq!(failed, "0", "{stats}\n{}", cluster.log_tail(40));
    let arrived = fs::metadata(wal_dir.join(format!("{second}.gz"))).unwrap();
    assert_eq!(
        arrived.uid(),
        walwarden::ops::setup::lookup_uid(&user).unwrap()
    );

    // The base backup, sent with the printed upload line, as postgres on the target.
    let scratch = pg_side.path().join("basebackup");
    let out = run_as_pg_user(
        cluster
            .cmd("pg_basebackup")
            .arg("-h")
            .arg(&cluster.socket_dir)
            .args(["-p", &cluster.port.to_string(), "-U", "postgres"])
            .args([
                "--format=tar",
                "--gzip",
                "--checkpoint=fast",
                "--label=base_backup",
                "-D",
            ])
            .arg(&scratch),
    );
    assert!(out.status.success(), "pg_basebackup: {}", text(&out));
    let upload = &route.base_commands(scratch.to_str().unwrap())[1];
    let out = run_as_pg_user(Command::new("sh").arg("-c").arg(upload));
    assert!(out.status.success(), "{upload}\n{}", text(&out));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("matched its backup_manifest")
            && said.contains("now the current base backup"),
        "{said}"
    );
    for file in ["base.tar.gz", "pg_wal.tar.gz", "backup_manifest"] {
        assert_eq!(
            fs::read(root.join(&client).join("base").join(file)).unwrap(),
            fs::read(scratch.join(file)).unwrap(),
            "{file}"
        );
    }

    // The catalog and the live view see what arrived.
    let deadline = Instant::now() + Duration::from_secs(10);
    let arrivals = |name: &str| {
        changes.lock().unwrap().iter().any(|c| {
            matches!(c, WalChange::Arrived { client: c, name: n, .. } if *c == client && n == name)
        })
    };
    while !(arrivals(&format!("{first}.gz")) && arrivals(&format!("{second}.gz"))) {
        assert!(
            Instant::now() < deadline,
            "the live view missed an arrival: {:?}",
            changes.lock().unwrap()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let check_home = tempfile::tempdir().unwrap();
    let (_, doc) = support::check::check_json(&root, check_home.path(), &[]);
    let entry = doc["clients"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == client.as_str())
        .unwrap()
        .clone();
    assert!(entry["wal"]["segments"].as_u64().unwrap() >= 2, "{entry:#}");
    assert!(
        entry["wal"]["last"].as_str().unwrap() >= second.as_str(),
        "{entry:#}"
    );
    let problems: Vec<(String, String)> = entry["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["code"].as_str().unwrap().to_owned(),
                p["message"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    // The receiver's own folder is known to the catalog: nothing to report.
    assert!(problems.is_empty(), "{problems:?}");
    eprintln!("check --json problems for the client: {problems:?}");

    // The server stops archiving: from here the archive changes only by what the key does.
    server.stop();

    // Now the same key, used by whoever holds the target server.
    let key = Key {
        identity: key.clone(),
        known_hosts: known_hosts.clone(),
        port: sshd.port,
        user: user.clone(),
    };
    let stored = format!("{first}.gz");
    let local = tmp.path().join(&stored);
    fs::write(&local, b"ransomware was here").unwrap();
    give_mode(&local, 0o644);
    let before = snapshot(&root);
    let refused = |out: &Output, what: &str| {
        assert!(!out.status.success(), "{what}: {}", text(out));
        assert_eq!(snapshot(&root), before, "{what} changed the archive");
    };
    for remote in [
        "rm -rf wal base".to_owned(),
        format!("cat > wal/{stored}"),
        "ls -la wal".to_owned(),
        format!("cat ../{other}/wal/000000010000000000000001.gz"),
        format!("put-wal ../{other}/wal/000000010000000000000001.gz"),
        format!("put-wal {first}.gz; rm -rf wal"),
    ] {
        let out = key.run(Some(&remote), b"ransomware was here");
        refused(&out, &remote);
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("walwarden receive: refused"),
            "{}",
            text(&out)
        );
        assert!(
            out.stdout.is_empty(),
            "{remote} read something: {}",
            text(&out)
        );
    }
    // An interactive shell, with or without a terminal.
    refused(&key.run(None, b"rm -rf wal\nexit\n"), "a shell");
    let mut tty = key.ssh();
    tty.arg("-tt");
    refused(&feed(tty, b"rm -rf wal\nexit\n"), "a shell with -tt");
    // scp (SFTP protocol, and the legacy one) and sftp of an existing name.
    let target = format!("{}@127.0.0.1:wal/{stored}", key.user);
    for legacy in [false, true] {
        let mut scp = Command::new("scp");
        if legacy {
            scp.arg("-O");
        }
        scp.args(key.options())
            .args(["-P", &sshd.port.to_string()])
            .arg(&local)
            .arg(&target);
        refused(&feed(scp, b""), if legacy { "scp -O" } else { "scp" });
    }
    let batch = tmp.path().join("sftp-batch");
    fs::write(
        &batch,
        format!("put {} wal/{stored}\nrm wal/{second}.gz\n", local.display()),
    )
    .unwrap();
    let mut sftp = Command::new("sftp");
    sftp.args(key.options())
        .args(["-P", &sshd.port.to_string(), "-b"])
        .arg(&batch)
        .arg(format!("{}@127.0.0.1", key.user));
    refused(&feed(sftp, b""), "sftp");
    assert_eq!(
        fs::read(&secret).unwrap(),
        gzip_level(b"the other client's data", 6)
    );

    // PostgreSQL's retry after a lost exit status: the identical file answers 0;
    // other content under its name is refused and the stored file kept.
    let stored_path = wal_dir.join(&stored);
    let out = key.run(
        Some(&format!("put-wal {stored}")),
        &fs::read(&stored_path).unwrap(),
    );
    assert!(out.status.success(), "{}", text(&out));
    let mut content = inflate(&stored_path);
    content[3_000_000] ^= 0xFF;
    let out = key.run(Some(&format!("put-wal {stored}")), &gzip_level(&content, 1));
    refused(&out, "a conflicting re-send");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("[rejected_overwrite]"),
        "{}",
        text(&out)
    );

    // A real segment of another cluster (a fresh initdb's first one).
    let foreign = support::initdb_segment(15, None);
    let out = key.run(
        Some(&format!("put-wal {}.gz", foreign.segment_name)),
        &gzip_level(&fs::read(&foreign.segment).unwrap(), 1),
    );
    refused(&out, "a foreign segment");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("[foreign_segment]"),
        "{}",
        text(&out)
    );

    // The sender killed mid-stream: nothing of the upload stays.
    let mut big = inflate(&wal_dir.join(format!("{second}.gz")));
    let next = walwarden::archive::wal::RawSegmentName::parse(&second)
        .unwrap()
        .resolve(16 << 20)
        .unwrap()
        .segment;
    // Far ahead of anything the server archived, so the name is free.
    let next = walwarden::archive::wal::SegmentNo(next.0 + 100);
    big[8..16].copy_from_slice(&next.start_lsn(16 << 20).0.to_le_bytes());
    let mut x = 0x9E37_79B9u32;
    for byte in big[1 << 20..].iter_mut() {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        *byte = x as u8;
    }
    let next_name = walwarden::archive::wal::SegmentId {
        timeline: walwarden::archive::wal::Timeline(1),
        segment: next,
    }
    .file_name(16 << 20);
    let gz = gzip_level(&big, 1);
    let mut sender = key
        .ssh()
        .arg(format!("put-wal {next_name}.gz"))
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut pipe = sender.stdin.take().unwrap();
    pipe.write_all(&gz[..gz.len() / 2]).unwrap();
    pipe.flush().unwrap();
    let part = wal_dir.join(format!("{next_name}.gz.part"));
    let deadline = Instant::now() + Duration::from_secs(20);
    while !part.exists() {
        assert!(Instant::now() < deadline, "the upload never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    sender.kill().unwrap();
    let _ = sender.wait();
    drop(pipe);
    // The receiver notices the end of its stdin, removes the part, then logs.
    let logged = || {
        walwarden::ops::receive::refusals(&root.join(&client))
            .iter()
            .any(|r| r.code_text == "corrupt_upload")
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while part.exists() || !logged() {
        assert!(
            Instant::now() < deadline,
            "the cut upload's part file stayed ({}) or was not logged",
            part.exists()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!wal_dir.join(format!("{next_name}.gz")).exists());

    let refusals = walwarden::ops::receive::refusals(&root.join(&client));
    let codes: Vec<&str> = refusals.iter().map(|r| r.code_text.as_str()).collect();
    for code in [
        "not_allowed",
        "bad_name",
        "rejected_overwrite",
        "foreign_segment",
        "corrupt_upload",
    ] {
        assert!(codes.contains(&code), "{code} not logged: {codes:?}");
    }
    drop(sshd);
}
