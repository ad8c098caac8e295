//! `walwarden check --target` against a real PostgreSQL 15 reached through a
//! real sshd on loopback: a working archiver shows its counters; a broken
//! archive_command shows failed_count rising and the log's diagnosis; a target
//! that is not there is reported as such without blocking the check.
//! Fails, not skips, when PostgreSQL or sshd are missing.

mod support;

use std::fs;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::pg::{PG_SUPERUSER, PgCluster, RunningServer, pg_tempdir, require_pg_bin};
use support::sshd::{TestSshd, free_port};

const WALWARDEN: &str = env!("CARGO_BIN_EXE_walwarden");
const CLIENT: &str = "shop";

fn check(config: &Path, extra: &[&str]) -> (Output, Value) {
    let output = Command::new(WALWARDEN)
        .arg("--config")
        .arg(config)
        .args(["check", "--target", "--json"])
        .args(extra)
        .stdin(Stdio::null())
        .output()
        .expect("run walwarden check");
    let json: Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "check --json printed no JSON ({e}):\n{}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    });
    (output, json)
}

fn write_config(path: &Path, root: &Path, sshd: &TestSshd, port: u16, cluster: &PgCluster) {
    fs::write(
        path,
        format!(
            "root = {root:?}\n[clients.{CLIENT}.target]\nhost = \"127.0.0.1\"\nport = {port}\n\
             user = {user:?}\nknown_hosts = {kh:?}\nidentity = {id:?}\nconnect_timeout = \"5s\"\n\
             psql_command = {psql:?}\nlog_file = {log:?}\n",
            root = root.display().to_string(),
            user = sshd.user,
            kh = sshd.known_hosts.display().to_string(),
            id = sshd.client_key.display().to_string(),
            psql = format!(
                "{} -h {} -p {} -U {PG_SUPERUSER}",
                cluster.bin.join("psql").display(),
                cluster.socket_dir.display(),
                cluster.port
            ),
            log = cluster.log_file.display().to_string(),
        ),
    )
    .unwrap();
}

