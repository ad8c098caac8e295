//! `walwarden check` as scripts and monitoring see it: the real binary,
//! its exit codes, its JSON document, and its errors.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, SystemTime};

use walwarden::demo::{Cluster, build_demo};

fn walwarden(args: &[&str], home: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_walwarden"))
        .args(args)
        .env("HOME", home)
        .env("XDG_CACHE_HOME", home.join("cache"))
        .env("XDG_CONFIG_HOME", home.join("config"))
        .env_remove("WALWARDEN_ROOT")
        .env_remove("WALWARDEN_CONFIG")
        .output()
        .expect("run walwarden")
}

fn json(output: &Output) -> serde_json::Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}): {}\nstderr: {}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

fn healthy_root(dir: &Path, clients: &[&str]) -> std::path::PathBuf {
    let root = dir.join("backups");
    let now = SystemTime::now();
    for name in clients {
        let c = Cluster::new(7, 16 << 20);
        let client = root.join(name);
        c.write_base_backup(
            &client,
            c.id(1, 3),
            c.id(1, 4),
            now - Duration::from_secs(600),
        )
        .unwrap();
        for segno in 3..=6 {
            c.archive_segment(
                &client.join("wal"),
                c.id(1, segno),
                Some(now - Duration::from_secs(60 * (7 - segno))),
            )
            .unwrap();
        }
    }
    root
}

#[test]
fn the_demo_root_is_critical_and_the_json_follows_the_schema() {
    let tmp = tempfile::tempdir().unwrap();
    let demo = build_demo(tmp.path(), SystemTime::now()).unwrap();
    let out = walwarden(
        &[
            "check",
            "--json",
            "--root",
            demo.root.to_str().unwrap(),
            "--config",
            demo.config.to_str().unwrap(),
        ],
        tmp.path(),
    );
    assert_eq!(
        out.status.code(),
        Some(2),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc = json(&out);
    assert_eq!(doc["status"], "critical");
    let clients = doc["clients"].as_array().unwrap();
    let names: Vec<&str> = clients
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        vec![
            "acme",
            "cyberdyne",
            "globex",
            "hooli",
            "initech",
            "stark",
            "umbrella",
            "wayne"
        ]
    );
    let by_name = |name: &str| clients.iter().find(|c| c["name"] == name).unwrap();
    assert_eq!(by_name("acme")["status"], "ok");
    // wal/ links out of the root: unknown, and no gap claimed for WAL never read.
    let cyberdyne = by_name("cyberdyne");
    assert_eq!(cyberdyne["status"], "unknown");
    assert_eq!(cyberdyne["problems"][0]["code"], "unreadable");
    assert_eq!(cyberdyne["problems"].as_array().map(Vec::len), Some(1));
    assert_eq!(cyberdyne["wal"]["gaps"].as_array().map(Vec::len), Some(0));
    assert_eq!(by_name("stark")["status"], "warning");
    assert_eq!(by_name("globex")["problems"][0]["code"], "wal_stale");
    assert_eq!(by_name("umbrella")["problems"][0]["code"], "base_missing");
    assert!(by_name("umbrella")["restorable_to"].is_null());
    let initech = by_name("initech");
    assert_eq!(
        initech["wal"]["gaps"][0]["first"],
        "000000010000000000000009"
    );
    assert_eq!(initech["wal"]["gaps"][0]["count"], 3);
    assert!(initech["restorable_to"].as_str().unwrap().ends_with('Z'));
    // Every documented key is present on every client.
    for client in clients {
        for key in ["name", "status", "base", "wal", "restorable_to", "problems"] {
            assert!(client.get(key).is_some(), "{key} missing in {client}");
        }
        for key in ["segments", "first", "last", "last_arrival", "gaps"] {
            assert!(client["wal"].get(key).is_some(), "wal.{key} missing");
        }
        for problem in client["problems"].as_array().unwrap() {
            for key in ["code", "severity", "message", "fix"] {
                assert!(problem.get(key).is_some(), "problem.{key} missing");
            }
        }
    }
    let hooli = by_name("hooli");
    assert_eq!(hooli["status"], "ok", "the acknowledged gap does not count");
    assert!(
        hooli["problems"][0]["acknowledged"]
            .as_str()
            .unwrap()
            .contains("NFS")
    );
}

