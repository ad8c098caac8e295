//! What the benchmarks share: where their trees live (never under
//! /var/lib/postgresql) and a line describing the machine they ran on.

#![allow(dead_code)]

use std::fs;
use std::path::PathBuf;

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