fn codes(client: &Value) -> Vec<String> {
    client["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["code"].as_str().unwrap().to_owned())
        .collect()
}

fn counter(server: &RunningServer, column: &str) -> u64 {
    server
        .psql(&format!("select {column} from pg_stat_archiver"))
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn target_view_shows_a_working_archiver_then_a_failing_one_with_its_diagnosis() {
    let bin = require_pg_bin(15);
    let sshd = TestSshd::start();
    let tmp = pg_tempdir("walwarden-target-");
    let root = tmp.path().join("backups");
    let wal = root.join(CLIENT).join("wal");
    for dir in [&root, &root.join(CLIENT), &wal] {
        fs::create_dir(dir).unwrap();
        support::pg::give_to_pg_user(dir, 0o755);
    }
    let cluster = PgCluster::initdb(15, &bin, tmp.path(), &[]);
    let w = wal.display();
    cluster.append_conf(&format!(
        "wal_level = replica\narchive_mode = on\narchive_timeout = 3600\n\
         archive_command = 'test ! -f {w}/%f.gz && gzip -c -9 %p > {w}/%f.gz.part && mv {w}/%f.gz.part {w}/%f.gz'\n"
    ));
    let server = cluster.start();
    server.psql("create table t as select g from generate_series(1, 1000) g");
    let segment = server.switch_wal();
    server.wait_archived(&wal, &segment, Duration::from_secs(60));

    let config = tmp.path().join("walwarden.toml");
    write_config(&config, &root, &sshd, sshd.port, &cluster);
    let (output, json) = check(&config, &[]);
    let client = &json["clients"][0];
    let target = &client["target"];
    assert_eq!(target["reached"], "true", "{target:#}\n{}", sshd.log());
    let state = &target["state"];
    assert_eq!(state["archive_mode"], "on");
    assert_eq!(state["archive_timeout"], 3600);
    assert_eq!(state["wal_level"], "replica");
    assert!(state["archived_count"].as_u64().unwrap() >= 1, "{state:#}");
    assert_eq!(state["last_archived_wal"].as_str().unwrap(), segment);
    assert_eq!(state["failed_count"], 0);
    assert_eq!(target["log_file"], cluster.log_file.display().to_string());
    assert_eq!(target["failures"].as_array().unwrap().len(), 0);
    let target_codes: Vec<String> = codes(client)
        .into_iter()
        .filter(|c| c.starts_with("archiv") || c.starts_with("target"))
        .collect();
    assert!(target_codes.is_empty(), "{target_codes:?}");
    assert!(output.status.code().is_some());
    // The verification window's last item: archive_timeout is production (1h) there.
    let (item, said) = verify_target_item(&config);
    assert_eq!(item["state"], "pass", "{item:#}");
    // As the window opens, an archive_timeout still at production is pointed out.
    assert!(
        said.contains("archive_timeout on the target is 1h: set it to 1m"),
        "{said}"
    );
    assert!(
        item["detail"]
            .as_str()
            .unwrap()
            .contains("archive_timeout 1h"),
        "{item:#}"
    );

    // Break it: the archive folder refuses the postgres user (the tutorial's
    // "Permission denied"), and archive_timeout is left at the verification value.
    let locked = root.join(CLIENT).join("locked");
    fs::create_dir(&locked).unwrap();
    set_mode(&locked, 0o700);
    let failed_before = counter(&server, "failed_count");
    server.psql(&format!(
        "alter system set archive_command = 'gzip -c -9 %p > {}/%f.gz'",
        locked.display()
    ));
    server.psql("alter system set archive_timeout = 60");
    server.psql("select pg_reload_conf()");
    std::thread::sleep(Duration::from_millis(500));
    server.psql("insert into t select g from generate_series(1, 1000) g");
    let broken = server.switch_wal();
    wait_for("failed_count to rise by 2", &cluster, || {
        counter(&server, "failed_count") >= failed_before + 2
    });

    let (output, json) = check(&config, &[]);
    let client = &json["clients"][0];
    let target = &client["target"];
    let state = &target["state"];
    assert!(
        state["failed_count"].as_u64().unwrap() >= failed_before + 2,
        "{state:#}"
    );
    assert_eq!(state["last_failed_wal"].as_str().unwrap(), broken);
    let newest = newest_failure(target);
    assert_eq!(
        newest["diagnosis"]["code"], "archive-permission",
        "{newest:#}"
    );
    assert!(output_has(newest, "Permission denied"), "{newest:#}");
    assert!(
        newest["command"].as_str().unwrap().contains(&broken),
        "{newest:#}"
    );
    let found = codes(client);
    for code in [
        "archiving_failing",
        "archive_timeout_verification",
        "archive_command_elsewhere",
    ] {
        assert!(found.contains(&code.to_owned()), "{code} not in {found:?}");
    }
    assert_eq!(
        output.status.code(),
        Some(2),
        "a failing archiver is critical"
    );
    // The verification window: warned as it opens, failed on the target item after.
    let (item, said) = verify_target_item(&config);
    assert_eq!(item["state"], "fail", "{item:#}");
    assert!(
        item["detail"]
            .as_str()
            .unwrap()
            .contains("archiving is failing"),
        "{item:#}"
    );
    assert!(
        said.contains("archiving is failing on the target right now"),
        "{said}"
    );

    // ssh refusing the backup host's key exits 255, which PostgreSQL treats as
    // FATAL for the archiver (restarted, the failure not counted): the log
    // still shows it, and the view names it.
    server.psql(&format!(
        "alter system set archive_command = 'gzip -c -9 %p | ssh -F /dev/null -o BatchMode=yes \
         -o StrictHostKeyChecking=yes -o UserKnownHostsFile=/dev/null -p {} nobody@127.0.0.1 \
         \"cat > {w}/%f.gz\"'",
        sshd.port
    ));
    server.psql("select pg_reload_conf()");
    wait_for("a host key failure in the log", &cluster, || {
        fs::read_to_string(&cluster.log_file)
            .unwrap_or_default()
            .contains("Host key verification failed")
    });
    let (_, json) = check(&config, &[]);
    let client = &json["clients"][0];
    let newest = newest_failure(&client["target"]);
    assert_eq!(newest["diagnosis"]["code"], "host-key", "{newest:#}");
    assert!(
        output_has(newest, "Host key verification failed"),
        "{newest:#}"
    );
    assert!(codes(client).contains(&"archiving_failing".to_owned()));

    // The same as text, for people.
    let text = Command::new(WALWARDEN)
        .arg("--config")
        .arg(&config)
        .args(["check", "--target"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("archive_mode on, archive_timeout 1m"),
        "{text}"
    );
    assert!(text.contains("| Host key verification failed."), "{text}");
    assert!(text.contains("[host-key]"), "{text}");
    assert!(text.contains("fix: as postgres on the target"), "{text}");

    // A target nobody answers on: reported, and the check still finishes.
    let dead = tmp.path().join("dead.toml");
    write_config(&dead, &root, &sshd, free_port(), &cluster);
    let (output, json) = check(&dead, &[]);
    let client = &json["clients"][0];
    assert_eq!(client["target"]["reached"], "false");
    assert!(
        client["target"]["error"]
            .as_str()
            .unwrap()
            .contains("unreachable"),
        "{client:#}"
    );
    assert!(codes(client).contains(&"target_unreachable".to_owned()));
    // The check itself finished and reported (this client has no base backup: critical).
    assert_eq!(output.status.code(), Some(2));
    server.stop();
}

/// `walwarden verify` over a 2 s window, reading the target once after it:
/// the checklist's target item.
fn verify_target_item(config: &Path) -> (Value, String) {
    let output = Command::new(WALWARDEN)
        .arg("--config")
        .arg(config)
        .args([
            "verify",
            CLIENT,
            "--window",
            "2s",
            "--target-wait",
            "0s",
            "--json",
        ])
        .env("XDG_CACHE_HOME", config.parent().unwrap().join("cache"))
        .stdin(Stdio::null())
        .output()
        .expect("run walwarden verify");
    let report: Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "verify --json printed no JSON ({e}): {}",
            String::from_utf8_lossy(&output.stderr)
        )
    });
    let item = report["items"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(
        item["title"], "archive_timeout back to production on the target",
        "{report:#}"
    );
    let warning = report["target_warning"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    (item, warning)
}

fn wait_for(what: &str, cluster: &PgCluster, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(90);
    while !done() {
        assert!(
            Instant::now() < deadline,
            "waited 90 s for {what}; server log:\n{}",
            cluster.log_tail(30)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn newest_failure(target: &Value) -> &Value {
    target["failures"]
        .as_array()
        .unwrap()
        .last()
        .unwrap_or_else(|| panic!("no failure read from the log: {target:#}"))
}

fn output_has(failure: &Value, needle: &str) -> bool {
    failure["output"]
        .as_array()
        .unwrap()
        .iter()
        .any(|l| l.as_str().unwrap().contains(needle))
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}
