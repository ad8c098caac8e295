//! What the benchmarks share: where their trees live (never under
//! /var/lib/postgresql) and a line describing the machine they ran on.

#![allow(dead_code)]

use std::fs;
use std::path::{Path, PathBuf};

/// The folder named by `env_var`, else `default`; refuses anything under /var/lib/postgresql.
pub fn bench_dir(env_var: &str, default: &str) -> PathBuf {
    let dir = std::env::var_os(env_var)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(default));
    let dir = std::path::absolute(&dir).unwrap_or(dir);
    let resolved = fs::canonicalize(&dir).unwrap_or_else(|_| dir.clone());
    for path in [&dir, &resolved] {
        if path.starts_with("/var/lib/postgresql") {
            eprintln!(
                "refusing {env_var}={}: never under /var/lib/postgresql",
                dir.display()
            );
            std::process::exit(2);
        }
    }
    dir
}

/// `<CPU model>, <n> cores, Linux <release>`.
pub fn machine() -> String {
    let cpu = fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines().find_map(|l| {
                l.strip_prefix("model name")
                    .map(|v| v.trim_start_matches([' ', '\t', ':']).to_owned())
            })
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!("{cpu}, {cores} cores, Linux {}", kernel.trim())
}

/// The markers of a bench's data, built once in its folder and reused.
pub struct Reusable {
    /// Holds the layout string once the data is complete.
    pub complete: &'static str,
    /// Says the folder was made by this bench (never take over someone else's).
    pub owner: &'static str,
    /// The variable that names the folder, for the refusal message.
    pub env_var: &'static str,
    /// `benches/<name>.rs`, written into the owner marker.
    pub bench: &'static str,
}

impl Reusable {
    /// True when `dir` holds complete data of `layout`, to reuse as it is.
    /// Otherwise claims `dir` (refusing a non-empty folder this bench did not
    /// make), marks it incomplete, and returns false: the caller builds.
    pub fn reuse_or_claim(&self, dir: &Path, layout: &str) -> bool {
        if fs::read_to_string(dir.join(self.complete)).is_ok_and(|m| m == layout) {
            println!("reusing the data in {}", dir.display());
            return true;
        }
        let is_empty = fs::read_dir(dir).map_or(true, |mut d| d.next().is_none());
        if !is_empty && !dir.join(self.owner).exists() {
            eprintln!(
                "{} exists, is not empty and was not made by this benchmark; choose another {}",
                dir.display(),
                self.env_var
            );
            std::process::exit(2);
        }
        fs::create_dir_all(dir).expect("cannot create the bench dir");
        let _ = fs::remove_file(dir.join(self.complete));
        fs::write(
            dir.join(self.owner),
            format!("made by walwarden's benches/{}.rs\n", self.bench),
        )
        .expect("cannot write the owner marker");
        false
    }

    /// Marks the data in `dir` complete for `layout`.
    pub fn mark_complete(&self, dir: &Path, layout: &str) {
        fs::write(dir.join(self.complete), layout).expect("cannot write the complete marker");
    }
}
