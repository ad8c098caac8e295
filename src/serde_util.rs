//! Serialisation helpers: times as RFC 3339 strings, LSNs as PostgreSQL prints
//! them, durations as people write them, large identifiers as decimal text.

use std::fmt::Display;
use std::time::SystemTime;

use serde::Serializer;

use crate::display::time_text;

pub fn opt_time<S: Serializer>(time: &Option<SystemTime>, s: S) -> Result<S::Ok, S::Error> {
    match time {
        Some(t) => s.serialize_str(&time_text(*t)),
        None => s.serialize_none(),
    }
}

/// RFC 3339 to the microsecond: a transaction's time as PostgreSQL keeps it.
pub fn opt_time_micros<S: Serializer>(time: &Option<SystemTime>, s: S) -> Result<S::Ok, S::Error> {
    match time {
        Some(t) => s.serialize_str(&crate::display::rfc3339_micros(*t)),
        None => s.serialize_none(),
    }
}

pub fn time<S: Serializer>(time: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&time_text(*time))
}

/// An LSN (or anything printed the way PostgreSQL prints it) as its text.
pub fn lsn<S: Serializer, T: Display>(lsn: &T, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&lsn.to_string())
}

pub fn opt_lsn<S: Serializer, T: Display>(lsn: &Option<T>, s: S) -> Result<S::Ok, S::Error> {
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
