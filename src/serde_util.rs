//! Serialisation helpers: times as RFC 3339 strings, LSNs as PostgreSQL prints them.

use std::io;
use std::path::Path;
use std::time::SystemTime;

use serde::Serializer;
use serde::de::DeserializeOwned;

use crate::archive::wal::Lsn;

/// A JSON file of ours (caches, history) read back; missing or unreadable
/// means starting empty: it only costs a re-read or a re-check.
pub fn read_json_or_default<T: DeserializeOwned + Default>(path: Option<&Path>) -> T {
    path.and_then(|p| std::fs::read(p).ok())
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or_default()
}

/// Writes `value` as JSON through a temp file and a rename, so a crash never
/// leaves half a file; makes the parent folder when missing.
pub fn write_json_atomically<T: serde::Serialize>(path: &Path, value: &T) -> io::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let temporary = path.with_extension("json.tmp");
    std::fs::write(
        &temporary,
        serde_json::to_vec(value).map_err(io::Error::other)?,
    )?;
    std::fs::rename(temporary, path)
}

pub fn time_text(time: SystemTime) -> String {
    humantime::format_rfc3339_seconds(time).to_string()
}

pub fn opt_time<S: Serializer>(time: &Option<SystemTime>, s: S) -> Result<S::Ok, S::Error> {
    match time {
        Some(t) => s.serialize_str(&time_text(*t)),
        None => s.serialize_none(),
    }
}

pub fn time<S: Serializer>(time: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&time_text(*time))
}

pub fn lsn<S: Serializer>(lsn: &Lsn, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&lsn.to_string())
}

pub fn opt_lsn<S: Serializer>(lsn: &Option<Lsn>, s: S) -> Result<S::Ok, S::Error> {
    match lsn {
        Some(l) => s.serialize_str(&l.to_string()),
        None => s.serialize_none(),
    }
}

pub fn duration<S: Serializer>(d: &std::time::Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&humantime::format_duration(*d).to_string())
}

pub fn opt_duration<S: Serializer>(
    d: &Option<std::time::Duration>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => duration(d, s),
        None => s.serialize_none(),
    }
}

/// Large identifiers as decimal strings: JSON numbers lose precision past 2^53.
pub fn opt_u64_text<S: Serializer>(value: &Option<u64>, s: S) -> Result<S::Ok, S::Error> {
    match value {
        Some(v) => s.serialize_str(&v.to_string()),
        None => s.serialize_none(),
    }
}

/// With milliseconds, for journals where steps follow each other closely.
pub fn time_text_precise(time: SystemTime) -> String {
    humantime::format_rfc3339_millis(time).to_string()
}