#[test]
fn exit_codes_follow_the_monitoring_convention() {
    let tmp = tempfile::tempdir().unwrap();
    let root = healthy_root(tmp.path(), &["alpha", "beta"]);
    let root_arg = root.to_str().unwrap();
    let out = walwarden(&["check", "--root", root_arg], tmp.path());
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(text.lines().count(), 2, "one line per client: {text}");
    assert!(text.lines().all(|l| l.starts_with("OK")), "{text}");
    assert!(text.contains("last WAL 1m ago"), "{text}");

    // A leftover test file: a warning.
    fs::write(root.join("beta/wal/test.txt"), b"test").unwrap();
    let out = walwarden(&["check", "--root", root_arg], tmp.path());
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("unexpected_file"));

    // Only the named client is checked.
    let out = walwarden(&["check", "--root", root_arg, "alpha"], tmp.path());
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 1);

    // A missing pg_wal.tarball: critical.
    fs::remove_file(root.join("alpha/base/pg_wal.tar.gz")).unwrap();
    let out = walwarden(&["check", "--root", root_arg, "--verbose"], tmp.path());
    assert_eq!(out.status.code(), Some(2));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("pg_wal.tar.gz is missing") && text.contains("fix: take a new base backup"),
        "{text}"
    );
}

#[test]
fn a_missing_or_empty_root_is_unknown_with_a_clear_message() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("no-such-root");
    let out = walwarden(&["check", "--root", missing.to_str().unwrap()], tmp.path());
    assert_eq!(out.status.code(), Some(3));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("does not exist") && stderr.contains("no-such-root"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");

    let empty = tmp.path().join("empty");
    fs::create_dir(&empty).unwrap();
    let out = walwarden(
        &["check", "--json", "--root", empty.to_str().unwrap()],
        tmp.path(),
    );
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(json(&out)["status"], "unknown");

    let config = tmp.path().join("bad.toml");
    fs::write(&config, "[clients.x]\narchive_timeout = \"often\"\n").unwrap();
    let out = walwarden(
        &[
            "check",
            "--root",
            empty.to_str().unwrap(),
            "--config",
            config.to_str().unwrap(),
        ],
        tmp.path(),
    );
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("clients.x.archive_timeout"));
}

#[test]
fn the_root_comes_from_the_environment_or_the_config() {
    let tmp = tempfile::tempdir().unwrap();
    let root = healthy_root(tmp.path(), &["envclient"]);
    let out = Command::new(env!("CARGO_BIN_EXE_walwarden"))
        .args(["check", "--json"])
        .env("HOME", tmp.path())
        .env("XDG_CACHE_HOME", tmp.path().join("cache"))
        .env("WALWARDEN_ROOT", &root)
        .output()
        .unwrap();
    assert_eq!(json(&out)["clients"][0]["name"], "envclient");
    let config = tmp.path().join("c.toml");
    fs::write(&config, format!("root = {:?}\n", root.to_str().unwrap())).unwrap();
    let out = walwarden(
        &["check", "--json", "--config", config.to_str().unwrap()],
        tmp.path(),
    );
    assert_eq!(json(&out)["clients"][0]["name"], "envclient");
}

