//! `walwarden setup` on this machine, as root (CI runs as root): real OS users
//! (removed afterwards), folders in a temp root, a real sshd on loopback that
//! reads each user's own authorized_keys with StrictModes, and a real
//! PostgreSQL 15 whose archive_command is the one setup printed.
//! Fails, not skips, when not root or when sshd / PostgreSQL are missing.

mod support;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use support::pg::{PgCluster, give_to_pg_user, is_root, pg_tempdir, require_pg_bin};
use support::sshd::{SshdOptions, TestSshd, keygen};
use walwarden::archive::catalog::{self, ScanOptions};

const WALWARDEN: &str = env!("CARGO_BIN_EXE_walwarden");

/// An OS user created by setup, removed (with its group) when dropped.
struct UserGuard(String);

impl Drop for UserGuard {
    fn drop(&mut self) {
        // sshd may still hold a session of the user for a moment.
        let _ = Command::new("pkill").args(["-u", &self.0]).status();
        let _ = Command::new("userdel")
            .arg(&self.0)
            .stderr(Stdio::null())
            .status();
    }
}

/// A client name no other test (or earlier run) uses: user names are machine-wide.
fn unique_client(tag: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("ww{tag}{:05x}", (std::process::id() ^ nanos) & 0xfffff)
}

fn require_root() {
    assert!(
        is_root(),
        "the onboarding tests create OS users and must run as root (CI does: `bash .ci/test`)"
    );
}

fn setup(root: &Path, client: &str, home: &Path, extra: &[&str]) -> Output {
    Command::new(WALWARDEN)
        .args(["--config", "/dev/null", "--root"])
        .arg(root)
        .arg("setup")
        .arg(client)
        .arg("--home")
        .arg(home)
        .args(extra)
        .stdin(Stdio::null())
        .output()
        .expect("run walwarden setup")
}

