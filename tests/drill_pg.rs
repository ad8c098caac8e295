//! `walwarden drill` on a real PostgreSQL 15 backup: the restored server
//! answers, the scratch folder is gone, and the result is recorded; a drill
//! of an archive with a gap fails and says where it stopped.

mod support;

use std::process::{Command, Output};

fn drill(root: &std::path::Path, scratch: &std::path::Path, home: &std::path::Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_walwarden"))
        .args([
            "drill",
            "client1",
            "--json",
            "--pg-bin",
            "/usr/lib/postgresql/15/bin",
            "--os-user",
            &support::pg_user(),
            "--root",
        ])
        .arg(root)
        .arg("--scratch")
        .arg(scratch)
        .env("HOME", home)
        .env("XDG_CACHE_HOME", home.join("cache"))
        .output()
        .expect("run walwarden")
}

#[test]
fn a_drill_restores_checks_and_cleans_up() {
    let backup = support::make_real_backup("client1");
    let scratch = support::pg_tempdir("walwarden-drill-scratch-");
    let home = tempfile::tempdir().unwrap();
    let out = drill(&backup.root, scratch.path(), home.path());
    let record: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    assert_eq!(
        out.status.code(),
        Some(0),
        "{record:#}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(record["success"], true);
    assert!(
        record["detail"].as_str().unwrap().contains("databases"),
        "{record:#}"
    );
    assert!(record["seconds"].as_f64().unwrap() > 0.0);
    assert_eq!(
        std::fs::read_dir(scratch.path()).unwrap().count(),
        0,
        "the scratch folder was removed"
    );
    let history: serde_json::Value = serde_json::from_slice(
        &std::fs::read(home.path().join("cache/walwarden/drills.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(history.as_array().unwrap().len(), 1);

    // check names the last drill, and warns only where drills are required and missing.
    let config = home.path().join("walwarden.toml");
    std::fs::write(&config, "[defaults]\ndrill_max_age = \"1h\"\n").unwrap();
    let check = |home: &std::path::Path| -> serde_json::Value {
        let out = Command::new(env!("CARGO_BIN_EXE_walwarden"))
            .args(["check", "--json", "--config"])
            .arg(&config)
            .arg("--root")
            .arg(&backup.root)
            .env("HOME", home)
            .env("XDG_CACHE_HOME", home.join("cache"))
            .output()
            .unwrap();
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let doc = check(home.path());
    let client = &doc["clients"][0];
    assert_eq!(client["last_drill"]["success"], true, "{client:#}");
    assert!(
        client["problems"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["code"] != "drill_stale"),
        "{client:#}"
    );
    let elsewhere = tempfile::tempdir().unwrap();
    let doc = check(elsewhere.path());
    let codes: Vec<&str> = doc["clients"][0]["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["code"].as_str().unwrap())
        .collect();
    assert_eq!(
        codes,
        ["drill_stale"],
        "no drill recorded on this machine: {doc:#}"
    );
    assert_eq!(doc["clients"][0]["status"], "warning");

    // A gap after consistency: replay stops short of the archive's end, and the drill fails.
    let segments = backup.archived_segments();
    let victim = &segments[segments.len() - 2];
    std::fs::rename(
        backup.wal_dir().join(victim),
        backup.tmp.path().join("moved-away.gz"),
    )
    .unwrap();
    let out = drill(&backup.root, scratch.path(), home.path());
    let record: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(1), "{record:#}");
    assert_eq!(record["success"], false);
    let detail = record["detail"].as_str().unwrap();
    assert!(
        detail.contains("replay would stop at") && detail.contains(&victim[..24]),
        "says where and why: {detail}"
    );
    assert_eq!(
        std::fs::read_dir(scratch.path()).unwrap().count(),
        0,
        "cleaned up after a failure too"
    );
}