/// Root reads everything, so the unreadable case runs the check as an unprivileged user.
#[test]
fn an_unreadable_folder_is_unknown_on_that_client_only() {
    let tmp = tempfile::Builder::new()
        .prefix("walwarden-unreadable")
        .tempdir()
        .unwrap();
    fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let root = healthy_root(tmp.path(), &["fine", "locked"]);
    fs::set_permissions(root.join("locked/wal"), fs::Permissions::from_mode(0o000)).unwrap();
    let is_root = unsafe_euid_is_root();
    let bin = env!("CARGO_BIN_EXE_walwarden");
    let mut command = if is_root {
        let user = std::env::var("WALWARDEN_TEST_PG_USER").unwrap_or_else(|_| "postgres".into());
        let mut c = Command::new("runuser");
        c.args(["-u", &user, "--", bin]);
        c
    } else {
        Command::new(bin)
    };
    let home = tmp.path().join("home");
    fs::create_dir(&home).unwrap();
    fs::set_permissions(&home, fs::Permissions::from_mode(0o777)).unwrap();
    let out = command
        .args(["check", "--json", "--root", root.to_str().unwrap()])
        .env("HOME", &home)
        .env("XDG_CACHE_HOME", home.join("cache"))
        .output()
        .expect("runuser and an unprivileged user (postgres) are needed for this test");
    fs::set_permissions(root.join("locked/wal"), fs::Permissions::from_mode(0o700)).unwrap();
    let doc = json(&out);
    let clients = doc["clients"].as_array().unwrap();
    assert_eq!(clients[0]["name"], "fine");
    assert_eq!(clients[0]["status"], "ok");
    assert_eq!(clients[1]["name"], "locked");
    assert_eq!(
        clients[1]["status"], "unknown",
        "nothing is claimed about WAL that could not be read: {}",
        clients[1]
    );
    assert_eq!(doc["status"], "unknown");
    assert_eq!(out.status.code(), Some(3));
    let problems = clients[1]["problems"].as_array().unwrap();
    let unreadable = problems
        .iter()
        .find(|p| p["code"] == "permission_denied")
        .expect("a permission problem, with its own code");
    assert_eq!(unreadable["severity"], "unknown");
    assert!(
        unreadable["message"]
            .as_str()
            .unwrap()
            .contains("permission denied")
    );
}

fn unsafe_euid_is_root() -> bool {
    // The uid of a file we just created is our effective uid.
    let probe = tempfile::NamedTempFile::new().unwrap();
    std::os::unix::fs::MetadataExt::uid(&probe.as_file().metadata().unwrap()) == 0
}

#[test]
fn prometheus_metrics_for_monitoring() {
    let tmp = tempfile::tempdir().unwrap();
    let demo = build_demo(tmp.path(), SystemTime::now()).unwrap();
    let textfile = tmp.path().join("walwarden.prom");
    let out = walwarden(
        &[
            "check",
            "--format",
            "prometheus",
            "--root",
            demo.root.to_str().unwrap(),
            "--config",
            demo.config.to_str().unwrap(),
            "--textfile",
            textfile.to_str().unwrap(),
        ],
        tmp.path(),
    );
    assert_eq!(out.status.code(), Some(2));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("# TYPE walwarden_client_status gauge"),
        "{text}"
    );
    assert!(
        text.contains("walwarden_client_status{client=\"globex\"} 2"),
        "{text}"
    );
    assert!(
        text.contains("walwarden_client_status{client=\"acme\"} 0"),
        "{text}"
    );
    assert!(
        text.contains("walwarden_problems{client=\"initech\",code=\"wal_gap\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("walwarden_wal_gaps{client=\"initech\"} 1"),
        "{text}"
    );
    assert!(
        !text.contains("walwarden_restorable_to_timestamp_seconds{client=\"umbrella\"}"),
        "not restorable: no sample"
    );
    assert_eq!(
        std::fs::read_to_string(&textfile).unwrap(),
        text,
        "the textfile holds the same metrics"
    );
    // Every sample line is `name{labels} number`.
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let (_, value) = line.rsplit_once(' ').unwrap();
        assert!(value.parse::<f64>().is_ok(), "{line}");
    }
}

/// The documented example config stays valid as the settings grow.
#[test]
fn the_example_config_parses() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/config.example.toml");
    let config = walwarden::config::Config::load(&path).expect("assets/config.example.toml parses");
    assert_eq!(
        config.policy_for("foo").archive_timeout,
        Duration::from_secs(15 * 60)
    );
    let target = config
        .target_for("foo")
        .expect("the example names a target server");
    assert_eq!(
        target.stop_command_for(15),
        "sudo -n pg_ctlcluster 15 main stop -m fast"
    );
}