fn text(output: &Output) -> String {
    format!(
        "status {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Every path below `dirs` with owner, mode and (for files) content; directory
/// mtimes are left out (the copy test adds and removes a file on purpose).
fn state_of(dirs: &[&Path]) -> BTreeMap<PathBuf, (u32, u32, u32, Vec<u8>)> {
    let mut state = BTreeMap::new();
    let mut stack: Vec<PathBuf> = dirs.iter().map(|d| d.to_path_buf()).collect();
    while let Some(path) = stack.pop() {
        let meta = fs::symlink_metadata(&path).unwrap();
        let content = if meta.is_file() {
            fs::read(&path).unwrap()
        } else {
            Vec::new()
        };
        if meta.is_dir() {
            for entry in fs::read_dir(&path).unwrap() {
                stack.push(entry.unwrap().path());
            }
        }
        state.insert(
            path,
            (meta.uid(), meta.gid(), meta.mode() & 0o7777, content),
        );
    }
    state
}

fn passwd_line(user: &str) -> String {
    let out = Command::new("getent")
        .args(["passwd", user])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn uid_of(user: &str) -> u32 {
    walwarden::ops::setup::lookup_uid(user).unwrap_or_else(|| panic!("no user {user}"))
}

#[test]
fn setup_twice_changes_nothing_the_second_time_and_clients_cannot_read_each_other() {
    require_root();
    let tmp = tempfile::Builder::new()
        .prefix("walwarden-setup-")
        .tempdir()
        .unwrap();
    // tempfile makes 0700 folders: let the client users pass through, as /var/lib does.
    give_mode(tmp.path(), 0o755);
    let root = tmp.path().join("backups");
    let homes = tmp.path().join("home");
    let keys = tmp.path().join("keys");
    fs::create_dir_all(&keys).unwrap();
    let key = keygen(&keys, "target_ed25519");

    let client = unique_client("a");
    let user = format!("{client}backup");
    let _guard = UserGuard(user.clone());
    let home = homes.join(&user);
    let key_pub = key.with_extension("pub");
    let key_arg = key_pub.to_str().unwrap();

    // --dry-run changes nothing at all.
    let dry = setup(&root, &client, &home, &["--key", key_arg, "--dry-run"]);
    assert!(dry.status.success(), "{}", text(&dry));
    assert!(!root.exists(), "--dry-run created the root");
    assert!(passwd_line(&user).is_empty(), "--dry-run created the user");
    let dry_out = String::from_utf8_lossy(&dry.stdout);
    assert!(dry_out.contains("useradd --create-home"), "{dry_out}");
    assert!(dry_out.contains("--dry-run: nothing changed"), "{dry_out}");

    // First run: everything is made.
    let first = setup(&root, &client, &home, &["--key", key_arg, "--yes"]);
    assert!(first.status.success(), "{}", text(&first));
    let first_out = String::from_utf8_lossy(&first.stdout);
    // The key's powers are the receiver's: the copy test runs through it.
    assert_eq!(
        first_out
            .matches("ok: the receiver's copy-test wrote, synced, renamed, read back and removed")
            .count(),
        1,
        "{first_out}"
    );
    let uid = uid_of(&user);
    let client_dir = root.join(&client);
    for dir in [
        &client_dir,
        &client_dir.join("base"),
        &client_dir.join("wal"),
    ] {
        let meta = fs::metadata(dir).unwrap();
        assert_eq!(
            (meta.uid(), meta.mode() & 0o7777),
            (uid, 0o700),
            "{}",
            dir.display()
        );
        // The copy test left nothing behind.
        let left: Vec<_> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            // The receiver's own folder (its state) is expected in the client's.
            .filter(|n| n != "base" && n != "wal" && n != ".walwarden")
            .collect();
        assert!(left.is_empty(), "{} holds {left:?}", dir.display());
    }
    assert_eq!(
        fs::metadata(&root).unwrap().mode() & 0o001,
        0o001,
        "root not passable"
    );
    let ssh_dir = home.join(".ssh");
    let authorized = ssh_dir.join("authorized_keys");
    assert_eq!(fs::metadata(&ssh_dir).unwrap().mode() & 0o7777, 0o700);
    let auth_meta = fs::metadata(&authorized).unwrap();
    assert_eq!((auth_meta.uid(), auth_meta.mode() & 0o7777), (uid, 0o600));
    let key_text = fs::read_to_string(&key_pub).unwrap();
    let key_words: Vec<&str> = key_text.split_whitespace().collect();
    let auth_text = fs::read_to_string(&authorized).unwrap();
    // The key runs the receiver and nothing else.
    assert!(
        auth_text.starts_with("restrict,command=\"")
            && auth_text.contains(&format!(
                "receive --root {} --client {client}",
                root.display()
            ))
            && auth_text.ends_with(&format!(
                "\" {} {} {}\n",
                key_words[0], key_words[1], key_words[2]
            )),
        "{auth_text}"
    );
    let passwd = passwd_line(&user);
    assert!(
        passwd.ends_with(&format!(":{}:/bin/sh", home.display())),
        "{passwd}"
    );
    let groups = Command::new("id").args(["-nG", &user]).output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&groups.stdout).trim(),
        user,
        "not only its own group"
    );

    // Second run: nothing to do, nothing changed.
    let before = (state_of(&[&root, &home]), passwd_line(&user));
    let second = setup(&root, &client, &home, &["--key", key_arg, "--yes"]);
    assert!(second.status.success(), "{}", text(&second));
    let second_out = String::from_utf8_lossy(&second.stdout);
    assert!(second_out.contains("nothing to change"), "{second_out}");
    assert!(
        !second_out.contains("$ "),
        "second run planned actions:\n{second_out}"
    );
    assert_eq!((state_of(&[&root, &home]), passwd_line(&user)), before);

    // A loosened mode is put back, and only that.
    give_mode(&client_dir.join("wal"), 0o755);
    let third = setup(&root, &client, &home, &["--key", key_arg, "--yes"]);
    assert!(third.status.success(), "{}", text(&third));
    let third_out = String::from_utf8_lossy(&third.stdout);
    assert_eq!(third_out.matches("$ ").count(), 1, "{third_out}");
    assert!(third_out.contains("chmod 700"), "{third_out}");
    assert_eq!(
        fs::metadata(client_dir.join("wal")).unwrap().mode() & 0o7777,
        0o700
    );

    // A second client: neither user can read the other's folder.
    let other = unique_client("b");
    let other_user = format!("{other}backup");
    let _other_guard = UserGuard(other_user.clone());
    let other_home = homes.join(&other_user);
    let out = setup(&root, &other, &other_home, &["--yes"]);
    assert!(out.status.success(), "{}", text(&out));
    fs::write(root.join(&other).join("wal").join("secret"), "x").unwrap();
    for (who, folder) in [(&user, &other), (&other_user, &client)] {
        let listing = Command::new("runuser")
            .args(["-u", who, "--", "ls"])
            .arg(root.join(folder).join("wal"))
            .output()
            .unwrap();
        assert!(!listing.status.success(), "{who} could list {folder}/wal");
        assert!(
            String::from_utf8_lossy(&listing.stderr).contains("Permission denied"),
            "{}",
            String::from_utf8_lossy(&listing.stderr)
        );
    }
    let read = Command::new("runuser")
        .args(["-u", &user, "--", "cat"])
        .arg(root.join(&other).join("wal").join("secret"))
        .output()
        .unwrap();
    assert!(!read.status.success(), "{user} read another client's file");

    // Onboarding a client whose wal/ already holds an archive warns: a new
    // database system would collide with (or mix into) the old segments.
    fs::write(
        client_dir.join("wal").join("000000010000000000000001.gz"),
        "x",
    )
    .unwrap();
    let again = setup(&root, &client, &home, &["--dry-run"]);
    let again_out = String::from_utf8_lossy(&again.stdout);
    assert!(
        again_out.contains("WARNING:") && again_out.contains("already holds 1 WAL segments"),
        "{again_out}"
    );
}

#[test]
fn setup_refuses_a_private_key_and_a_root_nobody_can_enter() {
    require_root();
    let tmp = tempfile::Builder::new()
        .prefix("walwarden-setup-")
        .tempdir()
        .unwrap();
    let keys = tmp.path().join("keys");
    fs::create_dir_all(&keys).unwrap();
    let key = keygen(&keys, "k");
    let client = unique_client("c");
    let user = format!("{client}backup");
    let _guard = UserGuard(user.clone());
    give_mode(tmp.path(), 0o755);
    let out = setup(
        &tmp.path().join("r"),
        &client,
        &tmp.path().join("h"),
        &["--key", key.to_str().unwrap(), "--yes"],
    );
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("this is a private key"),
        "{}",
        text(&out)
    );
    assert!(
        passwd_line(&user).is_empty(),
        "a user was created before the refusal"
    );

    // A parent folder others cannot pass through: refused, nothing created.
    let closed = tmp.path().join("closed");
    fs::create_dir(&closed).unwrap();
    give_mode(&closed, 0o700);
    let out = setup(
        &closed.join("backups"),
        &client,
        &tmp.path().join("h"),
        &["--yes"],
    );
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("cannot pass through"), "{}", text(&out));
    assert!(!closed.join("backups").exists());
    assert!(passwd_line(&user).is_empty());
}

