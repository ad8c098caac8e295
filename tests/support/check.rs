//! `walwarden check --json` run on a root, with HOME and the caches in a temp dir.

use std::path::Path;
use std::process::Command;

/// Runs `walwarden check --json [extra...] --root ROOT`; returns the exit code and the document.
pub fn check_json(root: &Path, home: &Path, extra: &[&str]) -> (i32, serde_json::Value) {
    let out = Command::new(env!("CARGO_BIN_EXE_walwarden"))
        .args(["check", "--json"])
        .args(extra)
        .arg("--root")
        .arg(root)
        .env("HOME", home)
        .env("XDG_CACHE_HOME", home.join("cache"))
        .env_remove("WALWARDEN_ROOT")
        .env_remove("WALWARDEN_CONFIG")
        .output()
        .expect("run walwarden");
    let doc = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    (out.status.code().unwrap_or(-1), doc)
}

/// The first client's problems as (code, message).
pub fn first_client_problems(doc: &serde_json::Value) -> Vec<(String, String)> {
    doc["clients"][0]["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["code"].as_str().unwrap().to_owned(),
                p["message"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}