#[test]
fn the_printed_archive_command_archives_over_ssh_into_the_catalog() {
    require_root();
    let bin = require_pg_bin(15);
    let tmp = tempfile::Builder::new()
        .prefix("walwarden-setup-ssh-")
        .tempdir()
        .unwrap();
    give_mode(tmp.path(), 0o755);
    let root = tmp.path().join("backups");
    let client = unique_client("s");
    let user = format!("{client}backup");
    let _guard = UserGuard(user.clone());
    let home = tmp.path().join("home").join(&user);

    // The target's postgres user owns its key and known_hosts, as on a real target.
    let pg_side = pg_tempdir("walwarden-setup-target-");
    let key = keygen(pg_side.path(), "id_ed25519");
    let sshd = TestSshd::start_with(SshdOptions {
        own_keys_for: Some(vec![user.clone()]),
    });
    let known_hosts = pg_side.path().join("known_hosts");
    fs::copy(&sshd.known_hosts, &known_hosts).unwrap();
    for file in [&key, &known_hosts] {
        give_to_pg_user(file, 0o600);
    }

    let port = sshd.port.to_string();
    let out = setup(
        &root,
        &client,
        &home,
        &[
            "--key",
            key.with_extension("pub").to_str().unwrap(),
            "--backup-host",
            "127.0.0.1",
            "--ssh-port",
            &port,
            "--identity",
            key.to_str().unwrap(),
            "--known-hosts",
            known_hosts.to_str().unwrap(),
            // The target's postgres user has no ~/.ssh of its own here; -F keeps ssh from making one.
            "--ssh-config",
            "/dev/null",
            "--archive-timeout",
            "60",
            "--yes",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    // The postgresql.conf lines as printed, indentation removed: pasted as they are.
    let conf: String = stdout
        .lines()
        .map(str::trim_start)
        .filter(|l| {
            [
                "wal_level",
                "archive_mode",
                "archive_timeout",
                "archive_command",
            ]
            .iter()
            .any(|k| l.starts_with(&format!("{k} = ")))
        })
        .map(|l| format!("{l}\n"))
        .collect();
    assert_eq!(conf.lines().count(), 4, "{stdout}");
    assert!(
        conf.contains("-o ServerAliveCountMax=3 -F /dev/null -p") && conf.contains("put-wal %f.gz"),
        "{conf}"
    );

    let cluster = PgCluster::initdb(15, &bin, pg_side.path(), &[]);
    cluster.append_conf(&conf);
    let server = cluster.start();
    server.psql("create table t as select g from generate_series(1, 1000) g");
    let first = server.switch_wal();
    let wal_dir = root.join(&client).join("wal");
    server.wait_archived(&wal_dir, &first, Duration::from_secs(60));
    server.psql("insert into t select g from generate_series(1, 1000) g");
    let second = server.switch_wal();
    server.wait_archived(&wal_dir, &second, Duration::from_secs(60));
    let stats = server.psql("select archived_count || ' ' || failed_count from pg_stat_archiver");
    server.stop();

    let (archived, failed) = stats.trim().split_once(' ').unwrap();
    assert!(archived.parse::<u32>().unwrap() >= 2, "{stats}");
    assert_eq!(failed, "0", "{stats}\n{}", cluster.log_tail(40));
    // The files belong to the client's user: they came in over its ssh login.
    let arrived = fs::metadata(wal_dir.join(format!("{second}.gz"))).unwrap();
    assert_eq!(arrived.uid(), uid_of(&user));
    let scanned = catalog::scan_client(&root, &client, &ScanOptions::default()).unwrap();
    let names: Vec<String> = scanned
        .wal
        .segments
        .iter()
        .map(|s| s.name.to_string())
        .collect();
    for segment in [&first, &second] {
        assert!(names.contains(segment), "{segment} not in {names:?}");
    }
    assert!(scanned.wal.in_flight.is_empty() && scanned.wal.others.is_empty());
    assert_eq!(scanned.wal.segment_size, Some(16 * 1024 * 1024));
    drop(sshd);
}

fn give_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

/// Run without root, setup names the actions that need it and changes nothing.
/// (The binary is copied where the unprivileged user can run it.)
#[test]
fn without_root_setup_says_which_actions_need_it() {
    require_root();
    let tmp = tempfile::Builder::new()
        .prefix("walwarden-setup-noroot-")
        .tempdir()
        .unwrap();
    give_mode(tmp.path(), 0o755);
    let bin = tmp.path().join("walwarden");
    fs::copy(WALWARDEN, &bin).unwrap();
    give_mode(&bin, 0o755);
    let root = tmp.path().join("backups");
    let client = unique_client("n");
    let out = Command::new("runuser")
        .args(["-u", &support::pg::pg_user(), "--"])
        .arg(&bin)
        .args(["--config", "/dev/null", "--root"])
        .arg(&root)
        .args(["setup", &client, "--yes"])
        .env("RUST_BACKTRACE", "0")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let all = text(&out);
    assert!(!out.status.success(), "{all}");
    assert!(
        all.contains("these actions need root; run walwarden setup with sudo"),
        "{all}"
    );
    assert!(all.contains("useradd --create-home"), "{all}");
    assert!(!root.exists(), "nothing was created");
    assert!(passwd_line(&format!("{client}backup")).is_empty());
}

#[test]
fn a_shell_access_key_is_moved_to_the_receiver_once() {
    require_root();
    let tmp = tempfile::Builder::new()
        .prefix("walwarden-setup-move-")
        .tempdir()
        .unwrap();
    give_mode(tmp.path(), 0o755);
    let root = tmp.path().join("backups");
    let keys = tmp.path().join("keys");
    fs::create_dir_all(&keys).unwrap();
    let key = keygen(&keys, "target_ed25519");
    let key_arg = key.with_extension("pub");
    let key_arg = key_arg.to_str().unwrap();
    let client = unique_client("m");
    let user = format!("{client}backup");
    let _guard = UserGuard(user.clone());
    let home = tmp.path().join("home").join(&user);
    let authorized = home.join(".ssh/authorized_keys");

    // Onboarded the tutorial's way: the key may run any command.
    let shell = setup(
        &root,
        &client,
        &home,
        &["--key", key_arg, "--shell-access", "--yes"],
    );
    assert!(shell.status.success(), "{}", text(&shell));
    let shell_line = fs::read_to_string(&authorized).unwrap();
    assert!(shell_line.starts_with("restrict ssh-"), "{shell_line}");
    let shell_out = String::from_utf8_lossy(&shell.stdout);
    assert!(
        shell_out.contains("already archived with other content") && !shell_out.contains("put-wal"),
        "the shell archive_command is printed\n{shell_out}"
    );

    // setup again, the default way: the same key now runs the receiver only.
    let moved = setup(&root, &client, &home, &["--key", key_arg, "--yes"]);
    assert!(moved.status.success(), "{}", text(&moved));
    let moved_out = String::from_utf8_lossy(&moved.stdout);
    assert_eq!(
        moved_out.matches("$ ").count(),
        1,
        "one action: the key's line replaced\n{moved_out}"
    );
    let receiver_line = fs::read_to_string(&authorized).unwrap();
    assert!(
        receiver_line.starts_with("restrict,command=\"")
            && receiver_line.contains(" receive --root "),
        "{receiver_line}"
    );
    assert_eq!(receiver_line.lines().count(), 1, "replaced, not added");
    assert!(moved_out.contains("put-wal %f.gz"), "{moved_out}");

    // Once moved, nothing to change.
    let again = setup(&root, &client, &home, &["--key", key_arg, "--yes"]);
    let again_out = String::from_utf8_lossy(&again.stdout);
    assert!(again_out.contains("nothing to change"), "{again_out}");
    assert_eq!(fs::read_to_string(&authorized).unwrap(), receiver_line);
}
